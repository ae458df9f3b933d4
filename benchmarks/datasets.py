"""Statistics of the generated D4RL-style datasets next to the published statistics of D4RL's files.

    python -m d4rl_compat.generate --suite true --output_dir data/generated
    python benchmarks/datasets.py --folder data/generated --output benchmarks/results/datasets.md

Per file: transitions, episodes, episode return mean / std / min / max and the D4RL-normalised score
of the mean return; for the policy levels also the policy's own 100-episode evaluation from its card.
AntMaze files are read as D4RL's are: episodes end on time only (terminals mark the steps at the goal),
a return counts the steps within 0.5 of the evaluation goal, and the score is the share of episodes that
reach it (an evaluation episode ends there with return 1).
The published numbers come from benchmarks/results/d4rl_published_stats.json, each with its source.

Each file's statistics go into a record (benchmarks/results/datasets.json) with the command that made
it and the day it was measured, and the table shows the whole record. So a file measured in an earlier
session keeps its row when it is not regenerated, e.g. a replay level whose SAC run is gone.
"""

import argparse
import datetime
import json
import sys
from pathlib import Path
from typing import Dict, Optional

import h5py
import numpy as np

from common import ROOT

PUBLISHED = ROOT / "benchmarks" / "results" / "d4rl_published_stats.json"
RECORD = ROOT / "benchmarks" / "results" / "datasets.json"  # every file measured so far, by file name
COLUMNS = ("transitions", "episodes", "return_mean", "return_std", "return_min", "return_max")


def file_stats(path: Path) -> dict:
    with h5py.File(path, "r") as file:
        rewards = file["rewards"][()].astype(np.float64)
        ends = file["terminals"][()].astype(bool) | file["timeouts"][()].astype(bool)
        meta = {key: value[()] for key, value in file["metadata"].items()}
        timeouts = file["timeouts"][()].astype(bool)
        goals = file["infos/goal"][()] if "infos/goal" in file and "next_observations" in file else None
        positions = file["next_observations"][:, :2] if goals is not None else None
    meta = {key: value.decode() if isinstance(value, bytes) else value for key, value in meta.items()}
    antmaze = str(meta.get("dataset_name", "")).startswith("antmaze")
    if antmaze:  # D4RL's antmaze terminals mark the steps at the goal; its episodes end on time only
        ends = timeouts
    ends[-1] = True  # the file's end closes its last episode
    starts = np.concatenate([[0], np.flatnonzero(ends)[:-1] + 1])
    returns = np.add.reduceat(rewards, starts)
    stats = {"transitions": len(rewards), "episodes": len(returns), "return_mean": returns.mean()}
    stats.update(return_std=returns.std(), return_min=returns.min(), return_max=returns.max())
    low, high = meta.get("ref_min_score"), meta.get("ref_max_score")
    if antmaze:  # an evaluation episode scores 1 when it reaches the goal, where it ends
        stats["normalized_score"] = 100.0 * np.mean(returns > 0)
        if goals is not None:  # the episode's own goal, which play and diverse data draw afresh
            at_goal = (np.linalg.norm(positions - goals, axis=1) <= 0.5).astype(np.float64)
            stats["own_goal_reached"] = 100.0 * np.mean(np.add.reduceat(at_goal, starts) > 0)
    elif low is not None and high is not None:
        stats["normalized_score"] = 100.0 * (returns.mean() - low) / (high - low)
    card = json.loads(meta.get("policy_card", "{}") or "{}")
    if isinstance(card, dict) and "evaluation" in card and not antmaze:  # an AntMaze card scores the ant on Ant
        stats["policy_evaluation"] = card["evaluation"]["sampled_actions"]
    return stats


def number(value) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:.1f}"


