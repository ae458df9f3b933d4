"""Online DT and ODT+TD3: TD3 mechanics, actor losses, trajectory buffer, rollouts, whole runs and resume."""

import inspect
import json
import os
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

from conftest import ROOT, load_script, run_cli

dt = load_script("algorithms/offline/dt.py")
odt = load_script("algorithms/finetune/odt.py")
td3 = load_script("algorithms/finetune/odt_td3.py")

TINY = (
    "--embedding_dim 16 --num_layers 1 --num_heads 2 --seq_len 4 --eval_context 2 --batch_size 16 --warmup_steps 10 "
    "--eval_episodes 2 --wandb_mode disabled --device cpu --buffer_size 50 --online_transitions 40 --log_every 10"
).split()
CPU = torch.device("cpu")
TINY_MODEL = "--embedding_dim 16 --num_layers 1 --num_heads 2 --seq_len 4".split()


def tiny_config(script, dataset, run_dir, *extra):
    args = [*TINY, "--dataset", str(dataset), "--run_dir", str(run_dir), *map(str, extra)]
    if script is td3:
        args += ["--critic_hidden_dim", "32"]
    return script.parse_config(script.TrainConfig, args)


def trajectory(rewards, terminated=True, final=False, obs_dim=2, act_dim=1, mark=0.0):
    rewards = np.asarray(rewards, np.float32)
    observations = np.full((len(rewards), obs_dim), mark, np.float32)
    final_observation = np.full(obs_dim, mark, np.float32) if final else None
    return odt.make_trajectory(observations, np.zeros((len(rewards), act_dim)), rewards, terminated, final_observation)


def make_buffer(capacity, seq_len=3, reward_scale=1.0, obs_dim=2):
    return odt.TrajectoryBuffer(
        capacity, np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32), seq_len, reward_scale, CPU
    )


def run_episodes(act, envs, target_return, config, seed):
    """The family's runner with a unit normaliser on Hopper (11-dim states) and the config's settings."""
    normaliser = (np.zeros(11), np.ones(11))
    settings = (config.episode_len, config.eval_context, config.reward_scale, config.reward_bias)
    return odt.run_episodes(act, envs, target_return, seed, normaliser, CPU, *settings, config.truncation_as_terminal)


# ------------------------------------------------------------------------------------------------
# TD3 mechanics


class ConstantActor(nn.Module):
    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, states, actions, returns_to_go, timesteps):
        return torch.full_like(actions, self.value)


class RecordingCritic(nn.Module):
    """Q1 = 2 + sum(s), Q2 = 1 + sum(a); remembers the actions it was asked about."""

    def forward(self, states, actions):
        self.actions = actions
        return 2.0 + states.sum(-1), 1.0 + actions.sum(-1)


def test_td3_target_clips_noise_and_takes_the_min_of_twin_targets():
    config = td3.TrainConfig(
        policy_noise=1e7, noise_clip=0.5, gamma=0.9, critic_reward_scale=2.0, max_action=1.0, wandb_mode="disabled"
    )
    torch.manual_seed(0)
    batch_size, k = 256, 3
    batch = {
        "states": torch.randn(batch_size, k + 1, 2),
        "actions": torch.zeros(batch_size, k + 1, 2),
        "returns_to_go": torch.zeros(batch_size, k + 1),
        "timesteps": torch.zeros(batch_size, k + 1, dtype=torch.long),
        "rewards": torch.rand(batch_size, k),
        "done": torch.rand(batch_size, k) < 0.3,
    }
    critic = RecordingCritic()
    target = td3.critic_target(ConstantActor(0.8), critic, batch, config)
    # huge noise is clipped to +-0.5, then the action to [-1, 1]: 0.3 or 1.0, both seen
    low, high = torch.isclose(critic.actions, torch.tensor(0.3)), critic.actions == 1.0
    assert (low | high).all() and low.any() and high.any()
    q1 = 2.0 + batch["states"][:, 1:].sum(-1)
    q2 = 1.0 + critic.actions.sum(-1)
    expected = 2.0 * batch["rewards"] + 0.9 * (~batch["done"]) * torch.minimum(q1, q2)
    torch.testing.assert_close(target, expected)
    assert (q1 < q2).any() and (q2 < q1).any()  # both branches of the min were exercised


