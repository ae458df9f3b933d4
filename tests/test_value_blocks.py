"""Units of the CQL / Cal-QL / IQL scripts: Monte-Carlo returns, transitions, buffers, CQL term, IQL losses, regret."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from conftest import load_script

cal_ql = load_script("algorithms/finetune/cal_ql.py")
iql = load_script("algorithms/offline/iql.py")

CPU = torch.device("cpu")
HOPPER = cal_ql.EnvSpec("Hopper-v5", {}, 1000, -20.272305, 3234.3)


def dataset_of(observations, rewards, terminals, timeouts, actions=None, next_observations=None):
    count = len(rewards)
    extras = {} if next_observations is None else {"next_observations": np.asarray(next_observations, np.float32)}
    return cal_ql.Dataset(
        name="synthetic",
        observations=np.asarray(observations, np.float32).reshape(count, -1),
        actions=np.zeros((count, 3), np.float32) if actions is None else np.asarray(actions, np.float32),
        rewards=np.asarray(rewards, np.float32),
        terminals=np.asarray(terminals, bool),
        timeouts=np.asarray(timeouts, bool),
        env=HOPPER,
        extras=extras,
    )


def dataset_returns(data, rewards, gamma, sparse=False, fail=0.0, mean=0.0, std=1.0):
    """Cal-QL's dataset rule, as train() applies it: the transitions, then Monte-Carlo returns over them."""
    returns = lambda rewards, dones, ends: cal_ql.monte_carlo_returns(rewards, dones, ends, gamma, sparse, fail)  # noqa: E731
    return cal_ql.transitions_with_returns(data, rewards, mean, std, returns)


def discounted(rewards, gamma):
    """Reference: explicit sums, G_t = sum_k gamma^k r_{t+k} within the segment."""
    return [sum(gamma**k * r for k, r in enumerate(rewards[t:])) for t in range(len(rewards))]


# ---------------------------------------------------------------------------- Monte-Carlo returns


def test_dense_returns_are_discounted_sums_within_each_episode():
    rewards = np.array([1.0, 2.0, 3.0, 4.0, 5.0], np.float32)
    terminals = np.array([0, 0, 1, 0, 1], bool)
    returns = cal_ql.monte_carlo_returns(rewards, terminals, terminals.copy(), gamma=0.5)
    np.testing.assert_allclose(returns, [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3, 4 + 0.5 * 5, 5], rtol=1e-6)


def test_sparse_all_failure_segment_gets_fail_over_one_minus_gamma():
    rewards = np.full(4, -5.0, np.float32)
    ends = np.array([0, 0, 0, 1], bool)
    returns = cal_ql.monte_carlo_returns(rewards, np.zeros(4, bool), ends, 0.99, sparse_reward=True, fail_reward=-5.0)
    np.testing.assert_allclose(returns, np.full(4, -500.0), rtol=1e-5)
    dense = cal_ql.monte_carlo_returns(rewards, np.zeros(4, bool), ends, 0.99, sparse_reward=False, fail_reward=-5.0)
    np.testing.assert_allclose(dense, discounted(list(rewards), 0.99), rtol=1e-5)


def test_sparse_segment_that_succeeds_gets_ordinary_returns():
    rewards = np.array([-5.0, -5.0, 5.0], np.float32)
    terminals = np.array([0, 0, 1], bool)
    returns = cal_ql.monte_carlo_returns(
        rewards, terminals, terminals.copy(), 0.99, sparse_reward=True, fail_reward=-5.0
    )
    np.testing.assert_allclose(returns, [-5 + 0.99 * (-5 + 0.99 * 5), -5 + 0.99 * 5, 5], rtol=1e-5)


