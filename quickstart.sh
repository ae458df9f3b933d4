#!/usr/bin/env bash
# Generates a small hopper-random dataset with modern MuJoCo, then pretrains ODT+TD3 on it and
# fine-tunes it online on the CPU, printing the score before and after fine-tuning.
# No network, no accounts (wandb runs offline). Extra flags go to the training script.
set -euo pipefail
cd "$(dirname "$0")"
dataset=data/hopper-random-quickstart.hdf5
if [ ! -f "$dataset" ]; then
  python -m d4rl_compat.generate --env hopper --policy random --num_transitions 100000 --seed 0 --output "$dataset"
fi
python algorithms/finetune/odt_td3.py --config_path configs/finetune/odt_td3/hopper/quickstart.yaml "$@"
