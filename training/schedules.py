"""Learning-rate schedules of the papers, as serializable Keras `LearningRateSchedule`s.

A schedule maps the optimizer's step `s` (the number of updates already applied, so the first
update runs at `s = 0`) to a learning rate. All of them take plain Python numbers, so that
`keras.saving.serialize_keras_object` round-trips them.

>>> schedule = StepDecay(0.1, boundaries=(32000, 48000))
>>> [round(float(schedule(s)), 6) for s in (0, 31999, 32000, 48000)]
[0.1, 0.1, 0.01, 0.001]
"""

import math
from typing import Sequence

import keras
from keras import ops

_PACKAGE = "keras_resnets_training"


def _float_step(step):
    return ops.cast(ops.convert_to_tensor(step), "float32")


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Piecewise-constant decay: multiply by `decay_rate` at each boundary (in iterations).

    The rate of step `s` is `initial_learning_rate * decay_rate**k`, where `k` counts the
    boundaries `b <= s`: "divide by 10 at 32k iterations" makes update 32000 the first at the
    lower rate. The values are computed in Python (float64) and then stored as float32, so
    `0.1 / 10` is exactly `float32(0.01)`.

    Args:
        initial_learning_rate: float. The rate before the first boundary.
        boundaries: sequence of int. Strictly increasing iterations. Defaults to `()`
            (a constant rate).
        decay_rate: float. Factor applied at each boundary. Defaults to `0.1`.
    """

    def __init__(self, initial_learning_rate: float, boundaries: Sequence[int] = (),
                 decay_rate: float = 0.1):
        self.initial_learning_rate = float(initial_learning_rate)
        self.boundaries = [int(b) for b in boundaries]
        self.decay_rate = float(decay_rate)
        if any(b <= a for a, b in zip(self.boundaries, self.boundaries[1:])):
            raise ValueError(f"boundaries must be strictly increasing; got {self.boundaries}.")
        self._values = [self.initial_learning_rate * self.decay_rate**k
                        for k in range(len(self.boundaries) + 1)]

    def __call__(self, step):
        step = _float_step(step)
        if not self.boundaries:
            return ops.cast(self._values[0], "float32")
        passed = ops.sum(ops.cast(ops.greater_equal(
            step, ops.convert_to_tensor(self.boundaries, "float32")), "int32"))
        return ops.take(ops.convert_to_tensor(self._values, "float32"), passed)

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "boundaries": list(self.boundaries), "decay_rate": self.decay_rate}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine decay from `initial_learning_rate` to `final_learning_rate` (Loshchilov & Hutter).

    The rate is constant at `initial_learning_rate` before `start_step` (where a warmup wrapper
    takes over), then follows half a cosine until `total_steps`, and stays at
    `final_learning_rate` afterwards:
    `final + (initial - final) * (1 + cos(pi * (s - start) / (total - start))) / 2`.

    Args:
        initial_learning_rate: float. The peak rate.
        total_steps: int. The step at which the rate reaches `final_learning_rate`.
        start_step: int. Where the decay begins (the end of a warmup). Defaults to `0`.
        final_learning_rate: float. Defaults to `0.0`.
    """

    def __init__(self, initial_learning_rate: float, total_steps: int, start_step: int = 0,
                 final_learning_rate: float = 0.0):
        self.initial_learning_rate = float(initial_learning_rate)
        self.total_steps = int(total_steps)
        self.start_step = int(start_step)
        self.final_learning_rate = float(final_learning_rate)
        if not 0 <= self.start_step < self.total_steps:
            raise ValueError(
                f"start_step must be in [0, total_steps); got start_step={self.start_step}, "
                f"total_steps={self.total_steps}."
            )

    def __call__(self, step):
        step = _float_step(step)
        span = float(self.total_steps - self.start_step)
        progress = ops.clip((step - self.start_step) / span, 0.0, 1.0)
        cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
        return ops.cast(
            self.final_learning_rate
            + (self.initial_learning_rate - self.final_learning_rate) * cosine, "float32")

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "total_steps": self.total_steps, "start_step": self.start_step,
                "final_learning_rate": self.final_learning_rate}


