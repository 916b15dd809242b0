"""What `training.keras_loop` does between the steps of Keras' `model.fit`.

`StepWatch` is the loop's callback in each epoch's `fit`: it stops the run after a step whose
running mean loss is not finite or exceeds `max_loss` (before anything is saved), after a step
during which SIGINT / SIGTERM arrived, and it writes the checkpoints of `checkpoint_every_steps`
within the epoch. Keras' JAX trainer keeps the model's state outside its variables during an
epoch (`jax_state_sync` in Keras' `keras/src/backend/jax/trainer.py`), so the state is put back
into them before a checkpoint reads them. The running sums of the epoch's metrics travel
in the checkpoint (`metric_state`), so that an epoch resumed halfway reports the same loss and
accuracy as one trained in one go.
"""

import time
from typing import Callable, List, Optional

import keras
import numpy as np
from keras import ops

from training import report
from training.loop_common import set_torch_generators


def sync_state(model: keras.Model) -> None:
    """Puts the state of a running JAX `fit` back into the model's variables (a no-op on the
    other backends, whose train steps update the variables themselves)."""
    sync = getattr(model, "jax_state_sync", None)
    if sync is not None:
        sync()


def metric_state(model: keras.Model) -> List[list]:
    """The values of the compiled metrics' variables (their running totals and counts)."""
    return [np.asarray(ops.convert_to_numpy(v)).tolist() for v in model.metrics_variables]


def build_metrics(model: keras.Model) -> None:
    """Creates the compiled metrics' variables now (TensorFlow's `fit` creates them when it
    traces its first step, after `on_epoch_begin`), from one image of zeros, and resets them."""
    images = np.zeros((1, *model.input_shape[1:]), "float32")
    outputs = model(images, training=False)
    model.compute_metrics(images, np.zeros((1, model.output_shape[-1]), "float32"), outputs)
    model.reset_metrics()


def set_metric_state(model: keras.Model, values: List[list]) -> None:
    """Gives the compiled metrics the running totals of `metric_state`."""
    for variable, value in zip(model.metrics_variables, values):
        variable.assign(np.asarray(value, dtype=variable.dtype))


class RestoreTorchGenerators(keras.callbacks.Callback):
    """Restores torch's generators from a checkpoint's random states as the first batch
    begins (`training.loop_common.set_torch_generators`): `fit` draws from them as it starts,
    which a run resumed within an epoch must not count."""

    def __init__(self, states):
        super().__init__()
        self.states = states

    def on_train_batch_begin(self, batch, logs=None):
        if self.states is not None:
            set_torch_generators(self.states)
            self.states = None


class StepWatch(keras.callbacks.Callback):
    """The Keras loop's callback within one epoch's `fit`.

    Args:
        max_loss: float. A running mean loss above it (or not finite) stops the run.
        first_batch: int. Batches of the epoch done before this `fit` (a resumed epoch).
        first_step: int. Updates of the run done before this `fit`.
        epoch_steps: int. The epoch's batches.
        every: int. Checkpoint after each step that is a multiple of it within the epoch
            (0: only at epoch ends).
        save: called as `save(batches_done, step, seconds)` to checkpoint within the epoch,
            `seconds` being the training time of this `fit` so far (saving excluded).
        interrupted: says whether SIGINT / SIGTERM stops the run; called after every step
            (with several processes, by all of them at once: it agrees on the step).
        metrics: `metric_state` of the batches before `first_batch`, or `None`.

    After `fit`: `done` (batches of the epoch done), `problem` and `update` (what diverged and
    in which update, or `None`), `paused` (seconds spent saving).
    """

    def __init__(self, max_loss: float, first_batch: int, first_step: int, epoch_steps: int,
                 every: int, save: Callable[[int, int, float], None],
                 interrupted: Callable[[], bool], metrics: Optional[List[list]] = None):
        super().__init__()
        self.max_loss, self.first_batch, self.first_step = max_loss, first_batch, first_step
        self.epoch_steps, self.every, self.save = epoch_steps, every, save
        self.interrupted, self.metrics = interrupted, metrics
        self.done, self.problem, self.update, self.paused = first_batch, None, None, 0.0
        self._started = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.time()
        if self.metrics is not None:  # after fit's reset of the metrics
            set_metric_state(self.model, self.metrics)

    def on_train_batch_end(self, batch, logs=None):
        step = self.first_step + batch + 1
        problem = report.loss_problem(float(logs["loss"]), self.max_loss)
        if problem:  # the weights of this step are not kept
            self.problem, self.update = problem, step
            self.model.stop_training = True
            return
        self.done = self.first_batch + batch + 1
        if self.interrupted():
            self.model.stop_training = True  # fit may have reset it since the signal
            return
        if self.every and step % self.every == 0 and self.done < self.epoch_steps:
            pause = time.time()
            sync_state(self.model)
            self.save(self.done, step, pause - self._started - self.paused)
            self.paused += time.time() - pause
