"""Shared block: D4RL names, their Gymnasium environments and reference scores.

Canonical source; see blocks/runtime.py for how blocks are copied into scripts.
"""
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

import gymnasium as gym
import numpy as np

from blocks.runtime import UserError

# === block ===
D4RL_URL_ROOT = "http://rail.eecs.berkeley.edu/datasets/offline_rl/"
# Every D4RL dataset name of the supported domains -> its file below D4RL_URL_ROOT.
D4RL_FILES = {
    "ant-expert-v0": "gym_mujoco/ant_expert.hdf5",
    "ant-expert-v1": "gym_mujoco_v1/ant_expert-v1.hdf5",
    "ant-expert-v2": "gym_mujoco_v2/ant_expert-v2.hdf5",
    "ant-full-replay-v1": "gym_mujoco_v1/ant_full_replay-v1.hdf5",
    "ant-full-replay-v2": "gym_mujoco_v2/ant_full_replay-v2.hdf5",
    "ant-medium-expert-v0": "gym_mujoco/ant_medium_expert.hdf5",
    "ant-medium-expert-v1": "gym_mujoco_v1/ant_medium_expert-v1.hdf5",
    "ant-medium-expert-v2": "gym_mujoco_v2/ant_medium_expert-v2.hdf5",
    "ant-medium-replay-v0": "gym_mujoco/ant_mixed.hdf5",
    "ant-medium-replay-v1": "gym_mujoco_v1/ant_medium_replay-v1.hdf5",
    "ant-medium-replay-v2": "gym_mujoco_v2/ant_medium_replay-v2.hdf5",
    "ant-medium-v0": "gym_mujoco/ant_medium.hdf5",
    "ant-medium-v1": "gym_mujoco_v1/ant_medium-v1.hdf5",
    "ant-medium-v2": "gym_mujoco_v2/ant_medium-v2.hdf5",
    "ant-random-v0": "gym_mujoco/ant_random.hdf5",
    "ant-random-v1": "gym_mujoco_v1/ant_random-v1.hdf5",
    "ant-random-v2": "gym_mujoco_v2/ant_random-v2.hdf5",
    "antmaze-large-diverse-v0": "ant_maze_new/Ant_maze_hardest-maze_noisy_multistart_True_multigoal_True_sparse.hdf5",
    "antmaze-large-diverse-v2": "ant_maze_v2/Ant_maze_hardest-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5",
    "antmaze-large-play-v0": "ant_maze_new/Ant_maze_hardest-maze_noisy_multistart_True_multigoal_False_sparse.hdf5",
    "antmaze-large-play-v2": "ant_maze_v2/Ant_maze_hardest-maze_noisy_multistart_True_multigoal_False_sparse_fixed.hdf5",
    "antmaze-medium-diverse-v0": "ant_maze_new/Ant_maze_big-maze_noisy_multistart_True_multigoal_True_sparse.hdf5",
    "antmaze-medium-diverse-v2": "ant_maze_v2/Ant_maze_big-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5",
    "antmaze-medium-play-v0": "ant_maze_new/Ant_maze_big-maze_noisy_multistart_True_multigoal_False_sparse.hdf5",
    "antmaze-medium-play-v2": "ant_maze_v2/Ant_maze_big-maze_noisy_multistart_True_multigoal_False_sparse_fixed.hdf5",
    "antmaze-umaze-diverse-v0": "ant_maze_new/Ant_maze_u-maze_noisy_multistart_True_multigoal_True_sparse.hdf5",
    "antmaze-umaze-diverse-v2": "ant_maze_v2/Ant_maze_u-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5",
    "antmaze-umaze-v0": "ant_maze_new/Ant_maze_u-maze_noisy_multistart_False_multigoal_False_sparse.hdf5",
    "antmaze-umaze-v2": "ant_maze_v2/Ant_maze_u-maze_noisy_multistart_False_multigoal_False_sparse_fixed.hdf5",
    "door-cloned-v0": "hand_dapg/door-demos-v0-bc-combined.hdf5",
    "door-cloned-v1": "hand_dapg_v1/door-cloned-v1.hdf5",
    "door-expert-v0": "hand_dapg/door-v0_expert_clipped.hdf5",
    "door-expert-v1": "hand_dapg_v1/door-expert-v1.hdf5",
    "door-human-v0": "hand_dapg/door-v0_demos_clipped.hdf5",
    "door-human-v1": "hand_dapg_v1/door-human-v1.hdf5",
    "halfcheetah-expert-v0": "gym_mujoco/halfcheetah_expert.hdf5",
    "halfcheetah-expert-v1": "gym_mujoco_v1/halfcheetah_expert-v1.hdf5",
    "halfcheetah-expert-v2": "gym_mujoco_v2/halfcheetah_expert-v2.hdf5",
    "halfcheetah-full-replay-v1": "gym_mujoco_v1/halfcheetah_full_replay-v1.hdf5",
    "halfcheetah-full-replay-v2": "gym_mujoco_v2/halfcheetah_full_replay-v2.hdf5",
    "halfcheetah-medium-expert-v0": "gym_mujoco/halfcheetah_medium_expert.hdf5",
    "halfcheetah-medium-expert-v1": "gym_mujoco_v1/halfcheetah_medium_expert-v1.hdf5",
    "halfcheetah-medium-expert-v2": "gym_mujoco_v2/halfcheetah_medium_expert-v2.hdf5",
    "halfcheetah-medium-replay-v0": "gym_mujoco/halfcheetah_mixed.hdf5",
    "halfcheetah-medium-replay-v1": "gym_mujoco_v1/halfcheetah_medium_replay-v1.hdf5",
    "halfcheetah-medium-replay-v2": "gym_mujoco_v2/halfcheetah_medium_replay-v2.hdf5",
    "halfcheetah-medium-v0": "gym_mujoco/halfcheetah_medium.hdf5",
    "halfcheetah-medium-v1": "gym_mujoco_v1/halfcheetah_medium-v1.hdf5",
    "halfcheetah-medium-v2": "gym_mujoco_v2/halfcheetah_medium-v2.hdf5",
    "halfcheetah-random-v0": "gym_mujoco/halfcheetah_random.hdf5",
    "halfcheetah-random-v1": "gym_mujoco_v1/halfcheetah_random-v1.hdf5",
    "halfcheetah-random-v2": "gym_mujoco_v2/halfcheetah_random-v2.hdf5",
    "hammer-cloned-v0": "hand_dapg/hammer-demos-v0-bc-combined.hdf5",
    "hammer-cloned-v1": "hand_dapg_v1/hammer-cloned-v1.hdf5",
    "hammer-expert-v0": "hand_dapg/hammer-v0_expert_clipped.hdf5",
    "hammer-expert-v1": "hand_dapg_v1/hammer-expert-v1.hdf5",
    "hammer-human-v0": "hand_dapg/hammer-v0_demos_clipped.hdf5",
    "hammer-human-v1": "hand_dapg_v1/hammer-human-v1.hdf5",
    "hopper-expert-v0": "gym_mujoco/hopper_expert.hdf5",
    "hopper-expert-v1": "gym_mujoco_v1/hopper_expert-v1.hdf5",
    "hopper-expert-v2": "gym_mujoco_v2/hopper_expert-v2.hdf5",
    "hopper-full-replay-v1": "gym_mujoco_v1/hopper_full_replay-v1.hdf5",
    "hopper-full-replay-v2": "gym_mujoco_v2/hopper_full_replay-v2.hdf5",
    "hopper-medium-expert-v0": "gym_mujoco/hopper_medium_expert.hdf5",
    "hopper-medium-expert-v1": "gym_mujoco_v1/hopper_medium_expert-v1.hdf5",
    "hopper-medium-expert-v2": "gym_mujoco_v2/hopper_medium_expert-v2.hdf5",
    "hopper-medium-replay-v0": "gym_mujoco/hopper_mixed.hdf5",
    "hopper-medium-replay-v1": "gym_mujoco_v1/hopper_medium_replay-v1.hdf5",
    "hopper-medium-replay-v2": "gym_mujoco_v2/hopper_medium_replay-v2.hdf5",
    "hopper-medium-v0": "gym_mujoco/hopper_medium.hdf5",
    "hopper-medium-v1": "gym_mujoco_v1/hopper_medium-v1.hdf5",
    "hopper-medium-v2": "gym_mujoco_v2/hopper_medium-v2.hdf5",
    "hopper-random-v0": "gym_mujoco/hopper_random.hdf5",
    "hopper-random-v1": "gym_mujoco_v1/hopper_random-v1.hdf5",
    "hopper-random-v2": "gym_mujoco_v2/hopper_random-v2.hdf5",
    "kitchen-complete-v0": "kitchen/mini_kitchen_microwave_kettle_light_slider-v0.hdf5",
    "kitchen-mixed-v0": "kitchen/kitchen_microwave_kettle_bottomburner_light-v0.hdf5",
    "kitchen-partial-v0": "kitchen/kitchen_microwave_kettle_light_slider-v0.hdf5",
    "maze2d-large-dense-v1": "maze2d/maze2d-large-dense-v1.hdf5",
    "maze2d-large-v1": "maze2d/maze2d-large-sparse-v1.hdf5",
    "maze2d-medium-dense-v1": "maze2d/maze2d-medium-dense-v1.hdf5",
    "maze2d-medium-v1": "maze2d/maze2d-medium-sparse-v1.hdf5",
    "maze2d-open-dense-v0": "maze2d/maze2d-open-dense.hdf5",
    "maze2d-open-v0": "maze2d/maze2d-open-sparse.hdf5",
    "maze2d-umaze-dense-v1": "maze2d/maze2d-umaze-dense-v1.hdf5",
    "maze2d-umaze-v1": "maze2d/maze2d-umaze-sparse-v1.hdf5",
    "pen-cloned-v0": "hand_dapg/pen-demos-v0-bc-combined.hdf5",
    "pen-cloned-v1": "hand_dapg_v1/pen-cloned-v1.hdf5",
    "pen-expert-v0": "hand_dapg/pen-v0_expert_clipped.hdf5",
    "pen-expert-v1": "hand_dapg_v1/pen-expert-v1.hdf5",
    "pen-human-v0": "hand_dapg/pen-v0_demos_clipped.hdf5",
    "pen-human-v1": "hand_dapg_v1/pen-human-v1.hdf5",
    "relocate-cloned-v0": "hand_dapg/relocate-demos-v0-bc-combined.hdf5",
    "relocate-cloned-v1": "hand_dapg_v1/relocate-cloned-v1.hdf5",
    "relocate-expert-v0": "hand_dapg/relocate-v0_expert_clipped.hdf5",
    "relocate-expert-v1": "hand_dapg_v1/relocate-expert-v1.hdf5",
    "relocate-human-v0": "hand_dapg/relocate-v0_demos_clipped.hdf5",
    "relocate-human-v1": "hand_dapg_v1/relocate-human-v1.hdf5",
    "walker2d-expert-v0": "gym_mujoco/walker2d_expert.hdf5",
    "walker2d-expert-v1": "gym_mujoco_v1/walker2d_expert-v1.hdf5",
    "walker2d-expert-v2": "gym_mujoco_v2/walker2d_expert-v2.hdf5",
    "walker2d-full-replay-v1": "gym_mujoco_v1/walker2d_full_replay-v1.hdf5",
    "walker2d-full-replay-v2": "gym_mujoco_v2/walker2d_full_replay-v2.hdf5",
    "walker2d-medium-expert-v0": "gym_mujoco/walker2d_medium_expert.hdf5",
    "walker2d-medium-expert-v1": "gym_mujoco_v1/walker2d_medium_expert-v1.hdf5",
    "walker2d-medium-expert-v2": "gym_mujoco_v2/walker2d_medium_expert-v2.hdf5",
    "walker2d-medium-replay-v0": "gym_mujoco/walker_mixed.hdf5",
    "walker2d-medium-replay-v1": "gym_mujoco_v1/walker2d_medium_replay-v1.hdf5",
    "walker2d-medium-replay-v2": "gym_mujoco_v2/walker2d_medium_replay-v2.hdf5",
    "walker2d-medium-v0": "gym_mujoco/walker2d_medium.hdf5",
    "walker2d-medium-v1": "gym_mujoco_v1/walker2d_medium-v1.hdf5",
    "walker2d-medium-v2": "gym_mujoco_v2/walker2d_medium-v2.hdf5",
    "walker2d-random-v0": "gym_mujoco/walker2d_random.hdf5",
    "walker2d-random-v1": "gym_mujoco_v1/walker2d_random-v1.hdf5",
    "walker2d-random-v2": "gym_mujoco_v2/walker2d_random-v2.hdf5",
}
# D4RL reference returns (random policy, expert): normalised score = 100 * (R - min) / (max - min).
D4RL_REF_SCORES = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
    "antmaze": (0.0, 1.0),
    "pen": (96.262799, 3076.8331017826877),
    "door": (-56.512833, 2880.5693087298737),
    "hammer": (-274.856578, 12794.134825156867),
    "relocate": (-6.425911, 4233.877797728884),
    "kitchen": (0.0, 4.0),
    "maze2d-open": (0.01, 20.66),
    "maze2d-open-dense": (11.17817, 27.166538620695782),
    "maze2d-umaze": (23.85, 161.86),
    "maze2d-umaze-dense": (68.537689, 193.66285642381482),
    "maze2d-medium": (13.13, 277.39),
    "maze2d-medium-dense": (44.264742, 297.4552547777125),
    "maze2d-large": (6.7, 273.99),
    "maze2d-large-dense": (30.569041, 303.4857382709002),
}
# D4RL domain -> (Gymnasium env id, kwargs, episode steps, how it differs from the env D4RL recorded).
D4RL_GYMNASIUM_ENVS: Dict[str, Tuple[str, Dict[str, Any], int, str]] = {
    "hopper": ("Hopper-v5", {}, 1000, "D4RL recorded Hopper-v3 under mujoco-py; same 11-dim observation"),
    "halfcheetah": ("HalfCheetah-v5", {}, 1000, "D4RL recorded HalfCheetah-v3 under mujoco-py; same 17-dim observation"),
    "walker2d": ("Walker2d-v5", {}, 1000, "D4RL recorded Walker2d-v3 under mujoco-py; same 17-dim observation"),
    "ant": (
        "Ant-v4", {"use_contact_forces": True}, 1000,
        "Ant-v4 with contact forces has D4RL's 111-dim layout; mujoco-py 2.x reported all-zero contact "
        "forces, so the last 84 dims of D4RL ant data are zeros while the modern env fills them",
    ),
}


