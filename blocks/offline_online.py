"""Shared block: the training loop of the value-based scripts, offline phase then online phase.

Canonical source; see blocks/runtime.py for how blocks are copied into scripts.
"""
import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
from tqdm import tqdm

from blocks.runtime import (RunLogger, StopRequest, UserError, load_latest_checkpoint, pick_device, prepare_run_dir,
                            save_checkpoint, set_seed)
from blocks.datasets import load_dataset, state_stats
from blocks.transitions import (TransitionBuffer, binary_rewards, dataset_file_arrays, locomotion_reward_scale,
                                monte_carlo_returns, sample_mixed, transition_arrays)
from blocks.evaluation import evaluate_policy, evaluation_metrics, fraction_of_best, regret

# === block ===
@dataclass
class RunConfig:
    """Config fields every value-based script shares (CORL names where CORL has them)."""

    # wandb
    project: str = "ORL"
    group: str = ""
    name: str = ""
    wandb_mode: str = "offline"  # offline (no account, no network), online, or disabled
    # data
    dataset: str = "hopper-medium-v2"  # D4RL name (CORL: env), minari:<id>, or path to a D4RL-format hdf5
    allow_download: bool = True  # fetch a missing D4RL file into the d4rl cache directory
    normalize: bool = True  # normalise states with the dataset's mean and std
    reward_scale: float = 1.0  # training reward = raw * reward_scale + reward_bias, offline and online
    reward_bias: float = 0.0
    binary_reward: bool = False  # Cal-QL's binary Adroit variant: raw reward 0 at the goal, -1 elsewhere
    is_sparse_reward: bool = False  # Monte-Carlo rule: all-failure segments get fail / (1 - discount)
    sparse_fail_reward: float = 0.0  # the RAW failure reward (antmaze 0, binary adroit -1), transformed as above
    discount: float = 0.99
    batch_size: int = 256
    # evaluation
    eval_freq: int = 5000  # updates offline, env steps online
    n_episodes: int = 10
    eval_seed: int = 42
    # run
    train_seed: int = 0  # CORL: seed
    deterministic_torch: bool = False
    device: str = "auto"  # auto: cuda when available, else cpu
    run_dir: Optional[str] = None  # default: runs/<algorithm>/<dataset>/seed<train_seed>-<time>
    resume: Optional[str] = None  # a run directory to continue from its newest checkpoint
    log_every: int = 1000
    checkpoint_every: int = 50_000
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        if self.wandb_mode not in ("offline", "online", "disabled"):
            raise ValueError(f"wandb_mode must be offline, online or disabled, not '{self.wandb_mode}'")
        for name in ("batch_size", "eval_freq", "n_episodes", "log_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.eval_freq % self.log_every or self.checkpoint_every % self.log_every:
            raise ValueError("eval_freq and checkpoint_every must be multiples of log_every")
        if not 0.0 < self.discount < 1.0:
            raise ValueError("discount must be in (0, 1)")
        if getattr(self, "offline_iterations", 0) < 0 or getattr(self, "online_iterations", 0) < 0:
            raise ValueError("offline_iterations and online_iterations must be >= 0")
        if getattr(self, "utd_ratio", 1) <= 0:
            raise ValueError("utd_ratio must be positive")
        mixing_ratio = getattr(self, "mixing_ratio", None)
        if mixing_ratio is not None and not 0.0 <= mixing_ratio < 1.0:
            raise ValueError("mixing_ratio (the offline share of each batch) must be in [0, 1), or null for one buffer")


@dataclass
class FineTuneSchedule:
    """Config fields of the offline-to-online scripts (validated by RunConfig.__post_init__)."""

    offline_iterations: int = 1_000_000  # gradient updates on the dataset alone
    online_iterations: int = 1_000_000  # env steps of fine-tuning
    utd_ratio: int = 1  # updates per collected env step (run after each episode)
    # Offline share of each online-phase batch; the rest comes from an online-only buffer.
    # null: online steps join the dataset's buffer, sampled uniformly (official IQL).
    mixing_ratio: Optional[float] = 0.5


class MetricWindow:
    """Sums per-update metrics on the device; one host sync per `log_every` updates."""

    def __init__(self) -> None:
        self.sums: Dict[str, torch.Tensor] = {}
        self.count, self.start = 0, time.perf_counter()

    def add(self, metrics: Dict[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
        self.count += 1

    def flush(self, step: int, run_dir: Any) -> Dict[str, float]:
        if not self.count:
            return {}
        keys = list(self.sums)
        values = (torch.stack([self.sums[key].float() for key in keys]) / self.count).tolist()
        metrics = {f"train/{key}": value for key, value in zip(keys, values)}
        bad = [key for key, value in metrics.items() if not math.isfinite(value)]
        if bad:
            raise UserError(
                f"{', '.join(bad)} became non-finite in the {self.count} updates before step {step}; the newest good "
                f"checkpoint is in {run_dir}/checkpoints. Lower the learning rates, or check the dataset and rewards"
            )
        metrics["train/updates_per_second"] = self.count / (time.perf_counter() - self.start)
        self.sums, self.count, self.start = {}, 0, time.perf_counter()
        return metrics


def reward_transform(config: Any, dataset: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """raw rewards (and per-step goal flags) -> training rewards, identical offline and online:
    binary variant first (0 at the goal, -1 elsewhere), then IQL's locomotion normalisation, then
    r * reward_scale + reward_bias."""
    factor = locomotion_reward_scale(dataset) if getattr(config, "normalize_reward", False) else 1.0

    def transform(rewards: np.ndarray, success: np.ndarray) -> np.ndarray:
        rewards = binary_rewards(success) if config.binary_reward else np.asarray(rewards, np.float32)
        return (rewards * factor * config.reward_scale + config.reward_bias).astype(np.float32)

    return transform


def train_offline_online(
    config: Any, algorithm: str, make_agent: Callable[[int, int, torch.device], Any], offline_steps: int,
    online_steps: int = 0, mixing_ratio: Optional[float] = None, utd_ratio: int = 1,
) -> Dict[str, Any]:
    """`offline_steps` updates on the dataset, then `online_steps` env steps of fine-tuning.

    Online (the official Cal-QL loop): collect one full stochastic episode, give it Monte-Carlo
    returns by the dataset's rule, then run len(episode) * utd_ratio updates. With `mixing_ratio`
    each batch takes int(batch_size * mixing_ratio) rows from the dataset and the rest from an
    online-only buffer; with None the online steps join the dataset's buffer, sampled uniformly
    (IQL). Evaluation is deterministic every `eval_freq` updates offline / env steps online, and at
    the switch (fine-tuning step 0), from which the regret is computed.
    """
    device = pick_device(config.device)
    dataset = load_dataset(config.dataset, config.allow_download)
    extra = dataset_file_arrays(dataset, ("next_observations", "infos/goal_achieved"))
    if config.binary_reward and "infos/goal_achieved" not in extra:
        raise UserError(f"binary_reward needs per-step goal flags (infos/goal_achieved) in the dataset file, and "
                        f"'{dataset.name}' has none; set binary_reward false")
    if online_steps and config.binary_reward and not dataset.env.reports_success:
        raise UserError(f"binary_reward needs an env that reports success; {dataset.env.env_id} does not")
    run_dir = prepare_run_dir(config, algorithm)
    set_seed(config.train_seed, config.deterministic_torch)
    transform = reward_transform(config, dataset)
    rewards = transform(dataset.rewards, extra.get("infos/goal_achieved", np.zeros(len(dataset.rewards), bool)))
    fail_reward = float(transform(np.array([config.sparse_fail_reward]), np.zeros(1, bool))[0])
    if config.normalize:
        mean, std = state_stats(dataset.observations, eps=1e-3)
    else:
        mean, std = np.zeros(dataset.observations.shape[1], np.float32), np.ones(dataset.observations.shape[1], np.float32)
    normalized = dataclasses.replace(dataset, observations=((dataset.observations - mean) / std).astype(np.float32))
    next_observations = extra.get("next_observations")
    arrays = transition_arrays(normalized, rewards, config.discount, config.is_sparse_reward, fail_reward,
                               None if next_observations is None else (next_observations - mean) / std)
    state_dim, action_dim = dataset.observations.shape[1], dataset.actions.shape[1]
    episode_cap = dataset.env.max_episode_steps or 1000
    online_capacity = online_steps + episode_cap if online_steps else 0
    offline = TransitionBuffer(state_dim, action_dim, len(arrays["rewards"]) + (0 if mixing_ratio else online_capacity), device)
    offline.add(arrays)
    offline.freeze()
    online = TransitionBuffer(state_dim, action_dim, online_capacity, device) if mixing_ratio else offline
    mean_t, std_t = torch.as_tensor(mean, device=device), torch.as_tensor(std, device=device)
    agent = make_agent(state_dim, action_dim, device)

    step, env_steps, episodes, scores, offline_metrics = 0, 0, 0, [], {}
    if config.resume:
        checkpoint = load_latest_checkpoint(run_dir, device)
        agent.load_state_dict(checkpoint["agent"])
        online.load_state_dict(checkpoint["online_buffer"])
        step, env_steps, episodes = checkpoint["step"], checkpoint["env_steps"], checkpoint["episodes"]
        scores, offline_metrics = checkpoint["regret_scores"], checkpoint["offline_metrics"]
        print(f"resuming {run_dir} from step {step} ({'online' if step >= offline_steps and online_steps else 'offline'} phase)")
    logger = RunLogger(run_dir, config, resume_step=step)
    eval_envs = dataset.env.make_vector(config.n_episodes)
    explore_env = dataset.env.make() if online_steps else None
    stop = StopRequest()
    window, started = MetricWindow(), time.perf_counter()
    eval_metrics: Dict[str, float] = {}

    def evaluate() -> Dict[str, float]:
        act = lambda state: agent.act(state, deterministic=True)  # noqa: E731
        metrics = evaluation_metrics(*evaluate_policy(act, eval_envs, config.eval_seed, mean_t, std_t), dataset.env)
        window.start = time.perf_counter()  # evaluation time is not training throughput
        return metrics

    def checkpoint_now(at: int) -> Any:
        state = {"agent": agent.state_dict(), "online_buffer": online.state_dict(), "env_steps": env_steps,
                 "episodes": episodes, "regret_scores": scores, "offline_metrics": offline_metrics}
        return save_checkpoint(run_dir, at, state, config.keep_checkpoints)

    def start_fine_tuning() -> Dict[str, float]:  # fine-tuning step 0: the offline policy's evaluation counts
        scores.append(fraction_of_best(eval_metrics))
        return {"eval/regret": regret(scores), "online/env_steps": 0}

    total = offline_steps + online_steps
    progress = tqdm(total=total, initial=min(step + env_steps, total), desc=algorithm, dynamic_ncols=True)
    while step < offline_steps:
        window.add(agent.train_step(offline.sample(config.batch_size)))
        step += 1
        finished = step == offline_steps
        if step % config.log_every == 0 or finished or stop.requested:
            progress.update(window.count)
            logger.log(step, window.flush(step, run_dir))
        if step % config.eval_freq == 0 or finished:
            eval_metrics = evaluate()
            logger.log(step, {**eval_metrics, **(start_fine_tuning() if finished and online_steps else {})})
            progress.set_postfix(score=f"{eval_metrics.get('eval/normalized_score_mean', float('nan')):.1f}")
        if finished:
            offline_metrics = {key.replace("eval/", "offline/"): value for key, value in eval_metrics.items()}
        if step % config.checkpoint_every == 0 or finished or stop.requested:
            path = checkpoint_now(step)
            if stop.requested:
                progress.close()
                stop.exit(path)

    if online_steps and not scores:  # no offline phase: evaluate the initial policy as step 0
        eval_metrics = evaluate()
        logger.log(step, {**eval_metrics, **start_fine_tuning()})
    while env_steps < online_steps:
        episode = collect_episode(agent, explore_env, config.train_seed + 1_000_003 * (episodes + 1), mean_t, std_t)
        online.add(finish_episode(episode, transform, config.discount, config.is_sparse_reward, fail_reward))
        length, previous = len(episode["rewards"]), env_steps
        env_steps, episodes = env_steps + length, episodes + 1
        for _ in range(length * utd_ratio):
            batch = sample_mixed(offline, online, config.batch_size, mixing_ratio) if mixing_ratio else online.sample(config.batch_size)
            window.add(agent.train_step(batch))
        step = offline_steps + env_steps
        crossed = lambda every: previous // every != env_steps // every  # noqa: E731
        finished = env_steps >= online_steps
        progress.update(length)
        if crossed(config.log_every) or finished or stop.requested:
            logger.log(step, {**window.flush(step, run_dir), "online/env_steps": env_steps,
                              "online/episode_return": float(episode["raw_return"]), "online/episodes": episodes})
        if crossed(config.eval_freq) or finished:
            eval_metrics = evaluate()
            if crossed(config.eval_freq):  # the regret counts the scheduled evaluations only
                scores.append(fraction_of_best(eval_metrics))
            logger.log(step, {**eval_metrics, "eval/regret": regret(scores), "online/env_steps": env_steps})
            progress.set_postfix(score=f"{eval_metrics.get('eval/normalized_score_mean', float('nan')):.1f}")
        if crossed(config.checkpoint_every) or finished or stop.requested:
            path = checkpoint_now(step)
            if stop.requested:
                progress.close()
                stop.exit(path)
    progress.close()
    eval_envs.close()
    if explore_env is not None:
        explore_env.close()
    summary = {
        "algorithm": algorithm, "dataset": dataset.name, "env_id": dataset.env.env_id, "offline_steps": offline_steps,
        "online_env_steps": env_steps, "step": step, "wall_time_s": time.perf_counter() - started,
        "run_dir": str(run_dir), **offline_metrics, **eval_metrics,
    }
    if online_steps:
        summary["eval/regret"] = regret(scores)
        summary["online/evaluation_scores"] = scores
    logger.finish(summary)
    return summary


def finish_episode(
    episode: Dict[str, np.ndarray], transform: Callable[[np.ndarray, np.ndarray], np.ndarray], discount: float,
    sparse_reward: bool, fail_reward: float,
) -> Dict[str, np.ndarray]:
    """An online episode's training rewards and Monte-Carlo returns, by the same rule as the dataset's
    (one segment; its last step is terminal or cut by a time limit)."""
    rewards = transform(episode["rewards"], episode["success"])
    segment_ends = np.zeros(len(rewards), bool)
    segment_ends[-1] = True
    mc_returns = monte_carlo_returns(rewards, episode["dones"], segment_ends, discount, sparse_reward, fail_reward)
    return {**episode, "rewards": rewards, "mc_returns": mc_returns}


def collect_episode(agent: Any, env: Any, seed: int, mean: torch.Tensor, std: torch.Tensor) -> Dict[str, np.ndarray]:
    """One full episode with the stochastic policy; states stored normalised, rewards raw."""
    rows: Dict[str, List[Any]] = {key: [] for key in ("observations", "actions", "rewards", "next_observations", "dones", "success")}
    observation, _ = env.reset(seed=seed)
    state = (torch.as_tensor(observation, dtype=torch.float32, device=mean.device) - mean) / std
    while True:
        action = agent.act(state.unsqueeze(0), deterministic=False)[0].cpu().numpy()
        observation, reward, terminated, truncated, info = env.step(action)
        next_state = (torch.as_tensor(observation, dtype=torch.float32, device=mean.device) - mean) / std
        for key, value in (("observations", state), ("next_observations", next_state)):
            rows[key].append(value.cpu().numpy())
        rows["actions"].append(action)
        rows["rewards"].append(reward)
        rows["dones"].append(float(terminated))
        rows["success"].append(bool(info.get("success", False)))
        state = next_state
        if terminated or truncated:
            break
    episode = {key: np.asarray(values) for key, values in rows.items()}
    episode["raw_return"] = float(np.sum(episode["rewards"]))
    return episode


def print_summary(summary: Dict[str, Any]) -> None:
    print(f"\n{summary['algorithm']} on {summary['dataset']} ({summary['env_id']}): {summary['offline_steps']} offline "
          f"updates, {summary['online_env_steps']} online env steps")
    for prefix, label in (("offline/", "after offline"), ("eval/", "final")):
        if f"{prefix}return_mean" in summary:
            score = summary.get(f"{prefix}normalized_score_mean")
            success = summary.get(f"{prefix}success_rate")
            print(f"  {label:>13}: return {summary[f'{prefix}return_mean']:.1f}"
                  + ("" if score is None else f", normalized score {score:.1f}")
                  + ("" if success is None else f", success rate {success:.2f}"))
    if "eval/regret" in summary:
        print(f"  regret over fine-tuning evaluations: {summary['eval/regret']:.3f}")
    print(f"run directory: {summary['run_dir']}")
