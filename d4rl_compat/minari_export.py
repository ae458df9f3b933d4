"""Writes a D4RL-format hdf5 file (a generated one, or D4RL's own) as a Minari dataset in the local store.

    python -m d4rl_compat.minari_export --path data/hopper-medium.hdf5 --dataset_id generated/hopper/medium-v0

d3rlpy, TorchRL and Minari users then load it with `minari.load_dataset(...)`, and the training scripts
with `--dataset minari:generated/hopper/medium-v0`. Each episode (ended by a terminal, a timeout or the
file's end) becomes one Minari episode: observations gain the final next observation, terminals become
terminations and timeouts truncations. The env, its episode limit and the reference scores come from the
file's metadata; an env observed through a d4rl_compat adapter (Maze2D, AntMaze) is stored as
`d4rl_compat/D4RLFrame-v0`, whose entry point rebuilds it, so loading it needs this package installed.
The store is $MINARI_DATASETS_PATH (default ~/.minari/datasets).
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import gymnasium as gym
import h5py
import numpy as np

from d4rl_compat.envs import ADAPTED_ENV_ID
from d4rl_compat.generate import UserError, parse_arguments, run_command


@dataclass
class ExportConfig:
    path: str = ""  # a D4RL-format hdf5 file with next_observations and metadata/env_id
    dataset_id: str = ""  # <namespace>/<name>-v<version>, e.g. generated/hopper/medium-v0
    description: Optional[str] = None  # default: the file's dataset name and behaviour policy


def read_file(path: Path) -> tuple:
    with h5py.File(path, "r") as file:
        missing = [key for key in ("next_observations", "timeouts", "metadata/env_id") if key not in file]
        if missing:
            raise UserError(f"{path} lacks {missing}: write it with `python -m d4rl_compat.generate`")
        keys = ("observations", "actions", "rewards", "terminals", "timeouts", "next_observations")
        arrays = {key: file[key][()] for key in keys}
        meta = {key: value[()] for key, value in file["metadata"].items()}
    return arrays, {key: value.decode() if isinstance(value, bytes) else value for key, value in meta.items()}


def export(path: Path, dataset_id: str, description: Optional[str] = None) -> str:
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    arrays, meta = read_file(path)
    if dataset_id in minari.list_local_datasets():
        raise UserError(f"Minari dataset '{dataset_id}' already exists in the local store; choose another id")
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"]) + 1
    if len(ends) == 0 or ends[-1] != len(arrays["rewards"]):
        ends = np.append(ends, len(arrays["rewards"]))
    episodes = []
    for start, end in zip(np.concatenate([[0], ends[:-1]]), ends):
        observations = np.concatenate([arrays["observations"][start:end], arrays["next_observations"][end - 1 : end]])
        terminations, truncations = arrays["terminals"][start:end].astype(bool), arrays["timeouts"][start:end]
        truncations = truncations.astype(bool) | ((np.arange(start, end) == end - 1) & ~terminations)
        episodes.append(
            EpisodeBuffer(
                observations=observations,
                actions=arrays["actions"][start:end],
                rewards=arrays["rewards"][start:end].tolist(),
                terminations=terminations.tolist(),
                truncations=truncations.tolist(),
            )
        )
    kwargs = json.loads(meta.get("env_kwargs", "{}"))
    limit = int(meta["max_episode_steps"]) if "max_episode_steps" in meta else None
    if meta.get("adapter"):  # D4RL's layout comes from an adapter: Minari names the entry point that applies it
        adapted = dict(env_id=meta["env_id"], adapter=meta["adapter"], env_kwargs=kwargs, limit=limit)
        env = gym.make(ADAPTED_ENV_ID, **adapted, reports_success=bool(meta.get("reports_success", False)))
    else:
        env = gym.make(meta["env_id"], max_episode_steps=limit, **kwargs)
    scores = {key: float(meta[key]) for key in ("ref_min_score", "ref_max_score") if key in meta}
    text = description or f"{meta.get('dataset_name', path.stem)}: {meta.get('policy_description', 'see the source')}"
    minari.create_dataset_from_buffers(
        dataset_id,
        episodes,
        env=env,
        eval_env=env,
        algorithm_name=meta.get("policy"),
        author="d4rl_compat generator",
        author_email="none",
        code_permalink="d4rl_compat/generate.py",
        description=text,
        **scores,
    )
    env.close()
    return dataset_id


def main(args: Optional[List[str]] = None) -> None:
    config = parse_arguments(ExportConfig, args)
    if not config.path or not Path(config.path).is_file():
        raise UserError(f"--path must name an existing D4RL-format file, not '{config.path}'")
    if not config.dataset_id:
        raise UserError("--dataset_id is required, e.g. generated/hopper/medium-v0")
    dataset_id = export(Path(config.path), config.dataset_id, config.description)
    print(f"wrote Minari dataset '{dataset_id}'; train on it with --dataset minari:{dataset_id}")


if __name__ == "__main__":
    run_command(main)
