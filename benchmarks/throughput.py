"""Gradient updates per second and evaluation env-steps per second, per script, on generated data.

    python benchmarks/throughput.py                       # every script, default sizes, auto device
    python benchmarks/throughput.py --scripts dt --device cpu --output benchmarks/results/throughput_cpu.md

Each script is measured with its own update and evaluation functions, next to a baseline that
does the same work the way the public reproductions do (CORL, the official ODT code), in the same
process, so the ratio holds on any machine: the same update fed batches gathered on the host, with
every metric read back (.item()) after every step; one env at a time for evaluation. Updates are
measured three ways: the baseline, ours as written (eager) and ours on the fast path (`--compile
true`: torch.compile, with CUDA graphs on CUDA). The table is printed and written to --output with
the command.
"""

import argparse
import functools
import json
import platform
import random
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import torch

from common import ROOT, generate_dataset, load_script, rate

TRANSITIONS = 20_000  # of the generated hopper-random dataset every script trains on
CPU_DT_SIZES = {"embedding_dim": 128, "num_layers": 3, "num_heads": 1, "batch_size": 64}  # CORL's DT size, batch 64
Row = Dict[str, Any]


def update_work(update: Callable[[Any], Dict[str, torch.Tensor]], batch: Callable[[], Any], log_each_step: bool):
    """Work for `rate`: one update on a fresh batch. With `log_each_step`, every metric the update
    returns is read to the host right after it, as the reference code logs each step (on a GPU, a sync)."""

    def work() -> int:
        metrics = update(batch())
        if log_each_step:
            for value in metrics.values():
                value.item()
        return 1

    return work


def measured(script: str, *measures: Tuple[str, Tuple[float, ...], str]) -> List[Row]:
    """A script's table rows, one per (measure, (ours, baseline[, ours compiled]), what the baseline is)."""
    return [
        {"script": script, "measure": measure, "ours": rates[0], "baseline": rates[1], "baseline_is": baseline_is}
        | {"compiled": rates[2] if len(rates) > 2 else None}
        for measure, rates, baseline_is in measures
    ]


def with_compiled(rates: Tuple[float, float], compiled: Callable[[], int], seconds: float, device):
    """(ours, baseline) plus the rate of the compiled update; measured last, as compiling turns the
    optimisers' lrs into tensors. The first calls (compilation) are the warm-up, not timed."""
    for _ in range(3):
        compiled()
    return (*rates, rate(compiled, seconds, device))


# -------------------------------------------------------------------------------------------------
# Decision Transformer


def corl_style_dt_batch(data, batch_size: int, seq_len: int, device: torch.device):
    """CORL's sampling: per-sample numpy slicing and padding on the host, then a copy to the device."""
    states, actions = data.states.cpu().numpy(), data.actions.cpu().numpy()
    rtg, timesteps = data.returns_to_go.cpu().numpy(), data.timesteps.cpu().numpy()
    ends = data.episode_end.cpu().numpy()
    samples = []
    for _ in range(batch_size):
        start = random.randrange(len(states))
        stop = min(start + seq_len, ends[start])
        pad = seq_len - (stop - start)
        samples.append(
            (
                np.pad(states[start:stop], ((0, pad), (0, 0))),
                np.pad(actions[start:stop], ((0, pad), (0, 0))),
                np.pad(rtg[start:stop], (0, pad)),
                np.pad(timesteps[start:stop], (0, pad)),
                np.pad(np.ones(stop - start, bool), (0, pad)),
            )
        )
    return tuple(torch.as_tensor(np.stack(column), device=device) for column in zip(*samples))


