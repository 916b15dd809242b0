"""Experiment 4: the five residual-unit orderings (He et al. 2016, Figure 4 and Table 1).

Paper (ResNet-110, CIFAR-10 test error): (a) original 6.61, (b) BN after addition 8.17,
(c) ReLU before addition 7.84, (d) ReLU-only pre-activation 6.71, (e) full pre-activation 6.37.
Here: ResNet-20 (option A shortcuts) with each ordering, the short schedule, the same seed; (a)
is the ResNet-20 run of the degradation experiment. A second seed of (a) and (e) measure the
run-to-run spread that the differences must exceed.

    python -m experiments.orderings.run
"""

import os

from experiments import common

NAME = "orderings"
UNITS = {"original": "(a)", "bn_after_addition": "(b)", "relu_before_addition": "(c)",
         "relu_only_preactivation": "(d)", "full_preactivation": "(e)"}
PAPER = {"original": 6.61, "bn_after_addition": 8.17, "relu_before_addition": 7.84,
         "relu_only_preactivation": 6.71, "full_preactivation": 6.37}
SEEDS = (1,)


def _train(unit, seed=0):
    if unit == "original" and seed == 0:
        return "degradation", "resnet20", common.train("degradation", "resnet20",
                                                        model="resnet20")
    run = unit if seed == 0 else f"{unit}_seed{seed}"
    overrides = {"depth": 20, "stem": "cifar", "shortcut": "A", "unit": unit}
    return NAME, run, common.train(NAME, run, model_overrides=overrides, seed=seed)


def main():
    rows = []
    for unit, letter in UNITS.items():
        experiment, run, results = _train(unit)
        rows.append({"unit": f"{letter} {unit}", "paper_resnet110_error": PAPER[unit],
                     **common.summary(experiment, run, results)})
    for unit in ("original", "full_preactivation"):
        for seed in SEEDS:
            experiment, run, results = _train(unit, seed)
            rows.append({"unit": f"{UNITS[unit]} {unit}, seed {seed}",
                         "paper_resnet110_error": PAPER[unit],
                         **common.summary(experiment, run, results)})
    common.write_table(NAME, "results", rows)
    runs = {unit: f"{letter} {unit}" for unit, letter in UNITS.items() if unit != "original"}
    common.plot_curves(NAME, runs, os.path.join(common.results_dir(NAME), "curves.png"),
                       "ResNet-20 with the five unit orderings ((a): degradation/resnet20)")
    print(common.markdown(rows, ["unit", "paper_resnet110_error", "train_error", "val_error",
                                 "test_error"]))


if __name__ == "__main__":
    main()