def test_timeout_truncates_without_bootstrap_and_its_dropped_step_adds_no_reward():
    # Episode 1: 3 steps cut by a timeout; episode 2: 2 steps ending in a terminal; then an unfinished one.
    rewards = [1.0, 4.0, 8.0, 2.0, 2.0, 3.0, 3.0]
    observations = np.arange(7, dtype=np.float32)[:, None]
    data = dataset_of(observations, rewards, [0, 0, 0, 0, 1, 0, 0], [0, 0, 1, 0, 0, 0, 0])
    arrays = dataset_returns(data, data.rewards, 0.9)
    # Without s' the timeout step is no transition: dropped, its reward is not in the returns before it (as
    # the official replay buffer), and the unfinished episode at the file's end is dropped whole.
    np.testing.assert_allclose(arrays["mc_returns"], [1 + 0.9 * 4, 4, 2 + 0.9 * 2, 2], rtol=1e-6)
    np.testing.assert_allclose(arrays["next_observations"][:, 0], [1, 2, 4, 5])
    np.testing.assert_allclose(arrays["dones"], [0, 0, 0, 1])
    # With the file's s' the timeout step is a transition and counts; the unfinished episode still goes.
    data.extras["next_observations"] = observations + 1
    arrays = dataset_returns(data, data.rewards, 0.9)
    np.testing.assert_allclose(
        arrays["mc_returns"], [1 + 0.9 * 4 + 0.81 * 8, 4 + 0.9 * 8, 8, 2 + 0.9 * 2, 2], rtol=1e-6
    )
    with pytest.raises(cal_ql.UserError, match="no finished episode"):
        dataset_returns(dataset_of(observations, rewards, np.zeros(7), np.zeros(7)), data.rewards, 0.9)
    # CQL and IQL use the same transitions, without the Monte-Carlo column.
    plain = iql.transition_arrays(data, data.rewards, 0.0, 1.0)
    assert set(plain) == {"observations", "actions", "rewards", "next_observations", "dones"}
    np.testing.assert_allclose(plain["next_observations"][:5], arrays["next_observations"])


def test_dataset_actions_are_clipped_inside_the_open_interval_before_any_log_probability():
    actions = np.array([[1.0, -1.0, 0.5], [-1.0, 1.0, 0.0]], np.float32)
    data = dataset_of(np.zeros(2), [0.0, 0.0], [0, 1], [0, 0], actions=actions)
    clipped = iql.transition_arrays(data, data.rewards, 0.0, 1.0)["actions"]  # official: clip to +-(1 - 1e-5)
    np.testing.assert_allclose(clipped, np.clip(actions, -0.99999, 0.99999), rtol=0, atol=1e-7)
    assert np.abs(clipped).max() < 1.0  # e.g. a tanh-Gaussian log-likelihood of them stays finite


def test_observation_discontinuity_inside_one_files_arrays_splits_the_segment():
    # Two episodes glued together with no terminal or timeout flag between them (as in files where
    # d4rl.qlearning_dataset dropped timeout rows): next_observations reveal the jump.
    observations = np.array([[0.0], [1.0], [2.0], [10.0], [11.0]], np.float32)
    next_observations = np.array([[1.0], [2.0], [3.0], [11.0], [12.0]], np.float32)
    rewards, timeout_at_the_end = np.ones(5, np.float32), [0, 0, 0, 0, 1]
    data = dataset_of(observations, rewards, np.zeros(5), timeout_at_the_end, next_observations=next_observations)
    arrays = dataset_returns(data, data.rewards, 0.5)
    np.testing.assert_allclose(arrays["mc_returns"], [1.75, 1.5, 1.0, 1.5, 1.0])
    assert len(arrays["rewards"]) == 5  # with the file's s' every row is a transition
    continuous = np.concatenate([observations[1:], [[12.0]]])  # the same rows with no jump: one segment
    glued = dataset_of(observations, rewards, np.zeros(5), timeout_at_the_end, next_observations=continuous)
    np.testing.assert_allclose(
        dataset_returns(glued, glued.rewards, 0.5)["mc_returns"][0], sum(0.5**k for k in range(5))
    )


