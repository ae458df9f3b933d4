"""Decision Transformer (Chen et al. 2021), offline, in one file.

    python algorithms/offline/dt.py --config_path configs/offline/dt/hopper/medium_v2.yaml

Sequences of (return-to-go, state, action) tokens through a causal transformer; the action is
read from each state token and trained by masked MSE. Config names follow CORL, except
`dataset` (CORL: env_name), which also takes `minari:<id>` or an hdf5 path, and `run_dir`
(CORL: checkpoints_path). Differences from CORL that cost nothing in clarity: evaluation runs
all episodes of a target return in one vector env with one batched forward per step; the
dataset lives on the device and windows are gathered there; metrics are aggregated over
`log_every` steps instead of a logging call per step; runs write a run directory and resume.
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
from typing import Any, Callable, Dict, List, Optional, Tuple, Type, TypeVar

import gymnasium as gym
import gymnasium_robotics
import h5py
import numpy as np
import pyrallis
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm


@dataclass
class TrainConfig:
    # wandb
    project: str = "ORL"
    group: str = "DT"
    name: str = "DT"
    wandb_mode: str = "offline"  # offline (no account, no network), online, or disabled
    # model
    embedding_dim: int = 128
    num_layers: int = 3
    num_heads: int = 1
    seq_len: int = 20
    episode_len: int = 1000  # timestep table size is episode_len + seq_len
    attention_dropout: float = 0.1
    residual_dropout: float = 0.1
    embedding_dropout: float = 0.1
    max_action: float = 1.0
    activation: str = "gelu"  # of the MLP in each transformer block (CORL: GELU)
    # data
    dataset: str = "halfcheetah-medium-v2"  # D4RL name, minari:<id>, or path to a D4RL-format hdf5
    allow_download: bool = True  # fetch a missing D4RL file into the d4rl cache directory
    reward_scale: float = 0.001
    # optimisation
    learning_rate: float = 1e-4
    betas: Tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    clip_grad: Optional[float] = 0.25
    batch_size: int = 64
    update_steps: int = 100_000
    warmup_steps: int = 10_000
    # evaluation
    target_returns: Tuple[float, ...] = (12000.0, 6000.0)
    eval_episodes: int = 100
    eval_every: int = 10_000
    eval_seed: int = 42
    # run
    train_seed: int = 10
    deterministic_torch: bool = False
    device: str = "auto"  # auto: cuda when available, else cpu
    run_dir: Optional[str] = None  # default: runs/dt/<dataset>/seed<train_seed>-<time>
    resume: Optional[str] = None  # a run directory to continue from its newest checkpoint
    log_every: int = 100
    checkpoint_every: int = 10_000
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        if self.wandb_mode not in ("offline", "online", "disabled"):
            raise ValueError(f"wandb_mode must be offline, online or disabled, not '{self.wandb_mode}'")
        for name in ("seq_len", "batch_size", "update_steps", "eval_episodes", "log_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.eval_every % self.log_every or self.checkpoint_every % self.log_every:
            raise ValueError("eval_every and checkpoint_every must be multiples of log_every")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be relu or gelu, not '{self.activation}'")
        if self.embedding_dim % self.num_heads:
            raise ValueError("embedding_dim must be divisible by num_heads")


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


# === shared block: decision_transformer (edit blocks/decision_transformer.py, then run tools/sync_blocks.py) ===
class CausalBlock(nn.Module):
    """Pre-norm causal self-attention block (GPT-2 layout). Right padding needs no key mask: causal
    attention never lets a real step see the padding after it."""

    def __init__(self, width: int, num_heads: int, attention_dropout: float, residual_dropout: float, activation: str):
        super().__init__()
        self.num_heads = num_heads
        self.attention_dropout = attention_dropout
        self.norm1 = nn.LayerNorm(width)
        self.norm2 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.projection = nn.Linear(width, width)
        self.residual_dropout = nn.Dropout(residual_dropout)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width),
            nn.ReLU() if activation == "relu" else nn.GELU(),
            nn.Linear(4 * width, width),
            nn.Dropout(residual_dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        qkv = self.qkv(self.norm1(x)).view(batch, length, 3, self.num_heads, width // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)
        attention = F.scaled_dot_product_attention(
            query, key, value, is_causal=True, dropout_p=self.attention_dropout if self.training else 0.0
        )
        attention = attention.transpose(1, 2).reshape(batch, length, width)
        x = x + self.residual_dropout(self.projection(attention))
        return x + self.mlp(self.norm2(x))


class DecisionTrunk(nn.Module):
    """(return-to-go, state, action) tokens per step -> the hidden state of every state token.

    Unlike the official ODT code, the timestep embedding it defines is actually used.
    """

    def __init__(self, state_dim: int, action_dim: int, config: Any):
        super().__init__()
        width = config.embedding_dim
        self.width = width
        # +1: ODT+TD3's target network reads the window shifted one step later.
        self.timestep_embedding = nn.Embedding(config.episode_len + config.seq_len + 1, width)
        self.state_embedding = nn.Linear(state_dim, width)
        self.action_embedding = nn.Linear(action_dim, width)
        self.return_embedding = nn.Linear(1, width)
        self.embedding_norm = nn.LayerNorm(width)
        self.embedding_dropout = nn.Dropout(config.embedding_dropout)
        self.blocks = nn.ModuleList(
            CausalBlock(width, config.num_heads, config.attention_dropout, config.residual_dropout, config.activation)
            for _ in range(config.num_layers)
        )
        self.output_norm = nn.LayerNorm(width)

    @staticmethod
    def init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(
        self, states: torch.Tensor, actions: torch.Tensor, returns_to_go: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        batch, length = states.shape[:2]
        time_embedding = self.timestep_embedding(timesteps)
        tokens = torch.stack(
            (
                self.return_embedding(returns_to_go.unsqueeze(-1)) + time_embedding,
                self.state_embedding(states) + time_embedding,
                self.action_embedding(actions) + time_embedding,
            ),
            dim=2,
        ).reshape(batch, 3 * length, self.width)
        hidden = self.embedding_dropout(self.embedding_norm(tokens))
        for block in self.blocks:
            hidden = block(hidden)
        return self.output_norm(hidden)[:, 1::3]


class DecisionTransformer(nn.Module):
    """Deterministic DT actor: a tanh action read from each state token."""

    def __init__(self, state_dim: int, action_dim: int, config: Any):
        super().__init__()
        self.trunk = DecisionTrunk(state_dim, action_dim, config)
        self.action_head = nn.Sequential(nn.Linear(config.embedding_dim, action_dim), nn.Tanh())
        self.max_action = config.max_action
        self.apply(DecisionTrunk.init_weights)

    def forward(
        self, states: torch.Tensor, actions: torch.Tensor, returns_to_go: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """(B, L, ·) inputs -> (B, L, action_dim) actions."""
        return self.action_head(self.trunk(states, actions, returns_to_go, timesteps)) * self.max_action
# === end shared block: decision_transformer ===


class SequenceData:
    """The whole dataset on the device; training windows are gathered there, no DataLoader.

    Windows of seq_len steps start anywhere in an episode and are right-padded (zeros, mask
    False) where the episode ends first.
    """

    def __init__(self, dataset: Dataset, seq_len: int, reward_scale: float, device: torch.device):
        starts, ends = episode_bounds(dataset.terminals, dataset.timeouts)
        lengths = ends - starts
        self.state_mean, self.state_std = state_stats(dataset.observations)
        states = (dataset.observations - self.state_mean) / self.state_std
        rtg = returns_to_go(dataset.rewards, starts, ends) * reward_scale
        as_tensor = lambda array, dtype=torch.float32: torch.as_tensor(array, dtype=dtype, device=device)  # noqa: E731
        self.states = as_tensor(states)
        self.actions = as_tensor(dataset.actions)
        self.returns_to_go = as_tensor(rtg)
        self.timesteps = as_tensor(np.arange(len(states)) - np.repeat(starts, lengths), torch.long)
        self.episode_end = as_tensor(np.repeat(ends, lengths), torch.long)
        self.episode_lengths = lengths
        self.offsets = torch.arange(seq_len, device=device)

    def sample(self, batch_size: int) -> Tuple[torch.Tensor, ...]:
        # A uniform step is the same as CORL's episode drawn with probability proportional to its
        # length followed by a uniform start inside it.
        start = torch.randint(0, len(self.states), (batch_size,), device=self.states.device)
        index = start[:, None] + self.offsets
        episode_end = self.episode_end[start][:, None]
        mask = index < episode_end
        index = torch.minimum(index, episode_end - 1)
        keep = mask.to(torch.float32)
        return (
            self.states[index] * keep[..., None],
            self.actions[index] * keep[..., None],
            self.returns_to_go[index] * keep,
            self.timesteps[index] * mask,
            mask,
        )


def masked_mse(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over real (unpadded) steps only. CORL divides by all positions, padding
    included, which only rescales the loss (and so the effective learning rate) batch by batch."""
    squared = ((predicted - target) ** 2).mean(-1)
    return (squared * mask).sum() / mask.sum()


