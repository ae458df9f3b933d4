"""Gradient updates per second and evaluation env-steps per second, per script, on generated data.

    python benchmarks/throughput.py                       # every script, default sizes, auto device
    python benchmarks/throughput.py --scripts dt --device cpu --output benchmarks/results/throughput_cpu.md

Each script is measured with its own update and evaluation functions, next to a baseline that
does the same work the way the public reproductions do (CORL), in the same process, so the
ratio holds on any machine. The table is printed and written to --output with the command.
"""
import argparse
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_script(relative_path: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(relative_path).stem, ROOT / relative_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generate_dataset(directory: Path, env: str = "hopper", transitions: int = 20_000) -> Path:
    generator = load_script("tools/generate_dataset.py")
    spec = generator.env_spec_for(env, 1000)
    path = directory / f"{env}-random.hdf5"
    arrays = generator.collect(spec, "random", transitions, seed=0)
    generator.write_hdf5(path, arrays, {"env_id": spec.env_id, "env_kwargs": "{}", "max_episode_steps": 1000,
                                        "ref_min_score": spec.ref_min_score, "ref_max_score": spec.ref_max_score})
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


# --------------------------------------------------------------------------------------------
# Decision Transformer


def corl_style_dt_batch(data, batch_size: int, seq_len: int, device: torch.device):
    """CORL's sampling: per-sample numpy slicing and padding on the host, then a copy to the device."""
    states, actions = data.states.cpu().numpy(), data.actions.cpu().numpy()
    rtg, timesteps = data.returns_to_go.cpu().numpy(), data.timesteps.cpu().numpy()
    ends = data.episode_end.cpu().numpy()
    rows = []
    for _ in range(batch_size):
        start = random.randrange(len(states))
        stop = min(start + seq_len, ends[start])
        pad = seq_len - (stop - start)
        rows.append((
            np.pad(states[start:stop], ((0, pad), (0, 0))), np.pad(actions[start:stop], ((0, pad), (0, 0))),
            np.pad(rtg[start:stop], (0, pad)), np.pad(timesteps[start:stop], (0, pad)),
            np.pad(np.ones(stop - start, bool), (0, pad)),
        ))
    return tuple(torch.as_tensor(np.stack(column), device=device) for column in zip(*rows))


@torch.no_grad()
def corl_style_dt_evaluate(dt, model, env_spec, target: float, config, data, device) -> int:
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
            return step + 1
    return horizon


def bench_dt(data_path: Path, device: torch.device, seconds: float, eval_envs: int) -> List[Dict[str, object]]:
    dt = load_script("algorithms/offline/dt.py")
    config = dt.TrainConfig(dataset=str(data_path), eval_episodes=eval_envs, wandb_mode="disabled")
    dataset = dt.load_dataset(config.dataset)
    data = dt.SequenceData(dataset, config.seq_len, config.reward_scale, device)
    model = dt.DecisionTransformer(dataset.observations.shape[1], dataset.actions.shape[1], config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda steps: 1.0)

    def update(batch_fn: Callable) -> Callable[[], int]:
        def work() -> int:
            dt.train_step(model, optimizer, scheduler, batch_fn(), config.clip_grad)
            return 1
        return work

    ours_updates = rate(update(lambda: data.sample(config.batch_size)), seconds, device)
    corl_updates = rate(update(lambda: corl_style_dt_batch(data, config.batch_size, config.seq_len, device)), seconds, device)
    envs = dataset.env.make_vector(eval_envs)
    target = 3600.0
    ours_eval = rate(lambda: int(dt.evaluate(model, envs, target, config, data, device)[1].sum()), seconds, device)
    corl_eval = rate(lambda: corl_style_dt_evaluate(dt, model, dataset.env, target, config, data, device), seconds, device)
    envs.close()
    size = f"emb {config.embedding_dim}, {config.num_layers} layers, K {config.seq_len}, batch {config.batch_size}"
    return [
        {"script": "offline/dt.py", "measure": f"updates/s ({size})", "ours": ours_updates, "baseline": corl_updates,
         "baseline_is": "CORL-style host-side window sampling"},
        {"script": "offline/dt.py", "measure": f"eval env-steps/s ({eval_envs} episodes)", "ours": ours_eval,
         "baseline": corl_eval, "baseline_is": "CORL-style one env at a time"},
    ]


# --------------------------------------------------------------------------------------------
# Online Decision Transformer and ODT+TD3


def host_side_trajectory_batch(buffer, batch_size: int) -> Dict[str, torch.Tensor]:
    """The official ODT code's sampling: per-sample numpy slicing of stored trajectories and padding on
    the host (its DataLoader), then a copy to the device. Same output as TrajectoryBuffer.sample."""
    trajectories = list(buffer.trajectories)
    lengths = np.array([len(t["rewards"]) for t in trajectories])
    k, device = buffer.seq_len, buffer.device
    columns: Dict[str, list] = {key: [] for key in ("states", "actions", "returns_to_go", "timesteps", "rewards",
                                                    "mask", "critic_mask", "done")}
    for _ in range(batch_size):
        t = trajectories[int(np.searchsorted(np.cumsum(lengths), random.randrange(lengths.sum()), side="right"))]
        n = len(t["rewards"])
        start = random.randrange(n)
        final = t["final_observation"] if t["final_observation"] is not None else np.zeros_like(t["observations"][0])
        observations = np.concatenate([t["observations"], final[None]])[start:start + k + 1]
        actions = np.concatenate([t["actions"], np.zeros_like(t["actions"][:1])])[start:start + k + 1]
        rtg = np.append(np.cumsum(t["rewards"][::-1])[::-1], 0.0)[start:start + k + 1] * buffer.reward_scale
        rewards = np.append(t["rewards"], 0.0)[start:start + k]
        pad = k + 1 - len(observations)
        real = np.arange(start, start + k) < n
        columns["states"].append(np.pad((observations - buffer.state_mean) / buffer.state_std, ((0, pad), (0, 0)), mode="edge"))
        columns["actions"].append(np.pad(actions, ((0, pad), (0, 0)), mode="edge"))
        columns["returns_to_go"].append(np.pad(rtg, (0, pad)))
        columns["timesteps"].append(np.minimum(np.arange(start, start + k + 1), n))
        columns["rewards"].append(np.pad(rewards, (0, k - len(rewards))))
        columns["mask"].append(real)
        columns["critic_mask"].append(real & ((np.arange(start, start + k) + 1 < n) | t["terminated"]))
        columns["done"].append(real & (np.arange(start, start + k) + 1 == n) & t["terminated"])
    dtypes = {"timesteps": torch.long, "mask": torch.bool, "critic_mask": torch.bool, "done": torch.bool}
    return {key: torch.as_tensor(np.stack(values), dtype=dtypes.get(key, torch.float32), device=device)
            for key, values in columns.items()}


def bench_online_dt(name: str, data_path: Path, device: torch.device, seconds: float, eval_envs: int) -> List[Dict[str, object]]:
    import copy

    script = load_script(f"algorithms/finetune/{name}.py")
    # the paper's ~13M-parameter DT on a GPU; on a CPU (where one such update takes seconds) CORL's DT size
    sizes = {} if device.type == "cuda" else {"embedding_dim": 128, "num_layers": 3, "num_heads": 1, "batch_size": 64}
    config = script.TrainConfig(dataset=str(data_path), eval_episodes=eval_envs, wandb_mode="disabled", **sizes)
    dataset = script.load_dataset(config.dataset)
    mean, std = script.state_stats(dataset.observations)
    buffer = script.TrajectoryBuffer(config.buffer_size, mean, std, config.seq_len, config.reward_scale, device)
    buffer.initialise(script.dataset_trajectories(dataset))
    state_dim, action_dim = dataset.observations.shape[1], dataset.actions.shape[1]
    if name == "odt":
        actor = script.StochasticDT(state_dim, action_dim, config).to(device)
        temperature = script.Temperature(config.init_temperature).to(device)
        optimizer = script.Lamb(actor.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda steps: 1.0)
        temperature_optimizer = torch.optim.Adam(temperature.parameters(), lr=config.temperature_learning_rate)
        step = lambda batch: script.train_step(actor, temperature, optimizer, scheduler, temperature_optimizer,  # noqa: E731
                                               batch, -float(action_dim), config)
    else:
        actor = script.DecisionTransformer(state_dim, action_dim, config).to(device)
        critic = script.TwinCritic(state_dim, action_dim, config.critic_hidden_dim, config.critic_layer_norm).to(device)
        target_actor, target_critic = copy.deepcopy(actor).eval(), copy.deepcopy(critic)
        optimizer = script.Lamb(actor.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda steps: 1.0)
        critic_optimizer = torch.optim.AdamW(critic.parameters(), lr=config.critic_learning_rate)
        counter = [0]

        def step(batch):
            counter[0] += 1
            return script.train_step(actor, critic, target_actor, target_critic, optimizer, scheduler, critic_optimizer,
                                     batch, config.alpha, counter[0] % config.policy_freq == 0, config)

    def update(batch_fn: Callable) -> Callable[[], int]:
        def work() -> int:
            step(batch_fn())
            return 1
        return work

    ours_updates = rate(update(lambda: buffer.sample(config.batch_size)), seconds, device)
    host_updates = rate(update(lambda: host_side_trajectory_batch(buffer, config.batch_size)), seconds, device)
    evaluation, _ = script.policies(actor, config)
    actor.eval()
    envs, single = dataset.env.make_vector(eval_envs), dataset.env.make_vector(1)
    run = lambda vector_env: sum(t["length"] for t in script.run_episodes(  # noqa: E731
        evaluation, vector_env, config.eval_rtg, config, mean, std, device, config.eval_seed))
    ours_eval = rate(lambda: run(envs), seconds, device)
    single_eval = rate(lambda: sum(run(single) for _ in range(eval_envs)), seconds, device)
    envs.close()
    single.close()
    unit = "steps (critic batches; actor every 2nd)" if name == "odt_td3" else "updates"
    size = f"emb {config.embedding_dim}, {config.num_layers} layers, K {config.seq_len}, batch {config.batch_size}"
    return [
        {"script": f"finetune/{name}.py", "measure": f"{unit}/s ({size})", "ours": ours_updates, "baseline": host_updates,
         "baseline_is": "official-ODT-style host-side trajectory window sampling"},
        {"script": f"finetune/{name}.py", "measure": f"eval env-steps/s ({eval_envs} episodes, context {config.eval_context})",
         "ours": ours_eval, "baseline": single_eval, "baseline_is": "one episode at a time"},
    ]


# CQL, Cal-QL and IQL (offline and fine-tune)


@torch.no_grad()
def corl_style_policy_evaluate(act, env_spec, seed: int, mean, std, device) -> int:
    """CORL's evaluation: one env at a time, one forward per step. Returns env steps taken."""
    env = env_spec.make()
    observation, _ = env.reset(seed=seed)
    steps = 0
    while True:
        state = (torch.as_tensor(observation, dtype=torch.float32, device=device) - mean) / std
        observation, _, terminated, truncated, _ = env.step(act(state[None])[0].cpu().numpy())
        steps += 1
        if terminated or truncated:
            return steps


def value_based_benchmark(script_path: str, data_path: Path, device: torch.device, seconds: float, eval_envs: int,
                          **overrides) -> List[Dict[str, object]]:
    """The script's own update on the script's own batches (mixed offline/online for the fine-tune
    scripts), next to CORL's loop around the same update: numpy indices drawn on the host for every
    batch and every metric read with .item() after every step (CORL logs each step)."""
    script = load_script(script_path)
    config = script.TrainConfig(dataset=str(data_path), n_episodes=eval_envs, wandb_mode="disabled", **overrides)
    dataset = script.load_dataset(config.dataset)
    mean, std = script.state_stats(dataset.observations, eps=1e-3)
    normalized = script.dataclasses.replace(dataset, observations=((dataset.observations - mean) / std).astype(np.float32))
    arrays = script.transition_arrays(normalized, dataset.rewards, config.discount, False, 0.0)
    state_dim, action_dim = dataset.observations.shape[1], dataset.actions.shape[1]
    offline = script.TransitionBuffer(state_dim, action_dim, len(arrays["rewards"]), device)
    offline.add(arrays)
    offline.freeze()
    finetune = hasattr(config, "online_iterations")
    online = offline
    if finetune and config.mixing_ratio is not None:  # an online buffer as after 10k env steps
        online = script.TransitionBuffer(state_dim, action_dim, 10_000, device)
        online.add({key: values[:10_000] for key, values in arrays.items()})
    if hasattr(script, "IQL"):
        agent = script.IQL(state_dim, action_dim, config, device, decay_steps=0 if finetune else 1_000_000)
    else:
        agent = script.CQL(state_dim, action_dim, config, device)

    def ours_batch():
        if finetune and config.mixing_ratio is not None:
            return script.sample_mixed(offline, online, config.batch_size, config.mixing_ratio)
        return online.sample(config.batch_size)

    def corl_batch():
        index = np.random.randint(0, online.size, size=config.batch_size)
        return {key: values[index] for key, values in online.data.items()}

    def ours() -> int:
        agent.train_step(ours_batch())
        return 1

    def corl() -> int:
        metrics = agent.train_step(corl_batch())
        {key: value.item() for key, value in metrics.items()}
        return 1

    ours_updates, corl_updates = rate(ours, seconds, device), rate(corl, seconds, device)
    envs = dataset.env.make_vector(eval_envs)
    mean_t, std_t = torch.as_tensor(mean, device=device), torch.as_tensor(std, device=device)
    act = lambda state: agent.act(state, deterministic=True)  # noqa: E731
    ours_eval = rate(lambda: int(script.evaluate_policy(act, envs, config.eval_seed, mean_t, std_t)[1].sum()), seconds, device)
    corl_eval = rate(lambda: sum(corl_style_policy_evaluate(act, dataset.env, config.eval_seed + i, mean_t, std_t, device)
                                 for i in range(eval_envs)), seconds, device)
    envs.close()
    name = script_path.removeprefix("algorithms/")
    size = f"actor {list(config.actor_hidden_dims)}, critic {list(config.critic_hidden_dims)}, batch {config.batch_size}"
    return [
        {"script": name, "measure": f"updates/s ({size})", "ours": ours_updates, "baseline": corl_updates,
         "baseline_is": "CORL-style host indices + per-step .item() logging"},
        {"script": name, "measure": f"eval env-steps/s ({eval_envs} episodes)", "ours": ours_eval,
         "baseline": corl_eval, "baseline_is": "CORL-style one env at a time"},
    ]


def bench_cql(data_path, device, seconds, eval_envs):
    return value_based_benchmark("algorithms/offline/cql.py", data_path, device, seconds, eval_envs)


def bench_iql(data_path, device, seconds, eval_envs):
    return value_based_benchmark("algorithms/offline/iql.py", data_path, device, seconds, eval_envs)


def bench_cql_finetune(data_path, device, seconds, eval_envs):
    return value_based_benchmark("algorithms/finetune/cql.py", data_path, device, seconds, eval_envs)


def bench_cal_ql(data_path, device, seconds, eval_envs):
    return value_based_benchmark("algorithms/finetune/cal_ql.py", data_path, device, seconds, eval_envs)


def bench_iql_finetune(data_path, device, seconds, eval_envs):
    return value_based_benchmark("algorithms/finetune/iql.py", data_path, device, seconds, eval_envs)


BENCHMARKS = {
    "dt": bench_dt,
    "odt": lambda *args: bench_online_dt("odt", *args),
    "odt_td3": lambda *args: bench_online_dt("odt_td3", *args),
    "cql": bench_cql,
    "iql": bench_iql,
    "cql_finetune": bench_cql_finetune,
    "cal_ql": bench_cal_ql,
    "iql_finetune": bench_iql_finetune,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scripts", nargs="+", default=list(BENCHMARKS), choices=list(BENCHMARKS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring time per number")
    parser.add_argument("--eval_envs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    random.seed(0)
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        data_path = generate_dataset(Path(directory))
        for name in args.scripts:
            rows += BENCHMARKS[name](data_path, device, args.seconds, args.eval_envs)
    machine = (torch.cuda.get_device_name(device) if device.type == "cuda" else
               f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads")
    lines = [
        f"Device: {device.type} ({machine}); torch {torch.__version__}; data: generated hopper-random, 20k transitions",
        f"Command: python benchmarks/throughput.py {' '.join(sys.argv[1:])}",
        "",
        "| script | measure | ours | baseline | ratio | baseline is |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(f"| {row['script']} | {row['measure']} | {row['ours']:.1f} | {row['baseline']:.1f} | "
                     f"{row['ours'] / row['baseline']:.2f}x | {row['baseline_is']} |")
    table = "\n".join(lines)
    print(table)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(table + "\n")


if __name__ == "__main__":
    main()
