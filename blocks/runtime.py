"""Synced plumbing: errors, config parsing, seeding, device, run directory, metrics, checkpoints, signals.

Canonical source. `python tools/sync_blocks.py` copies everything below the `# === block ===` line
into each script that embeds it; the imports above that line must also be imported by the script
(the sync tool checks).
"""

import dataclasses
import difflib
import functools
import inspect
import json
import math
import os
import pickle
import random
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyrallis
import torch
import yaml


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
    joined: List[str] = []  # each "--key value" as "--key=value": argparse then takes "-1e-4" for a value
    for arg in sys.argv[1:] if args is None else args:
        if joined and joined[-1].startswith("--") and "=" not in joined[-1] and not arg.startswith("--"):
            joined[-1] += f"={arg}"
        else:
            joined.append(arg)
    flags, config_path = dict(arg.partition("=")[::2] for arg in joined if arg.startswith("--")), None
    if "--resume" in flags and "--config_path" not in flags:
        config_path = os.path.join(flags["--resume"], "config.yaml")
        if not os.path.isfile(config_path):
            raise UserError(f"cannot resume: {config_path} does not exist (is it a run directory?)")
    if "--config_path" in flags and not os.path.isfile(flags["--config_path"]):
        raise UserError(f"config file not found: '{flags['--config_path']}'")
    valid = [field.name for field in dataclasses.fields(config_class)]
    try:
        with open(flags.get("--config_path") or config_path or os.devnull) as file:
            yaml_keys = list(yaml.safe_load(file) or {})
    except (yaml.YAMLError, TypeError) as error:
        raise UserError(f"the config file is not a YAML mapping of keys to values ({error})") from None
    for key in [flag[2:] for flag in flags] + yaml_keys:
        if key not in valid + ["config_path", "help"]:
            raise UserError(f"unknown config key '{key}'{did_you_mean(key, valid)}. Valid keys: {', '.join(valid)}")
    for kind in (int, bool):  # pyrallis alone would read 10.5 as 10 and 3 as true
        pyrallis.decode.register(kind, functools.partial(exactly, kind))
    pyrallis.parsers.decoding.get_decoding_fn.cache_clear()  # forget decoders cached before these
    # pyrallis re-reads the script's source once per field when a YAML is given (about 2 s a parse): cache it.
    getsource, inspect.getsource = inspect.getsource, functools.lru_cache(inspect.getsource)
    try:
        return pyrallis.parse(config_class=config_class, config_path=config_path, args=joined)
    except Exception as error:  # pyrallis raises bare Exceptions for bad values, and __post_init__ ValueErrors
        raise UserError(f"invalid config: {str(error).strip()}") from None
    finally:
        inspect.getsource = getsource


def exactly(kind: type, value: Any) -> Any:
    if type(value) is not kind:
        raise ValueError(f"expected {'an integer' if kind is int else 'true or false'}, got {value!r}")
    return value


def did_you_mean(name: str, options: Any) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


RANGES = {  # check_fields groups: how each is written in messages, and the test
    "positive": ("> 0", lambda value: value > 0),
    "non_negative": (">= 0", lambda value: value >= 0),
    "below_one": ("in [0, 1)", lambda value: 0 <= value < 1),
    "open_unit": ("in (0, 1)", lambda value: 0 < value < 1),
}


def check_fields(config: Any, **groups: Tuple[str, ...]) -> None:
    """Range checks for a TrainConfig's __post_init__ (groups: RANGES), plus the fields every TrainConfig has.

    Tuples are checked element by element and None passes (an optional value left unset)."""
    if config.wandb_mode not in ("offline", "online", "disabled"):
        raise ValueError(f"wandb_mode must be offline, online or disabled, not '{config.wandb_mode}'")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", config.device):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:<index>, not '{config.device}'")
    groups["positive"] = (*groups.get("positive", ()), "log_every", "checkpoint_every", "keep_checkpoints")
    groups["non_negative"] = (*groups.get("non_negative", ()), "train_seed", "eval_seed")
    for group, names in groups.items():
        bound, test = RANGES[group]
        for name in names:
            value = getattr(config, name)
            if not all(test(item) for item in (value if isinstance(value, tuple) else [value] * (value is not None))):
                raise ValueError(f"{name} must be {bound}, not {value}")


