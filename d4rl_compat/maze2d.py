"""D4RL-style Maze2D datasets: D4RL's grid planner and PD waypoint controller on gymnasium-robotics' PointMaze.

    python -m d4rl_compat.maze2d --maze umaze --reward sparse --seed 0 --output data/maze2d-umaze-v1.hdf5
    python -m d4rl_compat.maze2d --maze umaze --reward sparse --measure_reference_scores true

D4RL's procedure, as read in Farama-Foundation/D4RL (scripts/generation/generate_maze2d_datasets.py,
d4rl/pointmaze/waypoint_controller.py, q_iteration.py, gridcraft/grid_env.py, maze_model.py,
scripts/generation/relabel_maze2d_rewards.py, scripts/reference_scores/maze2d_controller.py and
generate_ref_min_score.py; its issues #85 and #194 on the released files):

- One continuous run of the point, never reset. A goal is drawn uniformly among the free cells (the
  evaluation goal's cell included) plus U(-0.1, 0.1) noise. Tabular Q-iteration on the grid (reward in the
  goal cell, greedy actions tried in the order stay, column - 1, column + 1, row - 1, row + 1) gives a
  shortest 4-connected path of cells from the rounded position; each cell becomes a waypoint at its integer
  (row, column) minus U(0, 0.2) per coordinate, the goal cell's exactly. It replans only when the goal
  changes cell.
- The controller: action = 10 (waypoint - position) - 1 velocity, clipped to [-1, 1]. It moves on to the
  next waypoint within 0.1 of the current one and reports the goal reached within 0.1 of it (D4RL also asks
  for less than 0.1 of movement per step, which always holds at dt 0.01 with speeds clipped to 5, so that
  check is left out). Noisy data adds N(0, 0.5^2) to each action and clips again.
- When the goal is reached, or after max_episode_steps steps on one goal, that step is marked and a new goal
  drawn. The released files mark it in `timeouts` (issue #85: the field denotes reaching the random goal, so
  segments can be 1 step long); `terminals` are all 0.
- Rewards are relabelled afterwards relative to the maze's fixed evaluation target (the 'g' cell): sparse
  1 within 0.5, dense exp(-distance), computed from `observations[t]`, one step earlier than the env's
  reward, which uses the next observation (issue #194). Kept, so the data match D4RL's files.
- Reference scores, on the evaluation env (start: any free cell, goal's included, plus U(-0.1, 0.1), with
  N(0, 0.1^2) velocity; the fixed target; no early end): ref_min is the mean return of uniformly random
  actions over 100 episodes, ref_max that of the noise-free controller over 100 episodes. That script kept
  one controller for all episodes, so it planned in the first episode only and afterwards drove straight
  at the target.

Where this differs: the physics is gymnasium-robotics' PointMaze-v3 (D4RL's MJCF model under MuJoCo 3), in
D4RL's frame through the `d4rl_maze2d` adapter; the first start is Gymnasium's; a goal runs at most
max_episode_steps steps (D4RL: one more); the plan starts from the cell the point is in (D4RL rounds the
position, which within 0.2 of a cell's upper or left wall names the neighbouring cell, possibly a wall);
next_observations are the true next states (D4RL's script recorded the old observation again after each
goal change); and the last transition is marked as a timeout, as in `d4rl_compat.generate`.
"""

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from d4rl_compat.envs import D4RL_MAZE2D_MAPS, d4rl_env_spec, wrap
from d4rl_compat.generate import UserError, d4rl_env_metadata, parse_arguments, run_command, write_hdf5

Cell = Tuple[int, int]
Policy = Callable[[np.ndarray], np.ndarray]
# D4RL's grid moves in the order its greedy argmax breaks ties (staying put never wins off the goal).
GRID_MOVES = ((0, -1), (0, 1), (-1, 0), (1, 0))
P_GAIN, D_GAIN = 10.0, -1.0  # D4RL's WaypointController: action = P (waypoint - position) + D velocity
REACH_RADIUS = 0.1  # D4RL's solve_thresh, for waypoints and the goal
WAYPOINT_JITTER = 0.2  # waypoints sit at a cell's (row, column) minus U(0, 0.2)
GOAL_NOISE = 0.1  # goals: a free cell's (row, column) plus U(-0.1, 0.1)
ACTION_NOISE_STD = 0.5  # D4RL's --noisy
# D4RL's cells are centred at (row - 0.2, column - 0.2) in its frame (see envs.D4RLMaze2d).
CELL_CENTRE_OFFSET = 0.2
# The released files' sizes (open-v0 too: 1M, its generator's default)
D4RL_SIZES = {"open": 1_000_000, "umaze": 1_000_000, "medium": 2_000_000, "large": 4_000_000}
POLICY = "waypoint planner + PD controller, noisy"


