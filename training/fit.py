r"""`python -m training.fit`: trains a ResNet from a recipe and flags.

`--recipe` alone is a complete run of a paper's recipe; every other flag given on the command line
overrides the recipe (the defaults shown by `--help` apply without `--recipe`):

    python -m training.fit --recipe=cifar10_resnet20 --dataset=../shared/data/cifar10 \
        --model_dir=runs/resnet20
    python -m training.fit --recipe=imagenet_resnet50 --data_dir=~/tensorflow_datasets \
        --mixed_precision=float16 --model_dir=runs/resnet50
    python -m training.fit --model=resnet56 --dataset=cifar100 --epochs=10 --batch_size=64

Rerunning the same command resumes from the model directory's latest checkpoint. A bad flag exits
with code 2 and one line on stderr; a diverging run exits with code 1.
"""

import dataclasses
import json
import sys

from absl import app, flags

from training import cli
from training import config as config_lib

PROGRAM = "training.fit"
_OPTIMIZATION = {f.name: f.default for f in dataclasses.fields(config_lib.OptimizationConfig)}
_RUNTIME = {f.name: f.default for f in dataclasses.fields(config_lib.RuntimeConfig)}

# Model and recipe.
flags.DEFINE_string("recipe", None, "A paper's recipe: " + ", ".join(config_lib.list_recipes())
                    + ". Other flags given on the command line override it.")
flags.DEFINE_string("model", "resnet20", "A model name from keras_resnets.list_models().")
flags.DEFINE_string("model_overrides", "{}", "JSON dict of keras_resnets.ResNet arguments, e.g. "
                    "'{\"stage_widths\": [8, 16, 32], \"zero_init_residual\": true}'.")
# Data (training.data.DataConfig).
flags.DEFINE_string("dataset", "cifar10", "A TFDS name (cifar10, cifar100, imagenet2012, ...), "
                    "the path of an image folder with train/ and test/ (or val/), or synthetic.")
flags.DEFINE_string("data_dir", None, "TFDS data directory.")
flags.DEFINE_integer("image_size", None, "Training image size; default: the data set's "
                     "(32 for CIFAR, 224 for ImageNet).")
flags.DEFINE_enum("augmentation", "auto", ["auto", "cifar", "imagenet", "inception", "none"],
                  "Training augmentation; auto picks by data set.")
flags.DEFINE_enum("normalization", "auto", ["auto", "per_pixel_mean", "per_channel", "none"],
                  "Input normalisation; auto picks by data set.")
flags.DEFINE_integer("validation_images", 0, "Images carved from train for validation "
                     "(5000 = the papers' 45k/5k CIFAR split).")
flags.DEFINE_boolean("cache", None, "Cache decoded images in memory; default: for small data "
                     "sets.")
flags.DEFINE_integer("shuffle_buffer", None, "Shuffle buffer; default: the pipeline's.")
flags.DEFINE_boolean("skip_corrupt", False, "Skip unreadable images (and report how many) "
                     "instead of failing.")
flags.DEFINE_integer("eval_crops", 1, "1 (centre crop) or 10 (ten-crop evaluation).")
flags.DEFINE_integer("synthetic_examples", 1024, "Training examples of --dataset=synthetic.")
flags.DEFINE_integer("num_classes", None, "Classes of --dataset=synthetic (default: 10).")
flags.DEFINE_integer("max_train_examples", None, "Use at most this many training images.")
flags.DEFINE_integer("max_test_examples", None, "Use at most this many test images.")
# Optimisation.
flags.DEFINE_integer("epochs", None, "Training length in epochs (replaces the recipe's "
                     "total_steps).")
flags.DEFINE_integer("total_steps", None, "Training length in updates (replaces the recipe's "
                     "epochs).")
flags.DEFINE_integer("batch_size", _OPTIMIZATION["global_batch_size"],
                     "Global batch size over all replicas; each replica gets batch_size / "
                     "replicas.")
flags.DEFINE_float("learning_rate", _OPTIMIZATION["learning_rate"], "Peak learning rate.")
flags.DEFINE_float("momentum", _OPTIMIZATION["momentum"], "SGD momentum.")
flags.DEFINE_boolean("nesterov", _OPTIMIZATION["nesterov"], "Nesterov momentum.")
flags.DEFINE_float("weight_decay", _OPTIMIZATION["weight_decay"], "L2 weight decay (added to "
                   "the gradient as weight_decay * w, as in the papers).")
flags.DEFINE_boolean("decay_bn_and_bias", _OPTIMIZATION["decay_bn_and_bias"], "Also decay "
                     "batch-norm parameters and biases (--nodecay_bn_and_bias: kernels only).")
flags.DEFINE_float("label_smoothing", _OPTIMIZATION["label_smoothing"], "Label smoothing.")
flags.DEFINE_enum("schedule", _OPTIMIZATION["schedule"], list(config_lib.SCHEDULES),
                  "Learning-rate schedule.")
