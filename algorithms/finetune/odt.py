"""Online Decision Transformer (Zheng, Zhang, Grover, ICML 2022, https://arxiv.org/abs/2202.05607), in one file.

A stochastic DT (tanh-squashed Gaussian per action) is pretrained on offline trajectories, then
fine-tuned online: each iteration rolls out the policy (conditioned on online_rtg, sampling
actions), adds the trajectories to a FIFO trajectory buffer, and takes updates_per_iteration
gradient steps. The loss is -(log-likelihood of the buffer's actions + temperature * entropy);
the temperature is learned so that the policy's entropy moves toward target_entropy.
Return-to-go labels are recomputed from the rewards actually received (hindsight relabelling).

    python algorithms/finetune/odt.py --config_path configs/finetune/odt/hopper/medium_v2.yaml

Differences from the official code, as choices: the entropy term is masked on padding
(mask_entropy), the timestep embedding is used, no offline trajectory is dropped, and online
time-limit ends are kept apart from true ends (truncation_as_terminal: true restores the
official behaviour).
"""

import collections
import dataclasses
import difflib
import functools
import importlib
import inspect
import json
import math
import os
import pickle
import random
import re
import shutil
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import gymnasium as gym
import h5py
import numpy as np
import pyrallis
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from tqdm import tqdm


@dataclass
class TrainConfig:
    # wandb
    project: str = "ORL"
    group: str = "ODT"
    name: str = "ODT"
    wandb_mode: str = "offline"  # offline (no account, no network), online, or disabled
    # model (the official ~13M-parameter DT)
    embedding_dim: int = 512
    num_layers: int = 4
    num_heads: int = 4
    seq_len: int = 20  # T_train: context during training
    eval_context: int = 5  # T_eval: context during rollouts and evaluation
    episode_len: int = 1000  # rollout horizon; the timestep table has episode_len + seq_len + 1 rows
    attention_dropout: float = 0.1
    residual_dropout: float = 0.1
    embedding_dropout: float = 0.1
    activation: str = "relu"  # the official GPT-2 trunk uses ReLU
    timestep_embedding: bool = False  # official ODT: defined, never used (no position information)
    max_action: float = 1.0
    # data
    dataset: str = "hopper-random-v2"  # D4RL name, minari:<id>, or path to a D4RL-format hdf5
    allow_download: bool = True
    reward_scale: float = 0.001  # return-to-go scale of the DT's inputs
    reward_bias: float = 0.0  # added to every stored reward (antmaze: -1)
    buffer_size: int = 1000  # trajectories
    # actor optimisation (LAMB)
    learning_rate: float = 1e-4
    weight_decay: float = 5e-4
    eps: float = 1e-8
    clip_grad: Optional[float] = 0.25
    warmup_steps: int = 10_000
    batch_size: int = 256
    # entropy regularisation
    init_temperature: float = 0.1
    temperature_learning_rate: float = 1e-4
    target_entropy: Optional[float] = None  # default: -action_dim
    mask_entropy: bool = True  # official code: false (the entropy estimate includes padded steps)
    # schedule
    pretrain_steps: int = 5_000
    online_iterations: int = 600
    updates_per_iteration: int = 300
    online_trajectories: int = 1  # each iteration collects at least this many episodes ...
    online_transitions: int = 1000  # ... and at least this many env steps
    max_online_transitions: Optional[int] = 600_000  # stop at the first iteration boundary past it
    rollout_envs: int = 1  # episodes collected side by side per rollout round
    online_rtg: float = 7200.0
    truncation_as_terminal: bool = False  # official code: a time-limit end counts as a true end
    # evaluation
    eval_rtg: float = 3600.0
    eval_episodes: int = 10
    eval_every: int = 3_000
    eval_seed: int = 42
    # run
    train_seed: int = 10
    deterministic_torch: bool = False
    device: str = "auto"
    compile: Optional[bool] = None  # torch.compile the update, with CUDA graphs on CUDA; default: on for CUDA only
    bf16: bool = False  # bf16 autocast inside the transformer (for CUDA); its output and the losses stay float32
    run_dir: Optional[str] = None  # default: runs/odt/<dataset>/seed<train_seed>-<time>
    resume: Optional[str] = None
    log_every: int = 100
    checkpoint_every: int = 3_000
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        model = ("embedding_dim", "num_layers", "num_heads", "seq_len", "episode_len", "max_action", "reward_scale")
        counts = ("batch_size", "warmup_steps", "buffer_size", "rollout_envs", "updates_per_iteration", "eval_context")
        rates = ("learning_rate", "eps", "clip_grad", "eval_episodes", "eval_every", "max_online_transitions")
        dropouts = ("attention_dropout", "residual_dropout", "embedding_dropout")
        steps = ("pretrain_steps", "online_iterations", "online_trajectories", "online_transitions", "weight_decay")
        rates += ("init_temperature", "temperature_learning_rate")
        check_fields(self, positive=(*model, *counts, *rates), below_one=dropouts, non_negative=steps)
        if self.online_trajectories == 0 and self.online_transitions == 0:
            raise ValueError("online_trajectories and online_transitions cannot both be 0")
        if self.eval_every % self.log_every or self.checkpoint_every % self.log_every:
            raise ValueError("eval_every and checkpoint_every must be multiples of log_every")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be relu or gelu, not '{self.activation}'")
        if self.embedding_dim % self.num_heads:
            raise ValueError("embedding_dim must be divisible by num_heads")


# === shared block: decision_transformer (edit blocks/decision_transformer.py, then run tools/sync_blocks.py) ===
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


# === end shared block: decision_transformer ===


