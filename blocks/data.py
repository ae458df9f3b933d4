"""Synced plumbing: D4RL-format datasets (D4RL names, generated hdf5 files, Minari ids) and their envs.

Canonical source; see blocks/runtime.py for how blocks are copied into scripts. D4RL's v1/v2
locomotion names are handled here; every other D4RL name goes through the `d4rl_compat` package of
this repository, imported only when such a name is asked for.
"""

import importlib
import json
import os
import shutil
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import gymnasium as gym
import h5py
import numpy as np

from blocks.runtime import UserError, did_you_mean

# === block ===
D4RL_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl/"
# D4RL locomotion domain -> (Gymnasium env and kwargs, D4RL's reference returns of a random and an expert policy).
LOCOMOTION = {
    "hopper": ("Hopper-v5", {}, -20.272305, 3234.3),
    "halfcheetah": ("HalfCheetah-v5", {}, -280.178953, 12135.0),
    "walker2d": ("Walker2d-v5", {}, 1.629008, 4592.3),
    "ant": ("Ant-v4", {"use_contact_forces": True}, -325.6, 3879.7),  # D4RL's 111-dim observation
}
LOCOMOTION_LEVELS = ("random", "medium", "expert", "medium-replay", "medium-expert", "full-replay")


@dataclass(frozen=True)
class EnvSpec:
    """How to build a dataset's evaluation env and normalise its returns."""

    env_id: str
    kwargs: Dict[str, Any] = field(default_factory=dict)
    max_episode_steps: Optional[int] = None
    ref_min_score: Optional[float] = None
    ref_max_score: Optional[float] = None
    reports_success: bool = False  # goal-reaching envs put a 0/1 `success` in the step info
    adapter: str = ""  # a d4rl_compat adapter that gives the modern env D4RL's observation layout

    def make(self) -> gym.Env:
        if self.env_id not in gym.registry:  # AntMaze, PointMaze, Adroit, Kitchen
            gym.register_envs(importlib.import_module("gymnasium_robotics"))
        env = gym.make(self.env_id, max_episode_steps=self.max_episode_steps, **self.kwargs)
        return d4rl_compat(self.env_id).wrap(env, self.adapter) if self.adapter else env

    def make_vector(self, num_envs: int) -> gym.vector.VectorEnv:
        # Sync, not async: on few cores batching the policy across envs is where time is saved.
        return gym.vector.SyncVectorEnv([self.make for _ in range(num_envs)])

    def metrics(self, prefix: str, returns: np.ndarray, lengths: np.ndarray, success: np.ndarray) -> Dict[str, float]:
        """Return, D4RL-normalised score (when reference scores are known), length and success rate."""
        metrics = {"return_mean": np.mean(returns), "return_std": np.std(returns), "length_mean": np.mean(lengths)}
        if self.ref_min_score is not None and self.ref_max_score is not None:
            scores = 100.0 * (np.asarray(returns) - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)
            metrics.update(normalized_score_mean=scores.mean(), normalized_score_std=scores.std())
        if self.reports_success:
            metrics["success_rate"] = np.mean(success)
        return {f"{prefix}/{key}": float(value) for key, value in metrics.items()}


@dataclass
class Dataset:
    """Transitions in file order; an episode ends at a terminal (true end) or a timeout (time limit)."""

    name: str
    observations: np.ndarray  # (N, obs_dim) float32
    actions: np.ndarray  # (N, act_dim) float32
    rewards: np.ndarray  # (N,) float32
    terminals: np.ndarray  # (N,) bool
    timeouts: np.ndarray  # (N,) bool
    env: EnvSpec
    extras: Dict[str, np.ndarray] = field(default_factory=dict)  # next_observations, where the file has them


def d4rl_compat(name: str) -> Any:
    try:
        return importlib.import_module("d4rl_compat")
    except ImportError:
        raise UserError(
            f"dataset '{name}' needs the d4rl_compat package of this repository (AntMaze, Adroit, Maze2D, Kitchen, "
            "v0 names): run `pip install -e .` in the repository, or use a v1/v2 locomotion name, an hdf5 file "
            "or a minari:<id>"
        ) from None


