"""`ResNet(...)`: stem -> stages of residual units -> head, for every network of the family."""

import dataclasses
import inspect
import sys
from typing import Any, Optional, Sequence, Tuple

import keras

from keras_resnets import config as config_lib
from keras_resnets import pretrained, validate, weight_files
from keras_resnets.blocks import ORDERINGS, SHORTCUTS, ConvSpec, LayerFactory, branch, residual_unit
from keras_resnets.specs import BLOCK_KINDS, DEFAULT_BLOCK_KIND, STEMS

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
    se_ratio: Optional[float] = None
    avg_down: bool = False

    @property
    def depth(self) -> int:
        """Weighted layers: the stem's convolution, the units' convolutions, the classifier."""
        return BLOCK_KINDS[self.block].depth(self.stage_blocks)


def _depth_blocks(depth, block, stem, stages):
    """The block kind and blocks per stage of `depth`: an ImageNet depth of the table, or
    the same n in every stage with the cifar stem."""
    if STEMS[stem].family == "imagenet":
        kinds = [BLOCK_KINDS[block]] if block else list(BLOCK_KINDS.values())
        matches = [kind for kind in kinds if depth in kind.imagenet_depths]
        if not matches:
            valid = {kind.name: sorted(kind.imagenet_depths) for kind in kinds}
            raise ValueError(
                f"depth={depth} is not an ImageNet depth; valid depths by block: {valid}. "
                "Pass stage_blocks for other depths."
            )
        return matches[0].name, matches[0].imagenet_depths[depth]
    kind = BLOCK_KINDS[block or DEFAULT_BLOCK_KIND]
    stage_blocks = kind.uniform_blocks(depth, stages)
    if stage_blocks is None:
        per_block = kind.layers * stages
        examples = ", ".join(str(per_block * n + 2) for n in (1, 2, 3, 5, 9, 18))
        raise ValueError(
            f"depth={depth} is invalid for block='{kind.name}' with the cifar stem: expected "
            f"{per_block}n+2 ({examples}, ...)."
        )
    return kind.name, stage_blocks


def resolve_architecture(
    *,
    depth: Optional[int] = None,
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
    se_ratio: Optional[float] = None,
    avg_down: bool = False,
) -> Architecture:
    """Validate the architecture arguments of `ResNet` and resolve depth into block counts.

    Its keyword arguments are the architecture arguments of `ResNet` (documented there), in
    their order; `ARCHITECTURE_ARGUMENTS` lists them, and `ResNet`, the registry and the tuner
    read that list.

    Returns:
        An `Architecture`.

    Example:

    >>> arch = resolve_architecture(depth=164, stem="cifar", block="bottleneck")
    >>> arch.stage_blocks, arch.stage_widths
    ((18, 18, 18), (16, 32, 64))
    """
    validate.choice("stem", stem, STEMS)
    validate.choice("unit", unit, ORDERINGS)
    validate.choice("shortcut", shortcut, SHORTCUTS)
    if avg_down and shortcut == "A":
        raise ValueError("avg_down=True pools before projection shortcuts, which shortcut='A' "
                         "does not have; use shortcut='B' or 'C'.")
    if block is not None:
        validate.choice("block", block, BLOCK_KINDS)
    base_widths = tuple(stage_widths or STEMS[stem].stage_widths)
    for width in base_widths:
        validate.positive_int("stage_widths entries", width)
    if (depth is None) == (stage_blocks is None):
        raise ValueError(
            "Pass exactly one of depth and stage_blocks; got "
            f"depth={depth!r}, stage_blocks={stage_blocks!r}."
        )
    if depth is not None:
        validate.positive_int("depth", depth)
        block, stage_blocks = _depth_blocks(depth, block, stem, len(base_widths))
    else:
        block = block or DEFAULT_BLOCK_KIND
        stage_blocks = tuple(stage_blocks)
        for count in stage_blocks:
            validate.positive_int("stage_blocks entries", count)
    if len(stage_blocks) != len(base_widths):
        raise ValueError(
            f"stage_blocks has {len(stage_blocks)} stages but stage_widths has "
            f"{len(base_widths)}: {tuple(stage_blocks)} vs {base_widths}."
        )
    validate.positive_number("width_multiplier", width_multiplier)
    widths = tuple(max(1, int(round(w * width_multiplier))) for w in base_widths)
    validate.positive_int("cardinality", cardinality)
    if se_ratio is not None:
        validate.number_in("se_ratio", se_ratio, 0, 1, low_open=True, what="None or a number in ")
    if bottleneck_width is not None:
        validate.positive_int("bottleneck_width", bottleneck_width)
    if not BLOCK_KINDS[block].aggregated:
        if cardinality != 1 or bottleneck_width is not None:
            raise ValueError(
                "cardinality and bottleneck_width need block='bottleneck' (ResNeXt aggregates "
                f"bottleneck transformations); got cardinality={cardinality}, "
                f"bottleneck_width={bottleneck_width} with block='{block}'."
            )
        group_widths = ()
    else:
        group_widths = tuple(
            _group_width(planes, cardinality, bottleneck_width, f"conv{index + 2}")
            for index, planes in enumerate(widths)
        )
    return Architecture(stem, base_widths[0], block, tuple(stage_blocks), widths, group_widths,
                        cardinality, unit, shortcut, bool(plain), se_ratio, bool(avg_down))


