"""SAC: its update against a hand-written soft Bellman target, and short runs (alone, resumed, with offline data)."""

import json

import numpy as np
import pytest
import torch

from conftest import load_script

sac = load_script("algorithms/online/sac.py")
TINY = ["--actor_hidden_dims", "[16, 16]", "--critic_hidden_dims", "[16, 16]", "--batch_size", "32"]
TINY += ["--n_episodes", "2", "--wandb_mode", "disabled", "--device", "cpu"]


def run(tmp_path, *args: str) -> dict:
    return sac.train(sac.parse_config(sac.TrainConfig, [*TINY, "--run_dir", str(tmp_path / "run"), *args]))


def metric_rows(tmp_path) -> list:
    return [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]


def test_the_critic_regresses_on_the_soft_bellman_target():
    config = sac.parse_config(sac.TrainConfig, [*TINY, "--discount", "0.9"])
    agent = sac.SAC(3, 2, config, torch.device("cpu"))
    generator = torch.Generator().manual_seed(0)
    batch = {key: torch.randn(8, width, generator=generator) for key, width in (("observations", 3), ("actions", 2))}
    batch.update(next_observations=torch.randn(8, 3, generator=generator), rewards=torch.randn(8, generator=generator))
    batch["dones"] = (torch.arange(8) % 3 == 0).float()
    torch.manual_seed(1)
    losses = agent.losses(batch)
    torch.manual_seed(1)
    agent.actor(batch["observations"])  # the same noise draws, in the same order
    next_action, next_log_pi = agent.actor(batch["next_observations"])
    alpha = agent.log_alpha.exp()
    soft_q = agent.target_critic(batch["next_observations"], next_action).min(0).values - alpha * next_log_pi
    target = batch["rewards"] + 0.9 * (1 - batch["dones"]) * soft_q
    expected = sum(((q - target) ** 2).mean() for q in agent.critic(batch["observations"], batch["actions"]))
    torch.testing.assert_close(losses["qf_loss"], expected.detach())


def test_a_short_run_learns_nothing_yet_but_writes_everything(tmp_path):
    summary = run(tmp_path, "--total_steps", "300", "--random_steps", "100", "--eval_every", "100")
    assert summary["online_env_steps"] == 300 and len(summary["online_evaluation_scores"]) == 3
    assert np.isfinite(summary["eval/normalized_score_mean"])
    policies = sorted((tmp_path / "run" / "policies").glob("step_*.pt"))
    assert [path.name for path in policies] == [f"step_{step:09d}.pt" for step in (100, 200, 300)]
    policy = torch.load(policies[-1], weights_only=True)
    assert (policy["env_id"], policy["metrics"]["online/env_steps"], policy["hidden_dims"]) == (
        "Hopper-v5",
        300,
        [16, 16],
    )
    assert policy["metrics"]["eval/return_mean"] == summary["eval/return_mean"]
    assert 0 < policy["metrics"]["online/wall_time_s"] <= summary["wall_time_s"]
    updates = [row for row in metric_rows(tmp_path) if "train/qf_loss" in row]
    assert updates and all(np.isfinite(row["train/qf_loss"]) for row in updates)


def test_the_replay_buffer_keeps_every_step_in_order_across_a_resume(tmp_path):
    run(tmp_path, "--total_steps", "200", "--random_steps", "50", "--eval_every", "100", "--num_envs", "2")
    checkpoint = max((tmp_path / "run" / "checkpoints").glob("step_*.pt"))
    before = torch.load(checkpoint, weights_only=True)["online_buffer"]
    args = ["--total_steps", "400", "--random_steps", "50", "--eval_every", "100", "--num_envs", "2"]
    summary = run(tmp_path, *args, "--resume", str(tmp_path / "run"))
    assert summary["online_env_steps"] == 400
    after = torch.load(max((tmp_path / "run" / "checkpoints").glob("step_*.pt")), weights_only=True)["online_buffer"]
    assert len(after["rewards"]) == 400
    for key in ("observations", "actions", "rewards", "dones"):
        torch.testing.assert_close(after[key][:200], before[key])
    # the resume ended each env's running episode: its last stored step is a timeout unless it terminated
    torch.testing.assert_close(after["timeouts"][198:200], 1.0 - before["dones"][198:200])
    # within one env (every second row), s' of a step is s of the next unless the episode ended there
    observations, next_observations = after["observations"], after["next_observations"]
    ends = (after["dones"] + after["timeouts"]).bool()
    for env in range(2):
        rows = torch.arange(env, 398, 2)
        continuing = rows[~ends[rows]]
        torch.testing.assert_close(next_observations[continuing], observations[continuing + 2])
    assert (tmp_path / "run" / "config.step_000000200.yaml").exists()


def test_sac_with_offline_data_samples_the_dataset(tmp_path, hopper_random):
    args = ["--dataset", str(hopper_random), "--mixing_ratio", "0.5", "--total_steps", "150", "--random_steps", "0"]
    summary = run(tmp_path, *args, "--eval_every", "150")
    assert summary["dataset"] == str(hopper_random) and summary["online_env_steps"] == 150
    assert "train/qf_loss" in metric_rows(tmp_path)[0]


def test_an_env_with_actions_outside_minus_one_one_is_refused(tmp_path):
    with pytest.raises(sac.UserError, match=r"needs \[-1, 1\]"):
        run(tmp_path, "--env", "Pendulum-v1", "--total_steps", "10")
