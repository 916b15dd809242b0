"""The exports of a trained model: `model.keras`, `saved_model/`, `model.onnx`, `model.tflite`.

Every format holds `training.serving.serving_model`: raw images of any size in (pixel values
0-255), class probabilities out. `class_names.json` beside them lists the class of each output,
in order. Each file or folder is written under a temporary name and renamed into place, so a
reader sees the old export or the new one, never a part.

- `keras`: `model.keras` of `keras_resnets.portable(network)`: Keras' own layers only, so
  `keras.models.load_model` reads it in any Keras 3 process, without this repository.
- `saved_model`: `saved_model/` (`model.export(format="tf_saved_model")`), from the package's
  own layers: a SavedModel needs no Python classes, and they keep TensorFlow's native grouped
  convolutions (5-8x faster than Keras' XLA ones for a ResNeXt on CPU). Its `serve` endpoint
  takes float32 images.
- `onnx`: `model.onnx` (`model.export(format="onnx")`, through tf2onnx), from the package's
  layers too: tf2onnx cannot convert the XLA function Keras makes of a grouped convolution.
- `litert`: `model.tflite` (`model.export(format="litert")`, TensorFlow's converter).
"""

import json
import os
import shutil
from typing import Dict, Sequence

import numpy as np

from training.config import EXPORT_FORMATS

FILES = {"keras": "model.keras", "saved_model": "saved_model", "onnx": "model.onnx",
         "litert": "model.tflite"}
CLASS_NAMES_FILE = "class_names.json"
# The packages a format needs beyond TensorFlow and Keras (pip install "keras-resnets[export]").
_NEEDS = {"onnx": ("tf2onnx", "onnx")}


def float32_copy(model, model_config, info):
    """A copy of `model`, with its current weights, rebuilt by `model_config` (a
    `training.model_config.ModelConfig`, for `info`'s classes and image shape) outside any
    distribution strategy (plain variables) and in float32, for the exports: ONNX and LiteRT
    need float32, and mixed precision is a training choice."""
    from training import runtime  # loads TensorFlow, which the rest of this module needs not

    with runtime.policy_scope("float32"):
        copy = model_config.build(info.num_classes, info.image_shape)
    copy.set_weights(model.get_weights())
    return copy


def check_available(formats: Sequence[str]) -> None:
    """Raises a `ValueError` naming the packages that writing `formats` needs and lacks."""
    import importlib.util

    missing = [f"{package} (for {name})" for name in formats for package in _NEEDS.get(name, ())
               if importlib.util.find_spec(package) is None]
    if missing:
        raise ValueError(f"export_format needs {', '.join(missing)}: pip install "
                         "\"keras-resnets[export]\", or leave the format out.")


class ExportError(Exception):
    """A format could not be written; `format` names it and the message says why."""

    def __init__(self, format_name: str, message: str):
        self.format = format_name
        super().__init__(message)


def export(network, preprocessing, class_names: Sequence[str],
           directory: str, formats: Sequence[str] = ("keras", "saved_model")
           ) -> Dict[str, str]:
    """Writes `formats` of `serving_model(network, preprocessing)` and `class_names.json`.

    Args:
        network: `keras.Model`. The trained classifier, built by keras_resnets (float32).
        preprocessing: `training.serving.Preprocessing`. The run's evaluation preprocessing.
        class_names: sequence of str. The class of each output.
        directory: str. An existing directory; the files get the names of `FILES`.
        formats: sequence of str. Some of `"keras"`, `"saved_model"`, `"onnx"`, `"litert"`.
            Defaults to `("keras", "saved_model")`.

    Returns:
        A dict from each format (and `"class_names"`) to the path written.

    Raises:
        ExportError: a converter failed (the formats before it are written).
        OSError: a file could not be written (a full disk, a read-only directory).
    """
    import keras_resnets
    from training import serving
    from training.outputs import atomic_write

    unknown = [name for name in formats if name not in EXPORT_FORMATS]
    if unknown:
        raise ValueError(f"formats must be among {list(EXPORT_FORMATS)}; got {unknown}.")
    if len(class_names) != network.output_shape[-1]:
        raise ValueError(f"class_names has {len(class_names)} names for the network's "
                         f"{network.output_shape[-1]} outputs.")
    written = {"class_names": os.path.join(directory, CLASS_NAMES_FILE)}
    atomic_write(written["class_names"], json.dumps(list(class_names), indent=2).encode())
    served = None
    for name in formats:
        path = os.path.join(directory, FILES[name])
        if name == "keras":
            _replace_file(path, serving.serving_model(keras_resnets.portable(network),
                                                      preprocessing).save)
            written[name] = path
            continue
        if served is None:
            served = serving.serving_model(network, preprocessing)
            # Keras' ONNX exporter refuses a model that was never called.
            served(np.zeros((1, *preprocessing.image_size, preprocessing.channels), "float32"))
        if name == "saved_model":
            _replace_folder(path, lambda temp: served.export(temp, verbose=False))
        else:
            _replace_file(path, lambda temp: _convert(served, temp, name))
        written[name] = path
    return written


def _convert(model, path, format_name):
    """`model.export` to ONNX or LiteRT; a converter's failure becomes an `ExportError`."""
    import logging
    import warnings

    # tf2onnx logs each conversion step at INFO and WARNING, and Keras' patch of it for NumPy 2
    # (keras/src/export/tf2onnx_lib.py) warns about `np.object`.
    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model.export(path, format=format_name, verbose=False)
    except OSError:
        raise
    except Exception as error:  # noqa: BLE001 (converters raise many kinds of error)
        lines = str(error).strip().splitlines()
        raise ExportError(format_name, lines[0].rstrip(".") if lines else
                          type(error).__name__) from error


def _replace_file(path, write):
    """`write(temporary path)`, then renamed to `path`; the temporary file goes on failure."""
    head, tail = os.path.split(path)
    temp = os.path.join(head, ".tmp_" + tail)  # same extension: exporters check it
    try:
        write(temp)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.remove(temp)


def _replace_folder(path, write):
    """`write(temporary folder)`, then swapped in for the folder `path`."""
    temp, old = path + ".tmp", path + ".old"
    for stale in (temp, old):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        write(temp)
        if os.path.exists(path):
            os.replace(path, old)
        os.replace(temp, path)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
