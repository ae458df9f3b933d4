"""Does bf16 autocast (`--bf16 true`) train the Decision Transformer like float32? Training-loss curves.

    python benchmarks/bf16_loss.py --dataset data/generated/hopper-medium.hdf5 --update_steps 2000

Runs algorithms/offline/dt.py twice with the same seed and data, float32 and bf16 autocast in the
transformer, and writes the two loss curves (every --log_every updates) and the evaluation scores to
benchmarks/results/bf16_loss.md and .png. bf16 is meant for CUDA; on a CPU it runs, more slowly.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL = "--embedding_dim 64 --num_layers 2 --num_heads 1 --batch_size 64 --warmup_steps 200".split()


def train(dataset: str, bf16: bool, args: argparse.Namespace, run_dir: Path) -> List[Dict]:
    command = [sys.executable, "algorithms/offline/dt.py", "--config_path", args.config, "--dataset", dataset]
    command += [*MODEL, "--update_steps", str(args.update_steps), "--log_every", str(args.log_every)]
    command += ["--eval_every", str(args.update_steps), "--checkpoint_every", str(args.update_steps)]
    command += ["--eval_episodes", "10", "--train_seed", str(args.seed), "--bf16", str(bf16).lower()]
    command += ["--device", args.device, "--wandb_mode", "disabled", "--run_dir", str(run_dir)]
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--config", default="configs/offline/dt/hopper/medium_v2.yaml")
    parser.add_argument("--update_steps", type=int, default=2000)
    parser.add_argument("--log_every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/bf16_loss.md")
    args = parser.parse_args()
    curves, scores = {}, {}
    with tempfile.TemporaryDirectory() as directory:
        for name, bf16 in (("float32", False), ("bf16 autocast", True)):
            rows = train(args.dataset, bf16, args, Path(directory) / name.split()[0])
            curves[name] = np.array([(row["step"], row["train/loss"]) for row in rows if "train/loss" in row])
            scores[name] = next(value for row in rows[::-1] for key, value in row.items() if key.endswith("score_mean"))
    reference, other = curves["float32"], curves["bf16 autocast"]
    gap = np.abs(other[:, 1] - reference[:, 1]) / reference[:, 1]
    last = len(gap) // 4  # the last quarter of training, past the early drop
    figure, axes = plt.subplots(figsize=(6, 3.6))
    for name, curve in curves.items():
        axes.plot(curve[:, 0], curve[:, 1], label=name)
    axes.set(xlabel="update", ylabel="training loss (masked action MSE)", yscale="log", title=Path(args.dataset).name)
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(args.output.with_suffix(".png"), dpi=120)
    lines = [
        "# bf16 autocast vs float32: Decision Transformer training loss",
        "",
        f"Command: `python benchmarks/bf16_loss.py {' '.join(sys.argv[1:])}`",
        f"Model: {' '.join(MODEL)}; {args.update_steps} updates, seed {args.seed}, device {args.device}.",
        "",
        "| | float32 | bf16 autocast |",
        "|---|---|---|",
        f"| loss, mean of the last quarter | {reference[-last:, 1].mean():.4f} | {other[-last:, 1].mean():.4f} |",
        f"| final normalised score (10 episodes) | {scores['float32']:.1f} | {scores['bf16 autocast']:.1f} |",
        "",
        f"Relative loss gap |bf16 - fp32| / fp32 per logged point: median {np.median(gap):.3f}, "
        f"max {gap.max():.3f}, median over the last quarter {np.median(gap[-last:]):.3f}.",
        f"Curves: `{args.output.with_suffix('.png').name}`.",
    ]
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