@torch.no_grad()
def corl_style_dt_evaluate(model, env_spec, target: float, config, data, device: torch.device) -> int:
    """CORL's evaluation: one env at a time, one forward per step. Returns env steps taken."""
    model.eval()
    env = env_spec.make()
    mean, std = torch.as_tensor(data.state_mean, device=device), torch.as_tensor(data.state_std, device=device)
    observation, _ = env.reset(seed=config.eval_seed)
    horizon = config.episode_len
    states = torch.zeros(1, horizon, observation.shape[0], device=device)
    actions = torch.zeros(1, horizon, env.action_space.shape[0], device=device)
    returns = torch.zeros(1, horizon, device=device)
    timesteps = torch.arange(horizon, device=device)[None]
    remaining = target * config.reward_scale
    for step in range(horizon):
        states[0, step] = (torch.as_tensor(observation, dtype=torch.float32, device=device) - mean) / std
        returns[0, step] = remaining
        window = slice(max(0, step + 1 - config.seq_len), step + 1)
        action = model(states[:, window], actions[:, window], returns[:, window], timesteps[:, window])[0, -1]
        actions[0, step] = action
        observation, reward, terminated, truncated, _ = env.step(action.cpu().numpy())
        remaining -= reward * config.reward_scale
        if terminated or truncated:
            env.close()
            return step + 1
    env.close()
    return horizon


def bench_dt(
    data_path: Path, device: torch.device, seconds: float, eval_envs: int, sizes=None, compiled: bool = True
) -> List[Row]:
    """`sizes`: TrainConfig overrides (model and batch size); default: the script's own."""
    dt = load_script("algorithms/offline/dt.py")
    target = 3600.0
    config = dt.TrainConfig(
        dataset=str(data_path),
        eval_episodes=eval_envs,
        target_returns=(target,),
        wandb_mode="disabled",
        **(sizes or {}),
    )
    dataset = dt.load_dataset(config.dataset)
    data = dt.SequenceData(dataset, config.seq_len, config.reward_scale, device)
    model = dt.DecisionTransformer(dataset.observations.shape[1], dataset.actions.shape[1], config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda steps: 1.0)
    update = lambda batch: {"loss": dt.train_step(model, optimizer, scheduler, batch, config.clip_grad)}

    ours = update_work(update, lambda: data.sample(config.batch_size), log_each_step=False)
    corl = update_work(
        update, lambda: corl_style_dt_batch(data, config.batch_size, config.seq_len, device), log_each_step=True
    )
    updates = rate(ours, seconds, device), rate(corl, seconds, device)
    if compiled:
        fast = dt.compile_update(dt.train_step, True, device, [optimizer])
        fast_update = lambda batch: {"loss": fast(model, optimizer, scheduler, batch, config.clip_grad)}  # noqa: E731
        updates = with_compiled(
            updates, update_work(fast_update, lambda: data.sample(config.batch_size), False), seconds, device
        )
    envs = dataset.env.make_vector(eval_envs)

    def batched_eval() -> int:
        metrics = dt.evaluate(model, envs, config, data, dataset.env)
        return round(metrics[f"eval/{target:g}_length_mean"] * eval_envs)

    single_eval = lambda: corl_style_dt_evaluate(model, dataset.env, target, config, data, device)
    eval_rates = rate(batched_eval, seconds, device), rate(single_eval, seconds, device)
    envs.close()
    size = f"emb {config.embedding_dim}, {config.num_layers} layers, K {config.seq_len}, batch {config.batch_size}"
    return measured(
        "offline/dt.py",
        (f"updates/s ({size})", updates, "CORL-style host-side window sampling + per-step .item()"),
        (f"eval env-steps/s ({eval_envs} episodes)", eval_rates, "CORL-style one env at a time"),
    )


# -------------------------------------------------------------------------------------------------
# Online Decision Transformer and ODT+TD3


