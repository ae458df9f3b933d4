"""Small learning checks of the value-based scripts on a generated dataset (CPU, tiny budgets).

    nice -n 10 python benchmarks/learning_value_based.py --seeds 0 1 2 --jobs 2 \\
        --output benchmarks/results/learning_value_based.md

1. Offline CQL and IQL vs the behaviour policy: a generated hopper dataset of uniformly random
   actions (20k transitions); each script trains `--offline_steps` updates and is evaluated on
   10 deterministic episodes. The behaviour return is the mean episode return of the dataset.
2. Fine-tuning: CQL-finetune and Cal-QL from the same offline budget, then `--online_steps` env
   steps with evaluations every `--eval_freq` updates offline and env steps online, fine-tuning
   step 0 included. The check is whether the first online evaluations stay at or above the offline
   score (the Cal-QL paper's "unlearning" of CQL shows as an early drop).

Every run is a subprocess of the script's own CLI with one torch thread; the table gives each
seed's numbers, nothing is averaged away.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from common import ROOT, generate_dataset

SMALL = [
    "--actor_hidden_dims",
    "[64,64]",
    "--critic_hidden_dims",
    "[64,64]",
    "--batch_size",
    "128",
    "--n_episodes",
    "10",
    "--wandb_mode",
    "disabled",
    "--device",
    "cpu",
]


def run(script: str, args, run_dir: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-c",
        "import torch, runpy, sys; torch.set_num_threads(1); sys.argv = sys.argv[1:]; "
        "runpy.run_path(sys.argv[0], run_name='__main__')",
        script,
        *args,
        "--run_dir",
        str(run_dir),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    if result.returncode:
        raise RuntimeError(f"{script} failed:\n{result.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary["evaluations"] = [(row["step"], row["eval/return_mean"]) for row in rows if "eval/return_mean" in row]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--offline_steps", type=int, default=3000)
    parser.add_argument("--online_steps", type=int, default=4000)
    parser.add_argument("--eval_freq", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        data = generate_dataset(directory / "hopper-random.hdf5")
        import h5py

        with h5py.File(data) as file:
            rewards, ends = file["rewards"][()], np.flatnonzero(file["terminals"][()] | file["timeouts"][()]) + 1
        behaviour = np.add.reduceat(rewards, np.concatenate([[0], ends[:-1]])).mean()
        common = SMALL + ["--dataset", str(data), "--log_every", "500", "--checkpoint_every", "100000"]
        jobs = {}
        for seed in args.seeds:
            seed_args = common + ["--train_seed", str(seed)]
            offline = ["--max_timesteps", str(args.offline_steps), "--eval_freq", str(args.offline_steps)]
            finetune = [
                "--offline_iterations",
                str(args.offline_steps),
                "--online_iterations",
                str(args.online_steps),
                "--offline_eval_freq",
                str(args.eval_freq),
                "--online_eval_freq",
                str(args.eval_freq),
            ]
            jobs[("offline/cql", seed)] = ("algorithms/offline/cql.py", seed_args + offline)
            jobs[("offline/iql", seed)] = (
                "algorithms/offline/iql.py",
                seed_args + offline + ["--normalize_reward", "true"],
            )
            jobs[("finetune/cql", seed)] = ("algorithms/finetune/cql.py", seed_args + finetune)
            jobs[("finetune/cal_ql", seed)] = ("algorithms/finetune/cal_ql.py", seed_args + finetune)
        with ThreadPoolExecutor(args.jobs) as pool:
            futures = {
                key: pool.submit(run, script, script_args, directory / f"{key[0].replace('/', '_')}_{key[1]}")
                for key, (script, script_args) in jobs.items()
            }
            results = {key: future.result() for key, future in futures.items()}
    lines = [
        f"Command: python benchmarks/learning_value_based.py {' '.join(sys.argv[1:])}",
        f"Data: generated Hopper-v5, uniformly random actions, 20k transitions (seed 0); behaviour policy mean "
        f"episode return {behaviour:.1f}. Networks 2 x 64, batch 128, 10 deterministic evaluation episodes.",
        "",
        f"## Offline ({args.offline_steps} updates): final evaluation return vs behaviour {behaviour:.1f}",
        "",
        "| script | " + " | ".join(f"seed {seed}" for seed in args.seeds) + " | mean | beats behaviour (all seeds) |",
        "|---|" + "---|" * (len(args.seeds) + 2),
    ]
    for name in ("offline/cql", "offline/iql"):
        values = [results[(name, seed)]["eval/return_mean"] for seed in args.seeds]
        lines.append(
            f"| {name}.py | "
            + " | ".join(f"{v:.1f}" for v in values)
            + f" | {np.mean(values):.1f} | {'yes' if min(values) > behaviour else 'no'} |"
        )
    lines += [
        "",
        f"## Fine-tuning ({args.offline_steps} offline updates, then {args.online_steps} env steps): evaluation return "
        f"at each evaluation point from fine-tuning step 0",
        "",
        "| script | seed | offline (step 0) | online evaluations | min online - offline | regret |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("finetune/cql", "finetune/cal_ql"):
        for seed in args.seeds:
            summary = results[(name, seed)]
            points = [value for step, value in summary["evaluations"] if step >= args.offline_steps]
            offline_score, online = points[0], points[1:]
            lines.append(
                f"| {name}.py | {seed} | {offline_score:.1f} | {', '.join(f'{v:.1f}' for v in online)} | "
                f"{min(online) - offline_score:+.1f} | {summary['eval/regret']:.3f} |"
            )
    table = "\n".join(lines)
    print(table)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(table + "\n")


if __name__ == "__main__":
    main()
