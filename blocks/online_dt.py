"""Shared block: what the Online Decision Transformer and ODT+TD3 have in common besides the runner.

The trajectory replay buffer (top-K offline trajectories, FIFO replacement, hindsight
return-to-go labels, windows gathered on the device) and the online collection rule. The DT
trunk is blocks/decision_transformer.py, the episode runner blocks/dt_rollout.py.
Canonical source; see blocks/runtime.py for how blocks are copied into scripts.
"""

import collections
from typing import Any, Callable, Dict, List

import numpy as np
import torch

from blocks.data import Dataset, episode_bounds
from blocks.dt_rollout import make_trajectory


# === block ===
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