def load_dataset(name: str, allow_download: bool = True) -> Dataset:
    """`name`: a D4RL name (hopper-medium-v2), `minari:<id>`, or a path to a D4RL-format hdf5 file."""
    if name.startswith("minari:"):
        dataset = load_minari(name.removeprefix("minari:"), allow_download)
    elif name.endswith((".hdf5", ".h5")) or os.path.sep in name:
        how = "regenerate it with `python -m d4rl_compat.generate` (or copy it again)"
        if not os.path.isfile(name):
            raise UserError(f"dataset file {name} does not exist; write one with `python -m d4rl_compat.generate`")
        arrays, meta = read_hdf5(Path(name), how)
        if "env_id" not in meta:
            raise UserError(
                f"{name} has no metadata/env_id, so its evaluation env is unknown; write metadata/env_id "
                "(and metadata/env_kwargs as JSON) into the file, or load a D4RL file by its D4RL name"
            )
        number = lambda key, kind: None if meta.get(key) is None else kind(meta[key])
        fields = number("max_episode_steps", int), number("ref_min_score", float), number("ref_max_score", float)
        fields += bool(meta.get("reports_success", False)), meta.get("adapter", "")  # d4rl_compat's maze2d files
        dataset = make_dataset(name, arrays, EnvSpec(meta["env_id"], json.loads(meta.get("env_kwargs", "{}")), *fields))
    else:
        domain, _, level = name.rpartition("-v")[0].partition("-")
        if domain in LOCOMOTION and level in LOCOMOTION_LEVELS and name[-3:] in ("-v1", "-v2"):
            env_id, kwargs, low, high = LOCOMOTION[domain]
            url = f"{D4RL_URL}gym_mujoco_{name[-2:]}/{domain}_{level.replace('-', '_')}-{name[-2:]}.hdf5"
            env = EnvSpec(env_id, dict(kwargs), 1000, low, high)
        elif name in d4rl_compat(name).D4RL_FILES:
            fields = d4rl_compat(name).d4rl_env_spec(name)
            url, env = d4rl_compat(name).dataset_url(name), EnvSpec(**{k: v for k, v in fields.items() if k != "note"})
        else:
            names = [f"{d}-{level}-v2" for d in LOCOMOTION for level in LOCOMOTION_LEVELS]
            try:
                names += list(importlib.import_module("d4rl_compat").D4RL_FILES)
            except ImportError:
                pass  # suggestions from the locomotion names alone
            raise UserError(
                f"unknown dataset '{name}'{did_you_mean(name, names)}: not a D4RL name (e.g. hopper-medium-v2), "
                "not 'minari:<dataset id>' and not a path to an .hdf5 file"
            )
        path = Path(os.environ.get("D4RL_DATASET_DIR", "~/.d4rl/datasets")).expanduser() / os.path.basename(url)
        how = f"download it with `curl -L --create-dirs -o {path} {url}`, or set D4RL_DATASET_DIR to its folder"
        if not path.exists():
            if not allow_download:
                raise UserError(f"D4RL dataset '{name}' not found at {path} (downloads are off); {how}")
            partial = path.with_suffix(".partial")  # an interrupted or wrong download never takes the name
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                with urllib.request.urlopen(url, timeout=30) as source, open(partial, "wb") as file:
                    shutil.copyfileobj(source, file)
            except OSError as error:
                raise UserError(
                    f"D4RL dataset '{name}' not at {path}; downloading {url} failed ({error}); {how}"
                ) from None
            if not h5py.is_hdf5(partial):
                partial.unlink()
                raise UserError(f"downloading {url} gave something other than hdf5 (removed); {how}")
            os.replace(partial, path)
        arrays = read_hdf5(path, how)[0]
        if "timeouts" not in arrays:  # D4RL's own rule for its files without them (v0)
            arrays["timeouts"] = d4rl_compat(name).timeouts_every(env.max_episode_steps, arrays["terminals"])
        dataset = make_dataset(name, arrays, env)
    validate_dataset(dataset)
    return dataset


def read_hdf5(path: Path, how: str = "write or fetch it again") -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """The flat arrays and the `metadata/` group of a D4RL-format file; `how`: how to get the file again."""
    keys = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
    try:
        with h5py.File(path, "r") as file:
            if any(key not in file for key in keys[:4]):
                raise UserError(f"{path} is not a D4RL-format file: missing {[k for k in keys[:4] if k not in file]}")
            arrays = {key: file[key][()] for key in keys if key in file}
            meta = {key: value[()] for key, value in file["metadata"].items()} if "metadata" in file else {}
    except OSError as error:
        raise UserError(
            f"cannot read {path} ({error}): the file is truncated or corrupt; delete it and {how}"
        ) from None
    return arrays, {key: value.decode() if isinstance(value, bytes) else value for key, value in meta.items()}


def load_minari(dataset_id: str, allow_download: bool) -> Dataset:
    import minari

    try:
        source = minari.load_dataset(dataset_id, download=allow_download)
    except Exception as error:  # minari raises several types for a missing or unreachable dataset
        store = os.environ.get("MINARI_DATASETS_PATH", "~/.minari/datasets")
        raise UserError(
            f"Minari dataset '{dataset_id}' could not be loaded from {store} ({error})"
            f"{did_you_mean(dataset_id, minari.list_local_datasets())}; download it with "
            f"`minari download {dataset_id}` on a machine with network"
        ) from None
    episodes = list(source.iterate_episodes())
    if episodes and isinstance(episodes[0].observations, dict):
        raise UserError(f"Minari dataset '{dataset_id}' has dict observations, which no mapping flattens yet")
    columns = {"observations": lambda e: e.observations[:-1], "next_observations": lambda e: e.observations[1:]}
    columns.update(actions=lambda e: e.actions, rewards=lambda e: e.rewards, terminals=lambda e: e.terminations)
    columns["timeouts"] = lambda e: e.truncations
    arrays = {key: np.concatenate([column(episode) for episode in episodes]) for key, column in columns.items()}
    env, meta = source.recover_environment(eval_env=True), source.storage.metadata  # its evaluation env
    scores = meta.get("ref_min_score"), meta.get("ref_max_score")
    spec = EnvSpec(env.spec.id, dict(env.spec.kwargs), env.spec.max_episode_steps, *scores)
    if env.spec.id == "d4rl_compat/D4RLFrame-v0":  # D4RL's layout through an adapter (d4rl_compat.minari_export)
        kw = env.spec.kwargs  # the arguments of d4rl_compat.envs.make_adapted
        spec = EnvSpec(kw["env_id"], kw["env_kwargs"], kw["limit"], *scores, kw["reports_success"], kw["adapter"])
    env.close()
    return make_dataset(f"minari:{dataset_id}", arrays, spec)