# The architecture arguments of `ResNet`, in order: the one list of them.
ARCHITECTURE_ARGUMENTS = tuple(inspect.signature(resolve_architecture).parameters)


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


def resolve_input_shape(input_shape, include_top, stem, data_format):
    """`input_shape` checked for `data_format`, or the stem's default."""
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
    - Hu et al. 2018, "Squeeze-and-Excitation Networks" (`se_ratio`).
    - He et al. 2019, "Bag of Tricks for Image Classification with Convolutional Neural
      Networks" (ResNet-D: `stem="deep"`, `avg_down`).
    - Zagoruyko and Komodakis 2016, "Wide Residual Networks" (`width_multiplier`,
      `block_dropout_rate`); Huang et al. 2016, "Deep Networks with Stochastic Depth"
      (`drop_path_rate`).

    Args:
        depth: int. Number of weighted layers. With the imagenet stem one of 10, 18, 34 (basic)
            or 26, 50, 101, 152, 200 (bottleneck); with the cifar stem 6n+2 (basic) or 9n+2
            (bottleneck). Give either `depth` or `stage_blocks`.
        stage_blocks: sequence of int. Residual units per stage, e.g. `(3, 4, 6, 3)`.
        block: str. `"basic"` (two 3x3 convolutions) or `"bottleneck"` (1x1, 3x3, 1x1 with
            4x expansion). Defaults to the depth's kind (ImageNet) or `"basic"`.
        stem: str. `"imagenet"` (7x7/2 conv + 3x3/2 max pool, widths 64-512, 224x224 inputs,
            1000 classes), `"cifar"` (3x3 conv, widths 16-64, 32x32 inputs, 10 classes) or
            `"deep"` (ResNet-C of He et al. 2019: three 3x3 convs of 32, 32 and 64 filters, the
            first strided, + 3x3/2 max pool; otherwise as `"imagenet"`). Defaults to
            `"imagenet"`.
        stage_widths: sequence of int. Base width ("planes") of each stage; the stem has the
            first stage's width. Defaults to the stem's widths.
        width_multiplier: float. Scales every stage width (not the stem), as the CIFAR Wide
            ResNets of Zagoruyko and Komodakis 2016 (WRN-d-k: `width_multiplier=k`).
            Defaults to `1.0`.
        cardinality: int. Groups of the bottleneck's 3x3 convolution (ResNeXt's C).
            Defaults to `1`.
        bottleneck_width: int. Width per group for a stage of base width 64 (ResNeXt's d);
            the 3x3 width of a stage with base width w is C * d * w / 64. `None` keeps the
            3x3 width equal to the stage width; `bottleneck_width=128` with `cardinality=1` is
            torchvision's Wide ResNet-50-2 (a 3x3 twice as wide). Defaults to `None`.
        unit: str. The residual-unit ordering of He et al. 2016, Figure 4: `"original"` (a),
            `"bn_after_addition"` (b), `"relu_before_addition"` (c), `"relu_only_preactivation"`
            (d) or `"full_preactivation"` (e, ResNet v2). Pre-activation units (d, e) add a
            final activation before pooling (`post_bn`, `post_relu`). Defaults to `"original"`.
        shortcut: str. `"A"`: identity, subsampled and zero-padded where dimensions change (no
            parameters); `"B"`: projection where the channels change; `"C"`: projection in
            every unit. Defaults to `"B"`.
        plain: bool. Drop every shortcut (the plain networks of He et al. 2015, Figure 6).
            Defaults to `False`.
        se_ratio: float or `None`. Squeeze-and-excitation in every unit (Hu et al. 2018),
            after the branch's last convolution, before the addition, with
            `channels * se_ratio` channels in its bottleneck, rounded to a multiple of 8 (at
            least 8; timm's rule); the paper's reduction 16 is `se_ratio=1/16`. In (0, 1].
            Defaults to `None` (no SE).
        avg_down: bool. Strided projection shortcuts become a 2x2 average pooling of the
            stride, then a 1x1/1 convolution (ResNet-D, He et al. 2019, Figure 2c; timm's
            `avg_down`). A last odd row or column is pooled alone (PyTorch's `ceil_mode`); on
            the torch backend Keras' "same" pooling averages it with the zero padding. Units
            that `output_stride` dilates keep an unpooled 1x1. Needs shortcut B or C.
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
            `zero_init_residual=True`, `overrides={"*_bn": {"center": False}}`, and the
            training-only regularisers `dropout_rate`, `block_dropout_rate`,
            `drop_path_rate`), which take precedence over `layer_config`.

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
    # The architecture arguments arrive with the layer options (`ResNet.__signature__`, set
    # below, lists them): resolve_architecture's keywords are their one definition.
    arch = resolve_architecture(depth=depth, **{
        key: layer_options.pop(key) for key in ARCHITECTURE_ARGUMENTS if key in layer_options})
    head = dict(include_top=include_top, pooling=pooling, classes=classes,
                classifier_activation=classifier_activation, data_format=data_format,
                output_stride=output_stride)
    net = network(arch, **head, layer_config=layer_config, **layer_options)
    # A tag of the weight table implies its layer settings; `load` loads it once built.
    layer_config, load = pretrained.prepare(
        weights, name=name, layer_config=layer_config, layer_options=layer_options,
        preactivation=ORDERINGS[arch.unit].preactivation, include_top=include_top,
        classes=net.classes)
    if load is not None:
        net = network(arch, **head, layer_config=layer_config, **layer_options)

    if input_tensor is None:
        inputs = keras.Input(shape=resolve_input_shape(input_shape, include_top, arch.stem,
                                                       net.data_format))
    elif keras.backend.is_keras_tensor(input_tensor):
        inputs = input_tensor
    else:
        inputs = keras.Input(tensor=input_tensor, shape=input_shape)

    make = LayerFactory(net.layers, net.data_format)
    x, pyramid = build(inputs, net, make)
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
                f"classes={net.classes}, include_top={include_top}: {error}"
            ) from None
    return model


def _signature():
    """`ResNet`'s signature as help() and IDEs show it: `depth`, the other architecture
    arguments (keyword-only, from `resolve_architecture`), then its own arguments."""
    own = inspect.signature(ResNet)
    architecture = [parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY) for parameter in
                    inspect.signature(resolve_architecture).parameters.values()
                    if parameter.name != "depth"]
    depth, *rest = own.parameters.values()
    return own.replace(parameters=[depth, *architecture, *rest])


