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
    given = sys.argv[1:] if args is None else args  # "--key=value" means "--key value", for --resume too
    args = [part for arg in given for part in (arg.split("=", 1) if arg.startswith("--") else [arg])]
    flags, config_path = dict(zip(args, args[1:] + [""])), None
    if "--resume" in flags and "--config_path" not in flags:
        config_path = os.path.join(flags["--resume"], "config.yaml")
        if not os.path.isfile(config_path):
            raise UserError(f"cannot resume: {config_path} does not exist (is it a run directory?)")
    if "--config_path" in flags and not os.path.isfile(flags["--config_path"]):
        raise UserError(f"config file not found: '{flags['--config_path']}'")
    # pyrallis re-reads the script's source once per field when a YAML is given (about 2 s a parse): cache it.
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


class Run:
    """A run directory: config.yaml, metrics.jsonl (mirrored to wandb) and checkpoints/ with the RNG states.

    Per-update metrics are summed on the device and averaged at each flush (one host sync per window).
    SIGINT/SIGTERM set `stopping`; the loop then checkpoints, and `checkpoint` exits once written.
    """

    def __init__(self, config: Any, algorithm: str) -> None:
        self.config, self.stop_signal, self.wandb = config, None, None
        self.sums: Dict[str, Any] = {}  # per metric: the sum of its device tensors since the last flush
        self.counts: Dict[str, int] = {}
        self.started = self.window_start = time.perf_counter()
        if config.resume:
            self.dir = Path(config.resume)
            if not any((self.dir / "checkpoints").glob("step_*.pt")):
                raise UserError(f"cannot resume: no checkpoint in {self.dir / 'checkpoints'}")
        else:
            tag = Path(config.dataset).stem if config.dataset.endswith((".hdf5", ".h5")) else config.dataset
            name = f"seed{config.train_seed}-{time.strftime('%Y%m%d-%H%M%S')}"
            self.dir = Path(config.run_dir or Path("runs", algorithm, tag.replace(":", "_").replace("/", "_"), name))
            # What a start that failed before its first checkpoint leaves behind may be written over.
            leftovers = {"config.yaml", "checkpoints", "metrics.jsonl", "wandb_id.txt", "wandb"}
            failed_start = (
                (self.dir / "config.yaml").exists()
                and not any((self.dir / "checkpoints").glob("step_*"))
                and {path.name for path in self.dir.glob("*")} <= leftovers
            )
            if self.dir.exists() and any(self.dir.iterdir()) and not failed_start:
                raise UserError(
                    f"run directory {self.dir} already has content; pass --resume {self.dir} to continue it "
                    "or choose another --run_dir (nothing was overwritten)"
                )
            (self.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            (self.dir / "metrics.jsonl").unlink(missing_ok=True)
            with open(self.dir / "config.yaml", "w") as file:
                pyrallis.dump(config, file)
        if config.wandb_mode != "disabled":
            import wandb

            id_file = self.dir / "wandb_id.txt"
            if not id_file.exists():
                id_file.write_text(os.urandom(6).hex())
            names = {"project": config.project, "group": config.group, "name": config.name, "dir": self.dir}
            settings = {"mode": config.wandb_mode, "resume": "allow", "config": dataclasses.asdict(config)}
            self.wandb = wandb.init(**names, id=id_file.read_text(), **settings)
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, self._on_signal)

    def _on_signal(self, number: int, frame: Any) -> None:
        if self.stop_signal is not None:  # a second signal stops at once
            raise KeyboardInterrupt
        self.stop_signal = number

    @property
    def stopping(self) -> bool:
        return self.stop_signal is not None

    def restore(self, device: torch.device) -> Optional[Dict[str, Any]]:
        """With --resume: the newest checkpoint, RNG states restored, and the metric rows after it dropped."""
        if not self.config.resume:
            return None
        newest = max((self.dir / "checkpoints").glob("step_*.pt"))
        checkpoint = torch.load(newest, map_location=device, weights_only=False)
        rng = checkpoint["rng"]  # map_location may have moved the generator states: they go back as CPU tensors
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"].cpu())
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([state.cpu() for state in rng["cuda"]])
        metrics_path = self.dir / "metrics.jsonl"  # the loop writes the rows after the checkpoint again
        if metrics_path.exists():
            rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line]
            kept = [json.dumps(row) + "\n" for row in rows if row["step"] <= checkpoint["step"]]
            metrics_path.write_text("".join(kept))
        print(f"resuming {self.dir} from step {checkpoint['step']}")
        return checkpoint

    def add(self, metrics: Dict[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + value.detach().float()
            self.counts[key] = self.counts.get(key, 0) + 1

    def flush(self, step: int) -> Dict[str, float]:
        """Means since the last flush as train/<key>, plus updates per second; a non-finite mean stops the run."""
        if not self.sums:
            return {}
        means = torch.stack(list(self.sums.values())).tolist()
        metrics = {f"train/{key}": mean / self.counts[key] for key, mean in zip(self.sums, means)}
        bad = [key for key, value in metrics.items() if not math.isfinite(value)]
        if bad:
            raise UserError(
                f"{', '.join(bad)} became non-finite in the updates before step {step}; the newest good checkpoint "
                f"is in {self.dir / 'checkpoints'}. Lower the learning rates, or check the dataset for extreme values"
            )
        metrics["train/updates_per_second"] = max(self.counts.values()) / (time.perf_counter() - self.window_start)
        self.sums, self.counts, self.window_start = {}, {}, time.perf_counter()
        return metrics

    def log(self, step: int, metrics: Dict[str, float]) -> None:
        with open(self.dir / "metrics.jsonl", "a") as file:
            file.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def checkpoint(self, step: int, state: Dict[str, Any]) -> None:
        """checkpoints/step_<step>.pt with the RNG states, written atomically; keeps the newest keep_checkpoints."""
        rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        path = self.dir / "checkpoints" / f"step_{step:09d}.pt"
        torch.save({"step": step, "rng": rng, **state}, path.with_suffix(".partial"))
        os.replace(path.with_suffix(".partial"), path)
        for old in sorted(path.parent.glob("step_*.pt"))[: -self.config.keep_checkpoints]:
            old.unlink()
        if self.stopping:
            print(f"\nstopped by signal {self.stop_signal}; checkpoint written to {path}", file=sys.stderr)
            sys.exit(128 + self.stop_signal)

    def finish(self, summary: Dict[str, Any]) -> Dict[str, Any]:
        """Writes summary.json (with the wall time and the run directory) and closes wandb."""
        summary = {**summary, "wall_time_s": time.perf_counter() - self.started, "run_dir": str(self.dir)}
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if self.wandb is not None:
            self.wandb.summary.update(summary)
            self.wandb.finish()
        return summary