def free_cells(rows: List[str]) -> List[Cell]:
    """Every cell that is not a wall ('1'), the goal cell 'g' included, in row-major order."""
    return [(i, j) for i, row in enumerate(rows) for j, cell in enumerate(row) if cell != "1"]


def plan_waypoint_cells(rows: List[str], start: Cell, goal: Cell) -> List[Cell]:
    """The cells after `start` on a shortest 4-connected path to `goal` ([goal] when start is the goal), ties
    broken as D4RL's Q-iteration breaks them, so the path is the one its greedy rollout takes."""
    if start not in set(free_cells(rows)):
        raise ValueError(f"start {start} must be a free cell")
    steps_to_goal = grid_distances(rows, goal)
    if start not in steps_to_goal:
        raise ValueError(f"no path from {start} to {goal}")
    path, cell = [], start
    while cell != goal:
        cell = next_cell(steps_to_goal, cell)
        path.append(cell)
    return path or [goal]


def grid_distances(rows: List[str], goal: Cell) -> Dict[Cell, int]:
    """Steps from every free cell that can reach `goal` to it, by breadth-first search from the goal."""
    free = set(free_cells(rows))
    if goal not in free:
        raise ValueError(f"goal {goal} must be a free cell")
    steps_to_goal, frontier = {goal: 0}, deque([goal])
    while frontier:
        cell = frontier.popleft()
        for neighbour in neighbours(cell):
            if neighbour in free and neighbour not in steps_to_goal:
                steps_to_goal[neighbour] = steps_to_goal[cell] + 1
                frontier.append(neighbour)
    return steps_to_goal


def next_cell(steps_to_goal: Dict[Cell, int], cell: Cell) -> Cell:
    """The neighbour of `cell` one step nearer the goal (ties go to the first in GRID_MOVES' order)."""
    return min((n for n in neighbours(cell) if n in steps_to_goal), key=steps_to_goal.__getitem__)


def neighbours(cell: Cell) -> List[Cell]:
    return [(cell[0] + row_step, cell[1] + column_step) for row_step, column_step in GRID_MOVES]


def containing_cell(position: np.ndarray) -> Cell:
    return round(position[0] + CELL_CENTRE_OFFSET), round(position[1] + CELL_CENTRE_OFFSET)


class WaypointController:
    """D4RL's maze2d expert in its frame: plans when the goal changes cell, then steers through the waypoints."""

    def __init__(self, rows: List[str], rng: np.random.Generator):
        self.rows, self.rng = rows, rng
        self.goal_cell: Optional[Cell] = None
        self.waypoints: List[np.ndarray] = []
        self.next_waypoint = 0

    def __call__(self, position: np.ndarray, velocity: np.ndarray, goal: np.ndarray) -> Tuple[np.ndarray, bool]:
        """The action in [-1, 1]^2 and whether the goal is reached (within 0.1 of its cell's (row, column))."""
        goal_cell = (round(goal[0]), round(goal[1]))
        if goal_cell != self.goal_cell:
            self.replan(position, goal_cell)
        goal_point = np.array(goal_cell, float)
        reached = bool(np.linalg.norm(position - goal_point) < REACH_RADIUS)
        waypoint = goal_point if reached else self.waypoints[self.next_waypoint]
        if not reached and np.linalg.norm(position - waypoint) < REACH_RADIUS:
            self.next_waypoint += 1  # the last waypoint is the goal point, where `reached` stops this
        return np.clip(P_GAIN * (waypoint - position) + D_GAIN * velocity, -1.0, 1.0), reached

    def replan(self, position: np.ndarray, goal_cell: Cell) -> None:
        cells = plan_waypoint_cells(self.rows, containing_cell(position), goal_cell)
        jittered = [np.array(cell, float) - WAYPOINT_JITTER * self.rng.uniform(size=2) for cell in cells[:-1]]
        self.waypoints = [*jittered, np.array(goal_cell, float)]
        self.goal_cell, self.next_waypoint = goal_cell, 0


