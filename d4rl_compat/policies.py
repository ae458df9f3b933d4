"""Behaviour policies of the generated datasets: SAC actors exported from runs of algorithms/online/sac.py.

    python -m d4rl_compat.policies --command scores --run runs/behaviour/hopper  # every snapshot's score
    python -m d4rl_compat.policies --command rank --run runs/behaviour/hopper --top 5  # the best, 100 episodes
    python -m d4rl_compat.policies --command rank --run runs/behaviour/hopper --min_step 140000 --max_step 170000
    python -m d4rl_compat.policies --command export --run runs/behaviour/hopper --step 150000 --level medium

Each exported policy is two files in d4rl_compat/policies/: <domain>-<level>.pt (the actor's weights,
tensors only) and <domain>-<level>.json, its card: the env, how it was trained (script, config, env
steps, wall time, seed) and its evaluation over 100 episodes, both with sampled actions (as the
generator records them, like D4RL's data) and with the deterministic action. The actor runs in numpy
here, so generating data needs no GPU and no training code.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import gymnasium as gym
import numpy as np
import torch
import yaml

from d4rl_compat.generate import EnvSpec, UserError, parse_arguments, run_command

POLICY_DIR = Path(__file__).resolve().parent / "policies"
LEVELS = ("medium", "expert")  # the policies a domain needs; the other D4RL levels are built from them


def policy_path(domain: str, level: str) -> Path:
    return POLICY_DIR / f"{domain}-{level}.pt"


def load_card(path: Path) -> Dict[str, Any]:
    return json.loads(Path(path).with_suffix(".json").read_text())


def make_env(snapshot: Dict[str, Any]) -> gym.Env:
    """The env a policy acts in, as the training scripts build it (adapter included)."""
    kwargs = json.loads(snapshot["env_kwargs"])
    return EnvSpec(snapshot["env_id"], kwargs, snapshot["max_episode_steps"], adapter=snapshot["adapter"]).make()


class SACPolicy:
    """The tanh-Gaussian actor of sac.py in numpy: tanh(mean + std * noise), or tanh(mean) when deterministic."""

    def __init__(self, path: Path, seed: int, deterministic: bool = False):
        self.path, self.deterministic = Path(path), deterministic
        self.snapshot = torch.load(self.path, map_location="cpu", weights_only=True)
        actor = {key: value.double().numpy() for key, value in self.snapshot["actor"].items()}
        layers = sorted({int(key.split(".")[1]) for key in actor if key.startswith("trunk.")})
        self.layers = [(actor[f"trunk.{i}.weight"].T, actor[f"trunk.{i}.bias"]) for i in layers]
        self.log_std_scale = float(actor["log_std_multiplier"]), float(actor["log_std_offset"])
        self.rng = np.random.default_rng(seed)
        self.description = f"SAC actor {self.path.name} ({'deterministic' if deterministic else 'sampled'} actions)"

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        """Actions for one observation (obs_dim,) or a batch (n, obs_dim)."""
        x = np.asarray(observation, np.float64)
        for weight, bias in self.layers[:-1]:
            x = np.maximum(x @ weight + bias, 0.0)
        mean, raw_log_std = np.split(x @ self.layers[-1][0] + self.layers[-1][1], 2, axis=-1)
        if self.deterministic:
            return np.tanh(mean).astype(np.float32)
        log_std = np.clip(self.log_std_scale[0] * raw_log_std + self.log_std_scale[1], -20.0, 2.0)
        return np.tanh(mean + np.exp(log_std) * self.rng.standard_normal(mean.shape)).astype(np.float32)


def evaluate(policy: SACPolicy, episodes: int, seed: int) -> Dict[str, float]:
    """Mean and std of the return over `episodes` episodes, run in lockstep; the normalised score where known."""
    envs = gym.vector.SyncVectorEnv([lambda: make_env(policy.snapshot)] * episodes)
    observation, returns = envs.reset(seed=seed)[0], np.zeros(episodes)
    done = np.zeros(episodes, bool)
    while not done.all():
        observation, reward, terminated, truncated, _ = envs.step(policy(observation))
        returns += reward * ~done  # finished envs auto-reset; their later steps don't count
        done |= terminated | truncated
    envs.close()
    result = {"return_mean": float(returns.mean()), "return_std": float(returns.std()), "episodes": episodes}
    low, high = policy.snapshot["ref_scores"]
    if low is not None and high is not None:
        result["normalized_score"] = float(100.0 * (returns.mean() - low) / (high - low))
    return result


def snapshots(run: Path) -> List[Path]:
    found = sorted((Path(run) / "policies").glob("step_*.pt"))
    if not found:
        raise UserError(f"{run} has no policies/step_*.pt: train it with algorithms/online/sac.py first")
    return found


@dataclass
class PoliciesConfig:
    command: str = "scores"  # scores: list a run's snapshots; rank: re-evaluate the best; export: commit one
    run: str = ""  # a run directory of algorithms/online/sac.py
    step: int = 0  # export: the snapshot's env step
    level: str = "medium"  # export: medium or expert
    domain: Optional[str] = None  # export: default the run's env
    episodes: int = 100
    seed: int = 12345
    output_dir: str = str(POLICY_DIR)
    overwrite: bool = False
    top: int = 5  # rank: how many snapshots, by the run's own (few-episode) score, to evaluate over `episodes`
    min_step: int = 0  # rank: only snapshots from this env step on
    max_step: Optional[int] = None  # rank: only snapshots up to this env step (to pick a medium policy)


def rank(config: PoliciesConfig) -> List[Dict[str, Any]]:
    """The `top` snapshots by the run's own evaluation, each evaluated over `episodes` episodes, best first by
    the sampled-action score (the actions the generator records). A run's few-episode evaluation is noisy,
    so this, not the run's best row, is how a snapshot is chosen for export."""
    found, last = [], float("inf") if config.max_step is None else config.max_step
    for path in snapshots(Path(config.run)):
        metrics = torch.load(path, map_location="cpu", weights_only=True)["metrics"]
        if config.min_step <= metrics["online/env_steps"] <= last:
            found.append((metrics.get("eval/normalized_score_mean", metrics["eval/return_mean"]), path, metrics))
    found = sorted(found, key=lambda item: item[0], reverse=True)[: config.top]
    if not found:
        window = f"from env step {config.min_step}" + ("" if config.max_step is None else f" to {config.max_step}")
        raise UserError(f"{config.run} has no snapshots {window}")
    rows = []
    for run_score, path, metrics in found:
        sampled = evaluate(SACPolicy(path, config.seed), config.episodes, config.seed)
        deterministic = evaluate(SACPolicy(path, config.seed, deterministic=True), config.episodes, config.seed)
        rows.append(
            dict(step=metrics["online/env_steps"], run_score=run_score, sampled=sampled, deterministic=deterministic)
        )
    return sorted(rows, key=lambda row: score_of(row["sampled"]), reverse=True)


