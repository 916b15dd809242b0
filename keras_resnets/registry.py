"""The registry (name -> model) and the public named builders, one line each."""

import fnmatch
import functools
from typing import List, Optional

import keras

from keras_resnets import validate
from keras_resnets.builder import ARCHITECTURE_ARGUMENTS, Architecture, ResNet, resolve_architecture
from keras_resnets.specs import MODEL_SPECS, PAPERS, STEMS


def list_models(pattern: str = "*") -> List[str]:
    """Names of the registered models, sorted; `pattern` filters them (`fnmatch` style).

    Example:

    >>> import keras_resnets
    >>> keras_resnets.list_models("resnext29*")
    ['resnext29_16x64d', 'resnext29_8x64d']
    """
    return sorted(name for name in MODEL_SPECS if fnmatch.fnmatchcase(name, pattern))


def model_arguments(name: str) -> dict:
    """The `ResNet(...)` arguments of a registered model (a copy)."""
    if name not in MODEL_SPECS:
        raise ValueError(f"Unknown model name {name!r}; valid names: {', '.join(list_models())}.")
    return dict(MODEL_SPECS[name].arguments)


def get_model(name: str, /, **overrides) -> keras.Model:
    """Builds a registered model; keyword arguments override any argument of `ResNet(...)`.

    Overrides that change the architecture rename the model after what it now is
    (`model_name`): `get_model("resnet20", depth=32)` is the registry's `resnet32`, and
    `get_model("resnet20", shortcut="B")` is `resnet20_shortcutB`. A `name` override wins.

    Args:
        name: str. A name from `list_models()`, e.g. `"resnet50"`, `"resnet110"`,
            `"preact_resnet1001"`, `"resnext101_64x4d"`, `"resnext29_16x64d"`.
        **overrides: arguments of `keras_resnets.ResNet`, e.g. `classes=100`,
            `include_top=False`, `bn_momentum=0.99`.

    Example:

    >>> import keras_resnets
    >>> model = keras_resnets.get_model("resnet20", classes=100)
    >>> model.name, model.output_shape
    ('resnet20', (None, 100))
    >>> keras_resnets.get_model("resnet20", depth=32).name
    'resnet32'
    """
    arguments = {**model_arguments(name), **overrides}
    return ResNet(**{"name": model_name(name, **arguments), **arguments})


def architecture_of(name: str, /, **overrides) -> Architecture:
    """The resolved `Architecture` of a registered model with overrides (no model is built)."""
    arguments = {**model_arguments(name), **overrides}
    return resolve_architecture(**{key: arguments[key] for key in ARCHITECTURE_ARGUMENTS
                                   if key in arguments})


@functools.lru_cache(maxsize=None)
def _row_architectures():
    return {row: architecture_of(row) for row in MODEL_SPECS}


def model_name(name: str, /, **overrides) -> str:
    """The name of registry model `name` built with `overrides` of its row's arguments:
    `name` itself while the architecture is the row's, the row whose architecture it has
    otherwise, and else a name that states the architecture, e.g. `"resnet8_widths4-8-16"` or
    `"resnext101_16x4d"`. Overrides that are not architecture arguments change nothing.

    Example:

    >>> model_name("resnext101_32x4d", cardinality=64)
    'resnext101_64x4d'
    >>> model_name("resnet20", depth=8, stage_widths=(4, 8, 16), classes=100)
    'resnet8_widths4-8-16'
    """
    architecture = architecture_of(name, **overrides)
    like = _row_architectures()[name]
    return name if architecture == like else name_for(architecture, like)


def registered_name(architecture: Architecture) -> Optional[str]:
    """The name of the registry row whose architecture is `architecture`, or `None`."""
    rows = _row_architectures().items()
    return next((row for row, row_architecture in rows if row_architecture == architecture), None)


