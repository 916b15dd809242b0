"""Experiment 2: gradients reaching each residual unit (He et al. 2016, Eq. 5).

dL/dx_l = dL/dx_L (1 + d/dx_l sum F): with identity shortcuts the gradient of the last unit
reaches every earlier unit directly. Measured with `training.analysis.gradient_norms` for
plain-56, ResNet-56 (v1) and pre-activation ResNet-56, at initialisation and after the short
schedule (the plain-56 and ResNet-56 runs of the degradation experiment are reused).

    python -m experiments.gradients.run
"""

import os

import numpy as np

from experiments import common

NAME = "gradients"
MODELS = {
    "plain56": ("degradation", dict(model="plain56")),
    "resnet56": ("degradation", dict(model="resnet56")),
    "preact_resnet56": (NAME, dict(model_overrides={
        "depth": 56, "stem": "cifar", "unit": "full_preactivation", "shortcut": "A"})),
}
LABELS = {"plain56": "plain-56", "resnet56": "ResNet-56",
          "preact_resnet56": "pre-activation ResNet-56"}


def _batch():
    """128 validation images, preprocessed as in training (no augmentation)."""
    from training.data import DataConfig, Pipeline

    pipeline = Pipeline(DataConfig(dataset=common.CIFAR10, validation_images=5000,
                                   max_train_examples=common.SHORT_SCHEDULE["max_train_examples"]))
    images, labels = next(iter(pipeline.evaluation("validation", 128)))
    return images.numpy(), labels.numpy()


def _model(experiment, run, settings, trained):
    import keras

    from training import config, evaluate

    if trained:
        trainer, _ = evaluate.load(common.run_dir(experiment, run), "latest", 1)
        return trainer.model
    keras.utils.set_random_seed(0)
    model_config = config.ModelConfig(settings.get("model", "custom"),
                                      settings.get("model_overrides", {}))
    return model_config.build(10, (32, 32, 3))


def main():
    from training.analysis import gradient_norms

    for run, (experiment, settings) in MODELS.items():
        common.train(experiment, run, **settings)
    images, labels = _batch()
    rows, curves = [], {}
    for run, (experiment, settings) in MODELS.items():
        for trained in (False, True):
            norms = gradient_norms(_model(experiment, run, settings, trained), images, labels)
            values = np.array([value for _, value in norms])
            curves[(run, trained)] = values
            rows.append({"model": LABELS[run], "state": "trained" if trained else "init",
                         "first_unit": float(values[0]), "last_unit": float(values[-1]),
                         "first_over_last": float(values[0] / values[-1]),
                         "max_over_min": float(values.max() / values.min())})
    common.write_table(NAME, "results", rows)
    _plot(curves, os.path.join(common.results_dir(NAME), "gradients.png"))
    print(common.markdown(rows, list(rows[0])))


def _plot(curves, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, 2, figsize=(11, 4), sharey=True)
    for axis, trained in zip(axes, (False, True)):
        for run in MODELS:
            values = curves[(run, trained)]
            axis.semilogy(range(1, len(values) + 1), values, marker=".", label=LABELS[run])
        axis.set_xlabel("residual unit (input -> output)")
        axis.set_title("after training" if trained else "at initialisation")
        axis.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("RMS of dL/dx at the unit's output")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)


if __name__ == "__main__":
    main()
