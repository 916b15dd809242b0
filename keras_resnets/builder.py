"""`ResNet(...)`: stem -> stages of residual units -> head, for every network of the family."""

import dataclasses
import sys
from typing import Optional, Sequence, Tuple

import keras

from keras_resnets import config as config_lib
from keras_resnets import pretrained, weight_files
from keras_resnets.blocks import (
    BLOCKS,
    ORDERINGS,
    SHORTCUTS,
    ConvSpec,
    LayerFactory,
    basic_block,
    bottleneck_block,
    residual_unit,
)


@dataclasses.dataclass(frozen=True)
class Stem:
    """The layers before the first stage and the defaults that go with them."""

    kernel_size: int
    strides: int
    max_pool: bool
    stage_widths: Tuple[int, ...]
    image_size: int
    classes: int

    @property
    def stride(self) -> int:
        """The resolution the first stage receives: input size / stride."""
        return self.strides * (2 if self.max_pool else 1)


STEMS = {
    # 7x7/2 convolution + 3x3/2 max pooling, four stages (He et al. 2015, Table 1).
    "imagenet": Stem(7, 2, True, (64, 128, 256, 512), image_size=224, classes=1000),
    # 3x3 convolution, three stages, depth 6n+2 (basic) or 9n+2 (bottleneck) (Section 4.2).
    "cifar": Stem(3, 1, False, (16, 32, 64), image_size=32, classes=10),
}

# Per-stage block counts of the ImageNet depths, by block kind (He et al. 2015, Table 1;
# ResNet-200 from He et al. 2016).
IMAGENET_DEPTHS = {
    "basic": {10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)},
    "bottleneck": {
        26: (2, 2, 2, 2),
        50: (3, 4, 6, 3),
        101: (3, 4, 23, 3),
        152: (3, 8, 36, 3),
        200: (3, 24, 36, 3),
    },
}
LAYERS_PER_BLOCK = {"basic": 2, "bottleneck": 3}
POOLINGS = (None, "avg", "max")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """The resolved shape of a network: everything `ResNet(...)` needs besides layer settings."""

    stem: str
    stem_width: int
    block: str
    stage_blocks: Tuple[int, ...]
    stage_widths: Tuple[int, ...]
    bottleneck_widths: Tuple[int, ...]  # width of the grouped 3x3 per stage (bottleneck only)
    cardinality: int
    unit: str
    shortcut: str
    plain: bool

    @property
    def depth(self) -> int:
        """Weighted layers: the stem's convolution, the units' convolutions, the classifier."""
        return sum(self.stage_blocks) * LAYERS_PER_BLOCK[self.block] + 2


def _choice(argument, value, choices):
    if value not in choices:
        raise ValueError(f"{argument} must be one of {list(choices)}; got {value!r}.")


