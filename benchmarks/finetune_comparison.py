"""ODT vs ODT+TD3 vs the TD3 baseline: fine-tuning from low-return data, same budget, several seeds.

    python -m d4rl_compat.generate --env hopper --policy random --num_transitions 100000 --seed 0 \\
        --output data/hopper-random-quickstart.hdf5
    python benchmarks/finetune_comparison.py --dataset data/hopper-random-quickstart.hdf5 --seeds 0 1 2

A small CPU-sized version of the paper's MuJoCo comparison (paper: 13M-parameter DT, 500k online
transitions). The three methods share every setting and the budget: the same DT size, the same
pretraining (in actor updates), the same online iterations (each at least online_transitions
env steps) and actor updates per iteration. ODT+TD3 and TD3 differ only in the supervised
coefficient (1 vs 0), as in the paper; the TD3 baseline, having no supervised term, pretrains with
its RL term (pretrain_alpha 0.1) so that pretraining trains its actor at all. Writes a markdown
table of normalised scores after pretraining and after fine-tuning (mean ± std over seeds, and
per seed) with this command.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import ROOT, load_script


def settings(args: argparse.Namespace):
    """(label, script, overrides) for each method; a TD3 step is a critic batch, the actor updates every 2nd."""
    shared = [
        "--embedding_dim",
        str(args.embedding_dim),
        "--num_layers",
        str(args.num_layers),
        "--num_heads",
        "1",
        "--seq_len",
        "10",
        "--eval_context",
        "5",
        "--batch_size",
        "64",
        "--warmup_steps",
        "100",
        "--learning_rate",
        "3e-4",
        "--online_iterations",
        str(args.iterations),
        "--online_transitions",
        "1000",
        "--eval_episodes",
        "10",
        "--device",
        "cpu",
        "--wandb_mode",
        "disabled",
        "--log_every",
        "50",
    ]
    pretrain, per_iteration = args.pretrain_updates, args.updates_per_iteration
    odt = [
        "--pretrain_steps",
        str(pretrain),
        "--updates_per_iteration",
        str(per_iteration),
        "--eval_every",
        str(pretrain),
        "--checkpoint_every",
        str(pretrain),
    ]
    td3 = [
        "--pretrain_steps",
        str(2 * pretrain),
        "--updates_per_iteration",
        str(2 * per_iteration),
        "--eval_every",
        str(2 * pretrain),
        "--checkpoint_every",
        str(2 * pretrain),
        "--policy_freq",
        "2",
        "--critic_hidden_dim",
        "256",
    ]
    return [
        ("ODT", "algorithms/finetune/odt.py", shared + odt),
        ("ODT+TD3", "algorithms/finetune/odt_td3.py", shared + td3 + ["--supervised_coef", "1.0"]),
        (
            "TD3",
            "algorithms/finetune/odt_td3.py",
            shared + td3 + ["--supervised_coef", "0.0"],  # pretrained with BC, as in the official code
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--embedding_dim", type=int, default=32)
    parser.add_argument("--num_layers", type=int, default=1)
    parser.add_argument("--pretrain_updates", type=int, default=300, help="actor updates")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--updates_per_iteration", type=int, default=100, help="actor updates")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "finetune_comparison.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory:
        for label, path, overrides in settings(args):
            script = load_script(path)
            for seed in args.seeds:
                run_dir = Path(directory) / f"{label}-{seed}"
                config = script.parse_config(
                    script.TrainConfig,
                    [*overrides, "--dataset", args.dataset, "--train_seed", str(seed), "--run_dir", str(run_dir)],
                )
                summary = script.train(config)
                results.setdefault(label, []).append(summary)
                print(
                    f"{label} seed {seed}: {summary['pretrained/normalized_score_mean']:.1f} -> "
                    f"{summary['eval/normalized_score_mean']:.1f} ({summary['env_steps']} env steps)",
                    flush=True,
                )
    elapsed = time.perf_counter() - started
    lines = [
        "# Fine-tuning from generated hopper-random: ODT vs ODT+TD3 vs TD3",
        "",
        "Commands:",
        "",
        "```",
        "python -m d4rl_compat.generate --env hopper --policy random --num_transitions 100000 --seed 0 "
        "--output data/hopper-random-quickstart.hdf5",
        f"python benchmarks/finetune_comparison.py {' '.join(sys.argv[1:])}",
        "```",
        "",
        f"DT: embedding {args.embedding_dim}, {args.num_layers} layer(s), K 10 (eval context 5), batch 64. Pretraining "
        f"{args.pretrain_updates} actor updates; {args.iterations} online iterations of >= 1000 env steps and "
        f"{args.updates_per_iteration} actor updates each (TD3 variants: twice as many critic batches). 10 evaluation "
        f"episodes (eval_rtg 3600, online_rtg 7200). Seeds {args.seeds}; {elapsed / 60:.1f} min on 1 CPU thread.",
        "",
        "| method | normalised score after pretraining | after fine-tuning | per seed (before -> after) "
        "| online env steps |",
        "|---|---|---|---|---|",
    ]
    for label, summaries in results.items():
        before = np.array([s["pretrained/normalized_score_mean"] for s in summaries])
        after = np.array([s["eval/normalized_score_mean"] for s in summaries])
        steps = int(np.mean([s["env_steps"] for s in summaries]))
        per_seed = ", ".join(f"{b:.1f} -> {a:.1f}" for b, a in zip(before, after))
        lines.append(
            f"| {label} | {before.mean():.1f} ± {before.std():.1f} | {after.mean():.1f} ± {after.std():.1f} | "
            f"{per_seed} | {steps} |"
        )
    text = "\n".join(lines) + "\n"
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    args.output.with_suffix(".json").write_text(
        json.dumps(
            {
                label: [{key: value for key, value in s.items() if key != "run_dir"} for s in summaries]
                for label, summaries in results.items()
            },
            indent=1,
        )
        + "\n"
    )
    print(text)


if __name__ == "__main__":
    main()
