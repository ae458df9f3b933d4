"""D4RL names mapped to Gymnasium / gymnasium-robotics envs that speak D4RL's observation layout.

Every D4RL dataset name of the locomotion, AntMaze, Adroit, Maze2D and Kitchen suites maps to its
file address, its reference scores and the modern env that evaluates it. The AntMaze, Maze2D and
Kitchen adapters rebuild D4RL's observation frame and task on the maintained envs. The training
scripts import this module lazily, only when a dataset outside D4RL's v1/v2 locomotion names is
asked for (they carry that small table themselves).
"""

import re
from typing import Any, Dict, List, Tuple

import gymnasium as gym
import gymnasium_robotics
import numpy as np

gym.register_envs(gymnasium_robotics)  # AntMaze, PointMaze, Adroit and Kitchen envs

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
# D4RL locomotion domain -> (Gymnasium env id, kwargs, how it differs from the env D4RL recorded).
D4RL_LOCOMOTION_ENVS: Dict[str, Tuple[str, Dict[str, Any], str]] = {
    "hopper": ("Hopper-v5", {}, "D4RL recorded Hopper-v3 under mujoco-py; same 11-dim observation"),
    "halfcheetah": ("HalfCheetah-v5", {}, "D4RL recorded HalfCheetah-v3 under mujoco-py; same 17-dim observation"),
    "walker2d": ("Walker2d-v5", {}, "D4RL recorded Walker2d-v3 under mujoco-py; same 17-dim observation"),
    "ant": (
        "Ant-v4",
        {"use_contact_forces": True},
        "Ant-v4 with contact forces has D4RL's 111-dim layout; mujoco-py 2.x reported all-zero contact "
        "forces, so the last 84 dims of D4RL ant data are zeros while the modern env fills them",
    ),
}
# Maze layouts as D4RL's evaluation envs use them (rows as in D4RL's source; "r" reset, "g" goal).
D4RL_ANTMAZE_MAPS = {
    "umaze": ["11111", "1r001", "11101", "1g001", "11111"],
    "medium": ["11111111", "1r011001", "10010001", "11000111", "10010001", "10100101", "100010g1", "11111111"],
    "large": [
        "111111111111",
        "1r0001000001",
        "101101010101",
        "100000010001",
        "101111011101",
        "100101000001",
        "110101010111",
        "100100010g01",
        "111111111111",
    ],
}
D4RL_MAZE2D_MAPS = {
    "open": ["1111111", "1000001", "100g001", "1000001", "1111111"],
    "umaze": ["11111", "1g001", "11101", "10001", "11111"],
    "medium": ["11111111", "10011001", "10010001", "11000111", "10010001", "10100101", "100010g1", "11111111"],
    "large": [
        "111111111111",
        "100001000001",
        "101101010101",
        "100000010001",
        "101111011101",
        "100101000001",
        "110101010111",
        "100100010g01",
        "111111111111",
    ],
}
D4RL_MAZE2D_STEPS = {"open": 150, "umaze": 300, "medium": 600, "large": 800}
D4RL_KITCHEN_TASKS = {
    "complete": ["microwave", "kettle", "light switch", "slide cabinet"],
    "partial": ["microwave", "kettle", "light switch", "slide cabinet"],
    "mixed": ["microwave", "kettle", "bottom burner", "light switch"],
}
ADROIT_DOMAINS = ("pen", "door", "hammer", "relocate")
D4RL_DOMAINS = (*D4RL_LOCOMOTION_ENVS, *ADROIT_DOMAINS, "antmaze", "maze2d", "kitchen")


def d4rl_ref_scores(name: str) -> Tuple[float, float]:
    stem = re.sub(r"-v\d+$", "", name)
    family = stem if stem.startswith("maze2d") else stem.split("-")[0]
    return D4RL_REF_SCORES[family]


def _maze_map(rows: List[str], flip: bool) -> List[List[Any]]:
    cells = {"0": 0, "1": 1, "r": "r", "g": "g"}
    grid = [[cells[cell] for cell in row] for row in rows]
    return grid[::-1] if flip else grid


