"""Experiment settings as dataclasses, and the named recipes of the papers.

An `ExperimentConfig` holds five parts: `model` (a `training.model_config.ModelConfig`: a
registry name and overrides), `optimization` (a
`training.optimization_config.OptimizationConfig`: optimizer, learning-rate schedule, weight
decay, batch, length), `runtime` (strategy, mixed precision, XLA, model directory, seeds),
`data` (a `training.data_config.DataConfig`) and `finetune` (a
`training.finetune.FinetuneConfig`: first weights, frozen layers). `recipe(name, **overrides)`
returns a paper's recipe (the table of `training.recipes`) with any field replaced:

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
from training.optimization_config import (  # noqa: F401 (re-exported: API)
    OPTIMIZERS,
    SCHEDULES,
    WEIGHT_DECAY_MODES,
    OptimizationConfig,
)
from training.recipes import RECIPES

# The checks use `keras_resnets.validate`, imported where they run: importing keras_resnets loads
# Keras and TensorFlow, and the CLIs import this module before they quiet TensorFlow's logs.

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")
MIXED_PRECISION = ("none", "float16", "bfloat16")
JIT_COMPILE = ("auto", "true", "false")
CHECKPOINTS = ("best", "latest")
EXPORT_FORMATS = ("keras", "saved_model", "onnx", "litert")


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
