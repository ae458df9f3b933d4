"""The synced runtime plumbing (blocks/runtime.py): config parsing, run directories, metrics, checkpoints."""

import json
import random
import signal
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pytest
import torch

from blocks.runtime import Run, UserError, check_fields, parse_config


@dataclass
class Config:
    dataset: str = "hopper-medium-v2"
    learning_rate: float = 1e-3
    train_seed: int = 0
    eval_seed: int = 0
    device: str = "cpu"
    run_dir: Optional[str] = None
    resume: Optional[str] = None
    wandb_mode: str = "disabled"
    project: str = "ORL"
    group: str = ""
    name: str = ""
    log_every: int = 10
    checkpoint_every: int = 10
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        check_fields(self, positive=("learning_rate",))


def test_unknown_keys_and_bad_values_name_the_cause(tmp_path, capsys):
    (tmp_path / "typo.yaml").write_text("learning_rat: 0.1\n")
    with pytest.raises(UserError, match="'learning_rat' \\(did you mean 'learning_rate'\\?\\). Valid keys: dataset, "):
        parse_config(Config, ["--config_path", str(tmp_path / "typo.yaml")])
    with pytest.raises(UserError, match="unknown config key 'log_evry' \\(did you mean 'log_every'\\?\\)"):
        parse_config(Config, ["--log_evry", "8"])
    with pytest.raises(UserError, match="learning_rate must be > 0, not -1.0"):
        parse_config(Config, ["--learning_rate", "-1"])
    with pytest.raises(UserError, match="wandb_mode must be offline, online or disabled"):
        parse_config(Config, ["--wandb_mode", "cloud"])
    with pytest.raises(UserError, match="config file not found: 'missing.yaml'"):
        parse_config(Config, ["--config_path", "missing.yaml"])


def test_resume_rereads_the_run_config_and_later_flags_override(tmp_path):
    config = parse_config(Config, ["--run_dir", str(tmp_path / "run"), "--learning_rate", "0.5"])
    run_dir = Run(config, "algo").dir
    resumed = parse_config(Config, ["--resume", str(run_dir), "--train_seed", "3"])
    assert (resumed.learning_rate, resumed.train_seed, resumed.resume) == (0.5, 3, str(run_dir))
    with pytest.raises(UserError, match="no checkpoint"):
        Run(resumed, "algo")
    with pytest.raises(UserError, match="is it a run directory"):
        parse_config(Config, ["--resume", str(tmp_path / "elsewhere")])


def test_a_run_directory_with_content_is_never_overwritten(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="already has content; pass --resume"):
        Run(Config(run_dir=str(run_dir)), "algo")
    assert (run_dir / "notes.txt").read_text() == "mine" and not (run_dir / "config.yaml").exists()


def test_default_run_directory_is_named_after_algorithm_dataset_and_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = Run(Config(dataset="data/hopper-random.hdf5", train_seed=7), "dt").dir
    assert run_dir.parts[:3] == ("runs", "dt", "hopper-random") and run_dir.name.startswith("seed7-")
    assert (run_dir / "config.yaml").exists() and (run_dir / "checkpoints").is_dir()
    minari_run = Run(Config(dataset="minari:mujoco/hopper/medium-v0"), "iql")
    assert minari_run.dir.parts[2] == "minari_mujoco_hopper_medium-v0"


def test_metric_window_averages_on_flush_and_stops_on_non_finite_values(tmp_path):
    run = Run(Config(run_dir=str(tmp_path / "run")), "algo")
    for value in (1.0, 2.0, 6.0):
        run.add({"loss": torch.tensor(value)})
    run.add({"q": torch.tensor(4.0)})  # a metric of delayed updates averages over its own count
    metrics = run.flush(4)
    assert metrics["train/loss"] == 3.0 and metrics["train/q"] == 4.0 and metrics["train/updates_per_second"] > 0
    assert run.flush(4) == {}
    run.add({"loss": torch.tensor(float("nan"))})
    with pytest.raises(UserError, match="train/loss became non-finite .*learning rates too high") as error:
        run.flush(5)
    assert "checkpoint" not in str(error.value)  # none written yet: none is named
    run.checkpoint(5, {})
    run.add({"loss": torch.tensor(float("inf"))})
    with pytest.raises(
        UserError, match=f"the newest good checkpoint is {run.dir / 'checkpoints' / 'step_000000005.pt'}"
    ):
        run.flush(6)


