"""Writes D4RL-format hdf5 datasets for Gymnasium MuJoCo envs, with the modern physics.

    python -m d4rl_compat.generate --env hopper --policy random --output data/hopper-random.hdf5

The file has D4RL's flat arrays (observations, next_observations, actions, rewards, terminals,
timeouts, infos/qpos, infos/qvel) and a metadata/ group (env_id, env_kwargs, max_episode_steps,
policy, seed, reference scores where known) that the training scripts read to build the
evaluation env. The same seed gives the same file.

Behaviour policies are entries of BEHAVIOUR_POLICIES: a class built from (env, seed) with a
`description` and a `__call__(observation) -> action`. `random` is here; policies trained to
medium/expert level plug in the same way (medium-replay and medium-expert are then mixes of
their runs).
"""

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import gymnasium as gym
import h5py
import numpy as np
import pyrallis
from tqdm import tqdm

from d4rl_compat.envs import D4RL_LOCOMOTION_ENVS, d4rl_env_spec, wrap


@dataclass
class GenerateConfig:
    env: str = "hopper"  # a D4RL domain (hopper, halfcheetah, walker2d, ant) or a Gymnasium env id
    policy: str = "random"  # a key of BEHAVIOUR_POLICIES
    num_transitions: int = 1_000_000  # D4RL's size
    max_episode_steps: int = 1000  # episodes longer than this end with a timeout
    seed: int = 0
    output: Optional[str] = None  # default: data/<env>-<policy>.hdf5
    overwrite: bool = False


class RandomPolicy:
    description = "uniformly random actions over the action box"

    def __init__(self, env: gym.Env, seed: int):
        self.low, self.high = env.action_space.low, env.action_space.high
        self.rng = np.random.default_rng(seed)

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)


BEHAVIOUR_POLICIES = {"random": RandomPolicy}


@dataclass
class EnvSpec:
    """The env a dataset is recorded in, and the reference scores its metadata will carry."""

    env_id: str
    kwargs: Dict[str, Any] = field(default_factory=dict)
    max_episode_steps: Optional[int] = None
    ref_min_score: Optional[float] = None
    ref_max_score: Optional[float] = None
    adapter: str = ""
    note: str = ""

    def make(self) -> gym.Env:
        env = gym.make(self.env_id, max_episode_steps=self.max_episode_steps, **self.kwargs)
        return wrap(env, self.adapter) if self.adapter else env


def env_spec_for(env: str, max_episode_steps: int) -> EnvSpec:
    """A D4RL domain gets its D4RL env mapping and reference scores; any other id gets none."""
    if env in D4RL_LOCOMOTION_ENVS:
        fields = d4rl_env_spec(f"{env}-random-v2")
        fields.pop("reports_success")
        return EnvSpec(**{**fields, "max_episode_steps": max_episode_steps})
    return EnvSpec(env, {}, max_episode_steps)


def collect(spec: EnvSpec, policy_name: str, num_transitions: int, seed: int) -> dict:
    """Runs the behaviour policy for exactly `num_transitions` steps, resetting at episode ends."""
    env = spec.make()
    policy = BEHAVIOUR_POLICIES[policy_name](env, seed)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    mujoco_data = getattr(env.unwrapped, "data", None)
    arrays = {
        "observations": np.zeros((num_transitions, obs_dim), np.float32),
        "next_observations": np.zeros((num_transitions, obs_dim), np.float32),
        "actions": np.zeros((num_transitions, act_dim), np.float32),
        "rewards": np.zeros(num_transitions, np.float32),
        "terminals": np.zeros(num_transitions, bool),
        "timeouts": np.zeros(num_transitions, bool),
    }
    if mujoco_data is not None:
        arrays["infos/qpos"] = np.zeros((num_transitions, mujoco_data.qpos.size), np.float32)
        arrays["infos/qvel"] = np.zeros((num_transitions, mujoco_data.qvel.size), np.float32)
    observation, _ = env.reset(seed=seed)
    for step in tqdm(range(num_transitions), desc=f"{spec.env_id} {policy_name}", mininterval=1.0):
        if mujoco_data is not None:
            arrays["infos/qpos"][step] = mujoco_data.qpos
            arrays["infos/qvel"][step] = mujoco_data.qvel
        action = policy(observation)
        next_observation, reward, terminated, truncated, _ = env.step(action)
        arrays["observations"][step] = observation
        arrays["next_observations"][step] = next_observation
        arrays["actions"][step] = action
        arrays["rewards"][step] = reward
        arrays["terminals"][step] = terminated
        arrays["timeouts"][step] = truncated and not terminated
        observation = env.reset()[0] if terminated or truncated else next_observation
    # The file ends mid-episode: mark it as cut by a time limit, never as a true terminal.
    arrays["timeouts"][-1] |= not arrays["terminals"][-1]
    env.close()
    return arrays


def write_hdf5(path: Path, arrays: dict, metadata: dict) -> None:
    """Writes to a .partial file and renames it, so a crash never leaves a truncated dataset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with h5py.File(partial, "w") as file:
        for key, values in arrays.items():
            file.create_dataset(key, data=values, compression="gzip", compression_opts=1)
        for key, value in metadata.items():
            if value is not None:
                file.create_dataset(f"metadata/{key}", data=value)
    os.replace(partial, path)


def main(args: Optional[List[str]] = None) -> None:
    try:
        config = pyrallis.parse(config_class=GenerateConfig, args=args)
    except Exception as error:  # pyrallis raises bare Exceptions for unknown keys and bad values
        raise UserError(f"invalid arguments: {error}") from None
    if config.policy not in BEHAVIOUR_POLICIES:
        raise UserError(f"unknown policy '{config.policy}'; available: {', '.join(BEHAVIOUR_POLICIES)}")
    if config.num_transitions <= 0:
        raise UserError("num_transitions must be positive")
    output = Path(config.output or f"data/{config.env}-{config.policy}.hdf5")
    if output.exists() and not config.overwrite:
        raise UserError(f"{output} already exists; pass --overwrite true to replace it or choose another --output")
    spec = env_spec_for(config.env, config.max_episode_steps)
    try:
        spec.make().close()
    except Exception as error:  # gymnasium raises many types for an unknown id
        raise UserError(f"cannot build env '{config.env}' ({error}); use a D4RL domain or a Gymnasium env id") from None
    arrays = collect(spec, config.policy, config.num_transitions, config.seed)
    metadata = {
        "dataset_name": f"{config.env}-{config.policy}",
        "env_id": spec.env_id,
        "env_kwargs": json.dumps(spec.kwargs),
        "max_episode_steps": config.max_episode_steps,
        "policy": config.policy,
        "policy_description": BEHAVIOUR_POLICIES[config.policy].description,
        "seed": config.seed,
        "ref_min_score": spec.ref_min_score,
        "ref_max_score": spec.ref_max_score,
        "ref_scores_source": "D4RL reference constants for this domain" if spec.ref_min_score is not None else None,
        "note": spec.note or None,
    }
    write_hdf5(output, arrays, metadata)
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"]) + 1
    returns = np.add.reduceat(arrays["rewards"], np.concatenate([[0], ends[:-1]]))
    print(
        f"wrote {output}: {config.num_transitions} transitions, {len(returns)} episodes, "
        f"return mean {returns.mean():.1f} (min {returns.min():.1f}, max {returns.max():.1f})"
    )


class UserError(Exception):
    """Bad arguments: reported as one message, exit code 2."""


if __name__ == "__main__":
    try:
        main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