@dataclass(frozen=True)
class EnvSpec:
    """How to build the evaluation env of a dataset and normalise its returns."""

    env_id: str
    kwargs: Dict[str, Any] = field(default_factory=dict)
    max_episode_steps: Optional[int] = None
    ref_min_score: Optional[float] = None
    ref_max_score: Optional[float] = None
    note: str = ""
    reports_success: bool = False  # goal-reaching envs put a 0/1 `success` in the step info

    def make(self) -> gym.Env:
        return gym.make(self.env_id, max_episode_steps=self.max_episode_steps, **self.kwargs)

    def make_vector(self, num_envs: int) -> gym.vector.VectorEnv:
        # Sync, not async: on few cores batching the policy across envs is where time is saved.
        return gym.vector.SyncVectorEnv([self.make for _ in range(num_envs)])

    def normalized_score(self, returns: np.ndarray) -> Optional[np.ndarray]:
        if self.ref_min_score is None or self.ref_max_score is None:
            return None
        return 100.0 * (np.asarray(returns) - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)


def d4rl_ref_scores(name: str) -> Tuple[float, float]:
    stem = re.sub(r"-v\d+$", "", name)
    family = stem if stem.startswith("maze2d") else stem.split("-")[0]
    return D4RL_REF_SCORES[family]


def d4rl_env_spec(name: str) -> EnvSpec:
    domain = name.split("-")[0]
    if domain not in D4RL_GYMNASIUM_ENVS:
        raise UserError(
            f"D4RL dataset '{name}' has no Gymnasium environment mapping yet; "
            f"mapped domains: {', '.join(sorted(D4RL_GYMNASIUM_ENVS))}"
        )
    env_id, kwargs, steps, note = D4RL_GYMNASIUM_ENVS[domain]
    ref_min, ref_max = d4rl_ref_scores(name)
    return EnvSpec(env_id, dict(kwargs), steps, ref_min, ref_max, note)


def step_success(infos: Dict[str, Any], num_envs: int) -> np.ndarray:
    """Per env of a vector env: did this step report reaching the goal (info['success'])?"""
    if "success" not in infos:
        return np.zeros(num_envs, dtype=bool)
    return np.asarray(infos["success"], dtype=bool) & np.asarray(infos.get("_success", True), dtype=bool)
