"""Why the committed behaviour policies' episodes end: the time limit, or which health check.

    python benchmarks/episode_ends.py --notes benchmarks/results/episode_ends_notes.md

Gymnasium's MuJoCo locomotion envs end an episode once the robot leaves its healthy range, with the
ranges of the v2 envs D4RL used: hopper and walker2d on the torso's height and angle (hopper also on
every other state value), ant on the torso's height alone, 0.2 to 1.0 m. halfcheetah never ends early.
Each policy runs `--episodes` episodes with sampled actions, as the generator records them, and every
early end is put down to the checks the final state fails. Early ends are why a 1M-step file holds
more than 1,000 episodes, and where most of the spread of returns on a card comes from, when it is wide.
"""

import argparse
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List

import gymnasium as gym
import numpy as np

from d4rl_compat.policies import SACPolicy, make_env, policy_path

CHECKS = ("torso too low", "torso too high", "torso angle", "state out of range", "non-finite state", "other")


def failed_checks(env: gym.Env) -> List[str]:
    """The health checks the env's current state fails (empty while healthy), by Gymnasium's v4 ranges."""
    env = env.unwrapped
    if not hasattr(env, "_healthy_z_range"):  # halfcheetah: no health checks
        return []
    state = env.state_vector()
    planar = hasattr(env, "_healthy_angle_range")  # hopper and walker2d: qpos = (x, z, angle, joints...)
    height = env.data.qpos[1] if planar else state[2]
    low, high = env._healthy_z_range
    failed = ["torso too low"] if height < low else ["torso too high"] if height > high else []
    if planar:
        angle_low, angle_high = env._healthy_angle_range
        failed += [] if angle_low < env.data.qpos[2] < angle_high else ["torso angle"]
    if hasattr(env, "_healthy_state_range"):
        state_low, state_high = env._healthy_state_range
        failed += [] if np.all((state_low < state[2:]) & (state[2:] < state_high)) else ["state out of range"]
    return failed + ([] if np.isfinite(state).all() else ["non-finite state"])


def episode_ends(name: str, episodes: int, seed: int) -> Dict[str, Any]:
    """Runs the committed policy `name` (e.g. ant-expert) for `episodes` episodes, one env, seeds seed + i."""
    domain, level = name.rsplit("-", 1)
    policy = SACPolicy(policy_path(domain, level), seed)
    env = make_env(policy.snapshot)
    ends, lengths, returns, early = Counter(), [], [], []
    for episode in range(episodes):
        observation, total, length, done = env.reset(seed=seed + episode)[0], 0.0, 0, False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(policy(observation))
            total, length, done = total + reward, length + 1, terminated or truncated
        if terminated:
            ends.update(failed_checks(env) or ["other"])  # other: an env whose ending this does not know
        else:
            ends["time limit"] += 1
        lengths.append(length)
        returns.append(total)
        early.append(terminated)
    env.close()
    returns, early = np.array(returns), np.array(early)
    low, high = policy.snapshot["ref_scores"]
    score = lambda values: float(100.0 * (values.mean() - low) / (high - low)) if len(values) else None  # noqa: E731
    return dict(
        name=name,
        episodes=episodes,
        ends=ends,
        length_mean=float(np.mean(lengths)),
        score=score(returns),
        score_full=score(returns[~early]),
        score_cut=score(returns[early]),
    )


def table_row(result: Dict[str, Any]) -> str:
    ends = result["ends"]
    counts = [ends["time limit"], *(ends[check] for check in CHECKS)]
    cells = [result["name"], result["episodes"], *counts, f"{result['length_mean']:.0f}"]
    cells += ["-" if result[key] is None else f"{result[key]:.1f}" for key in ("score", "score_full", "score_cut")]
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [
        f"{domain}-{level}" for domain in ("hopper", "halfcheetah", "walker2d", "ant") for level in ("medium", "expert")
    ]
    parser.add_argument("--policies", nargs="+", default=names, help="committed policies, <domain>-<level>")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/episode_ends.md"))
    parser.add_argument("--notes", type=Path, default=None, help="markdown appended after the table")
    args = parser.parse_args()
    if args.episodes <= 0:
        parser.error("--episodes must be positive")
    missing = [name for name in args.policies if "-" not in name or not policy_path(*name.rsplit("-", 1)).exists()]
    if missing:
        parser.error(f"no committed policy {missing} in d4rl_compat/policies/ (names are <domain>-<level>)")
    if args.notes is not None and not args.notes.exists():
        parser.error(f"--notes {args.notes} does not exist")
    header = [
        "policy",
        "episodes",
        "time limit",
        *CHECKS,
        "mean length",
        "score",
        "score, full length",
        "score, ended early",
    ]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for name in args.policies:
        lines.append(table_row(episode_ends(name, args.episodes, args.seed)))
        print(lines[-1], flush=True)
    command = f"python benchmarks/episode_ends.py --episodes {args.episodes} --seed {args.seed}"
    command += " --policies " + " ".join(args.policies) if args.policies != names else ""
    command += f" --notes {args.notes}" if args.notes else ""
    text = ["# How the behaviour policies' episodes end", "", "Command:", "", "```", command, "```", ""]
    text += [
        f"Episodes with sampled actions (env seeds {args.seed} on), counted by how they ended: the time",
        "limit, or each health check the final state fails (an episode can fail more than one). Scores are",
        "D4RL-normalised mean returns: of all episodes, of those that ran to the limit, of those that ended early.",
        "",
    ]
    notes = ["", args.notes.read_text().strip()] if args.notes else []
    args.output.write_text("\n".join(text + lines + notes) + "\n")


if __name__ == "__main__":
    main()