def dataset_name(maze: str, dense: bool) -> str:
    """D4RL's name: maze2d-open-v0, maze2d-umaze-dense-v1, ..."""
    return f"maze2d-{maze}{'-dense' if dense else ''}-{'v0' if maze == 'open' else 'v1'}"


def make_env(spec: Dict[str, Any], max_episode_steps: int) -> gym.Env:
    """The env as the training scripts build it (blocks/data.py EnvSpec.make); -1: no time limit."""
    return wrap(gym.make(spec["env_id"], max_episode_steps=max_episode_steps, **spec["kwargs"]), spec["adapter"])


def d4rl_rewards(observations: np.ndarray, target: np.ndarray, dense: bool) -> np.ndarray:
    """D4RL's relabelling: reward of observations[t] relative to the evaluation target."""
    distance = np.linalg.norm(observations[:, :2] - target, axis=1)
    return (np.exp(-distance) if dense else distance <= 0.5).astype(np.float32)


def collect_maze2d(maze: str, dense: bool, num_transitions: int, seed: int) -> Dict[str, np.ndarray]:
    """D4RL's flat arrays of one continuous noisy run between random goals; the same seed gives the same arrays."""
    spec = d4rl_env_spec(dataset_name(maze, dense))
    env = make_env(spec, -1)  # one continuous run, as D4RL's generator never resets
    rows, rng = D4RL_MAZE2D_MAPS[maze], np.random.default_rng(seed)
    cells, controller = free_cells(rows), WaypointController(rows, rng)
    random_goal = lambda: np.array(cells[rng.integers(len(cells))], float) + rng.uniform(-GOAL_NOISE, GOAL_NOISE, 2)
    arrays = {
        "observations": np.zeros((num_transitions, 4), np.float32),
        "next_observations": np.zeros((num_transitions, 4), np.float32),
        "actions": np.zeros((num_transitions, 2), np.float32),
        "terminals": np.zeros(num_transitions, bool),  # D4RL's maze2d files have none
        "timeouts": np.zeros(num_transitions, bool),
        "infos/goal": np.zeros((num_transitions, 2), np.float32),
    }
    observation, _ = env.reset(seed=seed)
    goal, steps_on_goal = random_goal(), 0
    for step in tqdm(range(num_transitions), desc=dataset_name(maze, dense), mininterval=1.0):
        action, reached = controller(observation[:2], observation[2:], goal)
        action = np.clip(action + ACTION_NOISE_STD * rng.standard_normal(2), -1.0, 1.0)
        next_observation = env.step(action)[0]
        steps_on_goal += 1
        arrays["observations"][step], arrays["next_observations"][step] = observation, next_observation
        arrays["actions"][step], arrays["infos/goal"][step] = action, goal
        arrays["timeouts"][step] = reached or steps_on_goal == spec["max_episode_steps"]
        if arrays["timeouts"][step]:
            goal, steps_on_goal = random_goal(), 0
        observation = next_observation
    arrays["timeouts"][-1] = True  # the file ends mid-segment: a time-limit end, never a true terminal
    arrays["rewards"] = d4rl_rewards(arrays["observations"], env.target, dense)
    # D4RL's observation is the point's qpos and qvel, so its infos/qpos and infos/qvel are the two halves.
    arrays["infos/qpos"], arrays["infos/qvel"] = arrays["observations"][:, :2], arrays["observations"][:, 2:]
    env.close()
    return arrays


def measure_reference_scores(maze: str, dense: bool, num_episodes: int = 100, seed: int = 0) -> Dict[str, float]:
    """Mean returns on the evaluation env (as the scripts build it) of uniformly random actions (D4RL's ref_min
    procedure), of the noise-free controller planning afresh each episode (the expert), and of one controller
    kept for all episodes, as D4RL's ref_max script ran it. Every policy sees the same starts."""
    spec = d4rl_env_spec(dataset_name(maze, dense))
    env, rows, rng = make_env(spec, spec["max_episode_steps"]), D4RL_MAZE2D_MAPS[maze], np.random.default_rng(seed)
    env.action_space.seed(seed)

    def steering(controller: WaypointController) -> Policy:
        return lambda observation: controller(observation[:2], observation[2:], env.target)[0]

    kept_controller = steering(WaypointController(rows, rng))
    policies_per_episode = {
        "random": lambda: lambda observation: env.action_space.sample(),
        "planner": lambda: steering(WaypointController(rows, rng)),
        "planner_kept_across_episodes": lambda: kept_controller,
    }
    scores = {name: mean_return(env, policy, num_episodes, seed) for name, policy in policies_per_episode.items()}
    env.close()
    return scores


