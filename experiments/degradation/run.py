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


def main():
    results = {run: common.train(NAME, run, model=run) for run in RUNS}
    rows = [common.summary(NAME, run, results[run]) for run in RUNS]
    common.write_table(NAME, "results", rows)
    folder = common.results_dir(NAME)
    common.plot_curves(NAME, {r: RUNS[r] for r in ("plain20", "plain56")},
                       os.path.join(folder, "plain.png"), "Plain networks on CIFAR-10")
    common.plot_curves(NAME, {r: RUNS[r] for r in ("resnet20", "resnet56")},
                       os.path.join(folder, "resnet.png"), "Residual networks on CIFAR-10")
    print(common.markdown(rows, ["run", "params", "train_error", "val_error", "test_error",
                                 "hours"]))


if __name__ == "__main__":
    main()
