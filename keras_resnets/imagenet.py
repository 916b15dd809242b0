"""ImageNet inputs and outputs: each weight entry's preprocessing, and class names.

`preprocess_input` computes the same numbers as keras.applications' `preprocess_input` in the
entry's mode (`"caffe"` for keras.applications ResNets, `"tf"` for its ResNetV2s, `"torch"` for
torchvision's weights); `decode_predictions` reads the class index file keras.applications
publishes (the same URL, hash and cache file), which also names torchvision's classes (both
order the 1000 classes by WordNet id).
"""

import json

import keras
import numpy as np

from keras_resnets import config, downloads, weights_table

_CLASS_INDEX = None


def _preprocessing(weights, model):
    if isinstance(weights, weights_table.Preprocessing):
        return weights
    if isinstance(weights, weights_table.WeightEntry):
        return weights.preprocessing
    if isinstance(weights, str) and weights in weights_table.MODES and model is None:
        return weights_table._preprocessing(
            {"caffe": "caffe", "tf": "tf", "torch": "torch_256"}[weights])
    if isinstance(model, keras.Model):
        model = model.name
    if model is None and isinstance(weights, str) and "." in weights:
        model, weights = weights.split(".", 1)
    if model is None:
        raise ValueError(
            f"preprocess_input(weights={weights!r}) needs the model: pass model= (a registry "
            "name or a keras_resnets model), weights='<model>.<tag>' (e.g. "
            "'resnet50.imagenet'), a WeightEntry or a mode ('caffe', 'tf', 'torch').")
    return weights_table.weight_entry(model, weights).preprocessing


def preprocess_input(x, weights, model=None, data_format=None):
    """Preprocess a batch of RGB images (pixels 0-255) for a model with `weights`.

    Only the values change (colour order, scale, mean and standard deviation); resizing to the
    entry's `resize_size` and centre-cropping to `crop_size` are the input pipeline's job.
    NumPy inputs give a new NumPy array (the input is not changed); tensors give tensors.

    Args:
        x: array or tensor of images, channels last (or first, see `data_format`).
        weights: a tag with `model`, `"<model>.<tag>"` (e.g. `"resnet50.tv2_in1k"`), a
            `WeightEntry` (`keras_resnets.weight_entry(...)`), a `Preprocessing` or a mode
            (`"caffe"`, `"tf"`, `"torch"`).
        model: str or `keras.Model`. The registry name (or model) a tag belongs to.
        data_format: `"channels_last"` or `"channels_first"`. Defaults to
            `keras.config.image_data_format()`.

    Returns:
        The preprocessed images, float (the input's float type, else Keras' `floatx`).

    Example:

    >>> import numpy as np
    >>> pixels = np.full((1, 2, 2, 3), 255, "uint8")
    >>> preprocess_input(pixels, "resnet50.tv2_in1k")[0, 0, 0].round(3)
    array([2.249, 2.429, 2.64 ], dtype=float32)
    >>> preprocess_input(pixels, "imagenet", model="resnet50v2")[0, 0, 0]
    array([1., 1., 1.], dtype=float32)
    """
    prep = _preprocessing(weights, model)
    data_format = config.data_format(data_format)
    if isinstance(x, np.ndarray) or not hasattr(x, "shape"):
        x = np.array(x)  # a copy: keras.applications changes float arrays in place
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(keras.config.floatx())
        return _apply(x, prep, data_format, np)
    if not keras.backend.is_float_dtype(keras.backend.standardize_dtype(x.dtype)):
        x = keras.ops.cast(x, keras.config.floatx())
    return _apply(x, prep, data_format, keras.ops)


def _apply(x, prep, data_format, ops):
    """The arithmetic of keras.applications' `imagenet_utils`, operation for operation."""
    rank = len(x.shape)
    if prep.mode == "tf":
        return x / 127.5 - 1.0
    channels_first = data_format == "channels_first"
    channel_axis = (0 if rank == 3 else 1) if channels_first else rank - 1
    shape = [1] * rank
    shape[channel_axis] = 3
    if prep.mode == "caffe":
        x = ops.flip(x, axis=channel_axis)  # RGB -> BGR
    else:
        x = x / 255.0
    dtype = x.dtype if ops is np else keras.backend.standardize_dtype(x.dtype)
    x = x - ops.reshape(ops.convert_to_tensor(np.array(prep.mean), dtype=dtype)
                        if ops is not np else np.array(prep.mean, dtype=dtype), shape)
    if prep.std is not None:
        x = x / ops.reshape(ops.convert_to_tensor(np.array(prep.std), dtype=dtype)
                            if ops is not np else np.array(prep.std, dtype=dtype), shape)
    return x


def class_index():
    """keras.applications' ImageNet class index: `{"0": ["n01440764", "tench"], ...}`."""
    global _CLASS_INDEX
    if _CLASS_INDEX is None:
        url, file_hash = weights_table.file_spec("imagenet_class_index")
        with open(downloads.fetch(url, file_hash), encoding="utf-8") as handle:
            _CLASS_INDEX = json.load(handle)
    return _CLASS_INDEX


def decode_predictions(preds, top=5):
    """The `top` ImageNet classes of each prediction: `[(wordnet_id, name, score), ...]`.

    The class index is keras.applications' published file, fetched like the weights (the
    local directory, Keras' cache, the mirror; see `keras_resnets.downloads`).

    Args:
        preds: array or tensor of shape `(batch, 1000)` (probabilities or logits).
        top: int. Number of classes per image. Defaults to `5`.

    Returns:
        One list per image of `(wordnet_id, class_name, score)` tuples, best first.
    """
    preds = keras.ops.convert_to_numpy(preds)
    if preds.ndim != 2 or preds.shape[1] != 1000:
        raise ValueError("decode_predictions expects a batch of ImageNet predictions (shape "
                         f"(samples, 1000)); got shape {preds.shape}.")
    index = class_index()
    results = []
    for pred in preds:
        best = np.argsort(pred)[-top:][::-1]
        results.append([tuple(index[str(i)]) + (pred[i],) for i in best])
    return results
