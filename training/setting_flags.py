"""The training settings as command-line flags: those of `python -m training.fit`, which
`python -m tuning.search` also takes for every trial.

`define_flags` defines them: one per field of `DataConfig`, `OptimizationConfig`,
`RuntimeConfig` and `FinetuneConfig`, generated from the field (`training.field_flags`) but for
the few listed here, and `--recipe`, `--config`, `--model` and `--model_overrides`.
`settings_from_flags` reads the ones given on the command line as the flat settings of
`training.config` (`ExperimentConfig.replace`, `config.recipe`).
"""

import dataclasses
import json

from absl import flags

from training import config as config_lib
from training import field_flags, recipes
from training.data_config import SHARED_WITH_RUNTIME, DataConfig
from training.finetune import FinetuneConfig

# The flags that are not one field each (--recipe, --config, the model's) or that need more than
# the field says: a flag renamed (--batch_size), an enum whose values are a module constant of
# training.config, and lists parsed apart (absl list flags; the config checks their items).
# (kind, name, help[, choices]); the defaults are the fields' (_explicit_default).
_FLAGS = [
    ("string", "recipe", "A paper's recipe (name: source, and where it departs from it):\n  "
     + "\n  ".join(recipes.help_lines())
     + "\nOther flags given on the command line override it."),
    ("string", "config", "A JSON experiment config (a model directory's config.json, or one "
     "exported by python -m tuning.search); other flags override it, as for --recipe."),
    ("string", "model", "A model name from keras_resnets.list_models(), or custom: "
                        "keras_resnets.ResNet(**model_overrides)."),
    ("string", "model_overrides", "JSON object of keras_resnets.ResNet arguments, e.g. "
     "'{\"stage_widths\": [8, 16, 32], \"zero_init_residual\": true}'."),
    # Optimisation.
    ("integer", "batch_size", "Global batch size over all replicas; each replica gets "
     "batch_size / replicas."),
    ("enum", "optimizer", "sgd (momentum), adamw or lamb.", list(config_lib.OPTIMIZERS)),
    ("enum", "weight_decay_mode", "coupled: wd * w added to the gradient (L2, the papers); "
     "decoupled: w -= lr * wd * w apart from the gradient (AdamW); auto: coupled for sgd, "
     "decoupled for adamw and lamb.", list(config_lib.WEIGHT_DECAY_MODES)),
    ("enum", "schedule", "Learning-rate schedule.", list(config_lib.SCHEDULES)),
    ("list", "decay_steps", "Step-schedule boundaries in iterations, e.g. 32000,48000."),
    ("list", "decay_epochs", "Step-schedule boundaries in epochs, e.g. 30,60,80."),
    # Runtime.
    ("enum", "strategy", "Distribution strategy; multi_worker reads TF_CONFIG.",
     list(config_lib.STRATEGIES)),
    ("enum", "mixed_precision", "Mixed precision (float16 adds loss scaling).",
     list(config_lib.MIXED_PRECISION)),
    ("enum", "jit_compile", "XLA; auto compiles on GPU and TPU only.",
     list(config_lib.JIT_COMPILE)),
    ("list", "export_format", "What --save_model writes, each taking raw images and returning "
     "probabilities: keras (model.keras), saved_model, onnx (model.onnx), litert "
     "(model.tflite)."),
    # Fine-tuning (training.finetune.FinetuneConfig).
    ("list", "freeze", "Groups whose weights stay fixed: stem, stage1, stage2, ..."),
]
_EXPLICIT = {name for _, name, *_ in _FLAGS}
# Every other field of these configs is a generated flag (training.field_flags): its name,
# default and help (metadata["help"], else its docstring entry) come from the field. Skipped:
# the explicit flags, global_batch_size (--batch_size) and the data's seed and deterministic,
# which the runtime's flags of the same name set.
_GENERATED = {
    DataConfig: _EXPLICIT | set(SHARED_WITH_RUNTIME),
    config_lib.OptimizationConfig: _EXPLICIT | {"global_batch_size"},
    config_lib.RuntimeConfig: _EXPLICIT,
    FinetuneConfig: _EXPLICIT,
}
_FIELD_FLAGS = {spec.flag: spec for cls, skip in _GENERATED.items()
                for spec in field_flags.field_flags(cls, skip)}

# Flag name -> setting name, where they differ.
_RENAMED = {"batch_size": "global_batch_size",
            **{name: spec.field for name, spec in _FIELD_FLAGS.items() if name != spec.field}}
_FIELD_DEFAULTS = {field.name: field.default for cls in _GENERATED
                   for field in dataclasses.fields(cls)}
_OWN_DEFAULTS = {"recipe": None, "config": None, "model": "resnet20", "model_overrides": "{}"}


def _explicit_default(kind, name):
    """An explicit flag's default: its field's (a list flag's as a list), or its own."""
    if name in _OWN_DEFAULTS:
        return _OWN_DEFAULTS[name]
    default = _FIELD_DEFAULTS[_RENAMED.get(name, name)]
    return list(default) if kind == "list" else default


DEFAULTS = {**{name: _explicit_default(kind, name) for kind, name, *_ in _FLAGS},
            **{name: spec.default for name, spec in _FIELD_FLAGS.items()}}


def define_flags(flag_values=flags.FLAGS):
    """Defines the flags of `python -m training.fit` in `flag_values`."""
    for kind, name, help_text, *choices in _FLAGS:
        define = getattr(flags, f"DEFINE_{kind}")
        arguments = (name, DEFAULTS[name], *choices, help_text)
        define(*arguments, flag_values=flag_values)
    for cls, skip in _GENERATED.items():
        field_flags.define(cls, flag_values, skip)
    for name in _FIELD_FLAGS:  # defined in field_flags: key flags here, so `--help` lists them
        flags.declare_key_flag(name, flag_values=flag_values)


_LISTS = {"decay_steps": int, "decay_epochs": float, "freeze": str}
_SETTING_FLAGS = sorted(set(DEFAULTS) - {"recipe", "config"})


def settings_from_flags(flag_values=flags.FLAGS):
    """The flat settings given on the command line (flags left at their default are absent)."""
    settings = {}
    for name in _SETTING_FLAGS:
        if name not in flag_values or not flag_values[name].present:
            continue
        value = flag_values[name].value
        if name in _FIELD_FLAGS:
            value = field_flags.parse(_FIELD_FLAGS[name], value)
        if name in _LISTS:
            try:
                value = tuple(_LISTS[name](item) for item in value)
            except ValueError:
                raise ValueError(
                    f"--{name} must be a comma-separated list of numbers; got "
                    f"{','.join(value)!r}.") from None
        if name == "export_format":
            value = ",".join(value)  # the config splits and checks it
        if name == "model_overrides":
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"--model_overrides is not valid JSON ({error}).") from None
            if not isinstance(value, dict):
                raise ValueError(f"--model_overrides must be a JSON object; got {value!r}.")
            value = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
        settings[_RENAMED.get(name, name)] = value
    return settings
