"""Parameter and multiply-add (FLOP) counting, as the papers count them.

`profile(model)` counts a built model; `architecture_cost(arch, ...)` gives the same figures
for an `Architecture` without building one (a search checks its budget that way).
"""

import dataclasses
import math
from typing import NamedTuple, Optional, Tuple

import keras

from keras_resnets import builder
from keras_resnets.blocks import LayerFactory
from keras_resnets.layers import ZeroPadShortcut


@dataclasses.dataclass(frozen=True)
class ModelProfile:
    """What a model costs.

    Attributes:
        params: all weights, including batch-norm moving statistics (`model.count_params()`).
        trainable_params: trainable weights only (what PyTorch's `numel` sum and the papers
            report, since running statistics are buffers there).
        macs: multiply-accumulates of one forward pass of one image through the convolutions
            and dense layers (the papers' "FLOPs"; batch norm, activations and additions are
            not counted).
    """

    params: int
    trainable_params: int
    macs: int

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def _layer_macs(layer) -> int:
    if isinstance(layer, keras.layers.Conv2D):
        if layer.data_format == "channels_first":
            _, filters, height, width = layer.output.shape
            in_channels = layer.input.shape[1] // layer.groups
        else:
            _, height, width, filters = layer.output.shape
            in_channels = layer.input.shape[-1] // layer.groups
        kernel_height, kernel_width = layer.kernel_size
        return height * width * kernel_height * kernel_width * in_channels * filters
    if isinstance(layer, keras.layers.Dense):
        return math.prod(layer.output.shape[1:-1]) * layer.input.shape[-1] * layer.units
    return 0


def profile(model: keras.Model) -> ModelProfile:
    """Count parameters and multiply-adds of a functional model with a fixed input size.

    Args:
        model: `keras.Model`. A functional model whose input height and width are known.

    Returns:
        A `ModelProfile`.

    Example:

    >>> import keras_resnets
    >>> result = keras_resnets.profile(keras_resnets.ResNet20())
    >>> result.trainable_params, round(result.macs / 1e6, 1)
    (269722, 40.6)
    """
    input_shape = model.inputs[0].shape
    if any(size is None for size in input_shape[1:]):
        raise ValueError(
            f"profile needs a fixed input size, but model '{model.name}' has input shape "
            f"{tuple(input_shape)}; build it with input_shape=(height, width, channels), or "
            "(channels, height, width) for channels-first models."
        )
    macs = sum(_layer_macs(layer) for layer in _all_layers(model))
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    return ModelProfile(model.count_params(), int(trainable), int(macs))


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def architecture_cost(arch: builder.Architecture, *, include_top: bool = True,
                      input_shape=None, pooling: Optional[str] = None,
                      classes: Optional[int] = None, data_format: Optional[str] = None,
                      output_stride: Optional[int] = None, layer_config=None,
                      **layer_options) -> ModelProfile:
    """What `profile` counts for the model `ResNet(...)` builds, computed without building it.

    It runs the builder's own stem, stages and head with a layer factory that creates no
    layers: each layer adds its parameters and multiply-adds from its arguments and its input
    shape. So the figures are the built model's (the tests check every registered model), in
    milliseconds instead of the seconds a deep model takes to build.

    Args:
        arch: `Architecture`. E.g. `keras_resnets.resolve_architecture(depth=50)` or
            `keras_resnets.registry.architecture_of("resnet50")`.
        include_top, input_shape, pooling, classes, data_format, output_stride,
            layer_config, **layer_options: as for `keras_resnets.ResNet`; the input's height
            and width must be known (with `include_top=False`, give `input_shape`).

    Returns:
        A `ModelProfile`.

    Example:

    >>> import keras_resnets
    >>> arch = keras_resnets.resolve_architecture(depth=20, stem="cifar", shortcut="A")
    >>> architecture_cost(arch) == profile(keras_resnets.ResNet20())
    True
    >>> architecture_cost(arch, input_shape=(64, 64, 3), classes=100).macs
    162208000
    """
    net = builder.network(arch, include_top=include_top, pooling=pooling, classes=classes,
                          data_format=data_format, output_stride=output_stride,
                          layer_config=layer_config, **layer_options)
    shape = builder.resolve_input_shape(input_shape, include_top, arch.stem, net.data_format)
    if net.data_format == "channels_first":
        shape = (*shape[1:], shape[0])
    if None in shape:
        raise ValueError(
            f"architecture_cost needs a fixed input size; got input_shape={input_shape!r} with "
            f"include_top={include_top}. Give input_shape=(height, width, channels), or "
            "(channels, height, width) for channels-first models."
        )
    counter = _Counter(net.layers)
    builder.build(_Tensor((None, *shape)), net, counter)
    return ModelProfile(counter.params, counter.trainable_params, counter.macs)


class _Tensor(NamedTuple):
    """A tensor as the counter sees it: its channels-last shape, batch first."""

    shape: Tuple[Optional[int], ...]


class _Counter(LayerFactory):
    """A `LayerFactory` that creates no layers: `create` returns a function from a `_Tensor`
    to the layer's output `_Tensor` that adds the layer's cost up (overrides and layer classes
    apply as when building)."""

    def __init__(self, config):
        super().__init__(config, "channels_last")
        self.params = self.trainable_params = self.macs = 0

    def create(self, layer_class, name, **kwargs):
        kwargs = self.arguments(name, kwargs)
        self.created.append(name)
        for base, rule in _RULES:
            if issubclass(layer_class, base):
                return lambda inputs: rule(self, kwargs, inputs)
        raise ValueError(
            f"architecture_cost cannot count layer '{name}' of class {layer_class.__name__}; "
            f"it counts subclasses of {[base.__name__ for base, _ in _RULES]}."
        )

    def add(self, kwargs, weights: int, frozen: int = 0, macs: int = 0):
        """Count a layer's cost: `weights` train unless the layer is built with
        `trainable=False`; `frozen` ones never do (e.g. batch norm's moving statistics)."""
        self.params += weights + frozen
        self.trainable_params += weights if kwargs.get("trainable", True) else 0
        self.macs += macs


