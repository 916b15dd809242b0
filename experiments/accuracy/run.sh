#!/usr/bin/env bash
# Experiment 1: ResNet-20 from scratch on ../shared/data/cifar10, 60 epochs, 45k/5k split.
# Rerunning resumes an interrupted run from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${CIFAR10:-../shared/data/cifar10}
python -m training.fit --recipe=cifar10_resnet20 --dataset="$DATA" --validation_images=5000 \
  --epochs=60 --schedule=cosine --weight_decay=5e-4 --seed=0 \
  --model_dir=experiments/accuracy/runs/resnet20 --verbose=2
