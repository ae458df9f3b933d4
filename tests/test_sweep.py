"""Sweeps on Ray and their reports: expansion, the smoke suite end to end, resuming after a killed run, a failing
run, and report numbers checked against hand-computed ones."""

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import yaml

from conftest import ROOT, load_script

sweep = load_script("benchmarks/sweep.py")
report = load_script("benchmarks/report.py")

IQL = "algorithms/offline/iql.py"
IQL_CONFIG = "configs/offline/iql/hopper/medium_v2.yaml"
TINY_IQL = {
    "actor_hidden_dims": [16, 16],
    "critic_hidden_dims": [16, 16],
    "batch_size": 32,
    "n_episodes": 2,
    "max_timesteps": 40,
    "log_every": 10,
    "eval_freq": 20,
    "checkpoint_every": 20,
}


def sweep_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "benchmarks/sweep.py", *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def write_sweep(path: Path, *entries: dict) -> Path:
    path.write_text(
        yaml.safe_dump({"overrides": {"wandb_mode": "disabled", "device": "cpu"}, "entries": list(entries)})
    )
    return path


def metric_rows(run_dir: Path) -> list:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def attempts(run_dir: Path) -> list:
    """The state each sweep attempt found the run in (fresh, resume), from the headers of its run.log."""
    return re.findall(r"^=== sweep: \S+ \S+ (\w+) on ", (run_dir / sweep.LOG_NAME).read_text(), re.MULTILINE)


def test_a_sweep_file_expands_to_every_entry_dataset_and_seed(tmp_path):
    spec = {
        "resources": {"num_cpus": 1, "num_gpus": 0.25},
        "overrides": {"wandb_mode": "disabled"},
        "entries": [
            {
                "name": "iql",
                "script": IQL,
                "config": IQL_CONFIG,
                "datasets": ["hopper-medium-v2", {"dataset": "{output}/data/x.hdf5", "overrides": {"beta": 1.5}}],
                "seeds": [0, 1, 2],
                "overrides": {"actor_hidden_dims": [16, 16], "normalize_reward": True},
            },
            {
                "name": "sac",
                "script": "algorithms/online/sac.py",
                "datasets": [{"tag": "hopper", "overrides": {"env": "hopper"}}],
                "seeds": [5],
                "resources": {"num_cpus": 2},
            },
        ],
    }
    runs = sweep.expand(spec, tmp_path)
    expected = [f"iql/{tag}/seed{seed}" for tag in ("hopper-medium-v2", "x") for seed in (0, 1, 2)]
    assert [run.name for run in runs] == [*expected, "sac/hopper/seed5"]
    assert sweep.expand(spec, tmp_path) == runs, "the same file gives the same runs"
    generated = runs[4]
    assert generated.run_dir == tmp_path / "iql" / "x" / "seed1"
    assert generated.command() == [
        *(IQL, "--config_path", IQL_CONFIG, "--dataset", str(tmp_path / "data/x.hdf5"), "--train_seed", "1"),
        *("--wandb_mode", "disabled", "--actor_hidden_dims", "[16,16]", "--normalize_reward", "true"),
        *("--beta", "1.5", "--run_dir", str(generated.run_dir)),
    ]
    assert "--beta" not in runs[0].arguments, "a dataset's overrides stay with that dataset"
    sac = runs[-1]
    assert (sac.num_cpus, sac.num_gpus, sac.dataset) == (2, 0.25, None) and "--dataset" not in sac.arguments
    assert "--env" in sac.arguments and "--config_path" not in sac.arguments

    assert generated.state() == "fresh"
    (generated.run_dir / "checkpoints").mkdir(parents=True)
    (generated.run_dir / "checkpoints" / "step_000000020.pt").write_bytes(b"")
    assert generated.state() == "resume" and generated.command()[-2:] == ["--resume", str(generated.run_dir)]
    (generated.run_dir / "summary.json").write_text("{}")
    assert generated.state() == "done"

    twice = {**spec["entries"][0], "datasets": ["hopper-medium-v2", "d4rl/hopper-medium-v2.hdf5"]}
    for bad, message in [
        ({"entries": [twice]}, "share a run directory"),
        ({"entries": [{**twice, "overrides": {"run_dir": "x"}}]}, "set by the sweep"),
        ({"entries": [{**twice, "seed": [0]}]}, "unknown key"),
        ({"entries": [{**twice, "seeds": [0.5]}]}, "seeds must be"),
        ({"entries": [{**twice, "script": "algorithms/offline/nope.py"}]}, "not found"),
    ]:
        with pytest.raises(sweep.SweepError, match=message):
            sweep.expand(bad, tmp_path)


