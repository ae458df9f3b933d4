"""Shared block: (s, a, r, s', done) transitions, Monte-Carlo returns, replay buffers on the device.

Canonical source; see blocks/runtime.py for how blocks are copied into scripts.
"""
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

import h5py
import numpy as np
import torch

from blocks.envs import D4RL_FILES, D4RL_URL_ROOT
from blocks.runtime import UserError
from blocks.datasets import Dataset, d4rl_dataset_dir, episode_bounds

# === block ===
def dataset_file_arrays(dataset: Dataset, keys: Tuple[str, ...]) -> Dict[str, np.ndarray]:
    """Extra arrays the Dataset does not carry (next_observations, infos/goal_achieved), read from
    the dataset's hdf5 file when it has them; {} for Minari data."""
    if dataset.name.endswith((".hdf5", ".h5")) or os.path.sep in dataset.name:
        path = Path(dataset.name)
    elif dataset.name in D4RL_FILES:
        path = d4rl_dataset_dir() / os.path.basename(D4RL_URL_ROOT + D4RL_FILES[dataset.name])
    else:
        return {}
    with h5py.File(path, "r") as file:
        return {key: file[key][()] for key in keys if key in file}


def monte_carlo_returns(
    rewards: np.ndarray, terminals: np.ndarray, segment_ends: np.ndarray, gamma: float,
    sparse_reward: bool = False, fail_reward: float = 0.0,
) -> np.ndarray:
    """Cal-QL's reference value per step, computed per segment (segment_ends[t]: t is its last step).

    Rewards are the transformed ones (scale and bias already applied). A sparse-reward segment whose
    every reward equals `fail_reward` gets fail_reward / (1 - gamma) everywhere; any other segment
    gets G_t = r_t + gamma (1 - terminal_t) G_{t+1} from G = 0 after its last step (a timeout
    truncates without bootstrapping).
    """
    returns = np.zeros(len(rewards), np.float64)
    ends = np.flatnonzero(segment_ends)
    starts = np.concatenate([[0], ends[:-1] + 1])
    for start, end in zip(starts, ends + 1):
        segment = rewards[start:end]
        if sparse_reward and np.all(segment == fail_reward):
            returns[start:end] = fail_reward / (1.0 - gamma)
            continue
        value = 0.0
        for t in range(end - 1, start - 1, -1):
            value = rewards[t] + gamma * (1.0 - float(terminals[t])) * value
            returns[t] = value
    return returns.astype(np.float32)


def transition_arrays(
    dataset: Dataset, rewards: np.ndarray, gamma: float, sparse_reward: bool, fail_reward: float,
    next_observations: Optional[np.ndarray] = None,
) -> Dict[str, np.ndarray]:
    """Transitions of a dataset in file order, with their Monte-Carlo returns.

    With the file's next_observations every row is a transition, and a segment also ends wherever
    next_observations[t] != observations[t + 1] (an episode boundary the flags miss). Without them
    s' is observations[t + 1], so the last step of an episode cut by a timeout (or by the end of
    the file) has no s' and is dropped, as d4rl.qlearning_dataset does; its reward still counts in
    the Monte-Carlo returns of the steps before it.
    """
    observations, terminals, timeouts = dataset.observations, dataset.terminals, dataset.timeouts
    count = len(observations)
    segment_ends = terminals | timeouts
    segment_ends[-1] = True
    if next_observations is not None:
        next_observations = next_observations.astype(np.float32).reshape(count, -1)
        jump = np.abs(next_observations[:-1] - observations[1:]).max(axis=1) > 1e-6
        segment_ends[:-1] |= jump
        keep = np.ones(count, bool)
    else:
        next_observations = np.concatenate([observations[1:], observations[-1:]])
        keep = terminals | ~segment_ends
    mc = monte_carlo_returns(rewards, terminals, segment_ends, gamma, sparse_reward, fail_reward)
    return {
        "observations": observations[keep], "actions": dataset.actions[keep], "rewards": rewards[keep],
        "next_observations": next_observations[keep], "dones": terminals[keep].astype(np.float32),
        "mc_returns": mc[keep],
    }


