"""The model `training.keras_loop` trains with Keras' `fit`, and its loss and targets.

`TrainingModel` is the functional model with the papers' coupled weight decay added to its
training loss and the weight average of `ema_decay` (`training.keras_ema`) updated in its train
step, the one place that runs inside Keras' compiled step on every backend.
"""

import keras
from keras import ops


class CrossEntropy(keras.losses.Loss):
    """Cross-entropy of one-hot or soft targets with label smoothing, as
    `training.steps.cross_entropy` computes it (targets smoothed towards uniform).

    Args:
        label_smoothing: float. Defaults to `0.0`.
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "cross_entropy"):
        super().__init__(name=name)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        return keras.losses.categorical_crossentropy(
            ops.cast(y_true, "float32"), ops.cast(y_pred, "float32"),
            label_smoothing=self.label_smoothing)


class TrainingModel(keras.Model):
    """A functional model whose training loss adds the coupled weight decay of `decayed` and
    whose train step updates the weight average `average` after each update.

    Args:
        inputs: the built model's inputs.
        outputs: its outputs.
        name: str. The model's name.
        decayed: the variables of the coupled decay (`training.loop_common.decayed_variables`).
        weight_decay: float. The coupled decay's factor; `0.0` adds nothing. Defaults to `0.0`.

    Its attribute `average` is `None` or a `training.keras_ema.OptimizerAverage`, set once the
    optimizer is built.
    """

    def __init__(self, inputs, outputs, name, decayed=(), weight_decay=0.0):
        super().__init__(inputs=inputs, outputs=outputs, name=name)
        self._decayed_ids = {id(v) for v in decayed}
        self._weight_decay = weight_decay
        self.average = None

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred, sample_weight, training)
        if not self._weight_decay:
            return loss
        decayed = [v for v in self.trainable_variables if id(v) in self._decayed_ids]
        penalty = sum(ops.sum(ops.square(ops.cast(v, "float32"))) for v in decayed)
        return loss + 0.5 * self._weight_decay * penalty

    def train_step(self, *args):
        # JAX: train_step(state, data) -> (logs, state), pure; the others: train_step(data).
        if self.average is None:
            return super().train_step(*args)
        if keras.backend.backend() == "jax":
            logs, state = super().train_step(*args)
            return logs, self.average.stateless_update(state)
        logs = super().train_step(*args)
        self.average.update()
        return logs

