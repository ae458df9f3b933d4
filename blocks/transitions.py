"""Shared block: training rewards, the dataset's transitions, a replay buffer on the device, the episode runner.

Canonical source; see blocks/runtime.py for how blocks are copied into scripts.
"""

from typing import Any, Dict

import gymnasium as gym
import numpy as np
import torch

from blocks.data import Dataset, episode_bounds, step_success
from blocks.runtime import UserError


# === block ===
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
