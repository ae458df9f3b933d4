"""IQL offline-to-online fine-tuning (Kostrikov et al. 2021), in one file.

    python algorithms/finetune/iql.py --config_path configs/finetune/iql/antmaze/umaze_v2.yaml

The IQL update of algorithms/offline/iql.py; after `offline_iterations` updates on the dataset,
each collected episode (Gaussian samples clipped to [-1, 1]) joins the dataset's buffer and
len(episode) x `utd_ratio` updates follow, sampled uniformly (official; `mixing_ratio` set to a
number gives Cal-QL-style mixed batches instead). No actor lr decay in either phase (official
fine-tune config; CORL keeps stepping a cosine schedule past T_max, so its lr climbs back up).
"""
import dataclasses
import functools
import inspect
import json
import math
import os
import random
import re
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type, TypeVar

import gymnasium as gym
import gymnasium_robotics
import h5py
import numpy as np
import pyrallis
import torch
import torch.nn as nn
from tqdm import tqdm


# === shared block: runtime (edit blocks/runtime.py, then run tools/sync_blocks.py) ===
ConfigT = TypeVar("ConfigT")


class UserError(Exception):
    """Bad input (config, dataset, environment): reported as one clear message, exit code 2."""


def run_main(main: Callable[[], Any]) -> None:
    """Runs a script's main(); turns a UserError into a message on stderr and exit code 2."""
    try:
        main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def parse_config(config_class: Type[ConfigT], args: Optional[List[str]] = None) -> ConfigT:
    """Parses `--config_path x.yaml` plus CLI overrides into `config_class`.

    `--resume RUN_DIR` re-reads RUN_DIR/config.yaml, so a resumed run keeps its settings;
    further CLI flags still override it.
    """
    args = list(sys.argv[1:] if args is None else args)
    config_path = None
    if "--resume" in args and "--config_path" not in args:
        position = args.index("--resume")
        if position + 1 >= len(args):
            raise UserError("--resume needs the run directory to continue, e.g. --resume runs/dt/...")
        config_path = os.path.join(args[position + 1], "config.yaml")
        if not os.path.isfile(config_path):
            raise UserError(f"cannot resume: {config_path} does not exist (is it a run directory?)")
    if "--config_path" in args:
        position = args.index("--config_path")
        path = args[position + 1] if position + 1 < len(args) else ""
        if not os.path.isfile(path):
            raise UserError(f"config file not found: '{path}'")
    # pyrallis re-reads and re-parses the whole script's source for every field's help text
    # (seconds for a long script): read it once per parse.
    original_getsource = inspect.getsource
    inspect.getsource = functools.lru_cache(maxsize=None)(original_getsource)
    try:
        return pyrallis.parse(config_class=config_class, config_path=config_path, args=args)
    except Exception as error:  # pyrallis raises bare Exceptions for YAML keys and values
        valid = ", ".join(field.name for field in dataclasses.fields(config_class))
        raise UserError(f"invalid config: {error}. Valid keys of {config_class.__name__}: {valid}") from None
    finally:
        inspect.getsource = original_getsource


def set_seed(seed: int, deterministic_torch: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic_torch)


def pick_device(device: str) -> torch.device:
    """'auto' means cuda when available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{device}' requested but CUDA is not available; use --device cpu or auto")
    return torch.device(device)


def prepare_run_dir(config: Any, algorithm: str) -> Path:
    """Creates a fresh run directory (never reusing one with content) or returns the one to resume."""
    if config.resume:
        run_dir = Path(config.resume)
        if not any((run_dir / "checkpoints").glob("step_*.pt")):
            raise UserError(f"cannot resume: no checkpoint in {run_dir / 'checkpoints'}")
        return run_dir
    if config.run_dir:
        run_dir = Path(config.run_dir)
    else:
        name = config.dataset
        dataset_tag = Path(name).stem if name.endswith((".hdf5", ".h5")) else name.replace(":", "_").replace("/", "_")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs") / algorithm / dataset_tag / f"seed{config.train_seed}-{stamp}"
    if run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(
            f"run directory {run_dir} already has content; pass --resume {run_dir} to continue it "
            "or choose another --run_dir (nothing was overwritten)"
        )
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    with open(run_dir / "config.yaml", "w") as file:
        pyrallis.dump(config, file)
    return run_dir


class RunLogger:
    """Appends metrics to RUN_DIR/metrics.jsonl and mirrors them to wandb (offline by default)."""

    def __init__(self, run_dir: Path, config: Any, resume_step: int = 0):
        self.run_dir = run_dir
        self.metrics_path = run_dir / "metrics.jsonl"
        if resume_step and self.metrics_path.exists():
            # Rows written after the checkpoint we resume from will be produced again.
            rows = [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line]
            kept = "".join(json.dumps(row) + "\n" for row in rows if row["step"] <= resume_step)
            self.metrics_path.write_text(kept)
        self.wandb_run = None
        if config.wandb_mode != "disabled":
            import wandb

            id_path = run_dir / "wandb_id.txt"
            if not id_path.exists():
                id_path.write_text(os.urandom(6).hex())
            self.wandb_run = wandb.init(
                project=config.project, group=config.group, name=config.name, mode=config.wandb_mode,
                dir=str(run_dir), id=id_path.read_text(), resume="allow", config=dataclasses.asdict(config),
            )

    def log(self, step: int, metrics: Dict[str, float]) -> None:
        with open(self.metrics_path, "a") as file:
            file.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log(metrics, step=step)

    def finish(self, summary: Dict[str, Any]) -> None:
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.summary.update(summary)
            self.wandb_run.finish()


def rng_states() -> Dict[str, Any]:
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: Dict[str, Any]) -> None:
    # RNG states must be CPU byte tensors, wherever map_location put the rest of the checkpoint.
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"].cpu())
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.cpu() for state in states["cuda"]])


def save_checkpoint(run_dir: Path, step: int, state: Dict[str, Any], keep: int) -> Path:
    """Writes checkpoints/step_<step>.pt atomically and keeps only the newest `keep` files."""
    directory = run_dir / "checkpoints"
    path = directory / f"step_{step:09d}.pt"
    partial = path.with_suffix(".pt.partial")
    torch.save({"step": step, "rng": rng_states(), **state}, partial)
    os.replace(partial, path)
    for old in sorted(directory.glob("step_*.pt"))[:-keep]:
        old.unlink()
    return path


def load_latest_checkpoint(run_dir: Path, device: torch.device) -> Dict[str, Any]:
    """Loads the newest checkpoint and restores the RNG states it holds."""
    path = sorted((run_dir / "checkpoints").glob("step_*.pt"))[-1]
    checkpoint = torch.load(path, map_location=device, weights_only=False)
    restore_rng_states(checkpoint["rng"])
    return checkpoint


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the training loop polls, so it can checkpoint and exit.

    A second signal stops at once.
    """

    def __init__(self) -> None:
        self.signal_number: Optional[int] = None
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self._handle)

    def _handle(self, number: int, frame: Any) -> None:
        if self.signal_number is not None:
            raise KeyboardInterrupt
        self.signal_number = number

    @property
    def requested(self) -> bool:
        return self.signal_number is not None

    def exit(self, checkpoint_path: Path) -> None:
        print(f"\nstopped by signal {self.signal_number}; checkpoint written to {checkpoint_path}", file=sys.stderr)
        sys.exit(128 + self.signal_number)
# === end shared block: runtime ===


# === shared block: envs (edit blocks/envs.py, then run tools/sync_blocks.py) ===
gym.register_envs(gymnasium_robotics)  # AntMaze, PointMaze, Adroit and Kitchen envs

