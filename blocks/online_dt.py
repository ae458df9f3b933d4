"""Shared block: what the Online Decision Transformer and ODT+TD3 have in common.

The trajectory replay buffer (top-K offline trajectories, FIFO replacement, hindsight
return-to-go labels, windows gathered on the device) and the episode runner used for both online
rollouts and evaluation. The DT trunk itself is blocks/decision_transformer.py.
Canonical source; see blocks/runtime.py for how blocks are copied into scripts.
"""
import collections
from typing import Any, Callable, Dict, List, Optional

import gymnasium as gym
import numpy as np
import torch

from blocks.datasets import Dataset, episode_bounds
from blocks.envs import EnvSpec, step_success

# === block ===
def make_trajectory(
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminated: bool,
    final_observation: Optional[np.ndarray] = None,
) -> Dict[str, Any]:
    """A whole episode as plain arrays (plain, so checkpoints unpickle in any copy of a script).

    `terminated`: the episode truly ended (no bootstrapping after its last step). Otherwise it was
    truncated; `final_observation` is the state after the last step when known (online data), so
    a critic can bootstrap from it. D4RL files do not hold it.
    """
    return {
        "observations": np.asarray(observations, dtype=np.float32),
        "actions": np.asarray(actions, dtype=np.float32),
        "rewards": np.asarray(rewards, dtype=np.float32),
        "terminated": bool(terminated),
        "final_observation": None if final_observation is None else np.asarray(final_observation, dtype=np.float32),
    }


