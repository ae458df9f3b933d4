"""The report of a sweep: scores per dataset and algorithm, learning curves, rliable aggregates, fine-tuning, and
the published numbers beside ours.

    python benchmarks/report.py runs/sweeps/smoke                    # writes runs/sweeps/smoke/report/
    python benchmarks/report.py runs/sweeps/cpu --reps 2000 --output reports/cpu

Reads <sweep>/sweep.json (written by benchmarks/sweep.py) and the directory of each finished run (summary.json,
metrics.jsonl, config.yaml); writes report.md, report.json and PNG figures. An "algorithm" is a sweep entry, a
"dataset" its dataset tag. The score of a run is its D4RL-normalised evaluation score (eval/normalized_score_mean;
DT evaluates once per target return: the first target of its config counts); "final" is the last evaluation, "best"
the highest, each as mean ± std over seeds (numpy's std, ddof 0). The aggregates over datasets are rliable's
(Agarwal et al. 2021): IQM, mean, median and optimality gap (threshold 100) of the final scores with 95% stratified
bootstrap confidence intervals, and a performance profile. Fine-tuning runs (algorithms/finetune/) add the score
before fine-tuning (the offline or pretrained evaluation), after it, the largest drop below the before score at an
evaluation during fine-tuning, and the final eval/regret. Published numbers come from
benchmarks/published_scores.json, matched by algorithm and dataset name (the tag without its -v<N> suffix, unless
the sweep names them).
"""

import argparse
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import yaml
from rliable import library as rly
from rliable import metrics, plot_utils

from common import ROOT

PUBLISHED = ROOT / "benchmarks" / "published_scores.json"
ALGORITHM_OF_SCRIPT = {  # the names published_scores.json uses
    "algorithms/offline/dt.py": "DT",
    "algorithms/offline/cql.py": "CQL",
    "algorithms/offline/iql.py": "IQL",
    "algorithms/finetune/odt.py": "ODT",
    "algorithms/finetune/odt_td3.py": "ODT+TD3",
    "algorithms/finetune/cql.py": "CQL",
    "algorithms/finetune/cal_ql.py": "Cal-QL",
    "algorithms/finetune/iql.py": "IQL",
    "algorithms/online/sac.py": "SAC",
}
AGGREGATES = ("IQM", "mean", "median", "optimality gap")
OPTIMALITY_THRESHOLD = 100.0  # normalised scores: 100 is the expert's


@dataclass
class RunResult:
    entry: str
    tag: str
    seed: int
    script: str
    curve: List[Tuple[int, float]]  # (step, normalised score) of each evaluation
    summary: Dict[str, Any]
    config: Dict[str, Any]
    published_algorithm: str
    published_dataset: str

    @property
    def final(self) -> float:
        return self.curve[-1][1]

    @property
    def best(self) -> float:
        return max(score for _, score in self.curve)

    @property
    def setting(self) -> Optional[str]:
        """offline or finetune, as published_scores.json files the records; None for online scripts."""
        stage = Path(self.script).parent.name  # algorithms/<stage>/<algorithm>.py
        return stage if stage in ("offline", "finetune") else None

    def fine_tuning(self) -> Optional[Dict[str, Optional[float]]]:
        """Before, after, largest drop below before during fine-tuning, final regret; None if not a fine-tuning run."""
        before = self.summary.get("offline/normalized_score_mean", self.summary.get("pretrained/normalized_score_mean"))
        if self.setting != "finetune" or before is None:
            return None
        offline_end = self.summary.get("offline_steps", self.config.get("pretrain_steps", 0))
        online = [score for step, score in self.curve if step > offline_end]
        drop = max([0.0] + [before - score for score in online])
        return {"before": before, "after": self.final, "drop": drop, "regret": self.summary.get("eval/regret")}


def score_key(config: Dict[str, Any]) -> str:
    targets = config.get("target_returns")  # DT logs eval/<target>_normalized_score_mean per target return
    return f"eval/{float(targets[0]):g}_normalized_score_mean" if targets else "eval/normalized_score_mean"


