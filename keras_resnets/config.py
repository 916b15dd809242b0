"""Layer-level settings: one object that every convolution, normalisation and activation reads."""

import dataclasses
from typing import Any, Mapping, Optional, Union

import keras

from keras_resnets import validate

STRIDE_PLACEMENTS = ("1x1", "3x3")
DOWNSAMPLE_BLOCKS = ("first", "last")
DATA_FORMATS = ("channels_last", "channels_first")


@dataclasses.dataclass(frozen=True)
class LayerConfig:
    """Settings shared by the layers of a ResNet.

    Args:
        kernel_initializer: str or `keras.initializers.Initializer`. Initializer of every
            convolution kernel. Defaults to `"he_normal"` (He et al. 2015).
        kernel_regularizer: float, str, `keras.regularizers.Regularizer` or `None`. A float is an
            L2 coefficient. Applied to every convolution and the classifier. Defaults to `None`
            (weight decay is usually the optimizer's job).
        bn_momentum: float. Moving-average momentum of every `BatchNormalization`, in Keras'
            convention (PyTorch's 0.1 is Keras' 0.9). Defaults to `0.9`.
        bn_epsilon: float. Epsilon of every `BatchNormalization`. Defaults to `1e-5` (PyTorch);
            keras.applications uses `1.001e-5`.
        activation: str. Activation of the network. Defaults to `"relu"`.
        use_bias: bool or `"auto"`. Conv biases: `True` everywhere (keras.applications ResNet),
            `False` nowhere (torchvision), `"auto"` only where no batch normalisation directly
            follows (keras.applications ResNetV2). Defaults to `False`.
        zero_init_residual: bool. Start every residual branch at zero (Goyal et al. 2017): the
            gamma of the branch's last batch normalisation is zero, or, where a branch ends in
            a convolution (pre-activation units), that convolution's kernel. Defaults to `False`.
        stride_in: str. Which convolution of a bottleneck block carries the stride: `"1x1"` (the
            first one, as in the original Caffe models and keras.applications ResNet) or `"3x3"`
            (torchvision's "ResNet v1.5", about 0.5% better top-1). Basic blocks always stride
            their first 3x3. Defaults to `"3x3"`.
        downsample_block: str. Which block of a stage downsamples: `"first"` (the papers,
            torchvision) or `"last"` (TF-slim and keras.applications ResNetV2, where the last
            block of every stage but the last strides). Defaults to `"first"`.
        dropout_rate: float. Dropout before the classifier (`top_dropout`, with `include_top`).
            In [0, 1). Defaults to `0.0`.
        block_dropout_rate: float. Dropout between the convolutions of every residual branch
            (`{unit}_{i}_dropout` after convolution i's activation; the WRNs of Zagoruyko and
            Komodakis 2016 use 0.3 on CIFAR). In [0, 1). Defaults to `0.0`.
        drop_path_rate: float. Stochastic depth (Huang et al. 2016): while training, each
            unit's branch is dropped per sample with a rate rising linearly over the units from
            0 to `drop_path_rate` (`keras_resnets.builder.unit_drop_path_rates`), the kept ones
            scaled by 1 / (1 - rate) (`{unit}_drop_path`); inference is unchanged. Needs
            shortcuts. In [0, 1). Defaults to `0.0`.
        overrides: dict mapping a layer-name pattern (`fnmatch` style, e.g. `"*_bn"` or
            `"conv1_conv"`) to keyword arguments for the matching layers' constructors, applied
            after the settings above. A pattern that matches no layer is an error. Defaults to
            `{}`.
        layer_classes: dict mapping a role to the `keras.layers.Layer` subclass built for it,
            in place of the package's own (`keras_resnets.layers.LAYER_CLASSES`): `"conv"`
            (`keras.layers.Conv2D`), `"grouped_conv"` (`GroupedConv2D`), `"batch_norm"`
            (`FusedBatchNormalization`) or `"zero_pad_shortcut"` (`ZeroPadShortcut`). A class
            takes the arguments of the one it replaces, e.g.
            `{"batch_norm": keras.layers.BatchNormalization}`. Defaults to `{}`.

    Example:

    >>> config = LayerConfig(bn_momentum=0.99, overrides={"predictions": {"use_bias": False}})
    >>> config.bn_momentum
    0.99
    """

    kernel_initializer: Any = "he_normal"
    kernel_regularizer: Any = None
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    activation: str = "relu"
    use_bias: Union[bool, str] = False
    zero_init_residual: bool = False
    stride_in: str = "3x3"
    downsample_block: str = "first"
    dropout_rate: float = 0.0
    block_dropout_rate: float = 0.0
    drop_path_rate: float = 0.0
    overrides: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    layer_classes: Mapping[str, type] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        from keras_resnets.layers import LAYER_CLASSES  # that module imports this one

        validate.choice("stride_in", self.stride_in, STRIDE_PLACEMENTS)
        validate.choice("downsample_block", self.downsample_block, DOWNSAMPLE_BLOCKS)
        if not (isinstance(self.use_bias, bool) or self.use_bias == "auto"):
            raise ValueError(f"use_bias must be True, False or 'auto'; got {self.use_bias!r}.")
        validate.number_in("bn_momentum", self.bn_momentum, 0, 1, high_open=True, what="in ")
        validate.positive("bn_epsilon", self.bn_epsilon)
        for rate in ("dropout_rate", "block_dropout_rate", "drop_path_rate"):
            validate.number_in(rate, getattr(self, rate), 0, 1, high_open=True, what="in ")
        if not isinstance(self.layer_classes, Mapping) or not all(
            role in LAYER_CLASSES and isinstance(cls, type) and issubclass(cls, keras.layers.Layer)
            for role, cls in self.layer_classes.items()
        ):
            raise ValueError(
                f"layer_classes must map roles among {list(LAYER_CLASSES)} to keras.layers.Layer "
                f"subclasses; got {self.layer_classes!r}."
            )
        if not isinstance(self.overrides, Mapping) or not all(
            isinstance(v, Mapping) for v in self.overrides.values()
        ):
            raise ValueError(
                "overrides must map layer-name patterns to dicts of layer arguments, e.g. "
                f"{{'*_bn': {{'momentum': 0.99}}}}; got {self.overrides!r}."
            )


