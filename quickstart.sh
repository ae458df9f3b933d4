#!/usr/bin/env bash
# Generates a small hopper-medium dataset with modern MuJoCo from the committed medium SAC policy, then
# pretrains ODT+TD3 on it and fine-tunes it online on the CPU, printing the score after pretraining and
# after fine-tuning and writing the learning curve as a PNG. No network, no accounts (wandb runs
# offline). Extra flags go to the training script.
set -euo pipefail
cd "$(dirname "$0")"
dataset=data/hopper-medium-quickstart.hdf5
if [ ! -f "$dataset" ]; then
  python -m d4rl_compat.generate --env hopper --policy medium --num_transitions 50000 --seed 0 --output "$dataset"
fi
run_dir="runs/quickstart/$(date +%Y%m%d-%H%M%S)"
python algorithms/finetune/odt_td3.py --config_path configs/finetune/odt_td3/hopper/quickstart.yaml --run_dir "$run_dir" "$@"
python benchmarks/plot_run.py "$run_dir" --output "$run_dir/curve.png" --title "ODT+TD3 quickstart: pretraining, then fine-tuning"