D4RL_URL_ROOT = "http://rail.eecs.berkeley.edu/datasets/offline_rl/"
# Every D4RL dataset name of the supported domains -> its file below D4RL_URL_ROOT.
D4RL_FILES = {
    "ant-expert-v0": "gym_mujoco/ant_expert.hdf5",
    "ant-expert-v1": "gym_mujoco_v1/ant_expert-v1.hdf5",
    "ant-expert-v2": "gym_mujoco_v2/ant_expert-v2.hdf5",
    "ant-full-replay-v1": "gym_mujoco_v1/ant_full_replay-v1.hdf5",
    "ant-full-replay-v2": "gym_mujoco_v2/ant_full_replay-v2.hdf5",
    "ant-medium-expert-v0": "gym_mujoco/ant_medium_expert.hdf5",
    "ant-medium-expert-v1": "gym_mujoco_v1/ant_medium_expert-v1.hdf5",
    "ant-medium-expert-v2": "gym_mujoco_v2/ant_medium_expert-v2.hdf5",
    "ant-medium-replay-v0": "gym_mujoco/ant_mixed.hdf5",
    "ant-medium-replay-v1": "gym_mujoco_v1/ant_medium_replay-v1.hdf5",
    "ant-medium-replay-v2": "gym_mujoco_v2/ant_medium_replay-v2.hdf5",
    "ant-medium-v0": "gym_mujoco/ant_medium.hdf5",
    "ant-medium-v1": "gym_mujoco_v1/ant_medium-v1.hdf5",
    "ant-medium-v2": "gym_mujoco_v2/ant_medium-v2.hdf5",
    "ant-random-v0": "gym_mujoco/ant_random.hdf5",
    "ant-random-v1": "gym_mujoco_v1/ant_random-v1.hdf5",
    "ant-random-v2": "gym_mujoco_v2/ant_random-v2.hdf5",
    "antmaze-large-diverse-v0": "ant_maze_new/Ant_maze_hardest-maze_noisy_multistart_True_multigoal_True_sparse.hdf5",
    "antmaze-large-diverse-v2": "ant_maze_v2/Ant_maze_hardest-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5",
    "antmaze-large-play-v0": "ant_maze_new/Ant_maze_hardest-maze_noisy_multistart_True_multigoal_False_sparse.hdf5",
    "antmaze-large-play-v2": "ant_maze_v2/Ant_maze_hardest-maze_noisy_multistart_True_multigoal_False_sparse_fixed.hdf5",
    "antmaze-medium-diverse-v0": "ant_maze_new/Ant_maze_big-maze_noisy_multistart_True_multigoal_True_sparse.hdf5",
    "antmaze-medium-diverse-v2": "ant_maze_v2/Ant_maze_big-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5",
    "antmaze-medium-play-v0": "ant_maze_new/Ant_maze_big-maze_noisy_multistart_True_multigoal_False_sparse.hdf5",
    "antmaze-medium-play-v2": "ant_maze_v2/Ant_maze_big-maze_noisy_multistart_True_multigoal_False_sparse_fixed.hdf5",
    "antmaze-umaze-diverse-v0": "ant_maze_new/Ant_maze_u-maze_noisy_multistart_True_multigoal_True_sparse.hdf5",
    "antmaze-umaze-diverse-v2": "ant_maze_v2/Ant_maze_u-maze_noisy_multistart_True_multigoal_True_sparse_fixed.hdf5",
    "antmaze-umaze-v0": "ant_maze_new/Ant_maze_u-maze_noisy_multistart_False_multigoal_False_sparse.hdf5",
    "antmaze-umaze-v2": "ant_maze_v2/Ant_maze_u-maze_noisy_multistart_False_multigoal_False_sparse_fixed.hdf5",
    "door-cloned-v0": "hand_dapg/door-demos-v0-bc-combined.hdf5",
    "door-cloned-v1": "hand_dapg_v1/door-cloned-v1.hdf5",
    "door-expert-v0": "hand_dapg/door-v0_expert_clipped.hdf5",
    "door-expert-v1": "hand_dapg_v1/door-expert-v1.hdf5",
    "door-human-v0": "hand_dapg/door-v0_demos_clipped.hdf5",
    "door-human-v1": "hand_dapg_v1/door-human-v1.hdf5",
    "halfcheetah-expert-v0": "gym_mujoco/halfcheetah_expert.hdf5",
    "halfcheetah-expert-v1": "gym_mujoco_v1/halfcheetah_expert-v1.hdf5",
    "halfcheetah-expert-v2": "gym_mujoco_v2/halfcheetah_expert-v2.hdf5",
    "halfcheetah-full-replay-v1": "gym_mujoco_v1/halfcheetah_full_replay-v1.hdf5",
    "halfcheetah-full-replay-v2": "gym_mujoco_v2/halfcheetah_full_replay-v2.hdf5",
    "halfcheetah-medium-expert-v0": "gym_mujoco/halfcheetah_medium_expert.hdf5",
    "halfcheetah-medium-expert-v1": "gym_mujoco_v1/halfcheetah_medium_expert-v1.hdf5",
    "halfcheetah-medium-expert-v2": "gym_mujoco_v2/halfcheetah_medium_expert-v2.hdf5",
    "halfcheetah-medium-replay-v0": "gym_mujoco/halfcheetah_mixed.hdf5",
    "halfcheetah-medium-replay-v1": "gym_mujoco_v1/halfcheetah_medium_replay-v1.hdf5",
    "halfcheetah-medium-replay-v2": "gym_mujoco_v2/halfcheetah_medium_replay-v2.hdf5",
    "halfcheetah-medium-v0": "gym_mujoco/halfcheetah_medium.hdf5",
    "halfcheetah-medium-v1": "gym_mujoco_v1/halfcheetah_medium-v1.hdf5",
    "halfcheetah-medium-v2": "gym_mujoco_v2/halfcheetah_medium-v2.hdf5",
    "halfcheetah-random-v0": "gym_mujoco/halfcheetah_random.hdf5",
    "halfcheetah-random-v1": "gym_mujoco_v1/halfcheetah_random-v1.hdf5",
    "halfcheetah-random-v2": "gym_mujoco_v2/halfcheetah_random-v2.hdf5",
    "hammer-cloned-v0": "hand_dapg/hammer-demos-v0-bc-combined.hdf5",
    "hammer-cloned-v1": "hand_dapg_v1/hammer-cloned-v1.hdf5",
    "hammer-expert-v0": "hand_dapg/hammer-v0_expert_clipped.hdf5",
    "hammer-expert-v1": "hand_dapg_v1/hammer-expert-v1.hdf5",
    "hammer-human-v0": "hand_dapg/hammer-v0_demos_clipped.hdf5",
    "hammer-human-v1": "hand_dapg_v1/hammer-human-v1.hdf5",
    "hopper-expert-v0": "gym_mujoco/hopper_expert.hdf5",
    "hopper-expert-v1": "gym_mujoco_v1/hopper_expert-v1.hdf5",
    "hopper-expert-v2": "gym_mujoco_v2/hopper_expert-v2.hdf5",
    "hopper-full-replay-v1": "gym_mujoco_v1/hopper_full_replay-v1.hdf5",
    "hopper-full-replay-v2": "gym_mujoco_v2/hopper_full_replay-v2.hdf5",
    "hopper-medium-expert-v0": "gym_mujoco/hopper_medium_expert.hdf5",
    "hopper-medium-expert-v1": "gym_mujoco_v1/hopper_medium_expert-v1.hdf5",
    "hopper-medium-expert-v2": "gym_mujoco_v2/hopper_medium_expert-v2.hdf5",
    "hopper-medium-replay-v0": "gym_mujoco/hopper_mixed.hdf5",
    "hopper-medium-replay-v1": "gym_mujoco_v1/hopper_medium_replay-v1.hdf5",
    "hopper-medium-replay-v2": "gym_mujoco_v2/hopper_medium_replay-v2.hdf5",
    "hopper-medium-v0": "gym_mujoco/hopper_medium.hdf5",
    "hopper-medium-v1": "gym_mujoco_v1/hopper_medium-v1.hdf5",
    "hopper-medium-v2": "gym_mujoco_v2/hopper_medium-v2.hdf5",
    "hopper-random-v0": "gym_mujoco/hopper_random.hdf5",
    "hopper-random-v1": "gym_mujoco_v1/hopper_random-v1.hdf5",
    "hopper-random-v2": "gym_mujoco_v2/hopper_random-v2.hdf5",
    "kitchen-complete-v0": "kitchen/mini_kitchen_microwave_kettle_light_slider-v0.hdf5",
    "kitchen-mixed-v0": "kitchen/kitchen_microwave_kettle_bottomburner_light-v0.hdf5",
    "kitchen-partial-v0": "kitchen/kitchen_microwave_kettle_light_slider-v0.hdf5",
    "maze2d-large-dense-v1": "maze2d/maze2d-large-dense-v1.hdf5",
    "maze2d-large-v1": "maze2d/maze2d-large-sparse-v1.hdf5",
    "maze2d-medium-dense-v1": "maze2d/maze2d-medium-dense-v1.hdf5",
    "maze2d-medium-v1": "maze2d/maze2d-medium-sparse-v1.hdf5",
    "maze2d-open-dense-v0": "maze2d/maze2d-open-dense.hdf5",
    "maze2d-open-v0": "maze2d/maze2d-open-sparse.hdf5",
    "maze2d-umaze-dense-v1": "maze2d/maze2d-umaze-dense-v1.hdf5",
    "maze2d-umaze-v1": "maze2d/maze2d-umaze-sparse-v1.hdf5",
    "pen-cloned-v0": "hand_dapg/pen-demos-v0-bc-combined.hdf5",
    "pen-cloned-v1": "hand_dapg_v1/pen-cloned-v1.hdf5",
    "pen-expert-v0": "hand_dapg/pen-v0_expert_clipped.hdf5",
    "pen-expert-v1": "hand_dapg_v1/pen-expert-v1.hdf5",
    "pen-human-v0": "hand_dapg/pen-v0_demos_clipped.hdf5",
    "pen-human-v1": "hand_dapg_v1/pen-human-v1.hdf5",
    "relocate-cloned-v0": "hand_dapg/relocate-demos-v0-bc-combined.hdf5",
    "relocate-cloned-v1": "hand_dapg_v1/relocate-cloned-v1.hdf5",
    "relocate-expert-v0": "hand_dapg/relocate-v0_expert_clipped.hdf5",
    "relocate-expert-v1": "hand_dapg_v1/relocate-expert-v1.hdf5",
    "relocate-human-v0": "hand_dapg/relocate-v0_demos_clipped.hdf5",
    "relocate-human-v1": "hand_dapg_v1/relocate-human-v1.hdf5",
    "walker2d-expert-v0": "gym_mujoco/walker2d_expert.hdf5",
    "walker2d-expert-v1": "gym_mujoco_v1/walker2d_expert-v1.hdf5",
    "walker2d-expert-v2": "gym_mujoco_v2/walker2d_expert-v2.hdf5",
    "walker2d-full-replay-v1": "gym_mujoco_v1/walker2d_full_replay-v1.hdf5",
    "walker2d-full-replay-v2": "gym_mujoco_v2/walker2d_full_replay-v2.hdf5",
    "walker2d-medium-expert-v0": "gym_mujoco/walker2d_medium_expert.hdf5",
    "walker2d-medium-expert-v1": "gym_mujoco_v1/walker2d_medium_expert-v1.hdf5",
    "walker2d-medium-expert-v2": "gym_mujoco_v2/walker2d_medium_expert-v2.hdf5",
    "walker2d-medium-replay-v0": "gym_mujoco/walker_mixed.hdf5",
    "walker2d-medium-replay-v1": "gym_mujoco_v1/walker2d_medium_replay-v1.hdf5",
    "walker2d-medium-replay-v2": "gym_mujoco_v2/walker2d_medium_replay-v2.hdf5",
    "walker2d-medium-v0": "gym_mujoco/walker2d_medium.hdf5",
    "walker2d-medium-v1": "gym_mujoco_v1/walker2d_medium-v1.hdf5",
    "walker2d-medium-v2": "gym_mujoco_v2/walker2d_medium-v2.hdf5",
    "walker2d-random-v0": "gym_mujoco/walker2d_random.hdf5",
    "walker2d-random-v1": "gym_mujoco_v1/walker2d_random-v1.hdf5",
    "walker2d-random-v2": "gym_mujoco_v2/walker2d_random-v2.hdf5",
}
# D4RL reference returns (random policy, expert): normalised score = 100 * (R - min) / (max - min).
D4RL_REF_SCORES = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
    "antmaze": (0.0, 1.0),
    "pen": (96.262799, 3076.8331017826877),
    "door": (-56.512833, 2880.5693087298737),
    "hammer": (-274.856578, 12794.134825156867),
    "relocate": (-6.425911, 4233.877797728884),
    "kitchen": (0.0, 4.0),
    "maze2d-open": (0.01, 20.66),
    "maze2d-open-dense": (11.17817, 27.166538620695782),
    "maze2d-umaze": (23.85, 161.86),
    "maze2d-umaze-dense": (68.537689, 193.66285642381482),
    "maze2d-medium": (13.13, 277.39),
    "maze2d-medium-dense": (44.264742, 297.4552547777125),
    "maze2d-large": (6.7, 273.99),
    "maze2d-large-dense": (30.569041, 303.4857382709002),
}
# D4RL locomotion domain -> (Gymnasium env id, kwargs, how it differs from the env D4RL recorded).
D4RL_LOCOMOTION_ENVS: Dict[str, Tuple[str, Dict[str, Any], str]] = {
    "hopper": ("Hopper-v5", {}, "D4RL recorded Hopper-v3 under mujoco-py; same 11-dim observation"),
    "halfcheetah": ("HalfCheetah-v5", {}, "D4RL recorded HalfCheetah-v3 under mujoco-py; same 17-dim observation"),
    "walker2d": ("Walker2d-v5", {}, "D4RL recorded Walker2d-v3 under mujoco-py; same 17-dim observation"),
    "ant": (
        "Ant-v4", {"use_contact_forces": True},
        "Ant-v4 with contact forces has D4RL's 111-dim layout; mujoco-py 2.x reported all-zero contact "
        "forces, so the last 84 dims of D4RL ant data are zeros while the modern env fills them",
    ),
}
# Maze layouts as D4RL's evaluation envs use them (rows as in D4RL's source; "r" reset, "g" goal).
D4RL_ANTMAZE_MAPS = {
    "umaze": ["11111", "1r001", "11101", "1g001", "11111"],
    "medium": ["11111111", "1r011001", "10010001", "11000111", "10010001", "10100101", "100010g1", "11111111"],
    "large": ["111111111111", "1r0001000001", "101101010101", "100000010001", "101111011101",
              "100101000001", "110101010111", "100100010g01", "111111111111"],
}
D4RL_MAZE2D_MAPS = {
    "open": ["1111111", "1000001", "100g001", "1000001", "1111111"],
    "umaze": ["11111", "1g001", "11101", "10001", "11111"],
    "medium": ["11111111", "10011001", "10010001", "11000111", "10010001", "10100101", "100010g1", "11111111"],
    "large": ["111111111111", "100001000001", "101101010101", "100000010001", "101111011101",
              "100101000001", "110101010111", "100100010g01", "111111111111"],
}
D4RL_MAZE2D_STEPS = {"open": 150, "umaze": 300, "medium": 600, "large": 800}
D4RL_KITCHEN_TASKS = {
    "complete": ["microwave", "kettle", "light switch", "slide cabinet"],
    "partial": ["microwave", "kettle", "light switch", "slide cabinet"],
    "mixed": ["microwave", "kettle", "bottom burner", "light switch"],
}
ADROIT_DOMAINS = ("pen", "door", "hammer", "relocate")
D4RL_DOMAINS = (*D4RL_LOCOMOTION_ENVS, *ADROIT_DOMAINS, "antmaze", "maze2d", "kitchen")