# === shared block: lamb (edit blocks/lamb.py, then run tools/sync_blocks.py) ===
class Lamb(torch.optim.Optimizer):
    """LAMB as in the timm-style lamb.py that both official ODT repositories vendor (not torch_optimizer's).

    All gradients are first scaled together so their global norm is at most `max_grad_norm`. Each
    tensor's step is then Adam's bias-corrected direction plus weight decay, rescaled by the trust
    ratio ||w|| / ||step|| (1 where either norm is 0; no clamp on ||w||). As in timm, tensors without
    weight decay keep the plain Adam step. Norms stay on the device: no host sync per step.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        max_grad_norm: Optional[float] = 1.0,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid LAMB settings lr={lr} betas={betas} eps={eps} weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.max_grad_norm = max_grad_norm

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None) -> Optional[torch.Tensor]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return loss
        scale = torch.ones((), device=grads[0].device)
        if self.max_grad_norm is not None:
            global_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
            scale = torch.clamp(global_norm / self.max_grad_norm, min=1.0)
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            group["step"] = group.get("step", 0) + 1
            bias_correction1, bias_correction2 = 1 - beta1 ** group["step"], 1 - beta2 ** group["step"]
            for parameter in (p for p in group["params"] if p.grad is not None):
                state = self.state[parameter]
                if not state:
                    state["exp_avg"], state["exp_avg_sq"] = torch.zeros_like(parameter), torch.zeros_like(parameter)
                grad = parameter.grad / scale
                state["exp_avg"].mul_(beta1).add_(grad, alpha=1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denominator = (state["exp_avg_sq"] / bias_correction2).sqrt() + group["eps"]
                update = state["exp_avg"] / bias_correction1 / denominator
                if group["weight_decay"]:
                    update = update + group["weight_decay"] * parameter
                    weight_norm, update_norm = parameter.norm(), update.norm()
                    usable = (weight_norm > 0) & (update_norm > 0)
                    update = update * torch.where(usable, weight_norm / update_norm, torch.ones_like(weight_norm))
                parameter.sub_(update * group["lr"])
        return loss


# === end shared block: lamb ===


# === shared block: online_dt (edit blocks/online_dt.py, then run tools/sync_blocks.py) ===
def dataset_trajectories(dataset: "Dataset", reward_bias: float = 0.0) -> List[Dict[str, Any]]:
    starts, ends = episode_bounds(dataset.terminals, dataset.timeouts)
    return [
        make_trajectory(
            dataset.observations[start:end],
            dataset.actions[start:end],
            dataset.rewards[start:end] + reward_bias,
            dataset.terminals[end - 1],
        )
        for start, end in zip(starts, ends)
    ]


class TrajectoryBuffer:
    """Whole trajectories, at most `capacity` of them, sampled as windows on the device.

    Starts with the `capacity` highest-return offline trajectories, ordered lowest return first;
    every added trajectory evicts the one at the front (FIFO), so online data replaces the
    lowest-return offline data first and then the oldest online data. Only real rewards are
    stored: return-to-go labels are recomputed from them (hindsight relabelling), never taken
    from the return a rollout was conditioned on.

    The flat device copy holds each trajectory's T steps plus one extra row: its final
    observation (zeros if unknown), so a window of seq_len + 1 rows gives every step its next
    state, and the shifted window is the context a target policy needs for the next actions.
    """

    def __init__(
        self, capacity: int, mean: np.ndarray, std: np.ndarray, seq_len: int, reward_scale: float, device: torch.device
    ):
        self.capacity = capacity
        self.state_mean, self.state_std = mean, std
        self.reward_scale = reward_scale
        self.device = device
        self.trajectories: collections.deque = collections.deque(maxlen=capacity)
        self.offsets = torch.arange(seq_len + 1, device=device)
        self._flat: Dict[str, torch.Tensor] = {}

    def initialise(self, offline: List[Dict[str, Any]]) -> None:
        """Keeps the top-`capacity` trajectories by return, lowest return first (evicted first)."""
        order = np.argsort([float(t["rewards"].sum()) for t in offline], kind="stable")[-self.capacity :]
        self.trajectories.clear()
        self.trajectories.extend(offline[i] for i in order)
        self._rebuild()

    def add(self, trajectories: List[Dict[str, Any]]) -> None:
        self.trajectories.extend(trajectories)  # a full deque drops from the front
        self._rebuild()

    def __len__(self) -> int:
        return len(self.trajectories)

    def _rebuild(self) -> None:
        trajectories = list(self.trajectories)
        lengths = np.array([len(t["rewards"]) for t in trajectories])
        starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
        state_dim = trajectories[0]["observations"].shape[1]
        action_dim = trajectories[0]["actions"].shape[1]
        observations, actions, rewards, returns = [], [], [], []
        for t in trajectories:
            final = t["final_observation"] if t["final_observation"] is not None else np.zeros(state_dim, np.float32)
            observations += [t["observations"], final[None]]
            actions += [t["actions"], np.zeros((1, action_dim), np.float32)]
            rewards.append(np.append(t["rewards"], 0.0))
            returns.append(np.append(np.cumsum(t["rewards"][::-1], dtype=np.float64)[::-1], 0.0))
        rows = lengths + 1
        # the final row is a usable next state if it was observed, or if nothing follows a true end
        final_usable = np.array([t["terminated"] or t["final_observation"] is not None for t in trajectories])
        terminated = np.array([t["terminated"] for t in trajectories])
        states = (np.concatenate(observations) - self.state_mean) / self.state_std
        as_tensor = lambda array, dtype=torch.float32: torch.as_tensor(array, dtype=dtype, device=self.device)
        final_row = np.repeat(starts + lengths, rows)
        self._flat = {
            "states": as_tensor(states),
            "actions": as_tensor(np.concatenate(actions)),
            "rewards": as_tensor(np.concatenate(rewards)),
            "returns_to_go": as_tensor(np.concatenate(returns) * self.reward_scale),
            "timesteps": as_tensor(np.concatenate([np.arange(n) for n in rows]), torch.long),
            "final_row": as_tensor(final_row, torch.long),
            "final_usable": as_tensor(np.repeat(final_usable, rows), torch.bool),
            "terminated": as_tensor(np.repeat(terminated, rows), torch.bool),
            "step_rows": as_tensor(np.flatnonzero(np.arange(len(final_row)) != final_row), torch.long),
        }

    def sample(self, batch_size: int) -> Dict[str, torch.Tensor]:
        """Windows starting at uniformly drawn steps (= a trajectory drawn proportionally to its length,
        then a uniform start), right-padded past the trajectory's end.

        states/actions/returns_to_go/timesteps: seq_len + 1 rows (the last for next states);
        rewards, mask (real step), critic_mask (real step whose next state is known), done: seq_len.
        """
        flat = self._flat
        step_rows = flat["step_rows"]
        start = step_rows[torch.randint(0, len(step_rows), (batch_size,), device=self.device)]
        raw = start[:, None] + self.offsets
        final_row = flat["final_row"][start][:, None]
        index = torch.minimum(raw, final_row)
        real = raw < final_row
        next_is_final = raw[:, 1:] == final_row
        current = real[:, :-1]
        return {
            "states": flat["states"][index],
            "actions": flat["actions"][index],
            "returns_to_go": flat["returns_to_go"][index],
            "timesteps": flat["timesteps"][index],
            "rewards": flat["rewards"][index[:, :-1]],
            "mask": current,
            "critic_mask": current & (real[:, 1:] | (next_is_final & flat["final_usable"][start][:, None])),
            "done": current & next_is_final & flat["terminated"][start][:, None],
        }

    def state_dict(self) -> Dict[str, Any]:  # arrays as tensors: checkpoints load with weights_only=True
        tensors = lambda trajectory: {
            k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in trajectory.items()
        }
        return {"trajectories": [tensors(trajectory) for trajectory in self.trajectories]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        arrays = lambda trajectory: {k: v.cpu().numpy() if torch.is_tensor(v) else v for k, v in trajectory.items()}
        self.trajectories.clear()
        self.trajectories.extend(arrays(trajectory) for trajectory in state["trajectories"])
        self._rebuild()


def collect_online(
    run_round: Callable[[int], List[Dict[str, Any]]], min_trajectories: int, min_transitions: int
) -> List[Dict[str, Any]]:
    """Rounds of episodes (`run_round(seed)`, one per rollout env) until at least `min_trajectories`
    whole episodes and at least `min_transitions` env steps are collected: the paper's rule for random
    datasets, Adroit, AntMaze and Maze2D. Seeds come from numpy's RNG, which checkpoints restore, so a
    resumed run collects the same episodes."""
    collected: List[Dict[str, Any]] = []
    while len(collected) < min_trajectories or sum(t["length"] for t in collected) < min_transitions:
        collected += run_round(int(np.random.randint(2**31 - 1)))
    return collected


# === end shared block: online_dt ===


# === shared block: dt_rollout (edit blocks/dt_rollout.py, then run tools/sync_blocks.py) ===
def make_trajectory(
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminated: bool,
    final_observation: Optional[np.ndarray] = None,
) -> Dict[str, Any]:
    """A whole episode as plain arrays (plain, so checkpoints unpickle in any copy of a script).

    `terminated`: a true end (nothing to bootstrap from). Otherwise the episode was truncated, and
    `final_observation` is the state after its last step where known (online data, not D4RL files).
    """
    return {
        "observations": np.asarray(observations, dtype=np.float32),
        "actions": np.asarray(actions, dtype=np.float32),
        "rewards": np.asarray(rewards, dtype=np.float32),
        "terminated": bool(terminated),
        "final_observation": None if final_observation is None else np.asarray(final_observation, dtype=np.float32),
    }


@torch.no_grad()
def run_episodes(
    act: Callable[..., torch.Tensor],
    envs: gym.vector.VectorEnv,
    target_return: float,
    seed: int,
    normaliser: Tuple[np.ndarray, np.ndarray],
    device: torch.device,
    horizon: int,
    context: int,
    reward_scale: float,
    reward_bias: float = 0.0,
    truncation_as_terminal: bool = False,
) -> List[Dict[str, Any]]:
    """One episode per env, conditioned on `target_return`, as trajectories (see make_trajectory).

    `act(states, actions, returns_to_go, timesteps)` gets the last `context` steps and returns
    (num_envs, action_dim) actions. The return-to-go drops by each (reward + reward_bias) *
    reward_scale, the rewards a trajectory stores. Each trajectory also carries the env's own
    `return`, its `length`, `success` and `truncated`. With `truncation_as_terminal` (the official
    ODT code's behaviour) a time-limit end is stored as a true end.
    """
    count, state_dim = envs.num_envs, envs.single_observation_space.shape[0]
    mean, std = (torch.as_tensor(stat, dtype=torch.float32, device=device) for stat in normaliser)
    states = torch.zeros(count, horizon, state_dim, device=device)
    actions = torch.zeros(count, horizon, envs.single_action_space.shape[0], device=device)
    returns_to_go = torch.zeros(count, horizon, device=device)
    timesteps = torch.arange(horizon, device=device).expand(count, horizon)
    remaining = np.full(count, target_return * reward_scale, np.float32)
    observations = np.zeros((count, horizon, state_dim), np.float32)
    host_actions = np.zeros(actions.shape, np.float32)
    rewards = np.zeros((count, horizon))
    lengths = np.zeros(count, np.int64)
    terminated_at, success, done = np.zeros(count, bool), np.zeros(count, bool), np.zeros(count, bool)
    final_observations = np.zeros((count, state_dim), np.float32)
    staging = torch.empty(count, state_dim + 1, pin_memory=device.type == "cuda")  # page-locked: async upload
    observation, _ = envs.reset(seed=seed)
    for step in range(horizon):
        observations[:, step] = observation
        # one upload (observation and return-to-go together) and one download (the action) per step
        staging.numpy()[:] = np.column_stack([observation, remaining])
        inputs = staging.to(device, non_blocking=True)  # the action's download below waits for it
        states[:, step] = (inputs[:, :-1] - mean) / std
        returns_to_go[:, step] = inputs[:, -1]
        window = slice(max(0, step + 1 - context), step + 1)
        actions[:, step] = act(states[:, window], actions[:, window], returns_to_go[:, window], timesteps[:, window])
        host_actions[:, step] = actions[:, step].cpu().numpy()
        observation, reward, terminated, truncated, infos = envs.step(host_actions[:, step])
        live = ~done  # envs that finished auto-reset; their later steps don't count
        rewards[live, step] = reward[live]
        lengths += live
        success |= step_success(infos, count) & live
        ended = live & (terminated | truncated | (step == horizon - 1))
        terminated_at |= ended & terminated
        final_observations[ended] = observation[ended]
        remaining -= ((reward + reward_bias) * reward_scale).astype(np.float32)
        done |= ended
        if done.all():
            break
    trajectories = []
    for i, n in enumerate(lengths):
        ends_truly = bool(terminated_at[i]) or truncation_as_terminal
        final = None if ends_truly else final_observations[i]
        trajectory = make_trajectory(
            observations[i, :n], host_actions[i, :n], rewards[i, :n] + reward_bias, ends_truly, final
        )
        trajectory["return"], trajectory["length"] = float(rewards[i, :n].sum()), int(n)
        trajectory["success"], trajectory["truncated"] = bool(success[i]), not terminated_at[i]
        trajectories.append(trajectory)
    return trajectories


def episode_stats(trajectories: List[Dict[str, Any]]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each episode's env return, length and success: the arguments EnvSpec.metrics takes."""
    return tuple(np.array([t[key] for t in trajectories]) for key in ("return", "length", "success"))


# === end shared block: dt_rollout ===


# -------------------------------------------------------------------------------------------------
# The method: a Gaussian policy head on the DT trunk, trained by likelihood plus a learned-temperature entropy bonus.
# -------------------------------------------------------------------------------------------------
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class StochasticDT(nn.Module):
    """DT policy: a tanh-squashed diagonal Gaussian read from each state token.

    log_std goes through tanh and is rescaled into [LOG_STD_MIN, LOG_STD_MAX], as in the official code.
    """

    def __init__(self, state_dim: int, action_dim: int, config: TrainConfig):
        super().__init__()
        self.trunk = DecisionTrunk(state_dim, action_dim, config)
        self.mean_head = nn.Linear(config.embedding_dim, action_dim)
        self.log_std_head = nn.Linear(config.embedding_dim, action_dim)
        self.max_action = config.max_action
        self.apply(DecisionTrunk.init_weights)

    def forward(self, states, actions, returns_to_go, timesteps) -> Tuple[torch.Tensor, torch.Tensor]:
        """Pre-tanh mean and log std of each step's action distribution."""
        hidden = self.trunk(states, actions, returns_to_go, timesteps)
        log_std = torch.tanh(self.log_std_head(hidden))
        return self.mean_head(hidden), LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)


