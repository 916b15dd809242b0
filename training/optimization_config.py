"""The optimisation settings of a run: `OptimizationConfig` and the choices of its fields.

`training.config.ExperimentConfig` holds one as its `optimization` part (and re-exports it);
`training.optimizers` builds the optimizer and `training.schedules` the learning-rate schedule
from it. Pure Python, like the other configs:

>>> from training.optimization_config import OptimizationConfig
>>> settings = OptimizationConfig(decay_epochs=(30, 60), epochs=90)
>>> settings.steps(100), settings.boundaries(100), settings.decay_mode()
(9000, (3000, 6000), 'coupled')
"""

import dataclasses
import math
from typing import List, Optional, Tuple

# The checks use `keras_resnets.validate`, imported where they run: importing keras_resnets loads
# Keras and TensorFlow, and the CLIs import this module before they quiet TensorFlow's logs.

SCHEDULES = ("step", "cosine", "constant")
OPTIMIZERS = ("sgd", "adamw", "lamb")
WEIGHT_DECAY_MODES = ("auto", "coupled", "decoupled")
LOSSES = ("cross_entropy", "binary_cross_entropy")


def _increasing(argument, values, kind):
    """`values` as a tuple of `kind` (int: positive integers; float: positive numbers),
    strictly increasing."""
    from keras_resnets import validate

    values = tuple(values)
    for value in values:
        if kind is int:
            validate.positive_int(f"{argument} entries", value)
        else:
            validate.number_in(f"{argument} entries", value, 0, math.inf, low_open=True)
    validate.strictly_increasing(argument, values)
    return tuple(int(v) if kind is int else float(v) for v in values)