def host_side_trajectory_batch(buffer, batch_size: int, seq_len: int) -> Dict[str, torch.Tensor]:
    """The official ODT code's sampling: per-sample numpy slicing of stored trajectories and padding on
    the host (its DataLoader), then a copy to the device. Same output as TrajectoryBuffer.sample."""
    trajectories = list(buffer.trajectories)
    bounds = np.cumsum([len(t["rewards"]) for t in trajectories])
    k, device = seq_len, buffer.device
    keys = ("states", "actions", "returns_to_go", "timesteps", "rewards", "mask", "critic_mask", "done")
    columns: Dict[str, list] = {key: [] for key in keys}
    for _ in range(batch_size):
        t = trajectories[int(np.searchsorted(bounds, random.randrange(bounds[-1]), side="right"))]
        n = len(t["rewards"])
        start = random.randrange(n)
        final = t["final_observation"] if t["final_observation"] is not None else np.zeros_like(t["observations"][0])
        observations = np.concatenate([t["observations"], final[None]])[start : start + k + 1]
        actions = np.concatenate([t["actions"], np.zeros_like(t["actions"][:1])])[start : start + k + 1]
        rtg = np.append(np.cumsum(t["rewards"][::-1])[::-1], 0.0)[start : start + k + 1] * buffer.reward_scale
        rewards = np.append(t["rewards"], 0.0)[start : start + k]
        pad = k + 1 - len(observations)
        steps = np.arange(start, start + k)
        real = steps < n
        next_known = t["terminated"] or t["final_observation"] is not None
        states = (observations - buffer.state_mean) / buffer.state_std
        columns["states"].append(np.pad(states, ((0, pad), (0, 0)), mode="edge"))
        columns["actions"].append(np.pad(actions, ((0, pad), (0, 0)), mode="edge"))
        columns["returns_to_go"].append(np.pad(rtg, (0, pad)))
        columns["timesteps"].append(np.minimum(np.arange(start, start + k + 1), n))
        columns["rewards"].append(np.pad(rewards, (0, k - len(rewards))))
        columns["mask"].append(real)
        columns["critic_mask"].append(real & ((steps + 1 < n) | next_known))
        columns["done"].append(real & (steps + 1 == n) & t["terminated"])
    dtypes = {"timesteps": torch.long, "mask": torch.bool, "critic_mask": torch.bool, "done": torch.bool}
    return {
        key: torch.as_tensor(np.stack(values), dtype=dtypes.get(key, torch.float32), device=device)
        for key, values in columns.items()
    }


def bench_online_dt(
    name: str, data_path: Path, device: torch.device, seconds: float, eval_envs: int, sizes=None, compiled=True
) -> List[Row]:
    """`sizes`: TrainConfig overrides; default: the paper's ~13M-parameter DT on a GPU, CORL's DT size
    on a CPU (where one update of the paper's size takes seconds)."""
    script = load_script(f"algorithms/finetune/{name}.py")
    if sizes is None:
        sizes = {} if device.type == "cuda" else CPU_DT_SIZES
    config = script.TrainConfig(dataset=str(data_path), eval_episodes=eval_envs, wandb_mode="disabled", **sizes)
    dataset = script.load_dataset(config.dataset)
    normaliser = script.state_stats(dataset.observations)
    buffer = script.TrajectoryBuffer(config.buffer_size, *normaliser, config.seq_len, config.reward_scale, device)
    buffer.initialise(script.dataset_trajectories(dataset, config.reward_bias))
    learner = (script.ODT if name == "odt" else script.ODT_TD3)(
        dataset.observations.shape[1], dataset.actions.shape[1], config, device
    )

    ours = update_work(learner.update, lambda: buffer.sample(config.batch_size), log_each_step=False)
    host = update_work(
        learner.update, lambda: host_side_trajectory_batch(buffer, config.batch_size, config.seq_len), True
    )
    updates = rate(ours, seconds, device), rate(host, seconds, device)
    if compiled:
        fast = script.compile_update(learner.update, True, device, list(vars(learner).values()))
        fast_work = update_work(fast, lambda: buffer.sample(config.batch_size), log_each_step=False)
        updates = with_compiled(updates, fast_work, seconds, device)

    def run(envs) -> int:
        """The script's episode runner with its evaluation policy and settings; returns env steps."""
        learner.actor.eval()
        settings = (config.episode_len, config.eval_context, config.reward_scale, config.reward_bias)
        episodes = script.run_episodes(
            learner.act, envs, config.eval_rtg, config.eval_seed, normaliser, device, *settings
        )
        return sum(t["length"] for t in episodes)

    envs, single = dataset.env.make_vector(eval_envs), dataset.env.make_vector(1)
    eval_rates = (
        rate(lambda: run(envs), seconds, device),
        rate(lambda: sum(run(single) for _ in range(eval_envs)), seconds, device),
    )
    envs.close()
    single.close()
    unit = "steps (critic batches; actor every 2nd)" if name == "odt_td3" else "updates"
    size = f"emb {config.embedding_dim}, {config.num_layers} layers, K {config.seq_len}, batch {config.batch_size}"
    return measured(
        f"finetune/{name}.py",
        (f"{unit}/s ({size})", updates, "official-ODT-style host-side trajectory window sampling + per-step .item()"),
        (
            f"eval env-steps/s ({eval_envs} episodes, context {config.eval_context})",
            eval_rates,
            "the same runner, one episode at a time",
        ),
    )


