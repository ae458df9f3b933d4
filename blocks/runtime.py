"""Shared block: errors, config parsing, seeding, device, run directory, logging, checkpoints.

Canonical source. `python tools/sync_blocks.py` copies everything below the `# === block ===`
line into each script that embeds it; the imports above that line must also be imported by
the script (the sync tool checks).
"""
import dataclasses
import functools
import inspect
import json
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Type, TypeVar

import numpy as np
import pyrallis
import torch

# === block ===
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