@dataclass(frozen=True)
class EnvSpec:
    """How to build the evaluation env of a dataset and normalise its returns."""

    env_id: str
    kwargs: Dict[str, Any] = field(default_factory=dict)
    max_episode_steps: Optional[int] = None
    ref_min_score: Optional[float] = None
    ref_max_score: Optional[float] = None
    note: str = ""
    reports_success: bool = False  # goal-reaching envs put a 0/1 `success` in the step info
    adapter: str = ""  # a key of ENV_ADAPTERS: makes the modern env speak D4RL's observation layout

    def make(self) -> gym.Env:
        env = gym.make(self.env_id, max_episode_steps=self.max_episode_steps, **self.kwargs)
        return ENV_ADAPTERS[self.adapter](env) if self.adapter else env

    def make_vector(self, num_envs: int) -> gym.vector.VectorEnv:
        # Sync, not async: on few cores batching the policy across envs is where time is saved.
        return gym.vector.SyncVectorEnv([self.make for _ in range(num_envs)])

    def normalized_score(self, returns: np.ndarray) -> Optional[np.ndarray]:
        if self.ref_min_score is None or self.ref_max_score is None:
            return None
        return 100.0 * (np.asarray(returns) - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)


def d4rl_ref_scores(name: str) -> Tuple[float, float]:
    stem = re.sub(r"-v\d+$", "", name)
    family = stem if stem.startswith("maze2d") else stem.split("-")[0]
    return D4RL_REF_SCORES[family]


