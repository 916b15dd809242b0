"""Which input pipeline feeds a run: tf.data where TensorFlow is installed, else NumPy.

`make_pipeline(data_config)` gives `training.data.Pipeline` (tf.data) when TensorFlow can be
imported and `training.numpy_data.NumpyPipeline` (PIL and NumPy) when it cannot, as on a GPU
machine with only JAX or PyTorch. `input_pipeline` (the `--input_pipeline` flag of
`python -m training.fit`, or the `KERAS_RESNETS_INPUT_PIPELINE` environment variable) forces
one: `"tf_data"`, `"numpy"` (say, to benchmark it or test it beside TensorFlow) or `"auto"`.
This module imports neither Keras nor TensorFlow: `training.fit` defines its flag before the
backend is chosen.
The TensorFlow loop (`training.trainer`) takes tf.data only. `fit_input` and `numpy_batches`
turn either pipeline's batches into what Keras' `model.fit` takes and NumPy batches.
"""

import os
from typing import Optional

INPUT_PIPELINES = ("auto", "tf_data", "numpy")
ENVIRONMENT = "KERAS_RESNETS_INPUT_PIPELINE"


def input_pipeline(choice: Optional[str] = None) -> str:
    """`"tf_data"` or `"numpy"`: `choice` (default: `KERAS_RESNETS_INPUT_PIPELINE`, else
    `"auto"`), with `"auto"` resolved by whether TensorFlow can be imported."""
    from training.optional import tensorflow_available

    choice = choice or os.environ.get(ENVIRONMENT) or "auto"
    if choice not in INPUT_PIPELINES:
        raise ValueError(f"input_pipeline must be one of {', '.join(INPUT_PIPELINES)}; got "
                         f"{choice!r}.")
    if choice == "auto":
        return "tf_data" if tensorflow_available() else "numpy"
    if choice == "tf_data" and not tensorflow_available():
        raise ValueError("input_pipeline='tf_data' needs TensorFlow, which is not installed "
                         "here; use input_pipeline='numpy' (or 'auto').")
    return choice


def make_pipeline(data_config, choice: Optional[str] = None):
    """The input pipeline of a `training.data_config.DataConfig` (see `input_pipeline`)."""
    if input_pipeline(choice) == "numpy":
        from training.numpy_data import NumpyPipeline

        return NumpyPipeline(data_config)
    from training.data import Pipeline

    return Pipeline(data_config)


def fit_input(batches, num_classes: int):
    """What `model.fit` takes from a pipeline's `train()`: its batches with float32 one-hot
    targets (MixUp's and CutMix's soft targets pass unchanged)."""
    if hasattr(batches, "one_hot"):  # training.numpy_data.Batches
        return batches.one_hot(num_classes)
    import tensorflow as tf

    def convert(images, labels):
        if labels.shape.rank == 1:
            labels = tf.one_hot(labels, num_classes)
        return images, tf.cast(labels, tf.float32)

    return batches.map(convert)


def numpy_batches(batches):
    """NumPy `(images, labels)` of a pipeline's `evaluation()` batches, in order."""
    if hasattr(batches, "one_hot"):  # training.numpy_data.Batches
        return iter(batches)
    return batches.as_numpy_iterator()


def define_flag(flag_values=None) -> None:
    """Defines `--input_pipeline` (default: `KERAS_RESNETS_INPUT_PIPELINE`, else auto)."""
    from absl import flags

    flags.DEFINE_enum("input_pipeline", None, list(INPUT_PIPELINES),
                      "The input pipeline: tf_data (training.data), numpy (training.numpy_data: "
                      "PIL and NumPy, for synthetic data and image folders, without TensorFlow) "
                      "or auto (tf_data where TensorFlow is installed). Default: "
                      f"{ENVIRONMENT}, else auto.",
                      flag_values=flags.FLAGS if flag_values is None else flag_values)
