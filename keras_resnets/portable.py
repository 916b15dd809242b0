"""`portable(model)`: the same network with only Keras' own layers, for `.keras` files.

`keras.models.load_model` finds a registered custom layer only if the module that registered it
was imported first (it imports Keras' own packages, not this one), so a `.keras` file holding
this package's layers does not load in a process that has not imported keras_resnets. Each of
those layers has a built-in equivalent with the same weights and outputs; the custom classes
exist only for speed on TensorFlow (see `keras_resnets.backends`).
"""

import keras

from keras_resnets.layers import FusedBatchNormalization, GroupedConv2D, ZeroPadShortcut


def portable(model: keras.Model) -> keras.Model:
    """The same network, weights and outputs with only built-in Keras layers.

    Save this copy to let `keras.models.load_model("model.keras")` load the file in any Keras 3
    process, without importing keras_resnets first. The package's layers become Keras' own:

    - `FusedBatchNormalization` -> `keras.layers.BatchNormalization` (the fused kernel is a
      training-speed optimisation on TensorFlow; the values are the same).
    - `GroupedConv2D` -> `keras.layers.Conv2D` with the same groups (Keras runs grouped
      convolutions through XLA on TensorFlow, much slower on CPU; other backends are unchanged).
    - `ZeroPadShortcut` -> a `keras.Sequential` of the same name: a 1x1 average pooling with the
      shortcut's stride, then a `ZeroPadding2D` that pads the channel axis with zeros.

    Every other layer is cloned from its config. Layer names, weights, dtype policies and
    outputs are those of `model`; nested models are converted too.

    Args:
        model: `keras.Model`. A functional or Sequential model, e.g. from `keras_resnets.ResNet`.

    Returns:
        A new `keras.Model` with the same name, layer names and weights.

    Example:

    >>> import os, tempfile, keras, keras_resnets
    >>> model = keras_resnets.ResNet20()
    >>> exported = keras_resnets.portable(model)
    >>> exported.count_params() == model.count_params()
    True
    >>> type(exported.get_layer("conv3_block1_0_pad")).__name__
    'Sequential'
    >>> path = os.path.join(tempfile.mkdtemp(), "resnet20.keras")
    >>> exported.save(path)  # loads with keras.models.load_model(path), anywhere
    """
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"model must be a functional or Sequential keras.Model; got {type(model).__name__}.")
    inputs = None if isinstance(model, keras.Sequential) else _named_inputs(model)
    clone = keras.models.clone_model(model, input_tensors=inputs, clone_function=_built_in)
    for layer in model.layers:  # the names are kept, so weights copy by name
        if layer.weights:
            clone.get_layer(layer.name).set_weights(layer.get_weights())
    return clone


def _named_inputs(model):
    """New inputs named like the model's input layers (`clone_model` names them by tensor)."""
    names = {id(layer.output): layer.name for layer in model.layers
             if isinstance(layer, keras.layers.InputLayer)}
    return keras.tree.map_structure(
        lambda tensor: keras.Input(batch_shape=tensor.shape, dtype=tensor.dtype,
                                   name=names.get(id(tensor))),
        model.input)


def _built_in(layer):
    """The built-in Keras layer that computes what `layer` computes (unbuilt, no weights), or
    the portable copy of a nested model."""
    if isinstance(layer, keras.Model):
        return portable(layer)
    if isinstance(layer, FusedBatchNormalization):
        return keras.layers.BatchNormalization.from_config(layer.get_config())
    if isinstance(layer, GroupedConv2D):
        return keras.layers.Conv2D.from_config(layer.get_config())
    if isinstance(layer, ZeroPadShortcut):
        return _zero_pad_shortcut(layer)
    return layer.__class__.from_config(layer.get_config())


def _zero_pad_shortcut(layer: ZeroPadShortcut) -> keras.Sequential:
    channels_first = layer.data_format == "channels_first"
    channels = layer.input.shape[1 if channels_first else -1]
    extra = layer.filters - channels
    steps = []
    if layer.strides > 1:
        steps.append(keras.layers.AveragePooling2D(
            pool_size=1, strides=layer.strides, data_format=layer.data_format,
            dtype=layer.dtype_policy, name=f"{layer.name}_pool"))
    if extra:
        # ZeroPadding2D pads axes 1 and 2 of a tensor it reads as channels-last, axes 2 and 3
        # of one it reads as channels-first. Read in the other layout than its own, the tensor
        # has its channel axis (3 or 1) among those two; the spatial axis beside it gets 0.
        padding = ((0, 0), (extra // 2, extra - extra // 2))
        if channels_first:
            padding = padding[::-1]
        steps.append(keras.layers.ZeroPadding2D(
            padding=padding,
            data_format="channels_last" if channels_first else "channels_first",
            dtype=layer.dtype_policy, name=f"{layer.name}_channels"))
    if not steps:
        steps.append(keras.layers.Identity(dtype=layer.dtype_policy, name=f"{layer.name}_id"))
    shortcut = keras.Sequential(steps, name=layer.name)
    shortcut.dtype_policy = layer.dtype_policy  # Sequential takes no dtype argument
    return shortcut
