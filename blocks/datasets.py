"""Shared block: loading D4RL, Minari and generated datasets as flat D4RL-style arrays.

Canonical source; see blocks/runtime.py for how blocks are copied into scripts.
"""
import json
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

import h5py
import numpy as np

from blocks.envs import D4RL_FILES, D4RL_URL_ROOT, EnvSpec, d4rl_env_spec
from blocks.runtime import UserError

# === block ===
@dataclass
class Dataset:
    """Transitions in file order. Episodes end at a terminal (true end) or a timeout (time limit)."""

    name: str
    observations: np.ndarray  # (N, obs_dim) float32
    actions: np.ndarray  # (N, act_dim) float32
    rewards: np.ndarray  # (N,) float32
    terminals: np.ndarray  # (N,) bool
    timeouts: np.ndarray  # (N,) bool
    env: EnvSpec


def d4rl_dataset_dir() -> Path:
    """Where d4rl caches its files, so files users already have are reused."""
    return Path(os.environ.get("D4RL_DATASET_DIR", Path.home() / ".d4rl" / "datasets")).expanduser()


def load_dataset(name: str, allow_download: bool = True) -> Dataset:
    """`name` is a D4RL name (hopper-medium-v2), `minari:<id>`, or a path to a D4RL-format hdf5 file."""
    if name.startswith("minari:"):
        dataset = _load_minari(name[len("minari:"):], allow_download)
    elif name.endswith((".hdf5", ".h5")) or os.path.sep in name:
        dataset = _load_hdf5_file(Path(name))
    elif name in D4RL_FILES:
        dataset = _load_d4rl(name, allow_download)
    else:
        raise UserError(
            f"unknown dataset '{name}': not a D4RL name (e.g. hopper-medium-v2), not 'minari:<dataset id>' "
            "and not a path to an .hdf5 file"
        )
    validate_dataset(dataset)
    return dataset


def _load_d4rl(name: str, allow_download: bool) -> Dataset:
    url = D4RL_URL_ROOT + D4RL_FILES[name]
    path = d4rl_dataset_dir() / os.path.basename(url)
    if not path.exists():
        how = f"download it with `curl -L --create-dirs -o {path} {url}`, or set D4RL_DATASET_DIR to the folder holding it"
        if not allow_download:
            raise UserError(f"D4RL dataset '{name}' not found at {path} (downloads are off); {how}")
        try:
            _download(url, path)
        except OSError as error:
            raise UserError(f"D4RL dataset '{name}' not found at {path} and downloading {url} failed ({error}); {how}") from None
    arrays, _ = read_hdf5(path)
    return _dataset_from_arrays(name, arrays, d4rl_env_spec(name))


