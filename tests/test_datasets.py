"""The data and environment layer: loading, validation, episodes, returns-to-go, scores, generator."""
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from blocks.datasets import episode_bounds, load_dataset, read_hdf5, returns_to_go, state_stats
from blocks.envs import D4RL_FILES, D4RL_URL_ROOT, d4rl_env_spec, d4rl_ref_scores
from blocks.runtime import UserError

SHARED_D4RL_TABLE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "d4rl_datasets.json"


def test_episode_bounds_split_on_terminals_and_timeouts_and_keep_trailing_episode():
    terminals = np.array([0, 1, 0, 0, 0, 0, 0], bool)
    timeouts = np.array([0, 0, 0, 1, 0, 0, 0], bool)
    starts, ends = episode_bounds(terminals, timeouts)
    assert starts.tolist() == [0, 2, 4]
    assert ends.tolist() == [2, 4, 7]


def test_returns_to_go_sum_to_the_end_of_each_episode_only():
    rewards = np.array([1.0, 2.0, 3.0, 10.0, 20.0], np.float32)
    starts, ends = np.array([0, 3]), np.array([3, 5])
    assert returns_to_go(rewards, starts, ends).tolist() == [6.0, 5.0, 3.0, 30.0, 20.0]


def test_returns_to_go_precision_on_a_long_dataset():
    rng = np.random.default_rng(0)
    rewards = rng.uniform(0, 10, 200_000).astype(np.float32)
    starts, ends = episode_bounds(np.zeros(len(rewards), bool), (np.arange(len(rewards)) % 1000) == 999)
    rtg = returns_to_go(rewards, starts, ends)
    expected = np.cumsum(rewards[-1000:][::-1], dtype=np.float64)[::-1]
    np.testing.assert_allclose(rtg[-1000:], expected, rtol=1e-6)


