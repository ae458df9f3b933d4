"""benchmarks/behaviour_training.py: a run's steps, wall time and score thresholds, read from its metrics."""

import json

from conftest import run_cli


def test_the_table_reads_steps_time_and_thresholds_from_the_metrics(tmp_path):
    run = tmp_path / "runs" / "walker2d"
    run.mkdir(parents=True)
    scores = {10_000: 5.0, 20_000: 35.0, 30_000: 81.0, 40_000: 60.0}
    rows = []
    for step, score in scores.items():
        rows.append({"step": step, "online/env_steps": step, "online/wall_time_s": step / 50})
        rows.append({"step": step, "eval/normalized_score_mean": score, "eval/normalized_score_std": 1.0})
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    policies = tmp_path / "policies"
    policies.mkdir()
    card = {"training": {"env_steps": 20_000, "run_eval": {"eval/normalized_score_mean": 35.0}}}
    card["evaluation"] = {"sampled_actions": {"normalized_score": 33.3}}
    (policies / "walker2d-medium.json").write_text(json.dumps(card))
    card["training"]["run_eval"]["eval/normalized_score_mean"] = 99.0  # another run's snapshot at step 20k
    (policies / "walker2d-expert.json").write_text(json.dumps(card))
    output = tmp_path / "training.md"
    result = run_cli(
        "benchmarks/behaviour_training.py",
        *("--runs", str(tmp_path / "runs"), "--output", str(output), "--policy_dir", str(policies)),
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in output.read_text().splitlines() if line.startswith("| walker2d |"))
    cells = [cell.strip() for cell in row.split("|")[2:-1]]
    assert cells == ["40,000", "0.22", "50.0", "60.0", "81.0 (30,000)", "20,000", "30,000", "medium: step 20,000, 33.3"]
    assert output.with_suffix(".png").stat().st_size > 0


def test_several_run_folders_give_a_row_each_with_its_own_exports(tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    for folder, score in (("first", 35.0), ("second", 44.0)):
        run = tmp_path / folder / "ant"
        run.mkdir(parents=True)
        rows = [{"step": 20_000, "online/env_steps": 20_000, "online/wall_time_s": 400.0}]
        rows.append({"step": 20_000, "eval/normalized_score_mean": score, "eval/normalized_score_std": 1.0})
        (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    card = {"training": {"env_steps": 20_000, "run_eval": {"eval/normalized_score_mean": 35.0}}}
    card["evaluation"] = {"sampled_actions": {"normalized_score": 33.3}}
    (policies / "ant-medium.json").write_text(json.dumps(card))
    output = tmp_path / "training.md"
    folders = (str(tmp_path / "first"), str(tmp_path / "second"))
    result = run_cli(
        "benchmarks/behaviour_training.py", "--runs", *folders, "--output", str(output), "--policy_dir", str(policies)
    )
    assert result.returncode == 0, result.stderr
    lines = [line.split("|") for line in output.read_text().splitlines() if line.startswith("| ant")]
    rows = {cells[1].strip(): cells[-2].strip() for cells in lines}
    assert rows["ant (first)"] == "medium: step 20,000, 33.3" and rows["ant (second)"] == "none"
    assert f"--runs {folders[0]} {folders[1]} " in output.read_text()


def test_no_runs_is_a_clear_error(tmp_path):
    result = run_cli("benchmarks/behaviour_training.py", "--runs", str(tmp_path), "--output", str(tmp_path / "t.md"))
    assert result.returncode == 2 and "train with algorithms/online/sac.py first" in result.stderr
    assert not (tmp_path / "t.md").exists()