def set_seed(seed: int, deterministic_torch: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic_torch)


def pick_device(device: str) -> torch.device:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.startswith("cuda") and int(device[5:] or 0) >= count:
        raise UserError(
            f"device '{device}' requested, but this machine has {count} CUDA device(s); use --device cpu or auto"
        )
    return torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)


def compile_update(update: Callable, enabled: Optional[bool], device: torch.device, parts: Sequence[Any]) -> Callable:
    """The update as written, or (`compile`; default: on CUDA) under torch.compile, with CUDA graphs and TF32
    on CUDA. Compiled, the optimisers' lrs live in tensors, so a scheduler's change recompiles nothing."""
    enabled = device.type == "cuda" if enabled is None else enabled
    for optimizer in (part for part in parts if isinstance(part, torch.optim.Optimizer)):
        for group in optimizer.param_groups:
            # compiled Adam divides by the lr: an lr of 0 (a finished cosine resumed) would give NaN
            group["lr"] = torch.tensor(float(group["lr"]) or 1e-20) if enabled else float(group["lr"])
    if not enabled:
        return update
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    torch._dynamo.config.recompile_limit = 64  # each optimiser compiles its own step, twice (empty, then full state)
    return torch.compile(update, mode="reduce-overhead" if device.type == "cuda" else None)