def score_of(result: Dict[str, float]) -> float:
    """An evaluation's normalised score, or its mean return for an env with no reference scores."""
    return result.get("normalized_score", result["return_mean"])


def export(config: PoliciesConfig) -> Path:
    run = Path(config.run)
    source = run / "policies" / f"step_{config.step:09d}.pt"
    if not source.exists():
        steps = ", ".join(str(int(path.stem.split("_")[1])) for path in snapshots(run))
        raise UserError(f"{source} does not exist; the run has snapshots at steps {steps}")
    if config.level not in LEVELS:
        raise UserError(f"level must be one of {', '.join(LEVELS)}, not '{config.level}'")
    train_config = yaml.safe_load((run / "config.yaml").read_text())
    domain = config.domain or train_config["env"]
    target = Path(config.output_dir) / f"{domain}-{config.level}.pt"
    if target.exists() and not config.overwrite:
        raise UserError(f"{target} exists; pass --overwrite true to replace it")
    sampled, deterministic = SACPolicy(source, config.seed), SACPolicy(source, config.seed, deterministic=True)
    snapshot = sampled.snapshot
    card = {
        "name": f"{domain}-{config.level}",
        "env_id": snapshot["env_id"],
        "env_kwargs": json.loads(snapshot["env_kwargs"]),
        "max_episode_steps": snapshot["max_episode_steps"],
        "adapter": snapshot["adapter"],
        "ref_scores": snapshot["ref_scores"],
        "training": {
            "command": f"python algorithms/online/sac.py --config_path {run / 'config.yaml'}",
            "config": train_config,
            "env_steps": snapshot["metrics"]["online/env_steps"],
            "wall_time_s": snapshot["metrics"]["online/wall_time_s"],
            "seed": train_config["train_seed"],
            "run_eval": {key: value for key, value in snapshot["metrics"].items() if key.startswith("eval/")},
        },
        "evaluation": {
            "seed": config.seed,
            "sampled_actions": evaluate(sampled, config.episodes, config.seed),
            "deterministic_actions": evaluate(deterministic, config.episodes, config.seed),
        },
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save(snapshot, target)
    target.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return target


def main(args: Optional[List[str]] = None) -> None:
    config = parse_arguments(PoliciesConfig, args)
    if not config.run:
        raise UserError("--run is required: a run directory of algorithms/online/sac.py")
    if config.command == "scores":
        for path in snapshots(Path(config.run)):
            metrics = torch.load(path, map_location="cpu", weights_only=True)["metrics"]
            score = metrics.get("eval/normalized_score_mean", float("nan"))
            print(
                f"step {metrics['online/env_steps']:>9}  return {metrics['eval/return_mean']:9.1f}  score {score:6.1f}"
            )
    elif config.command == "rank":
        print(f"{config.episodes} episodes each, seed {config.seed}; scores normalised where the env has references")
        for row in rank(config):
            sampled, spread = row["sampled"], f"{row['sampled']['return_std']:.1f}"
            print(
                f"step {row['step']:>9}  run's own {row['run_score']:6.1f}  sampled {score_of(sampled):6.1f} "
                f"(return {sampled['return_mean']:.1f} ± {spread})  deterministic {score_of(row['deterministic']):6.1f}"
            )
    elif config.command == "export":
        target = export(config)
        evaluation = load_card(target)["evaluation"]
        print(f"wrote {target} and its card: {json.dumps(evaluation)}")
    else:
        raise UserError(f"unknown command '{config.command}': scores, rank or export")


if __name__ == "__main__":
    run_command(main)
