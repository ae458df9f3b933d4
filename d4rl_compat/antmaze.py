"""D4RL-style AntMaze datasets: a SAC-trained ant walked through the maze by D4RL's grid waypoint planner.

    python -m d4rl_compat.antmaze --dataset antmaze-umaze-v2 --output data/generated/antmaze-umaze-v2.hdf5
    python -m d4rl_compat.antmaze --dataset antmaze-large-play-v2 --command success  # how often it gets there
    python algorithms/online/sac.py --config_path configs/online/sac/antmaze/controller.yaml  # a goal reacher

D4RL made its antmaze data with a goal-reaching ant policy steered by a waypoint planner. Two controllers
can play that part here (`make_controller` tells them apart by the policy file):
- `GoalReacher`, a policy trained on `d4rl_compat.antmaze:AntGoal-v0`: Gymnasium's Ant-v4 model (the ant
  AntMaze-v4 puts in its mazes) on an open floor, with a goal drawn at a random direction and distance. It
  sees the ant's observation without its x, y (AntMaze's `observation`) and the goal's offset rotated into
  the ant's heading. (D4RL's policy saw the offset in the world frame, scaled to length 10.) Reward per step:
  the distance to the goal the step closed, per second, plus Ant's healthy reward 1, minus its control cost
  0.5 |a|^2. Within REACH_RADIUS a new goal is drawn; the episode ends when the ant leaves Ant's healthy
  height range, or after 500 steps. The runs so far have not learnt to walk (benchmarks/results/
  antmaze_success.md), so the datasets use the other one:
- `SteeredWalker`, a locomotion policy of D4RL's ant layout (the committed ant-expert) shown the ant in a
  frame turned towards the waypoint, by at most STEER_RATE per step.
`d4rl_compat.antmaze:AntSteer-v0` trains a policy for that second part: AntGoal-v0's goals and reward, and
the observation of D4RL's ant layout in a frame turned towards the goal, so that it learns to turn.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import gymnasium as gym
import numpy as np
from gymnasium.envs.mujoco.ant_v4 import AntEnv
from tqdm import tqdm

from d4rl_compat.envs import D4RL_ANTMAZE_MAPS, d4rl_env_spec, wrap
from d4rl_compat.generate import UserError, d4rl_env_metadata, parse_arguments, run_command, write_hdf5
from d4rl_compat.maze2d import Cell, free_cells, grid_distances, next_cell
from d4rl_compat.policies import POLICY_DIR, SACPolicy, load_card

GOAL_DISTANCE = (1.0, 5.0)  # metres; AntMaze's cells are 4 m wide, so waypoints come about 4 m apart
REACH_RADIUS = 0.5  # D4RL's antmaze goal radius
STEER_RATE = 0.08  # radians per step a SteeredWalker's heading may turn (0.04 reached fewer goals, 0.15 no more)
MAX_GOAL_OFFSET = 5.0  # the policy sees farther goals at this distance, in the same direction
EPISODE_STEPS = 500


def heading(quaternion: np.ndarray) -> float:
    """Yaw of a MuJoCo (w, x, y, z) quaternion: the ant's heading in the floor plane."""
    w, x, y, z = quaternion
    return float(np.arctan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z)))


