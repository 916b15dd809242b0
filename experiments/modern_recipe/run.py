"""Experiment 7: a post-2016 training recipe for ResNet-20 on real CIFAR-10, against experiment 1.

Experiment 1 (`experiments/accuracy`) trains ResNet-20 for 60 epochs (cosine, weight decay 5e-4,
pad-4 crop and flip) to 87.51% test accuracy with seed 0. This experiment keeps its network, data,
split, length and schedule, and adds three regularisers chosen before the run from published
ResNet-20-scale evidence (see README.md): random erasing (p 0.5), label smoothing 0.1 and an
exponential moving average of the weights (decay 0.999). Two seeds of each; experiment 1's seed 0
is its committed result, the other three runs train here (about 75 minutes each on 2 free cores;
rerunning resumes an interrupted run and skips finished ones).

    python -m experiments.modern_recipe.run
"""

import json
import os
import sys

from experiments import common

NAME = "modern_recipe"
# Experiment 1's flags (experiments/accuracy/run.sh) over the cifar10_resnet20 recipe.
EXPERIMENT_1 = dict(max_train_examples=None, epochs=60, schedule="cosine", decay_epochs=(),
                    weight_decay=5e-4)
MODERN = dict(EXPERIMENT_1, erasing_prob=0.5, label_smoothing=0.1, ema_decay=0.999)
RECIPES = {"experiment 1": EXPERIMENT_1, "modern": MODERN}
# Trained in this order, so that an interrupted session still leaves one run of each recipe.
RUNS = [("modern", 0), ("experiment 1", 1), ("modern", 1)]


def run_name(recipe: str, seed: int) -> str:
    return f"{recipe.replace('experiment 1', 'experiment1')}_seed{seed}"


def row(recipe: str, seed: int, run: str, results: dict, folder=None) -> dict:
    """A row of the table: `common.summary` and the test accuracy, in percent."""
    return {"recipe": recipe, "seed": seed, **common.summary(NAME, run, results, folder),
            "test_accuracy": 100 * results["final_test_accuracy"]}


def experiment_1_seed_0() -> dict:
    """Experiment 1's committed run (seed 0), as a row of this experiment's table."""
    folder = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "accuracy", "results")
    with open(os.path.join(folder, "results.json")) as file:
        return row("experiment 1", 0, "experiments/accuracy", json.load(file), folder)


def main(only=None):
    """Trains (or resumes, or skips) the runs and writes the table and curves; with `only`
    (a run name such as `"modern_seed0"`), trains just that run."""
    rows = [experiment_1_seed_0()]
    for recipe, seed in RUNS:
        run = run_name(recipe, seed)
        if only and run != only:
            continue
        results = common.train(NAME, run, model="resnet20", seed=seed, keep_checkpoints=2,
                               **RECIPES[recipe])
        rows.append(row(recipe, seed, run, results))
    if only:
        return
    rows.sort(key=lambda r: (r["recipe"] != "experiment 1", r["seed"]))
    common.write_table(NAME, "results", rows)
    common.plot_curves(
        {"ResNet-20, 60 epochs on CIFAR-10": {(NAME, r["run"]): r["run"] for r in rows
                                             if r["run"] != "experiments/accuracy"}},
        os.path.join(common.results_dir(NAME), "curves.png"))
    print(common.markdown(rows, ["recipe", "seed", "params", "train_error", "val_error",
                                 "test_error", "test_accuracy", "hours"]))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
