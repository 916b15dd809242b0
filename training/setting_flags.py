"""The training settings as command-line flags: those of `python -m training.fit`, which
`python -m tuning.search` also takes for every trial.

`define_flags` defines them; `settings_from_flags` reads the ones given on the command line as
the flat settings of `training.config` (`ExperimentConfig.replace`, `config.recipe`).
"""

import dataclasses
import json

from absl import flags

from training import config as config_lib

_OPTIMIZATION = {f.name: f.default for f in dataclasses.fields(config_lib.OptimizationConfig)}
_RUNTIME = {f.name: f.default for f in dataclasses.fields(config_lib.RuntimeConfig)}
_FINETUNE = {f.name: f.default for f in dataclasses.fields(config_lib.FinetuneConfig)}

_DATA_DEFAULTS = {  # training.data.DataConfig's defaults (a test checks that they agree)
    "dataset": "cifar10", "data_dir": None, "image_size": None, "augmentation": "auto",
    "normalization": "auto", "validation_images": 0, "cache": None, "shuffle_buffer": None,
    "skip_corrupt": False, "eval_crops": 1, "synthetic_examples": 1024, "num_classes": None,
    "max_train_examples": None, "max_test_examples": None,
}
DEFAULTS = {**_DATA_DEFAULTS, **_OPTIMIZATION, **_RUNTIME, **_FINETUNE, "freeze": [],
            "batch_size":
            _OPTIMIZATION["global_batch_size"], "recipe": None, "config": None,
            "model": "resnet20",
            "model_overrides": "{}", "decay_steps": [], "decay_epochs": [],
            "export_format": list(_RUNTIME["export_format"])}

