"""The README's quickstart over several seeds: is the rise in fine-tuning larger than the spread across seeds?

    python -m d4rl_compat.generate --env hopper --policy medium --num_transitions 50000 --seed 0 \\
        --output data/hopper-medium-quickstart.hdf5
    python benchmarks/quickstart.py --seeds 10 11 12 --output benchmarks/results/quickstart.md

Runs configs/finetune/odt_td3/hopper/quickstart.yaml once per training seed (a run directory that
already holds summary.json is read, not run again) and records the score after pretraining and after
fine-tuning, per seed and as mean ± std, with the wall time of each run.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from common import ROOT

CONFIG = "configs/finetune/odt_td3/hopper/quickstart.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12])
    parser.add_argument("--run_root", type=Path, default=Path("runs/quickstart_seeds"))
    parser.add_argument("--output", type=Path, default=Path("runs/quickstart_seeds/quickstart.md"))
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        run_dir = args.run_root / f"seed{seed}"
        if not (run_dir / "summary.json").exists():
            command = [sys.executable, "algorithms/finetune/odt_td3.py", "--config_path", CONFIG]
            command += ["--train_seed", str(seed), "--wandb_mode", "disabled", "--run_dir", str(run_dir)]
            subprocess.run(command, cwd=ROOT, check=True)
        summary = json.loads((run_dir / "summary.json").read_text())
        rows.append((seed, summary["pretrained/normalized_score_mean"], summary["eval/normalized_score_mean"]))
        rows[-1] += (summary["wall_time_s"],)
    before, after = (np.array([row[index] for row in rows]) for index in (1, 2))
    rise = after - before
    lines = ["# Quickstart over seeds: ODT+TD3 fine-tuning from generated hopper-medium data", "", "Commands:", ""]
    lines += ["```", "python -m d4rl_compat.generate --env hopper --policy medium --num_transitions 50000 --seed 0 "]
    lines[-1] += "--output data/hopper-medium-quickstart.hdf5"
    lines += [f"python benchmarks/quickstart.py --seeds {' '.join(map(str, args.seeds))} --output {args.output}", "```"]
    lines += ["", f"Config: `{CONFIG}`. Normalised scores (10 evaluation episodes each).", ""]
    lines += ["| train_seed | after pretraining | after fine-tuning | rise | wall time |", "|---|---|---|---|---|"]
    lines += [f"| {s} | {b:.1f} | {a:.1f} | {a - b:+.1f} | {t:.0f} s |" for s, b, a, t in rows]
    lines += ["", f"Mean: {before.mean():.1f} ± {before.std():.1f} after pretraining, "]
    lines[-1] += (
        f"{after.mean():.1f} ± {after.std():.1f} after fine-tuning; rise {rise.mean():.1f} ± {rise.std():.1f}. "
    )
    lines[-1] += f"The smallest rise ({rise.min():.1f}) is {'larger' if rise.min() > after.std() else 'not larger'} "
    lines[-1] += f"than the spread of the final scores across seeds (std {after.std():.1f})."
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