def odt_td3_iteration(data_path: Path, device: torch.device, compiled: bool, sizes=None) -> Row:
    """One online iteration of ODT+TD3 at the paper's hopper-random config (1000 env steps, then 600 critic and
    300 actor updates), run by the script itself: seconds = 1000 / rollout env-steps/s + 600 / updates/s of the
    online phase, from its metrics. A short pretraining first (compilation, warm-up). `sizes`: config
    overrides (default: the paper's DT on CUDA, the CPU size of bench_online_dt on a CPU)."""
    script = load_script("algorithms/finetune/odt_td3.py")
    if sizes is None:
        sizes = {} if device.type == "cuda" else CPU_DT_SIZES
    overrides = {**sizes, "pretrain_steps": 20, "online_iterations": 2, "eval_every": 10_000, "eval_episodes": 1}
    overrides.update(checkpoint_every=10_000, log_every=10)
    with tempfile.TemporaryDirectory() as directory:
        args = ["--config_path", str(ROOT / "configs/finetune/odt_td3/hopper/random_v2.yaml")]
        args += ["--dataset", str(data_path)]
        args += ["--device", device.type, "--wandb_mode", "disabled", "--run_dir", f"{directory}/run"]
        args += ["--compile", str(compiled).lower(), *(f"--{key}={value}" for key, value in overrides.items())]
        config = script.parse_config(script.TrainConfig, args)
        script.train(config)
        rows = [json.loads(line) for line in Path(directory, "run", "metrics.jsonl").read_text().splitlines()]
    second = next(row for row in rows if row.get("online_iterations") == 2)  # the first one includes recompiles
    rates = [row.get("train/updates_per_second") for row in rows if row["step"] > second["step"]]
    updates = [rate for rate in rates if rate]  # the rows that carry one
    seconds = config.online_transitions / second["rollout_env_steps_per_second"]
    seconds += config.updates_per_iteration / float(np.mean(updates))
    size = f"emb {config.embedding_dim}, {config.num_layers} layers, K {config.seq_len}, batch {config.batch_size}"
    return {"size": size, "seconds": seconds, "hours_for_500k": seconds * 500_000 / config.online_transitions / 3600}


# -------------------------------------------------------------------------------------------------
# CQL, Cal-QL and IQL (offline and fine-tune)


@torch.no_grad()
def corl_style_policy_evaluate(act, env_spec, seed: int, mean, std, device: torch.device) -> int:
    """CORL's evaluation: one env at a time, one forward per step. Returns env steps taken."""
    env = env_spec.make()
    observation, _ = env.reset(seed=seed)
    steps = 0
    while True:
        state = (torch.as_tensor(observation, dtype=torch.float32, device=device) - mean) / std
        observation, _, terminated, truncated, _ = env.step(act(state[None])[0].cpu().numpy())
        steps += 1
        if terminated or truncated:
            env.close()
            return steps


