"""Decision Transformer: sampling, masks, model, evaluation, and whole runs (tiny model, tiny generated data)."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import ROOT, load_script, run_cli

dt = load_script("algorithms/offline/dt.py")

TINY = (
    "--embedding_dim 16 --num_layers 1 --num_heads 2 --seq_len 5 --batch_size 16 --warmup_steps 20 "
    "--learning_rate 0.003 --eval_episodes 2 --target_returns [3600] --wandb_mode disabled --device cpu"
).split()
HOPPER = dt.EnvSpec("Hopper-v5", {}, 1000, -20.272305, 3234.3)


def tiny_config(dataset: Path, run_dir: Path, **overrides) -> "dt.TrainConfig":
    args = TINY + ["--dataset", str(dataset), "--run_dir", str(run_dir)]
    for key, value in overrides.items():
        args += [f"--{key}", str(value)]
    return dt.parse_config(dt.TrainConfig, args)


def synthetic_dataset(lengths, obs_dim=3, act_dim=2) -> "dt.Dataset":
    count = sum(lengths)
    terminals = np.zeros(count, bool)
    terminals[np.cumsum(lengths) - 1] = True
    return dt.Dataset(
        name="synthetic",
        observations=np.arange(count * obs_dim, dtype=np.float32).reshape(count, obs_dim),
        actions=np.ones((count, act_dim), np.float32),
        rewards=np.ones(count, np.float32),
        terminals=terminals,
        timeouts=np.zeros(count, bool),
        env=HOPPER,
    )


def test_windows_are_drawn_with_probability_proportional_to_episode_length():
    lengths = [10, 30, 60]
    dataset = synthetic_dataset(lengths)
    dataset.observations[:, 0] = np.repeat(np.arange(3), lengths)  # the first feature names the episode
    data = dt.SequenceData(dataset, seq_len=4, reward_scale=1.0, device=torch.device("cpu"))
    torch.manual_seed(0)
    states, _, _, timesteps, _ = data.sample(60_000)
    _, episode = np.unique(states[:, 0, 0].numpy(), return_inverse=True)
    frequencies = np.bincount(episode, minlength=3) / len(episode)
    np.testing.assert_allclose(frequencies, np.array(lengths) / sum(lengths), atol=0.01)
    starts_in_longest = timesteps[episode == 2, 0].numpy()  # uniform start inside the episode
    assert set(starts_in_longest.tolist()) == set(range(60))
    assert starts_in_longest.mean() == pytest.approx(29.5, abs=0.5)


def test_windows_past_the_episode_end_are_padded_and_masked():
    data = dt.SequenceData(synthetic_dataset([3, 5]), seq_len=4, reward_scale=0.5, device=torch.device("cpu"))
    torch.manual_seed(0)
    while True:  # draw until a window starts on the second-to-last step of the first episode
        states, actions, rtg, timesteps, mask = data.sample(64)
        rows = (timesteps[:, 0] == 1) & (rtg[:, 0] == 1.0)
        if rows.any():
            break
    row = int(torch.nonzero(rows)[0])
    assert mask[row].tolist() == [True, True, False, False]
    assert rtg[row].tolist() == [1.0, 0.5, 0.0, 0.0]  # rewards of 1 scaled by 0.5, summed to the end
    assert timesteps[row].tolist() == [1, 2, 0, 0]
    assert (states[row, 2:] == 0).all() and (actions[row, 2:] == 0).all()
    assert (actions[row, :2] == 1).all()


def test_masked_mean_of_the_squared_error_ignores_padding():
    predicted = torch.zeros(1, 3, 2)
    target = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    assert dt.masked_mean(((predicted - target) ** 2).mean(-1), mask).item() == pytest.approx(5.0)


def test_actions_at_real_steps_do_not_depend_on_padding_or_later_steps():
    config = dt.TrainConfig(embedding_dim=16, num_layers=2, num_heads=2, seq_len=6, wandb_mode="disabled")
    model = dt.DecisionTransformer(4, 2, config).eval()
    torch.manual_seed(0)
    states, actions, rtg = torch.randn(2, 6, 4), torch.randn(2, 6, 2), torch.randn(2, 6)
    timesteps = torch.arange(6).expand(2, 6)
    changed_states, changed_actions = states.clone(), actions.clone()
    changed_states[:, 4:] = 99.0
    changed_actions[:, 3:] = -99.0  # the action at step 3 is predicted before it is seen
    first = model(states, actions, rtg, timesteps)
    second = model(changed_states, changed_actions, rtg, timesteps)
    torch.testing.assert_close(first[:, :4], second[:, :4])
    assert not torch.allclose(first[:, 4:], second[:, 4:])


def test_evaluation_runs_every_target_through_the_family_runner(monkeypatch):
    config = dt.TrainConfig(
        embedding_dim=16, num_layers=1, num_heads=2, seq_len=3, episode_len=15, target_returns=(3600.0, 100.0)
    )
    data = dt.SequenceData(synthetic_dataset([20, 20], obs_dim=11, act_dim=3), 3, 0.001, torch.device("cpu"))
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("Hopper-v5", max_episode_steps=15)] * 2)
    real_runner, calls = dt.run_episodes, []

    def runner(act, envs, target_return, seed, normaliser, device, horizon, context, reward_scale):
        calls.append((target_return, seed, horizon, context, reward_scale))
        return real_runner(act, envs, target_return, seed, normaliser, device, horizon, context, reward_scale)

    monkeypatch.setattr(dt, "run_episodes", runner)
    metrics = dt.evaluate(dt.DecisionTransformer(11, 3, config), envs, config, data, HOPPER)
    assert calls == [(3600.0, 42, 15, 3, 0.001), (100.0, 42, 15, 3, 0.001)]
    names = ("return_mean", "return_std", "length_mean", "normalized_score_mean", "normalized_score_std")
    assert set(metrics) == {f"eval/{target}_{name}" for target in (3600, 100) for name in names}
    assert 1 <= metrics["eval/3600_length_mean"] <= 15


def test_end_to_end_run_writes_run_directory_and_loss_falls(hopper_linear, tmp_path):
    run_dir = tmp_path / "run"
    config = tiny_config(
        hopper_linear,
        run_dir,
        update_steps=400,
        log_every=50,
        eval_every=200,
        checkpoint_every=200,
        wandb_mode="offline",
    )
    summary = dt.train(config)
    assert sorted(path.name for path in run_dir.iterdir()) == [
        "checkpoints",
        "config.yaml",
        "metrics.jsonl",
        "summary.json",
        "wandb",
        "wandb_id.txt",
    ]
    assert [path.name for path in (run_dir / "checkpoints").iterdir()] == ["step_000000200.pt", "step_000000400.pt"]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [row["train/loss"] for row in rows if "train/loss" in row]
    assert len(losses) == 8
    assert losses[-1] < 0.5 * losses[0]
    assert [row["step"] for row in rows if "eval/3600_return_mean" in row] == [200, 400]
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["update_steps"] == 400 and "eval/3600_normalized_score_mean" in saved
    assert summary["eval/3600_return_mean"] == saved["eval/3600_return_mean"]
    assert dt.parse_config(dt.TrainConfig, ["--config_path", str(run_dir / "config.yaml")]) == config


def test_interrupted_run_resumes_and_completes(hopper_linear, tmp_path):
    run_dir = tmp_path / "run"
    schedule = "--update_steps 100000 --log_every 10 --eval_every 100000 --checkpoint_every 100000".split()
    args = ["algorithms/offline/dt.py", *TINY, "--dataset", str(hopper_linear), "--run_dir", str(run_dir), *schedule]
    process = subprocess.Popen(
        [sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert "checkpoint written" in stderr
    (checkpoint,) = (run_dir / "checkpoints").iterdir()
    interrupted_at = int(checkpoint.stem.split("_")[1])
    assert interrupted_at >= 30

    resume = ["--resume", str(run_dir), "--update_steps", str(interrupted_at + 40)]
    result = run_cli("algorithms/offline/dt.py", *resume, "--eval_every", "10", "--checkpoint_every", "10")
    assert result.returncode == 0, result.stderr
    assert f"resuming {run_dir} from step {interrupted_at}" in result.stdout
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines() if "train/loss" in line]
    assert steps == sorted(set(steps)) and steps[-1] == interrupted_at + 40
    assert min(step for step in steps if step > interrupted_at) <= interrupted_at + 10  # continued, not restarted
    assert json.loads((run_dir / "summary.json").read_text())["update_steps"] == interrupted_at + 40


def test_resume_restores_model_optimiser_and_rng_exactly(hopper_linear, tmp_path):
    schedule = lambda steps: dict(update_steps=steps, log_every=10, eval_every=steps, checkpoint_every=steps)  # noqa: E731
    straight = dt.train(tiny_config(hopper_linear, tmp_path / "a", **schedule(40)))
    dt.train(tiny_config(hopper_linear, tmp_path / "b", **schedule(20)))
    resume = ["--resume", str(tmp_path / "b"), "--update_steps", "40", "--eval_every", "40", "--checkpoint_every", "40"]
    resumed = dt.train(dt.parse_config(dt.TrainConfig, resume))
    assert resumed["eval/3600_return_mean"] == pytest.approx(straight["eval/3600_return_mean"])
    rows = lambda run: [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    losses = lambda run: [row["train/loss"] for row in rows(run) if "train/loss" in row]  # noqa: E731
    np.testing.assert_allclose(losses("a"), losses("b"), rtol=1e-5)


def test_unknown_config_key_is_rejected_with_valid_keys(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("dataset: hopper-medium-v2\nenv_name: hopper-medium-v2\n")
    result = run_cli("algorithms/offline/dt.py", "--config_path", str(config))
    assert result.returncode == 2
    assert "unknown config key 'env_name'" in result.stderr and "Valid keys: project, " in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("algorithms/offline/dt.py", "--no_such_flag", "1")
    assert result.returncode == 2 and "unknown config key 'no_such_flag'" in result.stderr


def test_bad_config_values_are_rejected():
    with pytest.raises(dt.UserError, match="wandb_mode must be"):
        dt.parse_config(dt.TrainConfig, ["--wandb_mode", "cloud"])
    with pytest.raises(dt.UserError, match="multiples of log_every"):
        dt.parse_config(dt.TrainConfig, ["--log_every", "30"])
    with pytest.raises(dt.UserError, match="warmup_steps must be > 0, not 0"):
        dt.parse_config(dt.TrainConfig, ["--warmup_steps", "0"])


def test_existing_run_directory_is_never_overwritten(hopper_linear, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("precious\n")
    result = run_cli("algorithms/offline/dt.py", *TINY, "--dataset", str(hopper_linear), "--run_dir", str(run_dir))
    assert result.returncode == 2 and "already has content" in result.stderr
    assert (run_dir / "metrics.jsonl").read_text() == "precious\n"


def test_missing_dataset_fails_before_creating_a_run_directory(tmp_path):
    absent, run_dir = str(tmp_path / "absent.hdf5"), str(tmp_path / "run")
    result = run_cli("algorithms/offline/dt.py", *TINY, "--dataset", absent, "--run_dir", run_dir)
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert not (tmp_path / "run").exists()


def test_episodes_longer_than_the_timestep_table_fail_before_creating_a_run_directory(hopper_linear, tmp_path):
    with pytest.raises(dt.UserError, match="raise --episode_len"):
        dt.train(tiny_config(hopper_linear, tmp_path / "run", episode_len=3))
    assert not (tmp_path / "run").exists()


def test_non_finite_loss_stops_with_a_clear_error(hopper_linear, tmp_path, monkeypatch):
    real_mean = dt.masked_mean
    monkeypatch.setattr(dt, "masked_mean", lambda *args: real_mean(*args) * float("nan"))
    config = tiny_config(
        hopper_linear, tmp_path / "run", update_steps=40, log_every=10, eval_every=20, checkpoint_every=20
    )
    with pytest.raises(dt.UserError, match="train/loss became non-finite in the updates before step 10"):
        dt.train(config)
    assert not any((tmp_path / "run" / "checkpoints").iterdir())


def test_default_run_directory_is_named_after_dataset_and_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for dataset, tag in [
        ("hopper-medium-v2", "hopper-medium-v2"),
        ("minari:mujoco/hopper/medium-v0", "minari_mujoco_hopper_medium-v0"),
        ("/data/hopper-random.hdf5", "hopper-random"),
    ]:
        config = dt.TrainConfig(dataset=dataset, train_seed=3, wandb_mode="disabled")
        run_dir = dt.Run(config, "dt").dir
        assert run_dir.parent == Path("runs") / "dt" / tag and run_dir.name.startswith("seed3-")
        assert (run_dir / "config.yaml").exists()


def test_rng_states_restore_from_a_checkpoint_mapped_to_another_device(tmp_path, monkeypatch):
    # On a GPU run, torch.load(map_location="cuda") moves the saved RNG byte tensors to the GPU;
    # set_rng_state only takes CPU tensors. Simulate that move with a tensor whose .cpu() we track.
    moved, real_load = [], torch.load

    class OnAnotherDevice(torch.Tensor):
        def cpu(self, *args, **kwargs):
            moved.append(True)
            return torch.Tensor(self.as_subclass(torch.Tensor))

    def load_moved(*args, **kwargs):
        checkpoint = real_load(*args, **kwargs)
        checkpoint["rng"]["torch"] = checkpoint["rng"]["torch"].as_subclass(OnAnotherDevice)
        return checkpoint

    run = dt.Run(dt.TrainConfig(run_dir=str(tmp_path / "run"), wandb_mode="disabled"), "dt")
    run.checkpoint(1, {})
    expected = torch.rand(3)
    monkeypatch.setattr(torch, "load", load_moved)
    dt.Run(dt.TrainConfig(resume=str(run.dir), wandb_mode="disabled"), "dt").restore(torch.device("cpu"))
    assert moved
    torch.testing.assert_close(torch.rand(3), expected)
