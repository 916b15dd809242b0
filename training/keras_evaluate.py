"""Evaluation of a model directory that `training.keras_loop` trained (on JAX or PyTorch).

Its checkpoints are Keras `.weights.h5` files named by `keras_state.json`
(`training.keras_checkpoints`), which load on every Keras backend, so such a run evaluates on
JAX, PyTorch and TensorFlow alike; `training.evaluate` sends it here. `"best"` is the copy of
the best epoch's weights (by validation accuracy, else test accuracy, as
`training.report.monitor_of` picks it) that the state names, or the latest weights before the
first evaluation.
"""

import os
import re
from typing import Tuple

from training import keras_checkpoints

_WEIGHTS = re.compile(r"keras_(?:best_)?step(\d+)\.weights\.h5$")


def is_keras_run(model_dir: str) -> bool:
    """Whether `model_dir` holds checkpoints of the Keras loop (a `keras_state.json`)."""
    return os.path.isfile(os.path.join(model_dir, keras_checkpoints.STATE))


def find_checkpoint(model_dir: str, checkpoint: str = "best") -> Tuple[str, int]:
    """`(path, step)` of the `"best"` or `"latest"` weights of a Keras-loop model directory,
    or of an explicit `keras_step<N>.weights.h5` or `keras_best_step<N>.weights.h5` path of
    the run."""
    state = keras_checkpoints.read_state(model_dir)
    if state is None:
        raise ValueError(f"model_dir={model_dir!r} holds no checkpoint of the Keras loop "
                         f"({keras_checkpoints.STATE}).")
    latest = os.path.join(model_dir, state["weights"])
    if checkpoint == "best" and state.get("best"):
        return os.path.join(model_dir, state["best"]), int(_WEIGHTS.search(state["best"])[1])
    if checkpoint in ("best", "latest"):  # "best" before the first evaluation: the latest
        return latest, state["step"]
    match = _WEIGHTS.search(os.path.basename(checkpoint))
    if not (match and os.path.isfile(checkpoint)
            and os.path.samefile(os.path.dirname(os.path.abspath(checkpoint)), model_dir)):
        raise ValueError(f"checkpoint must be 'best', 'latest' or a keras_step<N>.weights.h5 "
                         f"or keras_best_step<N>.weights.h5 file of the run in {model_dir}; "
                         f"{checkpoint!r} is none of them.")
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