def host_indexed(buffer, count: int) -> Dict[str, torch.Tensor]:
    """CORL's ReplayBuffer.sample: indices drawn with numpy on the host, then gathered on the device."""
    index = np.random.randint(0, buffer.size, size=count)
    return {key: values[index] for key, values in buffer.data.items()}


def value_based_benchmark(
    script_path: str, data_path: Path, device: torch.device, seconds: float, eval_envs: int, sizes=None, compiled=True
) -> List[Row]:
    """The script's own update on the script's own batches (mixed offline/online for the fine-tune
    scripts, as after 10k env steps), next to CORL's loop around the same update: numpy indices drawn
    on the host for every batch and every metric read with .item() after every step (CORL logs each
    step). `sizes`: TrainConfig overrides (hidden sizes, batch size); default: the script's own."""
    script = load_script(script_path)
    config = script.TrainConfig(dataset=str(data_path), n_episodes=eval_envs, wandb_mode="disabled", **(sizes or {}))
    dataset = script.load_dataset(config.dataset)
    finetune = hasattr(config, "online_iterations")
    normalize_returns = getattr(config, "normalize_reward", False)
    transform = script.reward_transform(dataset, normalize_returns, config.reward_scale, config.reward_bias)
    mean, std = script.state_stats(dataset.observations, eps=1e-3)
    rewards = transform(dataset.rewards)
    if hasattr(script, "monte_carlo_returns"):  # Cal-QL's lower bound
        returns = lambda rewards, dones, ends: script.monte_carlo_returns(rewards, dones, ends, config.discount)  # noqa: E731
        arrays = script.transitions_with_returns(dataset, rewards, mean, std, returns)
    else:
        arrays = script.transition_arrays(dataset, rewards, mean, std)
    offline = script.TransitionBuffer(arrays, device)
    mixed = finetune and config.mixing_ratio is not None
    # fine-tuning with a mixing ratio: a separate online buffer, here the dataset's first 10k rows as
    # stand-ins for 10k env steps; without one the online steps join the dataset's buffer
    online = (
        script.TransitionBuffer({key: values[:10_000] for key, values in arrays.items()}, device) if mixed else offline
    )
    state_dim, action_dim = dataset.observations.shape[1], dataset.actions.shape[1]
    if hasattr(script, "CalQL"):
        agent = script.CalQL(state_dim, action_dim, config, device)
    elif hasattr(script, "CQL"):
        agent = script.CQL(state_dim, action_dim, config, device)
    elif hasattr(script, "SAC"):
        agent = script.SAC(state_dim, action_dim, config, device)
    else:
        agent = script.IQL(state_dim, action_dim, config, device, decay_steps=0 if finetune else config.max_timesteps)

    def ours_batch() -> Dict[str, torch.Tensor]:
        if finetune:
            return script.sample_mixed(offline, online, config.batch_size, config.mixing_ratio)
        return offline.sample(config.batch_size)

    def corl_batch() -> Dict[str, torch.Tensor]:
        if not mixed:
            return host_indexed(offline, config.batch_size)
        offline_count = int(config.batch_size * config.mixing_ratio)
        first, second = host_indexed(offline, offline_count), host_indexed(online, config.batch_size - offline_count)
        return {key: torch.cat([first[key], second[key]]) for key in first}

    ours = update_work(agent.train_step, ours_batch, log_each_step=False)
    corl = update_work(agent.train_step, corl_batch, log_each_step=True)
    updates = rate(ours, seconds, device), rate(corl, seconds, device)
    if compiled:
        fast = script.compile_update(agent.train_step, True, device, list(vars(agent).values()))
        updates = with_compiled(updates, update_work(fast, ours_batch, False), seconds, device)
    envs = dataset.env.make_vector(eval_envs)
    mean_t, std_t = torch.as_tensor(mean, device=device), torch.as_tensor(std, device=device)
    act = lambda state: agent.act(state, deterministic=True)
    batched_eval = lambda: int(script.run_episodes(act, envs, config.eval_seed, mean_t, std_t)[1].sum())
    single_eval = lambda: sum(
        corl_style_policy_evaluate(act, dataset.env, config.eval_seed + i, mean_t, std_t, device)
        for i in range(eval_envs)
    )
    eval_rates = rate(batched_eval, seconds, device), rate(single_eval, seconds, device)
    envs.close()
    size = (
        f"actor {list(config.actor_hidden_dims)}, critic {list(config.critic_hidden_dims)}, batch {config.batch_size}"
    )
    return measured(
        script_path.removeprefix("algorithms/"),
        (f"updates/s ({size})", updates, "CORL-style host indices + per-step .item()"),
        (f"eval env-steps/s ({eval_envs} episodes)", eval_rates, "CORL-style one env at a time"),
    )


