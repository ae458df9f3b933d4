"""The d4rl_compat package: D4RL names map to modern envs that speak D4RL's layout, frame and task."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from blocks.data import EnvSpec
from d4rl_compat import D4RL_FILES, d4rl_env_spec, dataset_url, timeouts_every
from d4rl_compat.envs import d4rl_ref_scores


def make(name: str):
    """The evaluation env a script builds for a D4RL name (through its EnvSpec and the adapter)."""
    return EnvSpec(**{key: value for key, value in d4rl_env_spec(name).items() if key != "note"}).make()


SHARED_D4RL_TABLE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "d4rl_datasets.json"
# Observation and action sizes of D4RL's own envs.
D4RL_SHAPES = {
    "hopper": (11, 3),
    "halfcheetah": (17, 6),
    "walker2d": (17, 6),
    "ant": (111, 8),
    "antmaze": (29, 8),
    "pen": (45, 24),
    "door": (39, 28),
    "hammer": (46, 26),
    "relocate": (39, 30),
    "maze2d": (4, 2),
    "kitchen": (60, 9),
}
REPRESENTATIVES = [
    "hopper-medium-v2",
    "ant-random-v2",
    "antmaze-large-play-v2",
    "pen-human-v1",
    "door-cloned-v1",
    "hammer-expert-v1",
    "relocate-human-v1",
    "maze2d-medium-dense-v1",
    "kitchen-mixed-v0",
]


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_env_shapes_match_d4rl(name):
    env = make(name)
    observation, _ = env.reset(seed=0)
    observation, *_ = env.step(env.action_space.sample())
    assert (observation.shape[0], env.action_space.shape[0]) == D4RL_SHAPES[name.split("-")[0]]
    assert env.observation_space.shape == observation.shape
    env.close()


@pytest.mark.skipif(not SHARED_D4RL_TABLE.exists(), reason="../shared/reference is only beside the project checkout")
def test_every_d4rl_name_has_an_env_mapping():
    for name in json.loads(SHARED_D4RL_TABLE.read_text()):
        spec = d4rl_env_spec(name)
        assert spec["env_id"] and spec["max_episode_steps"], name


def test_episode_lengths_follow_d4rl():
    assert d4rl_env_spec("pen-human-v1")["max_episode_steps"] == 100
    assert d4rl_env_spec("door-human-v1")["max_episode_steps"] == 200
    assert d4rl_env_spec("antmaze-umaze-v2")["max_episode_steps"] == 700
    assert d4rl_env_spec("antmaze-medium-play-v2")["max_episode_steps"] == 1000
    assert d4rl_env_spec("maze2d-large-v1")["max_episode_steps"] == 800
    assert d4rl_env_spec("kitchen-partial-v0")["max_episode_steps"] == 280


@pytest.mark.parametrize(
    "name, goal",
    [("antmaze-umaze-v2", (0, 8)), ("antmaze-medium-diverse-v2", (20, 20)), ("antmaze-large-play-v2", (32, 24))],
)
def test_antmaze_starts_at_the_origin_and_rewards_d4rl_goal(name, goal):
    env = make(name)
    observation, _ = env.reset(seed=1)
    assert np.abs(observation[:2]).max() <= 0.11  # D4RL resets within 0.1 of the start
    inner = env.unwrapped
    goal_in_d4rl_frame = inner.goal - env.origin
    np.testing.assert_allclose(goal_in_d4rl_frame, goal, atol=0.11)
    _, reward, terminated, truncated, info = env.step(np.zeros(8))
    assert reward == 0.0 and not (terminated or truncated or info["success"])
    inner.data.qpos[:2] = inner.goal + [0.3, 0.3]  # 0.42 from the goal: inside D4RL's 0.5 radius
    observation, reward, terminated, truncated, info = env.step(np.zeros(8))
    np.testing.assert_allclose(observation[:2], goal_in_d4rl_frame + 0.3, atol=0.05)
    assert reward == 1.0 and info["success"]
    assert terminated and not truncated  # D4RL's evaluation env ends the episode at the goal
    env.close()


def test_antmaze_episode_of_the_scripts_ends_at_the_goal_with_return_one():
    """Through the vector env and episode runner the scripts use: an ant that starts within 0.5 of the
    goal reaches it on its first step; the episode stops there (no bootstrapping through the goal)."""
    from blocks.transitions import run_episodes

    spec = EnvSpec(**{key: value for key, value in d4rl_env_spec("antmaze-umaze-v2").items() if key != "note"})
    envs = spec.make_vector(2)
    for inner in (env.unwrapped for env in envs.envs):  # after each reset, the goal 0.42 from the ant

        def reset(*args, inner=inner, original=inner.reset, **kwargs):
            observation, info = original(*args, **kwargs)
            inner.goal = inner.data.qpos[:2] + 0.3
            return observation, info

        inner.reset = reset
    act = lambda state: torch.zeros(len(state), 8)  # noqa: E731
    returns, lengths, success, episode = run_episodes(act, envs, 0, torch.zeros(29), torch.ones(29), record=True)
    envs.close()
    assert returns.tolist() == [1.0, 1.0] and lengths.tolist() == [1, 1] and success.all()
    assert episode["dones"].tolist() == [True, True] and episode["rewards"].tolist() == [1.0, 1.0]


def test_maze2d_frame_target_reward_and_action_directions():
    env = make("maze2d-umaze-v1")
    env.reset(seed=0)
    inner = env.unwrapped
    # D4RL's umaze target is cell (1, 1): put the point there (Gymnasium frame) and check D4RL's view.
    cell_centre = inner.maze.cell_rowcol_to_xy(np.array([1, 1]))
    inner.data.qpos[:] = cell_centre + [0.2, -0.2]  # D4RL's target is 0.2 past the centre on both of its axes
    inner.data.qvel[:] = 0.0
    observation, reward, _, _, info = env.step(np.zeros(2))
    np.testing.assert_allclose(observation[:2], [1.0, 1.0], atol=0.01)
    assert reward == 1.0 and info["success"]
    start = observation
    for _ in range(5):
        observation, *_ = env.step(np.array([1.0, 0.0]))  # push along D4RL's +x
    assert observation[2] > 0.5 and abs(observation[3]) < 0.05
    assert observation[0] > start[0]
    dense = make("maze2d-umaze-dense-v1")
    dense.reset(seed=0)
    _, reward, *_ = dense.step(np.zeros(2))
    assert 0.0 < reward < 1.0
    env.close()
    dense.close()


def test_kitchen_observation_carries_the_fixed_task_goal():
    env = make("kitchen-mixed-v0")
    observation, _ = env.reset(seed=0)
    goal = observation[30:]
    from gymnasium_robotics.envs.franka_kitchen.kitchen_env import OBS_ELEMENT_INDICES

    task_indices = np.concatenate(
        [OBS_ELEMENT_INDICES[task] for task in ("microwave", "kettle", "bottom burner", "light switch")]
    )
    assert np.flatnonzero(goal).tolist() == sorted(index for index in task_indices if goal[index] != 0)
    assert set(np.flatnonzero(goal)) <= set(task_indices)
    assert not goal[OBS_ELEMENT_INDICES["slide cabinet"]].any()
    np.testing.assert_allclose(observation[:9], env.unwrapped.data.qpos[:9], atol=0.01)
    env.close()


@pytest.mark.skipif(not SHARED_D4RL_TABLE.exists(), reason="../shared/reference is only beside the project checkout")
def test_name_table_matches_the_reference_file():
    reference = json.loads(SHARED_D4RL_TABLE.read_text())
    assert set(D4RL_FILES) == set(reference)
    for name, entry in reference.items():
        assert dataset_url(name) == entry["url"], name
        assert d4rl_ref_scores(name) == (entry["ref_min_score"], entry["ref_max_score"]), name


def test_unknown_names_are_rejected():
    with pytest.raises(KeyError, match="not a D4RL dataset name"):
        d4rl_env_spec("hopper-mediun-v2")


def test_d4rl_files_without_timeouts_end_episodes_at_the_time_limit_as_d4rl_does():
    terminals = np.array([0, 0, 1, 0, 0, 0, 0, 0, 0, 0], bool)
    timeouts = timeouts_every(3, terminals)
    assert timeouts.tolist() == [False, False, False, False, False, True, False, False, True, False]


def test_a_generated_file_round_trips_through_minari(hopper_random, tmp_path, monkeypatch):
    """Written to the local Minari store, read back by the scripts' minari: path: the same transitions."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    from blocks.data import load_dataset
    from d4rl_compat.minari_export import UserError, export

    export(hopper_random, "generated/hopper/random-v0")
    original = load_dataset(str(hopper_random))
    restored = load_dataset("minari:generated/hopper/random-v0", allow_download=False)
    for key in ("observations", "actions", "rewards", "terminals", "timeouts"):
        np.testing.assert_array_equal(getattr(restored, key), getattr(original, key), err_msg=key)
    np.testing.assert_array_equal(restored.extras["next_observations"], original.extras["next_observations"])
    assert (restored.env.env_id, restored.env.max_episode_steps) == ("Hopper-v5", 1000)
    assert (restored.env.ref_min_score, restored.env.ref_max_score) == (original.env.ref_min_score, 3234.3)
    with pytest.raises(UserError, match="already exists"):
        export(hopper_random, "generated/hopper/random-v0")


def test_a_maze2d_file_round_trips_through_minari_with_its_adapter(tmp_path, monkeypatch):
    """A file in D4RL's frame (an adapter) is stored under d4rl_compat's entry point and comes back adapted."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    from blocks.data import load_dataset
    from d4rl_compat import maze2d
    from d4rl_compat.minari_export import export

    path = tmp_path / "maze2d-umaze-v1.hdf5"
    maze2d.main(["--maze", "umaze", "--num_transitions", "700", "--output", str(path)])
    export(path, "generated/maze2d/umaze-v1")
    original = load_dataset(str(path))
    restored = load_dataset("minari:generated/maze2d/umaze-v1", allow_download=False)
    for key in ("observations", "actions", "rewards", "terminals", "timeouts"):
        np.testing.assert_array_equal(getattr(restored, key), getattr(original, key), err_msg=key)
    assert restored.env == original.env  # env id, kwargs, limit, reference scores, success, adapter
    env = restored.env.make()
    assert env.reset(seed=0)[0].shape == (4,)
    env.close()
