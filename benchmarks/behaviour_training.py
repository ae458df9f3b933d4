"""How far the behaviour-policy SAC runs have got: steps, wall time and score, per domain.

    python benchmarks/behaviour_training.py --runs runs/behaviour --output benchmarks/results/behaviour_training.md

For each run directory <runs>/<domain> of algorithms/online/sac.py (several --runs folders: one row per
run, labelled "<domain> (<folder>)"): the env steps done, the wall time
over all its sessions (resumes included), the steps per second, the latest and the best evaluation
score, and the first step that reached D4RL's medium band (normalised 30) and the expert target
(normalised 80). Beside them, the policies exported to d4rl_compat/policies/ from that run, with
their 100-episode scores from the cards. A run's directory can be lost with its machine; its
metrics.jsonl and config.yaml are small, so they are kept under benchmarks/results/behaviour_runs/.
Also writes the score curves as a PNG next to the table.
"""

import argparse
import json
from pathlib import Path
from typing import List, Optional, Tuple

from common import ROOT
from plot_run import evaluations

MEDIUM_BAND, EXPERT_TARGET = (30.0, 50.0), 80.0


def progress(run: Path) -> dict:
    """The run's steps, wall time and evaluation scores, from the last row of each kind in metrics.jsonl."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    timed = [row for row in rows if "online/wall_time_s" in row]
    _, points = evaluations(run)
    first = lambda threshold: next((step for step, score, _ in points if score >= threshold), None)  # noqa: E731
    best = max(points, key=lambda point: point[1], default=None)
    return {
        "env_steps": timed[-1]["online/env_steps"] if timed else 0,
        "wall_time_s": timed[-1]["online/wall_time_s"] if timed else 0.0,
        "points": points,
        "latest": points[-1][1] if points else None,
        "best": (best[1], best[0]) if best else None,
        "first_medium": first(MEDIUM_BAND[0]),
        "first_expert": first(EXPERT_TARGET),
    }


def exported(domain: str, policy_dir: Path, points: List[Tuple[int, float, float]]) -> List[str]:
    """'level: step N, score S' for each policy card of this domain that this run trained: the card's own
    record of the run's evaluation at its step must be this run's (a domain may have several runs)."""
    scores, found = {step: score for step, score, _ in points}, []
    for card_path in sorted(policy_dir.glob(f"{domain}-*.json")):
        card = json.loads(card_path.read_text())
        step, run_eval = card["training"]["env_steps"], card["training"].get("run_eval", {})
        if step not in scores or run_eval.get("eval/normalized_score_mean") != scores[step]:
            continue
        score = card["evaluation"]["sampled_actions"]["normalized_score"]
        found.append(f"{card_path.stem.removeprefix(domain + '-')}: step {step:,}, {score:.1f}")
    return found


def cell(value: Optional[float], digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(runs: List[Tuple[str, str, dict]], policy_dir: Path) -> List[str]:
    lines = [
        "| domain | env steps | wall time (h) | env steps/s | latest score | best score (at step) "
        "| first step >= 30 | first step >= 80 | exported (100 episodes, sampled actions) |",
        "|---" * 9 + "|",
    ]
    for label, domain, run in runs:
        best = "-" if run["best"] is None else f"{run['best'][0]:.1f} ({run['best'][1]:,})"
        speed = run["env_steps"] / run["wall_time_s"] if run["wall_time_s"] else None
        cells = [
            f"{run['env_steps']:,}",
            cell(run["wall_time_s"] / 3600, 2),
            cell(speed),
            cell(run["latest"]),
            best,
            cell(run["first_medium"], 0),
            cell(run["first_expert"], 0),
            "; ".join(exported(domain, policy_dir, run["points"])) or "none",
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def plot(runs: List[Tuple[str, str, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    axis.axhspan(*MEDIUM_BAND, color="tab:gray", alpha=0.15, label="medium band (30-50)")
    axis.axhline(EXPERT_TARGET, color="tab:gray", linestyle="--", label="expert target (80)")
    for label, _, run in runs:
        steps, scores = zip(*[(step, score) for step, score, _ in run["points"]]) if run["points"] else ((), ())
        axis.plot(steps, scores, label=label)
    axis.set_xlabel("env steps")
    axis.set_ylabel("normalised score (run's evaluation)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, nargs="+", default=[Path("runs/behaviour")])
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/behaviour_training.md"))
    parser.add_argument("--policy_dir", type=Path, default=ROOT / "d4rl_compat" / "policies")
    parser.add_argument("--notes", type=Path, default=None, help="markdown appended after the table")
    args = parser.parse_args()
    runs = []
    for folder in args.runs:
        for path in sorted(folder.glob("*/metrics.jsonl")):
            domain = path.parent.name
            label = domain if len(args.runs) == 1 else f"{domain} ({folder.name})"
            runs.append((label, domain, progress(path.parent)))
    if not runs:
        folders = " ".join(map(str, args.runs))
        parser.error(f"no <domain>/metrics.jsonl under {folders}: train with algorithms/online/sac.py first")
    figure = args.output.with_suffix(".png")
    plot(runs, figure)
    text = ["# Behaviour-policy training (algorithms/online/sac.py)", "", "Command:", "", "```"]
    folders = " ".join(map(str, args.runs))
    text += [f"python benchmarks/behaviour_training.py --runs {folders} --output {args.output}", "```", ""]
    text += ["Scores are the runs' own evaluations (their `n_episodes` each, 10 in the behaviour configs);"]
    text += ["the exported policies' are over 100 episodes.", ""]
    text += table(runs, args.policy_dir) + ["", f"![score curves]({figure.name})"]
    if args.notes:
        text += ["", args.notes.read_text().strip()]
    args.output.write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
