"""The D4RL compatibility layer: every D4RL dataset name on Gymnasium, MuJoCo and gymnasium-robotics.

- `d4rl_compat.envs`: the full D4RL name table (file addresses, reference scores) and the AntMaze,
  Maze2D, Kitchen and Adroit envs in D4RL's observation frame.
- `d4rl_compat.generate`: writes D4RL-format hdf5 datasets with the modern physics, every D4RL level
  (`python -m d4rl_compat.generate --help`).
- `d4rl_compat.policies`: the committed SAC behaviour policies and their cards; exports new ones.
- `d4rl_compat.minari_export`: writes any of those files as a Minari dataset in the local store.
- `d4rl_compat.maze2d`: D4RL's Maze2D datasets rebuilt with its planner and PD controller
  (`python -m d4rl_compat.maze2d --help`).

The training scripts import this package lazily, only for datasets outside D4RL's v1/v2
locomotion names, so a script copied alone still trains on locomotion, generated and Minari data.
"""

from d4rl_compat.envs import D4RL_FILES, D4RL_REF_SCORES, d4rl_env_spec, dataset_url, timeouts_every, wrap

__all__ = ["D4RL_FILES", "D4RL_REF_SCORES", "dataset_url", "d4rl_env_spec", "timeouts_every", "wrap"]
