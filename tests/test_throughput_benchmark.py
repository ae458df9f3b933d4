"""Smoke test of benchmarks/throughput.py: every registered benchmark runs on the scripts' current
functions and measures something, with tiny models and a tiny time budget, on CPU."""

import pytest
import torch

from conftest import load_script

throughput = load_script("benchmarks/throughput.py")

DT_SIZES = {"embedding_dim": 16, "num_layers": 1, "num_heads": 1, "seq_len": 5, "batch_size": 8}
VALUE_SIZES = {"actor_hidden_dims": (16, 16), "critic_hidden_dims": (16, 16), "batch_size": 16}


@pytest.mark.parametrize("name", list(throughput.BENCHMARKS))
def test_benchmark_measures(name, hopper_random):
    sizes = DT_SIZES if name in ("dt", "odt", "odt_td3") else VALUE_SIZES
    compiled = name == "iql"  # compiling every update would add minutes (tests/test_fast_path.py covers them all)
    rows = throughput.BENCHMARKS[name](hopper_random, torch.device("cpu"), 0.05, 1, sizes=sizes, compiled=compiled)
    assert len(rows) == 2 and "/s (" in rows[0]["measure"] and rows[1]["measure"].startswith("eval env-steps/s")
    for row in rows:
        assert row["ours"] > 0 and row["baseline"] > 0, row
    assert (rows[0]["compiled"] is not None and rows[0]["compiled"] > 0) == compiled and rows[1]["compiled"] is None
    text = throughput.table(rows, torch.device("cpu"), ["--scripts", name])
    assert text.count(f"| {rows[0]['script']} |") == 2


def test_an_odt_td3_iteration_is_timed(hopper_random):
    sizes = {**DT_SIZES, "updates_per_iteration": 20, "online_transitions": 100}
    timing = throughput.odt_td3_iteration(hopper_random, torch.device("cpu"), False, sizes)
    assert timing["seconds"] > 0 and timing["hours_for_500k"] == pytest.approx(timing["seconds"] * 5000 / 3600)
    assert timing["size"] == "emb 16, 1 layers, K 5, batch 8"
