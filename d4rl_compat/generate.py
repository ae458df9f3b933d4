"""Writes D4RL-format hdf5 datasets for Gymnasium MuJoCo envs, with the modern physics.

    python -m d4rl_compat.generate --env hopper --policy random --output data/hopper-random.hdf5
    python -m d4rl_compat.generate --env hopper --policy medium            # the committed SAC policy
    python -m d4rl_compat.generate --env hopper --policy medium-replay --replay_run runs/behaviour/hopper

The file has D4RL's flat arrays (observations, next_observations, actions, rewards, terminals,
timeouts, infos/qpos, infos/qvel) and a metadata/ group (env_id, env_kwargs, max_episode_steps,
policy and its card, seed, reference scores where known) that the training scripts read to build
the evaluation env. The same seed gives the same file.

Levels, as D4RL built them: `random` (uniform actions), `medium` and `expert` (the committed SAC
policies of d4rl_compat/policies/, actions sampled from the policy), `medium-expert` (the medium
file followed by the expert file of the same seed), `medium-replay` and `full-replay` (the replay
buffer of the SAC run that trained the policies, up to the medium and the expert snapshot; the
run directory is needed, not committed). `--policy` also takes a path to any exported policy .pt.
"""

import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import gymnasium as gym
import h5py
import numpy as np
import pyrallis
from tqdm import tqdm

from d4rl_compat.envs import D4RL_LOCOMOTION_ENVS, d4rl_env_spec, wrap


@dataclass
class GenerateConfig:
    env: str = "hopper"  # a D4RL domain (hopper, halfcheetah, walker2d, ant) or a Gymnasium env id
    policy: str = "random"  # random, a D4RL level (see LEVEL_SIZES) or a path to an exported policy .pt
    num_transitions: Optional[int] = None  # default D4RL's: 1M (medium-expert 1M + 1M; replays: the buffer)
    max_episode_steps: int = 1000  # episodes longer than this end with a timeout
    seed: int = 0
    replay_run: Optional[str] = None  # medium-replay / full-replay: the sac.py run that trained the policies
    output: Optional[str] = None  # default: data/<env>-<policy>.hdf5
    overwrite: bool = False
    # --suite true: every level of every locomotion domain that has committed policies, then Maze2D (env,
    # policy, output and replay_run are set per file); files already there are kept, so a stopped suite goes on
    suite: bool = False
    output_dir: str = "data/generated"
    replay_dir: str = "runs/behaviour"  # <replay_dir>/<domain>: the run the replay levels read, where present
    workers: int = 1  # --suite: processes writing files at once (each file is one process's work)


LEVEL_SIZES = {"random": 1_000_000, "medium": 1_000_000, "expert": 1_000_000, "medium-expert": 1_000_000}
REPLAY_LEVELS = {"medium-replay": "medium", "full-replay": "expert"}  # the buffer up to this policy's snapshot


class RandomPolicy:
    description = "uniformly random actions over the action box"

    def __init__(self, env: gym.Env, seed: int):
        self.low, self.high = env.action_space.low, env.action_space.high
        self.rng = np.random.default_rng(seed)

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        return self.rng.uniform(self.low, self.high).astype(np.float32)


BEHAVIOUR_POLICIES = {"random": RandomPolicy}


def behaviour_policy(name: str, env: gym.Env, seed: int) -> Any:
    """A registered policy (BEHAVIOUR_POLICIES) or an exported SAC policy file."""
    if name in BEHAVIOUR_POLICIES:
        return BEHAVIOUR_POLICIES[name](env, seed)
    from d4rl_compat.policies import SACPolicy

    return SACPolicy(Path(name), seed)


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
    """Runs the behaviour policy (a BEHAVIOUR_POLICIES key or a policy file) for exactly `num_transitions`
    steps, resetting at episode ends."""
    env = spec.make()
    policy = behaviour_policy(policy_name, env, seed)
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