def _positive_int(argument, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{argument} must be a positive integer; got {value!r}.")


def _cifar_blocks(depth, block, stages):
    per_block = LAYERS_PER_BLOCK[block] * stages
    if depth < per_block + 2 or (depth - 2) % per_block:
        examples = ", ".join(str(per_block * n + 2) for n in (1, 2, 3, 5, 9, 18))
        raise ValueError(
            f"depth={depth} is invalid for block='{block}' with the cifar stem: expected "
            f"{per_block}n+2 ({examples}, ...)."
        )
    return ((depth - 2) // per_block,) * stages


def resolve_architecture(
    depth=None,
    stage_blocks=None,
    block=None,
    stem="imagenet",
    stage_widths=None,
    width_multiplier=1.0,
    cardinality=1,
    bottleneck_width=None,
    unit="original",
    shortcut="B",
    plain=False,
) -> Architecture:
    """Validate the architecture arguments of `ResNet` and resolve depth into block counts."""
    _choice("stem", stem, STEMS)
    _choice("unit", unit, ORDERINGS)
    _choice("shortcut", shortcut, SHORTCUTS)
    if block is not None:
        _choice("block", block, BLOCKS)
    base_widths = tuple(stage_widths or STEMS[stem].stage_widths)
    for width in base_widths:
        _positive_int("stage_widths entries", width)
    if (depth is None) == (stage_blocks is None):
        raise ValueError(
            "Pass exactly one of depth and stage_blocks; got "
            f"depth={depth!r}, stage_blocks={stage_blocks!r}."
        )
    if depth is not None:
        _positive_int("depth", depth)
        if stem == "imagenet":
            kinds = [block] if block else BLOCKS
            matches = [(kind, IMAGENET_DEPTHS[kind][depth]) for kind in kinds
                       if depth in IMAGENET_DEPTHS[kind]]
            if not matches:
                valid = {kind: sorted(IMAGENET_DEPTHS[kind]) for kind in kinds}
                raise ValueError(
                    f"depth={depth} is not an ImageNet depth; valid depths by block: {valid}. "
                    "Pass stage_blocks for other depths."
                )
            block, stage_blocks = matches[0]
        else:
            block = block or "basic"
            stage_blocks = _cifar_blocks(depth, block, len(base_widths))
    else:
        block = block or "basic"
        stage_blocks = tuple(stage_blocks)
        for count in stage_blocks:
            _positive_int("stage_blocks entries", count)
    if len(stage_blocks) != len(base_widths):
        raise ValueError(
            f"stage_blocks has {len(stage_blocks)} stages but stage_widths has "
            f"{len(base_widths)}: {tuple(stage_blocks)} vs {base_widths}."
        )
    if not (isinstance(width_multiplier, (int, float)) and width_multiplier > 0):
        raise ValueError(f"width_multiplier must be a positive number; got {width_multiplier!r}.")
    widths = tuple(max(1, int(round(w * width_multiplier))) for w in base_widths)
    _positive_int("cardinality", cardinality)
    if bottleneck_width is not None:
        _positive_int("bottleneck_width", bottleneck_width)
    if block == "basic":
        if cardinality != 1 or bottleneck_width is not None:
            raise ValueError(
                "cardinality and bottleneck_width need block='bottleneck' (ResNeXt aggregates "
                f"bottleneck transformations); got cardinality={cardinality}, "
                f"bottleneck_width={bottleneck_width} with block='basic'."
            )
        group_widths = ()
    else:
        group_widths = tuple(
            _group_width(planes, cardinality, bottleneck_width, f"conv{index + 2}")
            for index, planes in enumerate(widths)
        )
    return Architecture(stem, base_widths[0], block, tuple(stage_blocks), widths, group_widths,
                        cardinality, unit, shortcut, bool(plain))


def _group_width(planes, cardinality, bottleneck_width, stage):
    """Width of a stage's grouped 3x3: C * d * planes / 64 (the ResNeXt template, as in timm)."""
    if bottleneck_width is None:
        if planes % cardinality:
            raise ValueError(
                f"cardinality={cardinality} does not divide the bottleneck width {planes} of "
                f"stage {stage}; choose a divisor or set bottleneck_width."
            )
        return planes
    per_group = planes * bottleneck_width / 64
    if per_group != int(per_group):
        raise ValueError(
            f"bottleneck_width={bottleneck_width} gives a fractional group width "
            f"{planes} * {bottleneck_width} / 64 = {per_group} in stage {stage}; the group width "
            "scales with the stage width, so choose a bottleneck_width that keeps it whole."
        )
    return int(per_group) * cardinality


def _input_shape(input_shape, include_top, stem, data_format):
    channels_first = data_format == "channels_first"
    layout = "(channels, height, width)" if channels_first else "(height, width, channels)"
    if input_shape is None:
        size = STEMS[stem].image_size if include_top else None
        return (3, size, size) if channels_first else (size, size, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or not all(d is None or (isinstance(d, int) and d > 0)
                                        for d in input_shape):
        raise ValueError(
            f"input_shape must be {layout} with positive sizes or None under "
            f"data_format='{data_format}'; got {input_shape!r}."
        )
    if input_shape[0 if channels_first else -1] is None:
        raise ValueError(
            f"input_shape must give the number of channels: it is {layout} under "
            f"data_format='{data_format}'; got {input_shape!r}."
        )
    return input_shape


def ResNet(
    depth: Optional[int] = None,
    *,
    stage_blocks: Optional[Sequence[int]] = None,
    block: Optional[str] = None,
    stem: str = "imagenet",
    stage_widths: Optional[Sequence[int]] = None,
    width_multiplier: float = 1.0,
    cardinality: int = 1,
    bottleneck_width: Optional[int] = None,
    unit: str = "original",
    shortcut: str = "B",
    plain: bool = False,
    include_top: bool = True,
    weights: Optional[str] = None,
    input_tensor=None,
    input_shape=None,
    pooling: Optional[str] = None,
    classes: Optional[int] = None,
    classifier_activation="softmax",
    name: str = "resnet",
    data_format: Optional[str] = None,
    output_stride: Optional[int] = None,
    layer_config=None,
    **layer_options,
) -> keras.Model:
    """Instantiates a ResNet, pre-activation ResNet, ResNeXt or plain network.

    References:
    - He et al. 2015, "Deep Residual Learning for Image Recognition" (basic and bottleneck
      blocks, shortcut options A/B/C, ImageNet and CIFAR depths, plain networks).
    - He et al. 2016, "Identity Mappings in Deep Residual Networks" (the five unit orderings).
    - Xie et al. 2016, "Aggregated Residual Transformations for Deep Neural Networks"
      (cardinality and bottleneck width).

    Args:
        depth: int. Number of weighted layers. With the imagenet stem one of 10, 18, 34 (basic)
            or 26, 50, 101, 152, 200 (bottleneck); with the cifar stem 6n+2 (basic) or 9n+2
            (bottleneck). Give either `depth` or `stage_blocks`.
        stage_blocks: sequence of int. Residual units per stage, e.g. `(3, 4, 6, 3)`.
        block: str. `"basic"` (two 3x3 convolutions) or `"bottleneck"` (1x1, 3x3, 1x1 with
            4x expansion). Defaults to the depth's kind (ImageNet) or `"basic"`.
        stem: str. `"imagenet"` (7x7/2 conv + 3x3/2 max pool, widths 64-512, 224x224 inputs,
            1000 classes) or `"cifar"` (3x3 conv, widths 16-64, 32x32 inputs, 10 classes).
            Defaults to `"imagenet"`.
        stage_widths: sequence of int. Base width ("planes") of each stage; the stem has the
            first stage's width. Defaults to the stem's widths.
        width_multiplier: float. Scales every stage width (not the stem), as in Wide ResNets.
            Defaults to `1.0`.
        cardinality: int. Groups of the bottleneck's 3x3 convolution (ResNeXt's C).
            Defaults to `1`.
        bottleneck_width: int. Width per group for a stage of base width 64 (ResNeXt's d);
            the 3x3 width of a stage with base width w is C * d * w / 64. `None` keeps the
            3x3 width equal to the stage width. Defaults to `None`.
        unit: str. The residual-unit ordering of He et al. 2016, Figure 4: `"original"` (a),
            `"bn_after_addition"` (b), `"relu_before_addition"` (c), `"relu_only_preactivation"`
            (d) or `"full_preactivation"` (e, ResNet v2). Pre-activation units (d, e) add a
            final activation before pooling (`post_bn`, `post_relu`). Defaults to `"original"`.
        shortcut: str. `"A"`: identity, subsampled and zero-padded where dimensions change (no
            parameters); `"B"`: projection where the channels change; `"C"`: projection in
            every unit. Defaults to `"B"`.
        plain: bool. Drop every shortcut (the plain networks of He et al. 2015, Figure 6).
            Defaults to `False`.
        include_top: bool. Whether to end in global average pooling and a dense classifier.
            Defaults to `True`.
        weights: str or `None`. `None` (random initialisation), a tag of the weight table
            for the model's name (`keras_resnets.list_weights()`: `"imagenet"` for
            keras.applications' weights, `"torchvision"`, `"tv_in1k"`, `"tv2_in1k"` for
            torchvision's), fetched once into Keras' cache, or the path of a weight file in
            any layout `keras_resnets.load_weights` reads (`.weights.h5`, keras.applications
            `.h5`, torchvision `.pth`, `.safetensors`). A tag implies its `layer_config`.
            Defaults to `None`.
        input_tensor: optional Keras tensor to use as the model's input.
        input_shape: tuple. `(height, width, channels)`, or `(channels, height, width)` with
            `data_format="channels_first"`. Defaults to the stem's image size when
            `include_top` is True, else `(None, None, 3)` (`(3, None, None)` channels-first).
        pooling: str or `None`. With `include_top=False`: `None` (4D feature map), `"avg"` or
            `"max"` (global pooling). Defaults to `None`.
        classes: int. Number of classes. Defaults to the stem's (1000 or 10).
        classifier_activation: str, callable or `None`. Activation of the classifier; `None`
            returns logits. The classifier computes in float32 under a mixed-precision policy.
            Defaults to `"softmax"`.
        name: str. The model's name. Defaults to `"resnet"`.
        data_format: str or `None`. `"channels_last"` (images as height, width, channels) or
            `"channels_first"` (channels, height, width: PyTorch's layout). Layer names,
            parameters and weight shapes are the same in both, so weights copy between them.
            On TensorFlow's CPU, channels-first convolutions and poolings need oneDNN (its
            default on x86). Defaults to `None`, which means `keras.config.image_data_format()`
            (as in keras.applications).
        output_stride: int or `None`. The coarsest resolution of the feature maps (input size /
            stride): `8` or `16` replace the last stages' strides with dilated 3x3
            convolutions (DeepLab; torchvision's `replace_stride_with_dilation`), with the same
            parameters and weights. One of the strides the stages reach (4, 8, 16, 32 with the
            imagenet stem; 1, 2, 4 with the cifar stem). Defaults to `None` (no dilation).
        layer_config: `keras_resnets.LayerConfig`, or a preset name: `"default"`,
            `"torchvision"` or `"keras_applications"`. Defaults to `"default"`.
        **layer_options: fields of `LayerConfig` (e.g. `bn_momentum=0.99`,
            `zero_init_residual=True`, `overrides={"*_bn": {"center": False}}`), which take
            precedence over `layer_config`.

    Returns:
        A `keras.Model`. Its `pyramid_outputs` attribute maps level names to feature maps
        (`"P2"`-`"P5"` at strides 4-32 for ImageNet models, `"P0"`-`"P2"` for CIFAR ones;
        see `keras_resnets.feature_extractor`).

    Example:

    >>> import keras_resnets
    >>> model = keras_resnets.ResNet(56, stem="cifar", shortcut="A", name="resnet56")
    >>> model.count_params() > 850_000
    True
    >>> model.output_shape
    (None, 10)
    """
    arch = resolve_architecture(depth, stage_blocks, block, stem, stage_widths, width_multiplier,
                                cardinality, bottleneck_width, unit, shortcut, plain)
    ordering = ORDERINGS[arch.unit]
    _choice("pooling", pooling, POOLINGS)
    if output_stride is not None:
        _choice("output_stride", output_stride, output_strides(arch))
    if classes is None:
        classes = STEMS[arch.stem].classes
    if include_top:
        _positive_int("classes", classes)
    # A tag of the weight table implies its layer settings; `load` loads it once built.
    layer_config, load = pretrained.prepare(
        weights, name=name, layer_config=layer_config, layer_options=layer_options,
        preactivation=ordering.preactivation, include_top=include_top, classes=classes)
    layer_settings = config_lib.resolve(layer_config, ordering.preactivation, **layer_options)
    data_format = config_lib.data_format(data_format)

    if input_tensor is None:
        inputs = keras.Input(shape=_input_shape(input_shape, include_top, arch.stem, data_format))
    elif keras.backend.is_keras_tensor(input_tensor):
        inputs = input_tensor
    else:
        inputs = keras.Input(tensor=input_tensor, shape=input_shape)

    make = LayerFactory(layer_settings, data_format)
    x = _stem(inputs, arch, ordering, make)
    x, pyramid = _stages(x, arch, ordering, make, output_stride)
    x = _head(x, make, include_top, pooling, classes, classifier_activation)

    if make.unmatched_overrides:
        raise ValueError(
            f"overrides pattern(s) {sorted(make.unmatched_overrides)} matched no layer of this "
            "model; layer names look like 'conv1_conv', 'conv2_block1_1_bn', 'predictions'."
        )
    source = keras.utils.get_source_inputs(input_tensor) if input_tensor is not None else inputs
    _allow_graph_depth(len(make.created))
    model = keras.Model(source, x, name=name)
    model.pyramid_outputs = pyramid
    if load is not None:
        try:
            load(model)
        except weight_files.WeightsMismatchError as error:
            raise weight_files.WeightsMismatchError(
                f"weights={str(weights)!r} does not fit model '{name}' built with "
                f"classes={classes}, include_top={include_top}: {error}"
            ) from None
    return model


def _allow_graph_depth(layers):
    """Keras walks functional graphs recursively (building, saving, loading, cloning), so a
    ResNet-1202 exceeds Python's default recursion limit of 1000; raise it, never lower it."""
    needed = 4 * layers + 1000
    if sys.getrecursionlimit() < needed:
        sys.setrecursionlimit(needed)


def _stem(inputs, arch, ordering, make):
    stem = STEMS[arch.stem]
    spec = ConvSpec(arch.stem_width, stem.kernel_size, stem.strides)
    x = make.conv(inputs, spec, "conv1_conv", followed_by_bn=not ordering.preactivation)
    if not ordering.preactivation:
        x = make.apply(x, ("bn", "relu"), ["conv1_bn", "conv1_relu"])
    if stem.max_pool:
        x = make.spatial(keras.layers.ZeroPadding2D, "pool1_pad", padding=1)(x)
        x = make.spatial(keras.layers.MaxPooling2D, "pool1_pool", pool_size=3, strides=2)(x)
    return x


def unit_strides(arch: Architecture, downsample_block: str = "first"):
    """The stride of every residual unit, stage by stage: the first stage keeps the resolution
    and each later one halves it, in its first unit (`"first"`) or in the last unit of the
    stage before (`"last"`, keras.applications ResNetV2)."""
    halves = (1,) + (2,) * (len(arch.stage_blocks) - 1)
    plan = []
    for stage, blocks in enumerate(arch.stage_blocks):
        if downsample_block == "first":
            plan.append([halves[stage]] + [1] * (blocks - 1))
        else:
            last = halves[stage + 1] if stage + 1 < len(halves) else 1
            plan.append([1] * (blocks - 1) + [last])
    return plan


def output_strides(arch: Architecture):
    """The `output_stride` values of an architecture: the resolutions its stages reach."""
    first = STEMS[arch.stem].stride
    return tuple(first * 2 ** stage for stage in range(len(arch.stage_blocks)))


def level_name(stride: int) -> str:
    """keras-hub's pyramid level names: `"P{k}"` for a feature map at stride 2**k."""
    return f"P{stride.bit_length() - 1}"


def _stages(x, arch, ordering, make, output_stride=None):
    """Stage i is named conv{i+2}. Returns the last feature map and the pyramid: for each
    stride, the last unit output at that stride (before dilation replaces strides; the final
    one after the pre-activation models' closing bn + relu).

    With `output_stride`, a unit that would go below that resolution keeps stride 1 and its
    3x3 convolutions' dilation, and the units after it dilate by the stride it dropped (the
    rule of torchvision's `replace_stride_with_dilation` and DeepLab).
    """
    stride = nominal = STEMS[arch.stem].stride
    dilation = 1
    pyramid = {}
    for stage, strides in enumerate(unit_strides(arch, make.config.downsample_block)):
        planes = arch.stage_widths[stage]
        for index, unit_stride in enumerate(strides):
            unit_dilation = dilation
            nominal *= unit_stride
            if output_stride is not None and stride * unit_stride > output_stride:
                dilation, unit_stride = dilation * unit_stride, 1
            stride *= unit_stride
            if arch.block == "basic":
                convs, out_channels = basic_block(planes, unit_stride, unit_dilation)
            else:
                convs, out_channels = bottleneck_block(
                    planes, unit_stride, arch.bottleneck_widths[stage], arch.cardinality,
                    make.config.stride_in, unit_dilation,
                )
            x = residual_unit(
                x, convs, out_channels, stride=unit_stride, ordering=ordering,
                shortcut_option=arch.shortcut, plain=arch.plain, make=make,
                name=f"conv{stage + 2}_block{index + 1}",
            )
            pyramid[level_name(nominal)] = x
    # Pre-activation units leave the last sum un-normalised: apply their pre-activation once more.
    x = make.apply(x, ordering.pre, [f"post_{operation}" for operation in ordering.pre])
    pyramid[level_name(nominal)] = x
    return x, pyramid


def _head(x, make, include_top, pooling, classes, classifier_activation):
    if include_top:
        x = make.spatial(keras.layers.GlobalAveragePooling2D, "avg_pool")(x)
        mixed = keras.config.dtype_policy().compute_dtype in ("float16", "bfloat16")
        return make.dense(x, classes, classifier_activation, "predictions",
                          dtype="float32" if mixed else None)
    if pooling == "avg":
        return make.spatial(keras.layers.GlobalAveragePooling2D, "avg_pool")(x)
    if pooling == "max":
        return make.spatial(keras.layers.GlobalMaxPooling2D, "max_pool")(x)
    return x
