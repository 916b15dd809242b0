"""`load_weights(model, weights)`: published weights by tag, or a local file of any layout."""

import os

import keras

from keras_resnets import weight_files


def load_weights(model: keras.Model, weights, *, skip_classifier: bool = False) -> keras.Model:
    """Load weights into a keras_resnets model: a tag of the weight table or a local file.

    Local files may be in any supported layout, detected from their content: a Keras
    `.weights.h5`, a keras.applications `.h5` (legacy HDF5, by layer name), a torchvision state
    dict (`.pth`, read without PyTorch) or a `.safetensors` file in torchvision/timm key layout.
    Nothing is written unless every weighted layer of the model gets weights of the right
    shapes and every entry of the file is used; otherwise a `ValueError` names the first
    missing and the first extra key. A file's classifier is ignored when the model has none
    (`include_top=False`).

    Args:
        model: `keras.Model`. A keras_resnets model built with the file's settings (e.g.
            `layer_config="keras_applications"` for keras.applications files).
        weights: str or path. A local file, or a tag of `keras_resnets.list_weights()` for
            the model's registry name (`model.name`).
        skip_classifier: bool. Leave the model's `predictions` layer as it is and ignore the
            file's classifier, e.g. to fine-tune on another number of classes. Defaults to
            `False`.

    Returns:
        The model, with the weights loaded.

    Example:

    >>> import os, tempfile, keras_resnets
    >>> path = os.path.join(tempfile.mkdtemp(), "resnet20.weights.h5")
    >>> keras_resnets.ResNet20().save_weights(path)
    >>> model = keras_resnets.load_weights(keras_resnets.ResNet20(classes=5), path,
    ...                                    skip_classifier=True)
    >>> model.output_shape
    (None, 5)
    """
    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        return weight_files.load(model, weights, skip_classifier=skip_classifier)
    raise ValueError(
        f"weights={weights!r} is neither a file nor a tag of the weight table for model "
        f"'{model.name}'.")
