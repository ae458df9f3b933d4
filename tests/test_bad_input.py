"""Bad input, table-driven: every case against every script it applies to.

Each case checks the exit code (2), the key words of the message, that nothing written earlier (the
dataset, an earlier run) changed, and that the next attempt is not blocked: a run directory can be
started at the same place afterwards. Scripts run in-process through their own `run_main`, as from the
command line, so the whole table stays within seconds.
"""

import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import load_script

NAMES = ("offline/dt", "offline/cql", "offline/iql", "finetune/odt", "finetune/odt_td3")
NAMES += ("finetune/cql", "finetune/cal_ql", "finetune/iql", "online/sac")  # SAC: with a dataset, SAC + offline data
SCRIPTS = {name: load_script(f"algorithms/{name}.py") for name in NAMES}
DT_FAMILY = ("offline/dt", "finetune/odt", "finetune/odt_td3")
# per script: its training budget, its (offline) evaluation frequency and a learning rate
BUDGET = {"offline/dt": "update_steps", "offline/cql": "max_timesteps", "offline/iql": "max_timesteps"}
EVAL_FREQUENCY = {"offline/dt": "eval_every", "offline/cql": "eval_freq", "offline/iql": "eval_freq"}
LEARNING_RATE = {name: "learning_rate" for name in DT_FAMILY}
BUDGET["online/sac"], EVAL_FREQUENCY["online/sac"], LEARNING_RATE["online/sac"] = (
    "total_steps",
    "eval_every",
    "policy_lr",
)
for name in NAMES:
    BUDGET.setdefault(name, "online_iterations")
    EVAL_FREQUENCY.setdefault(name, "eval_every" if name in DT_FAMILY else "offline_eval_freq")
    LEARNING_RATE.setdefault(name, "actor_lr" if name.endswith("iql") else "policy_lr" if "ql" in name else "")


def rewrite(source: Path, target: Path, change) -> Path:
    shutil.copy(source, target)
    with h5py.File(target, "r+") as file:
        change(file)
    return target


def with_nan_next_observation(file: h5py.File) -> None:
    next_observations = file["next_observations"][()]
    next_observations[7, 2] = np.nan
    del file["next_observations"]
    file["next_observations"] = next_observations


def truncated(source: Path, target: Path) -> Path:
    target.write_bytes(source.read_bytes()[: source.stat().st_size // 2])
    return target


# case id -> (the scripts it applies to, its arguments given the script name and tmp_path and the dataset,
# the words its message must hold, with {budget}, {frequency} and {learning_rate} filled in per script)
CASES = {
    "misspelled key": (NAMES, lambda n, d, t: ["--bach_size", "3"], ["unknown config key 'bach_size'", "batch_size"]),
    "non-integer count": (NAMES, lambda n, d, t: ["--batch_size", "10.5"], ["batch_size", "expected an integer"]),
    "negative budget": (NAMES, lambda n, d, t: [f"--{BUDGET[n]}", "-3"], ["{budget} must be", "-3"]),
    "zero evaluation frequency": (
        NAMES,
        lambda n, d, t: [f"--{EVAL_FREQUENCY[n]}", "0"],
        ["{frequency} must be > 0, not 0"],
    ),
    "negative learning rate": (
        NAMES,
        lambda n, d, t: [f"--{LEARNING_RATE[n]}", "-1e-4"],
        ["{learning_rate} must be > 0, not -0.0001"],
    ),
    "unknown device": (NAMES, lambda n, d, t: ["--device", "tpu"], ["device must be auto, cpu, cuda", "'tpu'"]),
    "absent GPU index": (NAMES, lambda n, d, t: ["--device", "cuda:7"], ["'cuda:7' requested", "CUDA device(s)"]),
    "zero heads": (DT_FAMILY, lambda n, d, t: ["--num_heads", "0"], ["num_heads must be > 0"]),
    "misspelled dataset": (
        NAMES,
        lambda n, d, t: ["--dataset", "walker2d-medum-replay-v2"],
        ["unknown dataset", "did you mean 'walker2d-medium-replay-v2'"],
    ),
    "missing dataset file": (NAMES, lambda n, d, t: ["--dataset", str(t / "absent.hdf5")], ["does not exist"]),
    "NaN next observation": (
        NAMES,
        lambda n, d, t: ["--dataset", str(rewrite(d, t / "nan.hdf5", with_nan_next_observation))],
        ["NaN or inf in 'next_observations'", "first at row 7"],
    ),
    "no timeouts": (
        NAMES,
        lambda n, d, t: ["--dataset", str(rewrite(d, t / "no-timeouts.hdf5", lambda file: file.pop("timeouts")))],
        ["has no 'timeouts' array", "episodes would merge"],
    ),
    "truncated file": (
        NAMES,
        lambda n, d, t: ["--dataset", str(truncated(d, t / "cut.hdf5"))],
        ["truncated or corrupt", "delete it", "d4rl_compat.generate"],
    ),
    "run directory under a file": (
        NAMES,
        lambda n, d, t: ["--run_dir", str(t / "dataset-copy.hdf5" / "run")],
        ["cannot write the run directory", "--run_dir"],
    ),
}
TABLE = [(case, name) for case, (names, _, _) in CASES.items() for name in names]


def snapshot(folder: Path) -> dict:
    return {path: path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.parametrize("case, name", TABLE, ids=[f"{case}-{name}" for case, name in TABLE])
def test_bad_input_exits_2_with_a_clear_message_and_blocks_nothing(
    case, name, hopper_random, tmp_path, monkeypatch, capsys
):
    script = SCRIPTS[name]
    shutil.copy(hopper_random, tmp_path / "dataset-copy.hdf5")
    (tmp_path / "earlier").mkdir()
    (tmp_path / "earlier" / "metrics.jsonl").write_text('{"step": 1}\n')
    before = snapshot(tmp_path)
    run_dir = tmp_path / "attempt"
    base = ["--dataset", str(hopper_random), "--run_dir", str(run_dir), "--wandb_mode", "disabled", "--device", "cpu"]
    monkeypatch.setattr(sys, "argv", [name, *base, *CASES[case][1](name, hopper_random, tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        script.run_main(script.main)
    message = capsys.readouterr().err
    assert exit_info.value.code == 2, message
    for words in CASES[case][2]:
        words = words.format(budget=BUDGET[name], frequency=EVAL_FREQUENCY[name], learning_rate=LEARNING_RATE[name])
        assert words in message, message
    assert {path: data for path, data in snapshot(tmp_path).items() if path in before} == before
    config = script.parse_config(script.TrainConfig, base)  # the next attempt, corrected, may start there
    assert script.Run(config, name).dir == run_dir


def test_every_script_is_in_the_table():
    for name in NAMES:
        assert sum(name in names for names, _, _ in CASES.values()) >= 12
