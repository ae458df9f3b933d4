"""AntMaze: the controller's task and frame, the planner in D4RL's mazes, and the generated datasets."""

import shutil
from pathlib import Path

import gymnasium as gym
import h5py
import numpy as np
import pytest

from conftest import load_script, run_cli


def tiny_run(run_dir: Path, config: str) -> Path:
    """A tiny sac.py run of a controller's training config, shortened: its last snapshot."""
    sac = load_script("algorithms/online/sac.py")
    args = ["--config_path", config, "--actor_hidden_dims", "[16, 16]"]
    args += ["--critic_hidden_dims", "[16, 16]", "--batch_size", "32", "--total_steps", "200", "--random_steps", "100"]
    args += ["--eval_every", "200", "--n_episodes", "1", "--wandb_mode", "disabled", "--device", "cpu"]
    sac.train(sac.parse_config(sac.TrainConfig, [*args, "--run_dir", str(run_dir)]))
    return run_dir / "policies" / "step_000000200.pt"


@pytest.fixture(scope="module")
def controller(tmp_path_factory) -> Path:
    """A goal reacher trained (briefly) on AntGoal-v0."""
    return tiny_run(tmp_path_factory.mktemp("controller") / "run", "configs/online/sac/antmaze/controller.yaml")


def test_the_goal_is_given_in_the_ants_heading_and_clipped():
    from d4rl_compat.antmaze import MAX_GOAL_OFFSET, goal_in_ant_frame

    facing_y = np.array([np.cos(np.pi / 4), 0.0, 0.0, np.sin(np.pi / 4)])  # yaw +90 degrees
    position = np.array([1.0, 2.0])
    np.testing.assert_allclose(goal_in_ant_frame(position, facing_y, [1.0, 4.0]), [2.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(goal_in_ant_frame(position, facing_y, [0.0, 2.0]), [0.0, 1.0], atol=1e-12)
    far = goal_in_ant_frame(position, np.array([1.0, 0.0, 0.0, 0.0]), [31.0, 2.0])
    np.testing.assert_allclose(far, [MAX_GOAL_OFFSET, 0.0])


def test_the_training_task_rewards_progress_and_draws_a_new_goal_at_the_old_one():
    from d4rl_compat.antmaze import REACH_RADIUS

    env = gym.make("d4rl_compat.antmaze:AntGoal-v0")
    observation, info = env.reset(seed=3)
    task = env.unwrapped
    assert observation.shape == env.observation_space.shape == (29,) and info["goals_reached"] == 0
    action = np.full(8, 0.5)
    before = np.linalg.norm(task.ant.data.qpos[:2] - task.goal)
    observation, reward, _, _, info = env.step(action)
    after = np.linalg.norm(task.ant.data.qpos[:2] - task.goal)
    assert reward == pytest.approx((before - after) / task.ant.dt + 1.0 - 0.5 * 8 * 0.25)
    assert env.spec.max_episode_steps == 500
    old_goal = task.goal.copy()
    qpos = task.ant.data.qpos.copy()
    qpos[:2] = old_goal  # put the ant on its goal: the step reaches it
    task.ant.set_state(qpos, task.ant.data.qvel)
    info = env.step(np.zeros(8))[4]
    distance = np.linalg.norm(task.goal - task.ant.data.qpos[:2])
    assert info["goals_reached"] == 1 and not np.allclose(task.goal, old_goal) and distance > REACH_RADIUS


def test_the_steering_task_shows_the_ant_turned_towards_its_goal_and_rewards_as_the_goal_task():
    from d4rl_compat.antmaze import direction, turned_observation

    steer, goal = gym.make("d4rl_compat.antmaze:AntSteer-v0"), gym.make("d4rl_compat.antmaze:AntGoal-v0")
    observation = steer.reset(seed=3)[0]
    goal.reset(seed=3)
    task = steer.unwrapped
    assert observation.shape == steer.observation_space.shape == (111,) and steer.spec.max_episode_steps == 500
    np.testing.assert_array_equal(task.goal, goal.unwrapped.goal)  # the same goals from the same seed
    for _ in range(5):
        action = np.full(8, 0.3)
        observation, reward, *_ = steer.step(action)
        other_reward = goal.step(action)[1]
        towards = direction(task.ant.data.qpos[:2], task.goal)
        np.testing.assert_array_equal(observation, turned_observation(task.ant, towards))
        assert reward == pytest.approx(other_reward, abs=1e-6)  # contact forces observed, not rewarded
    steer.close()
    goal.close()


@pytest.mark.parametrize("maze", ["umaze", "medium", "large"])
def test_the_planner_leads_from_every_cell_to_every_goal_in_d4rls_mazes(maze):
    from d4rl_compat.antmaze import PLAY_GOALS, MazeGrid, maze_env
    from d4rl_compat.envs import D4RL_ANTMAZE_MAPS

    env = maze_env(f"antmaze-{maze}-diverse-v2" if maze != "umaze" else "antmaze-umaze-v2")
    grid, rng = MazeGrid(env, D4RL_ANTMAZE_MAPS[maze]), np.random.default_rng(0)
    assert set(PLAY_GOALS[maze]) <= set(grid.free)  # the collection mazes have the evaluation walls
    assert env.unwrapped.maze.maze_map[-2][1] == "r"  # D4RL's row 1 is the env's second row from the bottom
    for start in grid.free:
        assert grid.cell(grid.centre(start)) == start
        for goal_cell in grid.free:
            goal, cell, moves = grid.centre(goal_cell) + 0.3, start, 0
            while cell != goal_cell:
                waypoint = grid.waypoint(grid.centre(cell), goal, rng)
                following = grid.cell(waypoint)
                assert abs(following[0] - cell[0]) + abs(following[1] - cell[1]) == 1  # one neighbouring cell
                cell, moves = following, moves + 1
                assert moves <= len(grid.free)
    env.close()


def test_datasets_are_deterministic_and_laid_out_as_d4rls(controller):
    from d4rl_compat.antmaze import PLAY_GOALS, MazeGrid, collect_antmaze, maze_env
    from d4rl_compat.envs import D4RL_ANTMAZE_MAPS

    arrays = collect_antmaze("antmaze-medium-play-v2", controller, 2100, seed=0)
    again = collect_antmaze("antmaze-medium-play-v2", controller, 2100, seed=0)
    other = collect_antmaze("antmaze-medium-play-v2", controller, 2100, seed=1)
    assert all(np.array_equal(arrays[key], again[key]) for key in arrays)
    assert not np.array_equal(arrays["observations"], other["observations"])
    assert arrays["observations"].shape == (2100, 29) and arrays["actions"].shape == (2100, 8)
    assert np.flatnonzero(arrays["timeouts"]).tolist() == [999, 1999, 2099]
    ends = arrays["timeouts"][:-1]
    np.testing.assert_array_equal(arrays["observations"][1:][~ends], arrays["next_observations"][:-1][~ends])
    np.testing.assert_array_equal(arrays["infos/qpos"][:, :2], arrays["observations"][:, :2])
    np.testing.assert_array_equal(arrays["infos/qvel"], arrays["observations"][:, 15:])
    # D4RL's frame: the start cell at the origin, the evaluation goal (row 6, column 6) 4 m per cell away
    env = maze_env("antmaze-medium-play-v2")
    grid = MazeGrid(env, D4RL_ANTMAZE_MAPS["medium"])
    near = np.linalg.norm(arrays["next_observations"][:, :2] - [20.0, 20.0], axis=1) <= 0.5
    np.testing.assert_array_equal(arrays["rewards"], near)
    np.testing.assert_array_equal(arrays["terminals"], near)
    goal_cells = {grid.cell(goal + grid.centre((1, 1))) for goal in arrays["infos/goal"]}
    assert goal_cells <= set(PLAY_GOALS["medium"]) and len(np.unique(arrays["infos/goal"], axis=0)) == 3
    env.close()


def test_umaze_starts_at_the_start_cell_and_aims_at_the_evaluation_goal(controller):
    from d4rl_compat.antmaze import collect_antmaze

    arrays = collect_antmaze("antmaze-umaze-v2", controller, 2000, seed=0)
    starts = arrays["observations"][[0, 1000], :2]
    assert np.abs(starts).max() <= 0.1  # D4RL's reset noise on the start cell's centre
    goals = arrays["infos/goal"][[0, 1000]]
    assert np.all((goals >= [0.0, 8.0]) & (goals <= [1.5, 9.5]))  # the 'g' cell, D4RL's U(0, 1.5) offset


def test_the_command_writes_a_file_checks_its_input_and_keeps_what_exists(controller, tmp_path, capsys):
    from d4rl_compat.antmaze import main
    from d4rl_compat.generate import UserError

    output = tmp_path / "antmaze-umaze-diverse-v2.hdf5"
    args = ["--dataset", "antmaze-umaze-diverse-v2", "--policy", str(controller), "--output", str(output)]
    main([*args, "--num_transitions", "50"])
    with h5py.File(output) as file:
        assert len(file["observations"]) == 50 and file["metadata/env_id"][()].decode() == "AntMaze_UMaze-v4"
        assert file["metadata/d4rl_like"][()]
    medium = tmp_path / "antmaze-medium-play-v2.hdf5"
    below = ["--dataset", "antmaze-medium-play-v2", "--policy", str(controller), "--output", str(medium)]
    with pytest.raises(UserError, match="not D4RL-like yet.*--allow_below_d4rl true"):
        main([*below, "--num_transitions", "50"])
    assert not medium.exists()
    main([*below, "--num_transitions", "50", "--allow_below_d4rl", "true"])
    with h5py.File(medium) as file:
        assert len(file["observations"]) == 50 and not file["metadata/d4rl_like"][()]
    with pytest.raises(UserError, match="already exists"):
        main([*args, "--num_transitions", "60"])
    with h5py.File(output) as file:
        assert len(file["observations"]) == 50
    with pytest.raises(UserError, match="unknown dataset"):
        main(["--dataset", "antmaze-huge-v2", "--policy", str(controller)])
    with pytest.raises(UserError, match="does not exist"):
        main(["--policy", str(tmp_path / "missing.pt")])
    main(["--dataset", "antmaze-umaze-v2", "--policy", str(controller), "--command", "success", "--episodes", "1"])
    assert '"success_rate": 0.0' in capsys.readouterr().out  # an untrained controller gets nowhere


def test_the_success_benchmark_writes_a_row_per_maze(controller, tmp_path):
    output = tmp_path / "antmaze_success.md"
    result = run_cli(
        "benchmarks/antmaze_success.py", "--policies", str(controller), "--episodes", "1", "--output", str(output)
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in output.read_text().splitlines() if line.startswith("| step_000000200.pt | 200 |")]
    assert [row.split("|")[3].strip() for row in rows] == ["umaze", "medium", "large"]
    missing = run_cli("benchmarks/antmaze_success.py", "--policies", str(tmp_path / "none.pt"))
    assert missing.returncode == 2 and "controllers not found" in missing.stderr


def test_the_suite_writes_the_d4rl_like_antmaze_files_when_their_controller_is_committed(tmp_path, monkeypatch, capsys):
    import d4rl_compat.policies
    from d4rl_compat.antmaze import CONTROLLER, D4RL_LIKE
    from d4rl_compat.generate import GenerateConfig, write_suite

    committed = d4rl_compat.policies.POLICY_DIR
    monkeypatch.setattr(d4rl_compat.policies, "POLICY_DIR", tmp_path / "policies")
    config = GenerateConfig(suite=True, num_transitions=40, output_dir=str(tmp_path / "none"))
    write_suite(config)
    assert not list((tmp_path / "none").glob("antmaze-*"))
    (tmp_path / "policies").mkdir()
    for suffix in (".pt", ".json"):
        shutil.copy(
            (committed / CONTROLLER).with_suffix(suffix), (tmp_path / "policies" / CONTROLLER).with_suffix(suffix)
        )
    write_suite(GenerateConfig(suite=True, num_transitions=40, output_dir=str(tmp_path / "out")))
    written = sorted(path.stem for path in (tmp_path / "out").glob("antmaze-*.hdf5"))
    assert written == sorted(D4RL_LIKE) == ["antmaze-umaze-diverse-v2", "antmaze-umaze-v2"]
    assert "no antmaze-medium-play-v2, antmaze-medium-diverse-v2, antmaze-large" in capsys.readouterr().out
    for name in written:
        with h5py.File(tmp_path / "out" / f"{name}.hdf5") as file:
            assert len(file["observations"]) == 40 and file["metadata/dataset_name"][()].decode() == name
            assert "ant-expert" in file["metadata/policy_card"][()].decode()
            assert file["metadata/controller"][()].decode() == "SteeredWalker of ant-expert.pt"


def test_a_steered_walker_sees_the_ant_in_a_frame_turned_by_its_heading():
    from d4rl_compat.antmaze import turned_observation

    env = gym.make("Ant-v4", use_contact_forces=True)  # D4RL's ant layout, which the locomotion policies see
    observation, ant = env.reset(seed=0)[0], env.unwrapped
    for _ in range(20):
        observation = env.step(env.action_space.sample())[0]
    np.testing.assert_array_equal(turned_observation(ant, 0.0), observation)
    before = turned_observation(ant, 0.3)
    qpos, qvel, angle = ant.data.qpos.copy(), ant.data.qvel.copy(), 1.1  # the same state turned by `angle`
    qpos[3:7] = [
        np.cos(angle / 2) * qpos[3] - np.sin(angle / 2) * qpos[6],
        np.cos(angle / 2) * qpos[4] - np.sin(angle / 2) * qpos[5],
        np.cos(angle / 2) * qpos[5] + np.sin(angle / 2) * qpos[4],
        np.cos(angle / 2) * qpos[6] + np.sin(angle / 2) * qpos[3],
    ]
    qvel[:2] = [np.cos(angle) * qvel[0] - np.sin(angle) * qvel[1], np.sin(angle) * qvel[0] + np.cos(angle) * qvel[1]]
    ant.data.qpos[:], ant.data.qvel[:] = qpos, qvel
    forces = ant.data.cfrc_ext.reshape(-1, 2, 3).copy()
    ant.data.cfrc_ext[:] = np.stack(
        [
            forces[..., 0] * np.cos(angle) - forces[..., 1] * np.sin(angle),
            forces[..., 0] * np.sin(angle) + forces[..., 1] * np.cos(angle),
            forces[..., 2],
        ],
        -1,
    ).reshape(-1, 6)
    np.testing.assert_allclose(turned_observation(ant, 0.3 + angle), before, atol=1e-12)
    env.close()


def test_the_controller_kind_follows_the_policy_and_a_steered_walker_turns_gradually(controller, tmp_path):
    from d4rl_compat.antmaze import STEER_RATE, GoalReacher, SteeredWalker, make_controller, maze_env
    from d4rl_compat.generate import UserError
    from d4rl_compat.policies import POLICY_DIR

    assert isinstance(make_controller(controller, 0), GoalReacher)
    steering = tiny_run(tmp_path / "steer", "configs/online/sac/antmaze/steer.yaml")
    steerer = make_controller(steering, 0)
    env = maze_env("antmaze-umaze-v2")
    observation, ant = env.reset(seed=0)[0], env.unwrapped.ant_env
    assert isinstance(steerer, SteeredWalker) and steerer(ant, observation, observation[:2] + [0.0, 5.0]).shape == (8,)
    assert steerer.heading == pytest.approx(np.pi / 2)  # trained to turn: its frame points at the waypoint at once
    walker = make_controller(POLICY_DIR / "ant-expert.pt", 0, deterministic=True)
    assert isinstance(walker, SteeredWalker)
    with pytest.raises(UserError, match="Hopper"):
        make_controller(POLICY_DIR / "hopper-medium.pt", 0)
    walker(ant, observation, observation[:2] + [1.0, 0.0])
    assert walker.heading == 0.0
    action = walker(ant, observation, observation[:2] + [0.0, 5.0])  # a waypoint 90 degrees to the left
    assert walker.heading == pytest.approx(STEER_RATE) and action.shape == (8,) and np.all(np.abs(action) <= 1)
    walker.reset()
    assert walker.heading is None
    env.close()
