"""benchmarks/datasets.py: a generated file's statistics, computed from its episodes, beside the published row."""

import json
import shutil

import h5py
import numpy as np
import pytest

from conftest import ROOT, run_cli


def test_the_table_has_the_files_statistics_and_the_published_row(hopper_random, tmp_path):
    folder = tmp_path / "generated"
    folder.mkdir()
    shutil.copy(hopper_random, folder / "hopper-random.hdf5")
    with h5py.File(hopper_random, "r") as file:
        rewards, ends = file["rewards"][()], file["terminals"][()] | file["timeouts"][()]
    ends[-1] = True
    returns = np.add.reduceat(rewards.astype(np.float64), np.concatenate([[0], np.flatnonzero(ends)[:-1] + 1]))
    notes = tmp_path / "notes.md"
    notes.write_text("## Why\n\nnewer physics")
    output, record = tmp_path / "datasets.md", tmp_path / "datasets.json"
    earlier = {"transitions": 7, "episodes": 1, "return_mean": 1.0, "return_std": 0.0, "return_min": 1.0}
    earlier.update(return_max=1.0, made_by="an earlier suite", folder="gone", measured="2026-01-01")
    record.write_text(json.dumps({"walker2d-medium-replay": earlier, "hopper-random": earlier}))
    arguments = ("--folder", str(folder), "--output", str(output), "--notes", str(notes), "--record", str(record))
    result = run_cli("benchmarks/datasets.py", *arguments)
    assert result.returncode == 0, result.stderr
    text = output.read_text()
    # the file measured now replaces its earlier entry; the entry whose file is gone keeps its row and command
    assert "| walker2d-medium-replay | generated (2026-01-01) | 7 | 1 |" in text and "an earlier suite" in text
    assert sorted(json.loads(record.read_text())) == ["hopper-random", "walker2d-medium-replay"]
    row = next(line for line in text.splitlines() if line.startswith("| hopper-random | generated ("))
    cells = [cell.strip() for cell in row.split("|")[3:-1]]
    assert cells[:2] == [f"{len(rewards):,}", f"{len(returns):,}"]
    assert cells[2:6] == [f"{value:.1f}" for value in (returns.mean(), returns.std(), returns.min(), returns.max())]
    published = json.loads((ROOT / "benchmarks/results/d4rl_published_stats.json").read_text())["hopper-random-v2"]
    assert f"| hopper-random-v2 | D4RL, published | - | {published['episodes']:,} |" in text
    assert text.rstrip().endswith("newer physics") and published["source"] in text


def test_no_files_and_no_record_is_a_clear_error(tmp_path):
    record, output = tmp_path / "datasets.json", tmp_path / "datasets.md"
    arguments = ("--folder", str(tmp_path / "none"), "--output", str(output), "--record", str(record))
    result = run_cli("benchmarks/datasets.py", *arguments)
    assert result.returncode == 2 and "generate the datasets first" in result.stderr
    assert not record.exists() and not output.exists()


def test_antmaze_files_count_episodes_by_time_and_score_the_share_that_reaches_the_goal(tmp_path):
    from datasets import file_stats, render

    from d4rl_compat.generate import write_hdf5

    at_goal = np.zeros(30, np.float32)
    at_goal[[4, 5, 6, 25]] = 1.0  # the first 10-step episode reaches the goal and stays 3 steps, the third once
    positions, goals = np.zeros((30, 29), np.float32), np.full((30, 2), 5.0, np.float32)
    positions[12, :2] = [5.2, 5.0]  # the second episode comes within 0.5 of its own goal
    arrays = {"rewards": at_goal, "terminals": at_goal.astype(bool), "timeouts": np.arange(30) % 10 == 9}
    arrays.update({"next_observations": positions, "infos/goal": goals})
    write_hdf5(tmp_path / "antmaze-umaze.hdf5", arrays, {"dataset_name": "antmaze-umaze-v2", "ref_min_score": 0.0})
    stats = file_stats(tmp_path / "antmaze-umaze.hdf5")
    assert stats["episodes"] == 3 and stats["return_max"] == 3.0 and stats["return_min"] == 0.0
    assert stats["normalized_score"] == pytest.approx(100 * 2 / 3)
    assert stats["own_goal_reached"] == pytest.approx(100 / 3)
    entry = {**stats, "made_by": "python -m d4rl_compat.antmaze", "folder": "data", "measured": "2026-12-07"}
    text = render({"antmaze-umaze-v2": entry}, {}, tmp_path / "record.json", None)
    assert "| antmaze-umaze-v2 | 33.3% | 66.7% |" in text