# (kind, name, help[, choices]); the defaults come from the configs above.
_FLAGS = [
    ("string", "recipe", "A paper's recipe: " + ", ".join(config_lib.list_recipes())
     + ". Other flags given on the command line override it."),
    ("string", "config", "A JSON experiment config (a model directory's config.json, or one "
     "exported by python -m tuning.search); other flags override it, as for --recipe."),
    ("string", "model", "A model name from keras_resnets.list_models(), or custom: "
                        "keras_resnets.ResNet(**model_overrides)."),
    ("string", "model_overrides", "JSON object of keras_resnets.ResNet arguments, e.g. "
     "'{\"stage_widths\": [8, 16, 32], \"zero_init_residual\": true}'."),
    # Data (training.data.DataConfig).
    ("string", "dataset", "A TFDS name (cifar10, cifar100, imagenet2012, ...), the path of an "
     "image folder with train/ and test/ (or val/), or synthetic."),
    ("string", "data_dir", "TFDS data directory."),
    ("integer", "image_size", "Training image size; default: the data set's (32 for CIFAR, 224 "
     "for ImageNet)."),
    ("enum", "augmentation", "Training augmentation; auto picks by data set.",
     ["auto", "cifar", "imagenet", "inception", "none"]),
    ("enum", "normalization", "Input normalisation; auto picks by data set (or, with a "
     "pretrained --init_weights, the weights' own). imagenet, caffe and inception are the fixed "
     "statistics pretrained weights expect.",
     ["auto", "per_pixel_mean", "per_channel", "none", "imagenet", "caffe", "inception"]),
    ("integer", "validation_images", "Images carved from train for validation (5000 = the "
     "papers' 45k/5k CIFAR split)."),
    ("boolean", "cache", "Cache decoded images in memory; default: for small data sets."),
    ("integer", "shuffle_buffer", "Shuffle buffer; default: the pipeline's."),
    ("boolean", "skip_corrupt", "Skip unreadable images (and report how many) instead of "
     "failing."),
    ("integer", "eval_crops", "1 (centre crop) or 10 (ten-crop evaluation)."),
    ("integer", "synthetic_examples", "Training examples of --dataset=synthetic."),
    ("integer", "num_classes", "Classes of --dataset=synthetic (default: 10)."),
    ("integer", "max_train_examples", "Use at most this many training images."),
    ("integer", "max_test_examples", "Use at most this many test images."),
    # Optimisation.
    ("integer", "epochs", "Training length in epochs (replaces the recipe's total_steps)."),
    ("integer", "total_steps", "Training length in updates (replaces the recipe's epochs)."),
    ("integer", "batch_size", "Global batch size over all replicas; each replica gets "
     "batch_size / replicas."),
    ("float", "learning_rate", "Peak learning rate."),
    ("enum", "optimizer", "sgd (momentum), adamw or lamb.", list(config_lib.OPTIMIZERS)),
    ("float", "momentum", "SGD momentum, or beta_1 of adamw and lamb."),
    ("boolean", "nesterov", "Nesterov momentum (sgd)."),
    ("float", "beta_2", "Second-moment decay of adamw and lamb."),
    ("float", "epsilon", "Epsilon of adamw and lamb; default: Keras' (1e-7)."),
    ("float", "weight_decay", "Weight decay factor wd (see --weight_decay_mode)."),
    ("enum", "weight_decay_mode", "coupled: wd * w added to the gradient (L2, the papers); "
     "decoupled: w -= lr * wd * w apart from the gradient (AdamW); auto: coupled for sgd, "
     "decoupled for adamw and lamb.", list(config_lib.WEIGHT_DECAY_MODES)),
    ("boolean", "decay_bn_and_bias", "Also decay batch-norm parameters and biases "
     "(--nodecay_bn_and_bias: kernels only)."),
    ("float", "clip_global_norm", "Clip the gradients to this global L2 norm; default: no "
     "clipping."),
    ("float", "ema_decay", "Keep an exponential moving average of the weights and batch-norm "
     "statistics with this decay (e.g. 0.9999), evaluated and exported; default: none."),
    ("float", "label_smoothing", "Label smoothing of the cross-entropy."),
    ("enum", "schedule", "Learning-rate schedule.", list(config_lib.SCHEDULES)),
    ("list", "decay_steps", "Step-schedule boundaries in iterations, e.g. 32000,48000."),
    ("list", "decay_epochs", "Step-schedule boundaries in epochs, e.g. 30,60,80."),
    ("float", "decay_rate", "Factor of the step schedule at each boundary."),
    ("float", "warmup_epochs", "Linear warmup epochs (Goyal et al. 2017)."),
    ("float", "warmup_learning_rate", "Learning rate at the start of the linear warmup."),
    ("integer", "warm_start_steps", "Iterations at --warm_start_learning_rate before the "
     "schedule (400 for ResNet-110)."),
    ("float", "warm_start_learning_rate", "Learning rate of the warm start."),
    # Runtime.
    ("enum", "strategy", "Distribution strategy; multi_worker reads TF_CONFIG.",
     list(config_lib.STRATEGIES)),
    ("enum", "mixed_precision", "Mixed precision (float16 adds loss scaling).",
     list(config_lib.MIXED_PRECISION)),
    ("enum", "jit_compile", "XLA; auto compiles on GPU and TPU only.",
     list(config_lib.JIT_COMPILE)),
    ("integer", "cpu_devices", "Split the CPU into this many logical devices (mirrored training "
     "without GPUs); 0 leaves it alone."),
    ("string", "model_dir", "Directory for checkpoints, logs, results and the exported model; "
     "rerun with it to resume."),
    ("integer", "keep_checkpoints", "Latest checkpoints to keep (the best is kept apart)."),
    ("integer", "checkpoint_every_steps", "Also checkpoint every this many steps; 0: at epoch "
     "ends only."),
    ("integer", "eval_every_epochs", "Evaluate every this many epochs (and after the last)."),
    ("integer", "summary_every_steps", "TensorBoard training scalars every this many steps."),
    ("integer", "seed", "Seed of the initialisation and of the data order."),
    ("boolean", "deterministic", "Deterministic ops and input pipeline (reruns give the same "
     "weights)."),
    ("float", "max_loss", "Stop when the training loss exceeds this (or is not finite)."),
    ("integer", "verbose", "0 silent, 1 progress bar, 2 a line per epoch, 3 a line per epoch "
     "and TensorFlow's start-up log and INFO logging (hidden otherwise)."),
    ("boolean", "save_model", "Write the exports (--export_format) and class_names.json at the "
     "end."),
    ("list", "export_format", "What --save_model writes, each taking raw images and returning "
     "probabilities: keras (model.keras), saved_model, onnx (model.onnx), litert "
     "(model.tflite)."),
    ("boolean", "evaluate_test", "Evaluate the test split during training."),
    # Fine-tuning (training.finetune.FinetuneConfig).
    ("string", "init_weights", "Start from these weights: a pretrained tag (imagenet, "
     "torchvision, ...; see keras_resnets.list_weights()), a weights file (.weights.h5, .h5, "
     ".pth, .safetensors, .keras) or a training.fit model directory. A classifier of other "
     "classes (another count, or other names recorded by a source run) is re-initialised. "
     "Ignored when the run resumes."),
    ("list", "freeze", "Groups whose weights stay fixed: stem, stage1, stage2, ..."),
    ("string", "trainable_from", "Freeze every group before this one (stage3, ...; head: only "
     "the head trains)."),
    ("boolean", "freeze_bn", "Every batch norm in inference mode (statistics, scale and offset "
     "fixed)."),
    ("float", "head_lr_multiplier", "The classifier learns at this multiple of the learning "
     "rate."),
]


def define_flags(flag_values=flags.FLAGS):
    """Defines the flags of `python -m training.fit` in `flag_values`."""
    for kind, name, help_text, *choices in _FLAGS:
        define = getattr(flags, f"DEFINE_{kind}")
        arguments = (name, DEFAULTS[name], *choices, help_text)
        define(*arguments, flag_values=flag_values)


# Flag name -> setting name, where they differ.
_RENAMED = {"batch_size": "global_batch_size"}
_LISTS = {"decay_steps": int, "decay_epochs": float, "freeze": str}


def _setting_flags():
    names = set(config_lib.override_keys()) - {"global_batch_size"}
    return sorted(names | set(_RENAMED))


def settings_from_flags(flag_values=flags.FLAGS):
    """The flat settings given on the command line (flags left at their default are absent)."""
    settings = {}
    for name in _setting_flags():
        if name not in flag_values or not flag_values[name].present:
            continue
        value = flag_values[name].value
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
