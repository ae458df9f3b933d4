"""Shared block: what offline-to-online fine-tuning adds: mixed batches, the online rows of a checkpoint, regret.

Canonical source; see blocks/runtime.py for how blocks are copied into scripts.
"""

from typing import Any, Dict, List, Optional

import numpy as np
import torch

from blocks.runtime import UserError
from blocks.transitions import TransitionBuffer


# === block ===
def sample_mixed(offline: TransitionBuffer, online: TransitionBuffer, batch_size: int, mixing_ratio: Optional[float]):
    """int(batch_size * mixing_ratio) rows from the dataset's buffer and the rest from the online
    buffer (all from the dataset while the online buffer is empty). Without a mixing_ratio (None) the
    online steps are in the dataset's buffer, sampled uniformly (official IQL)."""
    if mixing_ratio is None:
        return online.sample(batch_size)  # `online` is the dataset's buffer
    if online.size == 0:
        return offline.sample(batch_size)
    offline_count = int(batch_size * mixing_ratio)
    first, second = offline.sample(offline_count), online.sample(batch_size - offline_count)
    return {key: torch.cat([first[key], second[key]]) for key in first}


def online_rows(offline: TransitionBuffer, online: TransitionBuffer) -> Dict[str, Any]:
    """What a checkpoint keeps of the buffers: the rows added online (dataset rows are rebuilt from the file)."""
    rows = {key: values[online.dataset_rows : online.size].to("cpu", copy=True) for key, values in online.data.items()}
    return {**rows, "dataset_rows": offline.dataset_rows}


def restore_online_rows(offline: TransitionBuffer, online: TransitionBuffer, rows: Dict[str, Any]) -> None:
    if rows["dataset_rows"] != offline.dataset_rows:
        raise UserError(
            f"checkpoint was taken with {rows['dataset_rows']} dataset rows, this dataset has "
            f"{offline.dataset_rows}: resume with the same dataset and settings"
        )
    if online.size + len(rows["rewards"]) > online.capacity:
        raise UserError("checkpoint holds more online steps than fit this run: resume with online_iterations as before")
    online.add(rows)


def fraction_of_best(metrics: Dict[str, float]) -> float:
    """Score in [0, 1] (Cal-QL author's): success rate where the env reports it, else normalised score / 100."""
    if "eval/success_rate" in metrics:  # goal-reaching envs: the share of episodes that reached the goal
        return float(metrics["eval/success_rate"])
    return float(np.clip(metrics.get("eval/normalized_score_mean", np.nan) / 100.0, 0.0, 1.0))  # clipped


def regret(scores: List[float]) -> float:
    """The Cal-QL author's regret: mean of (1 - score) over the fine-tuning evaluation points,
    step 0 included, scores in [0, 1] from EVALUATION episodes (never training episodes)."""
    return float(np.mean(1.0 - np.asarray(scores, dtype=np.float64))) if scores else float("nan")
