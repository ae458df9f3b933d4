"""Shared block: the IQL networks and update (expectile V, advantage-weighted actor, Q).

Canonical source; see blocks/runtime.py for how blocks are copied into scripts.
"""

import math
from typing import Any, Dict

import torch
import torch.nn as nn

from blocks.q_networks import VectorizedCritic, mlp, soft_update


# === block ===
class GaussianPolicy(nn.Module):
    """IQL's actor: N(tanh(mean(s)), exp(log_std)) with a state-independent log_std (init 0, clipped
    to [-5, 2]); the mean is squashed, the distribution is not. Deterministic action: the mean. Every
    layer, the mean head included, starts orthogonal with gain sqrt(2), as official IQL's."""

    def __init__(self, state_dim: int, action_dim: int, hidden_dims, dropout: float = 0.0):
        super().__init__()
        self.mean = mlp(state_dim, hidden_dims, action_dim, output_gain=math.sqrt(2), dropout=dropout)
        self.log_std = nn.Parameter(torch.zeros(action_dim))

    def distribution(self, state: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(torch.tanh(self.mean(state)), self.log_std.clamp(-5.0, 2.0).exp())


def expectile_loss(difference: torch.Tensor, expectile: float) -> torch.Tensor:
    """|tau - 1(u < 0)| u^2 per element, u = Q - V."""
    return torch.where(difference < 0, 1.0 - expectile, expectile) * difference**2


def advantage_weights(advantage: torch.Tensor, beta: float) -> torch.Tensor:
    """exp(beta * A), clipped at 100 (official IQL)."""
    return torch.exp(beta * advantage).clamp(max=100.0)


class IQL:
    """V, actor, twin Q and Polyak targets, updated in the official order V, actor, Q, target.

    The actor lr follows a cosine decay over `decay_steps` updates when `decay_steps` > 0 and then
    holds (CORL's CosineAnnealingLR climbs back up after T_max; here the lr never changes again).
    """

    PARTS = "actor critic target_critic value actor_optimizer critic_optimizer value_optimizer actor_scheduler".split()

    def __init__(self, state_dim: int, action_dim: int, config: Any, device: torch.device, decay_steps: int):
        self.config, self.device, hidden = config, device, config.critic_hidden_dims
        self.actor = GaussianPolicy(state_dim, action_dim, config.actor_hidden_dims, config.actor_dropout).to(device)
        self.critic = VectorizedCritic(state_dim, action_dim, hidden, output_gain=math.sqrt(2)).to(device)
        self.target_critic = VectorizedCritic(state_dim, action_dim, hidden).to(device)
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.value = mlp(state_dim, hidden, 1, output_gain=math.sqrt(2)).to(device)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), config.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), config.qf_lr)
        self.value_optimizer = torch.optim.Adam(self.value.parameters(), config.vf_lr)
        self.decay_steps = decay_steps
        self.actor_scheduler = torch.optim.lr_scheduler.LambdaLR(self.actor_optimizer, self.lr_factor)

    def lr_factor(self, step: int) -> float:
        if self.decay_steps <= 0:
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * min(step, self.decay_steps) / self.decay_steps))

    @torch.no_grad()
    def act(self, state: torch.Tensor, deterministic: bool) -> torch.Tensor:
        self.actor.eval()
        distribution = self.actor.distribution(state)
        self.actor.train()
        return distribution.mean if deterministic else distribution.sample().clamp(-1.0, 1.0)

    def train_step(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """One update; each part uses the parts updated before it, as the official code does."""
        config = self.config
        state, action, reward = batch["observations"], batch["actions"], batch["rewards"]
        next_state, done = batch["next_observations"], batch["dones"]
        with torch.no_grad():
            target_q = self.target_critic(state, action).min(0).values
        value_loss = expectile_loss(target_q - self.value(state).squeeze(-1), config.iql_tau).mean()
        self.value_optimizer.zero_grad(set_to_none=True)
        value_loss.backward()
        self.value_optimizer.step()

        with torch.no_grad():
            advantage = target_q - self.value(state).squeeze(-1)
            weights = advantage_weights(advantage, config.beta)
        actor_loss = -(weights * self.actor.distribution(state).log_prob(action).sum(-1)).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        self.actor_scheduler.step()

        with torch.no_grad():
            target = reward + (1.0 - done) * config.discount * self.value(next_state).squeeze(-1)
        q = self.critic(state, action)
        q_loss = ((q - target.unsqueeze(0)) ** 2).mean(-1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        q_loss.backward()
        self.critic_optimizer.step()
        soft_update(self.target_critic, self.critic, config.tau)
        metrics = {"value_loss": value_loss, "actor_loss": actor_loss, "q_loss": q_loss}
        metrics.update(advantage=advantage.mean(), q_data=q.mean())
        return {key: value.detach() for key, value in metrics.items()}

    def state_dict(self) -> Dict[str, Any]:
        return {name: getattr(self, name).state_dict() for name in self.PARTS}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for name in self.PARTS:
            getattr(self, name).load_state_dict(state[name])