def test_online_episode_gets_the_same_values_as_the_same_episode_read_from_a_dataset():
    envs = HOPPER.make_vector(1)
    act = lambda state: torch.rand(state.shape[0], 3) * 2 - 1  # noqa: E731
    returns, lengths, _, episode = cal_ql.run_episodes(act, envs, 3, torch.zeros(11), torch.ones(11), record=True)
    envs.close()
    count = len(episode["rewards"])
    assert count == lengths[0] and episode["dones"][-1] and not episode["dones"][:-1].any()  # random hopper falls
    assert returns[0] == pytest.approx(episode["rewards"].sum())
    np.testing.assert_array_equal(episode["next_observations"][:-1], episode["observations"][1:])
    transform = cal_ql.reward_transform(dataset_of(np.zeros(2), [0, 0], [0, 1], [0, 0]), False, 10.0, -5.0)
    # Online (as train() does): training rewards, then one segment that ends at the episode's last step.
    rewards = transform(episode["rewards"])
    online = cal_ql.monte_carlo_returns(rewards, episode["dones"], np.arange(count) == count - 1, 0.99, True, -5.0)
    data = dataset_of(
        episode["observations"], episode["rewards"], episode["dones"], np.zeros(count), episode["actions"],
        episode["next_observations"],
    )  # fmt: skip
    offline = dataset_returns(data, transform(data.rewards), 0.99, True, -5.0)
    np.testing.assert_allclose(online, offline["mc_returns"], rtol=1e-6)
    np.testing.assert_allclose(rewards, offline["rewards"], rtol=1e-6)
    np.testing.assert_allclose(episode["next_observations"], offline["next_observations"], rtol=1e-6)
    np.testing.assert_allclose(episode["dones"], offline["dones"])
    # An all-failure online episode of a sparse task gets fail / (1 - gamma), as a dataset one would.
    failing = transform(np.zeros(count))
    all_fail = cal_ql.monte_carlo_returns(failing, episode["dones"], np.arange(count) == count - 1, 0.99, True, -5.0)
    np.testing.assert_allclose(all_fail, -500.0, rtol=1e-5)


def test_reward_transform_normalisation_then_scale_and_bias():
    data = dataset_of(np.zeros(4), [1.0, 3.0, 2.0, 2.0], [0, 1, 0, 1], [0, 0, 0, 0])  # episode returns 4 and 4
    with pytest.raises(cal_ql.UserError, match="normalize_reward"):
        cal_ql.reward_transform(data, True, 1.0, 0.0)  # equal returns: nothing to normalise by
    data.rewards[0] = 5.0  # returns 8 and 4: factor 1000 / 4
    np.testing.assert_allclose(cal_ql.reward_transform(data, True, 2.0, 1.0)([1.0]), [501.0])
    np.testing.assert_allclose(cal_ql.reward_transform(data, False, 10.0, -5.0)(data.rewards), [45.0, 25.0, 15.0, 15.0])


# ---------------------------------------------------------------------------- buffers, regret


def rows(count: int, value: float, keys=("observations", "actions", "rewards", "next_observations", "dones")):
    shapes = {"observations": (2,), "next_observations": (2,), "actions": (1,)}
    return {key: np.full((count, *shapes.get(key, ())), value, np.float32) for key in keys}


@pytest.mark.parametrize("batch_size, ratio, offline_rows", [(256, 0.5, 128), (10, 0.25, 2), (7, 0.5, 3)])
def test_mixed_batches_take_int_batch_times_ratio_rows_from_the_dataset(batch_size, ratio, offline_rows):
    offline, online = cal_ql.TransitionBuffer(rows(50, 0.0), CPU), cal_ql.TransitionBuffer(rows(30, 1.0), CPU)
    batch = cal_ql.sample_mixed(offline, online, batch_size, ratio)
    assert batch["rewards"].shape == (batch_size,)
    assert batch["rewards"].tolist() == [0.0] * offline_rows + [1.0] * (batch_size - offline_rows)
    empty = cal_ql.TransitionBuffer(rows(0, 0.0), CPU, spare=10)
    assert cal_ql.sample_mixed(offline, empty, 16, ratio)["rewards"].sum() == 0  # nothing online yet
    assert cal_ql.sample_mixed(offline, offline, 16, None)["rewards"].sum() == 0  # no ratio: one buffer, uniform


def test_mixing_ratio_zero_is_a_ratio_and_only_none_means_one_buffer():
    offline, online = cal_ql.TransitionBuffer(rows(50, 0.0), CPU), cal_ql.TransitionBuffer(rows(0, 0.0), CPU, spare=10)
    assert cal_ql.sample_mixed(offline, online, 16, 0.0)["rewards"].tolist() == [0.0] * 16  # nothing online yet
    online.add(rows(3, 1.0))
    assert cal_ql.sample_mixed(offline, online, 16, 0.0)["rewards"].tolist() == [1.0] * 16  # then online rows only


