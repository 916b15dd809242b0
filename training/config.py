"""Experiment settings as dataclasses, and the named recipes of the papers.

An `ExperimentConfig` holds five parts: `model` (a `training.model_config.ModelConfig`: a
registry name and overrides), `optimization` (optimizer, learning-rate schedule, weight decay,
batch, length), `runtime` (strategy, mixed precision, XLA, model directory, seeds), `data` (a
`training.data_config.DataConfig`) and `finetune` (a `training.finetune.FinetuneConfig`: first
weights, frozen layers). `recipe(name, **overrides)` returns a paper's recipe (the table of
`training.recipes`) with any field replaced:

>>> from training import config
>>> experiment = config.recipe("cifar10_resnet110", model_dir="/tmp/r110")
>>> experiment.optimization.decay_steps, experiment.optimization.warm_start_steps
((32000, 48000), 400)

Overrides are flat: each key names a field of one part (`global_batch_size`, `strategy`,
`dataset`, ...), with `model` for the registry name and `model_overrides` for the builder
arguments; `seed` and `deterministic` set both the runtime and the data pipeline.
"""

import dataclasses
import math
from typing import Any, Dict, Mapping, Optional, Tuple

from training.data_config import DataConfig
from training.finetune import FinetuneConfig
from training.model_config import CUSTOM_MODEL, ModelConfig  # noqa: F401 (CUSTOM_MODEL: API)
from training.recipes import RECIPES

# The checks use `keras_resnets.validate`, imported where they run: importing keras_resnets loads
# Keras and TensorFlow, and the CLIs import this module before they quiet TensorFlow's logs.

SCHEDULES = ("step", "cosine", "constant")
OPTIMIZERS = ("sgd", "adamw", "lamb")
WEIGHT_DECAY_MODES = ("auto", "coupled", "decoupled")
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")
MIXED_PRECISION = ("none", "float16", "bfloat16")
JIT_COMPILE = ("auto", "true", "false")
CHECKPOINTS = ("best", "latest")
EXPORT_FORMATS = ("keras", "saved_model", "onnx", "litert")


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
            the best checkpoint's choice and the exports use the averages. In `(0, 1)`, e.g.
            `0.9999`; `None`: no average. Defaults to `None`.
        label_smoothing: float. Label smoothing of the cross-entropy, in `[0, 1)`.
            Defaults to `0.0`.
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

    def warmup_steps(self, steps_per_epoch: int) -> int:
        """The linear warmup in iterations."""
        return int(round(self.warmup_epochs * steps_per_epoch))


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
    """Where and how training runs, and what it writes.

    Args:
        strategy: str. `"auto"` (TPU when `TPU_NAME` is set, multi-worker when `TF_CONFIG`
            names several tasks, mirrored over several local GPUs or logical CPUs, else one
            device), `"one_device"`, `"mirrored"`, `"multi_worker"` (reads `TF_CONFIG`) or
            `"tpu"`. Defaults to `"auto"`.
        mixed_precision: str. `"none"`, `"float16"` (loss scaling) or `"bfloat16"`. The
            classifier's output stays float32. Defaults to `"none"`.
        jit_compile: str. `"auto"` (XLA on GPU and TPU, not on CPU), `"true"` or `"false"`.
            Defaults to `"auto"`.
        cpu_devices: int. Split the CPU into this many logical devices (to try mirrored training
            without GPUs); must be set before TensorFlow starts. `0` leaves the CPU alone.
            Defaults to `0`.
        model_dir: str or `None`. Where checkpoints, logs, results and exports go; rerunning
            with the same directory resumes. `None` writes nothing. Defaults to `None`.
        keep_checkpoints: int. How many of the latest checkpoints to keep (the best one is kept
            apart). Defaults to `3`.
        checkpoint_every_steps: int. Also checkpoint every this many steps within an epoch; `0`
            checkpoints at the end of each epoch only. Defaults to `0`.
        eval_every_epochs: int. Evaluate on the validation and test splits every this many
            epochs (and always after the last). Defaults to `1`.
        summary_every_steps: int. Write training scalars to TensorBoard every this many steps.
            Defaults to `100`.
        seed: int. Seed of the weights' initialisation and of the data order. Defaults to `0`.
        deterministic: bool. Deterministic ops (`tf.config.experimental.enable_op_determinism`)
            and a deterministic input pipeline: reruns give the same weights. Defaults to `False`.
        max_loss: float. Stop when the training loss exceeds this or is not finite.
            Defaults to `1e4`.
        verbose: int. `0` silent, `1` progress bar and a line per epoch, `2` a line per epoch,
            `3` a line per epoch and, from `python -m training.fit`, TensorFlow's start-up log
            and INFO logging (for debugging).
            Defaults to `1`.
        save_model: bool. Write the final exports (`export_format`) and
            `class_names.json`. Defaults to `True`.
        export_format: tuple of str (or one comma-separated str). What `save_model` writes,
            each taking raw images and returning probabilities (`training.export`): `"keras"`
            (`model.keras`), `"saved_model"` (`saved_model/`), `"onnx"` (`model.onnx`, needs
            tf2onnx) and `"litert"` (`model.tflite`). Defaults to `("keras", "saved_model")`.
        evaluate_test: bool. Evaluate the test split during training. Searches turn it off so
            that only the validation split guides them. Defaults to `True`.
    """

    strategy: str = "auto"
    mixed_precision: str = "none"
    jit_compile: str = "auto"
    cpu_devices: int = 0
    model_dir: Optional[str] = None
    keep_checkpoints: int = 3
    checkpoint_every_steps: int = 0
    eval_every_epochs: int = 1
    summary_every_steps: int = 100
    seed: int = 0
    deterministic: bool = False
    max_loss: float = 1e4
    verbose: int = 1
    save_model: bool = True
    export_format: Tuple[str, ...] = ("keras", "saved_model")
    evaluate_test: bool = True

    def __post_init__(self):
        from keras_resnets import validate

        validate.choice("strategy", self.strategy, STRATEGIES)
        validate.choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        if isinstance(self.jit_compile, bool):
            object.__setattr__(self, "jit_compile", "true" if self.jit_compile else "false")
        validate.choice("jit_compile", self.jit_compile, JIT_COMPILE)
        validate.non_negative_int("cpu_devices", self.cpu_devices)
        if self.model_dir is not None and not isinstance(self.model_dir, str):
            object.__setattr__(self, "model_dir", str(self.model_dir))
        if self.model_dir == "":
            raise ValueError("model_dir must be a directory path or None; got ''.")
        validate.positive_int("keep_checkpoints", self.keep_checkpoints)
        validate.non_negative_int("checkpoint_every_steps", self.checkpoint_every_steps)
        validate.positive_int("eval_every_epochs", self.eval_every_epochs)
        validate.positive_int("summary_every_steps", self.summary_every_steps)
        validate.non_negative_int("seed", self.seed)
        validate.boolean("deterministic", self.deterministic)
        validate.number_in("max_loss", self.max_loss, 0, math.inf, low_open=True)
        validate.choice("verbose", self.verbose, (0, 1, 2, 3))
        validate.boolean("save_model", self.save_model)
        validate.boolean("evaluate_test", self.evaluate_test)
        object.__setattr__(self, "export_format", _export_formats(self.export_format))