def _pair(value):
    return (value, value) if isinstance(value, int) else tuple(value)


def _length(size, kernel, stride, dilation, padding):
    """Keras' output length of a convolution or pooling along one axis."""
    if padding == "same":
        return -(-size // stride)
    return (size - dilation * (kernel - 1) - 1) // stride + 1


def _conv(counter, kwargs, x):
    _, height, width, channels = x.shape
    (kh, kw), strides = _pair(kwargs["kernel_size"]), _pair(kwargs.get("strides", 1))
    dilation, padding = _pair(kwargs.get("dilation_rate", 1)), kwargs.get("padding", "valid")
    filters = kwargs["filters"]
    out = [_length(size, k, s, d, padding)
           for size, k, s, d in zip((height, width), (kh, kw), strides, dilation)]
    weights = kh * kw * channels // kwargs.get("groups", 1) * filters
    bias = filters if kwargs.get("use_bias", True) else 0
    counter.add(kwargs, weights + bias, macs=out[0] * out[1] * weights)
    return _Tensor((None, *out, filters))


def _batch_norm(counter, kwargs, x):
    channels = x.shape[-1]
    affine = kwargs.get("center", True) + kwargs.get("scale", True)
    counter.add(kwargs, affine * channels, frozen=2 * channels)  # + moving mean and variance
    return x


def _dense(counter, kwargs, x):
    units, inputs = kwargs["units"], x.shape[-1]
    weights = inputs * units
    counter.add(kwargs, weights + (units if kwargs.get("use_bias", True) else 0),
                macs=math.prod(x.shape[1:-1]) * weights)
    return _Tensor((*x.shape[:-1], units))


def _zero_padding(counter, kwargs, x):
    (top, bottom), (left, right) = (_pair(side) for side in _pair(kwargs.get("padding", 1)))
    _, height, width, channels = x.shape
    return _Tensor((None, height + top + bottom, width + left + right, channels))


def _pooling(counter, kwargs, x):
    _, height, width, channels = x.shape
    pool = _pair(kwargs.get("pool_size", 2))
    strides = _pair(kwargs.get("strides") or pool)
    padding = kwargs.get("padding", "valid")
    out = [_length(size, p, s, 1, padding)
           for size, p, s in zip((height, width), pool, strides)]
    return _Tensor((None, *out, channels))


def _global_pooling(counter, kwargs, x):
    if kwargs.get("keepdims", False):
        return _Tensor((None, 1, 1, x.shape[-1]))
    return _Tensor((None, x.shape[-1]))


def _zero_pad_shortcut(counter, kwargs, x):
    _, height, width, _ = x.shape
    stride = kwargs.get("strides", 1)
    return _Tensor((None, -(-height // stride), -(-width // stride), kwargs["filters"]))


def _same_shape(counter, kwargs, x):
    return x[0] if isinstance(x, list) else x  # Add and Multiply: the first input's shape


# How each kind of layer the builder creates changes a shape and what it costs.
_RULES = (
    (keras.layers.Conv2D, _conv),
    (keras.layers.BatchNormalization, _batch_norm),
    (keras.layers.Dense, _dense),
    (keras.layers.ZeroPadding2D, _zero_padding),
    (keras.layers.MaxPooling2D, _pooling),
    (keras.layers.AveragePooling2D, _pooling),
    (keras.layers.GlobalAveragePooling2D, _global_pooling),
    (keras.layers.GlobalMaxPooling2D, _global_pooling),
    (ZeroPadShortcut, _zero_pad_shortcut),
    (keras.layers.Activation, _same_shape),
    (keras.layers.Add, _same_shape),
    (keras.layers.Multiply, _same_shape),
    (keras.layers.Dropout, _same_shape),
)


def model_table(names=None, build=None) -> str:
    """A Markdown table of registered models: input size, parameters, multiply-adds and the
    tags of their published weights (`keras_resnets.list_weights()`).

    Args:
        names: list of str. Registry names. Defaults to every registered model, in spec order.
        build: callable. Builds a model from its name. Defaults to `keras_resnets.get_model`.
    """
    from keras_resnets import registry, specs, weights_table

    build = build or registry.get_model
    rows = [
        "| Model | Paper | Input | Parameters | Trainable | Multiply-adds | Pretrained |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for name in names or list(specs.MODEL_SPECS):
        model = build(name)
        result = profile(model)
        paper = specs.PAPERS[specs.MODEL_SPECS[name].paper].split(",")[0]
        pretrained = ", ".join(f"`{tag}`" for tag in weights_table.tags_of(name))
        first_conv = next(layer for layer in model.layers
                          if isinstance(layer, keras.layers.Conv2D))
        channels_first = first_conv.data_format == "channels_first"
        spatial = model.input_shape[2:4] if channels_first else model.input_shape[1:3]
        size = "x".join(str(d) for d in spatial)
        rows.append(f"| `{name}` | {paper} | {size} | {result.params:,} | "
                    f"{result.trainable_params:,} | {result.gmacs:.2f}G | {pretrained} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(model_table(), end="")
