#!/usr/bin/env bash
# Runs every experiment in order (each resumes or skips what is already done).
set -euo pipefail
cd "$(dirname "$0")/.."
experiments/accuracy/run.sh
for name in degradation gradients orderings shortcuts cardinality modern_recipe; do
  python -m "experiments.$name.run"
done
