"""Decision Transformer (Chen et al. 2021, https://arxiv.org/abs/2106.01345), offline, in one file.

Sequences of (return-to-go, state, action) tokens go through a causal transformer; the action is
read from each state token and trained by masked MSE. At evaluation the model is conditioned on
a target return, which drops by each reward received.

    python algorithms/offline/dt.py --config_path configs/offline/dt/hopper/medium_v2.yaml

Config names follow CORL, except `dataset` (CORL: env_name), which also takes `minari:<id>` or an
hdf5 path, and `run_dir` (CORL: checkpoints_path). Differences from CORL that cost nothing in
clarity: evaluation runs all episodes of a target return in one vector env with one batched
forward per step; the dataset lives on the device and windows are gathered there; metrics are
averaged over `log_every` steps; runs write a run directory and resume.
"""

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
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

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
    group: str = "DT"
    name: str = "DT"
    wandb_mode: str = "offline"  # offline (no account, no network), online, or disabled
    # model
    embedding_dim: int = 128
    num_layers: int = 3
    num_heads: int = 1
    seq_len: int = 20
    episode_len: int = 1000  # timestep table size is episode_len + seq_len
    attention_dropout: float = 0.1
    residual_dropout: float = 0.1
    embedding_dropout: float = 0.1
    max_action: float = 1.0
    activation: str = "gelu"  # of the MLP in each transformer block (CORL: GELU)
    timestep_embedding: bool = True  # learned embedding of episode time (original DT); false: none
    # data
    dataset: str = "halfcheetah-medium-v2"  # D4RL name, minari:<id>, or path to a D4RL-format hdf5
    allow_download: bool = True  # fetch a missing D4RL file into the d4rl cache directory
    reward_scale: float = 0.001
    # optimisation
    learning_rate: float = 1e-4
    betas: Tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    clip_grad: Optional[float] = 0.25
    batch_size: int = 64
    update_steps: int = 100_000
    warmup_steps: int = 10_000
    # evaluation
    target_returns: Tuple[float, ...] = (12000.0, 6000.0)
    eval_episodes: int = 100
    eval_every: int = 10_000
    eval_seed: int = 42
    # run
    train_seed: int = 10
    deterministic_torch: bool = False
    device: str = "auto"  # auto: cuda when available, else cpu
    compile: Optional[bool] = None  # torch.compile the update, with CUDA graphs on CUDA; default: on for CUDA only
    bf16: bool = False  # bf16 autocast inside the transformer (for CUDA); its output and the losses stay float32
    run_dir: Optional[str] = None  # default: runs/dt/<dataset>/seed<train_seed>-<time>
    resume: Optional[str] = None  # a run directory to continue from its newest checkpoint
    log_every: int = 100
    checkpoint_every: int = 10_000
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        model = ("embedding_dim", "num_layers", "num_heads", "seq_len", "episode_len", "max_action", "reward_scale")
        counts = ("batch_size", "update_steps", "warmup_steps", "eval_episodes", "eval_every", "learning_rate")
        fractions = ("attention_dropout", "residual_dropout", "embedding_dropout", "betas")
        check_fields(self, positive=(*model, *counts, "clip_grad"), non_negative=("weight_decay",), below_one=fractions)
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


def train_step(
    model: DecisionTransformer,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batch: Tuple[torch.Tensor, ...],
    clip_grad: Optional[float],
) -> torch.Tensor:
    """One gradient step on the MSE of the predicted actions over real steps; returns the loss on the device.

    CORL averages over all positions, padding included, which only rescales the loss batch by batch."""
    model.train()
    states, actions, returns_to_go, timesteps, mask = batch
    loss = masked_mean(((model(states, actions, returns_to_go, timesteps) - actions) ** 2).mean(-1), mask)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    optimizer.step()
    scheduler.step()
    return loss.detach()


class SequenceData:
    """The whole dataset on the device; training windows are gathered there, no DataLoader.

    Windows of seq_len steps start anywhere in an episode and are right-padded (zeros, mask
    False) where the episode ends first.
    """

    def __init__(self, dataset: "Dataset", seq_len: int, reward_scale: float, device: torch.device):
        starts, ends = episode_bounds(dataset.terminals, dataset.timeouts)
        self.episode_lengths = lengths = ends - starts
        self.state_mean, self.state_std = state_stats(dataset.observations)
        # return-to-go: the undiscounted sum of the rewards from each step to its episode's end
        suffix = np.concatenate([np.cumsum(dataset.rewards[::-1], dtype=np.float64)[::-1], [0.0]])
        returns_to_go = (suffix[:-1] - suffix[np.repeat(ends, lengths)]).astype(np.float32) * reward_scale
        as_tensor = lambda array, dtype=torch.float32: torch.as_tensor(array, dtype=dtype, device=device)
        self.states = as_tensor((dataset.observations - self.state_mean) / self.state_std)
        self.actions = as_tensor(dataset.actions)
        self.returns_to_go = as_tensor(returns_to_go)
        self.timesteps = as_tensor(np.arange(len(dataset.rewards)) - np.repeat(starts, lengths), torch.long)
        self.episode_end = as_tensor(np.repeat(ends, lengths), torch.long)
        self.offsets = torch.arange(seq_len, device=device)

    def sample(self, batch_size: int) -> Tuple[torch.Tensor, ...]:
        # A uniform step is the same as CORL's episode drawn with probability proportional to its
        # length followed by a uniform start inside it.
        start = torch.randint(0, len(self.states), (batch_size,), device=self.states.device)
        index = start[:, None] + self.offsets
        episode_end = self.episode_end[start][:, None]
        mask = index < episode_end
        index = torch.minimum(index, episode_end - 1)
        keep = mask.to(torch.float32)
        return (
            self.states[index] * keep[..., None],
            self.actions[index] * keep[..., None],
            self.returns_to_go[index] * keep,
            self.timesteps[index] * mask,
            mask,
        )


