"""Shared block: the one episode runner of the Decision Transformer family.

DT's evaluation, and ODT's and ODT+TD3's online rollouts and evaluation, all run episodes here:
one episode per env of a vector env in lockstep, one batched forward per step, the DT context kept
on the device. Canonical source; see blocks/runtime.py for how blocks are copied into scripts.
"""

from typing import Any, Callable, Dict, List, Optional, Tuple

import gymnasium as gym
import numpy as np
import torch

from blocks.data import step_success


# === block ===
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