def test_resume_drops_metric_rows_after_the_checkpoint_and_restores_rng_states(tmp_path, monkeypatch):
    run = Run(Config(run_dir=str(tmp_path / "run")), "algo")
    for step in (10, 20, 30):
        run.log(step, {"x": step})
        if step == 20:
            run.checkpoint(20, {"weights": torch.ones(2)})
            expected = (random.random(), np.random.rand(), torch.rand(1).item())
    real_load = torch.load  # RNG states must come back as CPU tensors wherever map_location put the rest
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: {**real_load(*args, **kwargs)})
    resumed = Run(Config(resume=str(run.dir)), "algo")
    checkpoint = resumed.restore(torch.device("cpu"))
    assert checkpoint["step"] == 20 and checkpoint["weights"].tolist() == [1.0, 1.0]
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    resumed.log(30, {"x": -1})
    rows = [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 10, "x": 10}, {"step": 20, "x": 20}, {"step": 30, "x": -1}]
    assert Run(Config(run_dir=str(tmp_path / "new")), "algo").restore(torch.device("cpu")) is None


def test_checkpoints_are_atomic_and_rotated(tmp_path):
    run = Run(Config(run_dir=str(tmp_path / "run"), keep_checkpoints=2), "algo")
    for step in (1, 2, 3):
        run.checkpoint(step, {"weights": torch.ones(2) * step})
    assert sorted(path.name for path in (run.dir / "checkpoints").iterdir()) == [
        "step_000000002.pt",
        "step_000000003.pt",
    ]


def test_a_signal_stops_the_run_at_its_next_checkpoint(tmp_path):
    run = Run(Config(run_dir=str(tmp_path / "run")), "algo")
    run._on_signal(signal.SIGTERM, None)
    assert run.stopping
    with pytest.raises(SystemExit) as exit_info:
        run.checkpoint(7, {})
    assert exit_info.value.code == 128 + signal.SIGTERM and (run.dir / "checkpoints" / "step_000000007.pt").exists()
    with pytest.raises(KeyboardInterrupt):  # a second signal does not wait
        run._on_signal(signal.SIGINT, None)


def test_finish_writes_the_summary_with_wall_time_and_run_directory(tmp_path):
    run = Run(Config(run_dir=str(tmp_path / "run")), "algo")
    summary = run.finish({"eval/score": 1.5})
    assert json.loads((run.dir / "summary.json").read_text()) == summary
    assert summary["eval/score"] == 1.5 and summary["run_dir"] == str(run.dir) and summary["wall_time_s"] >= 0


def test_resume_with_an_equals_sign_rereads_the_run_config(tmp_path):
    config = parse_config(Config, ["--run_dir", str(tmp_path / "run"), "--learning_rate=0.5"])
    assert config.learning_rate == 0.5
    run_dir = Run(config, "algo").dir
    resumed = parse_config(Config, [f"--resume={run_dir}", "--train_seed=3"])
    assert (resumed.learning_rate, resumed.train_seed, resumed.resume) == (0.5, 3, str(run_dir))


def test_a_start_that_failed_before_its_first_checkpoint_does_not_block_the_next(tmp_path):
    first = Run(Config(run_dir=str(tmp_path / "run"), learning_rate=0.1), "algo")
    first.log(10, {"train/loss": float("nan")})  # e.g. a non-finite loss at the first flush
    second = Run(Config(run_dir=str(tmp_path / "run"), learning_rate=0.2), "algo")
    assert "learning_rate: 0.2" in (second.dir / "config.yaml").read_text()
    assert not (second.dir / "metrics.jsonl").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "metrics.jsonl").write_text("precious\n")  # not a run directory: no config.yaml
    with pytest.raises(UserError, match="already has content"):
        Run(Config(run_dir=str(tmp_path / "mine")), "algo")
    assert (tmp_path / "mine" / "metrics.jsonl").read_text() == "precious\n"
    second.checkpoint(5, {})
    with pytest.raises(UserError, match="already has content; pass --resume"):  # a checkpoint is never written over
        Run(Config(run_dir=str(tmp_path / "run")), "algo")


def test_a_checkpoint_that_needs_pickle_is_refused_not_run(tmp_path):
    config = Config(run_dir=str(tmp_path / "run"))
    run = Run(config, "algo")
    run.checkpoint(10, {"weights": torch.ones(2)})
    assert torch.load(run.dir / "checkpoints" / "step_000000010.pt", weights_only=True)["step"] == 10
    torch.save({"step": 20, "payload": np.arange(3)}, run.dir / "checkpoints" / "step_000000020.pt")  # a numpy object
    resumed = Run(Config(resume=str(run.dir), learning_rate=0.5), "algo")
    with pytest.raises(UserError, match="step_000000020.pt: not a checkpoint this script writes"):
        resumed.restore(torch.device("cpu"))