def evaluate(
    model: DecisionTransformer, envs: gym.vector.VectorEnv, config: TrainConfig, data: SequenceData, env: "EnvSpec"
) -> Dict[str, float]:
    """`eval_episodes` episodes per target return, through the family's episode runner (dt_rollout)."""
    model.eval()
    policy = lambda *context: model(*context)[:, -1]
    normaliser, settings = (data.state_mean, data.state_std), (config.episode_len, config.seq_len, config.reward_scale)
    metrics = {}
    for target in config.target_returns:
        episodes = run_episodes(policy, envs, target, config.eval_seed, normaliser, data.states.device, *settings)
        target_metrics = env.metrics("eval", *episode_stats(episodes))
        metrics.update({key.replace("eval/", f"eval/{target:g}_"): value for key, value in target_metrics.items()})
    return metrics


def train(config: TrainConfig) -> Dict[str, Any]:
    device = pick_device(config.device)
    dataset = load_dataset(config.dataset, config.allow_download)
    data = SequenceData(dataset, config.seq_len, config.reward_scale, device)
    if data.episode_lengths.max() > config.episode_len:
        raise UserError(
            f"dataset has episodes of {data.episode_lengths.max()} steps, more than episode_len="
            f"{config.episode_len} (the timestep table size); raise --episode_len"
        )
    run = Run(config, "dt")
    set_seed(config.train_seed, config.deterministic_torch)
    model = DecisionTransformer(dataset.observations.shape[1], dataset.actions.shape[1], config).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, betas=config.betas
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda steps: min((steps + 1) / config.warmup_steps, 1))
    parts, step = {"model": model, "optimizer": optimizer, "scheduler": scheduler}, 0
    checkpoint = run.restore(device)
    if checkpoint:
        for name, part in parts.items():
            part.load_state_dict(checkpoint[name])
        step = checkpoint["step"]
    update = compile_update(train_step, config.compile, device, [optimizer])
    envs = dataset.env.make_vector(config.eval_episodes)
    progress = tqdm(total=config.update_steps, initial=step, desc="DT", dynamic_ncols=True)
    eval_metrics: Dict[str, float] = {}
    while step < config.update_steps:
        run.add({"loss": update(model, optimizer, scheduler, data.sample(config.batch_size), config.clip_grad)})
        step += 1
        finished = step == config.update_steps
        if step % config.log_every == 0 or finished or run.stopping:
            metrics = run.flush(step)
            run.log(step, {**metrics, "train/learning_rate": float(scheduler.get_last_lr()[0])})
            progress.update(step - progress.n)
            progress.set_postfix(loss=f"{metrics['train/loss']:.4f}")
        if step % config.eval_every == 0 or finished:
            eval_metrics = evaluate(model, envs, config, data, dataset.env)
            run.log(step, eval_metrics)
            run.window_start = time.perf_counter()  # evaluation time is not training throughput
        if step % config.checkpoint_every == 0 or finished or run.stopping:
            run.checkpoint(step, {name: part.state_dict() for name, part in parts.items()})
    progress.close()
    envs.close()
    return run.finish(
        {"algorithm": "DT", "dataset": dataset.name, "env_id": dataset.env.env_id, "update_steps": step, **eval_metrics}
    )


def main() -> None:
    config = parse_config(TrainConfig)
    summary = train(config)
    print(f"\nDT on {summary['dataset']} ({summary['env_id']}) after {summary['update_steps']} updates")
    print(f"{'target return':>14} {'return mean':>12} {'return std':>11} {'normalized':>11}")
    for target in config.target_returns:
        score = summary.get(f"eval/{target:g}_normalized_score_mean")
        print(
            f"{target:>14g} {summary[f'eval/{target:g}_return_mean']:>12.1f} "
            f"{summary[f'eval/{target:g}_return_std']:>11.1f} {'n/a' if score is None else f'{score:.1f}':>11}"
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