def mean_return(env: gym.Env, policy_for_episode: Callable[[], Policy], num_episodes: int, seed: int) -> float:
    """Mean return over `num_episodes` episodes; seeding the first reset gives every policy the same starts."""
    returns = []
    for episode in range(num_episodes):
        observation = env.reset(seed=seed if episode == 0 else None)[0]
        policy, total, done = policy_for_episode(), 0.0, False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(policy(observation))
            total, done = total + reward, terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


@dataclass
class Maze2dConfig:
    maze: str = "umaze"  # a D4RL layout: open, umaze, medium, large
    reward: str = "sparse"  # sparse (1 within 0.5 of the target) or dense (exp(-distance))
    num_transitions: Optional[int] = None  # default: D4RL's size (open and umaze 1M, medium 2M, large 4M)
    seed: int = 0
    output: Optional[str] = None  # default: data/<D4RL name>.hdf5
    overwrite: bool = False
    measure_reference_scores: bool = False  # print measured reference returns next to D4RL's instead of writing
    reference_episodes: int = 100  # episodes per policy for measure_reference_scores (D4RL: 100)


def main(args: Optional[List[str]] = None) -> None:
    config = parse_arguments(Maze2dConfig, args)
    if config.maze not in D4RL_MAZE2D_MAPS:
        raise UserError(f"unknown maze '{config.maze}'; available: {', '.join(D4RL_MAZE2D_MAPS)}")
    if config.reward not in ("sparse", "dense"):
        raise UserError(f"reward must be sparse or dense, not '{config.reward}'")
    dense, name = config.reward == "dense", dataset_name(config.maze, config.reward == "dense")
    spec = d4rl_env_spec(name)
    if config.measure_reference_scores:
        if config.reference_episodes <= 0:
            raise UserError("reference_episodes must be positive")
        scores = measure_reference_scores(config.maze, dense, config.reference_episodes, config.seed)
        print_reference_scores(name, spec, scores, config.reference_episodes)
        return
    num_transitions = D4RL_SIZES[config.maze] if config.num_transitions is None else config.num_transitions
    if num_transitions <= 0:
        raise UserError("num_transitions must be positive")
    output = Path(config.output or f"data/{name}.hdf5")
    if output.exists() and not config.overwrite:
        raise UserError(f"{output} already exists; pass --overwrite true to replace it or choose another --output")
    arrays = collect_maze2d(config.maze, dense, num_transitions, config.seed)
    metadata = {
        **d4rl_env_metadata(name),
        "policy": POLICY,
        "policy_description": "D4RL's maze2d generator: random goal cells, shortest grid path, PD controller "
        "(gains 10, -1) with N(0, 0.5^2) action noise; timeouts where a goal is reached or after max_episode_steps",
        "seed": config.seed,
        "ref_scores_source": "D4RL's published scores, for comparison with papers (measure ours with "
        "--measure_reference_scores true)",
    }
    write_hdf5(output, arrays, metadata)
    segments = int(arrays["timeouts"].sum())
    print(
        f"wrote {output}: {num_transitions} transitions, {segments} goal segments "
        f"(mean length {num_transitions / segments:.0f}), mean reward {arrays['rewards'].mean():.3f}"
    )


def print_reference_scores(name: str, spec: Dict[str, Any], scores: Dict[str, float], episodes: int) -> None:
    ref_min, ref_max, kept = spec["ref_min_score"], spec["ref_max_score"], scores["planner_kept_across_episodes"]
    print(f"{name}: mean return of {episodes} episodes of {spec['max_episode_steps']} steps on the evaluation env")
    print(f"  ref_min_score, uniformly random actions:  measured {scores['random']:7.2f}, D4RL {ref_min:7.2f}")
    print(f"  ref_max_score, planner, noise-free:       measured {scores['planner']:7.2f}, D4RL {ref_max:7.2f}")
    print(f"  the planner kept across episodes, as D4RL's ref_max script ran it: {kept:7.2f}")
    print("Dataset files keep D4RL's published scores, so normalised scores compare with papers.")


if __name__ == "__main__":
    run_command(main)
