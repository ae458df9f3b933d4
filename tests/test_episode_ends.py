"""benchmarks/episode_ends.py: which health check ends an episode, and its table of the committed policies."""

import episode_ends
import numpy as np
import pytest

from d4rl_compat.generate import env_spec_for

from conftest import run_cli


def placed(domain: str, **qpos_at):
    """The domain's env (D4RL layout) reset, then with the given qpos entries overwritten."""
    env = env_spec_for(domain, 1000).make()
    env.reset(seed=0)
    base = env.unwrapped
    qpos, qvel = base.data.qpos.copy(), base.data.qvel.copy()
    for index, value in qpos_at.items():
        qpos[int(index.removeprefix("q"))] = value
    base.set_state(qpos, qvel)
    return env


@pytest.mark.parametrize(
    "domain, qpos_at, failed",
    [
        ("ant", {}, []),
        ("ant", {"q2": 1.2}, ["torso too high"]),  # ant's torso height is qpos[2]: a bounce above 1 m ends it
        ("ant", {"q2": 0.1}, ["torso too low"]),
        ("hopper", {}, []),
        ("hopper", {"q1": 0.5}, ["torso too low"]),  # planar robots: qpos = (x, z, angle, ...)
        ("hopper", {"q2": 0.5}, ["torso angle"]),
        ("hopper", {"q3": 150.0}, ["state out of range"]),
        ("walker2d", {"q1": 2.5, "q2": -1.5}, ["torso too high", "torso angle"]),
        ("halfcheetah", {}, []),
    ],
)
def test_failed_checks_name_what_ended_the_episode(domain, qpos_at, failed):
    env = placed(domain, **qpos_at)
    assert episode_ends.failed_checks(env) == failed
    assert getattr(env.unwrapped, "is_healthy", True) == (not failed)


def test_failed_checks_find_a_non_finite_state():
    env = placed("ant", q3=np.nan)
    assert episode_ends.failed_checks(env) == ["non-finite state"]


def test_counts_add_up_to_the_episodes():
    result = episode_ends.episode_ends("hopper-medium", episodes=2, seed=3)
    assert sum(result["ends"].values()) >= 2 and result["episodes"] == 2
    row = episode_ends.table_row(result).split("|")[1:-1]
    assert row[0].strip() == "hopper-medium" and len(row) == 3 + len(episode_ends.CHECKS) + 4


def test_cli_writes_the_table_and_refuses_unknown_policies(tmp_path):
    output = tmp_path / "ends.md"
    args = ["benchmarks/episode_ends.py", "--episodes", "1", "--output", str(output)]
    result = run_cli(*args, "--policies", "halfcheetah-medium")
    assert result.returncode == 0, result.stderr
    (row,) = [line for line in output.read_text().splitlines() if line.startswith("| halfcheetah-medium")]
    assert [cell.strip() for cell in row.split("|")[2:4]] == ["1", "1"]  # halfcheetah only ends at the limit
    output.unlink()
    result = run_cli(*args, "--policies", "hopper-master")
    assert result.returncode == 2 and "hopper-master" in result.stderr and not output.exists()
