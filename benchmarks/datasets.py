"""Statistics of the generated D4RL-style datasets next to the published statistics of D4RL's files.

    python -m d4rl_compat.generate --suite true --output_dir data/generated
    python benchmarks/datasets.py --folder data/generated --output benchmarks/results/datasets.md

Per file: transitions, episodes, episode return mean / std / min / max and the D4RL-normalised score
of the mean return; for the policy levels also the policy's own 100-episode evaluation from its card.
The published numbers come from benchmarks/results/d4rl_published_stats.json, each with its source.
"""

import argparse
import json
from pathlib import Path

import h5py
import numpy as np

from common import ROOT

PUBLISHED = ROOT / "benchmarks" / "results" / "d4rl_published_stats.json"
COLUMNS = ("transitions", "episodes", "return_mean", "return_std", "return_min", "return_max")


def file_stats(path: Path) -> dict:
    with h5py.File(path, "r") as file:
        rewards = file["rewards"][()].astype(np.float64)
        ends = file["terminals"][()].astype(bool) | file["timeouts"][()].astype(bool)
        meta = {key: value[()] for key, value in file["metadata"].items()}
    meta = {key: value.decode() if isinstance(value, bytes) else value for key, value in meta.items()}
    ends[-1] = True  # the file's end closes its last episode
    starts = np.concatenate([[0], np.flatnonzero(ends)[:-1] + 1])
    returns = np.add.reduceat(rewards, starts)
    stats = {"transitions": len(rewards), "episodes": len(returns), "return_mean": returns.mean()}
    stats.update(return_std=returns.std(), return_min=returns.min(), return_max=returns.max())
    low, high = meta.get("ref_min_score"), meta.get("ref_max_score")
    if low is not None and high is not None:
        stats["normalized_score"] = 100.0 * (returns.mean() - low) / (high - low)
    card = json.loads(meta.get("policy_card", "{}") or "{}")
    if isinstance(card, dict) and "evaluation" in card:
        stats["policy_evaluation"] = card["evaluation"]["sampled_actions"]
    return stats


def number(value) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default="data/generated")
    parser.add_argument("--output", default="benchmarks/results/datasets.md")
    parser.add_argument("--suite_time", default=None, help="the suite's wall time on this machine, to record")
    parser.add_argument("--made_by", default="python -m d4rl_compat.generate --suite true --output_dir data/generated")
    parser.add_argument("--notes", type=Path, default=None, help="markdown appended after the tables")
    args = parser.parse_args()
    published = json.loads(PUBLISHED.read_text()) if PUBLISHED.exists() else {}
    lines = ["| dataset | source | " + " | ".join(COLUMNS) + " | normalised score of the mean |", "|---" * 9 + "|"]
    policies, shown = [], []
    for path in sorted(Path(args.folder).glob("*.hdf5")):
        stats, name = file_stats(path), path.stem if path.stem[-3:-1] == "-v" else f"{path.stem}-v2"
        cells = [number(stats[key]) for key in COLUMNS] + [number(stats.get("normalized_score"))]
        lines.append(f"| {path.stem} | generated | " + " | ".join(cells) + " |")
        reference = published.get(name)
        if reference:
            shown.append(reference)
            cells = [number(reference.get(key)) for key in COLUMNS] + ["-"]
            lines.append(f"| {name} | D4RL, published | " + " | ".join(cells) + " |")
        if "policy_evaluation" in stats:
            evaluation = stats["policy_evaluation"]
            policies.append(
                f"| {path.stem} | {evaluation['return_mean']:.1f} ± {evaluation['return_std']:.1f} | "
                f"{number(evaluation.get('normalized_score'))} |"
            )
    text = ["# Generated datasets beside D4RL's", "", "Commands:", "", "```"]
    text += [args.made_by]
    text += [f"python benchmarks/datasets.py --folder {args.folder} --output {args.output}", "```", ""]
    if args.suite_time:
        text += [f"The suite took {args.suite_time} on this machine (2 CPU cores).", ""]
    text += lines
    if policies:
        text += ["", "The behaviour policies' own evaluation (sampled actions, 100 episodes, from their cards):", ""]
        text += ["| dataset | return | normalised |", "|---|---|---|", *policies]
    sources = sorted({value["source"] for value in shown if value.get("source")})
    if sources:
        text += ["", "Published statistics from:", "", *[f"- {source}" for source in sources]]
    if args.notes:
        text += ["", args.notes.read_text().strip()]
    Path(args.output).write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