class Run:
    """A run directory: config.yaml, metrics.jsonl (mirrored to wandb) and checkpoints/ with the RNG states.

    Per-update metrics are summed on the device and averaged at each flush (one host sync per window).
    SIGINT/SIGTERM set `stopping`; the loop then checkpoints, and `checkpoint` exits once written.
    """

    def __init__(self, config: Any, algorithm: str) -> None:
        self.config, self.stop_signal, self.wandb = config, None, None
        self.sums: Dict[str, Any] = {}  # per metric: the sum of its device tensors since the last flush
        self.counts: Dict[str, int] = {}
        self.latest: Dict[str, float] = {}  # the newest value of every metric logged: the summary keeps them
        self.rows = 0  # rows in metrics.jsonl; a checkpoint records how many were written before it
        self.started = self.window_start = time.perf_counter()
        self.config_text = pyrallis.dump(dataclasses.replace(config, resume=None))
        try:
            self.dir = self.resume_dir() if config.resume else self.new_dir(algorithm)
            if self.dir is None:  # a finished run resumed with the same config
                print(f"run {config.resume} is complete (summary.json); raise its budget to continue it")
                sys.exit(0)
        except OSError as error:
            raise UserError(f"cannot write the run directory ({error}); choose a writable --run_dir") from None
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

    def new_dir(self, algorithm: str) -> Path:
        config = self.config
        source = getattr(config, "dataset", None) or config.env  # online scripts name an env, maybe no dataset
        tag = Path(source).stem if source.endswith((".hdf5", ".h5")) else source
        name = f"seed{config.train_seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = Path(config.run_dir or Path("runs", algorithm, tag.replace(":", "_").replace("/", "_"), name))
        # What a start that failed before its first checkpoint leaves behind may be written over; run.log is the
        # log a launcher (benchmarks/sweep.py) keeps of this script's output, there before the script starts.
        content = {path.name for path in run_dir.glob("*")} - {"run.log"}
        leftovers = {"config.yaml", "checkpoints", "metrics.jsonl", "wandb_id.txt", "wandb"}
        checkpointed = any((run_dir / "checkpoints").glob("step_*"))
        failed_start = "config.yaml" in content and content <= leftovers and not checkpointed
        if content and not failed_start:
            raise UserError(
                f"run directory {run_dir} already has content; pass --resume {run_dir} to continue it "
                "or choose another --run_dir (nothing was overwritten)"
            )
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
        (run_dir / "config.yaml").write_text(self.config_text)
        return run_dir

    def resume_dir(self) -> Optional[Path]:
        """The run directory, or None when the run finished with this very config. A changed config (a larger
        budget, say) becomes config.yaml; the one it replaces, and the summary it led to, keep their step."""
        run_dir = Path(self.config.resume)
        newest = max((run_dir / "checkpoints").glob("step_*.pt"), default=None)
        if newest is None:
            raise UserError(f"cannot resume: no checkpoint in {run_dir / 'checkpoints'}")
        if (run_dir / "config.yaml").read_text() == self.config_text:
            return None if (run_dir / "summary.json").exists() else run_dir
        for name in ("config.yaml", "summary.json"):
            if (run_dir / name).exists():
                os.replace(run_dir / name, run_dir / name.replace(".", f".{newest.stem}.", 1))
        (run_dir / "config.yaml").write_text(self.config_text)
        return run_dir

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
        try:  # weights_only: tensors and plain values only, so loading runs no code from the file
            checkpoint = torch.load(newest, map_location=device, weights_only=True)
            rng, self.rows, self.latest = checkpoint["rng"], checkpoint["metrics_rows"], checkpoint["latest_metrics"]
        except (pickle.UnpicklingError, RuntimeError, KeyError) as error:
            raise UserError(
                f"cannot resume from {newest}: not a checkpoint this script writes ({error}); move it away to resume "
                "from the one before, or start a new run"
            ) from None
        random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
        np.random.set_state(("MT19937", rng["numpy"][0].cpu().numpy().astype(np.uint32), *rng["numpy"][1:]))
        torch.set_rng_state(rng["torch"].cpu())
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([state.cpu() for state in rng["cuda"]])
        metrics_path = self.dir / "metrics.jsonl"  # the loop writes the rows after the checkpoint again
        if metrics_path.exists():
            metrics_path.write_text("".join(metrics_path.read_text().splitlines(keepends=True)[: self.rows]))
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
            checkpoints = sorted((self.dir / "checkpoints").glob("step_*.pt"))
            resume = f"; the newest good checkpoint is {checkpoints[-1]}" if checkpoints else ""
            raise UserError(
                f"{', '.join(bad)} became non-finite in the updates before step {step}. Likely causes: learning "
                f"rates too high for this data, or extreme rewards or states in the dataset (try normalising){resume}"
            )
        metrics["train/updates_per_second"] = max(self.counts.values()) / (time.perf_counter() - self.window_start)
        self.sums, self.counts, self.window_start = {}, {}, time.perf_counter()
        return metrics

    def log(self, step: int, metrics: Dict[str, float]) -> None:
        with open(self.dir / "metrics.jsonl", "a") as file:
            file.write(json.dumps({"step": step, **metrics}) + "\n")
        self.rows += 1
        self.latest.update(metrics)
        if self.wandb is not None:
            self.wandb.log(metrics, step=step)

    def checkpoint(self, step: int, state: Dict[str, Any]) -> None:
        """checkpoints/step_<step>.pt with the RNG states, written atomically; keeps the newest keep_checkpoints.

        Everything in it is a tensor or a plain Python value, so it loads with weights_only=True."""
        python_rng, numpy_rng = random.getstate(), np.random.get_state()
        rng = {"python": python_rng, "numpy": [torch.from_numpy(numpy_rng[1].astype(np.int64)), *numpy_rng[2:]]}
        rng["torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        path = self.dir / "checkpoints" / f"step_{step:09d}.pt"
        run_state = {"step": step, "rng": rng, "metrics_rows": self.rows, "latest_metrics": self.latest}
        torch.save({**run_state, **state}, path.with_suffix(".partial"))
        os.replace(path.with_suffix(".partial"), path)
        for old in sorted(path.parent.glob("step_*.pt"))[: -self.config.keep_checkpoints]:
            old.unlink()
        if self.stopping:
            print(f"\nstopped by signal {self.stop_signal}; checkpoint written to {path}", file=sys.stderr)
            sys.exit(128 + self.stop_signal)

    def finish(self, summary: Dict[str, Any]) -> Dict[str, Any]:
        """Writes summary.json (the newest eval/ metrics, the summary given, the wall time and the run directory)."""
        newest_eval = {key: value for key, value in self.latest.items() if key.startswith("eval/")}
        summary = {
            **newest_eval,
            **summary,
            "wall_time_s": time.perf_counter() - self.started,
            "run_dir": str(self.dir),
        }
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if self.wandb is not None:
            self.wandb.summary.update(summary)
            self.wandb.finish()
        return summary