def replay_arrays(run_dir: Path, env_steps: int) -> dict:
    """The first `env_steps` rows of a sac.py run's replay buffer (every step in order), as one episode
    stream per env: rows alternate between the run's envs, so each env's rows are gathered in turn, and
    the step where the buffer is cut ends as a timeout unless it was terminal."""
    import torch
    import yaml

    checkpoint = max((run_dir / "checkpoints").glob("step_*.pt"), default=None)
    if checkpoint is None:
        raise UserError(f"{run_dir} has no checkpoint: the replay levels need the run that trained the policies")
    rows = torch.load(checkpoint, map_location="cpu", weights_only=True)["online_buffer"]
    if len(rows["rewards"]) < env_steps:
        raise UserError(f"{checkpoint} holds {len(rows['rewards'])} steps, fewer than the {env_steps} asked for")
    num_envs = yaml.safe_load((run_dir / "config.yaml").read_text())["num_envs"]
    per_env = lambda values: values[:env_steps].numpy().reshape(env_steps // num_envs, num_envs, -1).swapaxes(0, 1)
    arrays = {key: per_env(rows[key]) for key in ("observations", "actions", "next_observations")}
    arrays.update({key: per_env(rows[key])[..., 0] for key in ("rewards", "dones", "timeouts")})
    arrays["timeouts"][:, -1] = 1.0 - arrays["dones"][:, -1]
    flat = {key: values.reshape(env_steps, *values.shape[2:]) for key, values in arrays.items()}
    flat["terminals"], flat["timeouts"] = flat.pop("dones").astype(bool), flat["timeouts"].astype(bool)
    return {key: values.astype(np.float32) if values.dtype != bool else values for key, values in flat.items()}


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


def level_arrays(config: GenerateConfig, spec: EnvSpec) -> Tuple[dict, Dict[str, Any]]:
    """The arrays of `config.policy` (random, a D4RL level or a policy file) and what the metadata says of it."""
    from d4rl_compat.policies import LEVELS, load_card, policy_path

    name, count = config.policy, config.num_transitions
    if name in REPLAY_LEVELS:
        if count is not None:
            raise UserError(
                f"{name} is the replay buffer up to a snapshot: its size is the buffer's, drop --num_transitions"
            )
        if config.replay_run is None:
            raise UserError(f"{name} needs --replay_run: the algorithms/online/sac.py run that trained the policies")
    if count is not None and count <= 0:
        raise UserError("num_transitions must be positive")
    count = count or LEVEL_SIZES.get(name, 1_000_000)
    if name in BEHAVIOUR_POLICIES:
        return collect(spec, name, count, config.seed), {"policy_description": BEHAVIOUR_POLICIES[name].description}
    if name == "medium-expert":  # D4RL: the medium file followed by the expert file
        parts = [level_arrays(replace(config, policy=level, num_transitions=count), spec) for level in LEVELS]
        arrays = {key: np.concatenate([part[0][key] for part in parts]) for key in parts[0][0]}
        return arrays, {"policy_card": json.dumps([json.loads(part[1]["policy_card"]) for part in parts])}
    path = policy_path(config.env, REPLAY_LEVELS.get(name, name)) if name in (*LEVELS, *REPLAY_LEVELS) else Path(name)
    if not path.exists():
        how = "train one with algorithms/online/sac.py and export it with `python -m d4rl_compat.policies export`"
        known = ", ".join(dict.fromkeys([*BEHAVIOUR_POLICIES, *LEVEL_SIZES, *REPLAY_LEVELS]))
        raise UserError(f"no policy file {path} for '{name}' (policies: {known}, or a .pt path); {how}")
    card = load_card(path) if path.with_suffix(".json").exists() else {}
    info = {"policy_card": json.dumps(card), "policy_description": f"SAC actor {path.name}, sampled actions"}
    if card and card["env_id"] != spec.env_id:
        raise UserError(f"{path} acts in {card['env_id']}, not in {spec.env_id} ('{config.env}')")
    if name not in REPLAY_LEVELS:
        return collect(spec, str(path), count, config.seed), info
    run, steps = Path(config.replay_run), card["training"]["env_steps"]
    if not trained_by(run, path):
        raise UserError(f"{run} is not the run that trained {path}: its snapshot at step {steps} differs or is missing")
    info["policy_description"] = f"replay buffer of {run} up to env step {steps}, when {path.name} was saved"
    return replay_arrays(run, steps), {**info, "replay_run": str(run), "replay_rows": steps}


def trained_by(run: Path, policy: Path) -> bool:
    """Whether `run` is the sac.py run that trained this exported policy: its snapshot at the card's step is
    the policy's actor. A replay level is the buffer of that very run."""
    from d4rl_compat.policies import load_card

    snapshot = run / "policies" / f"step_{load_card(policy)['training']['env_steps']:09d}.pt"
    return snapshot.exists() and same_actor(snapshot, policy)


def same_actor(first: Path, second: Path) -> bool:
    import torch

    actors = [torch.load(path, map_location="cpu", weights_only=True)["actor"] for path in (first, second)]
    return actors[0].keys() == actors[1].keys() and all(torch.equal(actors[0][k], actors[1][k]) for k in actors[0])


def main(args: Optional[List[str]] = None) -> None:
    config = parse_arguments(GenerateConfig, args)
    if config.suite:
        write_suite(config)
    else:
        write_level(config)


def write_level(config: GenerateConfig) -> None:
    label = Path(config.policy).stem if config.policy.endswith(".pt") else config.policy
    output = Path(config.output or f"data/{config.env}-{label}.hdf5")
    if output.exists() and not config.overwrite:
        raise UserError(f"{output} already exists; pass --overwrite true to replace it or choose another --output")
    spec = env_spec_for(config.env, config.max_episode_steps)
    try:
        spec.make().close()
    except Exception as error:  # gymnasium raises many types for an unknown id
        raise UserError(f"cannot build env '{config.env}' ({error}); use a D4RL domain or a Gymnasium env id") from None
    arrays, policy_metadata = level_arrays(config, spec)
    metadata = {
        "dataset_name": f"{config.env}-{label}",
        "env_id": spec.env_id,
        "env_kwargs": json.dumps(spec.kwargs),
        "max_episode_steps": config.max_episode_steps,
        "policy": config.policy,
        **policy_metadata,
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
        f"wrote {output}: {len(arrays['rewards'])} transitions, {len(returns)} episodes, "
        f"return mean {returns.mean():.1f} (min {returns.min():.1f}, max {returns.max():.1f})"
    )


def write_suite(config: GenerateConfig) -> None:
    """Every level D4RL has for each locomotion domain, from the committed policies and, where the training
    run is at hand, its replay buffer, then the eight Maze2D datasets and, when AntMaze's controller is
    committed, the two umaze AntMaze ones; prints what it skipped and why, each file's time and the total. With
    `workers` > 1 the files are written by that many processes at once."""
    from d4rl_compat import policies

    if config.workers < 1:
        raise UserError("workers must be at least 1")
    started, jobs = time.perf_counter(), suite_jobs(config)
    if config.workers == 1 or not jobs:  # a pool needs work to map over
        for job in jobs:
            write_suite_file(*job)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        spawn = multiprocessing.get_context("spawn")  # no fork of a process that has torch's threads
        parent_policies = (str(policies.POLICY_DIR),)
        with ProcessPoolExecutor(
            config.workers, mp_context=spawn, initializer=use_policy_dir, initargs=parent_policies
        ) as pool:
            list(pool.map(write_suite_file, *zip(*jobs)))
    workers = f"{config.workers} worker process{'es' if config.workers > 1 else ''}"
    print(f"suite written to {config.output_dir} in {time.perf_counter() - started:.0f} s ({workers})")


def suite_jobs(config: GenerateConfig) -> List[Tuple[str, str, Any]]:
    """The suite's files still to write, as (output, kind, arguments): a locomotion level's config, or the
    command-line args of Maze2D's or (with a committed controller) AntMaze's generator."""
    from d4rl_compat import antmaze, maze2d, policies
    from d4rl_compat.policies import LEVELS, policy_path

    jobs, output_dir = [], Path(config.output_dir)
    for domain in D4RL_LOCOMOTION_ENVS:
        have = [level for level in LEVELS if policy_path(domain, level).exists()]
        run = Path(config.replay_dir) / domain
        replays = [
            level
            for level, source in REPLAY_LEVELS.items()
            if source in have and (run / "checkpoints").is_dir() and trained_by(run, policy_path(domain, source))
        ]
        levels = ["random", *have, *(["medium-expert"] if len(have) == len(LEVELS) else []), *replays]
        missing = [level for level in (*LEVEL_SIZES, *REPLAY_LEVELS) if level not in levels]
        if missing:
            why = f"policies committed: {have or 'none'}; the replay levels need {run} to be the run that trained them"
            print(f"{domain}: no {', '.join(missing)} ({why})")
        for level in levels:
            replay = {"replay_run": str(run), "num_transitions": None} if level in REPLAY_LEVELS else {}
            output = output_dir / f"{domain}-{level}.hdf5"
            level_config = replace(config, env=domain, policy=level, output=str(output), suite=False, **replay)
            jobs.append((str(output), "level", level_config))
    size = [] if config.num_transitions is None else ["--num_transitions", str(config.num_transitions)]
    for maze, reward in ((maze, reward) for maze in maze2d.D4RL_MAZE2D_MAPS for reward in ("sparse", "dense")):
        output = output_dir / f"{maze2d.dataset_name(maze, reward == 'dense')}.hdf5"
        args = ["--maze", maze, "--reward", reward, "--seed", str(config.seed), "--output", str(output), *size]
        args += ["--overwrite", "true"] if config.overwrite else []
        jobs.append((str(output), "maze2d", args))
    controller = policies.POLICY_DIR / antmaze.CONTROLLER
    if not controller.exists():
        print(f"antmaze: no datasets (no controller {controller}; see d4rl_compat.antmaze)")
    else:
        left_out = [name for name in antmaze.DATASETS if name not in antmaze.D4RL_LIKE]
        print(f"antmaze: no {', '.join(left_out)} (the controller is below D4RL's there; see d4rl_compat.antmaze)")
    for name in antmaze.D4RL_LIKE if controller.exists() else ():
        output = output_dir / f"{name}.hdf5"
        args = ["--dataset", name, "--policy", str(controller), "--seed", str(config.seed), "--output", str(output)]
        args += [*size, *(["--overwrite", "true"] if config.overwrite else [])]
        jobs.append((str(output), "antmaze", args))
    to_write = []
    for job in jobs:
        if Path(job[0]).exists() and not config.overwrite:
            print(f"{job[0]} exists, kept")
        else:
            to_write.append(job)
    return to_write


def write_suite_file(output: str, kind: str, arguments: Any) -> None:
    from d4rl_compat import antmaze, maze2d

    started = time.perf_counter()
    {"level": write_level, "maze2d": maze2d.main, "antmaze": antmaze.main}[kind](arguments)
    print(f"{output} took {time.perf_counter() - started:.0f} s", flush=True)


def use_policy_dir(path: str) -> None:
    """A worker process reads the policies from the parent's directory (tests point it elsewhere)."""
    from d4rl_compat import policies

    policies.POLICY_DIR = Path(path)


class UserError(Exception):
    """Bad arguments: reported as one message, exit code 2."""


def d4rl_env_metadata(name: str) -> Dict[str, Any]:
    """What a file of a D4RL name says of its env (d4rl_env_spec's fields), from which the scripts rebuild it."""
    spec = d4rl_env_spec(name)
    keys = ("env_id", "max_episode_steps", "adapter", "reports_success", "ref_min_score", "ref_max_score", "note")
    return {"dataset_name": name, "env_kwargs": json.dumps(spec["kwargs"]), **{key: spec[key] for key in keys}}


def parse_arguments(config_class: type, args: Optional[List[str]]) -> Any:
    """The command line as `config_class`; pyrallis' bare Exceptions (unknown keys, bad values) become a UserError."""
    try:
        return pyrallis.parse(config_class=config_class, args=args)
    except Exception as error:
        raise UserError(f"invalid arguments: {error}") from None


def run_command(main: Callable[[], Any]) -> None:
    """A module's entry point: a UserError is one line on stderr and exit code 2, with nothing written."""
    try:
        main()
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run_command(main)