def _export_formats(value) -> Tuple[str, ...]:
    """`export_format` as a tuple of distinct formats (from a comma-separated str or a list)."""
    formats = value.split(",") if isinstance(value, str) else value
    if not isinstance(formats, (list, tuple)) or not all(isinstance(f, str) for f in formats):
        formats = None
    else:
        formats = tuple(f.strip() for f in formats)
    if not formats or len(set(formats)) < len(formats) or not set(formats) <= set(
            EXPORT_FORMATS):
        raise ValueError(f"export_format must be a comma-separated list of distinct formats "
                         f"among {', '.join(EXPORT_FORMATS)}; got {value!r}.")
    return formats


_SECTIONS = ("model", "optimization", "runtime", "data", "finetune")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything a training run needs.

    Args:
        model: `ModelConfig`. Defaults to `ModelConfig()` (ResNet-20).
        optimization: `OptimizationConfig`. Needs `epochs` or `total_steps`.
        runtime: `RuntimeConfig`. Defaults to `RuntimeConfig()`.
        data: `training.data_config.DataConfig`. Defaults to `DataConfig()` (CIFAR-10 from
            TFDS).
        name: str. The recipe's name, or `"custom"`. Defaults to `"custom"`.
        finetune: `training.finetune.FinetuneConfig`. Defaults to `FinetuneConfig()` (random
            initialisation, every layer trains).
    """

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optimization: OptimizationConfig = dataclasses.field(
        default_factory=lambda: OptimizationConfig(epochs=1)
    )
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    name: str = "custom"
    finetune: FinetuneConfig = dataclasses.field(default_factory=FinetuneConfig)

    def __post_init__(self):
        for section, kind in (("model", ModelConfig), ("optimization", OptimizationConfig),
                              ("runtime", RuntimeConfig), ("data", DataConfig),
                              ("finetune", FinetuneConfig)):
            if not isinstance(getattr(self, section), kind):
                raise ValueError(
                    f"{section} must be a {kind.__name__}; got {getattr(self, section)!r}."
                )

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-friendly dict (tuples become lists); `from_dict` inverts it."""
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> "ExperimentConfig":
        """Rebuilds a config written by `to_dict` (e.g. a model directory's `config.json`)."""
        optimization = dict(config["optimization"])
        for key in ("decay_steps", "decay_epochs"):
            optimization[key] = tuple(optimization.get(key, ()))
        return cls(
            model=ModelConfig(**config["model"]),
            optimization=OptimizationConfig(**optimization),
            runtime=RuntimeConfig(**config["runtime"]),
            data=DataConfig(**config["data"]),
            name=config.get("name", "custom"),
            finetune=FinetuneConfig(**config.get("finetune", {})),
        )

    def replace(self, **overrides) -> "ExperimentConfig":
        """A copy with flat overrides applied (see the module docstring)."""
        return _apply(self, overrides)


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def override_keys():
    """The valid flat override keys, sorted."""
    keys = {"model", "model_overrides"}
    keys |= {f.name for f in dataclasses.fields(OptimizationConfig)}
    keys |= {f.name for f in dataclasses.fields(RuntimeConfig)}
    keys |= {f.name for f in dataclasses.fields(DataConfig)}
    keys |= {f.name for f in dataclasses.fields(FinetuneConfig)}
    return sorted(keys)