def test_polyak_update_moves_targets_by_tau():
    source, target = nn.Linear(3, 2), nn.Linear(3, 2)
    before = [p.clone() for p in target.parameters()]
    td3.soft_update(target, source, 0.25)
    for old, new, src in zip(before, target.parameters(), source.parameters()):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * src)


@pytest.mark.parametrize("script", [dt, odt, td3], ids=["dt", "odt", "odt_td3"])
def test_timestep_embedding_follows_the_official_code_by_default(script, hopper_random, tmp_path):
    # The official ODT (and ODT+TD3) DT defines a timestep embedding and never uses it; the original DT uses it.
    used_by_default = script is dt
    for flag in (False, True):
        config = script.parse_config(
            script.TrainConfig,
            [
                *TINY_MODEL,
                "--timestep_embedding",
                str(flag),
                "--wandb_mode",
                "disabled",
                "--dataset",
                str(hopper_random),
            ],
        )
        torch.manual_seed(0)
        trunk = script.DecisionTrunk(11, 3, config).eval()
        states, actions, returns = torch.randn(2, 4, 11), torch.randn(2, 4, 3), torch.randn(2, 4)
        early, late = torch.zeros(2, 4, dtype=torch.long), torch.arange(4).repeat(2, 1) + 100
        depends_on_time = not torch.allclose(
            trunk(states, actions, returns, early), trunk(states, actions, returns, late)
        )
        assert depends_on_time == flag == (trunk.timestep_embedding is not None)
    assert script.TrainConfig().timestep_embedding == used_by_default


def small_td3_setup(hopper_random, tmp_path):
    config = tiny_config(td3, hopper_random, tmp_path / "unused", "--learning_rate", "0.001", "--warmup_steps", "1")
    dataset = td3.load_dataset(config.dataset)
    buffer = td3.TrajectoryBuffer(
        config.buffer_size, *td3.state_stats(dataset.observations), config.seq_len, config.reward_scale, CPU
    )
    buffer.initialise(td3.dataset_trajectories(dataset))
    torch.manual_seed(0)
    return config, buffer, td3.ODT_TD3(11, 3, config, CPU)


def test_delayed_actor_updates_and_targets_only_move_with_the_actor(hopper_random, tmp_path):
    config, buffer, learner = small_td3_setup(hopper_random, tmp_path)
    parts = (learner.actor, learner.critic, learner.target_actor, learner.target_critic)
    snapshot = lambda module: [p.detach().clone() for p in module.parameters()]  # noqa: E731
    changed = lambda old, module: any(not torch.equal(a, b) for a, b in zip(old, module.parameters()))  # noqa: E731
    for step in range(6):
        update_actor = (step + 1) % config.policy_freq == 0
        before = [snapshot(part) for part in parts]
        metrics = learner.update(buffer.sample(16))
        moved = [changed(old, part) for old, part in zip(before, parts)]
        assert moved == [update_actor, True, update_actor, update_actor]
        assert ("actor_rl_loss" in metrics) == update_actor
    assert learner.updates == 6 and learner.actor_scheduler.last_epoch == 3


def test_pretraining_is_supervised_for_every_variant_and_the_online_coefficients_start_after_it(
    hopper_random, tmp_path
):
    # The official code forces the supervised weight to 1 and the RL weight to 0 while pretraining, so the
    # TD3 baseline (supervised_coef 0 online) starts from the same BC actor as ODT+TD3.
    config, _, learner = small_td3_setup(hopper_random, tmp_path)
    config.pretrain_steps, config.pretrain_alpha, config.alpha, config.supervised_coef = 4, 0.0, 0.1, 0.0
    assert [learner.coefficients(update) for update in range(6)] == [(1.0, 0.0)] * 4 + [(0.0, 0.1)] * 2
    learner.updates = 4  # after 4 updates, the last one was offline
    assert (learner.scalars()["alpha"], learner.scalars()["supervised_coef"]) == (0.0, 1.0)
    assert td3.TrainConfig().pretrain_supervised_coef == 1.0


