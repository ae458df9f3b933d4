"""Whole runs of the five value-based scripts: tiny networks, tiny generated hopper data, CPU."""

import difflib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, load_script, run_cli

NAMES = ("offline/cql", "offline/iql", "finetune/cql", "finetune/cal_ql", "finetune/iql")
SCRIPTS = {name: load_script(f"algorithms/{name}.py") for name in NAMES}
TINY = "--actor_hidden_dims [16,16] --critic_hidden_dims [16,16] --batch_size 32 --n_episodes 2 --wandb_mode disabled"
TINY = TINY.split() + ["--device", "cpu"]


def tiny_config(name: str, dataset: Path, run_dir: Path, **overrides):
    script = SCRIPTS[name]
    args = TINY + (["--cql_n_actions", "3"] if "cql" in name or "cal_ql" in name else [])
    args += ["--dataset", str(dataset), "--run_dir", str(run_dir)]
    for key, value in overrides.items():
        args += [f"--{key}", str(value)]
    return script.parse_config(script.TrainConfig, args)


def rows(run_dir: Path):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", ["offline/cql", "offline/iql"])
def test_offline_script_runs_end_to_end(name, hopper_random, tmp_path):
    config = tiny_config(
        name, hopper_random, tmp_path / "run", max_timesteps=60, log_every=20, eval_freq=60, checkpoint_every=60
    )
    summary = SCRIPTS[name].train(config)
    assert summary["offline_steps"] == 60 and summary["online_env_steps"] == 0
    assert [row["step"] for row in rows(tmp_path / "run") if "train/updates_per_second" in row] == [20, 40, 60]
    assert np.isfinite(summary["eval/return_mean"]) and "eval/normalized_score_mean" in summary
    assert summary["offline/return_mean"] == summary["eval/return_mean"]
    assert (
        json.loads((tmp_path / "run" / "summary.json").read_text())["eval/return_mean"] == summary["eval/return_mean"]
    )
    checkpoint = torch.load(next((tmp_path / "run" / "checkpoints").iterdir()), weights_only=True)
    if name == "offline/iql":  # cosine decay over max_timesteps reaches 0 at the end
        assert checkpoint["agent"]["actor_optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.0, abs=1e-12)


def test_offline_run_resumed_from_a_checkpoint_matches_a_straight_run(hopper_random, tmp_path):
    schedule = dict(log_every=10, eval_freq=30, checkpoint_every=30)
    straight = SCRIPTS["offline/cql"].train(
        tiny_config("offline/cql", hopper_random, tmp_path / "a", max_timesteps=60, **schedule)
    )
    SCRIPTS["offline/cql"].train(
        tiny_config("offline/cql", hopper_random, tmp_path / "b", max_timesteps=30, **schedule)
    )
    script = SCRIPTS["offline/cql"]
    resumed = script.train(
        script.parse_config(script.TrainConfig, ["--resume", str(tmp_path / "b"), "--max_timesteps", "60"])
    )
    assert resumed["eval/return_mean"] == straight["eval/return_mean"] and resumed["step"] == 60
    train_rows = lambda run: [{k: v for k, v in row.items() if "per_second" not in k} for row in rows(run)]  # noqa: E731
    assert train_rows(tmp_path / "b") == train_rows(tmp_path / "a")


FINETUNE = dict(offline_iterations=40, log_every=20, offline_eval_freq=20, online_eval_freq=100, checkpoint_every=100)


@pytest.mark.parametrize("name", ["finetune/cql", "finetune/cal_ql", "finetune/iql"])
def test_finetune_resumed_from_an_online_checkpoint_matches_a_straight_run(name, hopper_random, tmp_path):
    straight = SCRIPTS[name].train(tiny_config(name, hopper_random, tmp_path / "a", online_iterations=250, **FINETUNE))
    first = SCRIPTS[name].train(tiny_config(name, hopper_random, tmp_path / "b", online_iterations=120, **FINETUNE))
    assert 120 <= first["online_env_steps"] < 250
    script = SCRIPTS[name]
    checkpoint = torch.load(sorted((tmp_path / "b" / "checkpoints").iterdir())[-1], weights_only=True)
    online = checkpoint["online_buffer"]
    assert len(online["rewards"]) == first["online_env_steps"] > 0  # the online steps are in the checkpoint
    if name == "finetune/cal_ql":  # every online episode got its Monte-Carlo returns (episodes end in a fall here)
        ends = online["dones"].numpy() > 0
        assert ends.sum() == checkpoint["episodes"] and ends[-1]
        expected = script.monte_carlo_returns(online["rewards"].numpy(), ends, ends, script.TrainConfig.discount)
        np.testing.assert_allclose(online["mc_returns"].numpy(), expected, rtol=1e-5)
    else:
        assert "mc_returns" not in online
    if name == "finetune/iql":  # stopped mid-episode: the resumed run replays the episode's actions to continue it
        assert first["online_env_steps"] == 120 and checkpoint["episode_steps"] > 0
    resumed = script.train(
        script.parse_config(script.TrainConfig, ["--resume", str(tmp_path / "b"), "--online_iterations", "250"])
    )
    assert resumed["online_env_steps"] == straight["online_env_steps"]
    assert resumed["eval/return_mean"] == pytest.approx(straight["eval/return_mean"], rel=1e-6)
    assert resumed["eval/regret"] == pytest.approx(straight["eval/regret"], rel=1e-6)

    evaluations = [row for row in rows(tmp_path / "a") if "eval/regret" in row]
    assert evaluations[0]["step"] == 40 and evaluations[0]["online/env_steps"] == 0  # fine-tuning step 0 counts
    # offline_eval_freq counts updates (20), online_eval_freq env steps (100)
    assert [row["step"] for row in rows(tmp_path / "a") if "eval/return_mean" in row][:2] == [20, 40]
    # Scheduled evaluations: step 0 and each one in a new online_eval_freq bucket of env steps (an extra one
    # at the end of the run, inside the same bucket, is logged but not counted).
    buckets = [row["online/env_steps"] // 100 for row in evaluations]
    scores = [
        row["eval/normalized_score_mean"]
        for index, row in enumerate(evaluations)
        if index == 0 or buckets[index] != buckets[index - 1]
    ]
    assert len(scores) == 3  # env steps 0, >= 100, >= 200
    assert straight["eval/regret"] == pytest.approx(np.mean(1 - np.clip(np.array(scores) / 100, 0, 1)))
    assert straight["online/evaluation_scores"] == pytest.approx(list(np.clip(np.array(scores) / 100, 0, 1)))
    lr = checkpoint["agent"]["actor_optimizer"]["param_groups"][0]["lr"]
    assert lr == (script.TrainConfig.actor_lr if name == "finetune/iql" else script.TrainConfig.policy_lr)


@pytest.mark.parametrize("ratio, one_buffer", [(0.0, False), ("null", True)])
def test_mixing_ratio_zero_trains_on_two_buffers_and_none_on_one(
    ratio, one_buffer, hopper_random, tmp_path, monkeypatch
):
    script, seen = SCRIPTS["finetune/iql"], []
    sample = script.sample_mixed
    spy = lambda offline, online, *args: seen.append(offline is online) or sample(offline, online, *args)  # noqa: E731
    monkeypatch.setattr(script, "sample_mixed", spy)
    overrides = dict(FINETUNE, offline_iterations=20, online_iterations=30)
    script.train(tiny_config("finetune/iql", hopper_random, tmp_path / "run", mixing_ratio=ratio, **overrides))
    assert seen and set(seen) == {one_buffer}


def test_iql_fine_tuning_interleaves_one_env_step_and_utd_ratio_updates(hopper_random, tmp_path, monkeypatch):
    script, online_rows_seen = SCRIPTS["finetune/iql"], []
    sample = script.sample_mixed
    spy = lambda offline, online, *args: online_rows_seen.append(online.size) or sample(offline, online, *args)  # noqa: E731
    monkeypatch.setattr(script, "sample_mixed", spy)
    overrides = dict(FINETUNE, offline_iterations=20, online_iterations=50, utd_ratio=2)
    summary = script.train(tiny_config("finetune/iql", hopper_random, tmp_path / "run", **overrides))
    dataset_rows = online_rows_seen[0] - 1
    assert online_rows_seen == [dataset_rows + step for step in range(1, 51) for _ in range(2)]  # step, 2 updates
    assert summary["online_env_steps"] == 50  # exactly online_iterations, as the official loop


def test_finetune_resumed_at_the_end_of_its_offline_phase_matches_a_straight_run(hopper_random, tmp_path):
    script, name = SCRIPTS["finetune/cal_ql"], "finetune/cal_ql"
    straight = script.train(tiny_config(name, hopper_random, tmp_path / "a", online_iterations=120, **FINETUNE))
    offline_only = dict(FINETUNE, offline_iterations=20)
    script.train(tiny_config(name, hopper_random, tmp_path / "b", online_iterations=0, **offline_only))
    args = ["--resume", str(tmp_path / "b"), "--offline_iterations", "40", "--online_iterations", "120"]
    resumed = script.train(script.parse_config(script.TrainConfig, args))
    for key in ("online_env_steps", "eval/return_mean", "eval/regret", "offline/return_mean"):
        assert resumed[key] == straight[key], key


def changed_lines(first: str, second: str):
    return [line for line in difflib.unified_diff(first.splitlines(), second.splitlines(), n=0, lineterm="")
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]  # fmt: skip


def test_cal_ql_is_finetune_cql_plus_the_calibration():
    cql, cal_ql = SCRIPTS["finetune/cql"].TrainConfig(), SCRIPTS["finetune/cal_ql"].TrainConfig()
    calibration_fields = {"enable_calql", "is_sparse_reward", "sparse_fail_reward"}  # the Monte-Carlo rule
    assert set(vars(cal_ql)) - set(vars(cql)) == calibration_fields and set(vars(cql)) <= set(vars(cal_ql))
    assert {key for key, value in vars(cql).items() if vars(cal_ql)[key] != value} == {"group", "name"}
    cql_text, cal_text = (Path(SCRIPTS[name].__file__).read_text() for name in ("finetune/cql", "finetune/cal_ql"))
    docstring_end = lambda text: text.index('"""', 3)  # noqa: E731
    code = changed_lines(cql_text[docstring_end(cql_text) :], cal_text[docstring_end(cal_text) :])
    assert len(changed_lines(cql_text, cal_text)) <= 85  # measured 85: the official replay buffer's rows
    removed = [line for line in code if line.startswith("-")]
    # CQL loses nothing but its names and the transitions without Monte-Carlo returns; everything
    # Cal-QL adds is calibration and Monte-Carlo returns.
    assert all(re.search(r"CQL|cql-finetune|transition_arrays", line) for line in removed), removed
    added = "\n".join(line for line in code if line.startswith("+"))
    for part in (
        "class CalQL(CQL)",
        "def monte_carlo_returns",
        "def transitions_with_returns",
        'episode["mc_returns"]',
        "enable_calql",
    ):
        assert part in added, part
    # The train() loops are the same apart from the calibration lines.
    train_of = lambda text: text[text.index("def train(") : text.index("def main(")]  # noqa: E731
    train_changes = changed_lines(train_of(cql_text), train_of(cal_text))
    calibration = [line for line in train_changes if not re.search(r"cql-finetune|cal_ql|agent = C", line)]
    assert all(
        re.search(r"mc_returns|fail_reward|calibration|returns|transition_arrays", line) for line in calibration
    ), calibration
    assert len(train_changes) <= 15


ONLINE_ONLY = (
    "online_", "mixing_ratio", "sample_mixed", "utd_ratio", "regret", "fraction_of_best", "explore", "record=True",
    "monte_carlo", "mc_returns", "calql", "fine_tuning", "spare=",
)  # fmt: skip


@pytest.mark.parametrize("name", ["offline/cql", "offline/iql"])
def test_offline_scripts_hold_no_online_only_code(name):
    text = Path(SCRIPTS[name].__file__).read_text()
    code = text[: text.index("# === shared block: runtime ")]  # the plumbing below serves every script
    # The summary keys shared with the fine-tuning scripts are the one online name allowed.
    found = [word for word in ONLINE_ONLY if word in code.replace("online_env_steps=0", "")]
    assert not found, found
    assert not hasattr(SCRIPTS[name].TrainConfig, "online_iterations")


OFFICIAL_CQL = dict(cql_max_target_backup=True, cql_alpha=5.0, cql_target_action_gap=1.0, actor_hidden_dims=(256, 256))
CORL_CQL = dict(cql_max_target_backup=False, cql_alpha=10.0, cql_target_action_gap=-1.0, actor_hidden_dims=(256,) * 3)


@pytest.mark.parametrize("name", ["offline/cql", "finetune/cql", "finetune/cal_ql"])
def test_cql_defaults_are_the_official_ones_and_locomotion_configs_keep_corls(name):
    script = SCRIPTS[name]
    official = {**OFFICIAL_CQL, "critic_hidden_dims": (256, 256)}
    assert {key: getattr(script.TrainConfig, key) for key in official} == official
    corl = {**CORL_CQL, "critic_hidden_dims": (256,) * 3}
    locomotion = [
        path
        for domain in ("hopper", "halfcheetah", "walker2d")
        for path in (ROOT / "configs" / name / domain).glob("*.yaml")
    ]
    assert len(locomotion) == 12
    for path in locomotion:  # unchanged behaviour: CORL's values, now written in the file
        config = script.parse_config(script.TrainConfig, ["--config_path", str(path)])
        assert {key: getattr(config, key) for key in corl} == corl, path


@pytest.mark.parametrize("name", NAMES)
def test_states_are_normalised_in_the_locomotion_configs_only(name):
    script = SCRIPTS[name]
    for path in sorted((ROOT / "configs" / name).rglob("*.yaml")):  # official Cal-QL and IQL normalise none
        config = script.parse_config(script.TrainConfig, ["--config_path", str(path)])
        assert config.normalize == (path.parent.name in ("hopper", "halfcheetah", "walker2d")), path


@pytest.mark.parametrize("name", ["offline/cql", "finetune/cql", "finetune/cal_ql"])
def test_adroit_configs_are_dense_d4rl_adroit_with_the_official_cal_ql_networks_and_backup(name):
    script = SCRIPTS[name]
    for path in sorted((ROOT / "configs" / name / "adroit").glob("*.yaml")):
        config = script.parse_config(script.TrainConfig, ["--config_path", str(path)])
        assert config.cql_max_target_backup and config.cql_alpha == 1.0, path
        assert (config.actor_hidden_dims, config.critic_hidden_dims) == ((512, 512), (512, 512, 512)), path
        assert "Dense D4RL Adroit" in path.read_text()
    assert not hasattr(script.TrainConfig, "binary_reward")  # no partial binary variant


def test_bad_values_give_a_clear_error_and_exit_2(tmp_path):
    result = run_cli("algorithms/finetune/cal_ql.py", "--mixing_ratio", "1.5", "--run_dir", str(tmp_path / "run"))
    assert result.returncode == 2 and "mixing_ratio" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_value_based_configs_name_the_dataset_of_their_file():
    """configs/<stage>/<cql|iql|cal_ql>/<domain>/<file>.yaml must train on the dataset its path names."""
    for algorithm in NAMES:
        paths = sorted((ROOT / "configs" / algorithm).rglob("*.yaml"))
        assert len(paths) == 33, algorithm  # 12 locomotion, 6 antmaze, 12 adroit, 3 kitchen
        for path in paths:
            dataset = next(line.split(": ")[1] for line in path.read_text().splitlines() if line.startswith("dataset:"))
            domain, stem = path.parent.name, path.stem
            if domain in ("antmaze", "kitchen"):
                expected = f"{domain}-{stem.rsplit('_', 1)[0].replace('_', '-')}-{stem.rsplit('_', 1)[1]}"
            else:
                prefix = "" if domain == "adroit" else f"{domain}-"
                expected = f"{prefix}{stem.rsplit('_', 1)[0].replace('_', '-')}-{stem.rsplit('_', 1)[1]}"
            assert dataset == expected, path


def test_sigterm_in_the_online_phase_checkpoints_and_the_run_resumes(hopper_random, tmp_path):
    run_dir = tmp_path / "run"
    args = TINY + ["--cql_n_actions", "3", "--dataset", str(hopper_random), "--run_dir", str(run_dir)]
    args += "--offline_iterations 20 --online_iterations 1000000 --log_every 10".split()
    args += "--offline_eval_freq 100000 --online_eval_freq 100000 --checkpoint_every 100000".split()
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny networks: threads only contend
    process = subprocess.Popen(
        [sys.executable, "algorithms/finetune/cal_ql.py", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=one_thread,
    )
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("online/episodes") >= 2):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    offline_end, stopped = sorted((run_dir / "checkpoints").iterdir())  # end of the offline phase, then the signal
    assert offline_end.name == "step_000000020.pt"
    checkpoint = torch.load(stopped, weights_only=True)
    assert checkpoint["env_steps"] > 0 and len(checkpoint["online_buffer"]["rewards"]) == checkpoint["env_steps"]
    target = checkpoint["env_steps"] + 30
    result = subprocess.run(
        [sys.executable, "algorithms/finetune/cal_ql.py", "--resume", str(run_dir), "--online_iterations", str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=one_thread,
    )
    assert result.returncode == 0, result.stderr
    assert f"from step {checkpoint['step']}" in result.stdout and checkpoint["step"] > 20  # in the online phase
    summary = json.loads((run_dir / "summary.json").read_text())
    assert target <= summary["online_env_steps"] < target + 1000 and summary["offline_steps"] == 20