def goal_in_ant_frame(position: np.ndarray, quaternion: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """The goal's offset from the ant, rotated into its heading and clipped to MAX_GOAL_OFFSET metres."""
    offset, yaw = np.asarray(goal, np.float64) - position, heading(quaternion)
    cos, sin = np.cos(yaw), np.sin(yaw)
    local = np.array([cos * offset[0] + sin * offset[1], -sin * offset[0] + cos * offset[1]])
    distance = np.linalg.norm(local)
    return local * (MAX_GOAL_OFFSET / distance) if distance > MAX_GOAL_OFFSET else local


def controller_observation(d4rl_observation: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """The controller's input from an observation in D4RL's antmaze layout [x, y, z, quaternion, joints, qvel]
    and a goal in the same frame: [everything after x, y; the goal in the ant's frame]."""
    position, quaternion = d4rl_observation[:2], d4rl_observation[3:7]
    return np.concatenate([d4rl_observation[2:], goal_in_ant_frame(position, quaternion, goal)])


class AntGoalEnv(gym.Env):
    """The controller's training task (see the module docstring); info['goals_reached'] counts goals so far."""

    metadata = {"render_modes": []}

    def __init__(self, reset_noise_scale: float = 0.1, use_contact_forces: bool = False):
        self.ant = AntEnv(
            exclude_current_positions_from_observation=False,
            reset_noise_scale=reset_noise_scale,
            use_contact_forces=use_contact_forces,
        )
        self.action_space = self.ant.action_space
        size = self.ant.observation_space.shape[0] - 2 + 2  # drop x, y; add the goal
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float64)
        self.goal, self.goals_reached = np.zeros(2), 0

    def _new_goal(self, position: np.ndarray) -> None:
        angle, distance = self.np_random.uniform(-np.pi, np.pi), self.np_random.uniform(*GOAL_DISTANCE)
        self.goal = position + distance * np.array([np.cos(angle), np.sin(angle)])

    def _observation(self, ant_observation: np.ndarray) -> np.ndarray:
        return controller_observation(ant_observation, self.goal)

    def reset(self, *, seed: Optional[int] = None, options: Optional[Dict[str, Any]] = None):
        super().reset(seed=seed)
        ant_observation, _ = self.ant.reset(seed=None if seed is None else int(self.np_random.integers(2**31)))
        self._new_goal(ant_observation[:2])
        self.goals_reached = 0
        return self._observation(ant_observation), {"goals_reached": 0}

    def step(self, action: np.ndarray) -> Tuple[np.ndarray, float, bool, bool, Dict[str, Any]]:
        before = np.linalg.norm(self.ant.data.qpos[:2] - self.goal)
        ant_observation, _, terminated, _, _ = self.ant.step(action)
        after = np.linalg.norm(ant_observation[:2] - self.goal)
        healthy = float(not terminated)
        reward = (before - after) / self.ant.dt + healthy * 1.0 - 0.5 * float(np.square(action).sum())
        if after <= REACH_RADIUS:
            self.goals_reached += 1
            self._new_goal(ant_observation[:2])
        return self._observation(ant_observation), reward, terminated, False, {"goals_reached": self.goals_reached}

    def close(self) -> None:
        self.ant.close()


class AntSteerEnv(AntGoalEnv):
    """AntGoal-v0's goals and reward, seen as a locomotion policy of D4RL's ant layout sees the floor: the
    observation (contact forces included) in a frame turned towards the goal, so walking to it is walking
    along +x there, and a new goal turns the frame (see `turned_observation`)."""

    def __init__(self, reset_noise_scale: float = 0.1):
        super().__init__(reset_noise_scale, use_contact_forces=True)
        size = self.ant.observation_space.shape[0] - 2  # drop x, y
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float64)

    def _observation(self, ant_observation: np.ndarray) -> np.ndarray:
        return turned_observation(self.ant, direction(ant_observation[:2], self.goal))


def direction(position: np.ndarray, target: np.ndarray) -> float:
    offset = np.asarray(target) - position
    return float(np.arctan2(offset[1], offset[0]))


gym.register("AntGoal-v0", entry_point="d4rl_compat.antmaze:AntGoalEnv", max_episode_steps=EPISODE_STEPS)
gym.register("AntSteer-v0", entry_point="d4rl_compat.antmaze:AntSteerEnv", max_episode_steps=EPISODE_STEPS)