def test_actor_loss_is_the_supervised_loss_at_alpha_zero_and_td3_at_supervised_zero(hopper_random, tmp_path):
    config, buffer, learner = small_td3_setup(hopper_random, tmp_path)
    actor, critic = learner.actor.eval(), learner.critic
    batch = buffer.sample(32)
    k = config.seq_len
    context = [batch[key][:, :k] for key in ("states", "actions", "returns_to_go", "timesteps")]
    predicted = actor(*context)
    mask = batch["mask"].float()
    supervised = (((predicted - batch["actions"][:, :k]) ** 2).mean(-1) * mask).sum() / mask.sum()
    minus_q = (-critic.first(batch["states"][:, :k], predicted) * mask).sum() / mask.sum()

    def loss_and_grads(alpha, supervised_coef):
        actor.zero_grad()
        loss, _ = td3.actor_loss(actor, critic, batch, (supervised_coef, alpha), config)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in actor.parameters()]

    loss, grads = loss_and_grads(0.0, 1.0)
    torch.testing.assert_close(loss, supervised.detach())
    actor.zero_grad()
    supervised.backward(retain_graph=True)
    for grad, expected in zip(grads, (p.grad for p in actor.parameters())):
        torch.testing.assert_close(grad, expected)
    loss, _ = loss_and_grads(0.1, 0.0)
    torch.testing.assert_close(loss, 0.1 * minus_q.detach())
    loss, _ = loss_and_grads(0.1, 1.0)
    torch.testing.assert_close(loss, (supervised + 0.1 * minus_q).detach())


# ------------------------------------------------------------------------------------------------
# Trajectory buffer


def test_buffer_keeps_the_top_k_offline_trajectories_and_replaces_fifo_lowest_first():
    buffer = make_buffer(capacity=3)
    offline = [trajectory([value] * 4, mark=value) for value in (5.0, 1.0, 9.0, 3.0, 7.0)]
    buffer.initialise(offline)
    returns = lambda: [float(t["rewards"].sum()) for t in buffer.trajectories]  # noqa: E731
    assert returns() == [20.0, 28.0, 36.0]  # top 3 of 5, lowest return first
    buffer.add([trajectory([0.0] * 2, mark=-1.0)])
    assert returns() == [28.0, 36.0, 0.0]  # the lowest-return offline trajectory went first
    buffer.add([trajectory([0.5] * 2, mark=-2.0), trajectory([0.25] * 2, mark=-3.0)])
    assert returns() == [0.0, 1.0, 0.5]
    buffer.add([trajectory([0.125] * 2, mark=-4.0)])
    assert returns() == [1.0, 0.5, 0.25]  # then the oldest online trajectory, whatever its return
    # the device copy follows: only the kept trajectories' states are ever sampled
    marks = set(buffer.sample(500)["states"][:, 0, 0].tolist())
    assert marks == {-2.0, -3.0, -4.0}
    assert len(buffer) == 3 and sum(len(t["rewards"]) for t in buffer.trajectories) == 6


def test_return_to_go_labels_are_recomputed_from_received_rewards():
    buffer = make_buffer(capacity=10, seq_len=2, reward_scale=0.5)
    rewards = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    online = trajectory(rewards, terminated=False, final=True)
    online["observations"][:, 0] = np.arange(4)  # the state names its step
    buffer.initialise([online])
    batch = buffer.sample(400)
    suffix = {0: 10.0, 1: 9.0, 2: 7.0, 3: 4.0, 4: 0.0}
    for row in range(400):
        for position in range(3):
            step = int(batch["timesteps"][row, position])
            assert batch["returns_to_go"][row, position].item() == pytest.approx(0.5 * suffix[step])
    assert set(batch["timesteps"][:, 0].tolist()) == {0, 1, 2, 3}


# ------------------------------------------------------------------------------------------------
# The episode runner and online collection


def test_one_episode_runner_serves_dt_evaluation_and_both_online_methods():
    dt = load_script("algorithms/offline/dt.py")
    sources = {inspect.getsource(script.run_episodes) for script in (dt, odt, td3)}
    assert len(sources) == 1
    assert "run_episodes(" in inspect.getsource(dt.evaluate)


