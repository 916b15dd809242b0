"""Experiment settings as dataclasses, and the named recipes of the papers.

An `ExperimentConfig` holds five parts: `model` (a registry name and overrides), `optimization`
(SGD, learning-rate schedule, weight decay, batch, length), `runtime` (strategy, mixed precision,
XLA, model directory, seeds), `data` (a `training.data_config.DataConfig`) and `finetune` (a
`training.finetune.FinetuneConfig`: first weights, frozen layers). `recipe(name, **overrides)`
returns a paper's recipe with any field replaced:

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
import numbers
from typing import Any, Dict, Mapping, Optional, Tuple

from training.data_config import DataConfig
from training.finetune import FinetuneConfig

SCHEDULES = ("step", "cosine", "constant")
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")
MIXED_PRECISION = ("none", "float16", "bfloat16")
JIT_COMPILE = ("auto", "true", "false")
CHECKPOINTS = ("best", "latest")
EXPORT_FORMATS = ("keras", "saved_model", "onnx", "litert")


def _choice(argument, value, choices):
    if value not in choices:
        raise ValueError(f"{argument} must be one of {list(choices)}; got {value!r}.")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _positive_int(argument, value):
    if not _is_int(value) or value < 1:
        raise ValueError(f"{argument} must be a positive integer; got {value!r}.")


def _non_negative_int(argument, value):
    if not _is_int(value) or value < 0:
        raise ValueError(f"{argument} must be a non-negative integer; got {value!r}.")


def _number_in(argument, value, low, high, low_open=False, high_open=False):
    ok = _is_number(value) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high
        )
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise ValueError(f"{argument} must be a number in {interval}; got {value!r}.")


def _increasing(argument, values, kind):
    values = tuple(values)
    for value in values:
        if kind is int:
            _positive_int(f"{argument} entries", value)
        else:
            _number_in(f"{argument} entries", value, 0, math.inf, low_open=True)
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"{argument} must be strictly increasing; got {values!r}.")
    return tuple(int(v) if kind is int else float(v) for v in values)


CUSTOM_MODEL = "custom"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which network to train.

    Args:
        name: str. A name from `keras_resnets.list_models()`, e.g. `"resnet20"` or
            `"resnext29_8x64d"`, or `"custom"`: `keras_resnets.ResNet(**overrides)` (a point
            of a search, say). Defaults to `"resnet20"`.
        overrides: dict. Arguments of `keras_resnets.ResNet` that replace the registry's, e.g.
            `{"stage_widths": (4, 8, 16)}`, `{"zero_init_residual": True}` or
            `{"overrides": {"*_bn": {"synchronized": True}}}` (cross-replica batch norm). The
            number of classes and the input shape come from the data set. Defaults to `{}`.

    Example:

    >>> ModelConfig("resnet56").build(num_classes=100, image_shape=(32, 32, 3)).output_shape
    (None, 100)
    """

    name: str = "resnet20"
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        import keras_resnets

        names = keras_resnets.list_models() + [CUSTOM_MODEL]
        if self.name not in names:
            raise ValueError(f"model must be one of {names}; got {self.name!r}.")
        if not isinstance(self.overrides, Mapping):
            raise ValueError(
                f"model_overrides must be a dict of keras_resnets.ResNet arguments; "
                f"got {self.overrides!r}."
            )
        reserved = sorted({"classes", "input_shape", "include_top", "name"} & set(self.overrides))
        if reserved:
            raise ValueError(
                f"model_overrides may not set {reserved}: the classes and input shape come from "
                "the data set, and a trained classifier needs include_top."
            )
        if self.overrides.get("data_format", "channels_last") != "channels_last":
            raise ValueError(
                "model_overrides may not set data_format="
                f"{self.overrides['data_format']!r}: training's input pipeline gives "
                "channels-last images (batch, height, width, channels).")
        # JSON gives lists; keras_resnets takes tuples (and equal configs compare equal).
        object.__setattr__(self, "overrides", {
            k: tuple(v) if isinstance(v, list) else v for k, v in self.overrides.items()})

    def architecture(self):
        """The network these settings build (a `keras_resnets.builder.Architecture`): what
        the model is, whatever its registry name and overrides."""
        from keras_resnets import builder, registry

        if self.name != CUSTOM_MODEL:
            return registry.architecture_of(self.name, **self.overrides)
        return builder.resolve_architecture(**{
            key: value for key, value in self.overrides.items()
            if key in registry.ARCHITECTURE_ARGUMENTS})

    def model_name(self) -> str:
        """The name of the model these settings build (`keras_resnets.registry.model_name`):
        a registry name, or one that states the architecture."""
        from keras_resnets import registry

        if self.name == CUSTOM_MODEL:
            return registry.name_for(self.architecture())
        return registry.model_name(self.name, **self.overrides)

    def build(self, num_classes: int, image_shape):
        """Builds the model for a data set of `num_classes` classes and `image_shape` images.

        The model is named after its architecture (`keras_resnets.registry.model_name`):
        `resnet20` with `{"depth": 56}` is `resnet56`, a custom model gets a registry name or
        a descriptive one."""
        import keras_resnets

        # The pipeline's images are channels-last whatever keras.config.image_data_format() says.
        arguments = {"data_format": "channels_last", **self.overrides,
                     "classes": int(num_classes), "input_shape": tuple(image_shape)}
        if self.name == CUSTOM_MODEL:
            return keras_resnets.ResNet(name=self.model_name(), **arguments)
        return keras_resnets.get_model(self.name, **arguments)