# ---------------------------------------------------------------------------------------------------------------
# The datasets, as D4RL's scripts/generation/generate_ant_maze_datasets.py and d4rl/locomotion/maze_env.py made them:
# - Episodes of 1000 steps. Each starts at the 'r' cell (umaze) or at a random free cell (every other dataset,
#   D4RL's --multi_start), and gets one goal: the 'g' cell (umaze), one of the hand-picked 'g' cells of D4RL's
#   collection mazes below (play), or any free cell (diverse: the paper's "random goals"; D4RL's script takes a
#   --multigoal flag but never reads it).
# - Every step the planner takes the next cell on a shortest path from the ant's cell to the goal's; its waypoint
#   is that cell's centre plus U(0, 1) m per coordinate, drawn afresh each step, or the goal once the next cell
#   is the goal's. The controller walks to it, with sampled actions plus N(0, 0.2^2) noise, clipped.
# - Rewards and terminals, as D4RL relabelled its v2 files, are 1 where the next position is within 0.5 of
#   the EVALUATION goal (the 'g' of the evaluation maze), whatever the episode's own goal; episodes go on past it.
# ---------------------------------------------------------------------------------------------------------------
# The goal cells of the play datasets, (row, column) in D4RL's row order: the 'g' cells of D4RL's collection
# mazes (maze_env.U_MAZE, BIG_MAZE, HARDEST_MAZE), which have the evaluation mazes' walls.
PLAY_GOALS: Dict[str, List[Cell]] = {
    "umaze": [(3, 1)],
    "medium": [(2, 6), (5, 1), (6, 5)],
    "large": [(1, 6), (3, 5), (3, 10), (5, 2), (7, 4), (7, 6), (7, 9)],
}
DATASETS = {  # D4RL name: (maze, random start cells, goal cells)
    "antmaze-umaze-v2": ("umaze", False, "play"),
    "antmaze-umaze-diverse-v2": ("umaze", True, "any"),
    "antmaze-medium-play-v2": ("medium", True, "play"),
    "antmaze-medium-diverse-v2": ("medium", True, "any"),
    "antmaze-large-play-v2": ("large", True, "play"),
    "antmaze-large-diverse-v2": ("large", True, "any"),
}
DATA_EPISODE_STEPS = 1000  # D4RL's --max_episode_steps
DATASET_SIZE = 1_000_000  # every D4RL antmaze file
ACTION_NOISE_STD = 0.2  # D4RL's --noisy
WAYPOINT_JITTER = 1.0  # waypoints and goals: a cell's centre plus U(0, 0.25 x 4 m) per coordinate
GOAL_EXTRA_JITTER = 0.5  # goals get U(0, 0.5 x 0.25 x 4 m) more
START_JITTER = 1.0  # random starts: a cell's centre plus U(0, 0.5 x 0.5 x 4 m)
RESET_NOISE = 0.1  # D4RL's Ant reset: qpos + U(-0.1, 0.1), qvel + 0.1 N(0, 1)
# The datasets whose controller reaches the evaluation goal about as often as D4RL's did (umaze: 60% of
# episodes, where behaviour cloning on D4RL's umaze data scores 54.6). In medium (38%) and large (16%) the
# steered walker flips at walls, so the suite leaves those four out and the command needs --allow_below_d4rl.
D4RL_LIKE = ("antmaze-umaze-v2", "antmaze-umaze-diverse-v2")
# The datasets' controller: ant-expert steered (see benchmarks/results/antmaze_success.md; the goal reachers
# trained on AntGoal-v0 so far do not walk yet).
CONTROLLER = "ant-expert.pt"
CONTROLLER_PATH = POLICY_DIR / CONTROLLER
POLICY = "SAC ant controller + D4RL's grid waypoint planner, noisy"


