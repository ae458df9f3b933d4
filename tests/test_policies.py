"""Behaviour policies: the numpy actor matches sac.py's, the card round trip, and the D4RL levels built from them."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from conftest import ROOT, load_script

COMMITTED = sorted((ROOT / "d4rl_compat" / "policies").glob("*.pt"))


@pytest.fixture(scope="module")
def sac_run(tmp_path_factory) -> Path:
    """300 steps of SAC on hopper with two envs: snapshots at steps 100, 200, 300 and the whole buffer."""
    sac = load_script("algorithms/online/sac.py")
    run_dir = tmp_path_factory.mktemp("sac") / "run"
    args = ["--actor_hidden_dims", "[16, 16]", "--critic_hidden_dims", "[16, 16]", "--batch_size", "32"]
    args += ["--total_steps", "300", "--random_steps", "100", "--eval_every", "100", "--num_envs", "2"]
    args += ["--n_episodes", "2", "--wandb_mode", "disabled", "--device", "cpu", "--run_dir", str(run_dir)]
    sac.train(sac.parse_config(sac.TrainConfig, args))
    return run_dir


@pytest.fixture
def policy_dir(tmp_path, monkeypatch):
    """An empty d4rl_compat/policies/ stand-in, so tests export into it."""
    import d4rl_compat.policies

    monkeypatch.setattr(d4rl_compat.policies, "POLICY_DIR", tmp_path / "policies")
    return tmp_path / "policies"


def export(run: Path, step: int, level: str, policy_dir: Path) -> Path:
    from d4rl_compat.policies import PoliciesConfig, export

    config = PoliciesConfig("export", str(run), step, level, episodes=3, output_dir=str(policy_dir))
    return export(config)


def test_the_numpy_actor_is_the_scripts_actor(sac_run):
    from d4rl_compat.policies import SACPolicy

    sac = load_script("algorithms/online/sac.py")
    path = sac_run / "policies" / "step_000000300.pt"
    snapshot = torch.load(path, weights_only=True)
    actor = sac.TanhGaussianActor(11, 3, snapshot["hidden_dims"])
    actor.load_state_dict(snapshot["actor"])
    states = np.random.default_rng(0).normal(size=(5, 11)).astype(np.float32)
    expected = actor(torch.from_numpy(states), deterministic=True)[0].detach().numpy()
    np.testing.assert_allclose(SACPolicy(path, seed=0, deterministic=True)(states), expected, atol=1e-5)
    sampled = SACPolicy(path, seed=0)(np.repeat(states[:1], 2000, axis=0))
    assert np.abs(sampled).max() < 1 and sampled.std(0).min() > 1e-3  # noise from the actor's own std


def test_an_exported_policy_has_its_card(sac_run, policy_dir):
    from d4rl_compat.policies import load_card

    target = export(sac_run, 200, "medium", policy_dir)
    assert target == policy_dir / "hopper-medium.pt"
    card = load_card(target)
    assert (card["name"], card["env_id"], card["max_episode_steps"]) == ("hopper-medium", "Hopper-v5", 1000)
    assert card["training"]["env_steps"] == 200 and card["training"]["config"]["num_envs"] == 2
    assert card["training"]["wall_time_s"] > 0 and card["training"]["seed"] == 0
    for mode in ("sampled_actions", "deterministic_actions"):
        assert card["evaluation"][mode]["episodes"] == 3 and np.isfinite(card["evaluation"][mode]["normalized_score"])
    assert (
        torch.load(target, weights_only=True)["actor"].keys()
        == torch.load(sac_run / "policies" / "step_000000200.pt", weights_only=True)["actor"].keys()
    )
    with pytest.raises(Exception, match="exists; pass --overwrite"):
        export(sac_run, 200, "medium", policy_dir)


def test_rank_reevaluates_the_best_snapshots_in_a_step_window_and_orders_them_by_the_sampled_score(sac_run):
    from d4rl_compat.policies import PoliciesConfig, SACPolicy, UserError, evaluate, rank

    rows = rank(PoliciesConfig("rank", str(sac_run), top=2, min_step=200, episodes=3))
    assert len(rows) == 2 and {row["step"] for row in rows} == {200, 300}
    scores = [row["sampled"]["normalized_score"] for row in rows]
    assert scores == sorted(scores, reverse=True)
    first = sac_run / "policies" / f"step_{rows[0]['step']:09d}.pt"
    assert rows[0]["sampled"] == evaluate(SACPolicy(first, 12345), 3, 12345)  # the card's seed and evaluation
    (medium,) = rank(PoliciesConfig("rank", str(sac_run), min_step=100, max_step=150, episodes=3))
    assert medium["step"] == 100  # a window of steps, as a medium policy is picked
    with pytest.raises(UserError, match="no snapshots from env step 400$"):
        rank(PoliciesConfig("rank", str(sac_run), min_step=400))


def test_policy_levels_are_deterministic_and_medium_expert_is_medium_then_expert(sac_run, policy_dir):
    from d4rl_compat.generate import GenerateConfig, env_spec_for, level_arrays

    export(sac_run, 100, "medium", policy_dir)
    export(sac_run, 300, "expert", policy_dir)
    spec, config = env_spec_for("hopper", 1000), GenerateConfig(num_transitions=60, seed=5)
    medium, info = level_arrays(replace(config, policy="medium"), spec)
    again = level_arrays(replace(config, policy="medium"), spec)[0]
    other_seed = level_arrays(replace(config, policy="medium", seed=6), spec)[0]
    expert = level_arrays(replace(config, policy="expert"), spec)[0]
    both, both_info = level_arrays(replace(config, policy="medium-expert"), spec)
    for key in medium:
        np.testing.assert_array_equal(medium[key], again[key])
        np.testing.assert_array_equal(both[key], np.concatenate([medium[key], expert[key]]))
    assert not np.array_equal(medium["actions"], other_seed["actions"])
    assert json.loads(info["policy_card"])["training"]["env_steps"] == 100
    assert [card["name"] for card in json.loads(both_info["policy_card"])] == ["hopper-medium", "hopper-expert"]


def test_medium_replay_is_the_buffer_up_to_the_medium_snapshot_one_episode_stream_per_env(sac_run, policy_dir):
    from d4rl_compat.generate import GenerateConfig, env_spec_for, level_arrays

    export(sac_run, 200, "medium", policy_dir)
    config = GenerateConfig(policy="medium-replay", replay_run=str(sac_run))
    arrays, info = level_arrays(config, env_spec_for("hopper", 1000))
    assert len(arrays["rewards"]) == 200 and info["replay_rows"] == 200
    buffer = torch.load(max((sac_run / "checkpoints").glob("step_*.pt")), weights_only=True)["online_buffer"]
    np.testing.assert_array_equal(arrays["actions"][:100], buffer["actions"][0:200:2].numpy())  # env 0's steps
    np.testing.assert_array_equal(arrays["actions"][100:], buffer["actions"][1:200:2].numpy())  # then env 1's
    ends = arrays["terminals"] | arrays["timeouts"]
    assert ends[99] and ends[199] and not (arrays["terminals"] & arrays["timeouts"]).any()
    continuing = np.flatnonzero(~ends[:-1])
    np.testing.assert_array_equal(arrays["next_observations"][continuing], arrays["observations"][continuing + 1])


def test_a_replay_from_another_run_is_refused(sac_run, policy_dir, tmp_path):
    from d4rl_compat.generate import GenerateConfig, UserError, env_spec_for, level_arrays

    export(sac_run, 200, "medium", policy_dir)
    other = tmp_path / "other"
    (other / "policies").mkdir(parents=True)
    config = GenerateConfig(policy="medium-replay", replay_run=str(other))
    with pytest.raises(UserError, match="is not the run that trained"):
        level_arrays(config, env_spec_for("hopper", 1000))
    with pytest.raises(UserError, match="no policy file"):
        level_arrays(GenerateConfig(policy="expert", num_transitions=5), env_spec_for("hopper", 1000))


@pytest.mark.parametrize("path", COMMITTED, ids=[path.stem for path in COMMITTED])
def test_a_committed_policy_loads_and_acts_in_its_env(path):
    from d4rl_compat.policies import SACPolicy, load_card, make_env

    card, policy = load_card(path), SACPolicy(path, seed=0)
    assert card["name"] == path.stem and card["evaluation"]["sampled_actions"]["episodes"] == 100
    for key in ("command", "config", "env_steps", "wall_time_s", "seed"):
        assert key in card["training"], key
    env = make_env(policy.snapshot)
    observation = env.reset(seed=0)[0]
    for _ in range(5):
        observation, reward, terminated, truncated, _ = env.step(policy(observation))
        assert np.isfinite(reward) and not truncated
    env.close()


def test_the_suite_writes_every_level_it_has_policies_for_and_keeps_what_exists(sac_run, policy_dir, tmp_path, capsys):
    from d4rl_compat.generate import GenerateConfig, UserError, write_suite
    from d4rl_compat.policies import load_card

    export(sac_run, 100, "medium", policy_dir)
    export(sac_run, 300, "expert", policy_dir)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "hopper").symlink_to(sac_run)
    config = GenerateConfig(suite=True, num_transitions=40, replay_dir=str(tmp_path / "runs"))
    write_suite(replace(config, output_dir=str(tmp_path / "out")))
    sizes = {"random": 40, "medium": 40, "expert": 40, "medium-expert": 80, "medium-replay": 100, "full-replay": 300}
    for level, size in sizes.items():
        with h5py.File(tmp_path / "out" / f"hopper-{level}.hdf5") as file:
            assert len(file["rewards"]) == size, level
            source = {"medium-replay": "medium", "full-replay": "expert"}.get(level, level)
            if level not in ("random", "medium-expert"):
                assert json.loads(file["metadata/policy_card"][()]) == load_card(policy_dir / f"hopper-{source}.pt")
    for domain in ("halfcheetah", "walker2d", "ant"):
        assert sorted(path.name for path in (tmp_path / "out").glob(f"{domain}-*")) == [f"{domain}-random.hdf5"]
    assert len(list((tmp_path / "out").glob("maze2d-*.hdf5"))) == 8
    assert "ant: no medium, expert, medium-expert, medium-replay, full-replay" in capsys.readouterr().out
    before = (tmp_path / "out" / "hopper-medium.hdf5").stat().st_mtime_ns
    write_suite(replace(config, output_dir=str(tmp_path / "out")))
    assert (tmp_path / "out" / "hopper-medium.hdf5").stat().st_mtime_ns == before
    assert "hopper-medium.hdf5 exists, kept" in capsys.readouterr().out

    write_suite(replace(config, output_dir=str(tmp_path / "two"), workers=2))  # the workers see policy_dir too
    files = sorted(path.name for path in (tmp_path / "out").glob("*.hdf5"))
    assert files == sorted(path.name for path in (tmp_path / "two").glob("*.hdf5")) and len(files) == 17
    for name in files:
        with h5py.File(tmp_path / "out" / name) as one, h5py.File(tmp_path / "two" / name) as two:
            for key in ("observations", "actions", "rewards", "terminals", "timeouts"):
                np.testing.assert_array_equal(one[key][()], two[key][()], err_msg=f"{name} {key}")
    with pytest.raises(UserError, match="workers must be at least 1"):
        write_suite(replace(config, output_dir=str(tmp_path / "none"), workers=0))
    assert not (tmp_path / "none").exists()


def test_the_suite_skips_a_replay_level_whose_policy_another_run_trained(sac_run, policy_dir, tmp_path, capsys):
    from d4rl_compat.generate import GenerateConfig, write_suite

    export(sac_run, 100, "medium", policy_dir)
    export(sac_run, 300, "expert", policy_dir)
    other = tmp_path / "runs" / "hopper"  # a run whose step-100 snapshot is not the medium policy
    shutil.copytree(sac_run, other)
    shutil.copy(other / "policies" / "step_000000200.pt", other / "policies" / "step_000000100.pt")
    config = GenerateConfig(suite=True, num_transitions=40, replay_dir=str(tmp_path / "runs"))
    write_suite(replace(config, output_dir=str(tmp_path / "out")))
    written = sorted(path.stem for path in (tmp_path / "out").glob("hopper-*.hdf5"))
    assert written == ["hopper-expert", "hopper-full-replay", "hopper-medium", "hopper-medium-expert", "hopper-random"]
    assert f"hopper: no medium-replay (policies committed: ['medium', 'expert']; the replay levels need {other}" in (
        capsys.readouterr().out
    )
