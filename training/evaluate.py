r"""`python -m training.evaluate`: evaluates a model directory's best or latest checkpoint.

    python -m training.evaluate --model_dir=runs/resnet50 --eval_crops=10
    python -m training.evaluate --model_dir=runs/resnet20 --checkpoint=latest --split=validation
    python -m training.evaluate --backend=jax --model_dir=runs/r20_jax --checkpoint=latest

The run's `config.json` gives the model and the data; `--eval_crops`, `--split`, `--batch_size`,
`--dataset` and `--data_dir` change what is evaluated. `--backend` (default: `KERAS_BACKEND`,
else tensorflow; `training.backends`) picks the Keras backend: a run of Keras' fit (trained on
JAX or PyTorch; `training.keras_evaluate`) evaluates on any of the three, a run of the
tensorflow loop (TensorFlow checkpoints) on tensorflow only. The metrics are printed as one
JSON line and written to `<model_dir>/evaluation_<checkpoint>_<split>_<crops>crop.json`. The model
directory is locked meanwhile (a training run on it makes this stop at once, with exit code 2);
a read-only model directory still gets its metrics printed, then one line saying the file could
not be written (exit code 2).
"""

import json
import os
from typing import Any, Dict, Optional

from absl import app, flags

from training import backends, cli
from training import config as config_lib
from training.dirlock import DirectoryLock, DirectoryLocked

PROGRAM = "training.evaluate"


def define_flags(flag_values=flags.FLAGS):
    """Defines the flags of `python -m training.evaluate` in `flag_values`."""
    flags.DEFINE_string("model_dir", None, "The model directory of a training.fit run.",
                        flag_values=flag_values)
    flags.DEFINE_string("checkpoint", "best", "best, latest, or the path of a checkpoint.",
                        flag_values=flag_values)
    flags.DEFINE_enum("split", "test", ["test", "validation"], "The split to evaluate.",
                      flag_values=flag_values)
    flags.DEFINE_integer("eval_crops", None, "1 (centre crop) or 10 (ten-crop); default: the "
                         "run's.", flag_values=flag_values)
    flags.DEFINE_integer("batch_size", None, "Global evaluation batch; default: the run's.",
                         flag_values=flag_values)
    flags.DEFINE_string("dataset", None, "Evaluate on another copy of the data (e.g. a local "
                        "path); default: the run's.", flag_values=flag_values)
    flags.DEFINE_string("data_dir", None, "TFDS data directory; default: the run's.",
                        flag_values=flag_values)
    flags.DEFINE_enum("strategy", None, list(config_lib.STRATEGIES), "Default: the run's.",
                      flag_values=flag_values)
    flags.DEFINE_enum("mixed_precision", None, list(config_lib.MIXED_PRECISION),
                      "Default: the run's.", flag_values=flag_values)


FLAGS = flags.FLAGS


def load_config(model_dir: str) -> config_lib.ExperimentConfig:
    """The `ExperimentConfig` a run wrote to `<model_dir>/config.json`."""
    path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(path):
        raise ValueError(f"model_dir={model_dir!r} has no config.json; is it a training.fit "
                         "model directory?")
    try:
        with open(path) as file:
            return config_lib.ExperimentConfig.from_dict(json.load(file))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path} is damaged and cannot be read ({type(error).__name__}: "
                         f"{error}); restore it from a copy, or rewrite it with "
                         "python -m training.fit --config=... settings.") from None