class D4RLMazeFrame(gym.Wrapper):
    """Base of the maze adapters: every observation goes through `_to_d4rl`."""

    def _to_d4rl(self, observation: Dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def reset(self, **kwargs: Any) -> Tuple[np.ndarray, Dict[str, Any]]:
        observation, info = self.env.reset(**kwargs)
        return self._to_d4rl(observation), info


class D4RLAntMaze(D4RLMazeFrame):
    """D4RL's antmaze observation [x, y, rest of qpos, qvel], with the start cell at the origin, and
    its sparse task: reward and success 1 within 0.5 of the goal, where the episode ends (as in D4RL's
    evaluation env, whose data marks terminal=1 there)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        env.unwrapped.position_noise_range = 0.025  # start and goal within 0.1 of their cell centres (D4RL: 0.1)
        maze = env.unwrapped.maze
        start = next((i, j) for i, row in enumerate(maze.maze_map) for j, cell in enumerate(row) if cell == "r")
        self.origin = maze.cell_rowcol_to_xy(np.array(start))
        size = env.observation_space["observation"].shape[0] + 2
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float64)

    def _to_d4rl(self, observation: Dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([observation["achieved_goal"] - self.origin, observation["observation"]])

    def step(self, action: np.ndarray) -> Tuple[np.ndarray, float, bool, bool, Dict[str, Any]]:
        observation, _, terminated, truncated, info = self.env.step(action)
        success = bool(np.linalg.norm(observation["achieved_goal"] - observation["desired_goal"]) <= 0.5)
        info = {**info, "success": success}  # the episode ends at the goal, as in D4RL's evaluation env
        return self._to_d4rl(observation), float(success), terminated or success, truncated, info


class D4RLMaze2d(D4RLMazeFrame):
    """D4RL's maze2d frame: cell (row, column) is centred at (row - 0.2, column - 0.2) and the target is
    (goal row, goal column); Gymnasium centres it at (column - cx, cy - row). Positions, velocities and
    actions are rotated between the two, and reward and success follow D4RL's rule in its frame."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        maze = env.unwrapped.maze
        self.offset = np.array([maze.y_map_center - 0.7, maze.x_map_center - 0.7])
        self.target = np.array(
            next((i, j) for i, row in enumerate(maze.maze_map) for j, cell in enumerate(row) if cell == "g"), float
        )
        self.dense = env.unwrapped.reward_type == "dense"
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float64)

    def _to_d4rl(self, observation: Dict[str, np.ndarray]) -> np.ndarray:
        x, y, velocity_x, velocity_y = observation["observation"]
        return np.array([self.offset[0] - y, self.offset[1] + x, -velocity_y, velocity_x])

    def step(self, action: np.ndarray) -> Tuple[np.ndarray, float, bool, bool, Dict[str, Any]]:
        observation, _, terminated, truncated, info = self.env.step(np.array([action[1], -action[0]]))
        observation = self._to_d4rl(observation)
        distance = np.linalg.norm(observation[:2] - self.target)
        reward = float(np.exp(-distance)) if self.dense else float(distance <= 0.5)
        return observation, reward, terminated, truncated, {**info, "success": bool(distance <= 0.5)}