# Setting one of a pair clears the other, so that `epochs=3` overrides a recipe's `total_steps`.
_EXCLUSIVE = {
    "epochs": "total_steps",
    "total_steps": "epochs",
    "decay_steps": "decay_epochs",
    "decay_epochs": "decay_steps",
    "warm_start_steps": "warmup_epochs",
    "warmup_epochs": "warm_start_steps",
    "freeze": "trainable_from",
    "trainable_from": "freeze",
}
_CLEARED = {"epochs": None, "total_steps": None, "decay_steps": (), "decay_epochs": (),
            "warm_start_steps": 0, "warmup_epochs": 0.0, "freeze": (), "trainable_from": None}


def _clears_partner(key, value) -> bool:
    """Whether setting `key` to `value` replaces its exclusive partner. Any given length does
    (`epochs=0` must fail as a bad length, not as "both epochs and total_steps"); a zero or
    empty schedule setting only switches that setting off."""
    if key not in _EXCLUSIVE:
        return False
    return value is not None if key in ("epochs", "total_steps") else bool(value)


def _apply(base: ExperimentConfig, overrides: Mapping[str, Any]) -> ExperimentConfig:
    unknown = sorted(set(overrides) - set(override_keys()))
    if unknown:
        raise ValueError(
            f"Unknown setting(s) {unknown}; valid settings: {', '.join(override_keys())}."
        )
    sections = {
        "model": {"name": base.model.name, "overrides": dict(base.model.overrides)},
        "optimization": dataclasses.asdict(base.optimization),
        "runtime": dataclasses.asdict(base.runtime),
        "data": dataclasses.asdict(base.data),
        "finetune": dataclasses.asdict(base.finetune),
    }
    flat = ("optimization", "runtime", "data", "finetune")
    for key, value in overrides.items():
        if key == "model":
            sections["model"]["name"] = value
        elif key == "model_overrides":
            sections["model"]["overrides"] = dict(value or {})
        else:
            for section in flat:
                if key in sections[section]:
                    sections[section][key] = value
            other = _EXCLUSIVE.get(key)
            if _clears_partner(key, value) and other not in overrides:
                for section in flat:
                    if other in sections[section]:
                        sections[section][other] = _CLEARED[other]
    return ExperimentConfig(
        model=ModelConfig(**sections["model"]),
        optimization=OptimizationConfig(**sections["optimization"]),
        runtime=RuntimeConfig(**sections["runtime"]),
        data=DataConfig(**sections["data"]),
        name=base.name,
        finetune=FinetuneConfig(**sections["finetune"]),
    )


def list_recipes():
    """The names of the recipes, sorted."""
    return sorted(RECIPES)


def recipe(name: str, **overrides) -> ExperimentConfig:
    """A named recipe with flat overrides applied.

    Args:
        name: str. A name from `list_recipes()`, e.g. `"cifar10_resnet20"`.
        **overrides: any setting (see the module docstring), e.g. `epochs=3`,
            `dataset="/data/cifar10"`, `model_dir="runs/r20"`.

    Returns:
        An `ExperimentConfig` named after the recipe.
    """
    from keras_resnets import validate

    validate.choice("recipe", name, list_recipes())
    return from_settings({**_without_cleared(RECIPES[name], overrides), **overrides}, name=name)


def from_settings(settings: Mapping[str, Any], name: str = "custom") -> ExperimentConfig:
    """An `ExperimentConfig` from flat settings over the defaults (one of `epochs` or
    `total_steps` is required)."""
    settings = dict(settings)
    if "epochs" not in settings and "total_steps" not in settings:
        raise ValueError(
            "Give the length of training: a recipe, or epochs or total_steps; "
            f"recipes: {', '.join(list_recipes())}."
        )
    base = ExperimentConfig(
        optimization=OptimizationConfig(epochs=1), data=DataConfig(), name=name
    )
    return _apply(base, settings)


def _without_cleared(base, overrides):
    """Drops the settings of `base` that an override's exclusive partner replaces."""
    cleared = {_EXCLUSIVE[key] for key, value in overrides.items() if _clears_partner(key, value)}
    return {key: value for key, value in base.items() if key not in cleared}
