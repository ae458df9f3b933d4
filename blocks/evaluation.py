"""Shared block: batched deterministic evaluation over a vector env, success rate, regret.

Canonical source; see blocks/runtime.py for how blocks are copied into scripts.
"""
from typing import Callable, Dict, List, Tuple

import gymnasium as gym
import numpy as np
import torch

from blocks.envs import EnvSpec, step_success

# === block ===
@torch.no_grad()
def evaluate_policy(
    act: Callable[[torch.Tensor], torch.Tensor], envs: gym.vector.VectorEnv, seed: int,
    state_mean: torch.Tensor, state_std: torch.Tensor,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One episode per env in lockstep, one batched forward per step.

    `act` maps normalised states to actions. Returns each episode's return, length and whether it
    reached the goal (info['success'] at any step).
    """
    count = envs.num_envs
    returns, lengths = np.zeros(count), np.zeros(count, dtype=np.int64)
    success, done = np.zeros(count, dtype=bool), np.zeros(count, dtype=bool)
    observation, _ = envs.reset(seed=seed)
    while not done.all():
        state = (torch.as_tensor(observation, dtype=torch.float32, device=state_mean.device) - state_mean) / state_std
        action = act(state).cpu().numpy()
        observation, reward, terminated, truncated, infos = envs.step(action)
        returns += reward * ~done  # envs that finished auto-reset; their later steps don't count
        lengths += ~done
        success |= step_success(infos, count) & ~done
        done |= terminated | truncated
    return returns, lengths, success


def evaluation_metrics(returns: np.ndarray, lengths: np.ndarray, success: np.ndarray, env: EnvSpec) -> Dict[str, float]:
    metrics = {
        "eval/return_mean": float(returns.mean()), "eval/return_std": float(returns.std()),
        "eval/length_mean": float(lengths.mean()),
    }
    scores = env.normalized_score(returns)
    if scores is not None:
        metrics["eval/normalized_score_mean"] = float(scores.mean())
        metrics["eval/normalized_score_std"] = float(scores.std())
    if env.reports_success:
        metrics["eval/success_rate"] = float(success.mean())
    return metrics


def fraction_of_best(metrics: Dict[str, float]) -> float:
    """An evaluation as a score in [0, 1]: normalised score / 100, else success rate, clipped."""
    if "eval/normalized_score_mean" in metrics:
        value = metrics["eval/normalized_score_mean"] / 100.0
    elif "eval/success_rate" in metrics:
        value = metrics["eval/success_rate"]
    else:
        return float("nan")
    return float(np.clip(value, 0.0, 1.0))


def regret(scores: List[float]) -> float:
    """The Cal-QL author's regret: mean of (1 - score) over the fine-tuning evaluation points,
    step 0 included, scores in [0, 1] from EVALUATION episodes (never training episodes)."""
    return float(np.mean(1.0 - np.asarray(scores, dtype=np.float64))) if scores else float("nan")
