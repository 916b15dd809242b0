r"""`python -m training.fit`: trains a ResNet from a recipe and flags.

`--recipe` alone is a complete run of a paper's recipe; every other flag given on the command line
overrides the recipe (the defaults shown by `--help` apply without `--recipe`):

    python -m training.fit --recipe=cifar10_resnet20 --dataset=../shared/data/cifar10 \
        --model_dir=runs/resnet20
    python -m training.fit --recipe=imagenet_resnet50 --data_dir=~/tensorflow_datasets \
        --mixed_precision=float16 --model_dir=runs/resnet50
    python -m training.fit --model=resnet56 --dataset=cifar100 --epochs=10 --batch_size=64
    python -m training.fit --config=tuning_runs/search/export/best_1.json --epochs=180
    python -m training.fit --recipe=finetune --dataset=~/photos --model_dir=runs/photos
    python -m training.fit --model=resnet20 --dataset=../shared/data/cifar10 --epochs=5 \
        --init_weights=runs/resnet20 --trainable_from=stage3 --model_dir=runs/finetuned
    python -m training.fit --backend=jax --model=resnet20 --dataset=synthetic --epochs=2

`--backend` (default: `KERAS_BACKEND`, else tensorflow) picks the Keras backend before Keras is
imported (`training.backends`): tensorflow trains with the package's loop (`training.trainer`),
jax and torch with Keras' `model.fit` (`training.keras_loop`); a setting that exists only on
TensorFlow (a tf.distribute strategy, `--cpu_devices`, a SavedModel export) exits with code 2.
On jax, `--strategy=auto` trains data-parallel over every device, and `--coordinator_address`,
`--num_processes` and `--process_id` join several processes (hosts) into one run
(`training.jax_distribution`).
`--input_pipeline` (default: `KERAS_RESNETS_INPUT_PIPELINE`, else auto) picks tf.data or, where
TensorFlow is not installed, the NumPy pipeline of `training.numpy_data` (`training.loaders`).

Rerunning the same command resumes from the model directory's latest checkpoint. A bad flag, a
model directory in use by another run or not writable, or a failed write (a full disk) exits
with code 2 and one line on stderr; a diverging run exits with code 1; SIGINT / SIGTERM save a
checkpoint of the current step and exit with 130 / 143.
"""

import json
import os

from absl import app, flags

from training import backends, cli, jax_distribution, loaders, setting_flags
from training import config as config_lib
from training.setting_flags import settings_from_flags

PROGRAM = "training.fit"
FLAGS = flags.FLAGS


def config_from_flags(flag_values=FLAGS) -> config_lib.ExperimentConfig:
    """The `ExperimentConfig` of the command line: the recipe (if any) with the flags given."""
    settings = settings_from_flags(flag_values)
    path = flag_values["config"].value
    if path is not None:
        if flag_values["recipe"].value is not None:
            raise ValueError("Give --recipe or --config, not both.")
        try:
            with open(path) as file:
                base = config_lib.ExperimentConfig.from_dict(json.load(file))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"--config={path!r} is not a readable experiment config: "
                             f"{error}") from None
        return base.replace(**settings)
    if flag_values["recipe"].value is not None:
        return config_lib.recipe(flag_values["recipe"].value, **settings)
    if "model" not in settings:
        settings["model"] = flag_values["model"].value
    return config_lib.from_settings(settings)


def main(argv):
    if len(argv) > 1:
        cli.fail(PROGRAM, f"unexpected arguments {argv[1:]}; every setting is a --flag.")
    debug = FLAGS.verbose == 3
    cli.quiet_logs(debug)

    def set_up():
        backend = backends.select(FLAGS.backend)  # before anything imports Keras
        jax_distribution.apply_flags(backend)
        if FLAGS.input_pipeline:  # read by training.loaders.make_pipeline
            os.environ[loaders.ENVIRONMENT] = FLAGS.input_pipeline
        if backend == "tensorflow" and loaders.input_pipeline() == "numpy":
            raise ValueError("input_pipeline='numpy' feeds the jax and torch backends; the "
                             "tensorflow backend's loop reads tf.data (use input_pipeline="
                             "'tf_data' or 'auto').")
        config = backends.for_backend(config_from_flags(), backend,
                                      FLAGS["export_format"].present)
        if backend != "tensorflow":
            from training import keras_loop

            return keras_loop.KerasTrainer(config)
        from training import trainer

        return trainer.Trainer(config)

    run = cli.set_up_or_fail(PROGRAM, set_up, native_logs=debug)
    from training.image_folders import CorruptImageError
    from training.interrupts import TrainingDiverged, TrainingInterrupted
    from training.outputs import RunDirectoryError

    try:
        run.fit()
    except TrainingDiverged as error:
        cli.stop(PROGRAM, error, 1)
    except TrainingInterrupted as error:
        cli.stop(PROGRAM, error, error.exit_code)
    except (RunDirectoryError, CorruptImageError) as error:
        cli.fail(PROGRAM, error)


def define_flags(flag_values=FLAGS) -> None:
    """Defines every flag of `python -m training.fit` in `flag_values`: the settings
    (`training.setting_flags`), and the process settings that are no config field:
    `--backend`, the JAX process flags (they differ between processes) and `--input_pipeline`."""
    setting_flags.define_flags(flag_values)
    backends.define_flag(flag_values)
    jax_distribution.define_flags(flag_values)
    loaders.define_flag(flag_values)


def run_main():
    """The console entry point."""
    define_flags()
    for module in (setting_flags, backends, jax_distribution, loaders):
        flags.adopt_module_key_flags(module)  # --help lists the flags defined there
    app.run(main, flags_parser=cli.flags_parser(PROGRAM))

if __name__ == "__main__":
    run_main()
