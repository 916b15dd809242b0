"""Residual units: a block kind's branch, the five unit orderings and the shortcut options.

A residual unit is `x -> shortcut(x) + branch(x)`. The block kind (a row of
`keras_resnets.specs.BLOCK_KINDS`: basic or bottleneck) fixes the branch's convolutions; the
ordering (He et al. 2016, "Identity Mappings in Deep Residual Networks", Figure 4) fixes where
batch normalisation ("bn") and the activation ("relu") sit around them; the shortcut option
(He et al. 2015, Section 3.3) fixes how the shortcut matches dimensions. Layer names follow
keras.applications: `{unit}_{i}_conv`, `{unit}_{i}_bn`, `{unit}_{i}_relu`, `{unit}_0_conv` for
the projection shortcut, `{unit}_add`, `{unit}_out`.

The options every ordering takes: squeeze-and-excitation on the branch's output
(`{unit}_se_squeeze`, `_se_reduce`, `_se_expand`, `_se_excite`; Hu et al. 2018), dropout between
the branch's convolutions (`{unit}_{i}_dropout`; Zagoruyko and Komodakis 2016) and stochastic
depth on the whole branch (`{unit}_drop_path`; Huang et al. 2016).
"""

import dataclasses
import fnmatch
from typing import NamedTuple, Sequence, Tuple

import keras

from keras_resnets.config import LayerConfig
from keras_resnets.layers import LAYER_CLASSES
from keras_resnets.specs import BlockKind


@dataclasses.dataclass(frozen=True)
class Ordering:
    """Where "bn" and "relu" sit in a residual unit (every inner convolution is followed by both).

    Attributes:
        pre: operations on the unit's input before the branch (the pre-activation).
        last: operations after the branch's last convolution.
        post: operations after the addition.
    """

    pre: Tuple[str, ...]
    last: Tuple[str, ...]
    post: Tuple[str, ...]

    @property
    def preactivation(self) -> bool:
        return bool(self.pre)


ORDERINGS = {
    "original": Ordering(pre=(), last=("bn",), post=("relu",)),  # (a)
    "bn_after_addition": Ordering(pre=(), last=(), post=("bn", "relu")),  # (b)
    "relu_before_addition": Ordering(pre=(), last=("bn", "relu"), post=()),  # (c)
    "relu_only_preactivation": Ordering(pre=("relu",), last=("bn",), post=()),  # (d)
    "full_preactivation": Ordering(pre=("bn", "relu"), last=(), post=()),  # (e)
}
SHORTCUTS = ("A", "B", "C")


class ConvSpec(NamedTuple):
    filters: int
    kernel_size: int
    strides: int = 1
    groups: int = 1
    dilation: int = 1


def branch(kind: BlockKind, planes: int, stride: int, *, width: int, cardinality: int = 1,
           stride_in: str = "3x3", dilation: int = 1) -> Tuple[Sequence[ConvSpec], int]:
    """The convolutions of a unit's branch, from its row of `keras_resnets.specs.BLOCK_KINDS`.
    Returns (convs, output channels).

    The inner convolutions have `width` filters and the last one `kind.expansion * planes`;
    the spatial ones (3x3) are grouped by `cardinality` (ResNeXt, Xie et al. 2016, Figure 3c:
    the aggregated transformations as one grouped convolution) and dilated by `dilation` (as
    in torchvision). The stride sits on the first convolution of the `stride_in` size, or on
    the first one where the block has none (a basic block strides its first 3x3).
    """
    sizes = kind.kernel_sizes
    strided = next((i for i, size in enumerate(sizes) if stride_in == f"{size}x{size}"), 0)
    out_channels = planes * kind.expansion
    convs = [ConvSpec(out_channels if index == len(sizes) - 1 else width, size,
                      stride if index == strided else 1,
                      cardinality if size > 1 else 1, dilation if size > 1 else 1)
             for index, size in enumerate(sizes)]
    return convs, out_channels


