"""What the benchmark scripts share: loading a single-file script as a module, generated data, timing.

The benchmark scripts are run as `python benchmarks/<name>.py`, so Python puts this folder on the
import path and `import common` needs no path tricks; the tests import it the same way.
"""

import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative_path: str) -> ModuleType:
    """Imports a single-file script (path relative to the repository root) as a module, once."""
    name = "script_" + relative_path.replace("/", "_").removesuffix(".py")
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / relative_path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def generate_dataset(path: Path, env: str = "hopper", policy: str = "random", transitions: int = 20_000) -> Path:
    """A D4RL-format file of `transitions` steps written by d4rl_compat's generator, seed 0."""
    from d4rl_compat import generate

    spec = generate.env_spec_for(env, 1000)
    arrays = generate.collect(spec, policy, transitions, seed=0)
    metadata = {"env_id": spec.env_id, "env_kwargs": json.dumps(spec.kwargs), "max_episode_steps": 1000}
    metadata.update(ref_min_score=spec.ref_min_score, ref_max_score=spec.ref_max_score)
    generate.write_hdf5(path, arrays, metadata)
    return path


def rate(work: Callable[[], int], seconds: float, device: torch.device) -> float:
    """Units of work per second: runs `work` (returning units done) until `seconds` pass, after a warm-up."""
    work()
    if device.type == "cuda":
        torch.cuda.synchronize()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += work()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return done / (time.perf_counter() - start)