@dataclasses.dataclass(frozen=True)
class OptimizationConfig:
    """The optimizer, the learning-rate schedule, regularisation and the length of training.

    The learning rate of step `s` (0-based updates) is `learning_rate * decay_rate**k` with `k` the
    number of boundaries `<= s`; the papers divide by 10 "at 32k iterations": update 32000 is the
    first at the lower rate. Give the boundaries in iterations (`decay_steps`, the CIFAR papers) or
    in epochs (`decay_epochs`, ImageNet), not both. Training stops after `epochs` epochs or
    `total_steps` updates (exactly one of them).

    Args:
        global_batch_size: int. Images per update over all replicas; each replica gets
            `global_batch_size / replicas`. Defaults to `128`.
        learning_rate: float. The peak learning rate. Defaults to `0.1`.
        optimizer: str. `"sgd"` (with `momentum`, the papers'), `"adamw"` (Loshchilov &
            Hutter 2019) or `"lamb"` (You et al. 2020: Adam's step scaled per variable by
            `||w|| / ||step||`), Keras' `SGD`, `AdamW` and `Lamb`. Defaults to `"sgd"`.
        momentum: float. SGD momentum, or `beta_1` (the decay of the first moment) of AdamW and
            LAMB. Defaults to `0.9`.
        nesterov: bool. Nesterov momentum (SGD only). Defaults to `False`.
        beta_2: float. AdamW's and LAMB's decay of the second moment, in `[0, 1)`.
            Defaults to `0.999`.
        epsilon: float or `None`. AdamW's and LAMB's epsilon; `None`: Keras' default (`1e-7`).
            Defaults to `None`.
        weight_decay: float. The weight decay factor `wd`, in the meaning `weight_decay_mode`
            gives it. Defaults to `1e-4`.
        weight_decay_mode: str. `"coupled"`: L2 as in the papers (Caffe and Torch), `wd * w`
            added to the gradient of every decayed weight, i.e. `wd / 2 * ||w||^2` added to
            the loss (so clipped with the gradient and adapted by the optimizer).
            `"decoupled"`: `w -= lr * wd * w` before each update, apart from the gradient
            (Loshchilov & Hutter 2019; Keras' and PyTorch's `AdamW`, with `lr` the scheduled
            rate). `"auto"`: coupled for SGD, decoupled for AdamW and LAMB; these two are
            decoupled by definition, and `"coupled"` with them is an error.
            Defaults to `"auto"`.
        decay_bn_and_bias: bool. Whether batch-norm scales and offsets and biases are decayed too
            (the papers' code decays every weight); `False` decays only convolution and dense
            kernels (Goyal et al. 2017, TF Model Garden), in either mode. Defaults to `True`.
        clip_global_norm: float or `None`. Scale the gradients, all together, to at most this
            L2 norm (the norm of the gradient summed over the replicas, after coupled decay is
            added; `training.optimizers.clip_by_global_norm`). `None`: no clipping.
            Defaults to `None`.
        ema_decay: float or `None`. Keep an exponential moving average of the weights:
            `average = ema_decay * average + (1 - ema_decay) * w` after every update, for the
            trainable weights and the batch-norm moving statistics (`training.ema`); evaluation,
            the best checkpoint's choice, the exports and a later run's `init_weights` of this
            run's directory use the averages. In `(0, 1)`, e.g.
            `0.9999`; `None`: no average. Defaults to `None`.
        label_smoothing: float. Label smoothing of the training loss's targets, in `[0, 1)`.
            Defaults to `0.0`.
        loss: str. The training loss: `"cross_entropy"` (softmax cross-entropy) or
            `"binary_cross_entropy"` (a sigmoid binary cross-entropy per class, averaged over
            the classes, of the logits: Wightman et al. 2021, ResNet strikes back; timm's
            `BinaryCrossEntropy`). Evaluation reports the cross-entropy either way.
            Defaults to `"cross_entropy"`.
        bce_target_threshold: float or `None`. With `"binary_cross_entropy"`, targets (after
            label smoothing and MixUp or CutMix) above this become 1, the others 0 (timm's
            `--bce-target-thresh`); `None` keeps them soft. Defaults to `None`.
        schedule: str. `"step"` (piecewise constant), `"cosine"` (from `learning_rate` to 0 over
            the steps after warmup) or `"constant"`. Defaults to `"step"`.
        decay_steps: tuple of int. Iterations at which a step schedule multiplies the rate by
            `decay_rate`. Defaults to `()`.
        decay_epochs: tuple of float. The same boundaries in epochs. Defaults to `()`.
        decay_rate: float. Factor of each step. Defaults to `0.1`.
        warmup_epochs: float. Linear warmup from `warmup_learning_rate` to the schedule's value
            over this many epochs (Goyal et al. 2017). Defaults to `0.0`.
        warmup_learning_rate: float. Start of the linear warmup. Defaults to `0.0`.
        warm_start_steps: int. Train the first iterations at `warm_start_learning_rate` (He et
            al. 2015 for ResNet-110/1202: 0.01 for 400 iterations, then 0.1). Defaults to `0`.
        warm_start_learning_rate: float. The learning rate of the warm start.
            Defaults to `0.01`.
        epochs: int or `None`. Length of training in epochs.
        total_steps: int or `None`. Length of training in updates (the papers' "stop at 64k").
    """

    global_batch_size: int = 128
    learning_rate: float = 0.1
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    beta_2: float = 0.999
    epsilon: Optional[float] = None
    weight_decay: float = 1e-4
    weight_decay_mode: str = "auto"
    decay_bn_and_bias: bool = True
    clip_global_norm: Optional[float] = None
    ema_decay: Optional[float] = None
    label_smoothing: float = 0.0
    loss: str = dataclasses.field(default="cross_entropy", metadata={"choices": LOSSES})
    bce_target_threshold: Optional[float] = None
    schedule: str = "step"
    decay_steps: Tuple[int, ...] = ()
    decay_epochs: Tuple[float, ...] = ()
    decay_rate: float = 0.1
    warmup_epochs: float = 0.0
    warmup_learning_rate: float = 0.0
    warm_start_steps: int = 0
    warm_start_learning_rate: float = 0.01
    epochs: Optional[int] = None
    total_steps: Optional[int] = None

    def __post_init__(self):
        from keras_resnets import validate

        validate.positive_int("batch_size", self.global_batch_size)
        validate.number_in("learning_rate", self.learning_rate, 0, math.inf, low_open=True)
        validate.number_in("momentum", self.momentum, 0, 1, high_open=True)
        validate.boolean("nesterov", self.nesterov)
        validate.number_in("weight_decay", self.weight_decay, 0, math.inf)
        validate.boolean("decay_bn_and_bias", self.decay_bn_and_bias)
        self._check_optimizer()
        validate.number_in("label_smoothing", self.label_smoothing, 0, 1, high_open=True)
        validate.choice("loss", self.loss, LOSSES)
        if self.bce_target_threshold is not None:
            if self.loss != "binary_cross_entropy":
                raise ValueError(f"bce_target_threshold={self.bce_target_threshold!r} applies to "
                                 f"loss='binary_cross_entropy', not loss={self.loss!r}.")
            validate.number_in("bce_target_threshold", self.bce_target_threshold, 0, 1,
                               high_open=True)
        validate.choice("schedule", self.schedule, SCHEDULES)
        object.__setattr__(self, "decay_steps", _increasing("decay_steps", self.decay_steps, int))
        object.__setattr__(
            self, "decay_epochs", _increasing("decay_epochs", self.decay_epochs, float)
        )
        if self.decay_steps and self.decay_epochs:
            raise ValueError(
                "Give the step boundaries either in iterations (decay_steps) or in epochs "
                f"(decay_epochs), not both; got decay_steps={self.decay_steps}, "
                f"decay_epochs={self.decay_epochs}."
            )
        validate.number_in("decay_rate", self.decay_rate, 0, 1, low_open=True)
        validate.number_in("warmup_epochs", self.warmup_epochs, 0, math.inf)
        validate.number_in("warmup_learning_rate", self.warmup_learning_rate, 0, math.inf)
        validate.non_negative_int("warm_start_steps", self.warm_start_steps)
        validate.number_in(
            "warm_start_learning_rate", self.warm_start_learning_rate, 0, math.inf, low_open=True
        )
        if self.warm_start_steps and self.warmup_epochs:
            raise ValueError(
                "Use either a warm start (warm_start_steps) or a linear warmup (warmup_epochs), "
                f"not both; got warm_start_steps={self.warm_start_steps}, "
                f"warmup_epochs={self.warmup_epochs}."
            )
        if (self.epochs is None) == (self.total_steps is None):
            raise ValueError(
                "Give the length of training as exactly one of epochs and total_steps; got "
                f"epochs={self.epochs!r}, total_steps={self.total_steps!r}."
            )
        if self.epochs is not None:
            validate.positive_int("epochs", self.epochs)
        else:
            validate.positive_int("total_steps", self.total_steps)

    def _check_optimizer(self):
        from keras_resnets import validate

        validate.choice("optimizer", self.optimizer, OPTIMIZERS)
        validate.number_in("beta_2", self.beta_2, 0, 1, high_open=True)
        if self.epsilon is not None:
            validate.number_in("epsilon", self.epsilon, 0, math.inf, low_open=True)
        validate.choice("weight_decay_mode", self.weight_decay_mode, WEIGHT_DECAY_MODES)
        if self.clip_global_norm is not None:
            validate.number_in("clip_global_norm", self.clip_global_norm, 0, math.inf,
                               low_open=True)
        if self.ema_decay is not None:
            validate.number_in("ema_decay", self.ema_decay, 0, 1, low_open=True, high_open=True)
        if self.optimizer == "sgd":
            for name, default in (("beta_2", 0.999), ("epsilon", None)):
                if getattr(self, name) != default:
                    raise ValueError(f"{name}={getattr(self, name)!r} applies to "
                                     "optimizer='adamw' or 'lamb', not optimizer='sgd'.")
            return
        if self.nesterov:
            raise ValueError(f"nesterov=True applies to optimizer='sgd', not "
                             f"optimizer={self.optimizer!r}.")
        if self.weight_decay_mode == "coupled":
            raise ValueError(
                f"weight_decay_mode='coupled' contradicts optimizer={self.optimizer!r}, whose "
                "weight decay is decoupled by definition; use weight_decay_mode='decoupled' "
                "or 'auto', or optimizer='sgd'.")

    def decay_mode(self) -> str:
        """`weight_decay_mode` with `"auto"` resolved: `"coupled"` for SGD, else
        `"decoupled"`."""
        if self.weight_decay_mode != "auto":
            return self.weight_decay_mode
        return "coupled" if self.optimizer == "sgd" else "decoupled"

    def steps(self, steps_per_epoch: int) -> int:
        """The total number of updates, given the updates per epoch."""
        from keras_resnets import validate

        validate.positive_int("steps_per_epoch", steps_per_epoch)
        if self.total_steps is not None:
            return self.total_steps
        return self.epochs * steps_per_epoch

    def boundaries(self, steps_per_epoch: int) -> Tuple[int, ...]:
        """The step schedule's boundaries in iterations (epochs converted with rounding)."""
        if self.decay_steps:
            return self.decay_steps
        return tuple(int(round(e * steps_per_epoch)) for e in self.decay_epochs)

    def unreached_boundaries(self, steps_per_epoch: int) -> List[int]:
        """The step schedule's boundaries that training ends before (`[]` for the other
        schedules): worth a note, as a recipe shortened with `epochs` never decays."""
        if self.schedule != "step":
            return []
        total = self.steps(steps_per_epoch)
        return [b for b in self.boundaries(steps_per_epoch) if b >= total]

    def warmup_steps(self, steps_per_epoch: int) -> int:
        """The linear warmup in iterations."""
        return int(round(self.warmup_epochs * steps_per_epoch))
