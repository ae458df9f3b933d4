"""The synced data plumbing (blocks/data.py): loading, validation, episodes, scores, D4RL locomotion names."""

import io
import sys
import urllib.request
from pathlib import Path

import h5py
import numpy as np
import pytest

import d4rl_compat
from blocks.data import (
    LOCOMOTION,
    LOCOMOTION_LEVELS,
    EnvSpec,
    episode_bounds,
    load_dataset,
    make_dataset,
    read_hdf5,
    state_stats,
    step_success,
)
from blocks.runtime import UserError


def test_episode_bounds_split_on_terminals_and_timeouts_and_keep_trailing_episode():
    terminals = np.array([0, 1, 0, 0, 0, 0, 0], bool)
    timeouts = np.array([0, 0, 0, 1, 0, 0, 0], bool)
    starts, ends = episode_bounds(terminals, timeouts)
    assert starts.tolist() == [0, 2, 4]
    assert ends.tolist() == [2, 4, 7]


def test_state_stats_normalise_to_zero_mean_unit_std():
    observations = np.random.default_rng(0).normal(3.0, 5.0, size=(10_000, 4)).astype(np.float32)
    mean, std = state_stats(observations)
    normalised = (observations - mean) / std
    np.testing.assert_allclose(normalised.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(normalised.std(0), 1.0, atol=1e-4)
    constant = np.ones((5, 2), np.float32)
    assert np.isfinite((constant - state_stats(constant)[0]) / state_stats(constant)[1]).all()


def test_locomotion_names_map_to_v5_envs_and_d4rl_reference_scores(tmp_path, monkeypatch):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    spec = EnvSpec("Hopper-v5", {}, 1000, *LOCOMOTION["hopper"][2:])
    metrics = spec.metrics("eval", np.array([-20.272305, 3234.3]), np.array([5, 7]), np.zeros(2, bool))
    assert metrics["eval/normalized_score_mean"] == pytest.approx(50.0)
    assert metrics["eval/length_mean"] == 6.0 and "eval/success_rate" not in metrics
    assert EnvSpec("X", reports_success=True).metrics("a", [1.0], [1], [True])["a/success_rate"] == 1.0
    assert LOCOMOTION["ant"][:2] == ("Ant-v4", {"use_contact_forces": True})


def test_locomotion_address_rule_matches_the_full_d4rl_table():
    """The scripts build v1/v2 locomotion addresses by rule; the package holds D4RL's full table."""
    covered = 0
    for name in d4rl_compat.D4RL_FILES:
        domain, _, level = name.rpartition("-v")[0].partition("-")
        if domain in LOCOMOTION and level in LOCOMOTION_LEVELS and name[-3:] in ("-v1", "-v2"):
            version = name[-2:]
            file = f"{domain}_{level.replace('-', '_')}-{version}.hdf5"
            url = f"http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_{version}/{file}"
            assert url == d4rl_compat.dataset_url(name), name
            fields = d4rl_compat.d4rl_env_spec(name)
            assert (fields["env_id"], fields["ref_min_score"], fields["ref_max_score"]) == (
                LOCOMOTION[domain][0],
                *LOCOMOTION[domain][2:],
            )
            covered += 1
    assert covered == 48


def test_ant_maps_to_the_111_dimensional_env():
    env = EnvSpec(*LOCOMOTION["ant"][:2]).make()
    assert env.observation_space.shape == (111,)
    env.close()


def test_step_success_reads_vector_env_infos():
    assert step_success({}, 2).tolist() == [False, False]
    infos = {"success": np.array([True, True]), "_success": np.array([True, False])}
    assert step_success(infos, 2).tolist() == [True, False]


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
        np.testing.assert_array_equal(
            file["next_observations"][:-1][~(dataset.terminals | dataset.timeouts)[:-1]],
            file["observations"][1:][~(dataset.terminals | dataset.timeouts)[:-1]],
        )


def test_next_observations_and_goal_flags_are_kept_as_extras(hopper_random):
    dataset = load_dataset(str(hopper_random))
    assert dataset.extras["next_observations"].shape == dataset.observations.shape


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
    result = run_cli("-m", "d4rl_compat.generate", "--num_transitions", "10", "--output", str(hopper_random))
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


def test_a_download_that_is_not_hdf5_is_removed_and_named(tmp_path, monkeypatch, hopper_random):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(b"<html>proxy login</html>"))
    with pytest.raises(UserError, match="something other than hdf5 \\(removed\\)"):
        load_dataset("hopper-random-v2")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(hopper_random.read_bytes()))
    assert load_dataset("hopper-random-v2").env.env_id == "Hopper-v5"  # a real hdf5 file takes the name
    assert [path.name for path in tmp_path.iterdir()] == ["hopper_random-v2.hdf5"]


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


def test_nan_in_next_observations_is_rejected(tmp_path, hopper_random):
    arrays, _ = read_hdf5(hopper_random)
    path = _copy_with(hopper_random, tmp_path / "nan-next.hdf5")
    next_observations = arrays["next_observations"]
    next_observations[11, 0] = np.inf
    with h5py.File(path, "a") as file:
        file.create_dataset("next_observations", data=next_observations)
    with pytest.raises(UserError, match=r"NaN or inf in 'next_observations' \(first at row 11\)"):
        load_dataset(str(path))


def test_non_locomotion_names_need_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "d4rl_compat", None)  # as if it were not installed
    with pytest.raises(UserError, match=r"antmaze.*pip install -e \."):
        load_dataset("antmaze-umaze-v2", allow_download=False)


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
        episodes.append(
            EpisodeBuffer(
                observations=np.array(observations),
                actions=np.array(actions),
                rewards=rewards,
                terminations=[False] * 30,
                truncations=[False] * 29 + [True],
            )
        )
    minari.create_dataset_from_buffers("test/hopper/tiny-v0", episodes, env=env, ref_min_score=0.0, ref_max_score=100.0)
    dataset = load_dataset("minari:test/hopper/tiny-v0", allow_download=False)
    assert dataset.env.env_id == "Hopper-v5"
    assert dataset.observations.shape[1] == 11
    assert (dataset.terminals | dataset.timeouts).sum() == 3
    assert dataset.extras["next_observations"].shape == (90, 11)
    metrics = dataset.env.metrics("eval", np.array([50.0]), np.array([30]), np.zeros(1, bool))
    assert metrics["eval/normalized_score_mean"] == pytest.approx(50.0)


def test_missing_minari_dataset_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    with pytest.raises(UserError, match="minari download mujoco/hopper/medium-v0"):
        load_dataset("minari:mujoco/hopper/medium-v0", allow_download=False)


def test_non_numeric_arrays_and_non_binary_ends_are_named(hopper_random, tmp_path):
    arrays = dict(read_hdf5(hopper_random)[0])
    spec = EnvSpec("Hopper-v5", {}, 1000)
    with pytest.raises(UserError, match="'rewards' holds <U"):
        make_dataset("x", {**arrays, "rewards": arrays["rewards"].astype(str)}, spec)
    with pytest.raises(UserError, match="'terminals' must hold only 0/1"):
        make_dataset("x", {**arrays, "terminals": arrays["terminals"] * 2.0 + 0.5}, spec)
    with pytest.raises(UserError, match="next_observations of shape"):
        make_dataset("x", {**arrays, "next_observations": arrays["next_observations"][:, :3]}, spec)
