"""Experiment 3: degradation (He et al. 2015, Figure 6) on real CIFAR-10.

Claim: the deeper plain network (56 layers) has a higher training error than the shallower one
(20 layers), while the deeper residual network has a lower training error than the shallower.

    python -m experiments.degradation.run
"""

import os

from experiments import common

NAME = "degradation"
RUNS = {"plain20": "plain-20", "plain56": "plain-56", "resnet20": "ResNet-20",
        "resnet56": "ResNet-56"}
# The paper starts ResNet-110 at lr 0.01 until training can converge; the same for ResNet-56
# (one epoch here) tests whether lr 0.1 from the first step is what holds it back.
WARM_START = {"resnet56_warm_start": dict(model="resnet56", warm_start_steps=78)}


def main():
    results = {run: common.train(NAME, run, model=run) for run in RUNS}
    results.update({run: common.train(NAME, run, **settings)
                    for run, settings in WARM_START.items()})
    rows = [common.summary(NAME, run, results[run]) for run in results]
    common.write_table(NAME, "results", rows)
    common.plot_curves(
        {"Plain networks": {(NAME, r): RUNS[r] for r in ("plain20", "plain56")},
         "Residual networks": {(NAME, "resnet20"): "ResNet-20", (NAME, "resnet56"): "ResNet-56",
                               (NAME, "resnet56_warm_start"): "ResNet-56, 0.01 for epoch 1"}},
        os.path.join(common.results_dir(NAME), "curves.png"))
    print(common.markdown(rows, ["run", "params", "train_error", "val_error", "test_error",
                                 "hours"]))


if __name__ == "__main__":
    main()
