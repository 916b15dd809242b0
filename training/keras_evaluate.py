"""Evaluation of a model directory that `training.keras_loop` trained (on JAX or PyTorch).

Its checkpoints are Keras `.weights.h5` files named by `keras_state.json`
(`training.keras_checkpoints`), which load on every Keras backend, so such a run evaluates on
JAX, PyTorch and TensorFlow alike; `training.evaluate` sends it here. The loop keeps the latest
epoch's weights only, so `"best"` is those weights when the best epoch (by validation accuracy,
else test accuracy, as `training.report.monitor_of` picks it) is the latest one, and an error
naming both epochs otherwise.
"""

import os
import re
from typing import Tuple

from training import keras_checkpoints

_WEIGHTS = re.compile(r"keras_step(\d+)\.weights\.h5$")


def is_keras_run(model_dir: str) -> bool:
    """Whether `model_dir` holds checkpoints of the Keras loop (a `keras_state.json`)."""
    return os.path.isfile(os.path.join(model_dir, keras_checkpoints.STATE))


def find_checkpoint(model_dir: str, checkpoint: str = "best") -> Tuple[str, int]:
    """`(path, step)` of the `"best"` or `"latest"` weights of a Keras-loop model directory,
    or of an explicit `keras_step<N>.weights.h5` path of the run."""
    state = keras_checkpoints.read_state(model_dir)
    if state is None:
        raise ValueError(f"model_dir={model_dir!r} holds no checkpoint of the Keras loop "
                         f"({keras_checkpoints.STATE}).")
    rows = state["history"]
    latest = os.path.join(model_dir, state["weights"])
    if checkpoint == "latest":
        return latest, state["step"]
    if checkpoint == "best":
        monitor = "val_accuracy" if any("val_accuracy" in row for row in rows) else (
            "test_accuracy")
        evaluated = [row for row in rows if monitor in row]
        best = max(evaluated, key=lambda row: row[monitor])["epoch"] if evaluated else None
        at_epoch_end = not state.get("batch")  # a checkpoint within an epoch is no epoch's
        if best is None or (best == state["epoch"] and at_epoch_end):
            return latest, state["step"]  # before the first evaluation: the latest
        where = f"epoch {state['epoch']}" if at_epoch_end else (
            f"step {state['step']}, within epoch {state['epoch'] + 1}")
        raise ValueError(f"checkpoint='best': the Keras loop keeps the latest weights only "
                         f"({where}), and the best epoch by {monitor} was epoch {best}; use "
                         "checkpoint='latest'.")
    match = _WEIGHTS.search(os.path.basename(checkpoint))
    if not (match and os.path.isfile(checkpoint)
            and os.path.samefile(os.path.dirname(os.path.abspath(checkpoint)), model_dir)):
        raise ValueError(f"checkpoint must be 'best', 'latest' or a keras_step<N>.weights.h5 "
                         f"file of the run in {model_dir}; {checkpoint!r} is none of them.")
    return checkpoint, int(match.group(1))


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