def test_buffer_checkpoint_keeps_only_online_rows_and_restores_them():
    buffer = cal_ql.TransitionBuffer(rows(5, 0.0, ("rewards", "mc_returns")), CPU, spare=3)
    buffer.add(rows(3, 2.0, ("rewards", "mc_returns")))
    state = cal_ql.online_rows(buffer, buffer)
    assert state["rewards"].tolist() == [2.0, 2.0, 2.0] and state["dataset_rows"] == 5
    buffer.data["rewards"][5:] = -1  # the saved rows are a copy
    fresh = cal_ql.TransitionBuffer(rows(5, 0.0, ("rewards", "mc_returns")), CPU, spare=3)
    cal_ql.restore_online_rows(fresh, fresh, state)
    assert fresh.size == 8 and fresh.data["rewards"].tolist() == [0.0] * 5 + [2.0] * 3
    with pytest.raises(cal_ql.UserError, match="dataset rows"):
        other = cal_ql.TransitionBuffer(rows(4, 0.0, ("rewards", "mc_returns")), CPU, spare=3)
        cal_ql.restore_online_rows(other, other, state)
    with pytest.raises(cal_ql.UserError, match="online_iterations"):
        small = cal_ql.TransitionBuffer(rows(5, 0.0, ("rewards", "mc_returns")), CPU, spare=2)
        cal_ql.restore_online_rows(small, small, state)


def test_regret_from_a_known_evaluation_sequence():
    evaluations = [
        {"eval/normalized_score_mean": 20.0},
        {"eval/normalized_score_mean": 50.0},
        {"eval/normalized_score_mean": 130.0},
        {"eval/normalized_score_mean": -10.0},
    ]
    scores = [cal_ql.fraction_of_best(metrics) for metrics in evaluations]
    assert scores == [0.2, 0.5, 1.0, 0.0]
    assert cal_ql.regret(scores) == pytest.approx((0.8 + 0.5 + 0.0 + 1.0) / 4)
    assert cal_ql.fraction_of_best({"eval/success_rate": 0.75}) == 0.75
    # Goal-reaching envs score by their success rate, never by the normalised score (which counts goal steps)
    assert cal_ql.fraction_of_best({"eval/normalized_score_mean": 3000.0, "eval/success_rate": 0.25}) == 0.25
    assert cal_ql.fraction_of_best({"eval/normalized_score_mean": 80.0, "eval/success_rate": 0.0}) == 0.0


# ---------------------------------------------------------------------------- CQL term


def tables():
    """One critic, one state, two samples per action set, hand-picked values."""
    q_data = torch.tensor([[2.0]])
    q_random = torch.tensor([[[1.0, 3.0]]])
    q_current = torch.tensor([[[4.0, 0.0]]])
    q_next = torch.tensor([[[1.0, 6.0]]])
    log_pi_current = torch.tensor([[0.5, -1.0]])
    log_pi_next = torch.tensor([[-0.5, 2.0]])
    return q_data, q_random, q_current, q_next, log_pi_current, log_pi_next


def term(importance_sample, temperature=1.0, clip=(-1e30, 1e30)):
    return SimpleNamespace(
        cql_importance_sample=importance_sample,
        cql_temp=temperature,
        cql_clip_diff_min=clip[0],
        cql_clip_diff_max=clip[1],
    )


def test_cql_term_without_importance_sampling_on_known_q_tables():
    gap = cal_ql.cql_gap(*tables(), 3, term(False))
    expected = math.log(sum(math.exp(v) for v in (1, 3, 2, 1, 6, 4, 0))) - 2.0
    assert gap.item() == pytest.approx(expected, rel=1e-6)
    cooled = cal_ql.cql_gap(*tables(), 3, term(False, temperature=2.0))
    assert cooled.item() == pytest.approx(2.0 * math.log(sum(math.exp(v / 2) for v in (1, 3, 2, 1, 6, 4, 0))) - 2.0)
    assert cal_ql.cql_gap(*tables(), 3, term(False, clip=(-1.0, 1.0))).item() == 1.0


def test_cql_term_with_importance_sampling_on_known_q_tables():
    gap = cal_ql.cql_gap(*tables(), 3, term(True))
    uniform = 3 * math.log(2.0)  # -log density of U[-1, 1]^3
    values = [1 + uniform, 3 + uniform, 1 + 0.5, 6 - 2.0, 4 - 0.5, 0 + 1.0]
    assert gap.item() == pytest.approx(math.log(sum(math.exp(v) for v in values)) - 2.0, rel=1e-6)


