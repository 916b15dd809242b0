"""An exponential moving average (EMA) of a model's weights, kept beside them during training.

After every update, `average = decay * average + (1 - decay) * weight` for each trainable weight
and for the moving mean and variance of every batch norm that trains (a frozen one keeps its
statistics, so its average would be itself). The averages start equal to the weights of step 0.
Evaluation and the exports use the averages (Polyak & Juditsky 1992; as timm's `ModelEmaV2` and
the TF Model Garden's `MovingAverage` do, batch-norm statistics included). Under float16 a step
that the loss scaler skips (its gradients were not finite) still moves the averages, towards the
unchanged weights, as timm's training script does; Keras' own `use_ema` skips it.

The averages are distributed like the weights they follow: under a tf.distribute strategy each
replica updates its own copy in the replica step, so the averages of the batch-norm statistics
(which Keras 3 keeps per replica) follow that replica's statistics, and averaging the replicas'
copies (`training.steps.StepFunctions.sync`) gives the average of the replica-averaged
statistics, as for the statistics themselves. Keras' own `use_ema` averages trainable weights
only and starts from the weights after the first update, hence this small class.
"""

import contextlib
from typing import Any, Callable, Dict, Optional

import keras
import tensorflow as tf

from training.keras_ema import averaged_variables  # shared with the Keras loop


class WeightAverage:
    """The moving averages of `averaged_variables(model)`; create it under the model's strategy.

    Args:
        model: `keras.Model`, built, after any freezing (`training.finetune.freeze`).
        decay: float. In `(0, 1)`: the weight of the old average at each update.
        strategy: `tf.distribute.Strategy` the model was built under.

    Its `trackable` is what a `tf.train.Checkpoint` holds: the averages (`averages/0`, ...).

    Example:

    >>> import keras_resnets
    >>> model = keras_resnets.ResNet(8, stem="cifar", stage_widths=(4, 8, 16), classes=10)
    >>> average = WeightAverage(model, 0.99, tf.distribute.get_strategy())
    >>> len(model.trainable_variables), len(average.averages)  # + 9 batch norms' statistics
    (29, 47)
    """

    def __init__(self, model: keras.Model, decay: float, strategy: tf.distribute.Strategy):
        self.decay = float(decay)
        self._strategy = strategy
        sources = averaged_variables(model)
        self._sources = sources
        with strategy.scope():
            self.averages = [keras.Variable(
                initializer=tf.identity(v.value), trainable=False, dtype=v.dtype,
                aggregation=v.aggregation, synchronization=v.synchronization,
                name=f"average_{index}") for index, v in enumerate(sources)]
        self.trackable = tf.Module(name="weight_average")
        self.trackable.averages = self.averages
        # The averages of per-replica statistics, to be averaged over the replicas with them.
        self.replica_local = self.averages[len(model.trainable_variables):]
        self._swap = self._replica_function(self._replica_swap)
        self._load = self._replica_function(self._replica_load)

    def update(self) -> None:
        """One step of the average; call it in the replica step, after the update."""
        decay = tf.constant(self.decay, tf.float32)
        for source, average in zip(self._sources, self.averages):
            average.assign(decay * average.value + (1.0 - decay) * source.value)

    def _replica_function(self, replica_fn):
        strategy = self._strategy

        @tf.function
        def run():
            strategy.run(replica_fn)

        return run

    def _replica_swap(self):
        values = [tf.identity(v.value) for v in self._sources]
        for source, average in zip(self._sources, self.averages):
            source.assign(average.value)
        for average, value in zip(self.averages, values):
            average.assign(value)

    def _replica_load(self):
        for source, average in zip(self._sources, self.averages):
            source.assign(average.value)

    def _replica_reset(self):
        for source, average in zip(self._sources, self.averages):
            average.assign(source.value)

    def reset(self) -> None:
        """Starts the averages at the model's current weights."""
        self._replica_function(self._replica_reset)()

    def swap(self) -> None:
        """Exchanges the model's weights and the averages (exactly: a second call undoes it)."""
        self._swap()

    def load_into_model(self) -> None:
        """Gives the model the averaged weights (the averages stay)."""
        self._load()


def for_decay(model: keras.Model, decay: Optional[float],
              strategy: tf.distribute.Strategy) -> Optional[WeightAverage]:
    """The `WeightAverage` of `model` for `OptimizationConfig.ema_decay`; `None` for `None`."""
    return WeightAverage(model, decay, strategy) if decay is not None else None


def checkpoint_entries(average: Optional[WeightAverage]) -> Dict[str, Any]:
    """A checkpoint's entry of the average, `{"ema": ...}`; `{}` without one (no `ema_decay`)."""
    return {"ema": average.trackable} if average is not None else {}


@contextlib.contextmanager
def averaged(average: Optional[WeightAverage], sync: Callable[[], None]):
    """Within it, the model has the averaged weights (without an average, its own).

    Args:
        average: `WeightAverage` or `None`.
        sync: makes the replicas' copies of the statistics and their averages equal first
            (`training.steps.StepFunctions.sync`), so that the swap exchanges equal copies.
    """
    if average is None:
        yield
        return
    sync()
    average.swap()
    try:
        yield
    finally:
        average.swap()


def restore_weights(model: keras.Model, average: Optional[WeightAverage], path: str) -> None:
    """Loads the model's weights (not the optimizer) from a checkpoint path; with an average,
    the averaged weights (those a run with `ema_decay` evaluated and exported)."""
    tf.train.Checkpoint(model=model, **checkpoint_entries(average)).restore(path).expect_partial()
    if average is not None:
        average.load_into_model()