ResNet.__signature__ = _signature()


@dataclasses.dataclass(frozen=True)
class Network:
    """A network's checked settings besides its inputs: what `ResNet` builds and
    `keras_resnets.profile.architecture_cost` counts (see `ResNet` for each argument)."""

    arch: Architecture
    layers: config_lib.LayerConfig
    data_format: str
    include_top: bool
    pooling: Optional[str]
    classes: int
    classifier_activation: Any
    output_stride: Optional[int]


def network(arch: Architecture, *, include_top=True, pooling=None, classes=None,
            classifier_activation="softmax", data_format=None, output_stride=None,
            layer_config=None, **layer_options) -> Network:
    """Check the head and layer arguments of `ResNet` for `arch` and resolve their defaults."""
    layers = config_lib.resolve(layer_config, ORDERINGS[arch.unit].preactivation,
                                **layer_options)
    data_format = config_lib.data_format(data_format)
    validate.choice("pooling", pooling, POOLINGS)
    if output_stride is not None:
        validate.choice("output_stride", output_stride, output_strides(arch))
    if classes is None:
        classes = STEMS[arch.stem].classes
    if include_top:
        validate.positive_int("classes", classes)
    if arch.plain and layers.drop_path_rate:
        raise ValueError(
            f"drop_path_rate={layers.drop_path_rate} needs shortcuts: stochastic depth drops "
            "residual branches, and plain=True has none; use block_dropout_rate instead.")
    return Network(arch, layers, data_format, include_top, pooling, classes,
                   classifier_activation, output_stride)


