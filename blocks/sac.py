"""Shared block: the tanh-Gaussian actor of SAC and CQL, and the update that steps every part from one set of losses.

Canonical source; see blocks/runtime.py for how blocks are copied into scripts.
"""

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from blocks.q_networks import mlp


# === block ===
class TanhGaussianActor(nn.Module):
    """tanh(N(mean, std)) policy. log_std = multiplier * raw + offset with learnable scalars
    (init 1 and -1, official), clipped to [-20, 2]; the deterministic action is tanh(mean)."""

    def __init__(self, state_dim: int, action_dim: int, hidden_dims, orthogonal: bool = True):
        super().__init__()
        self.action_dim = action_dim
        self.trunk = mlp(state_dim, hidden_dims, 2 * action_dim, output_gain=1e-2, orthogonal=orthogonal)
        self.log_std_multiplier = nn.Parameter(torch.tensor(1.0))
        self.log_std_offset = nn.Parameter(torch.tensor(-1.0))

    def forward(self, state: torch.Tensor, deterministic: bool = False, repeat: Optional[int] = None):
        """Actions and their log-probabilities; with `repeat` n, (B, n, act_dim) samples per state."""
        if repeat is not None:
            state = state.unsqueeze(1).expand(-1, repeat, -1)
        mean, raw_log_std = self.trunk(state).split(self.action_dim, dim=-1)
        log_std = (self.log_std_multiplier * raw_log_std + self.log_std_offset).clamp(-20.0, 2.0)
        std = log_std.exp()
        pre_tanh = mean if deterministic else mean + std * torch.randn_like(mean)
        log_prob = (-0.5 * ((pre_tanh - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))).sum(-1)
        return torch.tanh(pre_tanh), log_prob


def step_together(steps: Sequence[Tuple[torch.Tensor, torch.optim.Optimizer]]) -> None:
    """(loss, optimizer) per part: one backward through the sum of the losses, then every step, so all the
    losses of one update come from the same (pre-update) parameters, as in the Cal-QL repository's SAC and
    CQL. Each loss must reach only its own part's parameters: the actor's loss reads `critic.frozen`."""
    for _, optimizer in steps:
        optimizer.zero_grad(set_to_none=True)
    torch.stack([loss for loss, _ in steps]).sum().backward()
    for _, optimizer in steps:
        optimizer.step()