class _Wrapper(keras.optimizers.schedules.LearningRateSchedule):
    """A schedule that replaces the first `steps` of another one by `self._before(step)`,
    which each subclass defines."""

    def __init__(self, schedule, steps):
        if isinstance(schedule, dict):
            schedule = keras.saving.deserialize_keras_object(schedule)
        if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
            raise ValueError(f"schedule must be a LearningRateSchedule; got {schedule!r}.")
        self.schedule = schedule
        self.steps = int(steps)
        if self.steps < 0:
            raise ValueError(f"steps must be non-negative; got {self.steps}.")

    def __call__(self, step):
        step = _float_step(step)
        later = ops.cast(self.schedule(step), "float32")
        if self.steps == 0:
            return later
        return ops.where(step < self.steps, ops.cast(self._before(step), "float32"), later)

    def get_config(self):
        return {"schedule": keras.saving.serialize_keras_object(self.schedule),
                "steps": self.steps}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class WarmStart(_Wrapper):
    """A constant low rate for the first `steps` iterations, then `schedule`.

    He et al. 2015 (Section 4.2) train ResNet-110 and 1202 at 0.01 "until the training error is
    below 80% (about 400 iterations)" and then go back to 0.1; He et al. 2016 do the same for the
    deep pre-activation networks.

    Args:
        schedule: `LearningRateSchedule`. The schedule from step `steps` on.
        steps: int. Iterations at the warm-start rate. Defaults to `400`.
        learning_rate: float. The warm-start rate. Defaults to `0.01`.
    """

    def __init__(self, schedule, steps: int = 400, learning_rate: float = 0.01):
        super().__init__(schedule, steps)
        self.learning_rate = float(learning_rate)

    def _before(self, step):
        return ops.full_like(step, self.learning_rate)

    def get_config(self):
        return {**super().get_config(), "learning_rate": self.learning_rate}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LinearWarmup(_Wrapper):
    """Linear warmup over the first `steps` iterations, then `schedule` (Goyal et al. 2017).

    The rate of step `s < steps` is `initial + (target - initial) * s / steps`, where `target` is
    `schedule(steps)`, the rate at which the warmup hands over.

    Args:
        schedule: `LearningRateSchedule`. The schedule from step `steps` on.
        steps: int. Warmup iterations.
        initial_learning_rate: float. The rate of step 0. Defaults to `0.0`.
    """

    def __init__(self, schedule, steps: int, initial_learning_rate: float = 0.0):
        super().__init__(schedule, steps)
        self.initial_learning_rate = float(initial_learning_rate)

    def _before(self, step):
        target = ops.cast(self.schedule(self.steps), "float32")
        return self.initial_learning_rate + (target - self.initial_learning_rate) * (
            step / float(max(self.steps, 1)))

    def get_config(self):
        return {**super().get_config(), "initial_learning_rate": self.initial_learning_rate}


def build(optimization, steps_per_epoch: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """The schedule of an `OptimizationConfig`, with epochs converted by `steps_per_epoch`.

    Args:
        optimization: `training.config.OptimizationConfig`.
        steps_per_epoch: int. Updates per epoch (global batches).

    Returns:
        A `LearningRateSchedule`: `StepDecay` or `CosineDecay`, wrapped in `WarmStart` or
        `LinearWarmup` when the config asks for them.
    """
    total = optimization.steps(steps_per_epoch)
    warmup = optimization.warmup_steps(steps_per_epoch)
    if warmup >= total:
        raise ValueError(
            f"warmup_epochs={optimization.warmup_epochs} is {warmup} steps, not fewer than the "
            f"{total} steps of training."
        )
    if optimization.schedule == "cosine":
        schedule = CosineDecay(optimization.learning_rate, total, start_step=warmup)
    elif optimization.schedule == "step":
        schedule = StepDecay(optimization.learning_rate, optimization.boundaries(steps_per_epoch),
                             optimization.decay_rate)
    else:
        schedule = StepDecay(optimization.learning_rate)
    if warmup:
        schedule = LinearWarmup(schedule, warmup, optimization.warmup_learning_rate)
    if optimization.warm_start_steps:
        schedule = WarmStart(schedule, optimization.warm_start_steps,
                             optimization.warm_start_learning_rate)
    return schedule