def _download(url: str, path: Path) -> None:
    """Streams to a .partial file first, so an interrupted download never looks like a dataset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    print(f"downloading {url} -> {path}")
    with urllib.request.urlopen(url, timeout=15) as response, open(partial, "wb") as file:
        while chunk := response.read(1 << 20):
            file.write(chunk)
    os.replace(partial, path)


def read_hdf5(path: Path) -> Tuple[Dict[str, np.ndarray], Dict[str, object]]:
    """Reads the flat arrays and the `metadata/` group of a D4RL-format file."""
    try:
        with h5py.File(path, "r") as file:
            missing = [key for key in ("observations", "actions", "rewards", "terminals") if key not in file]
            if missing:
                raise UserError(f"{path} is not a D4RL-format file: missing {missing}")
            arrays = {key: file[key][()] for key in ("observations", "actions", "rewards", "terminals", "timeouts") if key in file}
            metadata = {}
            if "metadata" in file:
                for key, value in file["metadata"].items():
                    value = value[()]
                    metadata[key] = value.decode() if isinstance(value, bytes) else value
    except OSError as error:
        raise UserError(f"cannot read {path} as hdf5 ({error})") from None
    return arrays, metadata


def _load_hdf5_file(path: Path) -> Dataset:
    if not path.is_file():
        raise UserError(f"dataset file {path} does not exist; generate one with tools/generate_dataset.py")
    arrays, metadata = read_hdf5(path)
    if "env_id" not in metadata:
        raise UserError(
            f"{path} has no metadata/env_id, so its evaluation env is unknown; write metadata/env_id "
            "(and metadata/env_kwargs as JSON) into the file, or load a D4RL file by its D4RL name"
        )
    ref_min, ref_max = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    spec = EnvSpec(
        env_id=metadata["env_id"],
        kwargs=json.loads(metadata.get("env_kwargs", "{}")),
        max_episode_steps=int(metadata["max_episode_steps"]) if "max_episode_steps" in metadata else None,
        ref_min_score=None if ref_min is None else float(ref_min),
        ref_max_score=None if ref_max is None else float(ref_max),
    )
    return _dataset_from_arrays(str(path), arrays, spec)


def _load_minari(dataset_id: str, allow_download: bool) -> Dataset:
    import minari

    try:
        source = minari.load_dataset(dataset_id, download=allow_download)
    except Exception as error:  # minari raises several types for a missing or unreachable dataset
        store = os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")
        raise UserError(
            f"Minari dataset '{dataset_id}' could not be loaded from {store} ({error}); "
            f"download it with `minari download {dataset_id}` on a machine with network"
        ) from None
    columns: Dict[str, list] = {key: [] for key in ("observations", "actions", "rewards", "terminals", "timeouts")}
    for episode in source.iterate_episodes():
        if isinstance(episode.observations, dict):
            raise UserError(f"Minari dataset '{dataset_id}' has dict observations, which no mapping flattens yet")
        columns["observations"].append(episode.observations[:-1])
        columns["actions"].append(episode.actions)
        columns["rewards"].append(episode.rewards)
        columns["terminals"].append(episode.terminations)
        columns["timeouts"].append(episode.truncations)
    arrays = {key: np.concatenate(values) for key, values in columns.items()}
    eval_env = source.recover_environment(eval_env=True)  # the dataset's recorded evaluation env
    env_spec = eval_env.spec
    eval_env.close()
    metadata = source.storage.metadata
    spec = EnvSpec(
        env_id=env_spec.id,
        kwargs=dict(env_spec.kwargs),
        max_episode_steps=env_spec.max_episode_steps,
        ref_min_score=metadata.get("ref_min_score"),
        ref_max_score=metadata.get("ref_max_score"),
    )
    return _dataset_from_arrays(f"minari:{dataset_id}", arrays, spec)


def _dataset_from_arrays(name: str, arrays: Dict[str, np.ndarray], spec: EnvSpec) -> Dataset:
    count = len(arrays["observations"])
    for key, values in arrays.items():
        if len(values) != count:
            raise UserError(f"dataset '{name}': '{key}' has {len(values)} rows but 'observations' has {count}")
    timeouts = arrays.get("timeouts", np.zeros(count, dtype=bool))
    return Dataset(
        name=name,
        observations=arrays["observations"].astype(np.float32).reshape(count, -1),
        actions=arrays["actions"].astype(np.float32).reshape(count, -1),
        rewards=arrays["rewards"].astype(np.float32).reshape(count),
        terminals=arrays["terminals"].astype(bool).reshape(count),
        timeouts=timeouts.astype(bool).reshape(count),
        env=spec,
    )


def validate_dataset(dataset: Dataset) -> None:
    """Rejects empty data, NaN/inf values and shapes that do not match the evaluation env."""
    if len(dataset.observations) == 0:
        raise UserError(f"dataset '{dataset.name}' is empty")
    for key in ("observations", "actions", "rewards"):
        values = getattr(dataset, key)
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if bad.any():
            raise UserError(
                f"dataset '{dataset.name}' has {int(bad.sum())} rows with NaN or inf in '{key}' "
                f"(first at row {int(np.argmax(bad))}); clean or regenerate the file"
            )
    try:
        env = dataset.env.make()
    except Exception as error:  # gymnasium raises many types for an unknown id or bad kwargs
        raise UserError(f"dataset '{dataset.name}': cannot build env '{dataset.env.env_id}' ({error})") from None
    obs_dim, act_dim = int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    env.close()
    if dataset.observations.shape[1] != obs_dim or dataset.actions.shape[1] != act_dim:
        raise UserError(
            f"dataset '{dataset.name}' has {dataset.observations.shape[1]}-dim observations and "
            f"{dataset.actions.shape[1]}-dim actions, but its env {dataset.env.env_id} has {obs_dim} and "
            f"{act_dim}: the data was not recorded in this env (check metadata/env_id and env_kwargs)"
        )


def episode_bounds(terminals: np.ndarray, timeouts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Start and (exclusive) end index of every episode; a trailing unfinished episode is kept."""
    ends = np.flatnonzero(terminals | timeouts) + 1
    if len(ends) == 0 or ends[-1] != len(terminals):
        ends = np.append(ends, len(terminals))
    starts = np.concatenate([[0], ends[:-1]])
    return starts, ends


def returns_to_go(rewards: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Undiscounted sum of the rewards from each step to the end of its episode."""
    suffix = np.concatenate([np.cumsum(rewards[::-1], dtype=np.float64)[::-1], [0.0]])
    episode_end = np.repeat(ends, ends - starts)
    return (suffix[:-1] - suffix[episode_end]).astype(np.float32)


def state_stats(observations: np.ndarray, eps: float = 1e-6) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and std used to normalise states; frozen after loading."""
    return observations.mean(0), observations.std(0) + eps
