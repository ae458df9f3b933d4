"""The synced runtime plumbing (blocks/runtime.py): config parsing, run directories, metrics, checkpoints."""

import json
import random
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pytest
import torch

from blocks.runtime import (
    MetricWindow,
    RunLogger,
    UserError,
    check_run_fields,
    load_checkpoint,
    parse_config,
    prepare_run_dir,
    save_checkpoint,
)


@dataclass
class Config:
    dataset: str = "hopper-medium-v2"
    learning_rate: float = 1e-3
    train_seed: int = 0
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
        check_run_fields(self, ("learning_rate",))


def test_unknown_keys_and_bad_values_name_the_cause(tmp_path, capsys):
    (tmp_path / "typo.yaml").write_text("learning_rat: 0.1\n")
    with pytest.raises(UserError, match="Valid keys of Config: dataset, learning_rate"):
        parse_config(Config, ["--config_path", str(tmp_path / "typo.yaml")])
    with pytest.raises(SystemExit) as exit_info:  # argparse: usage and the unknown flag, exit code 2
        parse_config(Config, ["--batchsize", "8"])
    assert exit_info.value.code == 2 and "--batchsize" in capsys.readouterr().err
    with pytest.raises(UserError, match="learning_rate must be positive"):
        parse_config(Config, ["--learning_rate", "-1"])
    with pytest.raises(UserError, match="wandb_mode must be offline, online or disabled"):
        parse_config(Config, ["--wandb_mode", "cloud"])
    with pytest.raises(UserError, match="config file not found: 'missing.yaml'"):
        parse_config(Config, ["--config_path", "missing.yaml"])


def test_resume_rereads_the_run_config_and_later_flags_override(tmp_path):
    config = parse_config(Config, ["--run_dir", str(tmp_path / "run"), "--learning_rate", "0.5"])
    run_dir = prepare_run_dir(config, "algo")
    resumed = parse_config(Config, ["--resume", str(run_dir), "--train_seed", "3"])
    assert (resumed.learning_rate, resumed.train_seed, resumed.resume) == (0.5, 3, str(run_dir))
    with pytest.raises(UserError, match="no checkpoint"):
        prepare_run_dir(resumed, "algo")
    with pytest.raises(UserError, match="is it a run directory"):
        parse_config(Config, ["--resume", str(tmp_path / "elsewhere")])


def test_a_run_directory_with_content_is_never_overwritten(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="already has content; pass --resume"):
        prepare_run_dir(Config(run_dir=str(run_dir)), "algo")
    assert (run_dir / "notes.txt").read_text() == "mine" and not (run_dir / "config.yaml").exists()


def test_default_run_directory_is_named_after_algorithm_dataset_and_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = prepare_run_dir(Config(dataset="data/hopper-random.hdf5", train_seed=7), "dt")
    assert run_dir.parts[:3] == ("runs", "dt", "hopper-random") and run_dir.name.startswith("seed7-")
    assert (
        prepare_run_dir(Config(dataset="minari:mujoco/hopper/medium-v0"), "iql").parts[2]
        == "minari_mujoco_hopper_medium-v0"
    )


def test_metric_window_averages_on_flush_and_stops_on_non_finite_values(tmp_path):
    window = MetricWindow()
    for value in (1.0, 2.0, 6.0):
        window.add({"loss": torch.tensor(value)})
    window.add({"q": torch.tensor(4.0)})  # a metric of delayed updates averages over its own count
    metrics = window.flush(4, tmp_path)
    assert metrics["train/loss"] == 3.0 and metrics["train/q"] == 4.0 and metrics["train/updates_per_second"] > 0
    assert window.flush(4, tmp_path) == {}
    window.add({"loss": torch.tensor(float("nan"))})
    with pytest.raises(UserError, match=f"train/loss became non-finite .* {tmp_path / 'checkpoints'}"):
        window.flush(5, tmp_path)


def test_logger_drops_rows_after_the_resumed_checkpoint(tmp_path):
    logger = RunLogger(tmp_path, Config())
    for step in (10, 20, 30):
        logger.log(step, {"x": step})
    RunLogger(tmp_path, Config(), resume_step=20).log(30, {"x": -1})
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 10, "x": 10}, {"step": 20, "x": 20}, {"step": 30, "x": -1}]


def test_checkpoints_are_atomic_rotated_and_restore_rng_states(tmp_path, monkeypatch):
    (tmp_path / "checkpoints").mkdir()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"weights": torch.ones(2) * step}, keep=2)
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == [
        "step_000000002.pt",
        "step_000000003.pt",
    ]
    save_checkpoint(tmp_path, 4, {}, keep=2)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.random(), np.random.rand(), torch.rand(1)
    real_load = torch.load  # RNG states must come back as CPU tensors wherever map_location put the rest
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: {**real_load(*args, **kwargs)})
    checkpoint = load_checkpoint(tmp_path, torch.device("cpu"))
    assert checkpoint["step"] == 4
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
