"""The learning curve of one run directory: the evaluation score at every evaluation, as a PNG.

    python benchmarks/plot_run.py runs/iql-finetune/<dataset>/<run> --output curve.png

Plots `eval/normalized_score_mean` (or `eval/return_mean` where the env has no reference scores)
against the step, with its std over the evaluation episodes as a band. Several run directories
(seeds) give one line each.
"""

import argparse
import json
from pathlib import Path
from typing import List, Tuple

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def evaluations(run_dir: Path) -> Tuple[str, List[Tuple[int, float, float]]]:
    """(metric name, [(step, mean, std)]) from a run's metrics.jsonl."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    key = "normalized_score" if any("eval/normalized_score_mean" in row for row in rows) else "return"
    points = [
        (row["step"], row[f"eval/{key}_mean"], row[f"eval/{key}_std"]) for row in rows if f"eval/{key}_mean" in row
    ]
    return key, points


def plot(run_dirs: List[Path], output: Path, title: str = "") -> None:
    figure, axes = plt.subplots(figsize=(6, 3.6))
    for run_dir in run_dirs:
        key, points = evaluations(run_dir)
        steps, means, stds = (np.array(column) for column in zip(*points))
        axes.plot(steps, means, marker="o", markersize=3, label=run_dir.name)
        axes.fill_between(steps, means - stds, means + stds, alpha=0.2)
    axes.set_xlabel("step (updates offline, then env steps online)")
    axes.set_ylabel("D4RL-normalised score" if key == "normalized_score" else "return")
    axes.set_title(title or run_dirs[0].parent.name)
    axes.grid(alpha=0.3)
    if len(run_dirs) > 1:
        axes.legend(fontsize=7)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    missing = [str(path) for path in args.run_dirs if not (path / "metrics.jsonl").exists()]
    if missing:
        parser.error(f"no metrics.jsonl in {', '.join(missing)}")
    plot(args.run_dirs, args.output, args.title)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