def tiny_cql(**overrides):
    config = cal_ql.TrainConfig(actor_hidden_dims=(8,), critic_hidden_dims=(8,), cql_n_actions=4, **overrides)
    return cal_ql.CalQL(4, 2, config, CPU)


def test_calibration_raises_exactly_the_policy_sample_q_values_below_the_bound():
    q_data, q_random, q_current, q_next, lp_c, lp_n = tables()
    for importance_sample in (True, False):
        agent = tiny_cql(cql_importance_sample=importance_sample)
        raised_current, raised_next, metrics = agent.policy_sample_q(
            q_current, q_next, {"mc_returns": torch.tensor([3.5])}
        )
        gap = cal_ql.cql_gap(q_data, q_random, raised_current, raised_next, lp_c, lp_n, 3, agent.config)
        by_hand = cal_ql.cql_gap(  # 0 -> 3.5 and 1 -> 3.5; 4, 6 and the random set (1 < 3.5) untouched
            q_data, q_random, torch.tensor([[[4.0, 3.5]]]), torch.tensor([[[3.5, 6.0]]]), lp_c, lp_n, 3, agent.config
        )
        assert gap.item() == pytest.approx(by_hand.item(), rel=1e-6)
        assert metrics["bound_rate"].item() == 0.5  # one of the two pi(.|s) samples was below the bound
    # CQL leaves them alone, and so does Cal-QL with enable_calql false.
    plain = cal_ql.CQL(4, 2, tiny_cql().config, CPU).policy_sample_q(
        q_current, q_next, {"mc_returns": torch.tensor([9.0])}
    )
    assert plain[0] is q_current and plain[1] is q_next and plain[2] == {}
    assert tiny_cql(enable_calql=False).policy_sample_q(q_current, q_next, {})[0] is q_current


def random_batch(size=16):
    generator = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    return {
        "observations": rand(size, 4),
        "actions": rand(size, 2) * 2 - 1,
        "rewards": rand(size),
        "next_observations": rand(size, 4),
        "dones": (rand(size) < 0.1).float(),
        "mc_returns": rand(size) * 10,
    }


def test_the_cql_update_sees_the_calibrated_values():
    batch, agent = random_batch(), tiny_cql()
    losses = {}
    for name, bound, calibrated in (("plain", 0.0, False), ("low", -1e3, True), ("high", 1e3, True)):
        agent.config.enable_calql = calibrated
        torch.manual_seed(1)  # the same policy and uniform samples each time
        losses[name] = agent.losses({**batch, "mc_returns": torch.full((16,), bound)})
    assert losses["low"]["cql_gap"].item() == pytest.approx(losses["plain"]["cql_gap"].item(), rel=1e-6)
    assert losses["low"]["bound_rate"] == 0 and "bound_rate" not in losses["plain"]
    assert losses["high"]["cql_gap"].item() > losses["plain"]["cql_gap"].item() + 100
    assert losses["high"]["bound_rate"] == 1


@pytest.mark.parametrize("target_gap, direction", [(1e3, -1), (-1e3, 1)])
def test_lagrange_multiplier_grows_when_the_gap_exceeds_its_target_and_shrinks_otherwise(target_gap, direction):
    agent = tiny_cql(cql_lagrange=True, cql_target_action_gap=target_gap)
    assert agent.log_alpha_prime.item() == 1.0  # official init
    agent.train_step(random_batch())
    assert np.sign(agent.log_alpha_prime.item() - 1.0) == direction


def test_cql_term_sends_no_gradient_into_the_actor_and_output_layers_start_small():
    agent = tiny_cql()
    losses = agent.losses(random_batch())
    gradients = torch.autograd.grad(losses["qf_loss"], list(agent.actor.parameters()), allow_unused=True)
    assert all(gradient is None for gradient in gradients)
    output = agent.actor.trunk[-1].weight
    assert torch.linalg.svdvals(output).max().item() == pytest.approx(1e-2, rel=1e-4)
    assert agent.actor.log_std_multiplier.requires_grad and agent.actor.log_std_offset.item() == -1.0