def data_format(value: Optional[str] = None) -> str:
    """`value` checked, or Keras' global `keras.config.image_data_format()` when it is `None`.

    The tensor layout is not a `LayerConfig` field: it describes the inputs rather than a
    convention, so the presets leave it alone and it follows Keras' global setting, as in
    keras.applications.
    """
    if value is None:
        return keras.config.image_data_format()
    validate.choice("data_format", value, DATA_FORMATS, prefix="None or ")
    return value


PRESETS = ("default", "torchvision", "keras_applications")


def preset(name: str, preactivation: bool = False) -> LayerConfig:
    """The `LayerConfig` of a named convention.

    Args:
        name: str. `"default"` (this package: He-normal init, PyTorch's BN settings, no conv
            bias, stride in the 3x3), `"torchvision"` (the same settings, named for clarity when
            porting torchvision weights), or `"keras_applications"` (the settings under which
            layer names, weight shapes and outputs equal keras.applications' ResNet or, for
            pre-activation units, ResNetV2).
        preactivation: bool. Whether the model uses pre-activation units; selects the ResNetV2
            variant of `"keras_applications"`. Defaults to `False`.
    """
    validate.choice("layer_config", name, PRESETS)
    if name != "keras_applications":
        return LayerConfig()
    common = dict(kernel_initializer="glorot_uniform", bn_momentum=0.99, bn_epsilon=1.001e-5)
    if preactivation:
        return LayerConfig(use_bias="auto", stride_in="3x3", downsample_block="last", **common)
    return LayerConfig(use_bias=True, stride_in="1x1", **common)


def resolve(
    layer_config: Optional[Union[str, LayerConfig]] = None,
    preactivation: bool = False,
    **options,
) -> LayerConfig:
    """Combine a preset name or `LayerConfig` with keyword options (the options win)."""
    if layer_config is None:
        layer_config = "default"
    if isinstance(layer_config, str):
        layer_config = preset(layer_config, preactivation)
    if not isinstance(layer_config, LayerConfig):
        raise ValueError(
            f"layer_config must be None, a LayerConfig or one of {list(PRESETS)}; "
            f"got {layer_config!r}."
        )
    fields = {f.name for f in dataclasses.fields(LayerConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise TypeError(
            f"Unknown layer option(s) {unknown}; valid options are {sorted(fields)}."
        )
    return dataclasses.replace(layer_config, **options)