def _maze_map(rows: List[str], flip: bool) -> List[List[Any]]:
    cells = {"0": 0, "1": 1, "r": "r", "g": "g"}
    grid = [[cells[cell] for cell in row] for row in rows]
    return grid[::-1] if flip else grid


def d4rl_env_spec(name: str) -> EnvSpec:
    """The Gymnasium env that evaluates a D4RL dataset, with D4RL's reference scores."""
    parts = re.sub(r"-v\d+$", "", name).split("-")
    domain = parts[0]
    ref_min, ref_max = d4rl_ref_scores(name)
    if domain in D4RL_LOCOMOTION_ENVS:
        env_id, kwargs, note = D4RL_LOCOMOTION_ENVS[domain]
        return EnvSpec(env_id, dict(kwargs), 1000, ref_min, ref_max, note)
    if domain in ADROIT_DOMAINS:
        note = "AdroitHand*-v1 of gymnasium-robotics; same observations as D4RL's -v0 hand envs"
        if domain != "pen":
            note += "; its dense reward for door/hammer/relocate changed in gymnasium-robotics 1.2.1"
        return EnvSpec(f"AdroitHand{domain.capitalize()}-v1", {}, 100 if domain == "pen" else 200,
                       ref_min, ref_max, note, reports_success=True)
    if domain == "antmaze":
        maze = parts[1]
        return EnvSpec(
            f"AntMaze_{'UMaze' if maze == 'umaze' else maze.capitalize()}-v4",
            {"maze_map": _maze_map(D4RL_ANTMAZE_MAPS[maze], flip=True), "continuing_task": True,
             "reset_target": False},
            700 if maze == "umaze" else 1000, ref_min, ref_max,
            "gymnasium-robotics AntMaze-v4 laid out as D4RL's evaluation maze, observation in D4RL's frame "
            "(start cell at the origin), D4RL's 0.5 goal radius; the ant model is Gymnasium's and the goal "
            "sits at the goal cell's centre (D4RL: up to 1.5 off it)",
            reports_success=True, adapter="d4rl_antmaze",
        )
    if domain == "maze2d":
        maze = parts[1]
        kwargs = {"maze_map": _maze_map(D4RL_MAZE2D_MAPS[maze], flip=False), "continuing_task": True,
                  "reset_target": False, "reward_type": "dense" if "dense" in parts else "sparse"}
        return EnvSpec(
            f"PointMaze_{'UMaze' if maze == 'umaze' else maze.capitalize()}-v3", kwargs, D4RL_MAZE2D_STEPS[maze],
            ref_min, ref_max,
            "gymnasium-robotics PointMaze-v3; observations, actions, target and reward in D4RL's maze2d frame; "
            "start cells and start noise are Gymnasium's",
            reports_success=True, adapter="d4rl_maze2d",
        )
    if domain == "kitchen":
        return EnvSpec(
            "FrankaKitchen-v1", {"tasks_to_complete": D4RL_KITCHEN_TASKS[parts[1]]}, 280, ref_min, ref_max,
            "gymnasium-robotics FrankaKitchen-v1 (needs mujoco < 3.12); observation rebuilt in D4RL's 60-dim "
            "layout (robot qpos, object qpos, goal)",
            adapter="d4rl_kitchen",
        )
    raise UserError(f"D4RL dataset '{name}' has no Gymnasium mapping; mapped domains: {', '.join(D4RL_DOMAINS)}")


class D4RLMazeFrame(gym.Wrapper):
    """Base of the maze adapters: every observation goes through `_to_d4rl`."""

    def _to_d4rl(self, observation: Dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def reset(self, **kwargs: Any) -> Tuple[np.ndarray, Dict[str, Any]]:
        observation, info = self.env.reset(**kwargs)
        return self._to_d4rl(observation), info


class D4RLAntMaze(D4RLMazeFrame):
    """D4RL's antmaze observation [x, y, rest of qpos, qvel], with the start cell at the origin, and
    its sparse task: reward and success 1 within 0.5 of the goal."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        env.unwrapped.position_noise_range = 0.025  # start and goal within 0.1 of their cell centres (D4RL: 0.1)
        maze = env.unwrapped.maze
        start = next((i, j) for i, row in enumerate(maze.maze_map) for j, cell in enumerate(row) if cell == "r")
        self.origin = maze.cell_rowcol_to_xy(np.array(start))
        size = env.observation_space["observation"].shape[0] + 2
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float64)

    def _to_d4rl(self, observation: Dict[str, np.ndarray]) -> np.ndarray:
        return np.concatenate([observation["achieved_goal"] - self.origin, observation["observation"]])

    def step(self, action: np.ndarray) -> Tuple[np.ndarray, float, bool, bool, Dict[str, Any]]:
        observation, _, terminated, truncated, info = self.env.step(action)
        success = bool(np.linalg.norm(observation["achieved_goal"] - observation["desired_goal"]) <= 0.5)
        return self._to_d4rl(observation), float(success), terminated, truncated, {**info, "success": success}


class D4RLMaze2d(D4RLMazeFrame):
    """D4RL's maze2d frame: cell (row, column) is centred at (row - 0.2, column - 0.2) and the target is
    (goal row, goal column); Gymnasium centres it at (column - cx, cy - row). Positions, velocities and
    actions are rotated between the two, and reward and success follow D4RL's rule in its frame."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        maze = env.unwrapped.maze
        self.offset = np.array([maze.y_map_center - 0.7, maze.x_map_center - 0.7])
        self.target = np.array(next((i, j) for i, row in enumerate(maze.maze_map) for j, cell in enumerate(row) if cell == "g"), float)
        self.dense = env.unwrapped.reward_type == "dense"
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float64)

    def _to_d4rl(self, observation: Dict[str, np.ndarray]) -> np.ndarray:
        x, y, velocity_x, velocity_y = observation["observation"]
        return np.array([self.offset[0] - y, self.offset[1] + x, -velocity_y, velocity_x])

    def step(self, action: np.ndarray) -> Tuple[np.ndarray, float, bool, bool, Dict[str, Any]]:
        observation, _, terminated, truncated, info = self.env.step(np.array([action[1], -action[0]]))
        observation = self._to_d4rl(observation)
        distance = np.linalg.norm(observation[:2] - self.target)
        reward = float(np.exp(-distance)) if self.dense else float(distance <= 0.5)
        return observation, reward, terminated, truncated, {**info, "success": bool(distance <= 0.5)}


