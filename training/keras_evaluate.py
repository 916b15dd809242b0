"""Evaluation of a model directory that `training.keras_loop` trained (on JAX or PyTorch).

Its checkpoints are Keras `.weights.h5` files named by `keras_state.json`
(`training.keras_checkpoints`), which load on every Keras backend, so such a run evaluates on
JAX, PyTorch and TensorFlow alike; `training.evaluate` sends it here. The loop keeps the latest
epoch's weights only, so `"best"` is those weights when the best epoch (by validation accuracy,
else test accuracy, as `training.report.monitor_of` picks it) is the latest one, and an error
naming both epochs otherwise.
"""

import json
import os
import re
from typing import Tuple

from training import keras_checkpoints

_WEIGHTS = re.compile(r"keras_epoch(\d+)\.weights\.h5$")


def is_keras_run(model_dir: str) -> bool:
    """Whether `model_dir` holds checkpoints of the Keras loop (a `keras_state.json`)."""
    return os.path.isfile(os.path.join(model_dir, keras_checkpoints.STATE))


def _state(model_dir):
    path = os.path.join(model_dir, keras_checkpoints.STATE)
    try:
        with open(path) as file:
            return json.load(file)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} cannot be read ({error}); the run's checkpoint is "
                         "unusable.") from None


def find_checkpoint(model_dir: str, checkpoint: str = "best") -> Tuple[str, int]:
    """`(path, step)` of the `"best"` or `"latest"` weights of a Keras-loop model directory,
    or of an explicit `keras_epoch<N>.weights.h5` path of the run."""
    state = _state(model_dir)
    rows = state["history"]
    latest = os.path.join(model_dir, state["weights"])
    if checkpoint == "latest":
        return latest, state["step"]
    if checkpoint == "best":
        monitor = "val_accuracy" if any("val_accuracy" in row for row in rows) else (
            "test_accuracy")
        evaluated = [row for row in rows if monitor in row]
        best = max(evaluated, key=lambda row: row[monitor])["epoch"] if evaluated else None
        if best in (None, state["epoch"]):  # before the first evaluation: the latest
            return latest, state["step"]
        raise ValueError(f"checkpoint='best': the Keras loop keeps the weights of the latest "
                         f"epoch only (epoch {state['epoch']}), and the best epoch by {monitor} "
                         f"was epoch {best}; use checkpoint='latest'.")
    match = _WEIGHTS.search(os.path.basename(checkpoint))
    steps = {row["epoch"]: row["step"] for row in rows}
    if not (match and os.path.isfile(checkpoint) and int(match.group(1)) in steps):
        raise ValueError(f"checkpoint must be 'best', 'latest' or a keras_epoch<N>.weights.h5 "
                         f"file of the run in {model_dir}; {checkpoint!r} is none of them.")
    return checkpoint, steps[int(match.group(1))]


def load(experiment, model_dir: str, checkpoint: str = "best", pipeline=None):
    """A `training.keras_loop.KerasTrainer` of `experiment` (the run's config, with nothing to
    write) holding a checkpoint's weights; returns `(trainer, path, step)`."""
    from training import keras_loop

    path, step = find_checkpoint(model_dir, checkpoint)
    trainer = keras_loop.KerasTrainer(experiment, pipeline=pipeline)
    trainer.optimizer.build(trainer.model.trainable_variables)  # the file holds its variables
    try:
        trainer.model.load_weights(path)
    except (OSError, ValueError) as error:
        raise ValueError(f"checkpoint={path!r} cannot be read: {error}") from None
    return trainer, path, step