def test_rollouts_store_real_rewards_not_the_conditioning_return(hopper_random):
    config = tiny_config(odt, hopper_random, "unused", "--reward_bias", "-1", "--episode_len", "30")
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("Hopper-v5", max_episode_steps=30)])
    seen = []

    def act(states, actions, returns_to_go, timesteps):
        seen.append(returns_to_go[0, -1].item())
        assert states.shape[1] == min(len(seen), config.eval_context)  # the last eval_context steps
        return torch.zeros(1, 3)

    (episode,) = run_episodes(act, envs, 5000.0, config, seed=1)
    env_rewards = episode["rewards"] - config.reward_bias
    assert episode["return"] == pytest.approx(env_rewards.sum())  # reported returns use the env's reward
    # the conditioning return drops by each stored (biased, scaled) reward
    np.testing.assert_allclose(np.diff(seen), -episode["rewards"][:-1] * config.reward_scale, atol=2e-6)
    buffer = make_buffer(capacity=5, seq_len=config.seq_len, reward_scale=config.reward_scale, obs_dim=11)
    buffer.initialise([episode])
    batch = buffer.sample(64)
    first = batch["timesteps"][:, 0] == 0
    if first.any():
        expected = episode["rewards"].sum() * config.reward_scale
        assert batch["returns_to_go"][first, 0][0].item() == pytest.approx(expected, rel=1e-4)
    assert batch["returns_to_go"].max().item() < 5000.0 * config.reward_scale / 2


def test_runner_runs_envs_in_lockstep_and_ignores_steps_after_an_env_finished(hopper_random):
    config = tiny_config(odt, hopper_random, "unused", "--episode_len", "40")
    envs = gym.vector.SyncVectorEnv(
        [lambda steps=steps: gym.make("Hopper-v5", max_episode_steps=steps) for steps in (3, 40)]
    )
    calls = []
    act = lambda states, *context: calls.append(len(states)) or torch.zeros(len(states), 3)  # noqa: E731
    short, long = run_episodes(act, envs, 1.0, config, seed=0)
    assert short["length"] == 3 and short["truncated"] and len(short["rewards"]) == 3
    assert calls == [2] * long["length"]  # one batched forward per step for both envs
    assert long["length"] == 40 and long["truncated"]  # standing still, Hopper lasts to the time limit
    assert short["return"] == pytest.approx(float(short["rewards"].sum()))  # steps after its reset not counted


def test_truncated_and_terminated_ends_are_kept_apart(hopper_random):
    config = tiny_config(odt, hopper_random, "unused", "--episode_len", "30")
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("Hopper-v5", max_episode_steps=5)])
    act = lambda *context: torch.zeros(1, 3)  # noqa: E731  (standing still survives 5 steps)
    (truncated,) = run_episodes(act, envs, 1.0, config, seed=0)
    assert truncated["length"] == 5 and truncated["truncated"]
    assert not truncated["terminated"] and truncated["final_observation"] is not None
    config.truncation_as_terminal = True  # the official code's behaviour
    (official,) = run_episodes(act, envs, 1.0, config, seed=0)
    assert official["terminated"] and official["final_observation"] is None
    # in the buffer: a truncated end bootstraps from its final observation, a true end does not
    # bootstrap, and an offline time-limit end (next state unknown) is left out of the critic loss
    buffer = make_buffer(capacity=5, seq_len=2, obs_dim=11)
    buffer.initialise([truncated])
    assert_last_step(buffer, critic_mask=True, done=False)
    buffer.initialise([official])
    assert_last_step(buffer, critic_mask=True, done=True)
    offline = odt.make_trajectory(truncated["observations"], truncated["actions"], truncated["rewards"], False)
    buffer.initialise([offline])
    assert_last_step(buffer, critic_mask=False, done=False)


def assert_last_step(buffer, critic_mask, done):
    batch = buffer.sample(200)
    last = (batch["timesteps"][:, :-1] == 4) & batch["mask"]
    assert last.any()
    assert batch["critic_mask"][last].unique().tolist() == [critic_mask]
    assert batch["done"][last].unique().tolist() == [done]
    earlier = (batch["timesteps"][:, :-1] < 4) & batch["mask"]
    assert batch["critic_mask"][earlier].all() and not batch["done"][earlier].any()
    if critic_mask and not done:
        next_state = batch["states"][:, 1:][last]
        expected = (buffer.trajectories[0]["final_observation"] - buffer.state_mean) / buffer.state_std
        torch.testing.assert_close(next_state, torch.as_tensor(expected, dtype=torch.float32).expand_as(next_state))