class D4RLKitchenObservation(gym.ObservationWrapper):
    """D4RL's 60 dims: robot joint positions (9), object positions (21), the fixed task goal (30)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        from gymnasium_robotics.envs.franka_kitchen.kitchen_env import OBS_ELEMENT_GOALS, OBS_ELEMENT_INDICES

        self.goal = np.zeros(30)
        for task in env.unwrapped.tasks_to_complete:
            self.goal[OBS_ELEMENT_INDICES[task]] = OBS_ELEMENT_GOALS[task]
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (60,), np.float64)

    def observation(self, observation: Dict[str, Any]) -> np.ndarray:
        state = observation["observation"]
        return np.concatenate([state[:9], state[18:39], self.goal])


ENV_ADAPTERS = {"d4rl_antmaze": D4RLAntMaze, "d4rl_maze2d": D4RLMaze2d, "d4rl_kitchen": D4RLKitchenObservation}


def step_success(infos: Dict[str, Any], num_envs: int) -> np.ndarray:
    """Per env of a vector env: did this step report reaching the goal (info['success'])?"""
    if "success" not in infos:
        return np.zeros(num_envs, dtype=bool)
    return np.asarray(infos["success"], dtype=bool) & np.asarray(infos.get("_success", True), dtype=bool)
# === end shared block: envs ===


# === shared block: datasets (edit blocks/datasets.py, then run tools/sync_blocks.py) ===
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
# === end shared block: datasets ===


# === shared block: networks (edit blocks/networks.py, then run tools/sync_blocks.py) ===
def orthogonal_init_(layer: nn.Module, gain: float) -> None:
    """Orthogonal weights with `gain`, zero bias (official CQL/Cal-QL/IQL init)."""
    nn.init.orthogonal_(layer.weight, gain=gain)
    nn.init.zeros_(layer.bias)


def mlp(
    in_dim: int, hidden_dims: Sequence[int], out_dim: int, output_gain: float = 1e-2, dropout: float = 0.0,
    orthogonal: bool = True,
) -> nn.Sequential:
    """Linear-ReLU stack. Orthogonal init: gain sqrt(2) on hidden layers and `output_gain` on the
    output layer (CORL uses sqrt(2) on the output too; the official code uses 1e-2)."""
    layers, width = [], in_dim
    for hidden in hidden_dims:
        layers.append(nn.Linear(width, hidden))
        if orthogonal:
            orthogonal_init_(layers[-1], math.sqrt(2))
        layers.append(nn.ReLU())
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = hidden
    layers.append(nn.Linear(width, out_dim))
    if orthogonal:
        orthogonal_init_(layers[-1], output_gain)
    return nn.Sequential(*layers)


class VectorizedLinear(nn.Module):
    """`ensemble` independent linear layers applied in one batched matmul: (E, B, in) -> (E, B, out)."""

    def __init__(self, in_dim: int, out_dim: int, ensemble: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(ensemble, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(ensemble, 1, out_dim))
        for member in range(ensemble):  # same distribution as nn.Linear's default, per member
            bound = 1 / math.sqrt(in_dim)
            nn.init.uniform_(self.weight[member], -bound, bound)
            nn.init.uniform_(self.bias[member], -bound, bound)

    def orthogonal_(self, gain: float) -> None:
        for member in range(self.weight.shape[0]):  # orthogonal per member, on the (out, in) view
            nn.init.orthogonal_(self.weight.data[member].T, gain=gain)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


class VectorizedCritic(nn.Module):
    """An ensemble of Q(s, a) MLPs evaluated together; forward returns (ensemble, batch)."""

    def __init__(
        self, state_dim: int, action_dim: int, hidden_dims: Sequence[int], ensemble: int = 2,
        output_gain: float = 1e-2, orthogonal: bool = True,
    ):
        super().__init__()
        self.ensemble = ensemble
        widths = [state_dim + action_dim, *hidden_dims]
        self.hidden = nn.ModuleList(VectorizedLinear(a, b, ensemble) for a, b in zip(widths[:-1], widths[1:]))
        self.output = VectorizedLinear(widths[-1], 1, ensemble)
        if orthogonal:
            for layer in self.hidden:
                layer.orthogonal_(math.sqrt(2))
            self.output.orthogonal_(output_gain)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([state, action], dim=-1).unsqueeze(0).expand(self.ensemble, -1, -1)
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.output(x).squeeze(-1)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) target + tau source, fused over all parameters."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)
# === end shared block: networks ===


# === shared block: transitions (edit blocks/transitions.py, then run tools/sync_blocks.py) ===
def dataset_file_arrays(dataset: Dataset, keys: Tuple[str, ...]) -> Dict[str, np.ndarray]:
    """Extra arrays the Dataset does not carry (next_observations, infos/goal_achieved), read from
    the dataset's hdf5 file when it has them; {} for Minari data."""
    if dataset.name.endswith((".hdf5", ".h5")) or os.path.sep in dataset.name:
        path = Path(dataset.name)
    elif dataset.name in D4RL_FILES:
        path = d4rl_dataset_dir() / os.path.basename(D4RL_URL_ROOT + D4RL_FILES[dataset.name])
    else:
        return {}
    with h5py.File(path, "r") as file:
        return {key: file[key][()] for key in keys if key in file}


def monte_carlo_returns(
    rewards: np.ndarray, terminals: np.ndarray, segment_ends: np.ndarray, gamma: float,
    sparse_reward: bool = False, fail_reward: float = 0.0,
) -> np.ndarray:
    """Cal-QL's reference value per step, computed per segment (segment_ends[t]: t is its last step).

    Rewards are the transformed ones (scale and bias already applied). A sparse-reward segment whose
    every reward equals `fail_reward` gets fail_reward / (1 - gamma) everywhere; any other segment
    gets G_t = r_t + gamma (1 - terminal_t) G_{t+1} from G = 0 after its last step (a timeout
    truncates without bootstrapping).
    """
    returns = np.zeros(len(rewards), np.float64)
    ends = np.flatnonzero(segment_ends)
    starts = np.concatenate([[0], ends[:-1] + 1])
    for start, end in zip(starts, ends + 1):
        segment = rewards[start:end]
        if sparse_reward and np.all(segment == fail_reward):
            returns[start:end] = fail_reward / (1.0 - gamma)
            continue
        value = 0.0
        for t in range(end - 1, start - 1, -1):
            value = rewards[t] + gamma * (1.0 - float(terminals[t])) * value
            returns[t] = value
    return returns.astype(np.float32)


def transition_arrays(
    dataset: Dataset, rewards: np.ndarray, gamma: float, sparse_reward: bool, fail_reward: float,
    next_observations: Optional[np.ndarray] = None,
) -> Dict[str, np.ndarray]:
    """Transitions of a dataset in file order, with their Monte-Carlo returns.

    With the file's next_observations every row is a transition, and a segment also ends wherever
    next_observations[t] != observations[t + 1] (an episode boundary the flags miss). Without them
    s' is observations[t + 1], so the last step of an episode cut by a timeout (or by the end of
    the file) has no s' and is dropped, as d4rl.qlearning_dataset does; its reward still counts in
    the Monte-Carlo returns of the steps before it.
    """
    observations, terminals, timeouts = dataset.observations, dataset.terminals, dataset.timeouts
    count = len(observations)
    segment_ends = terminals | timeouts
    segment_ends[-1] = True
    if next_observations is not None:
        next_observations = next_observations.astype(np.float32).reshape(count, -1)
        jump = np.abs(next_observations[:-1] - observations[1:]).max(axis=1) > 1e-6
        segment_ends[:-1] |= jump
        keep = np.ones(count, bool)
    else:
        next_observations = np.concatenate([observations[1:], observations[-1:]])
        keep = terminals | ~segment_ends
    mc = monte_carlo_returns(rewards, terminals, segment_ends, gamma, sparse_reward, fail_reward)
    return {
        "observations": observations[keep], "actions": dataset.actions[keep], "rewards": rewards[keep],
        "next_observations": next_observations[keep], "dones": terminals[keep].astype(np.float32),
        "mc_returns": mc[keep],
    }


def binary_rewards(success: np.ndarray) -> np.ndarray:
    """The Cal-QL paper's binary Adroit reward: 0 on steps that reach the goal, -1 elsewhere."""
    return np.where(np.asarray(success, bool), 0.0, -1.0).astype(np.float32)


def locomotion_reward_scale(dataset: Dataset) -> float:
    """IQL's locomotion reward normalisation: 1000 / (max - min) of the dataset's episode returns."""
    starts, ends = episode_bounds(dataset.terminals, dataset.timeouts)
    returns = np.add.reduceat(dataset.rewards.astype(np.float64), starts)
    if returns.max() - returns.min() <= 0:
        raise UserError(f"dataset '{dataset.name}': every episode has the same return, so rewards cannot be "
                        "normalised by the return range; set normalize_reward false")
    return float(1000.0 / (returns.max() - returns.min()))


BUFFER_KEYS = ("observations", "actions", "rewards", "next_observations", "dones", "mc_returns")


