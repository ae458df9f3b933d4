#!/usr/bin/env bash
# Generates a small hopper-random dataset with modern MuJoCo, then trains Decision Transformer on
# it on the CPU and prints the result. No network, no accounts (wandb runs offline).
set -euo pipefail
cd "$(dirname "$0")"
dataset=data/hopper-random-quickstart.hdf5
if [ ! -f "$dataset" ]; then
  python tools/generate_dataset.py --env hopper --policy random --num_transitions 100000 --seed 0 --output "$dataset"
fi
python algorithms/offline/dt.py --config_path configs/offline/dt/hopper/quickstart.yaml "$@"
