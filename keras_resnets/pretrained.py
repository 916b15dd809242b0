"""`load_weights(model, weights)`: published weights by tag, or a local file of any layout.

Builders resolve their `weights=` argument through `prepare` (before the model is built: a tag
decides the layer settings) and load with the function it returns.
"""

import os

import keras

from keras_resnets import config, downloads, weight_files, weights_table

# Layer settings that change what the weights compute: a weight entry's preset fixes them.
_SEMANTIC_OPTIONS = ("bn_epsilon", "use_bias", "stride_in", "downsample_block", "activation")


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
    if isinstance(weights, weights_table.WeightEntry):
        entry = weights
    elif _looks_like_a_path(weights):
        raise ValueError(f"weights={str(weights)!r}: no such file.")
    elif isinstance(weights, str) and weights_table.tags_of(model.name):
        entry = weights_table.weight_entry(model.name, weights)
    else:
        raise ValueError(
            f"weights={weights!r} is neither a file nor a tag of the weight table for model "
            f"'{model.name}'" + (f" (its tags: {', '.join(weights_table.tags_of(model.name))})."
                                 if weights_table.tags_of(model.name) else
                                 "; the table has no weights for it (keras_resnets."
                                 "list_weights())."))
    return load_entry(model, entry, skip_classifier=skip_classifier)


def _looks_like_a_path(weights) -> bool:
    return isinstance(weights, os.PathLike) or isinstance(weights, str) and (
        os.sep in weights or weights.endswith((".h5", ".pth", ".pt", ".bin", ".safetensors")))


def entry_file(entry: weights_table.WeightEntry, include_top: bool = True) -> str:
    """The local path of `entry`'s file (the classifier-less one for `include_top=False`,
    where the publisher has one), fetched as `keras_resnets.downloads.fetch` does."""
    if not include_top and entry.notop_url:
        return downloads.fetch(entry.notop_url, entry.notop_hash)
    return downloads.fetch(entry.url, entry.hash)


def load_entry(model: keras.Model, entry: weights_table.WeightEntry, *,
               skip_classifier: bool = False) -> keras.Model:
    """Load the published weights of `entry` into `model` (fetched on first use)."""
    has_classifier = any(layer.name == weight_files.CLASSIFIER for layer in model.layers)
    path = entry_file(entry, include_top=has_classifier and not skip_classifier)
    source = weight_files.read(path, model, entry.layout)
    return weight_files.assign(
        model, source, skip_classifier,
        description=f"The weights '{entry.tag}' of {entry.model} ({os.path.basename(path)})")


def prepare(weights, *, name, layer_config, layer_options, preactivation, include_top, classes):
    """Resolve a builder's `weights` before it builds: `(layer_config, load)`, where
    `layer_config` is the one to build with and `load(model)` loads the weights (`None` for
    `weights=None`).

    A tag implies its entry's `layer_config` (an explicit other one, or a layer option that
    changes what the weights compute, is a `ValueError`), and with `include_top=True` needs
    `classes` equal to the entry's (1000), as in keras.applications.
    """
    if weights is None:
        return layer_config, None
    if isinstance(weights, (str, os.PathLike)) and os.path.isfile(weights):
        return layer_config, lambda model: load_weights(model, weights)
    if _looks_like_a_path(weights):
        raise ValueError(f"weights={str(weights)!r}: no such file.")
    if not isinstance(weights, str):
        raise ValueError(f"weights must be None, a tag or the path of a weight file; got "
                         f"{weights!r}.")
    if not weights_table.tags_of(name):
        raise ValueError(
            f"weights={weights!r} is not a file, and model '{name}' has no published weights; "
            "models with weights: "
            + ", ".join(sorted({row.model for row in weights_table.entries()}))
            + ". Weights of other libraries load through keras_resnets.port.")
    entry = weights_table.weight_entry(name, weights)
    _check_layer_settings(entry, layer_config, layer_options, preactivation)
    if include_top and classes != entry.classes:
        raise ValueError(
            f"weights={weights!r} with include_top=True needs classes={entry.classes}; got "
            f"classes={classes}. To train another head, build with include_top=False, or load "
            "with keras_resnets.load_weights(model, tag, skip_classifier=True).")
    return layer_config or entry.layer_config, lambda model: load_entry(model, entry)


def _check_layer_settings(entry, layer_config, layer_options, preactivation):
    preset = config.preset(entry.layer_config, preactivation)
    if layer_config is not None:
        given = (config.preset(layer_config, preactivation) if isinstance(layer_config, str)
                 else layer_config)
        if not isinstance(given, config.LayerConfig) or any(
                getattr(given, option) != getattr(preset, option) for option in _SEMANTIC_OPTIONS):
            raise ValueError(
                f"weights={entry.tag!r} of {entry.model} (published by {entry.publisher}) need "
                f"layer_config={entry.layer_config!r} (implied when layer_config is not given); "
                f"got layer_config={layer_config!r}.")
    for option in _SEMANTIC_OPTIONS:
        if option in layer_options and layer_options[option] != getattr(preset, option):
            raise ValueError(
                f"weights={entry.tag!r} of {entry.model} were trained with "
                f"{option}={getattr(preset, option)!r} (layer_config={entry.layer_config!r}); "
                f"got {option}={layer_options[option]!r}.")