def test_every_loss_uses_the_pre_update_parameters():
    agent = tiny_cql(cql_lagrange=True)
    batch = random_batch()
    torch.manual_seed(5)
    before = agent.losses(batch)
    expected = {
        name: torch.autograd.grad(before[name], params, allow_unused=True)
        for name, params in (
            ("policy_loss", list(agent.actor.parameters())),
            ("qf_loss", list(agent.critic.parameters())),
        )
    }
    torch.manual_seed(5)
    agent.train_step(batch)
    # Adam's first step moves each parameter by lr * sign(gradient) (up to eps), so the step reveals
    # which gradient was used: the one of the losses before any part was updated.
    for name, module in (("policy_loss", agent.actor), ("qf_loss", agent.critic)):
        state = agent.actor_optimizer.state if name == "policy_loss" else agent.critic_optimizer.state
        for parameter, gradient in zip(module.parameters(), expected[name]):
            if gradient is None:
                continue
            torch.testing.assert_close(state[parameter]["exp_avg"], 0.1 * gradient, rtol=1e-4, atol=1e-7)


def test_agent_state_round_trips_through_a_checkpoint():
    agent, copy = tiny_cql(cql_lagrange=True), tiny_cql(cql_lagrange=True, train_seed=1)
    agent.train_step(random_batch())
    copy.load_state_dict(agent.state_dict())
    torch.manual_seed(3)
    first = agent.train_step(random_batch())
    torch.manual_seed(3)
    second = copy.train_step(random_batch())
    assert all(torch.equal(first[key], second[key]) for key in first) and copy.updates == 2


# ---------------------------------------------------------------------------- IQL


def test_expectile_loss_values_and_gradients_on_known_inputs():
    difference = torch.tensor([-2.0, 1.0, 0.0], requires_grad=True)
    loss = iql.expectile_loss(difference, 0.7)
    torch.testing.assert_close(loss, torch.tensor([0.3 * 4.0, 0.7 * 1.0, 0.0]))
    loss.sum().backward()
    torch.testing.assert_close(difference.grad, torch.tensor([2 * 0.3 * -2.0, 2 * 0.7 * 1.0, 0.0]))


def test_advantage_weights_are_clipped_at_100():
    weights = iql.advantage_weights(torch.tensor([0.0, 1.0, -1.0, 2.0, 50.0]), beta=3.0)
    torch.testing.assert_close(weights, torch.tensor([1.0, math.exp(3.0), math.exp(-3.0), 100.0, 100.0]))


def test_offline_actor_lr_decays_by_cosine_then_holds_and_fine_tuning_never_decays():
    config = iql.TrainConfig(actor_hidden_dims=(8,), critic_hidden_dims=(8,), actor_lr=1e-3)
    decaying = iql.IQL(4, 2, config, CPU, decay_steps=10)
    constant = iql.IQL(4, 2, config, CPU, decay_steps=0)
    lrs = {"decaying": [], "constant": []}
    for _ in range(16):
        for name, agent in (("decaying", decaying), ("constant", constant)):
            agent.train_step(random_batch())
            lrs[name].append(agent.actor_optimizer.param_groups[0]["lr"])
    assert lrs["decaying"][4] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 5 / 10)))
    assert lrs["decaying"][9:] == [0.0] * 7  # holds at the end instead of climbing back
    assert lrs["constant"] == [1e-3] * 16


def test_iql_mean_head_starts_orthogonal_with_gain_sqrt_2():
    agent = iql.IQL(4, 2, iql.TrainConfig(actor_hidden_dims=(8,), critic_hidden_dims=(8,)), CPU, decay_steps=0)
    head = agent.actor.mean[-1].weight  # (2, 8): orthogonal rows scaled by the gain
    torch.testing.assert_close(torch.linalg.svdvals(head), torch.full((2,), math.sqrt(2)))


@pytest.mark.filterwarnings("ignore::UserWarning")  # the spy replaces optimizer.step
def test_iql_update_order_is_value_actor_q_target():
    agent = iql.IQL(4, 2, iql.TrainConfig(actor_hidden_dims=(8,), critic_hidden_dims=(8,)), CPU, decay_steps=0)
    calls = []
    for name in ("value_optimizer", "actor_optimizer", "critic_optimizer"):
        optimizer = getattr(agent, name)
        original = optimizer.step
        optimizer.step = lambda *args, _name=name, _original=original, **kwargs: (
            calls.append(_name),
            _original(*args, **kwargs),
        )[1]
    agent.train_step(random_batch())
    assert calls == ["value_optimizer", "actor_optimizer", "critic_optimizer"]