def update_record(record: Path, folder: Path, made_by: str, suite_time: Optional[str]) -> Dict[str, dict]:
    """The record with every file of `folder` measured into it: a file measured again replaces its entry,
    the others stay as they were recorded (their files may be gone, e.g. replay levels whose run is not here)."""
    entries = json.loads(record.read_text()) if record.exists() else {}
    measured = {path.stem: file_stats(path) for path in sorted(folder.glob("*.hdf5"))} if folder.is_dir() else {}
    if not measured and not entries:
        print(
            f"error: no .hdf5 files in {folder} and no record at {record}: generate the datasets first", file=sys.stderr
        )
        sys.exit(2)
    when = datetime.date.today().isoformat()
    for stem, stats in measured.items():
        entries[stem] = {**stats, "made_by": made_by, "folder": str(folder), "measured": when}
        entries[stem].update({"suite_time": suite_time} if suite_time else {})
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(dict(sorted(entries.items())), indent=1) + "\n")
    return entries


def shown_path(path: Path) -> str:
    return str(path.resolve().relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else str(path)


def render(entries: Dict[str, dict], published: Dict[str, dict], record: Path, notes: Optional[Path]) -> str:
    lines = ["| dataset | source | " + " | ".join(COLUMNS) + " | normalised score of the mean |", "|---" * 9 + "|"]
    policies, shown, goal_rows = [], [], []
    for stem, stats in sorted(entries.items()):
        name = stem if stem[-3:-1] == "-v" else f"{stem}-v2"
        cells = [number(stats[key]) for key in COLUMNS] + [number(stats.get("normalized_score"))]
        lines.append(f"| {stem} | generated ({stats['measured']}) | " + " | ".join(cells) + " |")
        reference = published.get(name)
        if reference:
            shown.append(reference)
            cells = [number(reference.get(key)) for key in COLUMNS] + ["-"]
            lines.append(f"| {name} | D4RL, published | " + " | ".join(cells) + " |")
        if "own_goal_reached" in stats:
            goal_rows.append(f"| {stem} | {stats['own_goal_reached']:.1f}% | {stats['normalized_score']:.1f}% |")
        if "policy_evaluation" in stats:
            evaluation = stats["policy_evaluation"]
            policies.append(
                f"| {stem} | {evaluation['return_mean']:.1f} ± {evaluation['return_std']:.1f} | "
                f"{number(evaluation.get('normalized_score'))} |"
            )
    text = [
        "# Generated datasets beside D4RL's",
        "",
        "Commands (each row keeps the date its file was measured):",
        "",
        "```",
    ]
    for made_by, folder in sorted({(stats["made_by"], stats["folder"]) for stats in entries.values()}):
        text += [made_by, f"python benchmarks/datasets.py --folder {folder} --record {shown_path(record)}"]
    text += ["```"]
    times = sorted({(stats["measured"], stats["suite_time"]) for stats in entries.values() if "suite_time" in stats})
    text += [""] + [f"The suite of {day} took {spent} on this machine (2 CPU cores)." for day, spent in times]
    text += [""] + lines
    if policies:
        text += ["", "The behaviour policies' own evaluation (sampled actions, 100 episodes, from their cards):", ""]
        text += ["| dataset | return | normalised |", "|---|---|---|", *policies]
    if goal_rows:
        text += ["", "AntMaze episodes that come within 0.5 of their own goal and of the evaluation goal:", ""]
        text += ["| dataset | own goal | evaluation goal |", "|---|---|---|", *goal_rows]
    sources = sorted({value["source"] for value in shown if value.get("source")})
    if sources:
        text += ["", "Published statistics from:", "", *[f"- {source}" for source in sources]]
    if notes:
        text += ["", notes.read_text().strip()]
    return "\n".join(text) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", type=Path, default=Path("data/generated"))
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/datasets.md"))
    parser.add_argument("--record", type=Path, default=RECORD, help="the measured files' statistics, kept across runs")
    parser.add_argument("--suite_time", default=None, help="the suite's wall time on this machine, to record")
    parser.add_argument("--made_by", default="python -m d4rl_compat.generate --suite true --output_dir data/generated")
    parser.add_argument("--notes", type=Path, default=None, help="markdown appended after the tables")
    args = parser.parse_args()
    published = json.loads(PUBLISHED.read_text()) if PUBLISHED.exists() else {}
    entries = update_record(args.record, args.folder, args.made_by, args.suite_time)
    text = render(entries, published, args.record, args.notes)
    args.output.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