def make_dataset(name: str, arrays: Dict[str, np.ndarray], env: EnvSpec) -> Dataset:
    if "timeouts" not in arrays:
        raise UserError(
            f"dataset '{name}' has no 'timeouts' array. Without it the end of an episode cut by the time limit "
            "looks like the start of the next, and episodes would merge: write 'timeouts' (true at each "
            "time-limit end) into the file"
        )
    for key in ("observations", "actions", "rewards", "next_observations"):
        if key in arrays and not np.issubdtype(arrays[key].dtype, np.number):
            raise UserError(f"dataset '{name}': '{key}' holds {arrays[key].dtype} values, not numbers")
    count = len(arrays["observations"])
    if any(len(values) != count for values in arrays.values()):
        raise UserError(f"dataset '{name}': arrays of different lengths { ({k: len(v) for k, v in arrays.items()}) }")
    observations, actions = (arrays[key].astype(np.float32).reshape(count, -1) for key in ("observations", "actions"))
    rewards = arrays["rewards"].astype(np.float32).reshape(count)
    for key in ("terminals", "timeouts"):
        if not np.isin(arrays[key], (0, 1)).all():
            raise UserError(f"dataset '{name}': '{key}' must hold only 0/1 (or booleans), one per transition")
    terminals, timeouts = (arrays[key].astype(bool).reshape(count) for key in ("terminals", "timeouts"))
    extras = {key: arrays[key].reshape(count, -1) for key in ("next_observations",) if key in arrays}
    if extras and extras["next_observations"].shape != observations.shape:
        raise UserError(
            f"dataset '{name}': next_observations of shape {extras['next_observations'].shape}, "
            f"observations {observations.shape}"
        )
    return Dataset(name, observations, actions, rewards, terminals, timeouts, env, extras)


def validate_dataset(dataset: Dataset) -> None:
    """Rejects NaN/inf values and shapes that do not match the evaluation env."""
    arrays = {"observations": dataset.observations, "actions": dataset.actions, "rewards": dataset.rewards}
    for key, values in {**arrays, **dataset.extras}.items():
        bad = ~np.isfinite(values.reshape(len(values), -1).astype(np.float64)).all(axis=1)
        if bad.any():
            raise UserError(
                f"dataset '{dataset.name}' has {int(bad.sum())} rows with NaN or inf in '{key}' "
                f"(first at row {int(np.argmax(bad))}); clean or regenerate the file"
            )
    try:
        env = dataset.env.make()
    except gym.error.Error as error:
        raise UserError(f"dataset '{dataset.name}': cannot build env '{dataset.env.env_id}' ({error})") from None
    shapes = (env.observation_space.shape[0], env.action_space.shape[0])
    env.close()
    if (dataset.observations.shape[1], dataset.actions.shape[1]) != shapes:
        raise UserError(
            f"dataset '{dataset.name}' has {dataset.observations.shape[1]}-dim observations and "
            f"{dataset.actions.shape[1]}-dim actions, but its env {dataset.env.env_id} has {shapes[0]} and "
            f"{shapes[1]}: the data was not recorded in this env (check metadata/env_id and env_kwargs)"
        )


def episode_bounds(terminals: np.ndarray, timeouts: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Start and (exclusive) end index of every episode; a trailing unfinished episode is kept."""
    ends = np.flatnonzero(terminals | timeouts) + 1
    if len(ends) == 0 or ends[-1] != len(terminals):
        ends = np.append(ends, len(terminals))
    return np.concatenate([[0], ends[:-1]]), ends


def state_stats(observations: np.ndarray, eps: float = 1e-6) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and std that normalise states; fixed once the dataset is loaded."""
    return observations.mean(0), observations.std(0) + eps


def step_success(infos: Dict[str, Any], num_envs: int) -> np.ndarray:
    """Per env of a vector env: did this step report reaching the goal (info['success'])?"""
    if "success" not in infos:
        return np.zeros(num_envs, dtype=bool)
    return np.asarray(infos["success"], dtype=bool) & np.asarray(infos.get("_success", True), dtype=bool)
