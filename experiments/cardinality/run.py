"""Experiment 6: cardinality against width at fixed complexity (Xie et al. 2016, Table 2).

Paper (ResNeXt-50, ImageNet top-1 error at about 4.1 GFLOPs): 1x64d 23.9, 2x40d 23.0, 4x24d
22.6, 8x14d 22.3, 32x4d 22.2: more groups at the same cost lower the error. Here: ResNeXt-29
scaled down to stage widths 16-32-64 (a quarter of the paper's CIFAR ResNeXt-29), which keeps
1x64d, 2x40d, 4x24d and 32x4d within 3.5% of each other's multiply-adds (8x14d would need a
fractional group width at this scale), the short schedule, the same seed.

    python -m experiments.cardinality.run
"""

import os

from experiments import common

NAME = "cardinality"
TEMPLATES = {(1, 64): 23.9, (2, 40): 23.0, (4, 24): 22.6, (32, 4): 22.2}


def arguments(cardinality, width):
    return {"depth": 29, "stem": "cifar", "block": "bottleneck", "stage_widths": (16, 32, 64),
            "cardinality": cardinality, "bottleneck_width": width}


def main():
    import keras_resnets

    rows = []
    for (cardinality, width), paper in TEMPLATES.items():
        run = f"{cardinality}x{width}d"
        results = common.train(NAME, run, model_overrides=arguments(cardinality, width))
        cost = keras_resnets.profile(keras_resnets.ResNet(**arguments(cardinality, width)))
        rows.append({"template": run, "paper_resnext50_top1_error": paper,
                     "mmacs": cost.macs / 1e6, **common.summary(NAME, run, results)})
    common.write_table(NAME, "results", rows)
    common.plot_curves(NAME, {row["template"]: row["template"] for row in rows},
                       os.path.join(common.results_dir(NAME), "curves.png"),
                       "ResNeXt-29 (widths 16-64) at matched multiply-adds")
    print(common.markdown(rows, ["template", "paper_resnext50_top1_error", "params", "mmacs",
                                 "train_error", "val_error", "test_error"]))


if __name__ == "__main__":
    main()
