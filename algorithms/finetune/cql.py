"""CQL (Kumar et al. 2020, https://arxiv.org/abs/2006.04779), offline-to-online fine-tuning, in one file.

    python algorithms/finetune/cql.py --config_path configs/finetune/cql/antmaze/umaze_v2.yaml

SAC with twin critics plus a penalty on the soft maximum of Q over uniform and policy actions
minus Q of the dataset action; the penalty stays on during fine-tuning. The official Cal-QL
code's CQL baseline: algorithms/finetune/cal_ql.py is this script plus the calibration.

The official Cal-QL loop: `offline_iterations` updates on the dataset; then, repeatedly, one
stochastic episode is collected and len(episode) x `utd_ratio` updates run, each batch
int(batch_size x mixing_ratio) rows from the dataset and the rest from an online-only buffer.
Evaluation every `offline_eval_freq` updates offline and every `online_eval_freq` env steps online;
the regret counts the online ones, fine-tuning step 0 (the switch) included.
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
    group: str = "CQL-finetune"
    name: str = "CQL-finetune"
    wandb_mode: str = "offline"  # offline (no account, no network), online, or disabled
    # data
    dataset: str = "hopper-medium-v2"  # D4RL name (CORL: env), minari:<id>, or path to a D4RL-format hdf5
    allow_download: bool = True  # fetch a missing D4RL file into the d4rl cache directory
    normalize: bool = True  # states by the dataset's mean and std, as CORL (official code, non-locomotion configs: off)
    reward_scale: float = 1.0  # training reward = raw * reward_scale + reward_bias, offline and online
    reward_bias: float = 0.0
    discount: float = 0.99
    batch_size: int = 256
    # CQL (defaults are the official ConservativeSAC's, Cal-QL repository; CORL's locomotion values in comments)
    actor_hidden_dims: Tuple[int, ...] = (256, 256)  # official scripts: 2 x 256 antmaze, 2 x 512 adroit (CORL: 3 x 256)
    critic_hidden_dims: Tuple[int, ...] = (256, 256)  # antmaze 4 x 256, adroit 3 x 512 (CORL: 3 x 256, antmaze 5)
    orthogonal_init: bool = True  # hidden gain sqrt(2), output gain 1e-2 (CORL: sqrt(2) on the output too)
    policy_lr: float = 1e-4  # CORL offline: 3e-5
    qf_lr: float = 3e-4
    soft_target_update_rate: float = 5e-3
    target_update_period: int = 1
    alpha_multiplier: float = 1.0
    use_automatic_entropy_tuning: bool = True  # target entropy -action_dim, log alpha init 0
    backup_entropy: bool = False
    cql_n_actions: int = 10
    cql_importance_sample: bool = True
    cql_lagrange: bool = False
    cql_lagrange_init: float = 1.0  # initial log alpha' (official; CORL: 0)
    cql_target_action_gap: float = 1.0  # used with cql_lagrange only (CORL: -1)
    cql_temp: float = 1.0
    cql_alpha: float = 5.0  # official cql_min_q_weight (CORL: 10)
    cql_max_target_backup: bool = True  # max over n next-action samples (CORL: False)
    cql_clip_diff_min: float = -1e30  # no clipping (CORL: -inf, which YAML round-trips badly)
    cql_clip_diff_max: float = 1e30
    # fine-tuning
    offline_iterations: int = 1_000_000  # gradient updates on the dataset alone
    online_iterations: int = 1_000_000  # env steps of fine-tuning
    utd_ratio: int = 1  # updates per collected env step (run after each episode)
    mixing_ratio: Optional[float] = 0.5  # offline share of online batches (0: online rows only); null: one buffer
    # evaluation
    offline_eval_freq: int = 50_000  # updates of the offline phase (official antmaze; adroit 2000)
    online_eval_freq: int = 2000  # env steps of fine-tuning (official antmaze and adroit)
    n_episodes: int = 20
    eval_seed: int = 42
    # run
    train_seed: int = 0  # CORL: seed
    deterministic_torch: bool = False
    device: str = "auto"  # auto: cuda when available, else cpu
    compile: Optional[bool] = None  # torch.compile the update, with CUDA graphs on CUDA; default: on for CUDA only
    run_dir: Optional[str] = None  # default: runs/<algorithm>/<dataset>/seed<train_seed>-<time>
    resume: Optional[str] = None  # a run directory to continue from its newest checkpoint
    log_every: int = 1000
    checkpoint_every: int = 50_000
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        networks = ("policy_lr", "qf_lr", "target_update_period", "cql_n_actions", "cql_temp", "actor_hidden_dims")
        counts = ("batch_size", "offline_eval_freq", "online_eval_freq", "n_episodes", "utd_ratio", "reward_scale")
        steps = ("offline_iterations", "online_iterations")
        rates = ("discount", "soft_target_update_rate")
        weights = (*steps, "alpha_multiplier", "cql_alpha")
        positive = (*counts, *networks, "critic_hidden_dims")
        check_fields(self, positive=positive, non_negative=weights, below_one=("mixing_ratio",), open_unit=rates)
        if self.offline_eval_freq % self.log_every or self.checkpoint_every % self.log_every:
            raise ValueError("offline_eval_freq and checkpoint_every must be multiples of log_every")
        if self.cql_clip_diff_min > self.cql_clip_diff_max:
            raise ValueError("cql_clip_diff_min must not exceed cql_clip_diff_max")


# === shared block: q_networks (edit blocks/q_networks.py, then run tools/sync_blocks.py) ===
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


# === end shared block: q_networks ===


# === shared block: sac (edit blocks/sac.py, then run tools/sync_blocks.py) ===
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


# === end shared block: sac ===


# === shared block: cql (edit blocks/cql.py, then run tools/sync_blocks.py) ===
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


# === end shared block: cql ===


# === shared block: transitions (edit blocks/transitions.py, then run tools/sync_blocks.py) ===
def reward_transform(dataset: "Dataset", normalize_returns: bool, scale: float, bias: float):
    """raw rewards -> training rewards, the same for the dataset and for env steps: IQL's locomotion
    normalisation (x 1000 / (max - min) of the dataset's episode returns), then r * scale + bias."""
    starts = episode_bounds(dataset.terminals, dataset.timeouts)[0]
    returns = np.add.reduceat(dataset.rewards.astype(np.float64), starts)
    if normalize_returns and returns.max() - returns.min() <= 0:
        raise UserError(f"every episode of '{dataset.name}' has the same return; set normalize_reward false")
    factor = float(1000.0 / (returns.max() - returns.min())) if normalize_returns else 1.0

    def transform(rewards: np.ndarray) -> np.ndarray:
        return (np.asarray(rewards, np.float32) * factor * scale + bias).astype(np.float32)

    return transform


def transition_arrays(dataset: "Dataset", rewards: np.ndarray, mean, std, **columns) -> Dict[str, np.ndarray]:
    """The dataset's (s, a, r, s', done) rows in file order, states normalised by `mean` and `std`.

    With the file's next_observations every row is a transition. Without them s' is the next row's
    state, so the last step of an episode cut by a timeout (or by the file's end) has no s' and is
    dropped, as d4rl.qlearning_dataset does. `columns`: more per-row arrays, dropped the same way.
    """
    states = ((dataset.observations - mean) / std).astype(np.float32)
    next_states, keep = dataset.extras.get("next_observations"), np.ones(len(states), bool)
    if next_states is None:
        ends = dataset.terminals | dataset.timeouts
        ends[-1] = True
        keep = dataset.terminals | ~ends
        next_states = np.concatenate([states[1:], states[-1:]])
    else:
        next_states = ((next_states - mean) / std).astype(np.float32).reshape(len(states), -1)
    actions = np.clip(dataset.actions, -1 + 1e-5, 1 - 1e-5)  # official IQL (clip_to_eps), Cal-QL (clip_action)
    arrays = dict(observations=states, actions=actions, rewards=rewards, next_observations=next_states)
    arrays.update(dones=dataset.terminals.astype(np.float32), **columns)
    return {key: values[keep] for key, values in arrays.items()}


class TransitionBuffer:
    """The dataset's transitions (`columns`) in fixed-capacity tensors on the device, with room for
    `spare` rows added later; batches are gathered on the device."""

    def __init__(self, columns: Dict[str, np.ndarray], device: torch.device, spare: int = 0):
        self.dataset_rows, self.size, self.device = len(columns["rewards"]), 0, device
        self.capacity = self.dataset_rows + spare
        self.data = {key: torch.zeros(self.capacity, *np.shape(v)[1:], device=device) for key, v in columns.items()}
        self.add(columns)

    def add(self, rows: Dict[str, Any]) -> None:
        count = len(rows["rewards"])
        if self.size + count > self.capacity:
            raise UserError(f"replay buffer full: {self.size} + {count} rows > capacity {self.capacity}")
        for key, values in self.data.items():
            column = torch.as_tensor(rows[key], dtype=torch.float32, device=self.device)
            values[self.size : self.size + count] = column.reshape(count, *values.shape[1:])
        self.size += count

    def sample(self, batch_size: int) -> Dict[str, torch.Tensor]:
        index = torch.randint(0, self.size, (batch_size,), device=self.device)
        return {key: values[index] for key, values in self.data.items()}


@torch.no_grad()
def run_episodes(act, envs: gym.vector.VectorEnv, seed: int, mean: torch.Tensor, std: torch.Tensor, record=False):
    """One episode per env in lockstep, one batched `act` per step on normalised states.

    Returns each episode's return, length and whether it reached the goal (info['success'] at some
    step); with `record`, also the steps taken: s, a, raw r, s', terminal, in step order
    (with one env: one episode's transitions).
    """
    count = envs.num_envs
    returns, lengths = np.zeros(count), np.zeros(count, dtype=np.int64)
    success, done = np.zeros(count, dtype=bool), np.zeros(count, dtype=bool)
    steps = {key: [] for key in ("observations", "actions", "rewards", "next_observations", "dones")}
    # states are normalised on the host: one upload (the state) and one download (the action) per step
    mean_host, std_host = mean.cpu().numpy(), std.cpu().numpy()
    normalize = lambda observation: (observation.astype(np.float32) - mean_host) / std_host
    state = normalize(envs.reset(seed=seed)[0])
    while not done.all():
        action = act(torch.as_tensor(state, device=std.device)).cpu().numpy()
        observation, reward, terminated, truncated, infos = envs.step(action)
        next_state, reached, live = normalize(observation), step_success(infos, count), ~done
        if record:
            step = (state, action, reward, next_state, terminated)
            for values, column in zip(steps.values(), step):
                values.append(column[live])
        returns += reward * live  # envs that finished auto-reset; their later steps don't count
        lengths += live
        success |= reached & live
        done |= terminated | truncated
        state = next_state
    return returns, lengths, success, {key: np.concatenate(values) for key, values in steps.items() if record}


def print_summary(summary: Dict[str, Any]) -> None:
    print(f"\n{summary['algorithm']} on {summary['dataset']} after step {summary['step']}: {summary['run_dir']}")
    for key in [key for key in summary if key.startswith(("offline/", "eval/")) and "_std" not in key]:
        print(f"  {key}: {summary[key]:.3f}")


# === end shared block: transitions ===


# === shared block: fine_tuning (edit blocks/fine_tuning.py, then run tools/sync_blocks.py) ===
def sample_mixed(offline: TransitionBuffer, online: TransitionBuffer, batch_size: int, mixing_ratio: Optional[float]):
    """int(batch_size * mixing_ratio) rows from the dataset's buffer and the rest from the online
    buffer (all from the dataset while the online buffer is empty). Without a mixing_ratio (None) the
    online steps are in the dataset's buffer, sampled uniformly (official IQL)."""
    if mixing_ratio is None:
        return online.sample(batch_size)  # `online` is the dataset's buffer
    if online.size == 0:
        return offline.sample(batch_size)
    offline_count = int(batch_size * mixing_ratio)
    first, second = offline.sample(offline_count), online.sample(batch_size - offline_count)
    return {key: torch.cat([first[key], second[key]]) for key in first}


def online_rows(offline: TransitionBuffer, online: TransitionBuffer) -> Dict[str, Any]:
    """What a checkpoint keeps of the buffers: the rows added online (dataset rows are rebuilt from the file)."""
    rows = {key: values[online.dataset_rows : online.size].to("cpu", copy=True) for key, values in online.data.items()}
    return {**rows, "dataset_rows": offline.dataset_rows}


def restore_online_rows(offline: TransitionBuffer, online: TransitionBuffer, rows: Dict[str, Any]) -> None:
    if rows["dataset_rows"] != offline.dataset_rows:
        raise UserError(
            f"checkpoint was taken with {rows['dataset_rows']} dataset rows, this dataset has "
            f"{offline.dataset_rows}: resume with the same dataset and settings"
        )
    if online.size + len(rows["rewards"]) > online.capacity:
        raise UserError("checkpoint holds more online steps than fit this run: resume with online_iterations as before")
    online.add(rows)


def fraction_of_best(metrics: Dict[str, float]) -> float:
    """Score in [0, 1] (Cal-QL author's): success rate where the env reports it, else normalised score / 100."""
    if "eval/success_rate" in metrics:  # goal-reaching envs: the share of episodes that reached the goal
        return float(metrics["eval/success_rate"])
    return float(np.clip(metrics.get("eval/normalized_score_mean", np.nan) / 100.0, 0.0, 1.0))  # clipped


def regret(scores: List[float]) -> float:
    """The Cal-QL author's regret: mean of (1 - score) over the fine-tuning evaluation points,
    step 0 included, scores in [0, 1] from EVALUATION episodes (never training episodes)."""
    return float(np.mean(1.0 - np.asarray(scores, dtype=np.float64))) if scores else float("nan")


# === end shared block: fine_tuning ===


def train(config: TrainConfig) -> Dict[str, Any]:
    device = pick_device(config.device)
    dataset = load_dataset(config.dataset, config.allow_download)
    transform = reward_transform(dataset, False, config.reward_scale, config.reward_bias)
    run = Run(config, "cql-finetune")
    set_seed(config.train_seed, config.deterministic_torch)
    mean, std = state_stats(dataset.observations, eps=1e-3) if config.normalize else (np.float32(0), np.float32(1))
    rewards = transform(dataset.rewards)
    arrays = transition_arrays(dataset, rewards, mean, std)
    spare = config.online_iterations + (dataset.env.max_episode_steps or 1000) if config.online_iterations else 0
    offline = TransitionBuffer(arrays, device, spare=spare if config.mixing_ratio is None else 0)
    empty = {key: values[:0] for key, values in arrays.items()}  # a mixing_ratio (0 included): two buffers
    online = offline if config.mixing_ratio is None else TransitionBuffer(empty, device, spare=spare)
    agent = CQL(dataset.observations.shape[1], dataset.actions.shape[1], config, device)
    mean_t, std_t = torch.as_tensor(mean, device=device), torch.as_tensor(std, device=device)

    step, env_steps, episodes, scores, offline_metrics = 0, 0, 0, [], {}
    checkpoint = run.restore(device)
    if checkpoint:
        agent.load_state_dict(checkpoint["agent"])
        restore_online_rows(offline, online, checkpoint["online_buffer"])
        step, env_steps, episodes = checkpoint["step"], checkpoint["env_steps"], checkpoint["episodes"]
        scores, offline_metrics = checkpoint["regret_scores"], checkpoint["offline_metrics"]
    train_step = compile_update(agent.train_step, config.compile, device, list(vars(agent).values()))
    eval_envs, explore_env = dataset.env.make_vector(config.n_episodes), dataset.env.make_vector(1)
    total, eval_metrics = config.offline_iterations + config.online_iterations, {}
    progress = tqdm(total=total, initial=step, desc="cql-finetune", dynamic_ncols=True)

    def evaluate() -> Dict[str, float]:
        act = lambda state: agent.act(state, deterministic=True)
        metrics = dataset.env.metrics("eval", *run_episodes(act, eval_envs, config.eval_seed, mean_t, std_t)[:3])
        run.window_start = time.perf_counter()  # evaluation time is not training throughput
        progress.set_postfix(score=f"{metrics.get('eval/normalized_score_mean', float('nan')):.1f}")
        return metrics

    def start_fine_tuning() -> Dict[str, float]:  # fine-tuning step 0: the offline policy's evaluation counts
        scores.append(fraction_of_best(eval_metrics))
        return {"eval/regret": regret(scores), "online/env_steps": 0}

    def checkpoint_now(at: int) -> None:
        state = {"agent": agent.state_dict(), "online_buffer": online_rows(offline, online), "env_steps": env_steps}
        state.update(episodes=episodes, regret_scores=scores, offline_metrics=offline_metrics)
        run.checkpoint(at, state)

    while step < config.offline_iterations:
        run.add(train_step(offline.sample(config.batch_size)))
        step += 1
        finished = step == config.offline_iterations
        if step % config.log_every == 0 or finished or run.stopping:
            progress.update(step - progress.n)
            run.log(step, run.flush(step))
        if step % config.offline_eval_freq == 0 or finished:
            eval_metrics = evaluate()
            run.log(step, {**eval_metrics, **(start_fine_tuning() if finished and config.online_iterations else {})})
        if finished:
            offline_metrics = {key.replace("eval/", "offline/"): value for key, value in eval_metrics.items()}
        if step % config.checkpoint_every == 0 or finished or run.stopping:
            checkpoint_now(step)

    if config.online_iterations and not scores:  # no offline phase: the initial policy is fine-tuning step 0
        eval_metrics = evaluate()
        run.log(step, {**eval_metrics, **start_fine_tuning()})
    while env_steps < config.online_iterations:
        act = lambda state: agent.act(state, deterministic=False)
        seed = config.train_seed + 1_000_003 * (episodes + 1)
        episode_return, _, _, episode = run_episodes(act, explore_env, seed, mean_t, std_t, record=True)
        length, previous = len(episode["rewards"]), env_steps
        episode["rewards"] = transform(episode["rewards"])
        online.add(episode)
        env_steps, episodes = env_steps + length, episodes + 1
        for _ in range(length * config.utd_ratio):
            run.add(train_step(sample_mixed(offline, online, config.batch_size, config.mixing_ratio)))
        step, finished = config.offline_iterations + env_steps, env_steps >= config.online_iterations
        log_due, eval_due, save_due = (
            previous // n != env_steps // n
            for n in (config.log_every, config.online_eval_freq, config.checkpoint_every)
        )
        progress.update(step - progress.n)
        if log_due or finished or run.stopping:
            metrics = {"online/env_steps": env_steps, "online/episode_return": float(episode_return[0])}
            run.log(step, {**run.flush(step), **metrics, "online/episodes": episodes})
        if eval_due or finished:
            eval_metrics = evaluate()
            if eval_due:  # the regret counts the scheduled evaluations only
                scores.append(fraction_of_best(eval_metrics))
            run.log(step, {**eval_metrics, "eval/regret": regret(scores), "online/env_steps": env_steps})
        if save_due or finished or run.stopping:
            checkpoint_now(step)
    progress.close()
    eval_envs.close()
    explore_env.close()
    summary = dict(algorithm="cql-finetune", dataset=dataset.name, env_id=dataset.env.env_id)
    summary.update(offline_steps=config.offline_iterations, online_env_steps=env_steps, step=step)
    summary.update(**offline_metrics, **eval_metrics)
    if config.online_iterations:
        summary.update({"eval/regret": regret(scores), "online/evaluation_scores": scores})
    return run.finish(summary)


def main() -> None:
    print_summary(train(parse_config(TrainConfig)))


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
