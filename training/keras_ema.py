"""The weight average of `ema_decay` on every Keras backend (`training.keras_loop`).

The same average as `training.ema` keeps in the TensorFlow loop: after every update,
`average = decay * average + (1 - decay) * value` (in float32) for each trainable weight and
for the moving mean and variance of every batch norm that trains, starting from the weights the
run starts with. Only the place differs: Keras' `model.fit` on JAX carries its state through a
pure train step (trainable, non-trainable, optimizer and metrics variables), so the averages are
extra variables of the optimizer (`optimizer.add_variable`). They then travel through the JAX
step, and `model.save_weights` writes them with the optimizer's state, so checkpoints hold them.
Keras' own `use_ema` averages the trainable weights only and starts after the first update
(`keras.optimizers.Optimizer`), which gives other numbers.
"""

import contextlib
from typing import List

import keras
import numpy as np
from keras import ops


def averaged_variables(model: keras.Model) -> List[keras.Variable]:
    """The variables the average follows: every trainable weight, then the moving mean and
    variance of every trainable batch norm (in layer order)."""
    statistics = []
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable:
            statistics += [layer.moving_mean, layer.moving_variance]
    return list(model.trainable_variables) + statistics


class OptimizerAverage:
    """The moving averages of `averaged_variables(model)`, held as variables of `optimizer`.

    Args:
        model: `keras.Model`, built, after any freezing (`training.finetune.freeze`).
        optimizer: its Keras optimizer, built; with a `LossScaleOptimizer`, the averages go to
            the inner optimizer.
        decay: float. In `(0, 1)`: the weight of the old average at each update.

    Example:

    >>> import keras_resnets
    >>> model = keras_resnets.ResNet(8, stem="cifar", stage_widths=(4, 8, 16), classes=10)
    >>> optimizer = keras.optimizers.SGD(0.1)
    >>> optimizer.build(model.trainable_variables)
    >>> average = OptimizerAverage(model, optimizer, 0.99)
    >>> len(model.trainable_variables), len(average.averages)  # + 9 batch norms' statistics
    (29, 47)
    """

    def __init__(self, model: keras.Model, optimizer, decay: float):
        self.decay = float(decay)
        self.sources = averaged_variables(model)
        holder = getattr(optimizer, "inner_optimizer", optimizer)
        self.averages = [holder.add_variable(v.shape, dtype="float32", name=f"average_{i}")
                         for i, v in enumerate(self.sources)]
        self.reset()
        # Where the sources and averages sit in the state of Keras' JAX train step.
        trainable = {id(v): i for i, v in enumerate(model.trainable_variables)}
        other = {id(v): i for i, v in enumerate(model.non_trainable_variables)}
        self._where = [(0, trainable[id(v)]) if id(v) in trainable else (1, other[id(v)])
                       for v in self.sources]
        slots = {id(v): i for i, v in enumerate(optimizer.variables)}
        self._slots = [slots[id(v)] for v in self.averages]

    def _step(self, average, value):
        decay = ops.cast(self.decay, "float32")
        return decay * average + (1.0 - decay) * ops.cast(value, "float32")

    def update(self) -> None:
        """One step of the average, on the variables (TensorFlow and PyTorch train steps)."""
        for source, average in zip(self.sources, self.averages):
            average.assign(self._step(average.value, ops.stop_gradient(source.value)))

    def stateless_update(self, state):
        """One step of the average on the state `(trainable, non_trainable, optimizer,
        metrics)` of Keras' JAX train step, after its update; returns the new state."""
        trainable, non_trainable, optimizer_values, metrics = state
        optimizer_values = list(optimizer_values)
        for (group, index), slot in zip(self._where, self._slots):
            value = (trainable, non_trainable)[group][index]
            optimizer_values[slot] = self._step(optimizer_values[slot], value)
        return trainable, non_trainable, optimizer_values, metrics

    def reset(self) -> None:
        """Starts the averages at the model's current weights."""
        for source, average in zip(self.sources, self.averages):
            # A copy: on JAX, two variables sharing a buffer cannot both be donated to a step.
            average.assign(ops.copy(ops.cast(source.value, "float32")))

    def swap(self) -> None:
        """Exchanges the model's weights and the averages (exactly: a second call undoes it)."""
        for source, average in zip(self.sources, self.averages):
            value = np.array(ops.convert_to_numpy(source.value))  # a copy (torch shares)
            source.assign(ops.copy(average.value))
            average.assign(value)

    def load_into_model(self) -> None:
        """Gives the model the averaged weights (the averages stay)."""
        for source, average in zip(self.sources, self.averages):
            source.assign(ops.copy(average.value))


def load_averaged(model: keras.Model, config, path: str) -> None:
    """Gives `model` the weight average held in a weights file of a run of Keras' fit with
    `ema_decay` (the weights that run evaluated and exported).

    The averages are variables of the file's optimizer, so an optimizer is built as the run
    built its own, over the weights it trained, to read them.

    Args:
        model: `keras.Model`, built from `config.model` with the run's classes. It is frozen
            as the run froze it (`training.finetune.freeze`): the averages follow the weights
            the run trained.
        config: `training.config.ExperimentConfig` of the run, with `ema_decay`.
        path: str. Its `keras_step<N>.weights.h5` or `keras_best_step<N>.weights.h5`.
    """
    from training import finetune, optimizers, runtime, schedules
    from training.loop_common import decayed_variables

    optimization = config.optimization
    finetune.freeze(model, config.finetune)
    decayed = decayed_variables(model, optimization.decay_bn_and_bias)
    # The run's schedule needs its step count; any schedule has the same (no) variables.
    optimizer = optimizers.build(optimization, schedules.StepDecay(optimization.learning_rate),
                                 runtime.dtype_policy(config.runtime.mixed_precision), model,
                                 decayed)
    optimizer.build(model.trainable_variables)
    average = OptimizerAverage(model, optimizer, optimization.ema_decay)
    model.optimizer = optimizer  # what `load_weights` fills besides the model
    model.load_weights(path)
    average.load_into_model()


@contextlib.contextmanager
def averaged(average):
    """Within it, the model has the averaged weights (without an average, `None`, its own)."""
    if average is None:
        yield
        return
    average.swap()
    try:
        yield
    finally:
        average.swap()
