"""Resuming, across the scripts: a finished run, an extended run, and a hard kill at an ODT iteration boundary.

Nothing a run has written is lost: a finished run resumed with its own config stops at once and keeps its
summary; a larger budget continues it (the superseded config and summary keep their step in their name);
metric rows are written exactly once across any kill and resume.
"""

import json
from pathlib import Path

import pytest

from conftest import load_script

TINY = {
    "offline/dt": "--embedding_dim 16 --num_layers 1 --num_heads 2 --seq_len 5 --batch_size 16 --warmup_steps 20 "
    "--eval_episodes 2 --target_returns [3600] --update_steps 40 --log_every 10 --eval_every 20 --checkpoint_every 20",
    "offline/iql": "--actor_hidden_dims [16,16] --critic_hidden_dims [16,16] --batch_size 32 --n_episodes 2 "
    "--max_timesteps 40 --log_every 10 --eval_freq 20 --checkpoint_every 20",
    "finetune/cal_ql": "--actor_hidden_dims [16,16] --critic_hidden_dims [16,16] --batch_size 32 --n_episodes 2 "
    "--cql_n_actions 3 --offline_iterations 20 --online_iterations 60 --log_every 10 --offline_eval_freq 20 "
    "--online_eval_freq 30 --checkpoint_every 20",
    "finetune/odt": "--embedding_dim 16 --num_layers 1 --num_heads 2 --seq_len 4 --eval_context 2 --batch_size 16 "
    "--warmup_steps 10 --eval_episodes 2 --buffer_size 50 --online_transitions 40 --log_every 10 --pretrain_steps 20 "
    "--updates_per_iteration 10 --online_iterations 2 --eval_every 20 --checkpoint_every 10",
}
EXTEND = {"offline/dt": "update_steps=60", "offline/iql": "max_timesteps=60", "finetune/odt": "online_iterations=3"}
EXTEND["finetune/cal_ql"] = "online_iterations=300"  # past the env steps of the episodes that ended the first run
SCRIPTS = {name: load_script(f"algorithms/{name}.py") for name in TINY}


def start(name: str, dataset: Path, run_dir: Path, *extra: str) -> dict:
    script = SCRIPTS[name]
    args = [*TINY[name].split(), "--dataset", str(dataset), "--run_dir", str(run_dir), *extra]
    return script.train(script.parse_config(script.TrainConfig, [*args, "--wandb_mode", "disabled", "--device", "cpu"]))


def resume(name: str, run_dir: Path, *extra: str) -> dict:
    script = SCRIPTS[name]
    return script.train(script.parse_config(script.TrainConfig, ["--resume", str(run_dir), *extra]))


def rows(run_dir: Path) -> list:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("name", TINY)
def test_a_finished_run_stops_at_once_and_an_extended_one_continues(name, hopper_random, tmp_path, capsys):
    run_dir = tmp_path / "run"
    finished = start(name, hopper_random, run_dir)
    summary, metrics = (run_dir / "summary.json").read_text(), (run_dir / "metrics.jsonl").read_text()
    assert any(key.startswith("eval/") for key in finished)
    with pytest.raises(SystemExit) as exit_info:  # the same config: nothing to do
        resume(name, run_dir)
    assert exit_info.value.code == 0 and "is complete" in capsys.readouterr().out
    assert (run_dir / "summary.json").read_text() == summary and (run_dir / "metrics.jsonl").read_text() == metrics

    extended = resume(name, run_dir, f"--{EXTEND[name]}")  # the "=" spelling: one code path
    assert {key for key in finished if key.startswith("eval/")} <= set(extended)
    assert rows(run_dir)[: len(metrics.splitlines())] == [json.loads(line) for line in metrics.splitlines()]
    assert max(row["step"] for row in rows(run_dir)) > max(json.loads(line)["step"] for line in metrics.splitlines())
    archived = sorted(run_dir.glob("summary.step_*.json"))
    assert len(archived) == 1 and archived[0].read_text() == summary  # the first summary is kept
    assert len(list(run_dir.glob("config.step_*.yaml"))) == 1
    with pytest.raises(SystemExit) as exit_info:  # config.yaml now holds the larger budget
        resume(name, run_dir)
    assert exit_info.value.code == 0
    assert json.loads((run_dir / "summary.json").read_text())["run_dir"] == str(run_dir)


class Killed(BaseException):
    """Stands for kill -9: nothing after it runs, no handler, no checkpoint."""


@pytest.mark.parametrize("name", ["finetune/odt", "finetune/odt_td3"])
def test_a_kill_right_after_a_rollout_row_duplicates_no_row(name, hopper_random, tmp_path, monkeypatch):
    script = SCRIPTS.get(name) or load_script(f"algorithms/{name}.py")
    SCRIPTS[name], TINY[name] = script, TINY["finetune/odt"] + (" --critic_hidden_dim 32" if "td3" in name else "")
    start(name, hopper_random, tmp_path / "straight")
    log = script.Run.log

    def log_then_die(run, step, metrics):  # the second rollout row reaches the file, then the process dies
        log(run, step, metrics)
        if metrics.get("online_iterations") == 2:
            raise Killed

    monkeypatch.setattr(script.Run, "log", log_then_die)
    with pytest.raises(Killed):
        start(name, hopper_random, tmp_path / "killed")
    monkeypatch.setattr(script.Run, "log", log)
    resume(name, tmp_path / "killed")
    timing = ("updates_per_second", "steps_per_second")
    strip = lambda row: {key: value for key, value in row.items() if not key.endswith(timing)}  # noqa: E731
    killed, straight = ([strip(row) for row in rows(tmp_path / run)] for run in ("killed", "straight"))
    assert [(row["step"], sorted(row)) for row in killed] == [(row["step"], sorted(row)) for row in straight]