def build(inputs, net: Network, make: LayerFactory):
    """Stem -> stages -> head from `inputs` with the layers `make` creates. Returns the
    output and the pyramid (see `_stages`)."""
    ordering = ORDERINGS[net.arch.unit]
    x = _stem(inputs, net.arch, ordering, make)
    x, pyramid = _stages(x, net.arch, ordering, make, net.output_stride)
    x = _head(x, make, net.include_top, net.pooling, net.classes, net.classifier_activation)
    if make.unmatched_overrides:
        raise ValueError(
            f"overrides pattern(s) {sorted(make.unmatched_overrides)} matched no layer of this "
            "model; layer names look like 'conv1_conv', 'conv2_block1_1_bn', 'predictions'."
        )
    return x, pyramid


def _allow_graph_depth(layers):
    """Keras walks functional graphs recursively (building, saving, loading, cloning), so a
    ResNet-1202 exceeds Python's default recursion limit of 1000; raise it, never lower it."""
    needed = 4 * layers + 1000
    if sys.getrecursionlimit() < needed:
        sys.setrecursionlimit(needed)


def _stem(inputs, arch, ordering, make):
    """conv1_conv (+ conv1_bn, conv1_relu unless pre-activation), or with several
    convolutions conv1_1_conv ... conv1_{n}_conv, each but the last followed by bn + relu,
    the last by conv1_bn and conv1_relu (timm's `conv1.0`-`conv1.6` and `bn1`)."""
    stem = STEMS[arch.stem]
    x = inputs
    for index in range(1, stem.convs):
        spec = ConvSpec(arch.stem_width // 2, stem.kernel_size, stem.strides if index == 1 else 1)
        x = make.conv(x, spec, f"conv1_{index}_conv", followed_by_bn=True)
        x = make.apply(x, ("bn", "relu"), [f"conv1_{index}_bn", f"conv1_{index}_relu"])
    spec = ConvSpec(arch.stem_width, stem.kernel_size, stem.strides if stem.convs == 1 else 1)
    name = "conv1_conv" if stem.convs == 1 else f"conv1_{stem.convs}_conv"
    x = make.conv(x, spec, name, followed_by_bn=not ordering.preactivation)
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


def unit_drop_path_rates(arch: Architecture, drop_path_rate: float):
    """Each unit's stochastic-depth rate, in order: rising linearly from 0 in the first unit
    to `drop_path_rate` in the last, `drop_path_rate * i / (units - 1)` for unit i = 0, 1, ...
    (timm's rule; Huang et al. 2016's linear decay of the survival probability)."""
    units = sum(arch.stage_blocks)
    return [drop_path_rate * i / max(units - 1, 1) for i in range(units)]


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
    drop_path_rates = iter(unit_drop_path_rates(arch, make.config.drop_path_rate))
    for stage, strides in enumerate(unit_strides(arch, make.config.downsample_block)):
        planes = arch.stage_widths[stage]
        for index, unit_stride in enumerate(strides):
            unit_dilation = dilation
            nominal *= unit_stride
            if output_stride is not None and stride * unit_stride > output_stride:
                dilation, unit_stride = dilation * unit_stride, 1
            stride *= unit_stride
            convs, out_channels = branch(
                BLOCK_KINDS[arch.block], planes, unit_stride, stride_in=make.config.stride_in,
                width=arch.bottleneck_widths[stage] if arch.bottleneck_widths else planes,
                cardinality=arch.cardinality, dilation=unit_dilation)
            x = residual_unit(
                x, convs, out_channels, stride=unit_stride, ordering=ordering,
                shortcut_option=arch.shortcut, plain=arch.plain, make=make,
                name=f"conv{stage + 2}_block{index + 1}", se_ratio=arch.se_ratio,
                avg_down=arch.avg_down,
                drop_path_rate=next(drop_path_rates),
            )
            pyramid[level_name(nominal)] = x
    # Pre-activation units leave the last sum un-normalised: apply their pre-activation once more.
    x = make.apply(x, ordering.pre, [f"post_{operation}" for operation in ordering.pre])
    pyramid[level_name(nominal)] = x
    return x, pyramid


def _head(x, make, include_top, pooling, classes, classifier_activation):
    if include_top:
        x = make.spatial(keras.layers.GlobalAveragePooling2D, "avg_pool")(x)
        if make.config.dropout_rate:
            x = make.create(keras.layers.Dropout, "top_dropout", rate=make.config.dropout_rate)(x)
        mixed = keras.config.dtype_policy().compute_dtype in ("float16", "bfloat16")
        return make.dense(x, classes, classifier_activation, "predictions",
                          dtype="float32" if mixed else None)
    if pooling == "avg":
        return make.spatial(keras.layers.GlobalAveragePooling2D, "avg_pool")(x)
    if pooling == "max":
        return make.spatial(keras.layers.GlobalMaxPooling2D, "max_pool")(x)
    return x