def train_step(
    model: DecisionTransformer,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batch: Tuple[torch.Tensor, ...],
    clip_grad: Optional[float],
) -> torch.Tensor:
    """One gradient update; returns the loss as a device tensor (no host sync)."""
    model.train()
    states, actions, returns_to_go, timesteps, mask = batch
    loss = masked_mse(model(states, actions, returns_to_go, timesteps), actions, mask)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    optimizer.step()
    scheduler.step()
    return loss.detach()


@torch.no_grad()
def evaluate(
    model: DecisionTransformer,
    envs: gym.vector.VectorEnv,
    target_return: float,
    config: TrainConfig,
    data: SequenceData,
    device: torch.device,
) -> Tuple[np.ndarray, np.ndarray]:
    """Runs one episode per env in lockstep, one batched forward per step.

    Returns each episode's return and length.
    """
    model.eval()
    count, horizon, context = envs.num_envs, config.episode_len, config.seq_len
    state_dim, action_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
    mean = torch.as_tensor(data.state_mean, device=device)
    std = torch.as_tensor(data.state_std, device=device)
    states = torch.zeros(count, horizon, state_dim, device=device)
    actions = torch.zeros(count, horizon, action_dim, device=device)
    returns_to_go = torch.zeros(count, horizon, device=device)
    timesteps = torch.arange(horizon, device=device).expand(count, horizon)
    remaining = torch.full((count,), target_return * config.reward_scale, device=device)
    episode_returns = np.zeros(count)
    episode_lengths = np.zeros(count, dtype=np.int64)
    done = np.zeros(count, dtype=bool)
    observation, _ = envs.reset(seed=config.eval_seed)
    for step in range(horizon):
        states[:, step] = (torch.as_tensor(observation, dtype=torch.float32, device=device) - mean) / std
        returns_to_go[:, step] = remaining
        window = slice(max(0, step + 1 - context), step + 1)
        action = model(states[:, window], actions[:, window], returns_to_go[:, window], timesteps[:, window])[:, -1]
        actions[:, step] = action
        observation, reward, terminated, truncated, _ = envs.step(action.cpu().numpy())
        episode_returns += reward * ~done  # envs that finished auto-reset; their steps don't count
        episode_lengths += ~done
        remaining -= torch.as_tensor(reward * config.reward_scale, dtype=torch.float32, device=device)
        done |= terminated | truncated
        if done.all():
            break
    return episode_returns, episode_lengths