def find_checkpoint(model_dir: str, checkpoint: str = "best") -> str:
    """The path of `"best"`, `"latest"` or an explicit checkpoint of a model directory.

    `"best"` and `"latest"` fall back to the newest checkpoint that reads cleanly when the
    state file is lost or the newest one is damaged (with a warning); `"best"` falls back to
    the latest before the first evaluation.
    """
    from training import outputs

    if checkpoint in config_lib.CHECKPOINTS:
        latest = os.path.join(model_dir, "checkpoints")
        path = outputs.newest_readable(os.path.join(model_dir, "best")) if (
            checkpoint == "best") else None
        if path is None:
            path = outputs.newest_readable(latest)
        if path is None:
            raise ValueError(f"model_dir={model_dir!r} has no checkpoint.")
        return path
    if not os.path.exists(checkpoint + ".index"):
        raise ValueError(f"checkpoint must be 'best', 'latest' or a checkpoint path; "
                         f"{checkpoint!r} is none of them.")
    problem = outputs.damage(checkpoint)
    if problem is not None:
        raise ValueError(f"checkpoint={checkpoint!r} cannot be read: {problem}.")
    return checkpoint


def _experiment(model_dir, eval_crops, overrides):
    """The run's config, to evaluate with: `overrides` applied, nothing to write."""
    experiment = load_config(model_dir)
    if eval_crops is not None:
        overrides = {**overrides, "eval_crops": eval_crops}
    # The trainer writes nothing here: no model_dir.
    # No init_weights: the checkpoint gives the weights (and the source may be gone).
    return experiment.replace(model_dir=None, verbose=0, cpu_devices=0, init_weights=None,
                              **overrides)


def _check_split(trainer, split, model_dir):
    if split == "validation" and not trainer.info.validation_examples:
        raise ValueError(
            f"split='validation': the run in {model_dir} has no validation split "
            f"(validation_images={trainer.config.data.validation_images}); use split='test'.")


def load(model_dir: str, checkpoint: str = "best", eval_crops: Optional[int] = None,
         pipeline=None, strategy=None, split: Optional[str] = None, **overrides):
    """A `training.trainer.Trainer` of a model directory's run with a checkpoint's weights.

    Returns:
        `(trainer, checkpoint_path)`. Arguments as in `evaluate`; with `split`, a split the
        run's data does not have is an error here.
    """
    from training import trainer as trainer_lib

    experiment = _experiment(model_dir, eval_crops, overrides)
    path = find_checkpoint(model_dir, checkpoint)
    trainer = trainer_lib.Trainer(experiment, pipeline=pipeline, strategy=strategy)
    _check_split(trainer, split, model_dir)
    trainer.restore_weights(path)
    return trainer, path


def load_any(model_dir: str, checkpoint: str = "best", eval_crops: Optional[int] = None,
             pipeline=None, strategy=None, split: Optional[str] = None, **overrides):
    """`(trainer, checkpoint_path, step)` of a run of either loop, on the current Keras
    backend: a Keras-loop run (`training.keras_evaluate`) on any backend, a run of the
    tensorflow loop (`load`) on TensorFlow. Arguments as in `evaluate`."""
    from training import keras_evaluate

    experiment = _experiment(model_dir, eval_crops, overrides)  # first: is it a run at all?
    if keras_evaluate.is_keras_run(model_dir):
        if strategy is not None:
            raise ValueError(f"strategy applies to runs of the tensorflow loop; the run in "
                             f"{model_dir} was trained with Keras' fit.")
        trainer, path, step = keras_evaluate.load(experiment, model_dir, checkpoint, pipeline)
        _check_split(trainer, split, model_dir)
        return trainer, path, step
    import keras

    if keras.backend.backend() != "tensorflow":
        raise ValueError(f"model_dir={model_dir!r} holds TensorFlow checkpoints of the "
                         "tensorflow loop (training.trainer), which only the tensorflow "
                         "backend reads; use --backend=tensorflow.")
    trainer, path = load(model_dir, checkpoint, eval_crops, pipeline, strategy, split,
                         **overrides)
    return trainer, path, _checkpoint_step(path)


def _checkpoint_step(path):
    import tensorflow as tf

    return int(tf.train.load_checkpoint(path).get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))


