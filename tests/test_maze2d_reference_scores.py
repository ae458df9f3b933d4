"""benchmarks/maze2d_reference_scores.py: a row per Maze2D dataset, D4RL's constants beside the measured ones."""

from conftest import run_cli


def test_every_maze_and_reward_gets_a_row_with_d4rls_constants(tmp_path):
    from d4rl_compat.envs import d4rl_env_spec
    from d4rl_compat.maze2d import D4RL_MAZE2D_MAPS, dataset_name

    output = tmp_path / "reference.md"
    result = run_cli("benchmarks/maze2d_reference_scores.py", "--episodes", "1", "--output", str(output))
    assert result.returncode == 0, result.stderr
    rows = {line.split("|")[1].strip(): line for line in output.read_text().splitlines() if line.startswith("| maze2d")}
    names = [dataset_name(maze, dense) for maze in D4RL_MAZE2D_MAPS for dense in (False, True)]
    assert sorted(rows) == sorted(names)
    for name in names:
        cells = [cell.strip() for cell in rows[name].split("|")[2:-1]]
        spec = d4rl_env_spec(name)
        assert cells[0] == str(spec["max_episode_steps"])
        assert (cells[2], cells[4]) == (f"{spec['ref_min_score']:.2f}", f"{spec['ref_max_score']:.2f}")
        assert all(float(cell) >= 0 for cell in cells[1:])  # rewards are 0/1 or exp(-distance)