class MazeGrid:
    """Cells of a gymnasium-robotics maze in D4RL's row order ('r', 'g' and walls), and the planner over them."""

    def __init__(self, env: gym.Env, rows: List[str]):
        self.maze, self.rows = env.unwrapped.maze, rows
        self.height = len(rows)
        self.free = free_cells(rows)
        self.plans: Dict[Cell, Dict[Cell, int]] = {}  # goal cell: steps to it from every cell

    def cell(self, xy: np.ndarray) -> Cell:
        """D4RL's (row, column) of a position; the env's map is D4RL's upside down."""
        row, column = self.maze.cell_xy_to_rowcol(xy)
        return self.height - 1 - int(row), int(column)

    def centre(self, cell: Cell) -> np.ndarray:
        return self.maze.cell_rowcol_to_xy(np.array([self.height - 1 - cell[0], cell[1]]))

    def marked(self, mark: str) -> List[Cell]:
        return [(i, j) for i, row in enumerate(self.rows) for j, value in enumerate(row) if value == mark]

    def waypoint(self, xy: np.ndarray, goal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """D4RL's create_navigation_policy: the next cell towards the goal's, jittered afresh, or the goal itself."""
        here, goal_cell = self.cell(xy), self.cell(goal)
        if goal_cell not in self.plans:
            self.plans[goal_cell] = grid_distances(self.rows, goal_cell)
        steps_to_goal = self.plans[goal_cell]
        if here == goal_cell or here not in steps_to_goal:  # at the goal, or rounded into a wall at its edge
            return goal
        following = next_cell(steps_to_goal, here)
        if following == goal_cell:
            return goal
        return self.centre(following) + rng.uniform(0.0, WAYPOINT_JITTER, 2)


def maze_env(name: str) -> gym.Env:
    """The evaluation env of a D4RL antmaze name, as the training scripts build it (adapter included)."""
    spec = d4rl_env_spec(name)
    return wrap(
        gym.make(spec["env_id"], max_episode_steps=spec["max_episode_steps"], **spec["kwargs"]), spec["adapter"]
    )


class GoalReacher:
    """A sac.py snapshot trained on AntGoal-v0: it sees the waypoint in its own frame."""

    def __init__(self, policy: SACPolicy):
        self.policy = policy

    def reset(self) -> None:
        pass

    def __call__(self, ant: AntEnv, observation: np.ndarray, waypoint: np.ndarray) -> np.ndarray:
        return self.policy(controller_observation(observation, waypoint))


class SteeredWalker:
    """A locomotion policy of D4RL's ant layout (it runs along +x), walked towards the waypoint: it is shown
    the ant in a frame turned by a heading, about the vertical, where the floor's physics is the same. The
    heading turns towards the waypoint's direction by at most STEER_RATE per step (faster turns flip it)."""

    def __init__(self, policy: SACPolicy, turn_rate: float = STEER_RATE):
        self.policy, self.heading, self.turn_rate = policy, None, turn_rate

    def reset(self) -> None:
        self.heading = None

    def __call__(self, ant: AntEnv, observation: np.ndarray, waypoint: np.ndarray) -> np.ndarray:
        wanted = direction(observation[:2], waypoint)
        if self.heading is None:
            self.heading = wanted
        turn = (wanted - self.heading + np.pi) % (2.0 * np.pi) - np.pi
        self.heading += float(np.clip(turn, -self.turn_rate, self.turn_rate))
        return self.policy(turned_observation(ant, self.heading))


def turned_observation(ant: AntEnv, heading: float) -> np.ndarray:
    """Ant-v4's observation with contact forces (D4RL's ant layout) in a frame turned by `heading` about the
    vertical: the torso's orientation, its linear velocity and the contact forces turn; the angular velocity
    is in the torso's own frame and the joints have none, so they stay."""
    cos, sin = np.cos(heading), np.sin(heading)
    turn = np.array([[cos, sin, 0.0], [-sin, cos, 0.0], [0.0, 0.0, 1.0]])  # world to turned coordinates
    qpos, qvel = ant.data.qpos, ant.data.qvel
    w, x, y, z = qpos[3:7]
    half_cos, half_sin = np.cos(heading / 2.0), -np.sin(heading / 2.0)  # (half_cos, 0, 0, half_sin) * q
    quaternion = [
        half_cos * w - half_sin * z,
        half_cos * x - half_sin * y,
        half_cos * y + half_sin * x,
        half_cos * z + half_sin * w,
    ]
    forces = ant.data.cfrc_ext.reshape(-1, 2, 3) @ turn.T  # [torque, force] of each body, world-aligned
    low, high = ant._contact_force_range
    parts = [qpos[2:3], quaternion, qpos[7:], turn @ qvel[:3], qvel[3:], np.clip(forces, low, high).ravel()]
    return np.concatenate(parts)


def make_controller(policy_path: Path, seed: int, deterministic: bool = False) -> Any:
    """A GoalReacher for a snapshot trained on AntGoal-v0; a SteeredWalker for one trained on AntSteer-v0 (its
    frame points at the waypoint at once, as in training) or for a policy of D4RL's ant layout."""
    policy = SACPolicy(policy_path, seed, deterministic=deterministic)
    snapshot = policy.snapshot
    if snapshot["env_id"].endswith("AntGoal-v0"):
        return GoalReacher(policy)
    if snapshot["env_id"].endswith("AntSteer-v0"):
        return SteeredWalker(policy, turn_rate=np.pi)
    if snapshot["env_id"] == "Ant-v4" and json.loads(snapshot["env_kwargs"]).get("use_contact_forces"):
        return SteeredWalker(policy)
    raise UserError(f"{policy_path} is for {snapshot['env_id']}: use an AntGoal-v0 snapshot or an ant policy")


def navigate(
    controller: Any,
    ant: AntEnv,
    observation: np.ndarray,
    goal: np.ndarray,
    grid: MazeGrid,
    origin: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """The controller's action towards the planner's waypoint; `observation` and `goal` in D4RL's frame."""
    waypoint = grid.waypoint(observation[:2] + origin, goal + origin, rng) - origin
    return controller(ant, observation, waypoint)


def in_d4rl_frame(ant_observation: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Ant-v4's [x, y, rest of qpos, qvel] with x, y measured from D4RL's origin, the start cell's centre."""
    return np.concatenate([ant_observation[:2] - origin, ant_observation[2:]])


def collect_antmaze(name: str, policy_path: Path, num_transitions: int, seed: int) -> Dict[str, np.ndarray]:
    """D4RL's flat arrays for one antmaze dataset; the same seed gives the same arrays."""
    maze, random_starts, goal_cells = DATASETS[name]
    env = maze_env(name)
    ant = env.unwrapped.ant_env  # stepped directly: the maze walls are in its model, and nothing ends early
    grid = MazeGrid(env, D4RL_ANTMAZE_MAPS[maze])
    origin = grid.centre(grid.marked("r")[0])
    evaluation_goal = grid.centre(grid.marked("g")[0]) - origin
    goals = PLAY_GOALS[maze] if goal_cells == "play" else grid.free
    controller, rng = make_controller(policy_path, seed), np.random.default_rng(seed)
    env.reset(seed=seed)
    width = ant.observation_space.shape[0]
    arrays = {
        "observations": np.zeros((num_transitions, width), np.float32),
        "next_observations": np.zeros((num_transitions, width), np.float32),
        "actions": np.zeros((num_transitions, ant.action_space.shape[0]), np.float32),
        "timeouts": np.zeros(num_transitions, bool),
        "infos/goal": np.zeros((num_transitions, 2), np.float32),
        "infos/qpos": np.zeros((num_transitions, ant.model.nq), np.float32),
        "infos/qvel": np.zeros((num_transitions, ant.model.nv), np.float32),
    }
    steps_in_episode = DATA_EPISODE_STEPS
    for step in tqdm(range(num_transitions), desc=name, mininterval=1.0):
        if steps_in_episode == DATA_EPISODE_STEPS:
            observation, goal, steps_in_episode = start_episode(ant, grid, goals, random_starts, origin, rng)
            controller.reset()
        action = navigate(controller, ant, observation, goal, grid, origin, rng)
        action = np.clip(action + ACTION_NOISE_STD * rng.standard_normal(action.shape), -1.0, 1.0)
        next_observation = in_d4rl_frame(ant.step(action)[0], origin)
        steps_in_episode += 1
        arrays["observations"][step], arrays["next_observations"][step] = observation, next_observation
        arrays["actions"][step], arrays["infos/goal"][step] = action, goal
        arrays["infos/qpos"][step] = observation[: ant.model.nq]  # D4RL's frame, as the observation
        arrays["infos/qvel"][step] = observation[ant.model.nq :]
        arrays["timeouts"][step] = steps_in_episode == DATA_EPISODE_STEPS
        observation = next_observation
    arrays["timeouts"][-1] = True  # the file ends mid-episode: a time-limit end, never a true terminal
    near = np.linalg.norm(arrays["next_observations"][:, :2] - evaluation_goal, axis=1) <= 0.5
    arrays["rewards"], arrays["terminals"] = near.astype(np.float32), near
    env.close()
    return arrays


def start_episode(
    ant: AntEnv, grid: MazeGrid, goals: List[Cell], random_start: bool, origin: np.ndarray, rng: np.random.Generator
) -> Tuple[np.ndarray, np.ndarray, int]:
    """D4RL's reset: the ant at its start with noisy joints and velocities, and the episode's goal (D4RL's frame)."""
    start = grid.centre(grid.free[rng.integers(len(grid.free))] if random_start else grid.marked("r")[0])
    qpos = ant.init_qpos + rng.uniform(-RESET_NOISE, RESET_NOISE, ant.model.nq)
    qpos[:2] += start + (rng.uniform(0.0, START_JITTER, 2) if random_start else 0.0) - ant.init_qpos[:2]
    ant.set_state(qpos, ant.init_qvel + RESET_NOISE * rng.standard_normal(ant.model.nv))
    goal = grid.centre(goals[rng.integers(len(goals))]) + rng.uniform(0.0, WAYPOINT_JITTER, 2)
    goal = goal + rng.uniform(0.0, GOAL_EXTRA_JITTER, 2)
    ant_observation = ant._get_obs()
    return in_d4rl_frame(ant_observation, origin), goal - origin, 0


def success_rate(name: str, policy_path: Path, episodes: int, noisy: bool, seed: int) -> Dict[str, float]:
    """How often the planner-driven controller reaches the goal of the evaluation env (the scripts' env:
    D4RL's start, its goal and radius and time limit), with or without the data's action noise."""
    env, maze = maze_env(name), DATASETS[name][0]
    grid = MazeGrid(env, D4RL_ANTMAZE_MAPS[maze])
    origin = grid.centre(grid.marked("r")[0])
    controller, rng = make_controller(policy_path, seed, not noisy), np.random.default_rng(seed)
    successes, lengths = [], []
    for episode in range(episodes):
        observation = env.reset(seed=seed + episode)[0]
        goal, done, length, info = env.unwrapped.goal - origin, False, 0, {"success": False}
        controller.reset()
        while not done:
            action = navigate(controller, env.unwrapped.ant_env, observation, goal, grid, origin, rng)
            if noisy:
                action = np.clip(action + ACTION_NOISE_STD * rng.standard_normal(action.shape), -1.0, 1.0)
            observation, _, terminated, truncated, info = env.step(action)
            done, length = terminated or truncated, length + 1
        successes.append(info["success"])
        lengths.append(length)
    env.close()
    return {"success_rate": float(np.mean(successes)), "mean_length": float(np.mean(lengths)), "episodes": episodes}


@dataclass
class AntMazeConfig:
    dataset: str = "antmaze-umaze-v2"  # a D4RL antmaze name (see DATASETS)
    command: str = "generate"  # generate, or success: the controller's success rate on the evaluation env
    policy: str = str(CONTROLLER_PATH)  # an AntGoal-v0 snapshot, or a policy of D4RL's ant layout to steer
    num_transitions: int = DATASET_SIZE
    seed: int = 0
    output: Optional[str] = None  # default: data/<name>.hdf5
    overwrite: bool = False
    episodes: int = 100  # success: evaluation episodes
    noisy: bool = True  # success: with the data's action noise (false: the deterministic controller)
    allow_below_d4rl: bool = False  # generate a medium or large file, whose controller is below D4RL's (D4RL_LIKE)


def main(args: Optional[List[str]] = None) -> None:
    config = parse_arguments(AntMazeConfig, args)
    if config.dataset not in DATASETS:
        raise UserError(f"unknown dataset '{config.dataset}'; available: {', '.join(DATASETS)}")
    policy_path = Path(config.policy)
    if not policy_path.exists():
        raise UserError(f"controller {policy_path} does not exist; train one with configs/online/sac/antmaze")
    if config.command == "success":
        if config.episodes <= 0:
            raise UserError("episodes must be positive")
        result = success_rate(config.dataset, policy_path, config.episodes, config.noisy, config.seed)
        print(f"{config.dataset} ({'noisy' if config.noisy else 'deterministic'} controller): {json.dumps(result)}")
        return
    if config.command != "generate":
        raise UserError(f"unknown command '{config.command}': generate or success")
    if config.num_transitions <= 0:
        raise UserError("num_transitions must be positive")
    if config.dataset not in D4RL_LIKE and not config.allow_below_d4rl:
        raise UserError(
            f"{config.dataset} is not D4RL-like yet: its controller flips at walls and reaches medium and large "
            "goals far less often than D4RL's (benchmarks/results/antmaze_success.md); pass --allow_below_d4rl "
            f"true to write it anyway, or use {' / '.join(D4RL_LIKE)}"
        )
    output = Path(config.output or f"data/{config.dataset}.hdf5")
    if output.exists() and not config.overwrite:
        raise UserError(f"{output} already exists; pass --overwrite true to replace it or choose another --output")
    arrays = collect_antmaze(config.dataset, policy_path, config.num_transitions, config.seed)
    card = load_card(policy_path) if policy_path.with_suffix(".json").exists() else {}
    metadata = {
        **d4rl_env_metadata(config.dataset),
        "policy": POLICY,
        "policy_card": json.dumps(card),
        "controller": f"{type(make_controller(policy_path, config.seed)).__name__} of {policy_path.name}",
        "policy_description": "D4RL's antmaze generator: 1000-step episodes from "
        f"{'random' if DATASETS[config.dataset][1] else 'the fixed'} start, one goal each "
        f"({DATASETS[config.dataset][2]} goal cells), next-cell waypoints for the controller, with "
        "N(0, 0.2^2) action noise; rewards and terminals 1 within 0.5 of the evaluation goal",
        "seed": config.seed,
        "d4rl_like": config.dataset in D4RL_LIKE,
    }
    write_hdf5(output, arrays, metadata)
    episodes = int(arrays["timeouts"].sum())
    print(
        f"wrote {output}: {config.num_transitions} transitions, {episodes} episodes, "
        f"{int(arrays['rewards'].sum())} steps at the evaluation goal"
    )


if __name__ == "__main__":
    run_command(main)