def evaluate(model_dir: str, checkpoint: str = "best", split: str = "test",
             eval_crops: Optional[int] = None, pipeline=None, strategy=None,
             **overrides) -> Dict[str, Any]:
    """Evaluates a checkpoint of a `training.fit` model directory on the current Keras backend
    (a run of Keras' fit on any backend, one of the tensorflow loop on TensorFlow).

    Args:
        model_dir: str. The run's model directory.
        checkpoint: str. `"best"` (by validation accuracy, or test accuracy without a
            validation split), `"latest"`, or a checkpoint path (of a Keras-fit run: its
            `keras_step<N>.weights.h5` or the best epoch's `keras_best_step<N>.weights.h5`).
            Defaults to `"best"`.
        split: str. `"test"` or `"validation"`. Defaults to `"test"`.
        eval_crops: int or `None`. `1` or `10`; `None` keeps the run's. Defaults to `None`.
        pipeline: optional input pipeline; defaults to `training.data.Pipeline` of the run's
            data settings.
        strategy: optional `tf.distribute.Strategy`.
        **overrides: flat settings for the run's config, e.g. `global_batch_size=256`,
            `dataset="/data/imagenet"`.

    Returns:
        A dict: `checkpoint`, `step`, `split`, `eval_crops`, `loss`, `accuracy`, `error`,
        `examples` and, with more than five classes, `top5_accuracy` and `top5_error`.
    """
    trainer, path, step = load_any(model_dir, checkpoint, eval_crops, pipeline, strategy,
                                   split, **overrides)
    return _metrics(trainer, path, step, split)


def _metrics(trainer, path, step, split):
    return {"checkpoint": path, "step": step, "split": split,
            "eval_crops": trainer.config.data.eval_crops, **trainer.evaluate(split)}


def main(argv):
    if len(argv) > 1:
        cli.fail(PROGRAM, f"unexpected arguments {argv[1:]}; every setting is a --flag.")
    if not FLAGS.model_dir:
        cli.fail(PROGRAM, "--model_dir is required.")
    cli.quiet_logs()
    overrides = {key: FLAGS[flag].value for flag, key in (
        ("batch_size", "global_batch_size"), ("dataset", "dataset"), ("data_dir", "data_dir"),
        ("strategy", "strategy"), ("mixed_precision", "mixed_precision"))
        if FLAGS[flag].value is not None}
    lock = DirectoryLock(FLAGS.model_dir, argument="model_dir")

    def set_up():
        backends.select(FLAGS.backend)  # before anything imports Keras
        try:
            if os.path.isdir(FLAGS.model_dir):  # else `load` says what is missing
                lock.acquire()  # a training run writing there would change what is evaluated
        except DirectoryLocked:
            raise
        except ValueError:
            pass  # a read-only model directory: evaluate, then say the result stays unsaved
        return load_any(FLAGS.model_dir, FLAGS.checkpoint, FLAGS.eval_crops,
                        split=FLAGS.split, **overrides)

    try:
        trainer, path, step = cli.set_up_or_fail(PROGRAM, set_up)
        from training.images import CorruptImageError

        try:
            metrics = _metrics(trainer, path, step, FLAGS.split)
        except CorruptImageError as error:  # a file that changed since set-up
            cli.fail(PROGRAM, error)
        print(json.dumps(metrics), flush=True)
        name = os.path.basename(metrics["checkpoint"]) if FLAGS.checkpoint not in (
            config_lib.CHECKPOINTS) else FLAGS.checkpoint
        out = os.path.join(
            FLAGS.model_dir,
            f"evaluation_{name}_{metrics['split']}_{metrics['eval_crops']}crop.json")
        try:
            from training.outputs import atomic_write

            atomic_write(out, json.dumps(metrics, indent=2).encode())
        except OSError as error:
            cli.fail(PROGRAM, f"the metrics above could not be written to {out}: "
                              f"{error.strerror or error}.")
    finally:
        lock.release()


def run_main():
    """The console entry point."""
    define_flags()
    backends.define_flag()
    flags.adopt_module_key_flags(backends)  # --help lists it
    app.run(main, flags_parser=cli.flags_parser(PROGRAM))


if __name__ == "__main__":
    run_main()