class TransitionBuffer:
    """Fixed-capacity transitions on the device; batches are gathered there.

    Rows below `frozen` come from the dataset and are rebuilt from it on resume; only the rows
    added online are saved in checkpoints.
    """

    def __init__(self, state_dim: int, action_dim: int, capacity: int, device: torch.device):
        shapes = {"observations": (state_dim,), "actions": (action_dim,), "next_observations": (state_dim,)}
        self.data = {key: torch.zeros((capacity, *shapes.get(key, ())), device=device) for key in BUFFER_KEYS}
        self.capacity, self.size, self.frozen, self.device = capacity, 0, 0, device

    def add(self, arrays: Dict[str, np.ndarray]) -> None:
        count = len(arrays["rewards"])
        if self.size + count > self.capacity:
            raise UserError(f"replay buffer full ({self.capacity} rows); raise the buffer size")
        for key in BUFFER_KEYS:
            self.data[key][self.size:self.size + count] = torch.as_tensor(
                np.asarray(arrays[key], np.float32).reshape(count, *self.data[key].shape[1:]), device=self.device)
        self.size += count

    def freeze(self) -> None:
        """Marks the rows so far as dataset rows (not saved in checkpoints)."""
        self.frozen = self.size

    def sample(self, batch_size: int) -> Dict[str, torch.Tensor]:
        index = torch.randint(0, self.size, (batch_size,), device=self.device)
        return {key: values[index] for key, values in self.data.items()}

    def state_dict(self) -> Dict[str, object]:
        rows = slice(self.frozen, self.size)
        return {"size": self.size, "frozen": self.frozen, **{key: self.data[key][rows].to("cpu", copy=True) for key in BUFFER_KEYS}}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        if state["frozen"] != self.frozen:
            raise UserError(f"checkpoint was taken with {state['frozen']} dataset rows, this dataset has "
                            f"{self.frozen}: resume with the same dataset and settings")
        count = state["size"] - self.frozen
        if state["size"] > self.capacity:
            raise UserError(f"checkpoint holds {state['size']} buffer rows, more than this run's capacity "
                            f"{self.capacity}: resume with online_iterations at least as large as before")
        for key in BUFFER_KEYS:  # the checkpoint may have been mapped to any device
            self.data[key][self.frozen:self.frozen + count] = state[key].to(self.device)
        self.size = state["size"]


def sample_mixed(
    offline: TransitionBuffer, online: TransitionBuffer, batch_size: int, mixing_ratio: float,
) -> Dict[str, torch.Tensor]:
    """int(batch_size * mixing_ratio) rows from the offline data, the rest from the online buffer
    (all offline while the online buffer is still empty)."""
    if online.size == 0:
        return offline.sample(batch_size)
    offline_count = int(batch_size * mixing_ratio)
    first, second = offline.sample(offline_count), online.sample(batch_size - offline_count)
    return {key: torch.cat([first[key], second[key]]) for key in first}
# === end shared block: transitions ===


# === shared block: evaluation (edit blocks/evaluation.py, then run tools/sync_blocks.py) ===
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
# === end shared block: evaluation ===