BENCHMARKS: Dict[str, Callable[..., List[Row]]] = {
    "dt": bench_dt,
    "odt": functools.partial(bench_online_dt, "odt"),
    "odt_td3": functools.partial(bench_online_dt, "odt_td3"),
    "cql": functools.partial(value_based_benchmark, "algorithms/offline/cql.py"),
    "iql": functools.partial(value_based_benchmark, "algorithms/offline/iql.py"),
    "cql_finetune": functools.partial(value_based_benchmark, "algorithms/finetune/cql.py"),
    "cal_ql": functools.partial(value_based_benchmark, "algorithms/finetune/cal_ql.py"),
    "iql_finetune": functools.partial(value_based_benchmark, "algorithms/finetune/iql.py"),
    "sac": functools.partial(value_based_benchmark, "algorithms/online/sac.py"),
}


def table(results: List[Row], device: torch.device, command: List[str]) -> str:
    machine = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    )
    lines = [
        f"Device: {device.type} ({machine}); torch {torch.__version__}; "
        f"data: generated hopper-random, {TRANSITIONS // 1000}k transitions",
        f"Command: python benchmarks/throughput.py {' '.join(command)}",
        "",
        "| script | measure | baseline | ours, eager | ours, compiled | eager / baseline | compiled / baseline "
        "| baseline is |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results:
        fast, base = row["compiled"], row["baseline"]
        compiled = ("n/a", "n/a") if fast is None else (f"{fast:.1f}", f"{fast / base:.2f}x")
        lines.append(
            f"| {row['script']} | {row['measure']} | {base:.1f} | {row['ours']:.1f} | {compiled[0]} | "
            f"{row['ours'] / base:.2f}x | {compiled[1]} | {row['baseline_is']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scripts", nargs="+", default=list(BENCHMARKS), choices=list(BENCHMARKS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per number")
    parser.add_argument("--eval_envs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--no_compiled", action="store_true", help="skip the compiled column (it compiles each update)")
    parser.add_argument("--iteration", action="store_true", help="also time one ODT+TD3 online iteration, both modes")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    results: List[Row] = []
    lines = ["", "One ODT+TD3 online iteration (1000 env steps, 600 critic / 300 actor updates), hopper-random config:"]
    with tempfile.TemporaryDirectory() as directory:
        data_path = generate_dataset(Path(directory) / "hopper-random.hdf5", transitions=TRANSITIONS)
        for name in args.scripts:
            results += BENCHMARKS[name](data_path, device, args.seconds, args.eval_envs, compiled=not args.no_compiled)
        for compiled in (False, True) if args.iteration else ():
            timing = odt_td3_iteration(data_path, device, compiled)
            lines.append(
                f"- {'compiled' if compiled else 'eager'} ({timing['size']}): {timing['seconds']:.1f} s per iteration; "
                f"500k env steps projected at {timing['hours_for_500k']:.2f} h (updates and rollouts, no evaluation)"
            )
    text = table(results, device, sys.argv[1:]) + ("\n" + "\n".join(lines) if args.iteration else "")
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
