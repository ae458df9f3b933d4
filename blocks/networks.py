"""Shared block: MLPs with orthogonal init, a vectorised Q ensemble, Polyak averaging.

Canonical source; see blocks/runtime.py for how blocks are copied into scripts.
"""
import math
from typing import Sequence

import torch
import torch.nn as nn

# === block ===
def orthogonal_init_(layer: nn.Module, gain: float) -> None:
    """Orthogonal weights with `gain`, zero bias (official CQL/Cal-QL/IQL init)."""
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)


def mlp(
    in_dim: int, hidden_dims: Sequence[int], out_dim: int, output_gain: float = 1e-2, dropout: float = 0.0,
    orthogonal: bool = True,
) -> nn.Sequential:
    """Linear-ReLU stack. Orthogonal init: gain sqrt(2) on hidden layers and `output_gain` on the
    output layer (CORL uses sqrt(2) on the output too; the official code uses 1e-2)."""
    layers, width = [], in_dim
    for hidden in hidden_dims:
        layers.append(nn.Linear(width, hidden))
        if orthogonal:
            orthogonal_init_(layers[-1], math.sqrt(2))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    if orthogonal:
        orthogonal_init_(layers[-1], output_gain)
    return nn.Sequential(*layers)


class VectorizedLinear(nn.Module):
    """`ensemble` independent linear layers applied in one batched matmul: (E, B, in) -> (E, B, out)."""

    def __init__(self, in_dim: int, out_dim: int, ensemble: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(ensemble, 1, out_dim))
        for member in range(ensemble):  # same distribution as nn.Linear's default, per member
            bound = 1 / math.sqrt(in_dim)
            nn.init.uniform_(self.weight[member], -bound, bound)
            nn.init.uniform_(self.bias[member], -bound, bound)

    def orthogonal_(self, gain: float) -> None:
        for member in range(self.weight.shape[0]):  # orthogonal per member, on the (out, in) view
            nn.init.orthogonal_(self.weight.data[member].T, gain=gain)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


class VectorizedCritic(nn.Module):
    """An ensemble of Q(s, a) MLPs evaluated together; forward returns (ensemble, batch)."""

    def __init__(
        self, state_dim: int, action_dim: int, hidden_dims: Sequence[int], ensemble: int = 2,
        output_gain: float = 1e-2, orthogonal: bool = True,
    ):
        super().__init__()
        self.ensemble = ensemble
        widths = [state_dim + action_dim, *hidden_dims]
        self.hidden = nn.ModuleList(VectorizedLinear(a, b, ensemble) for a, b in zip(widths[:-1], widths[1:]))
        self.output = VectorizedLinear(widths[-1], 1, ensemble)
        if orthogonal:
            for layer in self.hidden:
                layer.orthogonal_(math.sqrt(2))
            self.output.orthogonal_(output_gain)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([state, action], dim=-1).unsqueeze(0).expand(self.ensemble, -1, -1)
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.output(x).squeeze(-1)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau source, fused over all parameters."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)