def name_for(architecture: Architecture, like: Optional[Architecture] = None) -> str:
    """The registry name of `architecture`, or else a name that states it: family and depth,
    then each choice where it differs from `like` (by default the plain ResNet of the same
    stem, blocks and depth: stem widths, original units, shortcut B)."""
    registered = registered_name(architecture)
    if registered is not None:
        return registered
    if like is None:
        widths = STEMS[architecture.stem].stage_widths
        if len(widths) != len(architecture.stage_blocks):  # another number of stages
            widths = architecture.stage_widths
        like = resolve_architecture(stage_blocks=architecture.stage_blocks,
                                    block=architecture.block, stem=architecture.stem,
                                    stage_widths=widths)
    return _describe(architecture, like)


def _describe(arch: Architecture, like: Architecture) -> str:
    """A name for `arch`: family and depth, then each choice where it differs from `like`."""
    depth = arch.depth
    preactivation = arch.unit == "full_preactivation"
    per_group = arch.bottleneck_widths[0] // arch.cardinality * 64 // arch.stage_widths[0] if (
        arch.bottleneck_widths) else None
    if arch.plain:
        parts = [f"plain{depth}"]
    elif arch.cardinality > 1:
        parts = [f"resnext{depth}_{arch.cardinality}x{per_group}d"]
    elif preactivation and STEMS[arch.stem].family == "imagenet":
        parts = [f"resnet{depth}v2"]
    elif preactivation:
        parts = [f"preact_resnet{depth}"]
    else:
        parts = [f"resnet{depth}"]
    if arch.se_ratio:
        parts[0] = "se" + parts[0]
    try:
        standard = resolve_architecture(depth=depth, block=arch.block, stem=arch.stem,
                                        stage_widths=arch.stage_widths).stage_blocks
    except ValueError:
        standard = None
    if arch.stem != like.stem:
        parts.append(f"{arch.stem}stem")
    if arch.block != like.block and not (STEMS[arch.stem].family == "imagenet" and standard):
        parts.append(arch.block)
    if arch.stage_blocks != standard:
        parts.append("blocks" + "-".join(map(str, arch.stage_blocks)))
    stem_widths = STEMS[arch.stem].stage_widths
    widths = like.stage_widths if arch.stem == like.stem else stem_widths
    if arch.stage_widths != widths or len(arch.stage_widths) != len(stem_widths):
        parts.append("widths" + "-".join(map(str, arch.stage_widths)))
    if arch.cardinality == 1 and arch.bottleneck_widths not in ((), arch.stage_widths):
        parts.append("groupwidths" + "-".join(map(str, arch.bottleneck_widths)))
    if arch.unit not in ("original", "full_preactivation"):  # the family names those two
        parts.append(arch.unit)
    if arch.shortcut != like.shortcut and not arch.plain:
        parts.append(f"shortcut{arch.shortcut}")
    if arch.avg_down != like.avg_down:
        parts.append("avgdown" if arch.avg_down else "noavgdown")
    if arch.se_ratio not in (None, 1 / 16):
        parts.append(f"seratio{arch.se_ratio:g}")
    return "_".join(parts)


def _named_builder(public_name, spec_name, summary):
    """A keras.applications-style builder over one registry row, named by `model_name` (so
    that `ResNeXt101(cardinality=64)` is called resnext101_64x4d)."""
    spec = MODEL_SPECS[spec_name]
    stem = STEMS[spec.arguments["stem"]]

    def builder(
        include_top=True,
        weights=None,
        input_tensor=None,
        input_shape=None,
        pooling=None,
        classes=stem.classes,
        classifier_activation="softmax",
        **options,
    ):
        arguments = {**spec.arguments, **options}
        name = model_name(spec_name, **arguments)
        return ResNet(
            **{"name": name, **arguments},
            include_top=include_top,
            weights=weights,
            input_tensor=input_tensor,
            input_shape=input_shape,
            pooling=pooling,
            classes=classes,
            classifier_activation=classifier_activation,
        )

    builder.__name__ = builder.__qualname__ = public_name
    builder.__doc__ = _DOC.format(
        public_name=public_name,
        summary=summary,
        paper=PAPERS[spec.paper],
        size=stem.image_size,
        classes=stem.classes,
        arguments=", ".join(f"{k}={v!r}" for k, v in spec.arguments.items()),
    )
    return builder