@pytest.mark.parametrize(
    "minimums, lengths, rounds",
    [((1, 0), [3], 1), ((1, 1000), [999, 999], 2), ((5, 1000), [400] * 5, 5), ((1, 1000), [2000], 1)],
)
def test_rollouts_stop_once_both_minimums_are_met(minimums, lengths, rounds):
    seeds = []

    def run_round(seed):
        seeds.append(seed)
        return [{"length": lengths[len(seeds) - 1]}]

    np.random.seed(0)
    assert [t["length"] for t in odt.collect_online(run_round, *minimums)] == lengths
    assert len(seeds) == rounds
    np.random.seed(0)  # env seeds come from numpy's RNG, which checkpoints restore
    assert seeds == [int(np.random.randint(2**31 - 1)) for _ in range(rounds)]


def test_online_collection_with_real_rollouts_stops_at_the_first_episode_end_past_the_minimum(hopper_random):
    config = tiny_config(odt, hopper_random, "unused", "--online_transitions", "60", "--episode_len", "25")
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("Hopper-v5", max_episode_steps=25)])
    act = lambda *context: torch.zeros(1, 3)  # noqa: E731
    run_round = lambda seed: run_episodes(act, envs, config.online_rtg, config, seed)  # noqa: E731
    episodes = odt.collect_online(run_round, config.online_trajectories, config.online_transitions)
    lengths = [t["length"] for t in episodes]
    assert sum(lengths) >= 60 and sum(lengths[:-1]) < 60


# ------------------------------------------------------------------------------------------------
# ODT: likelihood, entropy, temperature


def test_tanh_gaussian_log_prob_matches_torch_distributions():
    torch.manual_seed(0)
    mean, log_std = torch.randn(5, 3), torch.rand(5, 3) - 1.0
    pre_tanh = torch.randn(5, 3) * 3
    base = torch.distributions.Normal(mean, log_std.exp())
    squashed = torch.distributions.TransformedDistribution(base, [torch.distributions.TanhTransform()])
    expected = squashed.log_prob(torch.tanh(pre_tanh)).sum(-1)
    torch.testing.assert_close(odt.tanh_gaussian_log_prob(pre_tanh, mean, log_std), expected, rtol=1e-4, atol=1e-3)
    # dataset actions of exactly +-1 stay finite
    assert torch.isfinite(odt.action_log_likelihood(mean, log_std, torch.ones(5, 3), 1.0)).all()


def test_temperature_moves_the_entropy_toward_its_target(hopper_random, tmp_path):
    settings = "--learning_rate 0.001 --temperature_learning_rate 0.05 --init_temperature 1.0 --warmup_steps 1"
    config = tiny_config(odt, hopper_random, tmp_path / "unused", *settings.split(), "--weight_decay", "0")
    dataset = odt.load_dataset(config.dataset)
    buffer = odt.TrajectoryBuffer(50, *odt.state_stats(dataset.observations), config.seq_len, config.reward_scale, CPU)
    buffer.initialise(odt.dataset_trajectories(dataset))
    outcome = {}
    for target in (-20.0, 5.0):
        config.target_entropy = target
        torch.manual_seed(0)
        learner = odt.ODT(11, 3, config, CPU)
        history = [learner.update(buffer.sample(32)) for _ in range(80)]
        entropies = [float(h["entropy"]) for h in history]
        outcome[target] = (float(history[-1]["temperature"]), np.mean(entropies[:10]), np.mean(entropies[-10:]))
    low, high = outcome[-20.0], outcome[5.0]
    assert low[0] < 1.0 < high[0]  # entropy above a low target lowers lambda, below a high target raises it
    assert high[2] > low[2]  # and the policy's entropy follows
    assert low[1] > -20.0 and high[1] < 5.0  # the targets were on opposite sides at the start