def test_one_output_folder_takes_one_sweep_at_a_time(tmp_path, capsys):
    sweep_file = write_sweep(tmp_path / "sweep.yaml", {"name": "a", "script": IQL, "datasets": ["x"], "seeds": [0]})
    (tmp_path / "out").mkdir()
    with open(tmp_path / "out" / ".sweep.lock", "w") as running:
        fcntl.flock(running, fcntl.LOCK_EX)  # as a sweep in progress holds it
        assert sweep.main([str(sweep_file), "--output", str(tmp_path / "out")]) == 2
    assert "another sweep is running" in capsys.readouterr().err


def test_a_run_directory_may_hold_the_sweep_log_before_its_script_starts(tmp_path):
    iql = load_script(IQL)

    def config(**fields):
        return iql.TrainConfig(run_dir=str(tmp_path / "run"), wandb_mode="disabled", **fields)

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / sweep.LOG_NAME).write_text("=== sweep: ...\n")
    iql.Run(config(beta=1.0), "iql")  # a fresh start beside the log
    iql.Run(config(beta=2.0), "iql")  # a start that failed before its first checkpoint is replaced
    assert "beta: 2.0" in (tmp_path / "run" / "config.yaml").read_text()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(iql.UserError, match="already has content"):
        iql.Run(config(), "iql")