flags.DEFINE_list("decay_steps", [], "Step-schedule boundaries in iterations, e.g. 32000,48000.")
flags.DEFINE_list("decay_epochs", [], "Step-schedule boundaries in epochs, e.g. 30,60,80.")
flags.DEFINE_float("decay_rate", _OPTIMIZATION["decay_rate"], "Factor at each boundary.")
flags.DEFINE_float("warmup_epochs", _OPTIMIZATION["warmup_epochs"], "Linear warmup epochs.")
flags.DEFINE_float("warmup_learning_rate", _OPTIMIZATION["warmup_learning_rate"],
                   "Learning rate at the start of the linear warmup.")
flags.DEFINE_integer("warm_start_steps", _OPTIMIZATION["warm_start_steps"], "Iterations at "
                     "--warm_start_learning_rate before the schedule (400 for ResNet-110).")
flags.DEFINE_float("warm_start_learning_rate", _OPTIMIZATION["warm_start_learning_rate"],
                   "Learning rate of the warm start.")
# Runtime.
flags.DEFINE_enum("strategy", _RUNTIME["strategy"], list(config_lib.STRATEGIES),
                  "Distribution strategy; multi_worker reads TF_CONFIG.")
flags.DEFINE_enum("mixed_precision", _RUNTIME["mixed_precision"],
                  list(config_lib.MIXED_PRECISION), "Mixed precision (float16 adds loss scaling).")
flags.DEFINE_enum("jit_compile", _RUNTIME["jit_compile"], list(config_lib.JIT_COMPILE),
                  "XLA; auto compiles on GPU and TPU only.")
flags.DEFINE_integer("cpu_devices", _RUNTIME["cpu_devices"], "Split the CPU into this many "
                     "logical devices (mirrored training without GPUs); 0 leaves it alone.")
flags.DEFINE_string("model_dir", _RUNTIME["model_dir"], "Directory for checkpoints, logs, "
                    "results and the exported model; rerun with it to resume.")
flags.DEFINE_integer("keep_checkpoints", _RUNTIME["keep_checkpoints"],
                     "Latest checkpoints to keep (the best is kept apart).")
flags.DEFINE_integer("checkpoint_every_steps", _RUNTIME["checkpoint_every_steps"],
                     "Also checkpoint every this many steps; 0: at epoch ends only.")
flags.DEFINE_integer("eval_every_epochs", _RUNTIME["eval_every_epochs"],
                     "Evaluate every this many epochs (and after the last).")
flags.DEFINE_integer("summary_every_steps", _RUNTIME["summary_every_steps"],
                     "TensorBoard training scalars every this many steps.")
flags.DEFINE_integer("seed", _RUNTIME["seed"], "Seed of the initialisation and data order.")
flags.DEFINE_boolean("deterministic", _RUNTIME["deterministic"],
                     "Deterministic ops and input pipeline (reruns give the same weights).")
flags.DEFINE_float("max_loss", _RUNTIME["max_loss"], "Stop when the loss exceeds this.")
flags.DEFINE_integer("verbose", _RUNTIME["verbose"], "0 silent, 1 progress bar, 2 a line per "
                     "epoch.")
flags.DEFINE_boolean("save_model", _RUNTIME["save_model"], "Write model.keras and saved_model/ "
                     "at the end.")

FLAGS = flags.FLAGS

# Flag name -> setting name, where they differ.
_RENAMED = {"batch_size": "global_batch_size"}
_LISTS = {"decay_steps": int, "decay_epochs": float}


def _setting_flags():
    names = set(config_lib.override_keys()) - {"global_batch_size"}
    return sorted(names | set(_RENAMED))


def settings_from_flags(flag_values=FLAGS):
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


def config_from_flags(flag_values=FLAGS) -> config_lib.ExperimentConfig:
    """The `ExperimentConfig` of the command line: the recipe (if any) with the flags given."""
    settings = settings_from_flags(flag_values)
    if flag_values.recipe is not None:
        return config_lib.recipe(flag_values.recipe, **settings)
    if "model" not in settings:
        settings["model"] = flag_values.model
    return config_lib.from_settings(settings)


def main(argv):
    if len(argv) > 1:
        cli.fail(PROGRAM, f"unexpected arguments {argv[1:]}; every setting is a --flag.")
    cli.quiet_logs()
    with cli.captured_stderr() as captured:
        try:
            experiment = config_from_flags()
            from training import trainer

            run = trainer.Trainer(experiment)
        except (ValueError, TypeError) as error:
            captured.discard()
            usage_error = error
        else:
            usage_error = None
    if usage_error is not None:
        cli.fail(PROGRAM, usage_error)
    captured.replay()
    try:
        run.fit()
    except trainer.TrainingDiverged as error:
        sys.stderr.write(f"{PROGRAM}: {error}\n")
        sys.exit(1)


def run_main():
    """The console entry point."""
    app.run(main, flags_parser=cli.flags_parser(PROGRAM))


if __name__ == "__main__":
    run_main()