def test_temperature_loss_gradient_sign():
    temperature = odt.Temperature(0.1)
    odt.temperature_loss(temperature, torch.tensor(2.0), -3.0).backward()
    assert temperature.log_value.grad.item() > 0  # a descent step lowers lambda: entropy is above target
    temperature.zero_grad()
    odt.temperature_loss(temperature, torch.tensor(-5.0), -3.0).backward()
    assert temperature.log_value.grad.item() < 0


# ------------------------------------------------------------------------------------------------
# LAMB


def reference_lamb_steps(weights, grads, lr, betas, eps, weight_decay, max_grad_norm):
    """timm's LAMB written out step by step for one parameter group (the official ODT repos vendor it)."""
    weights, m, v = (
        [w.clone() for w in weights],
        [torch.zeros_like(w) for w in weights],
        [torch.zeros_like(w) for w in weights],
    )
    for step, step_grads in enumerate(grads, start=1):
        global_norm = torch.sqrt(sum((g**2).sum() for g in step_grads))
        clip = max(global_norm.item() / max_grad_norm, 1.0)
        for i, grad in enumerate(step_grads):
            grad = grad / clip
            m[i] = betas[0] * m[i] + (1 - betas[0]) * grad
            v[i] = betas[1] * v[i] + (1 - betas[1]) * grad**2
            update = (m[i] / (1 - betas[0] ** step)) / ((v[i] / (1 - betas[1] ** step)).sqrt() + eps)
            update = update + weight_decay * weights[i]
            weights[i] = weights[i] - lr * weights[i].norm() / update.norm() * update
    return weights


def test_lamb_matches_the_timm_style_optimiser_of_the_official_code():
    # A weight norm above 10 (no clamp), gradients above the global norm limit of 1.0, and two steps (bias
    # correction): torch_optimizer's LAMB, which the project used before, differs in all three.
    torch.manual_seed(0)
    weights = [nn.Parameter(torch.randn(8, 8) * 3), nn.Parameter(torch.randn(8))]
    grads = [[torch.randn(8, 8), torch.randn(8)] for _ in range(2)]
    assert weights[0].norm() > 10 and torch.sqrt(sum((g**2).sum() for g in grads[0])) > 1
    settings = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=5e-4)
    expected = reference_lamb_steps([w.detach() for w in weights], grads, **settings, max_grad_norm=1.0)
    optimizer = odt.Lamb(weights, **settings)
    for step_grads in grads:
        for weight, grad in zip(weights, step_grads):
            weight.grad = grad.clone()
        optimizer.step()
    for weight, reference in zip(weights, expected):
        torch.testing.assert_close(weight.detach(), reference)
    restored = odt.Lamb([nn.Parameter(w.detach().clone()) for w in weights], **settings)
    restored.load_state_dict(optimizer.state_dict())
    assert restored.param_groups[0]["step"] == 2  # the bias-correction count survives a resume


# ------------------------------------------------------------------------------------------------
# Whole runs


@pytest.mark.parametrize("script", [odt, td3], ids=["odt", "odt_td3"])
def test_pretraining_samples_every_offline_trajectory_and_fine_tuning_the_top_buffer_size(
    script, hopper_random, tmp_path, monkeypatch
):
    sampled_from, sample = [], script.TrajectoryBuffer.sample
    monkeypatch.setattr(
        script.TrajectoryBuffer, "sample", lambda self, size: sampled_from.append(len(self)) or sample(self, size)
    )
    schedule = ["--pretrain_steps", "3", "--updates_per_iteration", "2", "--online_iterations", "1"]
    script.train(tiny_config(script, hopper_random, tmp_path / "run", *schedule, "--buffer_size", "5"))
    dataset = script.load_dataset(str(hopper_random))
    episodes = len(script.episode_bounds(dataset.terminals, dataset.timeouts)[0])
    assert episodes > 5 and sampled_from == [episodes] * 3 + [5] * 2


