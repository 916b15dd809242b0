"""Experiment 5: shortcut options A, B and C (He et al. 2015, Section 3.3 and Table 3).

Paper (ResNet-34, ImageNet top-1 error): A 25.03, B 24.52, C 24.19: B is slightly better than A
(A's zero-padded channels learn no residual) and C marginally better than B (more parameters),
"small differences", so projections are "not essential". Here: ResNet-20 on CIFAR-10 with each
option, the short schedule, the same seed; A is the ResNet-20 run of the degradation
experiment. The orderings experiment's extra seeds give the run-to-run spread.

    python -m experiments.shortcuts.run
"""

import os

from experiments import common

NAME = "shortcuts"
PAPER = {"A": 25.03, "B": 24.52, "C": 24.19}


def _train(option):
    if option == "A":
        return "degradation", "resnet20", common.train("degradation", "resnet20",
                                                        model="resnet20")
    overrides = {"depth": 20, "stem": "cifar", "shortcut": option}
    return NAME, f"option_{option}", common.train(NAME, f"option_{option}",
                                                  model_overrides=overrides)


def main():
    rows, curves = [], {}
    for option in PAPER:
        experiment, run, results = _train(option)
        curves[(experiment, run)] = f"option {option}"
        rows.append({"option": option, "paper_resnet34_top1_error": PAPER[option],
                     **common.summary(experiment, run, results)})
    common.write_table(NAME, "results", rows)
    common.plot_curves({"ResNet-20 with shortcut options A, B and C": curves},
                       os.path.join(common.results_dir(NAME), "curves.png"))
    print(common.markdown(rows, ["option", "paper_resnet34_top1_error", "params",
                                 "train_error", "val_error", "test_error"]))


if __name__ == "__main__":
    main()
