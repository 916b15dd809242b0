"""Residual units: the two block kinds, the five unit orderings and the shortcut options.

A residual unit is `x -> shortcut(x) + branch(x)`. The block kind (basic or bottleneck) fixes the
branch's convolutions; the ordering (He et al. 2016, "Identity Mappings in Deep Residual
Networks", Figure 4) fixes where batch normalisation ("bn") and the activation ("relu") sit
around them; the shortcut option (He et al. 2015, Section 3.3) fixes how the shortcut matches
dimensions. Layer names follow keras.applications: `{unit}_{i}_conv`, `{unit}_{i}_bn`,
`{unit}_{i}_relu`, `{unit}_0_conv` for the projection shortcut, `{unit}_add`, `{unit}_out`.
"""

import dataclasses
import fnmatch
from typing import NamedTuple, Sequence, Tuple

import keras

from keras_resnets.config import LayerConfig
from keras_resnets.layers import FusedBatchNormalization, GroupedConv2D, ZeroPadShortcut


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
BLOCKS = ("basic", "bottleneck")
BOTTLENECK_EXPANSION = 4


class ConvSpec(NamedTuple):
    filters: int
    kernel_size: int
    strides: int = 1
    groups: int = 1
    dilation: int = 1


def basic_block(planes: int, stride: int, dilation: int = 1) -> Tuple[Sequence[ConvSpec], int]:
    """Two 3x3 convolutions; the first carries the stride. Returns (convs, output channels)."""
    return [ConvSpec(planes, 3, stride, dilation=dilation),
            ConvSpec(planes, 3, dilation=dilation)], planes


def bottleneck_block(
    planes: int, stride: int, width: int, cardinality: int, stride_in: str, dilation: int = 1
) -> Tuple[Sequence[ConvSpec], int]:
    """1x1 reduce to `width`, 3x3 with `cardinality` groups, 1x1 expand to 4 * `planes`.

    ResNeXt (Xie et al. 2016) is this block with `cardinality` > 1: the aggregated
    transformations are one grouped convolution (their Figure 3c). `dilation` applies to the
    3x3, as in torchvision.
    """
    first_stride, middle_stride = (stride, 1) if stride_in == "1x1" else (1, stride)
    convs = [
        ConvSpec(width, 1, first_stride),
        ConvSpec(width, 3, middle_stride, cardinality, dilation),
        ConvSpec(planes * BOTTLENECK_EXPANSION, 1),
    ]
    return convs, planes * BOTTLENECK_EXPANSION


class LayerFactory:
    """Creates the layers of one model from a `LayerConfig`, applying its per-name overrides.

    It also holds the model's `data_format`: every layer that reads spatial or channel axes
    (convolutions, paddings, poolings, batch normalisations, the zero-padding shortcut) is
    created here with it, so no block function needs to know the layout.
    """

    def __init__(self, config: LayerConfig, data_format: str = "channels_last"):
        self.config = config
        self.data_format = data_format
        self.channel_axis = 1 if data_format == "channels_first" else -1
        self.unmatched_overrides = set(config.overrides)
        self.created = []
        regularizer = config.kernel_regularizer
        if isinstance(regularizer, (int, float)) and not isinstance(regularizer, bool):
            regularizer = keras.regularizers.L2(regularizer)
        self.kernel_regularizer = regularizer

    def create(self, layer_class, name, **kwargs):
        for pattern, settings in self.config.overrides.items():
            if fnmatch.fnmatchcase(name, pattern):
                kwargs.update(settings)
                self.unmatched_overrides.discard(pattern)
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
            GroupedConv2D if spec.groups > 1 else keras.layers.Conv2D,
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
            FusedBatchNormalization,
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


def shortcut(x, preactivated, out_channels, stride, option, ordering, make, name):
    """Option A: subsample and zero-pad; B: project where the channels change; C: always project.

    A projection of a pre-activation unit reads the pre-activated input (as keras.applications
    ResNetV2 and the paper's first unit of each stage do); otherwise it is conv + bn.
    """
    in_channels = make.channels(x)
    if option == "C" or (option == "B" and in_channels != out_channels):
        source = preactivated if ordering.preactivation else x
        projection = make.conv(
            source, ConvSpec(out_channels, 1, stride), f"{name}_0_conv",
            followed_by_bn=not ordering.preactivation,
        )
        if ordering.preactivation:
            return projection
        return make.bn(projection, f"{name}_0_bn")
    if stride == 1 and in_channels == out_channels:
        return x
    return make.spatial(ZeroPadShortcut, f"{name}_0_pad", filters=out_channels, strides=stride)(x)


def residual_unit(x, convs, out_channels, *, stride, ordering, shortcut_option, plain, make, name):
    """One residual unit (or, with `plain=True`, the same layers without the shortcut)."""
    preactivated = make.apply(x, ordering.pre, _names(f"{name}_preact", ordering.pre))
    zero_init = make.config.zero_init_residual and not plain
    y = preactivated
    for index, spec in enumerate(convs, start=1):
        is_last = index == len(convs)
        operations = ordering.last if is_last else ("bn", "relu")
        y = make.conv(
            y, spec, f"{name}_{index}_conv",
            followed_by_bn=operations[:1] == ("bn",),
            zero_kernel=zero_init and is_last and "bn" not in operations,
        )
        y = make.apply(y, operations, _names(f"{name}_{index}", operations),
                       zero_gamma=zero_init and is_last)
    if not plain:
        short = shortcut(x, preactivated, out_channels, stride, shortcut_option, ordering, make,
                         name)
        add_name = f"{name}_add" if ordering.post else f"{name}_out"
        y = make.create(keras.layers.Add, add_name)([short, y])
    post_names = _names(f"{name}_post", ordering.post[:-1]) + [f"{name}_out"]
    return make.apply(y, ordering.post, post_names)
