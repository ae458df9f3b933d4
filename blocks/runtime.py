"""Synced plumbing: errors, config parsing, seeding, device, run directory, metrics, checkpoints, signals.

Canonical source. `python tools/sync_blocks.py` copies everything below the `# === block ===` line
into each script that embeds it; the imports above that line must also be imported by the script
(the sync tool checks).
"""

import dataclasses
import functools
import inspect
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import pyrallis
import torch


# === block ===
class UserError(Exception):
    """Bad input (config, dataset, environment): one clear message and exit code 2, no traceback."""


def run_main(main: Callable[[], Any]) -> None:
    try:
        main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


def parse_config(config_class: type, args: Optional[List[str]] = None) -> Any:
    """`--config_path x.yaml` plus CLI overrides; `--resume RUN_DIR` re-reads RUN_DIR/config.yaml."""
    args = list(sys.argv[1:] if args is None else args)
    flags, config_path = dict(zip(args, args[1:] + [""])), None
    if "--resume" in flags and "--config_path" not in flags:
        config_path = os.path.join(flags["--resume"], "config.yaml")
        if not os.path.isfile(config_path):
            raise UserError(f"cannot resume: {config_path} does not exist (is it a run directory?)")
    if "--config_path" in flags and not os.path.isfile(flags["--config_path"]):
        raise UserError(f"config file not found: '{flags['--config_path']}'")
    # pyrallis reads the script's source once per field for help texts (about 1 s a parse): cache it.
    getsource, inspect.getsource = inspect.getsource, functools.lru_cache(inspect.getsource)
    try:
        return pyrallis.parse(config_class=config_class, config_path=config_path, args=args)
    except Exception as error:  # pyrallis raises bare Exceptions for YAML keys and values
        valid = ", ".join(field.name for field in dataclasses.fields(config_class))
        raise UserError(f"invalid config: {error}. Valid keys of {config_class.__name__}: {valid}") from None
    finally:
        inspect.getsource = getsource


def check_run_fields(config: Any, positive: Tuple[str, ...]) -> None:
    """Checks every TrainConfig shares, raised in __post_init__ so the message names the field."""
    if config.wandb_mode not in ("offline", "online", "disabled"):
        raise ValueError(f"wandb_mode must be offline, online or disabled, not '{config.wandb_mode}'")
    for name in ("log_every", "checkpoint_every", "keep_checkpoints", *positive):
        if getattr(config, name) <= 0:
            raise ValueError(f"{name} must be positive")


def set_seed(seed: int, deterministic_torch: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic_torch)


def pick_device(device: str) -> torch.device:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{device}' requested but CUDA is not available; use --device cpu or auto")
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)


def prepare_run_dir(config: Any, algorithm: str) -> Path:
    """A fresh run directory (never one with content), or the one `--resume` names."""
    if config.resume:
        if not any((Path(config.resume) / "checkpoints").glob("step_*.pt")):
            raise UserError(f"cannot resume: no checkpoint in {Path(config.resume) / 'checkpoints'}")
        return Path(config.resume)
    tag = Path(config.dataset).stem if config.dataset.endswith((".hdf5", ".h5")) else config.dataset
    run_name = f"seed{config.train_seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir = Path(config.run_dir or Path("runs", algorithm, tag.replace(":", "_").replace("/", "_"), run_name))
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
    """Appends rows to RUN_DIR/metrics.jsonl and mirrors them to wandb (offline by default)."""

    def __init__(self, run_dir: Path, config: Any, resume_step: int = 0):
        self.run_dir, self.path, self.wandb = run_dir, run_dir / "metrics.jsonl", None
        if resume_step and self.path.exists():  # rows after the checkpoint will be produced again
            rows = [json.loads(line) for line in self.path.read_text().splitlines() if line]
            self.path.write_text("".join(json.dumps(row) + "\n" for row in rows if row["step"] <= resume_step))
        if config.wandb_mode != "disabled":
            import wandb

            if not (run_dir / "wandb_id.txt").exists():
                (run_dir / "wandb_id.txt").write_text(os.urandom(6).hex())
            names = {"project": config.project, "group": config.group, "name": config.name}
            run_id, settings = (run_dir / "wandb_id.txt").read_text(), dataclasses.asdict(config)
            self.wandb = wandb.init(
                **names, mode=config.wandb_mode, dir=run_dir, id=run_id, resume="allow", config=settings
            )

    def log(self, step: int, metrics: Dict[str, float]) -> None:
        with open(self.path, "a") as file:
            file.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def finish(self, summary: Dict[str, Any]) -> None:
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if self.wandb is not None:
            self.wandb.summary.update(summary)
            self.wandb.finish()


class MetricWindow:
    """Sums per-update device tensors; one host sync per flush (every `log_every` updates)."""

    def __init__(self) -> None:
        self.sums: Dict[str, torch.Tensor] = {}
        self.counts: Dict[str, int] = {}
        self.start = time.perf_counter()

    def add(self, metrics: Dict[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + value.detach().float()
            self.counts[key] = self.counts.get(key, 0) + 1

    def flush(self, step: int, run_dir: Path) -> Dict[str, float]:
        """Window means as train/<key>, plus updates per second; a non-finite mean stops the run."""
        if not self.sums:
            return {}
        means = torch.stack(list(self.sums.values())).tolist()
        metrics = {f"train/{key}": mean / self.counts[key] for key, mean in zip(self.sums, means)}
        bad = [key for key, value in metrics.items() if not math.isfinite(value)]
        if bad:
            raise UserError(
                f"{', '.join(bad)} became non-finite in the updates before step {step}; the newest good checkpoint "
                f"is in {run_dir / 'checkpoints'}. Lower the learning rates, or check the dataset for extreme values"
            )
        metrics["train/updates_per_second"] = max(self.counts.values()) / (time.perf_counter() - self.start)
        self.sums, self.counts, self.start = {}, {}, time.perf_counter()
        return metrics


def save_checkpoint(run_dir: Path, step: int, state: Dict[str, Any], keep: int) -> Path:
    """checkpoints/step_<step>.pt with the RNG states, written atomically; the newest `keep` are kept."""
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    path = run_dir / "checkpoints" / f"step_{step:09d}.pt"
    torch.save({"step": step, "rng": rng, **state}, path.with_suffix(".partial"))
    os.replace(path.with_suffix(".partial"), path)
    for old in sorted(path.parent.glob("step_*.pt"))[:-keep]:
        old.unlink()
    return path


def load_checkpoint(run_dir: Path, device: torch.device) -> Dict[str, Any]:
    """The newest checkpoint, with the RNG states restored (as CPU tensors, wherever the rest went)."""
    checkpoint = torch.load(max((run_dir / "checkpoints").glob("step_*.pt")), map_location=device, weights_only=False)
    rng = checkpoint["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"].cpu())
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.cpu() for state in rng["cuda"]])
    return checkpoint


class StopRequest:
    """SIGINT/SIGTERM set a flag the loop polls, so it can checkpoint and exit; a second signal stops at once."""

    def __init__(self) -> None:
        self.number: Optional[int] = None
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, number: int, frame: Any) -> None:
        if self.number is not None:
            raise KeyboardInterrupt
        self.number = number

    @property
    def requested(self) -> bool:
        return self.number is not None

    def exit(self, checkpoint_path: Path) -> None:
        print(f"\nstopped by signal {self.number}; checkpoint written to {checkpoint_path}", file=sys.stderr)
        sys.exit(128 + self.number)