def load_runs(sweep_dir: Path) -> Tuple[List[RunResult], List[str]]:
    """The finished runs with a normalised score, and a line for each run left out."""
    manifest_path = sweep_dir / "sweep.json"
    if not manifest_path.exists():
        raise SystemExit(f"error: {manifest_path} not found; it is written by benchmarks/sweep.py")
    finished, left_out = [], []
    for row in json.loads(manifest_path.read_text())["runs"]:
        run_dir = sweep_dir / row["run_dir"]
        if not (run_dir / "summary.json").exists():
            left_out.append(f"{row['name']}: not finished")
            continue
        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
        key = score_key(config)
        metric_rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
        curve = [(item["step"], item[key]) for item in metric_rows if key in item]
        if not curve:
            left_out.append(f"{row['name']}: no {key} in metrics.jsonl (no reference scores for its env?)")
            continue
        published_algorithm = row.get("published_algorithm") or ALGORITHM_OF_SCRIPT.get(row["script"], row["entry"])
        published_dataset = row.get("published_dataset") or re.sub(r"-v\d+$", "", row["tag"])
        summary = json.loads((run_dir / "summary.json").read_text())
        names = (row["entry"], row["tag"], row["seed"], row["script"])
        finished.append(RunResult(*names, curve, summary, config, published_algorithm, published_dataset))
    return finished, left_out


def group(runs: Sequence[RunResult]) -> Dict[Tuple[str, str], List[RunResult]]:
    """(dataset tag, entry) -> its runs by seed, datasets sorted, entries in sweep order."""
    groups: Dict[Tuple[str, str], List[RunResult]] = {}
    for run in runs:
        groups.setdefault((run.tag, run.entry), []).append(run)
    entries = list(dict.fromkeys(run.entry for run in runs))
    order = sorted(groups, key=lambda key: (key[0], entries.index(key[1])))
    return {key: sorted(groups[key], key=lambda run: run.seed) for key in order}


def mean_std(values: Sequence[float]) -> Dict[str, float]:
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


def fmt(stats: Optional[Dict[str, float]], digits: int = 1) -> str:
    return "n/a" if stats is None else f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def find_published(records: List[Dict[str, Any]], run: RunResult) -> Optional[Dict[str, Any]]:
    for record in records:
        same = (record["setting"], record["algorithm"], record["dataset"])
        if same == (run.setting, run.published_algorithm, run.published_dataset):
            return record
    return None


def versus(ours: float, record: Optional[Dict[str, Any]], field: str) -> Tuple[str, Optional[bool]]:
    """The published value as a table cell ("" if none), marked inside or outside when a std is published so that
    our mean can be checked against its mean ± std; and that check (None: no std)."""
    if record is None or record.get(field) is None:
        return "", None
    value, std = record[field], record.get(f"{field}_std")
    if std is None:
        return str(value), None
    within = bool(abs(ours - value) <= std)
    return f"{value} ± {std} ({'inside' if within else 'outside'})", within


def score_table(groups: Dict[Tuple[str, str], List[RunResult]], records: List[Dict[str, Any]]) -> List[Dict]:
    rows = []
    for (tag, entry), runs in groups.items():
        final, best = mean_std([run.final for run in runs]), mean_std([run.best for run in runs])
        record = find_published(records, runs[0])
        published, within = versus(final["mean"], record, "score" if runs[0].setting == "offline" else "after")
        row = dict(dataset=tag, algorithm=entry, seeds=[run.seed for run in runs], final=final, best=best)
        row.update(final_per_seed=[run.final for run in runs], published=published, within_published=within)
        rows.append({**row, "source": record["source"] if published else None})
    return rows


def fine_tuning_table(groups: Dict[Tuple[str, str], List[RunResult]], records: List[Dict[str, Any]]) -> List[Dict]:
    rows = []
    for (tag, entry), runs in groups.items():
        numbers = [run.fine_tuning() for run in runs]
        if any(item is None for item in numbers):
            continue
        row: Dict[str, Any] = dict(dataset=tag, algorithm=entry, seeds=[run.seed for run in runs])
        for field in ("before", "after", "drop", "regret"):
            values = [item[field] for item in numbers if item[field] is not None]
            row[field] = mean_std(values) if len(values) == len(numbers) else None
        record = find_published(records, runs[0])
        before, before_within = versus(row["before"]["mean"], record, "before")
        after, after_within = versus(row["after"]["mean"], record, "after")
        row.update(published_before=before, published_after=after, source=record["source"] if record else None)
        rows.append({**row, "before_within_published": before_within, "after_within_published": after_within})
    return rows


def score_matrices(groups: Dict[Tuple[str, str], List[RunResult]]) -> Dict[str, Dict[str, Any]]:
    """Per algorithm, rliable's (runs x datasets) matrix of final scores; every dataset keeps as many seeds as the
    one with fewest finished (the lowest seeds)."""
    by_entry: Dict[str, Dict[str, List[float]]] = {}
    for (tag, entry), runs in groups.items():
        by_entry.setdefault(entry, {})[tag] = [run.final for run in runs]
    matrices = {}
    for entry, per_dataset in by_entry.items():
        runs = min(len(scores) for scores in per_dataset.values())
        matrix = np.array([scores[:runs] for scores in per_dataset.values()]).T
        matrices[entry] = {"datasets": list(per_dataset), "runs": runs, "scores": matrix}
    return matrices


