"""benchmarks/datasets.py: a generated file's statistics, computed from its episodes, beside the published row."""

import json
import shutil

import h5py
import numpy as np

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
    output = tmp_path / "datasets.md"
    result = run_cli("benchmarks/datasets.py", "--folder", str(folder), "--output", str(output), "--notes", str(notes))
    assert result.returncode == 0, result.stderr
    text = output.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| hopper-random | generated |"))
    cells = [cell.strip() for cell in row.split("|")[3:-1]]
    assert cells[:2] == [f"{len(rewards):,}", f"{len(returns):,}"]
    assert cells[2:6] == [f"{value:.1f}" for value in (returns.mean(), returns.std(), returns.min(), returns.max())]
    published = json.loads((ROOT / "benchmarks/results/d4rl_published_stats.json").read_text())["hopper-random-v2"]
    assert f"| hopper-random-v2 | D4RL, published | - | {published['episodes']:,} |" in text
    assert text.rstrip().endswith("newer physics") and published["source"] in text