class LayerFactory:
    """Creates the layers of one model from a `LayerConfig`, applying its per-name overrides.

    It also holds the model's `data_format`: every layer that reads spatial or channel axes
    (convolutions, paddings, poolings, batch normalisations, the zero-padding shortcut) is
    created here with it, so no block function needs to know the layout. `classes` maps the
    roles of `keras_resnets.layers.LAYER_CLASSES` to the classes used, with the config's
    `layer_classes` in place of the package's own.
    """

    def __init__(self, config: LayerConfig, data_format: str = "channels_last"):
        self.config = config
        self.classes = {**LAYER_CLASSES, **config.layer_classes}
        self.data_format = data_format
        self.channel_axis = 1 if data_format == "channels_first" else -1
        self.unmatched_overrides = set(config.overrides)
        self.created = []
        regularizer = config.kernel_regularizer
        if isinstance(regularizer, (int, float)) and not isinstance(regularizer, bool):
            regularizer = keras.regularizers.L2(regularizer)
        self.kernel_regularizer = regularizer

    def arguments(self, name, kwargs):
        """`kwargs` of layer `name` with the config's overrides for that name applied."""
        for pattern, settings in self.config.overrides.items():
            if fnmatch.fnmatchcase(name, pattern):
                kwargs.update(settings)
                self.unmatched_overrides.discard(pattern)
        return kwargs

    def create(self, layer_class, name, **kwargs):
        kwargs = self.arguments(name, kwargs)
        try:
            layer = layer_class(name=name, **kwargs)
        except (TypeError, ValueError) as error:
            raise ValueError(f"Invalid arguments for layer '{name}': {error}") from None
        self.created.append(name)
        return layer

    def spatial(self, layer_class, name, **kwargs):
        """A layer that takes a `data_format` (padding, pooling, ...), in the model's layout."""
        return self.create(layer_class, name, data_format=self.data_format, **kwargs)

    def channels(self, x) -> int:
        return x.shape[self.channel_axis]

    def conv(self, x, spec: ConvSpec, name: str, followed_by_bn: bool, zero_kernel=False):
        """A convolution; strided ones pad symmetrically (as Caffe and PyTorch do), and so do
        dilated ones (stride 1: "same" pads `dilation` on each side)."""
        padding = "same"
        if spec.strides > 1 and spec.kernel_size > 1:
            pad_name = name[: -len("conv")] + "pad"
            x = self.spatial(keras.layers.ZeroPadding2D, pad_name,
                             padding=spec.kernel_size // 2)(x)
            padding = "valid"
        use_bias = self.config.use_bias
        if use_bias == "auto":
            use_bias = not followed_by_bn
        return self.spatial(
            self.classes["grouped_conv" if spec.groups > 1 else "conv"],
            name,
            filters=spec.filters,
            kernel_size=spec.kernel_size,
            strides=spec.strides,
            padding=padding,
            dilation_rate=spec.dilation,
            groups=spec.groups,
            use_bias=use_bias,
            kernel_initializer="zeros" if zero_kernel else self.config.kernel_initializer,
            kernel_regularizer=self.kernel_regularizer,
        )(x)

    def bn(self, x, name, zero_gamma=False):
        return self.create(
            self.classes["batch_norm"],
            name,
            axis=self.channel_axis,
            momentum=self.config.bn_momentum,
            epsilon=self.config.bn_epsilon,
            gamma_initializer="zeros" if zero_gamma else "ones",
        )(x)

    def apply(self, x, operations, names, zero_gamma=False):
        """Apply "bn" / "relu" operations in order, naming the layers from `names`."""
        for operation, name in zip(operations, names):
            if operation == "bn":
                x = self.bn(x, name, zero_gamma)
            else:
                x = self.create(keras.layers.Activation, name, activation=self.config.activation)(x)
        return x

    def dense(self, x, units, activation, name, dtype=None):
        return self.create(
            keras.layers.Dense,
            name,
            units=units,
            activation=activation,
            kernel_regularizer=self.kernel_regularizer,
            dtype=dtype,
        )(x)


def _names(prefix, operations):
    return [f"{prefix}_{operation}" for operation in operations]


def shortcut(x, preactivated, out_channels, stride, option, ordering, make, name,
             avg_down=False):
    """Option A: subsample and zero-pad; B: project where the channels change; C: always project.
    With `avg_down`, a strided projection is a 2x2 average pooling of that stride, then a 1x1/1
    convolution (ResNet-D, He et al. 2019, Figure 2c; timm's `avg_down`).

    A projection of a pre-activation unit reads the pre-activated input (as keras.applications
    ResNetV2 and the paper's first unit of each stage do); otherwise it is conv + bn.
    """
    in_channels = make.channels(x)
    if option == "C" or (option == "B" and in_channels != out_channels):
        source = preactivated if ordering.preactivation else x
        if avg_down and stride > 1:
            # "same" pools a last odd row/column alone, as PyTorch's ceil_mode with
            # count_include_pad=False does (on the torch backend Keras counts the padding).
            source = make.spatial(keras.layers.AveragePooling2D, f"{name}_0_pool", pool_size=2,
                                  strides=stride, padding="same")(source)
            stride = 1
        projection = make.conv(
            source, ConvSpec(out_channels, 1, stride), f"{name}_0_conv",
            followed_by_bn=not ordering.preactivation,
        )
        if ordering.preactivation:
            return projection
        return make.bn(projection, f"{name}_0_bn")
    if stride == 1 and in_channels == out_channels:
        return x
    return make.spatial(make.classes["zero_pad_shortcut"], f"{name}_0_pad", filters=out_channels,
                        strides=stride)(x)


def se_channels(channels: int, se_ratio: float) -> int:
    """Channels of a squeeze-and-excitation bottleneck: `channels * se_ratio` rounded to a
    multiple of 8, at least 8 (timm's `make_divisible(..., 8, round_limit=0)`, so timm's
    weights port; the paper's ratio 1/16 gives 16 to 128 in ImageNet ResNets)."""
    return max(8, int(channels * se_ratio + 4) // 8 * 8)


def squeeze_excite(x, se_ratio, make, name):
    """Hu et al. 2018, Figure 3: global average pooling, 1x1 reduce + ReLU, 1x1 expand +
    sigmoid, channel-wise scaling (1x1 convolutions with biases, as timm's SEModule)."""
    channels = make.channels(x)
    scale = make.spatial(keras.layers.GlobalAveragePooling2D, f"{name}_se_squeeze",
                         keepdims=True)(x)
    for suffix, filters, activation in (("reduce", se_channels(channels, se_ratio), "relu"),
                                        ("expand", channels, "sigmoid")):
        scale = make.spatial(
            make.classes["conv"], f"{name}_se_{suffix}", filters=filters, kernel_size=1,
            activation=activation, use_bias=True,
            kernel_initializer=make.config.kernel_initializer,
            kernel_regularizer=make.kernel_regularizer)(scale)
    return make.create(keras.layers.Multiply, f"{name}_se_excite")([x, scale])


def residual_unit(x, convs, out_channels, *, stride, ordering, shortcut_option, plain, make, name,
                  se_ratio=None, avg_down=False, drop_path_rate=0.0):
    """One residual unit (or, with `plain=True`, the same layers without the shortcut).

    `avg_down` pools before strided projections (see `shortcut`); `se_ratio` adds
    squeeze-and-excitation after the branch's last convolution and its
    ordering's operations, before the addition; `drop_path_rate` drops the branch of a sample
    with that probability while training (scaling the kept ones by 1 / (1 - rate), as timm's
    `drop_path`). The config's `block_dropout_rate` drops activations before every convolution
    of the branch but the first (WRN's dropout between the two 3x3 convolutions).
    """
    preactivated = make.apply(x, ordering.pre, _names(f"{name}_preact", ordering.pre))
    zero_init = make.config.zero_init_residual and not plain
    y = preactivated
    for index, spec in enumerate(convs, start=1):
        is_last = index == len(convs)
        operations = ordering.last if is_last else ("bn", "relu")
        if index > 1 and make.config.block_dropout_rate:
            y = make.create(keras.layers.Dropout, f"{name}_{index - 1}_dropout",
                            rate=make.config.block_dropout_rate)(y)
        y = make.conv(
            y, spec, f"{name}_{index}_conv",
            followed_by_bn=operations[:1] == ("bn",),
            zero_kernel=zero_init and is_last and "bn" not in operations,
        )
        y = make.apply(y, operations, _names(f"{name}_{index}", operations),
                       zero_gamma=zero_init and is_last)
    if se_ratio:
        y = squeeze_excite(y, se_ratio, make, name)
    if drop_path_rate:
        # One draw per sample (noise_shape broadcasts over the feature map), so the branch
        # is kept or dropped whole.
        y = make.create(keras.layers.Dropout, f"{name}_drop_path", rate=drop_path_rate,
                        noise_shape=(None, 1, 1, 1))(y)
    if not plain:
        short = shortcut(x, preactivated, out_channels, stride, shortcut_option, ordering, make,
                         name, avg_down)
        add_name = f"{name}_add" if ordering.post else f"{name}_out"
        y = make.create(keras.layers.Add, add_name)([short, y])
    post_names = _names(f"{name}_post", ordering.post[:-1]) + [f"{name}_out"]
    return make.apply(y, ordering.post, post_names)
