"""The reward-hill reproduction (ODT+TD3 paper, Fig. 2): ODT stays on a foot, ODT+DDPG climbs to the peak."""

import json

import numpy as np
import torch

from conftest import load_script, run_cli

hill = load_script("benchmarks/reward_hill.py")
SEEDS = range(5)  # the script's default seeds, 0..4


def test_reward_is_a_hill_with_its_peak_at_zero():
    actions = torch.tensor([-1.0, -0.5, 0.0, 0.25, 1.0])
    assert hill.hill_reward(actions).tolist() == [0.0, 0.25, 1.0, 0.5, -1.0]


def test_odt_stays_on_a_foot_and_odt_ddpg_reaches_the_peak():
    odt = [hill.run("ODT", seed) for seed in SEEDS]
    odt_ddpg = [hill.run("ODT+DDPG", seed) for seed in SEEDS]
    assert max(run["final_reward"] for run in odt) <= 0.3
    assert all(run["final_action"] < -0.9 or run["final_action"] > 0.45 for run in odt)  # on a foot
    # the typical run (median over seeds) ends near the peak, as in the paper's Fig. 2
    assert np.median([run["final_reward"] for run in odt_ddpg]) >= 0.9
    assert all(len(run["curve"]) == len(odt[0]["curve"]) for run in odt + odt_ddpg)
    assert odt[0]["pretrained_steps"] == 20


def test_script_writes_the_figure_and_the_numbers(tmp_path):
    result = run_cli("benchmarks/reward_hill.py", "--seeds", "0", "--output_dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "reward_hill.png").stat().st_size > 10_000
    numbers = json.loads((tmp_path / "reward_hill.json").read_text())
    assert sorted(numbers) == sorted(hill.METHODS) and numbers["ODT"][0]["seed"] == 0
    assert "| ODT+DDPG |" in (tmp_path / "reward_hill.md").read_text()