def dataset_trajectories(dataset: Dataset, reward_bias: float = 0.0) -> List[Dict[str, Any]]:
    starts, ends = episode_bounds(dataset.terminals, dataset.timeouts)
    return [
        make_trajectory(dataset.observations[start:end], dataset.actions[start:end],
                        dataset.rewards[start:end] + reward_bias, dataset.terminals[end - 1])
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

    def __init__(self, capacity: int, state_mean: np.ndarray, state_std: np.ndarray, seq_len: int,
                 reward_scale: float, device: torch.device):
        self.capacity = capacity
        self.state_mean, self.state_std = state_mean, state_std
        self.seq_len = seq_len
        self.reward_scale = reward_scale
        self.device = device
        self.trajectories: collections.deque = collections.deque(maxlen=capacity)
        self.offsets = torch.arange(seq_len + 1, device=device)
        self._flat: Dict[str, torch.Tensor] = {}

    def initialise(self, offline: List[Dict[str, Any]]) -> None:
        """Keeps the top-`capacity` trajectories by return, lowest return first (evicted first)."""
        order = np.argsort([float(t["rewards"].sum()) for t in offline], kind="stable")[-self.capacity:]
        self.trajectories.clear()
        self.trajectories.extend(offline[i] for i in order)
        self._rebuild()

    def add(self, trajectories: List[Dict[str, Any]]) -> None:
        self.trajectories.extend(trajectories)  # a full deque drops from the front
        self._rebuild()

    def __len__(self) -> int:
        return len(self.trajectories)

    @property
    def transitions(self) -> int:
        return int(sum(len(t["rewards"]) for t in self.trajectories))

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
        as_tensor = lambda array, dtype=torch.float32: torch.as_tensor(np.asarray(array), dtype=dtype, device=self.device)  # noqa: E731
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
        next_raw = raw[:, 1:]
        next_is_final = next_raw == final_row
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

    def state_dict(self) -> Dict[str, Any]:
        return {"trajectories": list(self.trajectories)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.trajectories.clear()
        self.trajectories.extend(state["trajectories"])
        self._rebuild()


@torch.no_grad()
def run_episodes(
    act: Callable[..., torch.Tensor],
    envs: gym.vector.VectorEnv,
    target_return: float,
    config: Any,
    state_mean: np.ndarray,
    state_std: np.ndarray,
    device: torch.device,
    seed: int,
) -> List[Dict[str, Any]]:
    """One episode per env in lockstep, one batched forward per step, conditioned on target_return.

    `act(states, actions, returns_to_go, timesteps)` gets the last `config.eval_context` steps and
    returns (num_envs, action_dim) actions. The return-to-go drops by each (reward + reward_bias)
    * reward_scale, the same rewards the buffer stores. Each trajectory also carries the raw env
    `return`, `length`, `success` and `truncated`. With `config.truncation_as_terminal` (the
    official code's behaviour) a time-limit end is stored as a true end.
    """
    count, horizon, context = envs.num_envs, config.episode_len, config.eval_context
    state_dim, action_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
    mean = torch.as_tensor(state_mean, dtype=torch.float32, device=device)
    std = torch.as_tensor(state_std, dtype=torch.float32, device=device)
    states = torch.zeros(count, horizon, state_dim, device=device)
    actions = torch.zeros(count, horizon, action_dim, device=device)
    returns_to_go = torch.zeros(count, horizon, device=device)
    timesteps = torch.arange(horizon, device=device).expand(count, horizon)
    remaining = torch.full((count,), target_return * config.reward_scale, device=device)
    raw_observations = np.zeros((count, horizon, state_dim), np.float32)
    raw_actions = np.zeros((count, horizon, action_dim), np.float32)
    rewards = np.zeros((count, horizon), np.float32)
    lengths = np.zeros(count, dtype=np.int64)
    terminated_at = np.zeros(count, dtype=bool)
    success = np.zeros(count, dtype=bool)
    final_observations = np.zeros((count, state_dim), np.float32)
    done = np.zeros(count, dtype=bool)
    observation, _ = envs.reset(seed=seed)
    for step in range(horizon):
        raw_observations[:, step] = observation
        states[:, step] = (torch.as_tensor(observation, dtype=torch.float32, device=device) - mean) / std
        returns_to_go[:, step] = remaining
        window = slice(max(0, step + 1 - context), step + 1)
        action = act(states[:, window], actions[:, window], returns_to_go[:, window], timesteps[:, window])
        actions[:, step] = action
        action_host = action.cpu().numpy()
        raw_actions[:, step] = action_host
        observation, reward, terminated, truncated, infos = envs.step(action_host)
        live = ~done  # envs that finished auto-reset; their later steps don't count
        rewards[live, step] = reward[live]
        lengths += live
        success |= step_success(infos, count) & live
        ended = live & (terminated | truncated | (step == horizon - 1))
        terminated_at |= ended & terminated
        final_observations[ended] = observation[ended]
        remaining -= torch.as_tensor((reward + config.reward_bias) * config.reward_scale, dtype=torch.float32, device=device)
        done |= ended
        if done.all():
            break
    trajectories = []
    for i in range(count):
        n = lengths[i]
        ends_truly = bool(terminated_at[i]) or config.truncation_as_terminal
        trajectory = make_trajectory(raw_observations[i, :n], raw_actions[i, :n], rewards[i, :n] + config.reward_bias,
                                     ends_truly, None if ends_truly else final_observations[i])
        trajectory.update({"return": float(rewards[i, :n].sum()), "length": int(n), "success": bool(success[i]),
                           "truncated": not terminated_at[i]})
        trajectories.append(trajectory)
    return trajectories


def rollout_finished(trajectories: int, transitions: int, min_trajectories: int, min_transitions: int) -> bool:
    """An online iteration collects at least `min_trajectories` whole episodes and at least
    `min_transitions` steps (the paper's rule for random datasets, Adroit, AntMaze and Maze2D)."""
    return trajectories >= min_trajectories and transitions >= min_transitions


def collect_online(act: Callable[..., torch.Tensor], envs: gym.vector.VectorEnv, config: Any,
                   state_mean: np.ndarray, state_std: np.ndarray, device: torch.device) -> List[Dict[str, Any]]:
    """Rounds of one episode per env until `rollout_finished`; env seeds come from numpy's RNG,
    which checkpoints restore, so a resumed run collects the same episodes."""
    collected: List[Dict[str, Any]] = []
    while not rollout_finished(len(collected), sum(t["length"] for t in collected),
                               config.online_trajectories, config.online_transitions):
        seed = int(np.random.randint(2**31 - 1))
        collected += run_episodes(act, envs, config.online_rtg, config, state_mean, state_std, device, seed)
    return collected


def episode_metrics(prefix: str, trajectories: List[Dict[str, Any]], env: EnvSpec) -> Dict[str, float]:
    returns = np.array([t["return"] for t in trajectories])
    metrics = {
        f"{prefix}/return_mean": float(returns.mean()),
        f"{prefix}/return_std": float(returns.std()),
        f"{prefix}/length_mean": float(np.mean([t["length"] for t in trajectories])),
    }
    scores = env.normalized_score(returns)
    if scores is not None:
        metrics[f"{prefix}/normalized_score_mean"] = float(scores.mean())
        metrics[f"{prefix}/normalized_score_std"] = float(scores.std())
    if env.reports_success:
        metrics[f"{prefix}/success_rate"] = float(np.mean([t["success"] for t in trajectories]))
    return metrics
