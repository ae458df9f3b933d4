"""Shared block: the Decision Transformer trunk, its deterministic (tanh) actor, and the masked mean.

Used by offline DT, ODT (which puts a Gaussian head on the trunk) and ODT+TD3.
Canonical source; see blocks/runtime.py for how blocks are copied into scripts.
"""

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


# === block ===
class CausalBlock(nn.Module):
    """Pre-norm causal self-attention block (GPT-2 layout). Right padding needs no key mask: causal
    attention never lets a real step see the padding after it."""

    def __init__(self, width: int, num_heads: int, attention_dropout: float, residual_dropout: float, activation: str):
        super().__init__()
        self.num_heads = num_heads
        self.attention_dropout = attention_dropout
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.projection = nn.Linear(width, width)
        self.residual_dropout = nn.Dropout(residual_dropout)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width),
            nn.ReLU() if activation == "relu" else nn.GELU(),
            nn.Linear(4 * width, width),
            nn.Dropout(residual_dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        qkv = self.qkv(self.norm1(x)).view(batch, length, 3, self.num_heads, width // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)
        attention = F.scaled_dot_product_attention(
            query, key, value, is_causal=True, dropout_p=self.attention_dropout if self.training else 0.0
        )
        attention = attention.transpose(1, 2).reshape(batch, length, width)
        x = x + self.residual_dropout(self.projection(attention))
        return x + self.mlp(self.norm2(x))


class DecisionTrunk(nn.Module):
    """(return-to-go, state, action) tokens per step -> the hidden state of every state token.

    `timestep_embedding` adds a learned embedding of each step's episode time to its three tokens (as
    the original DT does). The official ODT code defines one but never uses it: no position
    information at all, which its setting `false` reproduces.
    """

    def __init__(self, state_dim: int, action_dim: int, config: Any):
        super().__init__()
        width = config.embedding_dim
        self.width = width
        # +1: ODT+TD3's target network reads the window shifted one step later.
        rows = config.episode_len + config.seq_len + 1
        self.timestep_embedding = nn.Embedding(rows, width) if config.timestep_embedding else None
        self.state_embedding = nn.Linear(state_dim, width)
        self.action_embedding = nn.Linear(action_dim, width)
        self.return_embedding = nn.Linear(1, width)
        self.embedding_norm = nn.LayerNorm(width)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.blocks = nn.ModuleList(
            CausalBlock(width, config.num_heads, config.attention_dropout, config.residual_dropout, config.activation)
            for _ in range(config.num_layers)
        )
        self.output_norm = nn.LayerNorm(width)
        self.bf16 = config.bf16

    @staticmethod
    def init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self, states: torch.Tensor, actions: torch.Tensor, returns_to_go: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        batch, length = states.shape[:2]
        with torch.autocast(states.device.type, torch.bfloat16, enabled=self.bf16):  # heads stay in float32
            time_embedding = 0.0 if self.timestep_embedding is None else self.timestep_embedding(timesteps)
            tokens = torch.stack(
                (
                    self.return_embedding(returns_to_go.unsqueeze(-1)) + time_embedding,
                    self.state_embedding(states) + time_embedding,
                    self.action_embedding(actions) + time_embedding,
                ),
                dim=2,
            ).reshape(batch, 3 * length, self.width)
            hidden = self.embedding_dropout(self.embedding_norm(tokens))
            for block in self.blocks:
                hidden = block(hidden)
        return self.output_norm(hidden.float())[:, 1::3]


class DecisionTransformer(nn.Module):
    """Deterministic DT actor: a tanh action read from each state token."""

    def __init__(self, state_dim: int, action_dim: int, config: Any):
        super().__init__()
        self.trunk = DecisionTrunk(state_dim, action_dim, config)
        self.action_head = nn.Sequential(nn.Linear(config.embedding_dim, action_dim), nn.Tanh())
        self.max_action = config.max_action
        self.apply(DecisionTrunk.init_weights)

    def forward(
        self, states: torch.Tensor, actions: torch.Tensor, returns_to_go: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """(B, L, ·) inputs -> (B, L, action_dim) actions."""
        return self.action_head(self.trunk(states, actions, returns_to_go, timesteps)) * self.max_action


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real (unpadded) steps of a batch of windows only."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)
