"""Online Decision Transformer (Zheng, Zhang, Grover, ICML 2022), in one file.

    python algorithms/finetune/odt.py --config_path configs/finetune/odt/hopper/medium_v2.yaml

A stochastic DT (tanh-squashed Gaussian per action) is pretrained on offline trajectories, then
fine-tuned online: each iteration rolls out the policy (conditioned on online_rtg, sampling
actions), adds the trajectories to a FIFO trajectory buffer, and takes updates_per_iteration
gradient steps. The loss is -(log-likelihood of the buffer's actions + temperature * entropy);
the temperature is learned so that the policy's entropy moves toward target_entropy.
Return-to-go labels are recomputed from the rewards actually received (hindsight relabelling).
Differences from the official code, as choices: the entropy term is masked on padding
(mask_entropy), the timestep embedding is used, no offline trajectory is dropped, and online
time-limit ends are kept apart from true ends (truncation_as_terminal: true restores the
official behaviour).
"""
import collections
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
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Type, TypeVar

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
    group: str = "ODT"
    name: str = "ODT"
    wandb_mode: str = "offline"  # offline (no account, no network), online, or disabled
    # model (the official ~13M-parameter DT)
    embedding_dim: int = 512
    num_layers: int = 4
    num_heads: int = 4
    seq_len: int = 20  # T_train: context during training
    eval_context: int = 5  # T_eval: context during rollouts and evaluation
    episode_len: int = 1000  # rollout horizon; the timestep table has episode_len + seq_len + 1 rows
    attention_dropout: float = 0.1
    residual_dropout: float = 0.1
    embedding_dropout: float = 0.1
    activation: str = "relu"  # the official GPT-2 trunk uses ReLU
    max_action: float = 1.0
    # data
    dataset: str = "hopper-random-v2"  # D4RL name, minari:<id>, or path to a D4RL-format hdf5
    allow_download: bool = True
    reward_scale: float = 0.001  # return-to-go scale of the DT's inputs
    reward_bias: float = 0.0  # added to every stored reward (antmaze: -1)
    buffer_size: int = 1000  # trajectories
    # actor optimisation (LAMB)
    learning_rate: float = 1e-4
    weight_decay: float = 5e-4
    eps: float = 1e-8
    clip_grad: Optional[float] = 0.25
    warmup_steps: int = 10_000
    batch_size: int = 256
    # entropy regularisation
    init_temperature: float = 0.1
    temperature_learning_rate: float = 1e-4
    target_entropy: Optional[float] = None  # default: -action_dim
    mask_entropy: bool = True  # official code: false (the entropy estimate includes padded steps)
    # schedule
    pretrain_steps: int = 5_000
    online_iterations: int = 500
    updates_per_iteration: int = 300
    online_trajectories: int = 1  # each iteration collects at least this many episodes ...
    online_transitions: int = 1000  # ... and at least this many env steps
    max_online_transitions: Optional[int] = 500_000  # stop at the first iteration boundary past it
    rollout_envs: int = 1  # episodes collected side by side per rollout round
    online_rtg: float = 7200.0
    truncation_as_terminal: bool = False  # official code: a time-limit end counts as a true end
    # evaluation
    eval_rtg: float = 3600.0
    eval_episodes: int = 10
    eval_every: int = 3_000
    eval_seed: int = 42
    # run
    train_seed: int = 10
    deterministic_torch: bool = False
    device: str = "auto"
    run_dir: Optional[str] = None  # default: runs/odt/<dataset>/seed<train_seed>-<time>
    resume: Optional[str] = None
    log_every: int = 100
    checkpoint_every: int = 3_000
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        if self.wandb_mode not in ("offline", "online", "disabled"):
            raise ValueError(f"wandb_mode must be offline, online or disabled, not '{self.wandb_mode}'")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be relu or gelu, not '{self.activation}'")
        for name in ("seq_len", "eval_context", "batch_size", "updates_per_iteration", "eval_episodes", "log_every",
                     "keep_checkpoints", "buffer_size", "rollout_envs", "warmup_steps", "init_temperature"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        for name in ("pretrain_steps", "online_iterations", "online_trajectories", "online_transitions"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.online_trajectories == 0 and self.online_transitions == 0:
            raise ValueError("online_trajectories and online_transitions cannot both be 0")
        if self.eval_every % self.log_every or self.checkpoint_every % self.log_every:
            raise ValueError("eval_every and checkpoint_every must be multiples of log_every")
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


# === shared block: lamb (edit blocks/lamb.py, then run tools/sync_blocks.py) ===
class Lamb(torch.optim.Optimizer):
    """Layer-wise adaptive moments: Adam's step direction plus weight decay, then each tensor's step
    rescaled by the trust ratio ||w|| / ||step|| (1 where either norm is 0).

    Like the optimiser the ODT authors used (torch_optimizer.Lamb): ||w|| is clamped to
    `clamp_value` and the moments are not bias-corrected unless `bias_correction` is set.
    The trust ratio stays on the device: no host sync per step.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        clamp_value: float = 10.0,
        bias_correction: bool = False,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"invalid LAMB settings lr={lr} betas={betas} eps={eps} weight_decay={weight_decay}")
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, clamp_value=clamp_value,
                        bias_correction=bias_correction)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Optional[Any] = None) -> Optional[torch.Tensor]:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                state = self.state[parameter]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(parameter)
                    state["exp_avg_sq"] = torch.zeros_like(parameter)
                state["step"] += 1
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(parameter.grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(parameter.grad, parameter.grad, value=1 - beta2)
                first, second = exp_avg, exp_avg_sq
                if group["bias_correction"]:
                    first = exp_avg / (1 - beta1 ** state["step"])
                    second = exp_avg_sq / (1 - beta2 ** state["step"])
                update = first / (second.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update = update.add(parameter, alpha=group["weight_decay"])
                weight_norm = parameter.norm().clamp(0, group["clamp_value"])
                update_norm = update.norm()
                trust = torch.where((weight_norm > 0) & (update_norm > 0), weight_norm / update_norm,
                                    torch.ones_like(weight_norm))
                parameter.sub_(update * (trust * group["lr"]))
        return loss
# === end shared block: lamb ===


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


# === shared block: online_dt (edit blocks/online_dt.py, then run tools/sync_blocks.py) ===
def make_trajectory(
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminated: bool,
    final_observation: Optional[np.ndarray] = None,
) -> Dict[str, Any]:
    """A whole episode as plain arrays (plain, so checkpoints unpickle in any copy of a script).

    `terminated`: the episode truly ended (no bootstrapping after its last step). Otherwise it was
    truncated; `final_observation` is the state after the last step when known (online data), so
    a critic can bootstrap from it. D4RL files do not hold it.
    """
    return {
        "observations": np.asarray(observations, dtype=np.float32),
        "actions": np.asarray(actions, dtype=np.float32),
        "rewards": np.asarray(rewards, dtype=np.float32),
        "terminated": bool(terminated),
        "final_observation": None if final_observation is None else np.asarray(final_observation, dtype=np.float32),
    }


def dataset_trajectories(dataset: Dataset, reward_bias: float = 0.0) -> List[Dict[str, Any]]:
    starts, ends = episode_bounds(dataset.terminals, dataset.timeouts)
    return [
        make_trajectory(dataset.observations[start:end], dataset.actions[start:end],
                        dataset.rewards[start:end] + reward_bias, dataset.terminals[end - 1])
        for start, end in zip(starts, ends)
    ]


class TrajectoryBuffer:
    """Whole trajectories, at most `capacity` of them, sampled as windows on the device.

    Starts with the `capacity` highest-return offline trajectories, ordered lowest return first;
    every added trajectory evicts the one at the front (FIFO), so online data replaces the
    lowest-return offline data first and then the oldest online data. Only real rewards are
    stored: return-to-go labels are recomputed from them (hindsight relabelling), never taken
    from the return a rollout was conditioned on.

    The flat device copy holds each trajectory's T steps plus one extra row: its final
    observation (zeros if unknown), so a window of seq_len + 1 rows gives every step its next
    state, and the shifted window is the context a target policy needs for the next actions.
    """

    def __init__(self, capacity: int, state_mean: np.ndarray, state_std: np.ndarray, seq_len: int,
                 reward_scale: float, device: torch.device):
        self.capacity = capacity
        self.state_mean, self.state_std = state_mean, state_std
        self.seq_len = seq_len
        self.reward_scale = reward_scale
        self.device = device
        self.trajectories: collections.deque = collections.deque(maxlen=capacity)
        self.offsets = torch.arange(seq_len + 1, device=device)
        self._flat: Dict[str, torch.Tensor] = {}

    def initialise(self, offline: List[Dict[str, Any]]) -> None:
        """Keeps the top-`capacity` trajectories by return, lowest return first (evicted first)."""
        order = np.argsort([float(t["rewards"].sum()) for t in offline], kind="stable")[-self.capacity:]
        self.trajectories.clear()
        self.trajectories.extend(offline[i] for i in order)
        self._rebuild()

    def add(self, trajectories: List[Dict[str, Any]]) -> None:
        self.trajectories.extend(trajectories)  # a full deque drops from the front
        self._rebuild()

    def __len__(self) -> int:
        return len(self.trajectories)

    @property
    def transitions(self) -> int:
        return int(sum(len(t["rewards"]) for t in self.trajectories))

    def _rebuild(self) -> None:
        trajectories = list(self.trajectories)
        lengths = np.array([len(t["rewards"]) for t in trajectories])
        starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
        state_dim = trajectories[0]["observations"].shape[1]
        action_dim = trajectories[0]["actions"].shape[1]
        observations, actions, rewards, returns = [], [], [], []
        for t in trajectories:
            final = t["final_observation"] if t["final_observation"] is not None else np.zeros(state_dim, np.float32)
            observations += [t["observations"], final[None]]
            actions += [t["actions"], np.zeros((1, action_dim), np.float32)]
            rewards.append(np.append(t["rewards"], 0.0))
            returns.append(np.append(np.cumsum(t["rewards"][::-1], dtype=np.float64)[::-1], 0.0))
        rows = lengths + 1
        # the final row is a usable next state if it was observed, or if nothing follows a true end
        final_usable = np.array([t["terminated"] or t["final_observation"] is not None for t in trajectories])
        terminated = np.array([t["terminated"] for t in trajectories])
        states = (np.concatenate(observations) - self.state_mean) / self.state_std
        as_tensor = lambda array, dtype=torch.float32: torch.as_tensor(np.asarray(array), dtype=dtype, device=self.device)  # noqa: E731
        final_row = np.repeat(starts + lengths, rows)
        self._flat = {
            "states": as_tensor(states),
            "actions": as_tensor(np.concatenate(actions)),
            "rewards": as_tensor(np.concatenate(rewards)),
            "returns_to_go": as_tensor(np.concatenate(returns) * self.reward_scale),
            "timesteps": as_tensor(np.concatenate([np.arange(n) for n in rows]), torch.long),
            "final_row": as_tensor(final_row, torch.long),
            "final_usable": as_tensor(np.repeat(final_usable, rows), torch.bool),
            "terminated": as_tensor(np.repeat(terminated, rows), torch.bool),
            "step_rows": as_tensor(np.flatnonzero(np.arange(len(final_row)) != final_row), torch.long),
        }

    def sample(self, batch_size: int) -> Dict[str, torch.Tensor]:
        """Windows starting at uniformly drawn steps (= a trajectory drawn proportionally to its length,
        then a uniform start), right-padded past the trajectory's end.

        states/actions/returns_to_go/timesteps: seq_len + 1 rows (the last for next states);
        rewards, mask (real step), critic_mask (real step whose next state is known), done: seq_len.
        """
        flat = self._flat
        step_rows = flat["step_rows"]
        start = step_rows[torch.randint(0, len(step_rows), (batch_size,), device=self.device)]
        raw = start[:, None] + self.offsets
        final_row = flat["final_row"][start][:, None]
        index = torch.minimum(raw, final_row)
        real = raw < final_row
        next_raw = raw[:, 1:]
        next_is_final = next_raw == final_row
        current = real[:, :-1]
        return {
            "states": flat["states"][index],
            "actions": flat["actions"][index],
            "returns_to_go": flat["returns_to_go"][index],
            "timesteps": flat["timesteps"][index],
            "rewards": flat["rewards"][index[:, :-1]],
            "mask": current,
            "critic_mask": current & (real[:, 1:] | (next_is_final & flat["final_usable"][start][:, None])),
            "done": current & next_is_final & flat["terminated"][start][:, None],
        }

    def state_dict(self) -> Dict[str, Any]:
        return {"trajectories": list(self.trajectories)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.trajectories.clear()
        self.trajectories.extend(state["trajectories"])
        self._rebuild()


@torch.no_grad()
def run_episodes(
    act: Callable[..., torch.Tensor],
    envs: gym.vector.VectorEnv,
    target_return: float,
    config: Any,
    state_mean: np.ndarray,
    state_std: np.ndarray,
    device: torch.device,
    seed: int,
) -> List[Dict[str, Any]]:
    """One episode per env in lockstep, one batched forward per step, conditioned on target_return.

    `act(states, actions, returns_to_go, timesteps)` gets the last `config.eval_context` steps and
    returns (num_envs, action_dim) actions. The return-to-go drops by each (reward + reward_bias)
    * reward_scale, the same rewards the buffer stores. Each trajectory also carries the raw env
    `return`, `length`, `success` and `truncated`. With `config.truncation_as_terminal` (the
    official code's behaviour) a time-limit end is stored as a true end.
    """
    count, horizon, context = envs.num_envs, config.episode_len, config.eval_context
    state_dim, action_dim = envs.single_observation_space.shape[0], envs.single_action_space.shape[0]
    mean = torch.as_tensor(state_mean, dtype=torch.float32, device=device)
    std = torch.as_tensor(state_std, dtype=torch.float32, device=device)
    states = torch.zeros(count, horizon, state_dim, device=device)
    actions = torch.zeros(count, horizon, action_dim, device=device)
    returns_to_go = torch.zeros(count, horizon, device=device)
    timesteps = torch.arange(horizon, device=device).expand(count, horizon)
    remaining = torch.full((count,), target_return * config.reward_scale, device=device)
    raw_observations = np.zeros((count, horizon, state_dim), np.float32)
    raw_actions = np.zeros((count, horizon, action_dim), np.float32)
    rewards = np.zeros((count, horizon), np.float32)
    lengths = np.zeros(count, dtype=np.int64)
    terminated_at = np.zeros(count, dtype=bool)
    success = np.zeros(count, dtype=bool)
    final_observations = np.zeros((count, state_dim), np.float32)
    done = np.zeros(count, dtype=bool)
    observation, _ = envs.reset(seed=seed)
    for step in range(horizon):
        raw_observations[:, step] = observation
        states[:, step] = (torch.as_tensor(observation, dtype=torch.float32, device=device) - mean) / std
        returns_to_go[:, step] = remaining
        window = slice(max(0, step + 1 - context), step + 1)
        action = act(states[:, window], actions[:, window], returns_to_go[:, window], timesteps[:, window])
        actions[:, step] = action
        action_host = action.cpu().numpy()
        raw_actions[:, step] = action_host
        observation, reward, terminated, truncated, infos = envs.step(action_host)
        live = ~done  # envs that finished auto-reset; their later steps don't count
        rewards[live, step] = reward[live]
        lengths += live
        success |= step_success(infos, count) & live
        ended = live & (terminated | truncated | (step == horizon - 1))
        terminated_at |= ended & terminated
        final_observations[ended] = observation[ended]
        remaining -= torch.as_tensor((reward + config.reward_bias) * config.reward_scale, dtype=torch.float32, device=device)
        done |= ended
        if done.all():
            break
    trajectories = []
    for i in range(count):
        n = lengths[i]
        ends_truly = bool(terminated_at[i]) or config.truncation_as_terminal
        trajectory = make_trajectory(raw_observations[i, :n], raw_actions[i, :n], rewards[i, :n] + config.reward_bias,
                                     ends_truly, None if ends_truly else final_observations[i])
        trajectory.update({"return": float(rewards[i, :n].sum()), "length": int(n), "success": bool(success[i]),
                           "truncated": not terminated_at[i]})
        trajectories.append(trajectory)
    return trajectories


def rollout_finished(trajectories: int, transitions: int, min_trajectories: int, min_transitions: int) -> bool:
    """An online iteration collects at least `min_trajectories` whole episodes and at least
    `min_transitions` steps (the paper's rule for random datasets, Adroit, AntMaze and Maze2D)."""
    return trajectories >= min_trajectories and transitions >= min_transitions


def collect_online(act: Callable[..., torch.Tensor], envs: gym.vector.VectorEnv, config: Any,
                   state_mean: np.ndarray, state_std: np.ndarray, device: torch.device) -> List[Dict[str, Any]]:
    """Rounds of one episode per env until `rollout_finished`; env seeds come from numpy's RNG,
    which checkpoints restore, so a resumed run collects the same episodes."""
    collected: List[Dict[str, Any]] = []
    while not rollout_finished(len(collected), sum(t["length"] for t in collected),
                               config.online_trajectories, config.online_transitions):
        seed = int(np.random.randint(2**31 - 1))
        collected += run_episodes(act, envs, config.online_rtg, config, state_mean, state_std, device, seed)
    return collected


def episode_metrics(prefix: str, trajectories: List[Dict[str, Any]], env: EnvSpec) -> Dict[str, float]:
    returns = np.array([t["return"] for t in trajectories])
    metrics = {
        f"{prefix}/return_mean": float(returns.mean()),
        f"{prefix}/return_std": float(returns.std()),
        f"{prefix}/length_mean": float(np.mean([t["length"] for t in trajectories])),
    }
    scores = env.normalized_score(returns)
    if scores is not None:
        metrics[f"{prefix}/normalized_score_mean"] = float(scores.mean())
        metrics[f"{prefix}/normalized_score_std"] = float(scores.std())
    if env.reports_success:
        metrics[f"{prefix}/success_rate"] = float(np.mean([t["success"] for t in trajectories]))
    return metrics
# === end shared block: online_dt ===


LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class StochasticDT(nn.Module):
    """DT policy: a tanh-squashed diagonal Gaussian read from each state token.

    log_std goes through tanh and is rescaled into [LOG_STD_MIN, LOG_STD_MAX], as in the official code.
    """

    def __init__(self, state_dim: int, action_dim: int, config: TrainConfig):
        super().__init__()
        self.trunk = DecisionTrunk(state_dim, action_dim, config)
        self.mean_head = nn.Linear(config.embedding_dim, action_dim)
        self.log_std_head = nn.Linear(config.embedding_dim, action_dim)
        self.max_action = config.max_action
        self.apply(DecisionTrunk.init_weights)

    def forward(self, states, actions, returns_to_go, timesteps) -> Tuple[torch.Tensor, torch.Tensor]:
        """Pre-tanh mean and log std of each step's action distribution."""
        hidden = self.trunk(states, actions, returns_to_go, timesteps)
        log_std = torch.tanh(self.log_std_head(hidden))
        return self.mean_head(hidden), LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)


class Temperature(nn.Module):
    """The entropy weight lambda = exp(log_value), learned."""

    def __init__(self, initial: float):
        super().__init__()
        self.log_value = nn.Parameter(torch.tensor(math.log(initial)))

    def forward(self) -> torch.Tensor:
        return self.log_value.exp()


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def tanh_gaussian_log_prob(pre_tanh: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log density of tanh(u), u ~ N(mean, std^2), at u = pre_tanh, summed over action dims.

    log(1 - tanh(u)^2) is written as 2 (log 2 - u - softplus(-2u)), stable for large |u|.
    """
    gaussian = -0.5 * ((pre_tanh - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    squash = 2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))
    return (gaussian - squash).sum(-1)


def action_log_likelihood(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor, max_action: float) -> torch.Tensor:
    """log p of given actions (in units of max_action); clamped inside (-1, 1) so atanh stays finite."""
    squashed = (actions / max_action).clamp(-1.0 + 1e-6, 1.0 - 1e-6)
    return tanh_gaussian_log_prob(torch.atanh(squashed), mean, log_std)


def sample_actions(mean: torch.Tensor, log_std: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Reparameterised sample tanh(u) and its log p."""
    pre_tanh = mean + log_std.exp() * torch.randn_like(mean)
    return torch.tanh(pre_tanh), tanh_gaussian_log_prob(pre_tanh, mean, log_std)


def actor_loss(model: StochasticDT, temperature: Temperature, batch: Dict[str, torch.Tensor],
               config: TrainConfig) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
    """-(masked mean log-likelihood + lambda * entropy); entropy is a one-sample estimate -log p(a~)."""
    k = config.seq_len
    states, actions = batch["states"][:, :k], batch["actions"][:, :k]
    mean, log_std = model(states, actions, batch["returns_to_go"][:, :k], batch["timesteps"][:, :k])
    log_likelihood = masked_mean(action_log_likelihood(mean, log_std, actions, config.max_action), batch["mask"])
    _, sample_log_prob = sample_actions(mean, log_std)
    entropy = masked_mean(-sample_log_prob, batch["mask"]) if config.mask_entropy else (-sample_log_prob).mean()
    loss = -(log_likelihood + temperature().detach() * entropy)
    return loss, entropy, {"actor_loss": loss.detach(), "actor_log_likelihood": log_likelihood.detach(),
                           "entropy": entropy.detach()}


def temperature_loss(temperature: Temperature, entropy: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """lambda * (entropy - target): descending it lowers lambda while the entropy is above target."""
    return temperature() * (entropy.detach() - target_entropy)


def train_step(
    model: StochasticDT,
    temperature: Temperature,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    temperature_optimizer: torch.optim.Optimizer,
    batch: Dict[str, torch.Tensor],
    target_entropy: float,
    config: TrainConfig,
) -> Dict[str, torch.Tensor]:
    """One policy update and one temperature update. Returns device tensors (no host sync)."""
    model.train()
    loss, entropy, metrics = actor_loss(model, temperature, batch, config)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if config.clip_grad is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad)
    optimizer.step()
    scheduler.step()
    temperature_optimizer.zero_grad(set_to_none=True)
    temperature_loss(temperature, entropy, target_entropy).backward()
    temperature_optimizer.step()
    metrics["temperature"] = temperature().detach()
    return metrics


def policies(model: StochasticDT, config: TrainConfig) -> Tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]:
    """(evaluation policy: tanh of the mean; exploration policy: a sample)."""

    def evaluation(*context: torch.Tensor) -> torch.Tensor:
        mean, _ = model(*context)
        return torch.tanh(mean[:, -1]) * config.max_action

    def exploration(*context: torch.Tensor) -> torch.Tensor:
        mean, log_std = model(*context)
        return sample_actions(mean[:, -1], log_std[:, -1])[0] * config.max_action

    return evaluation, exploration


def train(config: TrainConfig) -> Dict[str, Any]:
    device = pick_device(config.device)
    dataset = load_dataset(config.dataset, config.allow_download)
    offline = dataset_trajectories(dataset, config.reward_bias)
    longest = max(len(t["rewards"]) for t in offline)
    if longest > config.episode_len:
        raise UserError(f"dataset has episodes of {longest} steps, more than episode_len={config.episode_len}; "
                        "raise --episode_len")
    run_dir = prepare_run_dir(config, "odt")
    set_seed(config.train_seed, config.deterministic_torch)
    state_mean, state_std = state_stats(dataset.observations)
    buffer = TrajectoryBuffer(config.buffer_size, state_mean, state_std, config.seq_len, config.reward_scale, device)
    buffer.initialise(offline)
    state_dim, action_dim = dataset.observations.shape[1], dataset.actions.shape[1]
    actor = StochasticDT(state_dim, action_dim, config).to(device)
    temperature = Temperature(config.init_temperature).to(device)
    target_entropy = -float(action_dim) if config.target_entropy is None else config.target_entropy
    actor_optimizer = Lamb(actor.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, eps=config.eps)
    actor_scheduler = torch.optim.lr_scheduler.LambdaLR(
        actor_optimizer, lambda steps: min((steps + 1) / config.warmup_steps, 1))
    temperature_optimizer = torch.optim.Adam(temperature.parameters(), lr=config.temperature_learning_rate)
    modules = {"actor": actor, "temperature": temperature, "actor_optimizer": actor_optimizer,
               "actor_scheduler": actor_scheduler, "temperature_optimizer": temperature_optimizer}
    progress_state = {"step": 0, "env_steps": 0, "iterations": 0, "pretrained": {}, "eval": {}}
    if config.resume:
        checkpoint = load_latest_checkpoint(run_dir, device)
        for key, module in modules.items():
            module.load_state_dict(checkpoint[key])
        buffer.load_state_dict(checkpoint["buffer"])
        progress_state = checkpoint["progress"]
        print(f"resuming {run_dir} from step {progress_state['step']}")
    step = progress_state["step"]
    logger = RunLogger(run_dir, config, resume_step=step)
    eval_envs = dataset.env.make_vector(config.eval_episodes)
    rollout_envs = dataset.env.make_vector(config.rollout_envs)
    evaluation_policy, exploration_policy = policies(actor, config)

    def evaluate() -> Dict[str, float]:
        actor.eval()
        episodes = run_episodes(evaluation_policy, eval_envs, config.eval_rtg, config, state_mean, state_std, device,
                                config.eval_seed)
        return episode_metrics("eval", episodes, dataset.env)

    stop = StopRequest()
    per_iteration = config.updates_per_iteration
    total = config.pretrain_steps + config.online_iterations * per_iteration
    progress = tqdm(total=total, initial=step, desc="ODT", dynamic_ncols=True)
    sums: Dict[str, torch.Tensor] = collections.defaultdict(lambda: torch.zeros((), device=device))
    counts: Dict[str, int] = collections.defaultdict(int)
    window_steps, window_start, started = 0, time.perf_counter(), time.perf_counter()
    if step == 0 and config.pretrain_steps == 0:
        progress_state["pretrained"] = progress_state["eval"] = evaluate()
        logger.log(0, progress_state["eval"])
    finished = step >= total
    while not finished:
        online = step >= config.pretrain_steps
        iteration = (step - config.pretrain_steps) // per_iteration
        if online and progress_state["iterations"] == iteration:  # this iteration's rollout is still to do
            rollout_start = time.perf_counter()
            actor.eval()
            episodes = collect_online(exploration_policy, rollout_envs, config, state_mean, state_std, device)
            buffer.add(episodes)
            new_steps = sum(t["length"] for t in episodes)
            progress_state["env_steps"] += new_steps
            progress_state["iterations"] += 1
            elapsed = time.perf_counter() - rollout_start
            logger.log(step, {**episode_metrics("rollout", episodes, dataset.env),
                              "env_steps": progress_state["env_steps"], "online_iterations": progress_state["iterations"],
                              "rollout_env_steps_per_second": new_steps / elapsed, "buffer_trajectories": len(buffer)})
            window_start += elapsed  # rollout time is not update throughput
        metrics = train_step(actor, temperature, actor_optimizer, actor_scheduler, temperature_optimizer,
                             buffer.sample(config.batch_size), target_entropy, config)
        for key, value in metrics.items():
            sums[key] += value
            counts[key] += 1
        step += 1
        window_steps += 1
        at_boundary = step > config.pretrain_steps and (step - config.pretrain_steps) % per_iteration == 0
        budget = config.max_online_transitions
        finished = step >= total or (at_boundary and budget is not None and progress_state["env_steps"] >= budget)
        if step % config.log_every == 0 or finished or stop.requested or step == config.pretrain_steps:
            keys = sorted(sums)
            values = (torch.stack([sums[key] for key in keys]).cpu().numpy() / np.array([counts[key] for key in keys])).tolist()
            averaged = dict(zip(keys, values))
            bad = [key for key, value in averaged.items() if not math.isfinite(value)]
            if bad:
                raise UserError(
                    f"{', '.join(bad)} became non-finite between steps {step - window_steps} and {step}; the newest "
                    f"good checkpoint is in {run_dir / 'checkpoints'}. Lower learning_rate or init_temperature, "
                    "or check the dataset for extreme values"
                )
            elapsed = time.perf_counter() - window_start
            logger.log(step, {**averaged, "learning_rate": actor_scheduler.get_last_lr()[0],
                              "actor_updates": actor_scheduler.last_epoch, "env_steps": progress_state["env_steps"],
                              "updates_per_second": window_steps / elapsed})
            progress.update(window_steps)
            score = progress_state["eval"].get("eval/normalized_score_mean")
            progress.set_postfix(entropy=f"{averaged['entropy']:.2f}", **({"score": f"{score:.1f}"} if score is not None else {}))
            sums.clear()
            counts.clear()
            window_steps, window_start = 0, time.perf_counter()
        if step % config.eval_every == 0 or finished or step == config.pretrain_steps:
            progress_state["eval"] = evaluate()
            if step == config.pretrain_steps:
                progress_state["pretrained"] = progress_state["eval"]
            logger.log(step, progress_state["eval"])
            window_start = time.perf_counter()
        if step % config.checkpoint_every == 0 or finished or stop.requested or step == config.pretrain_steps:
            progress_state["step"] = step
            state = {key: module.state_dict() for key, module in modules.items()}
            checkpoint_path = save_checkpoint(run_dir, step, {**state, "buffer": buffer.state_dict(),
                                                              "progress": progress_state}, config.keep_checkpoints)
            if stop.requested:
                progress.close()
                stop.exit(checkpoint_path)
    progress.close()
    eval_envs.close()
    rollout_envs.close()
    summary = {
        "algorithm": "ODT",
        "dataset": dataset.name,
        "env_id": dataset.env.env_id,
        "update_steps": step,
        "actor_updates": actor_scheduler.last_epoch,
        "env_steps": progress_state["env_steps"],
        "online_iterations": progress_state["iterations"],
        "buffer_trajectories": len(buffer),
        "wall_time_s": time.perf_counter() - started,
        "run_dir": str(run_dir),
        **{key.replace("eval/", "pretrained/"): value for key, value in progress_state["pretrained"].items()},
        **progress_state["eval"],
    }
    logger.finish(summary)
    return summary


def print_result(summary: Dict[str, Any]) -> None:
    print(f"\n{summary['algorithm']} on {summary['dataset']} ({summary['env_id']}): {summary['update_steps']} "
          f"updates, {summary['env_steps']} online env steps in {summary['online_iterations']} iterations")
    print(f"{'':>20} {'return mean':>12} {'return std':>11} {'normalized':>11}")
    for label, prefix in (("after pretraining", "pretrained"), ("after fine-tuning", "eval")):
        if f"{prefix}/return_mean" not in summary:
            continue
        score = summary.get(f"{prefix}/normalized_score_mean")
        print(f"{label:>20} {summary[f'{prefix}/return_mean']:>12.1f} {summary[f'{prefix}/return_std']:>11.1f} "
              f"{'n/a' if score is None else f'{score:.1f}':>11}")
    print(f"run directory: {summary['run_dir']}")


def main() -> None:
    config = parse_config(TrainConfig)
    summary = train(config)
    print_result(summary)


if __name__ == "__main__":
    run_main(main)