def evaluation_metrics(results: Dict[float, Tuple[np.ndarray, np.ndarray]], env: EnvSpec) -> Dict[str, float]:
    metrics = {}
    for target, (values, lengths) in results.items():
        metrics[f"eval/{target:g}_return_mean"] = float(values.mean())
        metrics[f"eval/{target:g}_return_std"] = float(values.std())
        metrics[f"eval/{target:g}_length_mean"] = float(lengths.mean())
        scores = env.normalized_score(values)
        if scores is not None:
            metrics[f"eval/{target:g}_normalized_score_mean"] = float(scores.mean())
            metrics[f"eval/{target:g}_normalized_score_std"] = float(scores.std())
    return metrics


def train(config: TrainConfig) -> Dict[str, Any]:
    device = pick_device(config.device)
    dataset = load_dataset(config.dataset, config.allow_download)
    run_dir = prepare_run_dir(config, "dt")
    set_seed(config.train_seed, config.deterministic_torch)
    data = SequenceData(dataset, config.seq_len, config.reward_scale, device)
    if data.episode_lengths.max() > config.episode_len:
        raise UserError(
            f"dataset has episodes of {data.episode_lengths.max()} steps, more than episode_len="
            f"{config.episode_len} (the timestep table size); raise --episode_len"
        )
    model = DecisionTransformer(dataset.observations.shape[1], dataset.actions.shape[1], config).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, betas=config.betas
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda steps: min((steps + 1) / config.warmup_steps, 1))
    step = 0
    if config.resume:
        checkpoint = load_latest_checkpoint(run_dir, device)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        step = checkpoint["step"]
        print(f"resuming {run_dir} from step {step}")
    logger = RunLogger(run_dir, config, resume_step=step)
    envs = dataset.env.make_vector(config.eval_episodes)
    stop = StopRequest()
    progress = tqdm(total=config.update_steps, initial=step, desc="DT", dynamic_ncols=True)
    loss_sum = torch.zeros((), device=device)
    window_steps, window_start, started = 0, time.perf_counter(), time.perf_counter()
    eval_metrics: Dict[str, float] = {}
    while step < config.update_steps:
        loss_sum += train_step(model, optimizer, scheduler, data.sample(config.batch_size), config.clip_grad)
        step += 1
        window_steps += 1
        finished = step == config.update_steps
        if step % config.log_every == 0 or finished or stop.requested:
            train_loss = loss_sum.item() / window_steps
            if not math.isfinite(train_loss):
                raise UserError(
                    f"train_loss became {train_loss} between steps {step - window_steps} and {step}; "
                    f"the newest good checkpoint is in {run_dir / 'checkpoints'}. Lower learning_rate or "
                    "clip_grad, or check the dataset for extreme values"
                )
            elapsed = time.perf_counter() - window_start
            logger.log(step, {
                "train_loss": train_loss,
                "learning_rate": scheduler.get_last_lr()[0],
                "updates_per_second": window_steps / elapsed,
            })
            progress.update(window_steps)
            scores = {f"score@{target:g}": eval_metrics.get(f"eval/{target:g}_normalized_score_mean") for target in config.target_returns}
            progress.set_postfix(loss=f"{train_loss:.4f}", **{k: f"{v:.1f}" for k, v in scores.items() if v is not None})
            loss_sum.zero_()
            window_steps, window_start = 0, time.perf_counter()
        if step % config.eval_every == 0 or finished:
            results = {target: evaluate(model, envs, target, config, data, device) for target in config.target_returns}
            eval_metrics = evaluation_metrics(results, dataset.env)
            logger.log(step, eval_metrics)
            window_start = time.perf_counter()  # evaluation time is not training throughput
        if step % config.checkpoint_every == 0 or finished or stop.requested:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
            checkpoint_path = save_checkpoint(run_dir, step, state, config.keep_checkpoints)
            if stop.requested:
                progress.close()
                stop.exit(checkpoint_path)
    progress.close()
    envs.close()
    summary = {
        "algorithm": "DT",
        "dataset": dataset.name,
        "env_id": dataset.env.env_id,
        "update_steps": step,
        "wall_time_s": time.perf_counter() - started,
        "run_dir": str(run_dir),
        **eval_metrics,
    }
    logger.finish(summary)
    return summary


def print_result(summary: Dict[str, Any], config: TrainConfig) -> None:
    print(f"\nDT on {summary['dataset']} ({summary['env_id']}) after {summary['update_steps']} updates")
    print(f"{'target return':>14} {'return mean':>12} {'return std':>11} {'normalized':>11}")
    for target in config.target_returns:
        score = summary.get(f"eval/{target:g}_normalized_score_mean")
        print(
            f"{target:>14g} {summary[f'eval/{target:g}_return_mean']:>12.1f} "
            f"{summary[f'eval/{target:g}_return_std']:>11.1f} {'n/a' if score is None else f'{score:.1f}':>11}"
        )
    print(f"run directory: {summary['run_dir']}")


def main() -> None:
    config = parse_config(TrainConfig)
    summary = train(config)
    print_result(summary, config)


if __name__ == "__main__":
    run_main(main)