def aggregate(scores: np.ndarray) -> np.ndarray:
    return np.array(
        [
            metrics.aggregate_iqm(scores),
            metrics.aggregate_mean(scores),
            metrics.aggregate_median(scores),
            metrics.aggregate_optimality_gap(scores, gamma=OPTIMALITY_THRESHOLD),
        ]
    )


def aggregates(matrices: Dict[str, Dict[str, Any]], reps: int, seed: int) -> Dict[str, Dict[str, Any]]:
    score_dict = {entry: item["scores"] for entry, item in matrices.items()}
    with warnings.catch_warnings():  # arch deprecates the RandomState that rliable hands it; the CIs stay reproducible
        warnings.filterwarnings("ignore", message="random_state is deprecated", category=FutureWarning)
        points, intervals = rly.get_interval_estimates(
            score_dict, aggregate, reps=reps, random_state=np.random.RandomState(seed)
        )
    result = {}
    for entry, item in matrices.items():
        values = {
            name: {"point": float(points[entry][index]), "ci": [float(v) for v in intervals[entry][:, index]]}
            for index, name in enumerate(AGGREGATES)
        }
        result[entry] = {"datasets": item["datasets"], "runs_per_dataset": item["runs"], **values}
    return result


def plot_curves(groups: Dict[Tuple[str, str], List[RunResult]], output: Path) -> List[Path]:
    """One figure per dataset: each algorithm's mean score over seeds with a ± std band. Seeds evaluate at
    slightly different steps in the online phase, so each curve is interpolated onto the union of their steps."""
    paths = []
    for tag in dict.fromkeys(tag for tag, _ in groups):
        figure, axis = plt.subplots(figsize=(7, 4))
        for (other, entry), runs in groups.items():
            if other != tag:
                continue
            start = max(run.curve[0][0] for run in runs)
            end = min(run.curve[-1][0] for run in runs)
            steps = np.array(sorted({step for run in runs for step, _ in run.curve if start <= step <= end}))
            values = np.array([np.interp(steps, *zip(*run.curve)) for run in runs])
            mean, std = values.mean(0), values.std(0)
            axis.plot(steps, mean, marker="o", markersize=3, label=f"{entry} (n={len(runs)})")
            axis.fill_between(steps, mean - std, mean + std, alpha=0.2)
        axis.set(title=tag, xlabel="step (as each script logs it)", ylabel="normalised score")
        axis.legend(fontsize=8)
        figure.tight_layout()
        paths.append(output / f"curves_{re.sub(r'[^A-Za-z0-9_.+-]', '_', tag)}.png")
        figure.savefig(paths[-1], dpi=110)
        plt.close(figure)
    return paths


def plot_aggregates(
    matrices: Dict[str, Dict[str, Any]], table: Dict[str, Dict[str, Any]], reps: int, output: Path
) -> List[Path]:
    entries = list(matrices)
    points = {entry: np.array([table[entry][name]["point"] for name in AGGREGATES]) for entry in entries}
    intervals = {entry: np.array([table[entry][name]["ci"] for name in AGGREGATES]).T for entry in entries}
    figure, _ = plot_utils.plot_interval_estimates(
        points, intervals, metric_names=list(AGGREGATES), algorithms=entries, xlabel="normalised score"
    )
    figure.savefig(output / "aggregates.png", dpi=110, bbox_inches="tight")
    plt.close(figure)

    every = np.concatenate([item["scores"].ravel() for item in matrices.values()])
    taus = np.linspace(min(0.0, every.min()), max(OPTIMALITY_THRESHOLD, every.max()), 101)
    score_dict = {entry: item["scores"] for entry, item in matrices.items()}
    profiles, profile_cis = rly.create_performance_profile(score_dict, taus, reps=reps)
    figure, axis = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(
        profiles, taus, performance_profile_cis=profile_cis, ax=axis, xlabel=r"normalised score ($\tau$)"
    )
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(output / "performance_profile.png", dpi=110)
    plt.close(figure)
    return [output / "aggregates.png", output / "performance_profile.png"]


