"""D4RL-style Maze2D datasets (d4rl_compat.maze2d): planner, controller, determinism, and the CLI's file."""

import h5py
import numpy as np
import pytest

from blocks.data import load_dataset, read_hdf5
from d4rl_compat import maze2d
from d4rl_compat.envs import D4RL_MAZE2D_MAPS, d4rl_env_spec

from conftest import run_cli


def target_cell(rows):
    return next((i, j) for i, row in enumerate(rows) for j, cell in enumerate(row) if cell == "g")


@pytest.mark.parametrize("maze", D4RL_MAZE2D_MAPS)
def test_planner_connects_every_free_cell_to_every_other(maze):
    rows = D4RL_MAZE2D_MAPS[maze]
    cells = maze2d.free_cells(rows)
    for start in cells:
        for goal in cells:
            path = maze2d.plan_waypoint_cells(rows, start, goal)
            assert path[-1] == goal and len(set(path)) == len(path)
            for before, after in zip([start, *path], path):
                assert after in cells and abs(before[0] - after[0]) + abs(before[1] - after[1]) == (before != after)


def test_planner_takes_the_path_d4rl_takes():
    # U-maze around its wall; open maze: D4RL's greedy order moves along columns before rows.
    around_the_wall = [(3, 2), (3, 3), (2, 3), (1, 3), (1, 2), (1, 1)]
    assert maze2d.plan_waypoint_cells(D4RL_MAZE2D_MAPS["umaze"], (3, 1), (1, 1)) == around_the_wall
    assert maze2d.plan_waypoint_cells(D4RL_MAZE2D_MAPS["open"], (1, 1), (2, 3)) == [(1, 2), (1, 3), (2, 3)]
    assert maze2d.plan_waypoint_cells(D4RL_MAZE2D_MAPS["open"], (2, 3), (2, 3)) == [(2, 3)]


@pytest.mark.parametrize("maze", D4RL_MAZE2D_MAPS)
def test_controller_reaches_far_goals_from_every_start_cell(maze):
    """Noise-free, from every free cell (with Gymnasium's start noise) to the cell farthest from it and to the
    evaluation target. D4RL's controller slows down at each waypoint, about 30 steps a cell (the farthest
    goals of the open maze take longer than its 150-step episodes), so the limit is 60 steps a cell."""
    rows = D4RL_MAZE2D_MAPS[maze]
    env = maze2d.make_env(d4rl_env_spec(maze2d.dataset_name(maze, dense=False)), -1)
    rng = np.random.default_rng(0)
    for index, start in enumerate(maze2d.free_cells(rows)):
        farthest = max(maze2d.free_cells(rows), key=lambda cell: len(maze2d.plan_waypoint_cells(rows, start, cell)))
        for goal in dict.fromkeys([farthest, target_cell(rows)]):
            step_limit = 60 * len(maze2d.plan_waypoint_cells(rows, start, goal))
            observation = env.reset(seed=index, options={"reset_cell": np.array(start)})[0]
            controller, reached, steps = maze2d.WaypointController(rows, rng), False, 0
            while not reached and steps < step_limit:
                action, reached = controller(observation[:2], observation[2:], np.array(goal, float))
                observation, steps = env.step(action)[0], steps + 1
            distance = np.linalg.norm(observation[:2] - goal)
            assert reached and distance <= 0.5, f"{maze}: from {start} to {goal}, {distance:.2f} away"  # D4RL: 0.5
    env.close()


def test_collection_is_deterministic_per_seed():
    first, again, other = (maze2d.collect_maze2d("umaze", False, 600, seed) for seed in (0, 0, 1))
    assert first.keys() == again.keys() and all(first[key].tobytes() == again[key].tobytes() for key in first)
    assert not np.array_equal(first["observations"], other["observations"])
    distance = np.linalg.norm(first["observations"][:, :2] - target_cell(D4RL_MAZE2D_MAPS["umaze"]), axis=1)
    assert first["rewards"].any()
    np.testing.assert_array_equal(first["rewards"], distance <= 0.5)  # D4RL's sparse rule, from observations[t]


def test_cli_file_loads_with_the_adapter_and_follows_d4rl_rules(tmp_path):
    path = tmp_path / "maze2d-umaze-dense-v1.hdf5"
    args = ("--maze", "umaze", "--reward", "dense", "--num_transitions", "3000", "--seed", "0", "--output", str(path))
    result = run_cli("-m", "d4rl_compat.maze2d", *args)
    assert result.returncode == 0, result.stderr
    dataset = load_dataset(str(path))  # validates shapes against the env built from the metadata
    spec = dataset.env
    assert spec.adapter == "d4rl_maze2d" and spec.reports_success and spec.max_episode_steps == 300
    assert (spec.ref_min_score, spec.ref_max_score) == (68.537689, 193.66285642381482)  # D4RL's published
    env = spec.make()
    assert env.observation_space.shape == (4,) and env.observation_space.shape == dataset.observations.shape[1:]
    env.close()
    assert read_hdf5(path)[1]["dataset_name"] == "maze2d-umaze-dense-v1"

    # D4RL's relabelling: dense reward of observations[t] relative to the fixed evaluation target.
    distance = np.linalg.norm(dataset.observations[:, :2] - np.array(target_cell(D4RL_MAZE2D_MAPS["umaze"])), axis=1)
    np.testing.assert_allclose(dataset.rewards, np.exp(-distance), rtol=1e-6)
    np.testing.assert_array_equal(dataset.extras["next_observations"][:-1], dataset.observations[1:])

    # No terminals; a timeout where the random goal is reached (within 0.1), else after max_episode_steps.
    assert not dataset.terminals.any()
    ends = np.flatnonzero(dataset.timeouts)
    lengths = np.diff(np.concatenate([[-1], ends]))
    assert ends[-1] == len(dataset.timeouts) - 1 and lengths.max() <= 300
    with h5py.File(path, "r") as file:
        goals = file["infos/goal"][()]
    goal_ends = ends[(lengths < 300) & (ends < len(dataset.timeouts) - 1)]
    assert len(goal_ends) >= 10
    assert (np.linalg.norm(dataset.observations[goal_ends, :2] - np.round(goals[goal_ends]), axis=1) < 0.1).all()
