"""How far the AntMaze controller gets: the planner-driven ant's success rate on each evaluation maze.

    python benchmarks/antmaze_success.py --policies d4rl_compat/policies/ant-expert.pt \
        --episodes 100 --output benchmarks/results/antmaze_success.md

For each controller (a sac.py snapshot on d4rl_compat.antmaze:AntGoal-v0, or a locomotion policy of D4RL's
ant layout, steered) and each of D4RL's three mazes: the share of evaluation episodes (the scripts' env:
D4RL's start and goal cells, its 0.5 radius and time limit) in which the planner-driven ant reaches the
goal. With the datasets' N(0, 0.2^2) action noise on sampled actions, as the data are recorded, and with
the deterministic controller. D4RL's evaluation normalises a return of 1 (the goal) to 100.
"""

import argparse
import json
from pathlib import Path
from typing import List

import torch

from d4rl_compat.antmaze import success_rate

MAZES = {"umaze": "antmaze-umaze-v2", "medium": "antmaze-medium-play-v2", "large": "antmaze-large-play-v2"}


def trained_steps(policy: Path) -> str:
    metrics = torch.load(policy, map_location="cpu", weights_only=True)["metrics"]
    return f"{int(metrics['online/env_steps']):,}"


def table(policies: List[Path], episodes: int, seed: int) -> List[str]:
    lines = [
        "| controller | env steps trained | maze | noisy (the data's) | deterministic | mean episode length (noisy) |"
    ]
    lines.append("|---|---|---|---|---|---|")
    for policy in policies:
        for maze, name in MAZES.items():
            noisy = success_rate(name, policy, episodes, True, seed)
            deterministic = success_rate(name, policy, episodes, False, seed)
            row = f"| {policy.name} | {trained_steps(policy)} | {maze} | {100 * noisy['success_rate']:.0f}% | "
            lines.append(row + f"{100 * deterministic['success_rate']:.0f}% | {noisy['mean_length']:.0f} |")
            print(lines[-1], json.dumps({"noisy": noisy, "deterministic": deterministic}), flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", type=Path, nargs="+", required=True, help="controller snapshots")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per maze and mode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="markdown to write (default: print only)")
    parser.add_argument("--notes", type=Path, default=None, help="markdown appended after the table")
    args = parser.parse_args()
    missing = [str(path) for path in args.policies if not path.exists()]
    if missing or args.episodes <= 0:
        parser.error(f"controllers not found: {', '.join(missing)}" if missing else "--episodes must be positive")
    lines = table(args.policies, args.episodes, args.seed)
    if args.output:
        command = "python benchmarks/antmaze_success.py --policies " + " ".join(str(p) for p in args.policies)
        command += f" --episodes {args.episodes} --seed {args.seed} \\\n    --output {args.output}"
        command += f" --notes {args.notes}" if args.notes else ""
        text = ["# The AntMaze controller's success rate", "", "```", command, "```", "", *lines]
        text += ["", args.notes.read_text().strip()] if args.notes else []
        args.output.write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