_DOC = """Instantiates {summary}.

    Reference: {paper}.

    The registry row behind it: `ResNet({arguments})`.

    Args:
        include_top: bool. Whether to end in global average pooling and a dense classifier.
            Defaults to `True`.
        weights: str or `None`. `None` (random initialisation), a tag of
            `keras_resnets.list_weights()` (e.g. `"imagenet"`, `"torchvision"`; it implies its
            `layer_config`) or the path of a weight file (`.weights.h5`, keras.applications
            `.h5`, torchvision `.pth`, `.safetensors`). Defaults to `None`.
        input_tensor: optional Keras tensor to use as the model's input.
        input_shape: tuple. `(height, width, channels)`, or `(channels, height, width)` under
            the channels-first data format. Defaults to `({size}, {size}, 3)` with
            `include_top`, else `(None, None, 3)` (channels first: `(3, {size}, {size})` and
            `(3, None, None)`).
        pooling: str or `None`. With `include_top=False`: `None`, `"avg"` or `"max"`.
            Defaults to `None`.
        classes: int. Number of classes. Defaults to `{classes}`.
        classifier_activation: str, callable or `None`. Activation of the classifier (`None`
            gives logits). Defaults to `"softmax"`.
        **options: any other argument of `keras_resnets.ResNet`: architecture (e.g. `unit`,
            `shortcut`, `width_multiplier`), `data_format` (defaults to
            `keras.config.image_data_format()`), `output_stride` (dilation for dense
            prediction) or layer settings (e.g. `bn_momentum`,
            `zero_init_residual`, `layer_config="keras_applications"`).

    Returns:
        A `keras.Model`.

    Example:

    >>> import keras_resnets
    >>> model = keras_resnets.{public_name}(classes=7)
    >>> model.output_shape
    (None, 7)
    """

ResNet18 = _named_builder("ResNet18", "resnet18", "ResNet-18 (ImageNet)")
ResNet34 = _named_builder("ResNet34", "resnet34", "ResNet-34 (ImageNet)")
ResNet50 = _named_builder("ResNet50", "resnet50", "ResNet-50 (ImageNet)")
ResNet101 = _named_builder("ResNet101", "resnet101", "ResNet-101 (ImageNet)")
ResNet152 = _named_builder("ResNet152", "resnet152", "ResNet-152 (ImageNet)")
ResNet200 = _named_builder("ResNet200", "resnet200", "ResNet-200 (ImageNet)")
ResNet20 = _named_builder("ResNet20", "resnet20", "ResNet-20 (CIFAR, option A shortcuts)")
ResNet32 = _named_builder("ResNet32", "resnet32", "ResNet-32 (CIFAR, option A shortcuts)")
ResNet44 = _named_builder("ResNet44", "resnet44", "ResNet-44 (CIFAR, option A shortcuts)")
ResNet56 = _named_builder("ResNet56", "resnet56", "ResNet-56 (CIFAR, option A shortcuts)")
ResNet110 = _named_builder("ResNet110", "resnet110", "ResNet-110 (CIFAR, option A shortcuts)")
ResNet1202 = _named_builder("ResNet1202", "resnet1202", "ResNet-1202 (CIFAR, option A shortcuts)")
ResNet50V2 = _named_builder("ResNet50V2", "resnet50v2", "pre-activation ResNet-50 (ImageNet)")
ResNet101V2 = _named_builder("ResNet101V2", "resnet101v2", "pre-activation ResNet-101 (ImageNet)")
ResNet152V2 = _named_builder("ResNet152V2", "resnet152v2", "pre-activation ResNet-152 (ImageNet)")
ResNet200V2 = _named_builder("ResNet200V2", "resnet200v2", "pre-activation ResNet-200 (ImageNet)")
PreActResNet110 = _named_builder("PreActResNet110", "preact_resnet110",
                                 "pre-activation ResNet-110 (CIFAR, basic blocks)")
PreActResNet164 = _named_builder("PreActResNet164", "preact_resnet164",
                                 "pre-activation ResNet-164 (CIFAR, bottleneck blocks)")
PreActResNet1001 = _named_builder("PreActResNet1001", "preact_resnet1001",
                                  "pre-activation ResNet-1001 (CIFAR, bottleneck blocks)")