def test_the_suites_expand_to_configs_the_scripts_accept(tmp_path):
    for suite, scripts in (("smoke", 9), ("cpu", 8), ("gpu", 5)):
        runs = sweep.expand(sweep.load_sweep(ROOT / "benchmarks/suites" / f"{suite}.yaml"), tmp_path)
        assert len({run.script for run in runs}) == scripts
        for run in runs:
            script = load_script(run.script)
            script.parse_config(script.TrainConfig, list(run.arguments))  # raises on an unknown key or a bad value
    result = sweep_cli("benchmarks/suites/cpu.yaml", "--output", str(tmp_path / "cpu"), "--dry_run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("[ fresh] ") == 45 and "python -m d4rl_compat.maze2d --maze umaze" in result.stdout
    assert not (tmp_path / "cpu").exists(), "a dry run writes nothing"


def test_the_smoke_suite_runs_on_an_embedded_ray_cluster_resumes_and_reports(tmp_path):
    # Three of its entries (an offline DT, an offline value method, a fine-tuning one) keep the suite's tests
    # within time; every entry's config is checked against its script above.
    suite = yaml.safe_load((ROOT / "benchmarks/suites/smoke.yaml").read_text())
    suite["entries"] = [entry for entry in suite["entries"] if entry["name"] in ("dt", "iql", "odt_td3")]
    suite_file, output = tmp_path / "smoke.yaml", tmp_path / "smoke"
    suite_file.write_text(yaml.safe_dump(suite))
    started = time.perf_counter()
    first = sweep_cli(str(suite_file), "--output", str(output), "--num_cpus", "2")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "3 runs: 0 done already (skipped), 0 to resume, 3 to start" in first.stdout
    assert "3/3 done, 0 running, 0 failed, 0 waiting" in first.stdout
    print(f"smoke suite: {time.perf_counter() - started:.0f} s")
    run_dirs = sorted(path.parent for path in output.glob("*/hopper-random/seed0/summary.json"))
    assert len(run_dirs) == 3 and all(attempts(run_dir) == ["fresh"] for run_dir in run_dirs)

    # A kill between two checkpoints: the newest one and the summary are gone, the rows after step 20 stay.
    iql = output / "iql" / "hopper-random" / "seed0"
    rows = metric_rows(iql)
    (iql / "summary.json").unlink()
    (iql / "checkpoints" / "step_000000040.pt").unlink()
    second = sweep_cli(str(suite_file), "--output", str(output), "--num_cpus", "2")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "3 runs: 2 done already (skipped), 1 to resume, 0 to start" in second.stdout
    assert attempts(iql) == ["fresh", "resume"] and "resuming" in (iql / sweep.LOG_NAME).read_text()
    assert all(attempts(run_dir) == ["fresh"] for run_dir in run_dirs if run_dir != iql)
    strip = lambda row: {key: value for key, value in row.items() if not key.endswith("per_second")}  # noqa: E731
    assert [strip(row) for row in metric_rows(iql)] == [strip(row) for row in rows], "same rows, none twice"

    report.main([str(output), "--reps", "200"])
    text = (output / "report" / "report.md").read_text()
    for entry in ("dt", "iql", "odt_td3"):
        assert f"| hopper-random | {entry} | 1 |" in text
    assert "## Fine-tuning" in text and "| hopper-random | odt_td3 | 1 |" in text.split("## Fine-tuning")[1]
    figures = ("aggregates.png", "performance_profile.png", "curves_hopper-random.png")
    assert all((output / "report" / name).stat().st_size > 1000 for name in figures)


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster shared by the tests below: in this process, and joined by sweep CLIs with --address."""
    sweep.connect(None, num_cpus=2, num_gpus=0)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_a_killed_run_resumes_and_a_finished_one_is_not_run_again(ray_cluster, hopper_random, tmp_path):
    quick = {"name": "quick", "script": IQL, "config": IQL_CONFIG, "datasets": [str(hopper_random)], "seeds": [0]}
    quick["overrides"] = TINY_IQL
    long = {**quick, "name": "long", "overrides": {**TINY_IQL, "max_timesteps": 1000, "log_every": 50}}
    long["overrides"].update(eval_freq=500, checkpoint_every=50)
    sweep_file = write_sweep(tmp_path / "sweep.yaml", quick, long)
    output = tmp_path / "out"
    quick_dir, long_dir = output / "quick/hopper-random/seed0", output / "long/hopper-random/seed0"
    command = [sys.executable, "benchmarks/sweep.py", str(sweep_file), "--output", str(output)]
    first = subprocess.Popen([*command, "--address", ray_cluster], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not any((long_dir / "checkpoints").glob("step_*.pt")) and time.time() < deadline:
        time.sleep(0.05)
    assert not (long_dir / "summary.json").exists(), "the long run must still be running when it is killed"
    os.kill(
        int(re.findall(r"^=== pid (\d+)", (long_dir / sweep.LOG_NAME).read_text(), re.MULTILINE)[-1]), signal.SIGKILL
    )
    stdout, _ = first.communicate(timeout=120)
    assert first.returncode == 1, stdout
    assert "FAILED long/hopper-random/seed0: killed by signal 9" in stdout and "1 of 2 runs failed" in stdout
    assert (quick_dir / "summary.json").exists()
    quick_summary = (quick_dir / "summary.json").read_text()

    second = sweep_cli(str(sweep_file), "--output", str(output), "--address", ray_cluster)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "2 runs: 1 done already (skipped), 1 to resume, 0 to start" in second.stdout
    assert attempts(quick_dir) == ["fresh"] and (quick_dir / "summary.json").read_text() == quick_summary
    assert attempts(long_dir) == ["fresh", "resume"]
    rows = metric_rows(long_dir)
    train_steps = [row["step"] for row in rows if "train/q_loss" in row]
    eval_steps = [row["step"] for row in rows if "eval/return_mean" in row]
    assert train_steps == list(range(50, 1001, 50)) and eval_steps == [500, 1000], "every row once, in order"
    assert json.loads((long_dir / "summary.json").read_text())["step"] == 1000


def test_a_failing_run_is_reported_with_the_end_of_its_log(ray_cluster, hopper_random, tmp_path, capsys):
    good = {"name": "good", "script": IQL, "config": IQL_CONFIG, "datasets": [str(hopper_random)], "seeds": [0]}
    good["overrides"] = TINY_IQL
    bad = {**good, "name": "bad", "overrides": {**TINY_IQL, "batch_size": 0}}
    sweep_file = write_sweep(tmp_path / "sweep.yaml", good, bad)
    assert sweep.main([str(sweep_file), "--output", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "FAILED bad/hopper-random/seed0: exit code 2" in out and "finished good/hopper-random/seed0" in out
    tail = out.split("1 of 2 runs failed:")[1]
    assert "--- bad/hopper-random/seed0: exit code 2" in tail and "batch_size must be > 0" in tail
    assert "run the same command again" in tail
    assert ray.is_initialized(), "a cluster the caller connected to stays up"


def write_run(sweep_dir: Path, name: str, evaluations: list, summary: dict, config: dict | None = None) -> None:
    run_dir = sweep_dir / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config or {}))
    rows = [{"step": step, "train/loss": 1.0} for step, _ in evaluations]
    rows += [{"step": step, "eval/normalized_score_mean": score} for step, score in evaluations]
    rows.sort(key=lambda row: row["step"])
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (run_dir / "summary.json").write_text(json.dumps(summary))


def test_report_numbers_match_hand_computed_ones(tmp_path):
    sweep_dir = tmp_path / "sweep"
    finals = {"hopper-medium-v2": [10.0, 20.0, 36.0, 90.0], "walker2d-medium-replay-v2": [0.0, 50.0, 62.0, 6.0]}
    manifest = []
    for tag, scores in finals.items():
        for seed, score in enumerate(scores):
            name = f"alpha/{tag}/seed{seed}"
            curve = [(10, 96.0), (20, score)] if (tag, seed) == ("hopper-medium-v2", 3) else [(20, score)]
            write_run(sweep_dir, name, curve, {"eval/normalized_score_mean": score})
            manifest.append(dict(name=name, entry="alpha", tag=tag, seed=seed, script=IQL, run_dir=name))
    # A fine-tuning run: offline phase to step 100, online evaluations after it.
    for seed, (before, online, regret) in enumerate([(40.0, [25.0, 45.0], 0.5), (30.0, [35.0, 20.0], 0.7)]):
        name = f"beta/hopper-medium-v2/seed{seed}"
        curve = [(100, before), (150, online[0]), (200, online[1])]
        summary = {"offline/normalized_score_mean": before, "offline_steps": 100, "eval/regret": regret}
        write_run(sweep_dir, name, curve, summary)
        manifest.append(
            dict(name=name, entry="beta", tag="hopper-medium-v2", seed=seed, script="algorithms/finetune/cql.py")
        )
        manifest[-1]["run_dir"] = name
    manifest.append(dict(name="alpha/x/seed0", entry="alpha", tag="x", seed=0, script=IQL, run_dir="alpha/x/seed0"))
    (sweep_dir / "sweep.json").write_text(json.dumps({"runs": manifest}))
    published = tmp_path / "published.json"
    records = [
        dict(source="s1", setting="offline", algorithm="IQL", dataset="hopper-medium", score=20.0, score_std=10.0),
        dict(source="s1", setting="offline", algorithm="IQL", dataset="walker2d-medium-replay", score=40, score_std=20),
        dict(source="s2", setting="finetune", algorithm="CQL", dataset="hopper-medium", before=1.0, after=2.0),
    ]
    published.write_text(json.dumps({"sources": {"s1": "paper one, table 1", "s2": "paper two"}, "scores": records}))

    result = report.write_report(sweep_dir, tmp_path / "report", reps=100, published=published)

    mean = lambda values: sum(values) / len(values)  # noqa: E731
    std = lambda values: (sum((v - mean(values)) ** 2 for v in values) / len(values)) ** 0.5  # noqa: E731
    scores = {(row["dataset"], row["algorithm"]): row for row in result["scores"]}
    for tag, values in finals.items():
        row = scores[(tag, "alpha")]
        assert row["final"]["mean"] == pytest.approx(mean(values)) and row["final"]["std"] == pytest.approx(std(values))
    best = [10.0, 20.0, 36.0, 96.0]  # seed 3 was at 96 before it ended at 90
    assert scores[("hopper-medium-v2", "alpha")]["best"]["mean"] == pytest.approx(mean(best))
    assert scores[("hopper-medium-v2", "alpha")]["within_published"] is False  # 39 vs 20 ± 10
    assert scores[("walker2d-medium-replay-v2", "alpha")]["within_published"] is True  # 29.5 vs 40 ± 20

    every = sorted(finals["hopper-medium-v2"] + finals["walker2d-medium-replay-v2"])
    middle = every[len(every) // 4 : len(every) - len(every) // 4]  # the middle 50% of the 8 runs x datasets
    alpha = result["aggregates"]["alpha"]
    assert alpha["IQM"]["point"] == pytest.approx(mean(middle)) == pytest.approx(29.0)
    assert alpha["mean"]["point"] == pytest.approx(mean(every))
    assert alpha["optimality gap"]["point"] == pytest.approx(100 - mean(every))
    assert alpha["IQM"]["ci"][0] <= alpha["IQM"]["point"] <= alpha["IQM"]["ci"][1]
    assert alpha["runs_per_dataset"] == 4 and alpha["datasets"] == list(finals)

    (beta,) = result["fine_tuning"]
    assert (beta["before"]["mean"], beta["before"]["std"]) == pytest.approx((35.0, 5.0))
    assert (beta["after"]["mean"], beta["after"]["std"]) == pytest.approx((32.5, 12.5))
    assert (beta["drop"]["mean"], beta["drop"]["std"]) == pytest.approx((12.5, 2.5))  # 40 -> 25 and 30 -> 20
    assert beta["regret"]["mean"] == pytest.approx(0.6)
    assert (beta["published_before"], beta["published_after"], beta["source"]) == ("1.0", "2.0", "s2")

    text = (tmp_path / "report" / "report.md").read_text()
    assert "| hopper-medium-v2 | alpha | 4 | 39.0 ± 30.9 | 40.5 ± 33.4 | 20.0 ± 10.0 (outside), s1 |" in text
    assert "| walker2d-medium-replay-v2 | alpha | 4 | 29.5 ± 26.9 | 29.5 ± 26.9 | 40 ± 20 (inside), s1 |" in text
    assert (
        "| hopper-medium-v2 | beta | 2 | 35.0 ± 5.0 | 32.5 ± 12.5 | 12.5 ± 2.5 | 0.600 ± 0.100 | 1.0 -> 2.0, s2 |"
        in text
    )
    assert "| alpha | hopper-medium-v2, walker2d-medium-replay-v2 | 4 | 29.0 [" in text
    assert "- alpha/x/seed0: not finished" in text and "- s1: paper one, table 1" in text
    for name in ("aggregates", "performance_profile", "curves_hopper-medium-v2", "curves_walker2d-medium-replay-v2"):
        assert (tmp_path / "report" / f"{name}.png").exists()


def test_published_scores_name_their_source_and_match_the_algorithm_names_the_report_uses():
    published = json.loads((ROOT / "benchmarks/published_scores.json").read_text())
    for record in published["scores"]:
        assert record["source"] in published["sources"] and record["setting"] in ("offline", "finetune")
        assert record["algorithm"] in {*report.ALGORITHM_OF_SCRIPT.values(), "TD3"}
        assert ("score" if record["setting"] == "offline" else "after") in record
    by_key = {(r["algorithm"], r["dataset"]): r for r in published["scores"] if r["setting"] == "finetune"}
    assert (by_key[("ODT+TD3", "hopper-random")]["before"], by_key[("ODT+TD3", "hopper-random")]["after"]) == (
        2.0,
        76.13,
    )