def binary_rewards(success: np.ndarray) -> np.ndarray:
    """The Cal-QL paper's binary Adroit reward: 0 on steps that reach the goal, -1 elsewhere."""
    return np.where(np.asarray(success, bool), 0.0, -1.0).astype(np.float32)


def locomotion_reward_scale(dataset: Dataset) -> float:
    """IQL's locomotion reward normalisation: 1000 / (max - min) of the dataset's episode returns."""
    starts, ends = episode_bounds(dataset.terminals, dataset.timeouts)
    returns = np.add.reduceat(dataset.rewards.astype(np.float64), starts)
    if returns.max() - returns.min() <= 0:
        raise UserError(f"dataset '{dataset.name}': every episode has the same return, so rewards cannot be "
                        "normalised by the return range; set normalize_reward false")
    return float(1000.0 / (returns.max() - returns.min()))


BUFFER_KEYS = ("observations", "actions", "rewards", "next_observations", "dones", "mc_returns")


class TransitionBuffer:
    """Fixed-capacity transitions on the device; batches are gathered there.

    Rows below `frozen` come from the dataset and are rebuilt from it on resume; only the rows
    added online are saved in checkpoints.
    """

    def __init__(self, state_dim: int, action_dim: int, capacity: int, device: torch.device):
        shapes = {"observations": (state_dim,), "actions": (action_dim,), "next_observations": (state_dim,)}
        self.data = {key: torch.zeros((capacity, *shapes.get(key, ())), device=device) for key in BUFFER_KEYS}
        self.capacity, self.size, self.frozen, self.device = capacity, 0, 0, device

    def add(self, arrays: Dict[str, np.ndarray]) -> None:
        count = len(arrays["rewards"])
        if self.size + count > self.capacity:
            raise UserError(f"replay buffer full ({self.capacity} rows); raise the buffer size")
        for key in BUFFER_KEYS:
            self.data[key][self.size:self.size + count] = torch.as_tensor(
                np.asarray(arrays[key], np.float32).reshape(count, *self.data[key].shape[1:]), device=self.device)
        self.size += count

    def freeze(self) -> None:
        """Marks the rows so far as dataset rows (not saved in checkpoints)."""
        self.frozen = self.size

    def sample(self, batch_size: int) -> Dict[str, torch.Tensor]:
        index = torch.randint(0, self.size, (batch_size,), device=self.device)
        return {key: values[index] for key, values in self.data.items()}

    def state_dict(self) -> Dict[str, object]:
        rows = slice(self.frozen, self.size)
        return {"size": self.size, "frozen": self.frozen, **{key: self.data[key][rows].to("cpu", copy=True) for key in BUFFER_KEYS}}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        if state["frozen"] != self.frozen:
            raise UserError(f"checkpoint was taken with {state['frozen']} dataset rows, this dataset has "
                            f"{self.frozen}: resume with the same dataset and settings")
        count = state["size"] - self.frozen
        if state["size"] > self.capacity:
            raise UserError(f"checkpoint holds {state['size']} buffer rows, more than this run's capacity "
                            f"{self.capacity}: resume with online_iterations at least as large as before")
        for key in BUFFER_KEYS:  # the checkpoint may have been mapped to any device
            self.data[key][self.frozen:self.frozen + count] = state[key].to(self.device)
        self.size = state["size"]


def sample_mixed(
    offline: TransitionBuffer, online: TransitionBuffer, batch_size: int, mixing_ratio: float,
) -> Dict[str, torch.Tensor]:
    """int(batch_size * mixing_ratio) rows from the offline data, the rest from the online buffer
    (all offline while the online buffer is still empty)."""
    if online.size == 0:
        return offline.sample(batch_size)
    offline_count = int(batch_size * mixing_ratio)
    first, second = offline.sample(offline_count), online.sample(batch_size - offline_count)
    return {key: torch.cat([first[key], second[key]]) for key in first}
