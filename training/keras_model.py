"""The model `training.keras_loop` trains with Keras' `fit`, and its loss and targets.

`TrainingModel` is the functional model with the papers' coupled weight decay added to its
training loss, and, in its train step (the one place that runs inside Keras' compiled step on
every backend), the classifier's learning-rate multiplier and the weight average of
`ema_decay` (`training.keras_ema`).
"""

import keras
from keras import ops

from training import finetune


class CrossEntropy(keras.losses.Loss):
    """Cross-entropy of one-hot or soft targets with label smoothing, as
    `training.steps.cross_entropy` computes it (targets smoothed towards uniform).

    Args:
        label_smoothing: float. Defaults to `0.0`.
        from_logits: bool. Whether the predictions are logits rather than probabilities.
            Defaults to `False`.
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "cross_entropy",
                 from_logits: bool = False):
        super().__init__(name=name)
        self.label_smoothing, self.from_logits = label_smoothing, from_logits

    def call(self, y_true, y_pred):
        return keras.losses.categorical_crossentropy(
            ops.cast(y_true, "float32"), ops.cast(y_pred, "float32"),
            from_logits=self.from_logits, label_smoothing=self.label_smoothing)


def binary_cross_entropy(targets, logits, label_smoothing=0.0, target_threshold=None):
    """Per-example mean over the classes of the sigmoid binary cross-entropy of `logits` and
    the `targets` smoothed towards uniform, binarised above `target_threshold` unless it is
    `None`, as `training.steps.binary_cross_entropy` computes it."""
    targets, logits = ops.cast(targets, "float32"), ops.cast(logits, "float32")
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / logits.shape[-1]
    if target_threshold is not None:
        targets = ops.cast(targets > target_threshold, "float32")
    return ops.mean(ops.binary_crossentropy(targets, logits, from_logits=True), axis=-1)


class BinaryCrossEntropy(keras.losses.Loss):
    """`binary_cross_entropy` of one-hot or soft targets and logits, as a Keras loss.

    Args:
        label_smoothing: float. Defaults to `0.0`.
        target_threshold: float or `None`. Defaults to `None`.
    """

    def __init__(self, label_smoothing: float = 0.0, target_threshold=None,
                 name: str = "binary_cross_entropy"):
        super().__init__(name=name)
        self.label_smoothing, self.target_threshold = label_smoothing, target_threshold

    def call(self, y_true, y_pred):
        return binary_cross_entropy(y_true, y_pred, self.label_smoothing, self.target_threshold)


def training_loss(optimization, from_logits: bool):
    """`(loss, metric)`: the Keras loss of `optimization.loss` and a metric of its mean over an
    epoch without the coupled decay (the epoch's `loss` in the history), named `"data_loss"`.

    Raises:
        ValueError: a binary cross-entropy of a network that outputs probabilities.
    """
    smoothing = optimization.label_smoothing
    if optimization.loss == "cross_entropy":
        return CrossEntropy(smoothing, from_logits=from_logits), (
            keras.metrics.CategoricalCrossentropy(name="data_loss", from_logits=from_logits,
                                                  label_smoothing=smoothing))
    if not from_logits:
        raise ValueError(
            f"loss='binary_cross_entropy' on the {keras.backend.backend()} backend needs a "
            "network that outputs logits: add \"classifier_activation\": null to "
            "model_overrides (served models still get a softmax; the tensorflow backend also "
            "reads the logits behind a softmax).")
    threshold = optimization.bce_target_threshold
    return BinaryCrossEntropy(smoothing, threshold), keras.metrics.MeanMetricWrapper(
        binary_cross_entropy, name="data_loss", label_smoothing=smoothing,
        target_threshold=threshold)


def scaled_updates(before, after, scales):
    """`training.finetune.scale_updates` without state (for JAX's pure train step): the values
    `after` with each change since `before` times its entry of `scales`. A learning-rate
    multiplier per variable for every optimizer; for SGD, linear in the gradient, the same as
    the TensorFlow loop's scaled gradients."""
    return [new if scale == 1.0 else old + scale * (new - old)
            for old, new, scale in zip(before, after, scales)]


class TrainingModel(keras.Model):
    """A functional model whose training loss adds the coupled weight decay of `decayed` and
    whose train step scales the classifier's updates by `head_scales`, then updates the weight
    average `average`.

    Args:
        inputs: the built model's inputs.
        outputs: its outputs.
        name: str. The model's name.
        decayed: the variables of the coupled decay (`training.loop_common.decayed_variables`).
        weight_decay: float. The coupled decay's factor; `0.0` adds nothing. Defaults to `0.0`.

    Its attributes `head_scales` (`None`, or `training.finetune.head_scales` of the model) and
    `average` (`None`, or a `training.keras_ema.OptimizerAverage`, set once the optimizer is
    built) are set before the model is compiled.
    """

    def __init__(self, inputs, outputs, name, decayed=(), weight_decay=0.0):
        super().__init__(inputs=inputs, outputs=outputs, name=name)
        self._decayed_ids = {id(v) for v in decayed}
        self._weight_decay = weight_decay
        self.head_scales = self.average = None

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred, sample_weight, training)
        if not self._weight_decay:
            return loss
        decayed = [v for v in self.trainable_variables if id(v) in self._decayed_ids]
        penalty = sum(ops.sum(ops.square(ops.cast(v, "float32"))) for v in decayed)
        return loss + 0.5 * self._weight_decay * penalty

    def train_step(self, *args):
        # JAX: train_step(state, data) -> (logs, state), pure; the others: train_step(data).
        if keras.backend.backend() == "jax":
            logs, state = super().train_step(*args)
            if self.head_scales is not None:
                state = (scaled_updates(args[0][0], state[0], self.head_scales), *state[1:])
            if self.average is not None:
                state = self.average.stateless_update(state)
            return logs, state
        variables = self.trainable_variables
        # Copies: PyTorch's optimizers update the variables in place.
        before = None if self.head_scales is None else [
            None if scale == 1.0 else ops.copy(v.value)
            for v, scale in zip(variables, self.head_scales)]
        logs = super().train_step(*args)
        if before is not None:
            finetune.scale_updates(variables, before, self.head_scales)
        if self.average is not None:
            self.average.update()
        return logs