class Temperature(nn.Module):
    """The entropy weight lambda = exp(log_value), learned."""

    def __init__(self, initial: float):
        super().__init__()
        self.log_value = nn.Parameter(torch.tensor(math.log(initial)))

    def forward(self) -> torch.Tensor:
        return self.log_value.exp()


def tanh_gaussian_log_prob(pre_tanh: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log density of tanh(u), u ~ N(mean, std^2), at u = pre_tanh, summed over action dims.

    log(1 - tanh(u)^2) is written as 2 (log 2 - u - softplus(-2u)), stable for large |u|.
    """
    gaussian = -0.5 * ((pre_tanh - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    squash = 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
    return (gaussian - squash).sum(-1)


def action_log_likelihood(
    mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor, max_action: float
) -> torch.Tensor:
    """log p of given actions (in units of max_action); clamped inside (-1, 1) so atanh stays finite."""
    squashed = (actions / max_action).clamp(-1.0 + 1e-6, 1.0 - 1e-6)
    return tanh_gaussian_log_prob(torch.atanh(squashed), mean, log_std)


def sample_actions(mean: torch.Tensor, log_std: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised sample tanh(u) and its log p."""
    pre_tanh = mean + log_std.exp() * torch.randn_like(mean)
    return torch.tanh(pre_tanh), tanh_gaussian_log_prob(pre_tanh, mean, log_std)


def actor_loss(
    model: StochasticDT, temperature: Temperature, batch: Dict[str, torch.Tensor], config: TrainConfig
) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
    """-(masked mean log-likelihood + lambda * entropy); entropy is a one-sample estimate -log p(a~)."""
    k = config.seq_len
    states, actions = batch["states"][:, :k], batch["actions"][:, :k]
    mean, log_std = model(states, actions, batch["returns_to_go"][:, :k], batch["timesteps"][:, :k])
    log_likelihood = masked_mean(action_log_likelihood(mean, log_std, actions, config.max_action), batch["mask"])
    _, sample_log_prob = sample_actions(mean, log_std)
    entropy = masked_mean(-sample_log_prob, batch["mask"]) if config.mask_entropy else (-sample_log_prob).mean()
    loss = -(log_likelihood + temperature().detach() * entropy)
    metrics = {"actor_loss": loss, "actor_log_likelihood": log_likelihood, "entropy": entropy}
    return loss, entropy, {key: value.detach() for key, value in metrics.items()}


def temperature_loss(temperature: Temperature, entropy: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """lambda * (entropy - target): descending it lowers lambda while the entropy is above target."""
    return temperature() * (entropy.detach() - target_entropy)


class ODT:
    """ODT's learner: the stochastic DT and its entropy temperature, each with its optimiser."""

    def __init__(self, state_dim: int, action_dim: int, config: TrainConfig, device: torch.device):
        self.config = config
        self.actor = StochasticDT(state_dim, action_dim, config).to(device)
        self.temperature = Temperature(config.init_temperature).to(device)
        self.target_entropy = -float(action_dim) if config.target_entropy is None else config.target_entropy
        self.actor_optimizer = Lamb(
            self.actor.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, eps=config.eps
        )
        warmup = lambda updates: min((updates + 1) / config.warmup_steps, 1)
        self.actor_scheduler = torch.optim.lr_scheduler.LambdaLR(self.actor_optimizer, warmup)
        self.temperature_optimizer = torch.optim.Adam(
            self.temperature.parameters(), lr=config.temperature_learning_rate
        )

    def update(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """One policy update and one temperature update. Returns device tensors (no host sync)."""
        self.actor.train()
        loss, entropy, metrics = actor_loss(self.actor, self.temperature, batch, self.config)
        self.actor_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.clip_grad is not None:
            torch.nn.utils.clip_grad_norm_(self.actor.parameters(), self.config.clip_grad)
        self.actor_optimizer.step()
        self.actor_scheduler.step()
        self.temperature_optimizer.zero_grad(set_to_none=True)
        temperature_loss(self.temperature, entropy, self.target_entropy).backward()
        self.temperature_optimizer.step()
        metrics["temperature"] = self.temperature().detach()
        return metrics

    def act(self, *context: torch.Tensor) -> torch.Tensor:
        """The evaluation policy: tanh of the mean."""
        mean, _ = self.actor(*context)
        return torch.tanh(mean[:, -1]) * self.config.max_action

    def explore(self, *context: torch.Tensor) -> torch.Tensor:
        """The rollout policy: a sample."""
        mean, log_std = self.actor(*context)
        return sample_actions(mean[:, -1], log_std[:, -1])[0] * self.config.max_action

    def scalars(self) -> Dict[str, float]:
        """Host-side values for the train rows."""
        scheduler = self.actor_scheduler
        return {"learning_rate": float(scheduler.get_last_lr()[0]), "actor_updates": scheduler.last_epoch}

    def state_dict(self) -> Dict[str, Any]:
        return {name: part.state_dict() for name, part in vars(self).items() if hasattr(part, "state_dict")}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for name, part in vars(self).items():
            if hasattr(part, "state_dict"):
                part.load_state_dict(state[name])


# -------------------------------------------------------------------------------------------------
# Training: pretraining on the offline trajectories, then online iterations (a rollout, then updates).
# -------------------------------------------------------------------------------------------------
def train(config: TrainConfig) -> Dict[str, Any]:
    device = pick_device(config.device)
    dataset = load_dataset(config.dataset, config.allow_download)
    offline = dataset_trajectories(dataset, config.reward_bias)
    longest = max(len(t["rewards"]) for t in offline)
    if longest > config.episode_len:
        raise UserError(
            f"dataset has episodes of {longest} steps, more than episode_len={config.episode_len}; raise --episode_len"
        )
    run = Run(config, "odt")
    set_seed(config.train_seed, config.deterministic_torch)
    normaliser = state_stats(dataset.observations)
    buffer = TrajectoryBuffer(config.buffer_size, *normaliser, config.seq_len, config.reward_scale, device)
    buffer.initialise(offline)  # the online replay buffer starts with the top buffer_size by return
    learner = ODT(dataset.observations.shape[1], dataset.actions.shape[1], config, device)
    progress_state = {"step": 0, "env_steps": 0, "iterations": 0, "pretrained": {}, "eval": {}}
    checkpoint = run.restore(device)
    if checkpoint:
        learner.load_state_dict(checkpoint["learner"])
        buffer.load_state_dict(checkpoint["buffer"])
        progress_state = checkpoint["progress"]
    update = compile_update(learner.update, config.compile, device, list(vars(learner).values()))
    step = progress_state["step"]
    pretrain_data = None  # pretraining samples every offline trajectory, as both official repos do
    if step < config.pretrain_steps:  # not built when a run resumes in its online phase
        pretrain_data = TrajectoryBuffer(len(offline), *normaliser, config.seq_len, config.reward_scale, device)
        pretrain_data.initialise(offline)
    eval_envs = dataset.env.make_vector(config.eval_episodes)
    rollout_envs = dataset.env.make_vector(config.rollout_envs)

    def episodes(policy: Callable, envs: gym.vector.VectorEnv, target: float, seed: int) -> List[Dict[str, Any]]:
        """The family's runner, with this run's horizon, context, return-to-go scale and reward bias."""
        learner.actor.eval()
        settings = (config.episode_len, config.eval_context, config.reward_scale, config.reward_bias)
        return run_episodes(policy, envs, target, seed, normaliser, device, *settings, config.truncation_as_terminal)

    def evaluate() -> Dict[str, float]:
        return dataset.env.metrics(
            "eval", *episode_stats(episodes(learner.act, eval_envs, config.eval_rtg, config.eval_seed))
        )

    per_iteration = config.updates_per_iteration
    total = config.pretrain_steps + config.online_iterations * per_iteration
    progress = tqdm(total=total, initial=step, desc="ODT", dynamic_ncols=True)
    if step == 0 and config.pretrain_steps == 0:
        progress_state["pretrained"] = progress_state["eval"] = evaluate()
        run.log(0, progress_state["eval"])
    finished = step >= total
    while not finished:
        online_updates = step - config.pretrain_steps
        if online_updates >= 0 and progress_state["iterations"] == online_updates // per_iteration:
            rollout_start = time.perf_counter()  # this iteration's rollout is still to do
            run_round = lambda seed: episodes(learner.explore, rollout_envs, config.online_rtg, seed)
            new = collect_online(run_round, config.online_trajectories, config.online_transitions)
            buffer.add(new)
            new_steps = sum(t["length"] for t in new)
            progress_state["env_steps"] += new_steps
            progress_state["iterations"] += 1
            elapsed = time.perf_counter() - rollout_start
            run.log(
                step,
                {
                    **dataset.env.metrics("rollout", *episode_stats(new)),
                    "env_steps": progress_state["env_steps"],
                    "online_iterations": progress_state["iterations"],
                    "rollout_env_steps_per_second": new_steps / elapsed,
                    "buffer_trajectories": len(buffer),
                },
            )
            run.window_start += elapsed  # rollout time is not update throughput
        run.add(update((pretrain_data if step < config.pretrain_steps else buffer).sample(config.batch_size)))
        step += 1
        at_boundary = step > config.pretrain_steps and (step - config.pretrain_steps) % per_iteration == 0
        budget = config.max_online_transitions
        finished = step >= total or (at_boundary and budget is not None and progress_state["env_steps"] >= budget)
        phase_end = finished or step == config.pretrain_steps
        if step % config.log_every == 0 or phase_end or run.stopping:
            scalars = {f"train/{key}": value for key, value in learner.scalars().items()}
            run.log(step, {**run.flush(step), **scalars, "env_steps": progress_state["env_steps"]})
            progress.update(step - progress.n)
        if step % config.eval_every == 0 or phase_end:
            progress_state["eval"] = evaluate()
            if step == config.pretrain_steps:
                progress_state["pretrained"] = progress_state["eval"]
            run.log(step, progress_state["eval"])
            progress.set_postfix(score=progress_state["eval"].get("eval/normalized_score_mean"))
            run.window_start = time.perf_counter()  # evaluation time is not update throughput
        if step % config.checkpoint_every == 0 or phase_end or run.stopping:
            progress_state["step"] = step
            state = {"learner": learner.state_dict(), "buffer": buffer.state_dict(), "progress": progress_state}
            run.checkpoint(step, state)
    progress.close()
    eval_envs.close()
    rollout_envs.close()
    summary = {
        "algorithm": "ODT",
        "dataset": dataset.name,
        "env_id": dataset.env.env_id,
        "update_steps": step,
        "actor_updates": learner.actor_scheduler.last_epoch,
        "env_steps": progress_state["env_steps"],
        "online_iterations": progress_state["iterations"],
        "buffer_trajectories": len(buffer),
        **{key.replace("eval/", "pretrained/"): value for key, value in progress_state["pretrained"].items()},
        **progress_state["eval"],
    }
    return run.finish(summary)


def main() -> None:
    summary = train(parse_config(TrainConfig))
    print(
        f"\n{summary['algorithm']} on {summary['dataset']} ({summary['env_id']}): {summary['update_steps']} "
        f"updates, {summary['env_steps']} online env steps in {summary['online_iterations']} iterations"
    )
    print(f"{'':>20} {'return mean':>12} {'return std':>11} {'normalized':>11}")
    for label, prefix in (("after pretraining", "pretrained"), ("after fine-tuning", "eval")):
        if f"{prefix}/return_mean" in summary:
            score = summary.get(f"{prefix}/normalized_score_mean")
            print(
                f"{label:>20} {summary[f'{prefix}/return_mean']:>12.1f} {summary[f'{prefix}/return_std']:>11.1f} "
                f"{'n/a' if score is None else f'{score:.1f}':>11}"
            )
    print(f"run directory: {summary['run_dir']}")


# -------------------------------------------------------------------------------------------------
# Plumbing shared by every script (run directory, checkpoints, metrics, datasets and their envs).
# Synced from blocks/ by tools/sync_blocks.py: edit it there, not here.
# -------------------------------------------------------------------------------------------------
# === shared block: runtime (edit blocks/runtime.py, then run tools/sync_blocks.py) ===
class UserError(Exception):
    """Bad input (config, dataset, environment): one clear message and exit code 2, no traceback."""


def run_main(main: Callable[[], Any]) -> None:
    try:
        main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def parse_config(config_class: type, args: Optional[List[str]] = None) -> Any:
    """`--config_path x.yaml` plus CLI overrides; `--resume RUN_DIR` re-reads RUN_DIR/config.yaml."""
    joined: List[str] = []  # each "--key value" as "--key=value": argparse then takes "-1e-4" for a value
    for arg in sys.argv[1:] if args is None else args:
        if joined and joined[-1].startswith("--") and "=" not in joined[-1] and not arg.startswith("--"):
            joined[-1] += f"={arg}"
        else:
            joined.append(arg)
    flags, config_path = dict(arg.partition("=")[::2] for arg in joined if arg.startswith("--")), None
    if "--resume" in flags and "--config_path" not in flags:
        config_path = os.path.join(flags["--resume"], "config.yaml")
        if not os.path.isfile(config_path):
            raise UserError(f"cannot resume: {config_path} does not exist (is it a run directory?)")
    if "--config_path" in flags and not os.path.isfile(flags["--config_path"]):
        raise UserError(f"config file not found: '{flags['--config_path']}'")
    valid = [field.name for field in dataclasses.fields(config_class)]
    try:
        with open(flags.get("--config_path") or config_path or os.devnull) as file:
            yaml_keys = list(yaml.safe_load(file) or {})
    except (yaml.YAMLError, TypeError) as error:
        raise UserError(f"the config file is not a YAML mapping of keys to values ({error})") from None
    for key in [flag[2:] for flag in flags] + yaml_keys:
        if key not in valid + ["config_path", "help"]:
            raise UserError(f"unknown config key '{key}'{did_you_mean(key, valid)}. Valid keys: {', '.join(valid)}")
    for kind in (int, bool):  # pyrallis alone would read 10.5 as 10 and 3 as true
        pyrallis.decode.register(kind, functools.partial(exactly, kind))
    pyrallis.parsers.decoding.get_decoding_fn.cache_clear()  # forget decoders cached before these
    # pyrallis re-reads the script's source once per field when a YAML is given (about 2 s a parse): cache it.
    getsource, inspect.getsource = inspect.getsource, functools.lru_cache(inspect.getsource)
    try:
        return pyrallis.parse(config_class=config_class, config_path=config_path, args=joined)
    except Exception as error:  # pyrallis raises bare Exceptions for bad values, and __post_init__ ValueErrors
        raise UserError(f"invalid config: {str(error).strip()}") from None
    finally:
        inspect.getsource = getsource


def exactly(kind: type, value: Any) -> Any:
    if type(value) is not kind:
        raise ValueError(f"expected {'an integer' if kind is int else 'true or false'}, got {value!r}")
    return value


def did_you_mean(name: str, options: Any) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


RANGES = {  # check_fields groups: how each is written in messages, and the test
    "positive": ("> 0", lambda value: value > 0),
    "non_negative": (">= 0", lambda value: value >= 0),
    "below_one": ("in [0, 1)", lambda value: 0 <= value < 1),
    "open_unit": ("in (0, 1)", lambda value: 0 < value < 1),
}


def check_fields(config: Any, **groups: Tuple[str, ...]) -> None:
    """Range checks for a TrainConfig's __post_init__ (groups: RANGES), plus the fields every TrainConfig has.

    Tuples are checked element by element and None passes (an optional value left unset)."""
    if config.wandb_mode not in ("offline", "online", "disabled"):
        raise ValueError(f"wandb_mode must be offline, online or disabled, not '{config.wandb_mode}'")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", config.device):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:<index>, not '{config.device}'")
    groups["positive"] = (*groups.get("positive", ()), "log_every", "checkpoint_every", "keep_checkpoints")
    groups["non_negative"] = (*groups.get("non_negative", ()), "train_seed", "eval_seed")
    for group, names in groups.items():
        bound, test = RANGES[group]
        for name in names:
            value = getattr(config, name)
            if not all(test(item) for item in (value if isinstance(value, tuple) else [value] * (value is not None))):
                raise ValueError(f"{name} must be {bound}, not {value}")


def set_seed(seed: int, deterministic_torch: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic_torch)


def pick_device(device: str) -> torch.device:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.startswith("cuda") and int(device[5:] or 0) >= count:
        raise UserError(
            f"device '{device}' requested, but this machine has {count} CUDA device(s); use --device cpu or auto"
        )
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)


def compile_update(update: Callable, enabled: Optional[bool], device: torch.device, parts: Sequence[Any]) -> Callable:
    """The update as written, or (`compile`; default: on CUDA) under torch.compile, with CUDA graphs and TF32
    on CUDA. Compiled, the optimisers' lrs live in tensors, so a scheduler's change recompiles nothing."""
    enabled = device.type == "cuda" if enabled is None else enabled
    for optimizer in (part for part in parts if isinstance(part, torch.optim.Optimizer)):
        for group in optimizer.param_groups:
            # compiled Adam divides by the lr: an lr of 0 (a finished cosine resumed) would give NaN
            group["lr"] = torch.tensor(float(group["lr"]) or 1e-20) if enabled else float(group["lr"])
    if not enabled:
        return update
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch._dynamo.config.recompile_limit = 64  # each optimiser compiles its own step, twice (empty, then full state)
    return torch.compile(update, mode="reduce-overhead" if device.type == "cuda" else None)


class Run:
    """A run directory: config.yaml, metrics.jsonl (mirrored to wandb) and checkpoints/ with the RNG states.

    Per-update metrics are summed on the device and averaged at each flush (one host sync per window).
    SIGINT/SIGTERM set `stopping`; the loop then checkpoints, and `checkpoint` exits once written.
    """

    def __init__(self, config: Any, algorithm: str) -> None:
        self.config, self.stop_signal, self.wandb = config, None, None
        self.sums: Dict[str, Any] = {}  # per metric: the sum of its device tensors since the last flush
        self.counts: Dict[str, int] = {}
        self.latest: Dict[str, float] = {}  # the newest value of every metric logged: the summary keeps them
        self.rows = 0  # rows in metrics.jsonl; a checkpoint records how many were written before it
        self.started = self.window_start = time.perf_counter()
        self.config_text = pyrallis.dump(dataclasses.replace(config, resume=None))
        try:
            self.dir = self.resume_dir() if config.resume else self.new_dir(algorithm)
            if self.dir is None:  # a finished run resumed with the same config
                print(f"run {config.resume} is complete (summary.json); raise its budget to continue it")
                sys.exit(0)
        except OSError as error:
            raise UserError(f"cannot write the run directory ({error}); choose a writable --run_dir") from None
        if config.wandb_mode != "disabled":
            import wandb

            id_file = self.dir / "wandb_id.txt"
            if not id_file.exists():
                id_file.write_text(os.urandom(6).hex())
            names = {"project": config.project, "group": config.group, "name": config.name, "dir": self.dir}
            settings = {"mode": config.wandb_mode, "resume": "allow", "config": dataclasses.asdict(config)}
            self.wandb = wandb.init(**names, id=id_file.read_text(), **settings)
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self._on_signal)

    def new_dir(self, algorithm: str) -> Path:
        config = self.config
        source = getattr(config, "dataset", None) or config.env  # online scripts name an env, maybe no dataset
        tag = Path(source).stem if source.endswith((".hdf5", ".h5")) else source
        name = f"seed{config.train_seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = Path(config.run_dir or Path("runs", algorithm, tag.replace(":", "_").replace("/", "_"), name))
        # What a start that failed before its first checkpoint leaves behind may be written over; run.log is the
        # log a launcher (benchmarks/sweep.py) keeps of this script's output, there before the script starts.
        content = {path.name for path in run_dir.glob("*")} - {"run.log"}
        leftovers = {"config.yaml", "checkpoints", "metrics.jsonl", "wandb_id.txt", "wandb"}
        checkpointed = any((run_dir / "checkpoints").glob("step_*"))
        failed_start = "config.yaml" in content and content <= leftovers and not checkpointed
        if content and not failed_start:
            raise UserError(
                f"run directory {run_dir} already has content; pass --resume {run_dir} to continue it "
                "or choose another --run_dir (nothing was overwritten)"
            )
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        (run_dir / "config.yaml").write_text(self.config_text)
        return run_dir

    def resume_dir(self) -> Optional[Path]:
        """The run directory, or None when the run finished with this very config. A changed config (a larger
        budget, say) becomes config.yaml; the one it replaces, and the summary it led to, keep their step."""
        run_dir = Path(self.config.resume)
        newest = max((run_dir / "checkpoints").glob("step_*.pt"), default=None)
        if newest is None:
            raise UserError(f"cannot resume: no checkpoint in {run_dir / 'checkpoints'}")
        if (run_dir / "config.yaml").read_text() == self.config_text:
            return None if (run_dir / "summary.json").exists() else run_dir
        for name in ("config.yaml", "summary.json"):
            if (run_dir / name).exists():
                os.replace(run_dir / name, run_dir / name.replace(".", f".{newest.stem}.", 1))
        (run_dir / "config.yaml").write_text(self.config_text)
        return run_dir

    def _on_signal(self, number: int, frame: Any) -> None:
        if self.stop_signal is not None:  # a second signal stops at once
            raise KeyboardInterrupt
        self.stop_signal = number

    @property
    def stopping(self) -> bool:
        return self.stop_signal is not None

    def restore(self, device: torch.device) -> Optional[Dict[str, Any]]:
        """With --resume: the newest checkpoint, RNG states restored, and the metric rows after it dropped."""
        if not self.config.resume:
            return None
        newest = max((self.dir / "checkpoints").glob("step_*.pt"))
        try:  # weights_only: tensors and plain values only, so loading runs no code from the file
            checkpoint = torch.load(newest, map_location=device, weights_only=True)
            rng, self.rows, self.latest = checkpoint["rng"], checkpoint["metrics_rows"], checkpoint["latest_metrics"]
        except (pickle.UnpicklingError, RuntimeError, KeyError) as error:
            raise UserError(
                f"cannot resume from {newest}: not a checkpoint this script writes ({error}); move it away to resume "
                "from the one before, or start a new run"
            ) from None
        random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
        np.random.set_state(("MT19937", rng["numpy"][0].cpu().numpy().astype(np.uint32), *rng["numpy"][1:]))
        torch.set_rng_state(rng["torch"].cpu())
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([state.cpu() for state in rng["cuda"]])
        metrics_path = self.dir / "metrics.jsonl"  # the loop writes the rows after the checkpoint again
        if metrics_path.exists():
            metrics_path.write_text("".join(metrics_path.read_text().splitlines(keepends=True)[: self.rows]))
        print(f"resuming {self.dir} from step {checkpoint['step']}")
        return checkpoint

    def add(self, metrics: Dict[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + value.detach().float()
            self.counts[key] = self.counts.get(key, 0) + 1

    def flush(self, step: int) -> Dict[str, float]:
        """Means since the last flush as train/<key>, plus updates per second; a non-finite mean stops the run."""
        if not self.sums:
            return {}
        means = torch.stack(list(self.sums.values())).tolist()
        metrics = {f"train/{key}": mean / self.counts[key] for key, mean in zip(self.sums, means)}
        bad = [key for key, value in metrics.items() if not math.isfinite(value)]
        if bad:
            checkpoints = sorted((self.dir / "checkpoints").glob("step_*.pt"))
            resume = f"; the newest good checkpoint is {checkpoints[-1]}" if checkpoints else ""
            raise UserError(
                f"{', '.join(bad)} became non-finite in the updates before step {step}. Likely causes: learning "
                f"rates too high for this data, or extreme rewards or states in the dataset (try normalising){resume}"
            )
        metrics["train/updates_per_second"] = max(self.counts.values()) / (time.perf_counter() - self.window_start)
        self.sums, self.counts, self.window_start = {}, {}, time.perf_counter()
        return metrics

    def log(self, step: int, metrics: Dict[str, float]) -> None:
        with open(self.dir / "metrics.jsonl", "a") as file:
            file.write(json.dumps({"step": step, **metrics}) + "\n")
        self.rows += 1
        self.latest.update(metrics)
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def checkpoint(self, step: int, state: Dict[str, Any]) -> None:
        """checkpoints/step_<step>.pt with the RNG states, written atomically; keeps the newest keep_checkpoints.

        Everything in it is a tensor or a plain Python value, so it loads with weights_only=True."""
        python_rng, numpy_rng = random.getstate(), np.random.get_state()
        rng = {"python": python_rng, "numpy": [torch.from_numpy(numpy_rng[1].astype(np.int64)), *numpy_rng[2:]]}
        rng["torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        path = self.dir / "checkpoints" / f"step_{step:09d}.pt"
        run_state = {"step": step, "rng": rng, "metrics_rows": self.rows, "latest_metrics": self.latest}
        torch.save({**run_state, **state}, path.with_suffix(".partial"))
        os.replace(path.with_suffix(".partial"), path)
        for old in sorted(path.parent.glob("step_*.pt"))[: -self.config.keep_checkpoints]:
            old.unlink()
        if self.stopping:
            print(f"\nstopped by signal {self.stop_signal}; checkpoint written to {path}", file=sys.stderr)
            sys.exit(128 + self.stop_signal)

    def finish(self, summary: Dict[str, Any]) -> Dict[str, Any]:
        """Writes summary.json (the newest eval/ metrics, the summary given, the wall time and the run directory)."""
        newest_eval = {key: value for key, value in self.latest.items() if key.startswith("eval/")}
        summary = {
            **newest_eval,
            **summary,
            "wall_time_s": time.perf_counter() - self.started,
            "run_dir": str(self.dir),
        }
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if self.wandb is not None:
            self.wandb.summary.update(summary)
            self.wandb.finish()
        return summary


# === end shared block: runtime ===


# === shared block: data (edit blocks/data.py, then run tools/sync_blocks.py) ===
D4RL_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl/"
# D4RL locomotion domain -> (Gymnasium env and kwargs, D4RL's reference returns of a random and an expert policy).
LOCOMOTION = {
    "hopper": ("Hopper-v5", {}, -20.272305, 3234.3),
    "halfcheetah": ("HalfCheetah-v5", {}, -280.178953, 12135.0),
    "walker2d": ("Walker2d-v5", {}, 1.629008, 4592.3),
    "ant": ("Ant-v4", {"use_contact_forces": True}, -325.6, 3879.7),  # D4RL's 111-dim observation
}
LOCOMOTION_LEVELS = ("random", "medium", "expert", "medium-replay", "medium-expert", "full-replay")


@dataclass(frozen=True)
class EnvSpec:
    """How to build a dataset's evaluation env and normalise its returns."""

    env_id: str
    kwargs: Dict[str, Any] = field(default_factory=dict)
    max_episode_steps: Optional[int] = None
    ref_min_score: Optional[float] = None
    ref_max_score: Optional[float] = None
    reports_success: bool = False  # goal-reaching envs put a 0/1 `success` in the step info
    adapter: str = ""  # a d4rl_compat adapter that gives the modern env D4RL's observation layout

    def make(self) -> gym.Env:
        if self.env_id not in gym.registry:  # AntMaze, PointMaze, Adroit, Kitchen
            gym.register_envs(importlib.import_module("gymnasium_robotics"))
        env = gym.make(self.env_id, max_episode_steps=self.max_episode_steps, **self.kwargs)
        return d4rl_compat(self.env_id).wrap(env, self.adapter) if self.adapter else env

    def make_vector(self, num_envs: int) -> gym.vector.VectorEnv:
        # Sync, not async: on few cores batching the policy across envs is where time is saved.
        return gym.vector.SyncVectorEnv([self.make for _ in range(num_envs)])

    def metrics(self, prefix: str, returns: np.ndarray, lengths: np.ndarray, success: np.ndarray) -> Dict[str, float]:
        """Return, D4RL-normalised score (when reference scores are known), length and success rate."""
        metrics = {"return_mean": np.mean(returns), "return_std": np.std(returns), "length_mean": np.mean(lengths)}
        if self.ref_min_score is not None and self.ref_max_score is not None:
            scores = 100.0 * (np.asarray(returns) - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)
            metrics.update(normalized_score_mean=scores.mean(), normalized_score_std=scores.std())
        if self.reports_success:
            metrics["success_rate"] = np.mean(success)
        return {f"{prefix}/{key}": float(value) for key, value in metrics.items()}


@dataclass
class Dataset:
    """Transitions in file order; an episode ends at a terminal (true end) or a timeout (time limit)."""

    name: str
    observations: np.ndarray  # (N, obs_dim) float32
    actions: np.ndarray  # (N, act_dim) float32
    rewards: np.ndarray  # (N,) float32
    terminals: np.ndarray  # (N,) bool
    timeouts: np.ndarray  # (N,) bool
    env: EnvSpec
    extras: Dict[str, np.ndarray] = field(default_factory=dict)  # next_observations, where the file has them


def d4rl_compat(name: str) -> Any:
    try:
        return importlib.import_module("d4rl_compat")
    except ImportError:
        raise UserError(
            f"dataset '{name}' needs the d4rl_compat package of this repository (AntMaze, Adroit, Maze2D, Kitchen, "
            "v0 names): run `pip install -e .` in the repository, or use a v1/v2 locomotion name, an hdf5 file "
            "or a minari:<id>"
        ) from None


def load_dataset(name: str, allow_download: bool = True) -> Dataset:
    """`name`: a D4RL name (hopper-medium-v2), `minari:<id>`, or a path to a D4RL-format hdf5 file."""
    if name.startswith("minari:"):
        dataset = load_minari(name.removeprefix("minari:"), allow_download)
    elif name.endswith((".hdf5", ".h5")) or os.path.sep in name:
        how = "regenerate it with `python -m d4rl_compat.generate` (or copy it again)"
        if not os.path.isfile(name):
            raise UserError(f"dataset file {name} does not exist; write one with `python -m d4rl_compat.generate`")
        arrays, meta = read_hdf5(Path(name), how)
        if "env_id" not in meta:
            raise UserError(
                f"{name} has no metadata/env_id, so its evaluation env is unknown; write metadata/env_id "
                "(and metadata/env_kwargs as JSON) into the file, or load a D4RL file by its D4RL name"
            )
        number = lambda key, kind: None if meta.get(key) is None else kind(meta[key])
        fields = number("max_episode_steps", int), number("ref_min_score", float), number("ref_max_score", float)
        fields += bool(meta.get("reports_success", False)), meta.get("adapter", "")  # d4rl_compat's maze2d files
        dataset = make_dataset(name, arrays, EnvSpec(meta["env_id"], json.loads(meta.get("env_kwargs", "{}")), *fields))
    else:
        domain, _, level = name.rpartition("-v")[0].partition("-")
        if domain in LOCOMOTION and level in LOCOMOTION_LEVELS and name[-3:] in ("-v1", "-v2"):
            env_id, kwargs, low, high = LOCOMOTION[domain]
            url = f"{D4RL_URL}gym_mujoco_{name[-2:]}/{domain}_{level.replace('-', '_')}-{name[-2:]}.hdf5"
            env = EnvSpec(env_id, dict(kwargs), 1000, low, high)
        elif name in d4rl_compat(name).D4RL_FILES:
            fields = d4rl_compat(name).d4rl_env_spec(name)
            url, env = d4rl_compat(name).dataset_url(name), EnvSpec(**{k: v for k, v in fields.items() if k != "note"})
        else:
            names = [f"{d}-{level}-v2" for d in LOCOMOTION for level in LOCOMOTION_LEVELS]
            try:
                names += list(importlib.import_module("d4rl_compat").D4RL_FILES)
            except ImportError:
                pass  # suggestions from the locomotion names alone
            raise UserError(
                f"unknown dataset '{name}'{did_you_mean(name, names)}: not a D4RL name (e.g. hopper-medium-v2), "
                "not 'minari:<dataset id>' and not a path to an .hdf5 file"
            )
        path = Path(os.environ.get("D4RL_DATASET_DIR", "~/.d4rl/datasets")).expanduser() / os.path.basename(url)
        how = f"download it with `curl -L --create-dirs -o {path} {url}`, or set D4RL_DATASET_DIR to its folder"
        if not path.exists():
            if not allow_download:
                raise UserError(f"D4RL dataset '{name}' not found at {path} (downloads are off); {how}")
            partial = path.with_suffix(".partial")  # an interrupted or wrong download never takes the name
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with urllib.request.urlopen(url, timeout=30) as source, open(partial, "wb") as file:
                    shutil.copyfileobj(source, file)
            except OSError as error:
                raise UserError(
                    f"D4RL dataset '{name}' not at {path}; downloading {url} failed ({error}); {how}"
                ) from None
            if not h5py.is_hdf5(partial):
                partial.unlink()
                raise UserError(f"downloading {url} gave something other than hdf5 (removed); {how}")
            os.replace(partial, path)
        arrays = read_hdf5(path, how)[0]
        if "timeouts" not in arrays:  # D4RL's own rule for its files without them (v0)
            arrays["timeouts"] = d4rl_compat(name).timeouts_every(env.max_episode_steps, arrays["terminals"])
        dataset = make_dataset(name, arrays, env)
    validate_dataset(dataset)
    return dataset


def read_hdf5(path: Path, how: str = "write or fetch it again") -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """The flat arrays and the `metadata/` group of a D4RL-format file; `how`: how to get the file again."""
    keys = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
    try:
        with h5py.File(path, "r") as file:
            if any(key not in file for key in keys[:4]):
                raise UserError(f"{path} is not a D4RL-format file: missing {[k for k in keys[:4] if k not in file]}")
            arrays = {key: file[key][()] for key in keys if key in file}
            meta = {key: value[()] for key, value in file["metadata"].items()} if "metadata" in file else {}
    except OSError as error:
        raise UserError(
            f"cannot read {path} ({error}): the file is truncated or corrupt; delete it and {how}"
        ) from None
    return arrays, {key: value.decode() if isinstance(value, bytes) else value for key, value in meta.items()}


def load_minari(dataset_id: str, allow_download: bool) -> Dataset:
    import minari

    try:
        source = minari.load_dataset(dataset_id, download=allow_download)
    except Exception as error:  # minari raises several types for a missing or unreachable dataset
        store = os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")
        raise UserError(
            f"Minari dataset '{dataset_id}' could not be loaded from {store} ({error})"
            f"{did_you_mean(dataset_id, minari.list_local_datasets())}; download it with "
            f"`minari download {dataset_id}` on a machine with network"
        ) from None
    episodes = list(source.iterate_episodes())
    if episodes and isinstance(episodes[0].observations, dict):
        raise UserError(f"Minari dataset '{dataset_id}' has dict observations, which no mapping flattens yet")
    columns = {"observations": lambda e: e.observations[:-1], "next_observations": lambda e: e.observations[1:]}
    columns.update(actions=lambda e: e.actions, rewards=lambda e: e.rewards, terminals=lambda e: e.terminations)
    columns["timeouts"] = lambda e: e.truncations
    arrays = {key: np.concatenate([column(episode) for episode in episodes]) for key, column in columns.items()}
    env, meta = source.recover_environment(eval_env=True), source.storage.metadata  # its evaluation env
    scores = meta.get("ref_min_score"), meta.get("ref_max_score")
    spec = EnvSpec(env.spec.id, dict(env.spec.kwargs), env.spec.max_episode_steps, *scores)
    if env.spec.id == "d4rl_compat/D4RLFrame-v0":  # D4RL's layout through an adapter (d4rl_compat.minari_export)
        kw = env.spec.kwargs  # the arguments of d4rl_compat.envs.make_adapted
        spec = EnvSpec(kw["env_id"], kw["env_kwargs"], kw["limit"], *scores, kw["reports_success"], kw["adapter"])
    env.close()
    return make_dataset(f"minari:{dataset_id}", arrays, spec)


def make_dataset(name: str, arrays: Dict[str, np.ndarray], env: EnvSpec) -> Dataset:
    if "timeouts" not in arrays:
        raise UserError(
            f"dataset '{name}' has no 'timeouts' array. Without it the end of an episode cut by the time limit "
            "looks like the start of the next, and episodes would merge: write 'timeouts' (true at each "
            "time-limit end) into the file"
        )
    for key in ("observations", "actions", "rewards", "next_observations"):
        if key in arrays and not np.issubdtype(arrays[key].dtype, np.number):
            raise UserError(f"dataset '{name}': '{key}' holds {arrays[key].dtype} values, not numbers")
    count = len(arrays["observations"])
    if any(len(values) != count for values in arrays.values()):
        raise UserError(f"dataset '{name}': arrays of different lengths { ({k: len(v) for k, v in arrays.items()}) }")
    observations, actions = (arrays[key].astype(np.float32).reshape(count, -1) for key in ("observations", "actions"))
    rewards = arrays["rewards"].astype(np.float32).reshape(count)
    for key in ("terminals", "timeouts"):
        if not np.isin(arrays[key], (0, 1)).all():
            raise UserError(f"dataset '{name}': '{key}' must hold only 0/1 (or booleans), one per transition")
    terminals, timeouts = (arrays[key].astype(bool).reshape(count) for key in ("terminals", "timeouts"))
    extras = {key: arrays[key].reshape(count, -1) for key in ("next_observations",) if key in arrays}
    if extras and extras["next_observations"].shape != observations.shape:
        raise UserError(
            f"dataset '{name}': next_observations of shape {extras['next_observations'].shape}, "
            f"observations {observations.shape}"
        )
    return Dataset(name, observations, actions, rewards, terminals, timeouts, env, extras)


def validate_dataset(dataset: Dataset) -> None:
    """Rejects NaN/inf values and shapes that do not match the evaluation env."""
    arrays = {"observations": dataset.observations, "actions": dataset.actions, "rewards": dataset.rewards}
    for key, values in {**arrays, **dataset.extras}.items():
        bad = ~np.isfinite(values.reshape(len(values), -1).astype(np.float64)).all(axis=1)
        if bad.any():
            raise UserError(
                f"dataset '{dataset.name}' has {int(bad.sum())} rows with NaN or inf in '{key}' "
                f"(first at row {int(np.argmax(bad))}); clean or regenerate the file"
            )
    try:
        env = dataset.env.make()
    except gym.error.Error as error:
        raise UserError(f"dataset '{dataset.name}': cannot build env '{dataset.env.env_id}' ({error})") from None
    shapes = (env.observation_space.shape[0], env.action_space.shape[0])
    env.close()
    if (dataset.observations.shape[1], dataset.actions.shape[1]) != shapes:
        raise UserError(
            f"dataset '{dataset.name}' has {dataset.observations.shape[1]}-dim observations and "
            f"{dataset.actions.shape[1]}-dim actions, but its env {dataset.env.env_id} has {shapes[0]} and "
            f"{shapes[1]}: the data was not recorded in this env (check metadata/env_id and env_kwargs)"
        )


def episode_bounds(terminals: np.ndarray, timeouts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Start and (exclusive) end index of every episode; a trailing unfinished episode is kept."""
    ends = np.flatnonzero(terminals | timeouts) + 1
    if len(ends) == 0 or ends[-1] != len(terminals):
        ends = np.append(ends, len(terminals))
    return np.concatenate([[0], ends[:-1]]), ends


def state_stats(observations: np.ndarray, eps: float = 1e-6) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and std that normalise states; fixed once the dataset is loaded."""
    return observations.mean(0), observations.std(0) + eps


def step_success(infos: Dict[str, Any], num_envs: int) -> np.ndarray:
    """Per env of a vector env: did this step report reaching the goal (info['success'])?"""
    if "success" not in infos:
        return np.zeros(num_envs, dtype=bool)
    return np.asarray(infos["success"], dtype=bool) & np.asarray(infos.get("_success", True), dtype=bool)


# === end shared block: data ===


if __name__ == "__main__":
    run_main(main)