@pytest.mark.parametrize("script", [odt, td3], ids=["odt", "odt_td3"])
def test_pretrain_then_online_iterations_and_exact_resume_from_the_online_phase(script, hopper_random, tmp_path):
    schedule = ["--pretrain_steps", "20", "--updates_per_iteration", "10", "--eval_every", "20"]
    straight = script.train(
        tiny_config(
            script, hopper_random, tmp_path / "a", *schedule, "--online_iterations", "3", "--checkpoint_every", "50"
        )
    )
    assert straight["online_iterations"] == 3 and straight["update_steps"] == 50
    assert straight["env_steps"] >= 3 * 40
    assert "pretrained/return_mean" in straight and "eval/normalized_score_mean" in straight
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    keys = set().union(*rows)
    common = {
        "train/actor_loss", "train/updates_per_second", "train/learning_rate", "train/actor_updates", "env_steps",
        "rollout/return_mean", "rollout/normalized_score_mean", "rollout_env_steps_per_second", "buffer_trajectories",
        "eval/return_mean", "eval/normalized_score_mean",
    }  # fmt: skip
    if script is odt:
        specific = {"train/entropy", "train/temperature", "train/actor_log_likelihood"}
    else:
        specific = {"train/actor_supervised_loss", "train/actor_rl_loss", "train/critic_loss", "train/q_mean"}
        specific.add("train/alpha")
    assert common | specific <= keys
    assert [row["step"] for row in rows if "rollout/return_mean" in row] == [20, 30, 40]
    if script is td3:
        assert straight["actor_updates"] == 25
        assert [row["train/alpha"] for row in rows if "train/alpha" in row] == [0.0, 0.0, 0.1, 0.1, 0.1]

    # stop after the first online iteration (checkpoint in the online phase), then resume to the end
    script.train(
        tiny_config(
            script, hopper_random, tmp_path / "b", *schedule, "--online_iterations", "1", "--checkpoint_every", "50"
        )
    )
    checkpoint = torch.load(sorted((tmp_path / "b" / "checkpoints").iterdir())[-1], weights_only=True)
    assert checkpoint["step"] == 30 and checkpoint["progress"]["iterations"] == 1
    assert sum("return" in t for t in checkpoint["buffer"]["trajectories"]) >= 1  # online trajectories saved
    resume = ["--resume", str(tmp_path / "b"), "--online_iterations", "3"]
    resumed = script.train(script.parse_config(script.TrainConfig, resume))
    assert resumed["env_steps"] == straight["env_steps"]
    assert resumed["eval/return_mean"] == pytest.approx(straight["eval/return_mean"])
    rows = lambda run: map(json.loads, (tmp_path / run / "metrics.jsonl").read_text().splitlines())  # noqa: E731
    losses = lambda run: [row["train/actor_loss"] for row in rows(run) if "train/actor_loss" in row]  # noqa: E731
    np.testing.assert_allclose(losses("b"), losses("a"), rtol=1e-4)


def test_episodes_longer_than_the_timestep_table_are_rejected(hopper_random, tmp_path):
    config = tiny_config(td3, hopper_random, tmp_path / "run", "--episode_len", "3")
    with pytest.raises(td3.UserError, match="raise --episode_len"):
        td3.train(config)
    assert not (tmp_path / "run").exists()


def test_sigterm_in_the_online_phase_checkpoints_and_the_run_resumes(hopper_random, tmp_path):
    run_dir = tmp_path / "run"
    schedule = "--pretrain_steps 20 --updates_per_iteration 10 --online_iterations 100000 --eval_every 100000"
    args = ["algorithms/finetune/odt_td3.py", *TINY, "--critic_hidden_dim", "32", "--dataset", str(hopper_random)]
    args += ["--run_dir", str(run_dir), *schedule.split(), "--checkpoint_every", "100000"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("rollout/return_mean") >= 2):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    newest = sorted((run_dir / "checkpoints").iterdir())[-1]  # the other is the end-of-pretraining one
    checkpoint = torch.load(newest, weights_only=True)
    iterations = checkpoint["progress"]["iterations"]
    assert iterations >= 2 and checkpoint["step"] > 20
    assert sum("return" in t for t in checkpoint["buffer"]["trajectories"]) >= iterations  # online data kept
    result = run_cli(
        "algorithms/finetune/odt_td3.py", "--resume", str(run_dir), "--online_iterations", str(iterations + 1)
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["online_iterations"] == iterations + 1
    assert summary["env_steps"] > checkpoint["progress"]["env_steps"]
