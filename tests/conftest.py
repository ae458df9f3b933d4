"""Shared fixtures: tiny datasets made by the project's own generator, and script loading."""

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

# Tiny models gain nothing from threads, and on a 2-core machine shared with env stepping and
# subprocesses, torch's default thread pool makes them many times slower. Scripts run as
# subprocesses inherit this too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

# pytest.ini puts the repository root (for blocks/, the canonical plumbing, tested as modules) and
# benchmarks/ (for its `common` helpers, as when a benchmark runs) on the import path.
from common import ROOT, load_script  # noqa: E402, F401


def run_cli(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def generator() -> ModuleType:
    import d4rl_compat.generate

    return d4rl_compat.generate


@pytest.fixture(scope="session")
def hopper_random(tmp_path_factory) -> Path:
    """3000 transitions of uniformly random actions on Hopper-v5, written by the generator CLI."""
    path = tmp_path_factory.mktemp("data") / "hopper-random.hdf5"
    result = run_cli(
        "-m", "d4rl_compat.generate", "--env", "hopper", "--num_transitions", "3000", "--output", str(path)
    )
    assert result.returncode == 0, result.stderr
    return path


class LinearPolicy:
    """A deterministic behaviour policy, so a model trained on its data has something to learn."""

    description = "tanh of a fixed linear map of the observation"

    def __init__(self, env, seed: int):
        rng = np.random.default_rng(seed)
        self.weights = rng.normal(size=(env.observation_space.shape[0], env.action_space.shape[0]))

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        return np.tanh(observation @ self.weights).astype(np.float32)


@pytest.fixture(scope="session")
def hopper_linear(tmp_path_factory, generator) -> Path:
    """2000 transitions of a deterministic policy on Hopper-v5 in D4RL format."""
    path = tmp_path_factory.mktemp("data") / "hopper-linear.hdf5"
    generator.BEHAVIOUR_POLICIES["linear"] = LinearPolicy
    try:
        spec = generator.env_spec_for("hopper", 1000)
        arrays = generator.collect(spec, "linear", 2000, seed=0)
    finally:
        del generator.BEHAVIOUR_POLICIES["linear"]
    generator.write_hdf5(
        path,
        arrays,
        {
            "env_id": spec.env_id,
            "env_kwargs": "{}",
            "max_episode_steps": 1000,
            "ref_min_score": spec.ref_min_score,
            "ref_max_score": spec.ref_max_score,
        },
    )
    return path