# === shared block: offline_online (edit blocks/offline_online.py, then run tools/sync_blocks.py) ===
@dataclass
class RunConfig:
    """Config fields every value-based script shares (CORL names where CORL has them)."""

    # wandb
    project: str = "ORL"
    group: str = ""
    name: str = ""
    wandb_mode: str = "offline"  # offline (no account, no network), online, or disabled
    # data
    dataset: str = "hopper-medium-v2"  # D4RL name (CORL: env), minari:<id>, or path to a D4RL-format hdf5
    allow_download: bool = True  # fetch a missing D4RL file into the d4rl cache directory
    normalize: bool = True  # normalise states with the dataset's mean and std
    reward_scale: float = 1.0  # training reward = raw * reward_scale + reward_bias, offline and online
    reward_bias: float = 0.0
    binary_reward: bool = False  # Cal-QL's binary Adroit variant: raw reward 0 at the goal, -1 elsewhere
    is_sparse_reward: bool = False  # Monte-Carlo rule: all-failure segments get fail / (1 - discount)
    sparse_fail_reward: float = 0.0  # the RAW failure reward (antmaze 0, binary adroit -1), transformed as above
    discount: float = 0.99
    batch_size: int = 256
    # evaluation
    eval_freq: int = 5000  # updates offline, env steps online
    n_episodes: int = 10
    eval_seed: int = 42
    # run
    train_seed: int = 0  # CORL: seed
    deterministic_torch: bool = False
    device: str = "auto"  # auto: cuda when available, else cpu
    run_dir: Optional[str] = None  # default: runs/<algorithm>/<dataset>/seed<train_seed>-<time>
    resume: Optional[str] = None  # a run directory to continue from its newest checkpoint
    log_every: int = 1000
    checkpoint_every: int = 50_000
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        if self.wandb_mode not in ("offline", "online", "disabled"):
            raise ValueError(f"wandb_mode must be offline, online or disabled, not '{self.wandb_mode}'")
        for name in ("batch_size", "eval_freq", "n_episodes", "log_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.eval_freq % self.log_every or self.checkpoint_every % self.log_every:
            raise ValueError("eval_freq and checkpoint_every must be multiples of log_every")
        if not 0.0 < self.discount < 1.0:
            raise ValueError("discount must be in (0, 1)")
        if getattr(self, "offline_iterations", 0) < 0 or getattr(self, "online_iterations", 0) < 0:
            raise ValueError("offline_iterations and online_iterations must be >= 0")
        if getattr(self, "utd_ratio", 1) <= 0:
            raise ValueError("utd_ratio must be positive")
        mixing_ratio = getattr(self, "mixing_ratio", None)
        if mixing_ratio is not None and not 0.0 <= mixing_ratio < 1.0:
            raise ValueError("mixing_ratio (the offline share of each batch) must be in [0, 1), or null for one buffer")


@dataclass
class FineTuneSchedule:
    """Config fields of the offline-to-online scripts (validated by RunConfig.__post_init__)."""

    offline_iterations: int = 1_000_000  # gradient updates on the dataset alone
    online_iterations: int = 1_000_000  # env steps of fine-tuning
    utd_ratio: int = 1  # updates per collected env step (run after each episode)
    # Offline share of each online-phase batch; the rest comes from an online-only buffer.
    # null: online steps join the dataset's buffer, sampled uniformly (official IQL).
    mixing_ratio: Optional[float] = 0.5


class MetricWindow:
    """Sums per-update metrics on the device; one host sync per `log_every` updates."""

    def __init__(self) -> None:
        self.sums: Dict[str, torch.Tensor] = {}
        self.count, self.start = 0, time.perf_counter()

    def add(self, metrics: Dict[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
        self.count += 1

    def flush(self, step: int, run_dir: Any) -> Dict[str, float]:
        if not self.count:
            return {}
        keys = list(self.sums)
        values = (torch.stack([self.sums[key].float() for key in keys]) / self.count).tolist()
        metrics = {f"train/{key}": value for key, value in zip(keys, values)}
        bad = [key for key, value in metrics.items() if not math.isfinite(value)]
        if bad:
            raise UserError(
                f"{', '.join(bad)} became non-finite in the {self.count} updates before step {step}; the newest good "
                f"checkpoint is in {run_dir}/checkpoints. Lower the learning rates, or check the dataset and rewards"
            )
        metrics["train/updates_per_second"] = self.count / (time.perf_counter() - self.start)
        self.sums, self.count, self.start = {}, 0, time.perf_counter()
        return metrics


def reward_transform(config: Any, dataset: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """raw rewards (and per-step goal flags) -> training rewards, identical offline and online:
    binary variant first (0 at the goal, -1 elsewhere), then IQL's locomotion normalisation, then
    r * reward_scale + reward_bias."""
    factor = locomotion_reward_scale(dataset) if getattr(config, "normalize_reward", False) else 1.0

    def transform(rewards: np.ndarray, success: np.ndarray) -> np.ndarray:
        rewards = binary_rewards(success) if config.binary_reward else np.asarray(rewards, np.float32)
        return (rewards * factor * config.reward_scale + config.reward_bias).astype(np.float32)

    return transform


def train_offline_online(
    config: Any, algorithm: str, make_agent: Callable[[int, int, torch.device], Any], offline_steps: int,
    online_steps: int = 0, mixing_ratio: Optional[float] = None, utd_ratio: int = 1,
) -> Dict[str, Any]:
    """`offline_steps` updates on the dataset, then `online_steps` env steps of fine-tuning.

    Online (the official Cal-QL loop): collect one full stochastic episode, give it Monte-Carlo
    returns by the dataset's rule, then run len(episode) * utd_ratio updates. With `mixing_ratio`
    each batch takes int(batch_size * mixing_ratio) rows from the dataset and the rest from an
    online-only buffer; with None the online steps join the dataset's buffer, sampled uniformly
    (IQL). Evaluation is deterministic every `eval_freq` updates offline / env steps online, and at
    the switch (fine-tuning step 0), from which the regret is computed.
    """
    device = pick_device(config.device)
    dataset = load_dataset(config.dataset, config.allow_download)
    extra = dataset_file_arrays(dataset, ("next_observations", "infos/goal_achieved"))
    if config.binary_reward and "infos/goal_achieved" not in extra:
        raise UserError(f"binary_reward needs per-step goal flags (infos/goal_achieved) in the dataset file, and "
                        f"'{dataset.name}' has none; set binary_reward false")
    if online_steps and config.binary_reward and not dataset.env.reports_success:
        raise UserError(f"binary_reward needs an env that reports success; {dataset.env.env_id} does not")
    run_dir = prepare_run_dir(config, algorithm)
    set_seed(config.train_seed, config.deterministic_torch)
    transform = reward_transform(config, dataset)
    rewards = transform(dataset.rewards, extra.get("infos/goal_achieved", np.zeros(len(dataset.rewards), bool)))
    fail_reward = float(transform(np.array([config.sparse_fail_reward]), np.zeros(1, bool))[0])
    if config.normalize:
        mean, std = state_stats(dataset.observations, eps=1e-3)
    else:
        mean, std = np.zeros(dataset.observations.shape[1], np.float32), np.ones(dataset.observations.shape[1], np.float32)
    normalized = dataclasses.replace(dataset, observations=((dataset.observations - mean) / std).astype(np.float32))
    next_observations = extra.get("next_observations")
    arrays = transition_arrays(normalized, rewards, config.discount, config.is_sparse_reward, fail_reward,
                               None if next_observations is None else (next_observations - mean) / std)
    state_dim, action_dim = dataset.observations.shape[1], dataset.actions.shape[1]
    episode_cap = dataset.env.max_episode_steps or 1000
    online_capacity = online_steps + episode_cap if online_steps else 0
    offline = TransitionBuffer(state_dim, action_dim, len(arrays["rewards"]) + (0 if mixing_ratio else online_capacity), device)
    offline.add(arrays)
    offline.freeze()
    online = TransitionBuffer(state_dim, action_dim, online_capacity, device) if mixing_ratio else offline
    mean_t, std_t = torch.as_tensor(mean, device=device), torch.as_tensor(std, device=device)
    agent = make_agent(state_dim, action_dim, device)

    step, env_steps, episodes, scores, offline_metrics = 0, 0, 0, [], {}
    if config.resume:
        checkpoint = load_latest_checkpoint(run_dir, device)
        agent.load_state_dict(checkpoint["agent"])
        online.load_state_dict(checkpoint["online_buffer"])
        step, env_steps, episodes = checkpoint["step"], checkpoint["env_steps"], checkpoint["episodes"]
        scores, offline_metrics = checkpoint["regret_scores"], checkpoint["offline_metrics"]
        print(f"resuming {run_dir} from step {step} ({'online' if step >= offline_steps and online_steps else 'offline'} phase)")
    logger = RunLogger(run_dir, config, resume_step=step)
    eval_envs = dataset.env.make_vector(config.n_episodes)
    explore_env = dataset.env.make() if online_steps else None
    stop = StopRequest()
    window, started = MetricWindow(), time.perf_counter()
    eval_metrics: Dict[str, float] = {}

    def evaluate() -> Dict[str, float]:
        act = lambda state: agent.act(state, deterministic=True)  # noqa: E731
        metrics = evaluation_metrics(*evaluate_policy(act, eval_envs, config.eval_seed, mean_t, std_t), dataset.env)
        window.start = time.perf_counter()  # evaluation time is not training throughput
        return metrics

    def checkpoint_now(at: int) -> Any:
        state = {"agent": agent.state_dict(), "online_buffer": online.state_dict(), "env_steps": env_steps,
                 "episodes": episodes, "regret_scores": scores, "offline_metrics": offline_metrics}
        return save_checkpoint(run_dir, at, state, config.keep_checkpoints)

    def start_fine_tuning() -> Dict[str, float]:  # fine-tuning step 0: the offline policy's evaluation counts
        scores.append(fraction_of_best(eval_metrics))
        return {"eval/regret": regret(scores), "online/env_steps": 0}

    total = offline_steps + online_steps
    progress = tqdm(total=total, initial=min(step + env_steps, total), desc=algorithm, dynamic_ncols=True)
    while step < offline_steps:
        window.add(agent.train_step(offline.sample(config.batch_size)))
        step += 1
        finished = step == offline_steps
        if step % config.log_every == 0 or finished or stop.requested:
            progress.update(window.count)
            logger.log(step, window.flush(step, run_dir))
        if step % config.eval_freq == 0 or finished:
            eval_metrics = evaluate()
            logger.log(step, {**eval_metrics, **(start_fine_tuning() if finished and online_steps else {})})
            progress.set_postfix(score=f"{eval_metrics.get('eval/normalized_score_mean', float('nan')):.1f}")
        if finished:
            offline_metrics = {key.replace("eval/", "offline/"): value for key, value in eval_metrics.items()}
        if step % config.checkpoint_every == 0 or finished or stop.requested:
            path = checkpoint_now(step)
            if stop.requested:
                progress.close()
                stop.exit(path)

    if online_steps and not scores:  # no offline phase: evaluate the initial policy as step 0
        eval_metrics = evaluate()
        logger.log(step, {**eval_metrics, **start_fine_tuning()})
    while env_steps < online_steps:
        episode = collect_episode(agent, explore_env, config.train_seed + 1_000_003 * (episodes + 1), mean_t, std_t)
        online.add(finish_episode(episode, transform, config.discount, config.is_sparse_reward, fail_reward))
        length, previous = len(episode["rewards"]), env_steps
        env_steps, episodes = env_steps + length, episodes + 1
        for _ in range(length * utd_ratio):
            batch = sample_mixed(offline, online, config.batch_size, mixing_ratio) if mixing_ratio else online.sample(config.batch_size)
            window.add(agent.train_step(batch))
        step = offline_steps + env_steps
        crossed = lambda every: previous // every != env_steps // every  # noqa: E731
        finished = env_steps >= online_steps
        progress.update(length)
        if crossed(config.log_every) or finished or stop.requested:
            logger.log(step, {**window.flush(step, run_dir), "online/env_steps": env_steps,
                              "online/episode_return": float(episode["raw_return"]), "online/episodes": episodes})
        if crossed(config.eval_freq) or finished:
            eval_metrics = evaluate()
            if crossed(config.eval_freq):  # the regret counts the scheduled evaluations only
                scores.append(fraction_of_best(eval_metrics))
            logger.log(step, {**eval_metrics, "eval/regret": regret(scores), "online/env_steps": env_steps})
            progress.set_postfix(score=f"{eval_metrics.get('eval/normalized_score_mean', float('nan')):.1f}")
        if crossed(config.checkpoint_every) or finished or stop.requested:
            path = checkpoint_now(step)
            if stop.requested:
                progress.close()
                stop.exit(path)
    progress.close()
    eval_envs.close()
    if explore_env is not None:
        explore_env.close()
    summary = {
        "algorithm": algorithm, "dataset": dataset.name, "env_id": dataset.env.env_id, "offline_steps": offline_steps,
        "online_env_steps": env_steps, "step": step, "wall_time_s": time.perf_counter() - started,
        "run_dir": str(run_dir), **offline_metrics, **eval_metrics,
    }
    if online_steps:
        summary["eval/regret"] = regret(scores)
        summary["online/evaluation_scores"] = scores
    logger.finish(summary)
    return summary


def finish_episode(
    episode: Dict[str, np.ndarray], transform: Callable[[np.ndarray, np.ndarray], np.ndarray], discount: float,
    sparse_reward: bool, fail_reward: float,
) -> Dict[str, np.ndarray]:
    """An online episode's training rewards and Monte-Carlo returns, by the same rule as the dataset's
    (one segment; its last step is terminal or cut by a time limit)."""
    rewards = transform(episode["rewards"], episode["success"])
    segment_ends = np.zeros(len(rewards), bool)
    segment_ends[-1] = True
    mc_returns = monte_carlo_returns(rewards, episode["dones"], segment_ends, discount, sparse_reward, fail_reward)
    return {**episode, "rewards": rewards, "mc_returns": mc_returns}


def collect_episode(agent: Any, env: Any, seed: int, mean: torch.Tensor, std: torch.Tensor) -> Dict[str, np.ndarray]:
    """One full episode with the stochastic policy; states stored normalised, rewards raw."""
    rows: Dict[str, List[Any]] = {key: [] for key in ("observations", "actions", "rewards", "next_observations", "dones", "success")}
    observation, _ = env.reset(seed=seed)
    state = (torch.as_tensor(observation, dtype=torch.float32, device=mean.device) - mean) / std
    while True:
        action = agent.act(state.unsqueeze(0), deterministic=False)[0].cpu().numpy()
        observation, reward, terminated, truncated, info = env.step(action)
        next_state = (torch.as_tensor(observation, dtype=torch.float32, device=mean.device) - mean) / std
        for key, value in (("observations", state), ("next_observations", next_state)):
            rows[key].append(value.cpu().numpy())
        rows["actions"].append(action)
        rows["rewards"].append(reward)
        rows["dones"].append(float(terminated))
        rows["success"].append(bool(info.get("success", False)))
        state = next_state
        if terminated or truncated:
            break
    episode = {key: np.asarray(values) for key, values in rows.items()}
    episode["raw_return"] = float(np.sum(episode["rewards"]))
    return episode


def print_summary(summary: Dict[str, Any]) -> None:
    print(f"\n{summary['algorithm']} on {summary['dataset']} ({summary['env_id']}): {summary['offline_steps']} offline "
          f"updates, {summary['online_env_steps']} online env steps")
    for prefix, label in (("offline/", "after offline"), ("eval/", "final")):
        if f"{prefix}return_mean" in summary:
            score = summary.get(f"{prefix}normalized_score_mean")
            success = summary.get(f"{prefix}success_rate")
            print(f"  {label:>13}: return {summary[f'{prefix}return_mean']:.1f}"
                  + ("" if score is None else f", normalized score {score:.1f}")
                  + ("" if success is None else f", success rate {success:.2f}"))
    if "eval/regret" in summary:
        print(f"  regret over fine-tuning evaluations: {summary['eval/regret']:.3f}")
    print(f"run directory: {summary['run_dir']}")
# === end shared block: offline_online ===


# === shared block: iql (edit blocks/iql.py, then run tools/sync_blocks.py) ===
@dataclass
class IQLConfig(RunConfig):
    """IQL hyperparameters, CORL's names; defaults are the official MuJoCo ones."""

    actor_hidden_dims: Tuple[int, ...] = (256, 256)
    critic_hidden_dims: Tuple[int, ...] = (256, 256)
    actor_dropout: float = 0.0  # 0.1 for adroit and kitchen
    actor_lr: float = 3e-4
    qf_lr: float = 3e-4
    vf_lr: float = 3e-4
    tau: float = 5e-3  # Polyak rate
    beta: float = 3.0  # inverse temperature: 3 MuJoCo, 10 antmaze, 0.5 adroit/kitchen (CORL adroit 3)
    iql_tau: float = 0.7  # expectile: 0.7 MuJoCo/adroit/kitchen (CORL adroit 0.8), 0.9 antmaze
    normalize_reward: bool = False  # locomotion: rewards * 1000 / (max - min episode return of the dataset)


EXP_ADVANTAGE_MAX = 100.0


class GaussianPolicy(nn.Module):
    """IQL's actor: N(tanh(mean(s)), exp(log_std)) with a state-independent log_std (init 0, clipped
    to [-5, 2]); the mean is squashed, the distribution is not. Deterministic action: the mean."""

    def __init__(self, state_dim: int, action_dim: int, hidden_dims, dropout: float = 0.0):
        super().__init__()
        self.mean = mlp(state_dim, hidden_dims, action_dim, output_gain=1.0, dropout=dropout)
        self.log_std = nn.Parameter(torch.zeros(action_dim))

    def distribution(self, state: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(torch.tanh(self.mean(state)), self.log_std.clamp(-5.0, 2.0).exp())

    def log_prob(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.distribution(state).log_prob(action).sum(-1)


def expectile_loss(difference: torch.Tensor, expectile: float) -> torch.Tensor:
    """|tau - 1(u < 0)| u^2 per element, u = Q - V."""
    weight = torch.where(difference < 0, 1.0 - expectile, expectile)
    return weight * difference ** 2


def advantage_weights(advantage: torch.Tensor, beta: float) -> torch.Tensor:
    """exp(beta * A), clipped at 100 (official IQL)."""
    return torch.exp(beta * advantage).clamp(max=EXP_ADVANTAGE_MAX)


class IQL:
    """V, actor, twin Q and Polyak targets, updated in the official order V, actor, Q, target.

    The actor lr follows a cosine decay over `decay_steps` updates when `decay_steps` > 0 and then
    holds (CORL's CosineAnnealingLR climbs back up after T_max; here the lr never changes again).
    """

    def __init__(self, state_dim: int, action_dim: int, config: Any, device: torch.device, decay_steps: int):
        self.config, self.device = config, device
        self.actor = GaussianPolicy(state_dim, action_dim, config.actor_hidden_dims, config.actor_dropout).to(device)
        self.critic = VectorizedCritic(state_dim, action_dim, config.critic_hidden_dims, 2, output_gain=math.sqrt(2)).to(device)
        self.target_critic = VectorizedCritic(state_dim, action_dim, config.critic_hidden_dims, 2).to(device)
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.value = mlp(state_dim, config.critic_hidden_dims, 1, output_gain=math.sqrt(2)).to(device)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), config.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), config.qf_lr)
        self.value_optimizer = torch.optim.Adam(self.value.parameters(), config.vf_lr)
        self.decay_steps = decay_steps
        self.actor_scheduler = torch.optim.lr_scheduler.LambdaLR(self.actor_optimizer, self.lr_factor)

    def lr_factor(self, step: int) -> float:
        if self.decay_steps <= 0:
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * min(step, self.decay_steps) / self.decay_steps))

    @torch.no_grad()
    def act(self, state: torch.Tensor, deterministic: bool) -> torch.Tensor:
        self.actor.eval()
        distribution = self.actor.distribution(state)
        self.actor.train()
        return distribution.mean if deterministic else distribution.sample().clamp(-1.0, 1.0)

    def train_step(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """One update; each part uses the parts updated before it, as the official code does."""
        config = self.config
        state, action, reward = batch["observations"], batch["actions"], batch["rewards"]
        next_state, done = batch["next_observations"], batch["dones"]
        with torch.no_grad():
            target_q = self.target_critic(state, action).min(0).values
        value_loss = expectile_loss(target_q - self.value(state).squeeze(-1), config.iql_tau).mean()
        self.value_optimizer.zero_grad(set_to_none=True)
        value_loss.backward()
        self.value_optimizer.step()

        with torch.no_grad():
            advantage = target_q - self.value(state).squeeze(-1)
            weights = advantage_weights(advantage, config.beta)
        actor_loss = -(weights * self.actor.log_prob(state, action)).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        self.actor_scheduler.step()

        with torch.no_grad():
            target = reward + (1.0 - done) * config.discount * self.value(next_state).squeeze(-1)
        q = self.critic(state, action)
        q_loss = ((q - target.unsqueeze(0)) ** 2).mean(-1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        q_loss.backward()
        self.critic_optimizer.step()
        soft_update(self.target_critic, self.critic, config.tau)
        return {"value_loss": value_loss.detach(), "actor_loss": actor_loss.detach(), "q_loss": q_loss.detach(),
                "advantage": advantage.mean(), "q_data": q.mean().detach()}

    def state_dict(self) -> Dict[str, Any]:
        return {name: getattr(self, name).state_dict() for name in self.parts()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        for name in self.parts():
            getattr(self, name).load_state_dict(state[name])

    @staticmethod
    def parts():
        return ("actor", "critic", "target_critic", "value", "actor_optimizer", "critic_optimizer",
                "value_optimizer", "actor_scheduler")
# === end shared block: iql ===


@dataclass
class TrainConfig(IQLConfig, FineTuneSchedule):
    group: str = "IQL-finetune"
    name: str = "IQL-finetune"
    eval_freq: int = 2000
    n_episodes: int = 20
    mixing_ratio: Optional[float] = None  # one buffer: dataset then online steps, uniform sampling


def train(config: TrainConfig) -> Dict[str, Any]:
    make = lambda state_dim, action_dim, device: IQL(state_dim, action_dim, config, device, decay_steps=0)  # noqa: E731
    return train_offline_online(config, "iql-finetune", make, config.offline_iterations, config.online_iterations,
                                config.mixing_ratio, config.utd_ratio)


def main() -> None:
    config = parse_config(TrainConfig)
    print_summary(train(config))


if __name__ == "__main__":
    run_main(main)