def markdown(
    sweep_dir: Path,
    left_out: List[str],
    scores: List[Dict],
    fine_tuning: List[Dict],
    aggregate_table: Dict[str, Dict[str, Any]],
    reps: int,
    sources: Dict[str, str],
    figures: List[Path],
) -> str:
    lines = [f"# Sweep report: {sweep_dir}", ""]
    lines += ["D4RL-normalised scores (0: random, 100: expert), mean ± std over seeds (ddof 0). Final: the last"]
    lines += ["evaluation; best: the highest. Published: benchmarks/published_scores.json (sources below), marked"]
    lines += ["inside or outside where a std is published (our mean against the published mean ± std).", ""]
    if left_out:
        lines += ["Left out:", "", *[f"- {line}" for line in left_out], ""]
    lines += ["## Scores per dataset", "", "| dataset | algorithm | seeds | final | best | published final |"]
    lines += ["|---|---|---|---|---|---|"]
    for row in scores:
        published = f"{row['published']}, {row['source']}" if row["published"] else ""
        cells = [row["dataset"], row["algorithm"], str(len(row["seeds"])), fmt(row["final"]), fmt(row["best"])]
        lines.append("| " + " | ".join([*cells, published]) + " |")
    if fine_tuning:
        lines += ["", "## Fine-tuning", ""]
        lines += ["Before: the evaluation after the offline (pretraining) phase; after: the final evaluation; drop:"]
        lines += ["the largest fall below the before score at an evaluation during fine-tuning (0: none).", ""]
        lines += [
            "| dataset | algorithm | seeds | before | after | largest drop | final regret | published before -> after |"
        ]
        lines += ["|---|---|---|---|---|---|---|---|"]
        for row in fine_tuning:
            published = ""
            if row["published_after"]:
                published = f"{row['published_before'] or '?'} -> {row['published_after']}, {row['source']}"
            cells = [row["dataset"], row["algorithm"], str(len(row["seeds"])), fmt(row["before"]), fmt(row["after"])]
            cells += [fmt(row["drop"]), fmt(row["regret"], 3), published]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Aggregates over datasets (rliable)", ""]
    lines += [f"Final scores; 95% stratified bootstrap confidence intervals, {reps} replications; optimality gap"]
    lines += [f"below {OPTIMALITY_THRESHOLD:g}. Each algorithm over its own datasets.", ""]
    lines += ["| algorithm | datasets | runs per dataset | " + " | ".join(AGGREGATES) + " |"]
    lines += ["|---|---|---|" + "---|" * len(AGGREGATES)]
    for entry, row in aggregate_table.items():
        cells = [entry, ", ".join(row["datasets"]), str(row["runs_per_dataset"])]
        cells += [
            f"{row[name]['point']:.1f} [{row[name]['ci'][0]:.1f}, {row[name]['ci'][1]:.1f}]" for name in AGGREGATES
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *[f"![{path.stem}]({path.name})" for path in figures if not path.stem.startswith("curves_")]]
    lines += ["", "## Learning curves", "", "Mean over seeds with a ± std band.", ""]
    lines += [f"![{path.stem}]({path.name})" for path in figures if path.stem.startswith("curves_")]
    used = sorted({row["source"] for row in [*scores, *fine_tuning] if row.get("source")})
    if used:
        lines += ["", "## Sources", "", *[f"- {key}: {sources[key]}" for key in used]]
    return "\n".join(lines) + "\n"


def write_report(sweep_dir: Path, output: Path, reps: int = 10_000, published: Path = PUBLISHED, seed: int = 0) -> Dict:
    """Writes report.md, report.json and the figures into `output`; returns what report.json holds."""
    matplotlib.use("Agg")  # files only, no display
    runs, left_out = load_runs(sweep_dir)
    if not runs:
        raise SystemExit(f"error: no finished run with a normalised score in {sweep_dir}")
    output.mkdir(parents=True, exist_ok=True)
    reference = json.loads(published.read_text())
    groups = group(runs)
    scores, fine_tuning = score_table(groups, reference["scores"]), fine_tuning_table(groups, reference["scores"])
    matrices = score_matrices(groups)
    aggregate_table = aggregates(matrices, reps, seed)
    figures = plot_aggregates(matrices, aggregate_table, reps, output) + plot_curves(groups, output)
    text = markdown(sweep_dir, left_out, scores, fine_tuning, aggregate_table, reps, reference["sources"], figures)
    (output / "report.md").write_text(text)
    report = dict(left_out=left_out, scores=scores, fine_tuning=fine_tuning, aggregates=aggregate_table, reps=reps)
    (output / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="the sweep's output folder (with sweep.json)")
    parser.add_argument("--output", type=Path, help="where the report goes (default: <sweep_dir>/report)")
    parser.add_argument("--reps", type=int, default=10_000, help="bootstrap replications")
    parser.add_argument("--published", type=Path, default=PUBLISHED, help="published scores (JSON)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    args = parser.parse_args(argv)
    output = args.output or args.sweep_dir / "report"
    write_report(args.sweep_dir, output, args.reps, args.published, args.seed)
    print(f"wrote {output / 'report.md'}")


if __name__ == "__main__":
    main()
