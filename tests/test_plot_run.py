"""benchmarks/plot_run.py: the evaluation rows of a run become a curve."""

import json

from conftest import run_cli


def test_a_run_with_evaluations_is_plotted(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rows = [{"step": 10, "train/loss": 1.0}, {"step": 10, "eval/normalized_score_mean": 5.0}]
    rows[1]["eval/normalized_score_std"] = 1.0
    rows.append({"step": 20, "eval/normalized_score_mean": 9.0, "eval/normalized_score_std": 2.0})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = run_cli("benchmarks/plot_run.py", str(run_dir), "--output", str(tmp_path / "curve.png"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "curve.png").read_bytes()[:4] == b"\x89PNG"
    missing = run_cli("benchmarks/plot_run.py", str(tmp_path / "absent"), "--output", str(tmp_path / "x.png"))
    assert missing.returncode == 2 and "no metrics.jsonl" in missing.stderr
