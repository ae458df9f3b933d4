"""Shared block: the CQL update (SAC plus the conservative penalty, continuous actions).

Canonical source; see blocks/runtime.py for how blocks are copied into scripts.
"""

import math
from typing import Any, Dict, Tuple

import torch

from blocks.q_networks import VectorizedCritic, soft_update
from blocks.sac import TanhGaussianActor, step_together


# === block ===
def q_of_samples(critic: VectorizedCritic, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Q of n actions per state: state (B, s), actions (B, n, a) -> (ensemble, B, n)."""
    batch, count = actions.shape[:2]
    states = state.unsqueeze(1).expand(-1, count, -1).reshape(batch * count, -1)
    return critic(states, actions.reshape(batch * count, -1)).view(-1, batch, count)


def cql_gap(q_data, q_random, q_current, q_next, log_pi_current, log_pi_next, action_dim: int, config: Any):
    """The CQL gap per critic: mean over the batch of clip(temp * logsumexp(Q_ood / temp) - Q(s, a_data)).

    q_data (E, B); q_random / q_current / q_next (E, B, n): Q at s of uniform actions in [-1, 1], of
    pi(.|s) samples and of pi(.|s') samples, the latter two with log-probabilities (B, n).
    """
    if config.cql_importance_sample:
        random_log_density = action_dim * math.log(0.5)  # uniform on [-1, 1]^d
        log_pi_next, log_pi_current = log_pi_next.unsqueeze(0), log_pi_current.unsqueeze(0)
        candidates = [q_random - random_log_density, q_next - log_pi_next, q_current - log_pi_current]
    else:
        candidates = [q_random, q_data.unsqueeze(-1), q_next, q_current]
    out_of_distribution = config.cql_temp * torch.logsumexp(torch.cat(candidates, -1) / config.cql_temp, dim=-1)
    return (out_of_distribution - q_data).clamp(config.cql_clip_diff_min, config.cql_clip_diff_max).mean(-1)


class CQL:
    """Actor, twin critics with Polyak targets, SAC temperature and (optionally) the CQL Lagrange
    multiplier; `config` supplies the CORL-named hyperparameters."""

    def __init__(self, state_dim: int, action_dim: int, config: Any, device: torch.device):
        self.config, self.action_dim, self.device = config, action_dim, device
        hidden, orthogonal = config.critic_hidden_dims, config.orthogonal_init
        self.actor = TanhGaussianActor(state_dim, action_dim, config.actor_hidden_dims, orthogonal).to(device)
        self.critic = VectorizedCritic(state_dim, action_dim, hidden, orthogonal=orthogonal).to(device)
        self.target_critic = VectorizedCritic(state_dim, action_dim, hidden).to(device)
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.log_alpha = torch.zeros((), device=device, requires_grad=True)
        self.log_alpha_prime = torch.full((), config.cql_lagrange_init, device=device, requires_grad=True)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), config.policy_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), config.qf_lr)
        self.alpha_optimizer = torch.optim.Adam([self.log_alpha], config.policy_lr)
        self.alpha_prime_optimizer = torch.optim.Adam([self.log_alpha_prime], config.qf_lr)
        self.target_entropy = -float(action_dim)
        self.updates = 0

    @torch.no_grad()
    def act(self, state: torch.Tensor, deterministic: bool) -> torch.Tensor:
        return self.actor(state, deterministic=deterministic)[0]

    def policy_sample_q(self, q_current, q_next, batch: Dict[str, torch.Tensor]) -> Tuple[Any, Any, Dict[str, Any]]:
        """Q of the policy samples as they enter the CQL term, plus metrics: unchanged here (Cal-QL raises them)."""
        return q_current, q_next, {}

    def losses(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Every loss of one update, all from the same (pre-update) parameters."""
        config, n = self.config, self.config.cql_n_actions
        state, action, reward = batch["observations"], batch["actions"], batch["rewards"]
        next_state, done = batch["next_observations"], batch["dones"]

        new_action, log_pi = self.actor(state)
        alpha_loss = -(self.log_alpha * (log_pi.detach() + self.target_entropy)).mean()
        if config.use_automatic_entropy_tuning:
            alpha = self.log_alpha.exp().detach() * config.alpha_multiplier
        else:
            alpha = torch.full((), config.alpha_multiplier, device=self.device)
            alpha_loss = alpha_loss * 0.0
        policy_loss = (alpha * log_pi - self.critic.frozen(state, new_action).min(0).values).mean()

        q_data = self.critic(state, action)
        with torch.no_grad():
            if config.cql_max_target_backup:  # min over critics per sample, then max over n samples
                next_actions, next_log_pi = self.actor(next_state, repeat=n)
                target_q, best = q_of_samples(self.target_critic, next_state, next_actions).min(0).values.max(-1)
                next_log_pi = next_log_pi.gather(-1, best.unsqueeze(-1)).squeeze(-1)
            else:
                next_action, next_log_pi = self.actor(next_state)
                target_q = self.target_critic(next_state, next_action).min(0).values
            if config.backup_entropy:
                target_q = target_q - alpha * next_log_pi
            target = reward + (1.0 - done) * config.discount * target_q
            # Policy samples inside the CQL term are detached (actions and log-probabilities).
            current_actions, log_pi_current = self.actor(state, repeat=n)
            next_actions_at_s, log_pi_next = self.actor(next_state, repeat=n)
        td_loss = ((q_data - target.unsqueeze(0)) ** 2).mean(-1).sum()
        random_actions = torch.rand(state.shape[0], n, self.action_dim, device=self.device) * 2.0 - 1.0
        q_random = q_of_samples(self.critic, state, random_actions)
        q_current = q_of_samples(self.critic, state, current_actions)
        q_next = q_of_samples(self.critic, state, next_actions_at_s)
        q_current, q_next, metrics = self.policy_sample_q(q_current, q_next, batch)
        gap = cql_gap(q_data, q_random, q_current, q_next, log_pi_current, log_pi_next, self.action_dim, config)
        if config.cql_lagrange:
            alpha_prime = self.log_alpha_prime.exp().clamp(0.0, 1e6)
            cql_loss = alpha_prime.detach() * config.cql_alpha * (gap - config.cql_target_action_gap)
            alpha_prime_loss = -(alpha_prime * config.cql_alpha * (gap.detach() - config.cql_target_action_gap)).sum()
            alpha_prime_loss = alpha_prime_loss / 2
        else:
            alpha_prime = torch.ones((), device=self.device)
            cql_loss = config.cql_alpha * gap
            alpha_prime_loss = self.log_alpha_prime * 0.0
        losses = {"policy_loss": policy_loss, "alpha_loss": alpha_loss, "qf_loss": td_loss + cql_loss.sum()}
        losses.update(alpha_prime_loss=alpha_prime_loss, td_loss=td_loss, cql_gap=gap.mean(), alpha=alpha)
        return {**losses, "alpha_prime": alpha_prime, "q_data": q_data.mean(), "log_pi": log_pi.mean(), **metrics}

    def train_step(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """One update of every part; returns device tensors (no host sync)."""
        losses = self.losses(batch)
        steps = (
            (losses["policy_loss"], self.actor_optimizer),
            (losses["qf_loss"], self.critic_optimizer),
            (losses["alpha_loss"], self.alpha_optimizer),
            (losses["alpha_prime_loss"], self.alpha_prime_optimizer),
        )
        step_together(steps)
        self.updates += 1
        if self.updates % self.config.target_update_period == 0:
            soft_update(self.target_critic, self.critic, self.config.soft_target_update_rate)
        return {key: value.detach() for key, value in losses.items()}

    PARTS = "actor critic target_critic actor_optimizer critic_optimizer alpha_optimizer alpha_prime_optimizer".split()

    def state_dict(self) -> Dict[str, Any]:
        alphas = {"log_alpha": self.log_alpha.detach(), "log_alpha_prime": self.log_alpha_prime.detach()}
        return {**{name: getattr(self, name).state_dict() for name in self.PARTS}, **alphas, "updates": self.updates}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for name in self.PARTS:
            getattr(self, name).load_state_dict(state[name])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
            self.log_alpha_prime.copy_(state["log_alpha_prime"])
        self.updates = state["updates"]