class D4RLKitchenObservation(gym.ObservationWrapper):
    """D4RL's 60 dims: robot joint positions (9), object positions (21), the fixed task goal (30)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        from gymnasium_robotics.envs.franka_kitchen.kitchen_env import OBS_ELEMENT_GOALS, OBS_ELEMENT_INDICES

        self.goal = np.zeros(30)
        for task in env.unwrapped.tasks_to_complete:
            self.goal[OBS_ELEMENT_INDICES[task]] = OBS_ELEMENT_GOALS[task]
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (60,), np.float64)

    def observation(self, observation: Dict[str, Any]) -> np.ndarray:
        state = observation["observation"]
        return np.concatenate([state[:9], state[18:39], self.goal])


ENV_ADAPTERS = {"d4rl_antmaze": D4RLAntMaze, "d4rl_maze2d": D4RLMaze2d, "d4rl_kitchen": D4RLKitchenObservation}


def d4rl_env_spec(name: str) -> Dict[str, Any]:
    """The fields of a script's EnvSpec for a D4RL name: env id and kwargs, episode length, reference
    scores, whether the env reports `success`, the adapter that gives it D4RL's layout, and a note on
    how it differs from the env D4RL recorded."""
    if name not in D4RL_FILES:
        raise KeyError(f"'{name}' is not a D4RL dataset name of the supported domains ({', '.join(D4RL_DOMAINS)})")
    parts = re.sub(r"-v\d+$", "", name).split("-")
    domain = parts[0]
    ref_min, ref_max = d4rl_ref_scores(name)
    spec = {"kwargs": {}, "ref_min_score": ref_min, "ref_max_score": ref_max, "reports_success": False, "adapter": ""}
    if domain in D4RL_LOCOMOTION_ENVS:
        env_id, kwargs, note = D4RL_LOCOMOTION_ENVS[domain]
        return {**spec, "env_id": env_id, "kwargs": dict(kwargs), "max_episode_steps": 1000, "note": note}
    if domain in ADROIT_DOMAINS:
        note = "AdroitHand*-v1 of gymnasium-robotics; same observations as D4RL's -v0 hand envs"
        if domain != "pen":
            note += "; its dense reward for door/hammer/relocate changed in gymnasium-robotics 1.2.1"
        return {
            **spec,
            "env_id": f"AdroitHand{domain.capitalize()}-v1",
            "reports_success": True,
            "note": note,
            "max_episode_steps": 100 if domain == "pen" else 200,
        }
    maze = parts[1]
    maze_id = "UMaze" if maze == "umaze" else maze.capitalize()
    if domain == "antmaze":
        return {
            **spec,
            "env_id": f"AntMaze_{maze_id}-v4",
            "max_episode_steps": 700 if maze == "umaze" else 1000,
            "kwargs": {
                "maze_map": _maze_map(D4RL_ANTMAZE_MAPS[maze], flip=True),
                "continuing_task": False,  # episodic: the adapter ends the episode at D4RL's 0.5 radius
                "reset_target": False,
            },
            "reports_success": True,
            "adapter": "d4rl_antmaze",
            "note": "gymnasium-robotics AntMaze-v4 laid out as D4RL's evaluation maze, observation in D4RL's frame "
            "(start cell at the origin), D4RL's 0.5 goal radius, episodes end at the goal; the ant model is "
            "Gymnasium's and the goal sits at the goal cell's centre (D4RL: up to 1.5 off it)",
        }
    if domain == "maze2d":
        return {
            **spec,
            "env_id": f"PointMaze_{maze_id}-v3",
            "max_episode_steps": D4RL_MAZE2D_STEPS[maze],
            "kwargs": {
                "maze_map": _maze_map(D4RL_MAZE2D_MAPS[maze], flip=False),
                "continuing_task": True,
                "reset_target": False,
                "reward_type": "dense" if "dense" in parts else "sparse",
            },
            "reports_success": True,
            "adapter": "d4rl_maze2d",
            "note": "gymnasium-robotics PointMaze-v3; observations, actions, target and reward in D4RL's maze2d "
            "frame; start cells and start noise are Gymnasium's",
        }
    return {  # kitchen
        **spec,
        "env_id": "FrankaKitchen-v1",
        "kwargs": {"tasks_to_complete": D4RL_KITCHEN_TASKS[maze]},
        "max_episode_steps": 280,
        "adapter": "d4rl_kitchen",
        "note": "gymnasium-robotics FrankaKitchen-v1 (needs mujoco < 3.12); observation rebuilt in D4RL's 60-dim "
        "layout (robot qpos, object qpos, goal)",
    }


def dataset_url(name: str) -> str:
    """The address D4RL downloads a dataset from."""
    return D4RL_URL_ROOT + D4RL_FILES[name]


def timeouts_every(limit: int, terminals: np.ndarray) -> np.ndarray:
    """D4RL's rule for its files without `timeouts` (the v0 ones): an episode not ended by a terminal
    ends after `limit` steps (D4RL's `qlearning_dataset` counts steps the same way)."""
    timeouts, length = np.zeros(len(terminals), bool), 0
    for index, terminal in enumerate(terminals):
        length += 1
        timeouts[index] = length == limit and not terminal
        if terminal or length == limit:
            length = 0
    return timeouts


def wrap(env: gym.Env, adapter: str) -> gym.Env:
    """Applies the adapter an env spec names, so the modern env speaks D4RL's observation layout."""
    return ENV_ADAPTERS[adapter](env)


ADAPTED_ENV_ID = "d4rl_compat/D4RLFrame-v0"


def make_adapted(env_id: str, adapter: str, env_kwargs: Dict[str, Any], limit: int, reports_success: bool) -> gym.Env:
    """A modern env in D4RL's layout behind one Gymnasium entry point, so a Minari dataset can name it and
    rebuild it from its spec (`reports_success` is carried for loaders: the adapter sets info['success'])."""
    return wrap(gym.make(env_id, max_episode_steps=limit, **env_kwargs), adapter)


gym.register(ADAPTED_ENV_ID, entry_point="d4rl_compat.envs:make_adapted")