def test_state_stats_normalise_to_zero_mean_unit_std():
    observations = np.random.default_rng(0).normal(3.0, 5.0, size=(10_000, 4)).astype(np.float32)
    mean, std = state_stats(observations)
    normalised = (observations - mean) / std
    np.testing.assert_allclose(normalised.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(normalised.std(0), 1.0, atol=1e-4)
    constant = np.ones((5, 2), np.float32)
    assert np.isfinite((constant - state_stats(constant)[0]) / state_stats(constant)[1]).all()


def test_normalized_scores_use_d4rl_reference_constants():
    spec = d4rl_env_spec("hopper-medium-v2")
    assert spec.env_id == "Hopper-v5"
    np.testing.assert_allclose(spec.normalized_score([-20.272305, 3234.3, 1607.0139475]), [0.0, 100.0, 50.0])
    assert d4rl_env_spec("walker2d-random-v2").normalized_score([4592.3]) == pytest.approx(100.0)
    assert d4rl_env_spec("ant-medium-v2").env_id == "Ant-v4"


@pytest.mark.skipif(not SHARED_D4RL_TABLE.exists(), reason="../shared/reference is only beside the project checkout")
def test_embedded_d4rl_table_matches_the_reference_file():
    reference = json.loads(SHARED_D4RL_TABLE.read_text())
    assert set(D4RL_FILES) == set(reference)
    for name, entry in reference.items():
        assert D4RL_URL_ROOT + D4RL_FILES[name] == entry["url"], name
        assert d4rl_ref_scores(name) == (entry["ref_min_score"], entry["ref_max_score"]), name


def test_ant_maps_to_the_111_dimensional_env():
    env = d4rl_env_spec("ant-random-v2").make()
    assert env.observation_space.shape == (111,)
    env.close()


def test_hdf5_round_trip_keeps_arrays_metadata_and_timeouts(hopper_random):
    arrays, metadata = read_hdf5(hopper_random)
    dataset = load_dataset(str(hopper_random))
    assert dataset.env.env_id == metadata["env_id"] == "Hopper-v5"
    assert dataset.env.ref_min_score == pytest.approx(-20.272305)
    np.testing.assert_array_equal(dataset.observations, arrays["observations"])
    np.testing.assert_array_equal(dataset.terminals, arrays["terminals"])
    np.testing.assert_array_equal(dataset.timeouts, arrays["timeouts"])
    assert not (dataset.terminals & dataset.timeouts).any()
    assert dataset.terminals.sum() > 10  # random hopper falls often
    assert dataset.timeouts[-1]  # the file ends mid-episode: a cut, never a terminal
    with h5py.File(hopper_random) as file:
        np.testing.assert_array_equal(file["next_observations"][:-1][~(dataset.terminals | dataset.timeouts)[:-1]],
                                      file["observations"][1:][~(dataset.terminals | dataset.timeouts)[:-1]])


def test_generator_is_deterministic_for_a_seed(generator):
    spec = generator.env_spec_for("hopper", 1000)
    first = generator.collect(spec, "random", 500, seed=3)
    second = generator.collect(spec, "random", 500, seed=3)
    other = generator.collect(spec, "random", 500, seed=4)
    for key in first:
        np.testing.assert_array_equal(first[key], second[key])
    assert not np.array_equal(first["actions"], other["actions"])


def test_generator_episodes_end_with_timeouts_at_the_step_limit(generator):
    spec = generator.env_spec_for("halfcheetah", 100)  # halfcheetah never terminates
    arrays = generator.collect(spec, "random", 250, seed=0)
    assert np.flatnonzero(arrays["timeouts"]).tolist() == [99, 199, 249]
    assert not arrays["terminals"].any()


def test_generator_refuses_to_overwrite(hopper_random):
    from conftest import run_cli

    before = hopper_random.read_bytes()
    result = run_cli("tools/generate_dataset.py", "--num_transitions", "10", "--output", str(hopper_random))
    assert result.returncode == 2
    assert "already exists" in result.stderr
    assert hopper_random.read_bytes() == before


def test_unknown_dataset_name_is_a_clear_error():
    with pytest.raises(UserError, match="unknown dataset 'hopper-mediun-v2'"):
        load_dataset("hopper-mediun-v2")


def test_missing_d4rl_file_names_path_and_address(tmp_path, monkeypatch):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    with pytest.raises(UserError) as error:
        load_dataset("hopper-medium-v2", allow_download=False)
    message = str(error.value)
    assert str(tmp_path / "hopper_medium-v2.hdf5") in message
    assert "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2/hopper_medium-v2.hdf5" in message


def test_d4rl_file_in_cache_directory_is_used(tmp_path, monkeypatch, hopper_random):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    arrays, _ = read_hdf5(hopper_random)
    with h5py.File(tmp_path / "hopper_random-v2.hdf5", "w") as file:  # D4RL files carry no env metadata
        for key, values in arrays.items():
            file.create_dataset(key, data=values)
    dataset = load_dataset("hopper-random-v2", allow_download=False)
    assert dataset.env.env_id == "Hopper-v5" and len(dataset.observations) == 3000


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_dataset(str(tmp_path / "nothing.hdf5"))


def _copy_with(source: Path, target: Path, **changes) -> Path:
    with h5py.File(source) as file_in, h5py.File(target, "w") as file_out:
        for key in ("observations", "actions", "rewards", "terminals", "timeouts"):
            file_out.create_dataset(key, data=changes.get(key, file_in[key][()]))
        for key, value in file_in["metadata"].items():
            file_out.create_dataset(f"metadata/{key}", data=changes.get(key, value[()]))
    return target


def test_nan_in_data_is_rejected(tmp_path, hopper_random):
    observations = read_hdf5(hopper_random)[0]["observations"]
    observations[7, 2] = np.nan
    path = _copy_with(hopper_random, tmp_path / "nan.hdf5", observations=observations)
    with pytest.raises(UserError, match=r"NaN or inf in 'observations' \(first at row 7\)"):
        load_dataset(str(path))


def test_shapes_that_do_not_match_the_env_are_rejected(tmp_path, hopper_random):
    path = _copy_with(hopper_random, tmp_path / "wrong-env.hdf5", env_id="Walker2d-v5")
    with pytest.raises(UserError, match="11-dim observations .* Walker2d-v5 has 17"):
        load_dataset(str(path))


def test_file_without_env_metadata_is_rejected(tmp_path, hopper_random):
    arrays, _ = read_hdf5(hopper_random)
    with h5py.File(tmp_path / "bare.hdf5", "w") as file:
        for key, values in arrays.items():
            file.create_dataset(key, data=values)
    with pytest.raises(UserError, match="no metadata/env_id"):
        load_dataset(str(tmp_path / "bare.hdf5"))


def test_minari_dataset_loads_from_the_local_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    env = gym.make("Hopper-v5")
    episodes = []
    for seed in range(3):  # three 30-step episodes, built directly (recording needs jax)
        observations, actions, rewards = [env.reset(seed=seed)[0]], [], []
        for _ in range(30):
            actions.append(env.action_space.sample())
            observation, reward, *_ = env.step(actions[-1])
            observations.append(observation)
            rewards.append(reward)
        episodes.append(EpisodeBuffer(observations=np.array(observations), actions=np.array(actions),
                                      rewards=rewards, terminations=[False] * 30, truncations=[False] * 29 + [True]))
    minari.create_dataset_from_buffers("test/hopper/tiny-v0", episodes, env=env,
                                       ref_min_score=0.0, ref_max_score=100.0)
    dataset = load_dataset("minari:test/hopper/tiny-v0", allow_download=False)
    assert dataset.env.env_id == "Hopper-v5"
    assert dataset.observations.shape[1] == 11
    assert (dataset.terminals | dataset.timeouts).sum() == 3
    assert dataset.env.normalized_score([50.0]) == pytest.approx(50.0)


def test_missing_minari_dataset_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(UserError, match="minari download mujoco/hopper/medium-v0"):
        load_dataset("minari:mujoco/hopper/medium-v0", allow_download=False)
