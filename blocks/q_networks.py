"""Shared block: MLPs with orthogonal init, a vectorised Q ensemble, Polyak averaging.

Canonical source; see blocks/runtime.py for how blocks are copied into scripts.
"""

import math
from typing import Sequence

import torch
import torch.nn as nn


# === block ===
def mlp(in_dim: int, hidden_dims: Sequence[int], out_dim: int, output_gain: float, dropout=0.0, orthogonal=True):
    """Linear-ReLU stack. Orthogonal init (zero bias): gain sqrt(2) on hidden layers and `output_gain`
    on the output layer (CORL uses sqrt(2) on the output too; the official code uses 1e-2)."""
    widths, layers = [in_dim, *hidden_dims, out_dim], []
    for index, (width_in, width_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(width_in, width_out))
        if orthogonal:
            nn.init.orthogonal_(layers[-1].weight, gain=output_gain if index == len(hidden_dims) else math.sqrt(2))
            nn.init.zeros_(layers[-1].bias)
        if index < len(hidden_dims):
            layers += [nn.ReLU(), nn.Dropout(dropout)] if dropout > 0 else [nn.ReLU()]
    return nn.Sequential(*layers)


class VectorizedCritic(nn.Module):
    """An ensemble of Q(s, a) MLPs evaluated together, one batched matmul per layer; forward returns
    (ensemble, batch). Each member starts as nn.Linear layers do, then (`orthogonal`) as `mlp` does."""

    def __init__(self, state_dim, action_dim, hidden_dims, ensemble=2, output_gain=1e-2, orthogonal=True):
        super().__init__()
        widths = [state_dim + action_dim, *hidden_dims, 1]
        self.weights = nn.ParameterList(torch.empty(ensemble, a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.biases = nn.ParameterList(torch.empty(ensemble, 1, b) for b in widths[1:])
        for weight, bias in zip(self.weights, self.biases):
            bound = 1 / math.sqrt(weight.shape[1])
            for member in range(ensemble):  # nn.Linear's default init
                nn.init.uniform_(weight[member], -bound, bound)
                nn.init.uniform_(bias[member], -bound, bound)
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases) if orthogonal else []):
            gain = output_gain if layer == len(hidden_dims) else math.sqrt(2)
            for member in range(ensemble):  # orthogonal per member, on the (out, in) view
                nn.init.orthogonal_(weight.data[member].T, gain=gain)
            nn.init.zeros_(bias)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([state, action], dim=-1).expand(len(self.weights[0]), -1, -1)
        for layer, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            x = x @ weight + bias
            x = torch.relu(x) if layer < len(self.weights) - 1 else x
        return x.squeeze(-1)

    def frozen(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Q through detached parameters: an actor's loss reaches the action, not the critic."""
        detached = {name: parameter.detach() for name, parameter in self.named_parameters()}
        return torch.func.functional_call(self, detached, (state, action))


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau source, fused over all parameters."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)