@dataclasses.dataclass(frozen=True)
class OptimizationConfig:
    """SGD, the learning-rate schedule, regularisation and the length of training.

    The learning rate of step `s` (0-based updates) is `learning_rate * decay_rate**k` with `k` the
    number of boundaries `<= s`; the papers divide by 10 "at 32k iterations": update 32000 is the
    first at the lower rate. Give the boundaries in iterations (`decay_steps`, the CIFAR papers) or
    in epochs (`decay_epochs`, ImageNet), not both. Training stops after `epochs` epochs or
    `total_steps` updates (exactly one of them).

    Args:
        global_batch_size: int. Images per update over all replicas; each replica gets
            `global_batch_size / replicas`. Defaults to `128`.
        learning_rate: float. The peak learning rate. Defaults to `0.1`.
        momentum: float. SGD momentum. Defaults to `0.9`.
        nesterov: bool. Nesterov momentum. Defaults to `False`.
        weight_decay: float. L2 weight decay as in the papers (Caffe and Torch): adds
            `weight_decay * w` to the gradient of every decayed weight, i.e.
            `weight_decay / 2 * ||w||^2` to the loss. Defaults to `1e-4`.
        decay_bn_and_bias: bool. Whether batch-norm scales and offsets and biases are decayed too
            (the papers' code decays every weight); `False` decays only convolution and dense
            kernels (Goyal et al. 2017, TF Model Garden). Defaults to `True`.
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
        warm_start_learning_rate: float. Defaults to `0.01`.
        epochs: int or `None`. Length of training in epochs.
        total_steps: int or `None`. Length of training in updates (the papers' "stop at 64k").
    """

    global_batch_size: int = 128
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    decay_bn_and_bias: bool = True
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
        _positive_int("batch_size", self.global_batch_size)
        _number_in("learning_rate", self.learning_rate, 0, math.inf, low_open=True)
        _number_in("momentum", self.momentum, 0, 1, high_open=True)
        if not isinstance(self.nesterov, bool):
            raise ValueError(f"nesterov must be True or False; got {self.nesterov!r}.")
        _number_in("weight_decay", self.weight_decay, 0, math.inf)
        if not isinstance(self.decay_bn_and_bias, bool):
            raise ValueError(
                f"decay_bn_and_bias must be True or False; got {self.decay_bn_and_bias!r}."
            )
        _number_in("label_smoothing", self.label_smoothing, 0, 1, high_open=True)
        _choice("schedule", self.schedule, SCHEDULES)
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
        _number_in("decay_rate", self.decay_rate, 0, 1, low_open=True)
        _number_in("warmup_epochs", self.warmup_epochs, 0, math.inf)
        _number_in("warmup_learning_rate", self.warmup_learning_rate, 0, math.inf)
        _non_negative_int("warm_start_steps", self.warm_start_steps)
        _number_in(
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
            _positive_int("epochs", self.epochs)
        else:
            _positive_int("total_steps", self.total_steps)

    def steps(self, steps_per_epoch: int) -> int:
        """The total number of updates, given the updates per epoch."""
        _positive_int("steps_per_epoch", steps_per_epoch)
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
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        if isinstance(self.jit_compile, bool):
            object.__setattr__(self, "jit_compile", "true" if self.jit_compile else "false")
        _choice("jit_compile", self.jit_compile, JIT_COMPILE)
        _non_negative_int("cpu_devices", self.cpu_devices)
        if self.model_dir is not None and not isinstance(self.model_dir, str):
            object.__setattr__(self, "model_dir", str(self.model_dir))
        if self.model_dir == "":
            raise ValueError("model_dir must be a directory path or None; got ''.")
        _positive_int("keep_checkpoints", self.keep_checkpoints)
        _non_negative_int("checkpoint_every_steps", self.checkpoint_every_steps)
        _positive_int("eval_every_epochs", self.eval_every_epochs)
        _positive_int("summary_every_steps", self.summary_every_steps)
        _non_negative_int("seed", self.seed)
        if not isinstance(self.deterministic, bool):
            raise ValueError(f"deterministic must be True or False; got {self.deterministic!r}.")
        _number_in("max_loss", self.max_loss, 0, math.inf, low_open=True)
        _choice("verbose", self.verbose, (0, 1, 2, 3))
        for name in ("save_model", "evaluate_test"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}.")
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
_SHARED = ("seed", "deterministic")  # runtime and data both take these


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


# The papers' recipes, as flat settings (data, not code); each cites its source below.
_CIFAR = dict(
    dataset="cifar10", validation_images=5000, global_batch_size=128, learning_rate=0.1,
    momentum=0.9, weight_decay=1e-4, schedule="step",
)
# He et al. 2015, Section 4.2: /10 at 32k and 48k iterations, stop at 64k (on a 45k/5k split).
_CIFAR_STEPS = dict(_CIFAR, decay_steps=(32000, 48000), total_steps=64000)
# ResNet-110/1202 (He et al. 2015) and the deep pre-activation nets (He et al. 2016): 0.01 for
# the first 400 iterations, then 0.1.
_WARM_START = dict(warm_start_steps=400, warm_start_learning_rate=0.01)
# Xie et al. 2016, Section 6: 300 epochs, /10 at 150 and 225, weight decay 5e-4, all 50k images.
_CIFAR_RESNEXT = dict(
    _CIFAR, validation_images=0, weight_decay=5e-4, decay_epochs=(150, 225), epochs=300
)
# He et al. 2015, Section 3.4: batch 256, lr 0.1 /10 every 30 epochs, 90 epochs, scale augmentation.
_IMAGENET = dict(
    dataset="imagenet2012", augmentation="imagenet", global_batch_size=256, learning_rate=0.1,
    momentum=0.9, weight_decay=1e-4, schedule="step", decay_epochs=(30, 60), epochs=90,
)
# Xie et al. 2016, Section 5.1: random-resized crops (fb.resnet.torch), lr /10 three times.
_IMAGENET_RESNEXT = dict(_IMAGENET, augmentation="inception", decay_epochs=(30, 60, 90), epochs=120)
# Goyal et al. 2017 and TF Model Garden's ResNet-50: linear scaling 0.1 x 2048 / 256, 5 warmup
# epochs, label smoothing, no decay on batch norm and biases, zero-initialised residual branches.
_LARGE_BATCH = dict(
    _IMAGENET, augmentation="inception", global_batch_size=2048, learning_rate=0.8,
    warmup_epochs=5.0, label_smoothing=0.1, schedule="cosine", decay_epochs=(30, 60, 80),
    decay_bn_and_bias=False, model_overrides={"zero_init_residual": True},
)
# Fine-tuning an ImageNet ResNet-50 on a user's image folder (--dataset=PATH) at 224 px, after
# the transfer recipes of Kolesnikov et al. 2020 (BiT-HyperRule: SGD with momentum, a low
# learning rate, a short schedule with warmup) and Kornblith et al. 2019 (label smoothing, a
# new classifier): torchvision's ImageNet weights (its default, IMAGENET1K_V2: 80.9% top-1,
# against 74.9% for keras.applications' "imagenet"), 10 epochs of cosine decay after a 1-epoch
# warmup, a 10x learning rate for the new classifier, kernels-only weight decay, scale
# augmentation (images of any size are resized and cropped to 224).
_FINETUNE = dict(
    model="resnet50", init_weights="torchvision", image_size=224, augmentation="imagenet",
    global_batch_size=64, learning_rate=0.01, momentum=0.9, weight_decay=1e-4,
    decay_bn_and_bias=False, label_smoothing=0.1, schedule="cosine", warmup_epochs=1.0,
    epochs=10, head_lr_multiplier=10.0,
)

RECIPES: Dict[str, Dict[str, Any]] = {
    **{f"cifar10_resnet{d}": dict(_CIFAR_STEPS, model=f"resnet{d}",
                                  **(_WARM_START if d in (110, 1202) else {}))
       for d in (20, 32, 44, 56, 110, 1202)},
    **{f"cifar10_preact_resnet{d}": dict(_CIFAR_STEPS, model=f"preact_resnet{d}", **_WARM_START)
       for d in (110, 164, 1001)},
    # He et al. 2016, Table 3 reports CIFAR-100 for pre-activation ResNet-164 and 1001.
    **{f"cifar100_preact_resnet{d}": dict(_CIFAR_STEPS, dataset="cifar100",
                                          model=f"preact_resnet{d}", **_WARM_START)
       for d in (164, 1001)},
    # Xie et al. 2016, Table 7 reports ResNeXt-29 on both CIFAR-10 and CIFAR-100.
    **{f"cifar{k}_resnext29_{c}x64d": dict(_CIFAR_RESNEXT, dataset=f"cifar{k}",
                                           model=f"resnext29_{c}x64d")
       for k in (10, 100) for c in (8, 16)},
    **{f"imagenet_resnet{d}": dict(_IMAGENET, model=f"resnet{d}") for d in (18, 34, 50, 101, 152)},
    **{f"imagenet_resnext{n}": dict(_IMAGENET_RESNEXT, model=f"resnext{n}")
       for n in ("50_32x4d", "101_32x4d", "101_64x4d")},
    "imagenet_resnet50_large_batch": dict(_LARGE_BATCH, model="resnet50"),
    "finetune": _FINETUNE,
}


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
    if name not in RECIPES:
        raise ValueError(f"recipe must be one of {list_recipes()}; got {name!r}.")
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