ResNeXt50 = _named_builder("ResNeXt50", "resnext50_32x4d",
                           "ResNeXt-50 (ImageNet; 32x4d by default)")
ResNeXt101 = _named_builder("ResNeXt101", "resnext101_32x4d",
                            "ResNeXt-101 (ImageNet; 32x4d by default, cardinality=64 gives 64x4d)")
ResNeXt29 = _named_builder("ResNeXt29", "resnext29_8x64d",
                           "ResNeXt-29 (CIFAR; 8x64d by default, cardinality=16 gives 16x64d)")
SEResNet50, SEResNet101, SEResNet152 = (
    _named_builder(f"SEResNet{d}", f"seresnet{d}", f"SE-ResNet-{d} (ImageNet)")
    for d in (50, 101, 152))
SEResNeXt50, SEResNeXt101 = (
    _named_builder(f"SEResNeXt{d}", f"seresnext{d}_32x4d", f"SE-ResNeXt-{d} 32x4d (ImageNet)")
    for d in (50, 101))
ResNet50D, ResNet101D, ResNet152D = (
    _named_builder(f"ResNet{d}D", f"resnet{d}d", f"ResNet-{d}-D (ImageNet)")
    for d in (50, 101, 152))
WideResNet50_2, WideResNet101_2 = (
    _named_builder(f"WideResNet{d}_2", f"wide_resnet{d}_2",
                   f"Wide ResNet-{d}-2 (ImageNet, torchvision)")
    for d in (50, 101))
WRN28_10, WRN16_8 = (
    _named_builder(f"WRN{d}_{k}", f"wrn{d}_{k}", f"WRN-{d}-{k} (CIFAR, pre-activation basic units)")
    for d, k in ((28, 10), (16, 8)))
Plain18 = _named_builder("Plain18", "plain18", "the 18-layer plain network (ImageNet)")
Plain34 = _named_builder("Plain34", "plain34", "the 34-layer plain network (ImageNet)")
Plain20 = _named_builder("Plain20", "plain20", "the 20-layer plain network (CIFAR)")
Plain32 = _named_builder("Plain32", "plain32", "the 32-layer plain network (CIFAR)")
Plain44 = _named_builder("Plain44", "plain44", "the 44-layer plain network (CIFAR)")
Plain56 = _named_builder("Plain56", "plain56", "the 56-layer plain network (CIFAR)")
Plain110 = _named_builder("Plain110", "plain110", "the 110-layer plain network (CIFAR)")


def WideResNet(depth: int = 28, width: int = 10, **options) -> keras.Model:
    """Instantiates the CIFAR Wide ResNet WRN-d-k of any depth and width.

    Reference: Zagoruyko and Komodakis 2016, Wide Residual Networks (Table 1): a 3x3 stem of
    16 filters, three stages of n pre-activation basic units of widths 16k, 32k and 64k, with
    1x1 projection shortcuts where the shape changes; d = 6n + 4.

    Args:
        depth: int. The paper's d: 6n + 4 (10, 16, 22, 28, 40, ...). Defaults to `28`.
        width: int. The paper's widening factor k. Defaults to `10`.
        **options: any other argument of `keras_resnets.ResNet`, e.g. `classes=100`,
            `block_dropout_rate=0.3` (the paper's dropout between the convolutions).

    Returns:
        A `keras.Model` named `wrn{d}_{k}`.

    Example:

    >>> import keras_resnets
    >>> model = keras_resnets.WideResNet(depth=10, width=2)
    >>> model.name, model.count_params() > 300_000
    ('wrn10_2', True)
    """
    if not (isinstance(depth, int) and depth >= 10 and (depth - 4) % 6 == 0):
        raise ValueError(f"depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...) for a "
                         f"Wide ResNet; got {depth!r}.")
    validate.positive_int("width", width)
    arguments = dict(stem="cifar", stage_blocks=((depth - 4) // 6,) * 3, width_multiplier=width,
                     unit="full_preactivation", name=f"wrn{depth}_{width}")
    return ResNet(**{**arguments, **options})
