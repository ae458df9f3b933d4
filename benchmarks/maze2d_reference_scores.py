"""Maze2D reference scores measured on the maintained stack, beside D4RL's published constants.

    python benchmarks/maze2d_reference_scores.py --notes benchmarks/results/maze2d_reference_scores_notes.md

D4RL's ref_min_score is the mean return of uniformly random actions and its ref_max_score that of its
waypoint controller, each over 100 evaluation episodes. `d4rl_compat.maze2d` measures both on the
evaluation env the scripts build (PointMaze in D4RL's frame), for every maze and reward. The dataset
files keep D4RL's published constants so that normalised scores compare with papers; this table says
how far the measured ones are from them.
"""

import argparse
from pathlib import Path

from d4rl_compat.envs import d4rl_env_spec
from d4rl_compat.maze2d import D4RL_MAZE2D_MAPS, dataset_name, measure_reference_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/maze2d_reference_scores.md"))
    parser.add_argument("--notes", type=Path, default=None, help="markdown appended after the table")
    args = parser.parse_args()
    if args.episodes <= 0:
        parser.error("--episodes must be positive")
    lines = [
        "| dataset | episode steps | random: measured | random: D4RL | planner: measured | planner: D4RL "
        "| planner kept across episodes (as D4RL's script ran it) |",
        "|---" * 7 + "|",
    ]
    for maze in D4RL_MAZE2D_MAPS:
        for dense in (False, True):
            name = dataset_name(maze, dense)
            spec, scores = d4rl_env_spec(name), measure_reference_scores(maze, dense, args.episodes, args.seed)
            cells = [scores["random"], spec["ref_min_score"], scores["planner"], spec["ref_max_score"]]
            cells.append(scores["planner_kept_across_episodes"])
            lines.append(f"| {name} | {spec['max_episode_steps']} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
            print(lines[-1], flush=True)
    text = ["# Maze2D reference scores, measured", "", "Command:", "", "```"]
    command = f"python benchmarks/maze2d_reference_scores.py --episodes {args.episodes} --seed {args.seed}"
    text += [command + (f" --notes {args.notes}" if args.notes else ""), "```", ""]
    text += [f"Mean return over {args.episodes} evaluation episodes, the same starts for every policy.", ""]
    notes = ["", args.notes.read_text().strip()] if args.notes else []
    args.output.write_text("\n".join(text + lines + notes) + "\n")


if __name__ == "__main__":
    main()
