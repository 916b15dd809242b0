"""The search space: a KerasTuner HyperModel that only chooses numbers and calls keras_resnets.

Every point of the space is a `keras_resnets.ResNet(...)` call, and the papers' named models are
points of it: ResNet-20...110 (basic blocks, base width 16, n = 3...18, option A), pre-activation
ResNet-164 (bottleneck, n = 18), ResNeXt-29 8x64d (bottleneck, base width 64, C = 8, d = 64),
ResNet-18...152 and ResNeXt-50/101 on the ImageNet layout. Training hyperparameters live in a
separate, optional `TrainingSpace`; they never reach the architecture.
"""

import dataclasses
from typing import Dict, Optional, Tuple

import keras
import keras_tuner

import keras_resnets
from keras_resnets import registry, validate
from keras_resnets.specs import BLOCK_KINDS, STEMS, imagenet_kind

FAMILIES = tuple(sorted(STEMS))
_EMPTY = "The search space is empty: "
TRAINING_HYPERPARAMETERS = ("learning_rate", "weight_decay", "batch_size", "label_smoothing")


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The architecture choices. Every field is a tuple of allowed values.

    Args:
        family: str. `"cifar"` (3x3 stem, three stages, depth 6n+2 or 9n+2) or `"imagenet"`
            (7x7 stem, four stages, the depths of He et al. 2015 Table 1). Defaults to `"cifar"`.
        blocks_per_stage: tuple of int. CIFAR only: the papers' n. Defaults to
            `(1, 2, 3, 5, 7, 9, 18)` (ResNet-8, 14, 20, 32, 44, 56, 110 with basic blocks).
        depths: tuple of int. ImageNet only; the block kind follows from the depth.
            Defaults to `(18, 34, 50, 101, 152)`.
        blocks: tuple of str. CIFAR only: `"basic"` and/or `"bottleneck"` (the rows of
            `keras_resnets.specs.BLOCK_KINDS`).
            Defaults to `("basic", "bottleneck")`.
        base_widths: tuple of int. Width of the first stage and the stem; stage i has
            base * 2**i. Defaults to `(16, 32, 64)` for CIFAR and `(64,)` for ImageNet
            (pass `None`).
        cardinalities: tuple of int. ResNeXt's C (bottleneck blocks only). Defaults to
            `(1, 2, 4, 8)`.
        bottleneck_widths: tuple of int. ResNeXt's d (bottleneck blocks only); d = 64 with
            C = 1 is the plain bottleneck. Defaults to `(4, 16, 64)`.
        units: tuple of str. Residual-unit orderings (`keras_resnets.UNITS`).
            Defaults to `("original", "full_preactivation")`.
        shortcuts: tuple of str. Shortcut options among `"A"`, `"B"`, `"C"`.
            Defaults to `("A", "B")`.
    """

    family: str = "cifar"
    blocks_per_stage: Tuple[int, ...] = (1, 2, 3, 5, 7, 9, 18)
    depths: Tuple[int, ...] = (18, 34, 50, 101, 152)
    blocks: Tuple[str, ...] = ("basic", "bottleneck")
    base_widths: Optional[Tuple[int, ...]] = None
    cardinalities: Tuple[int, ...] = (1, 2, 4, 8)
    bottleneck_widths: Tuple[int, ...] = (4, 16, 64)
    units: Tuple[str, ...] = ("original", "full_preactivation")
    shortcuts: Tuple[str, ...] = ("A", "B")

    def __post_init__(self):
        validate.choice("family", self.family, FAMILIES)
        if self.base_widths is None:
            object.__setattr__(self, "base_widths", (16, 32, 64) if self.family == "cifar"
                               else (64,))
        used = ["base_widths", "units", "shortcuts"] + (
            ["blocks_per_stage", "blocks"] if self.family == "cifar" else ["depths"])
        for name in used:
            values = tuple(getattr(self, name))
            object.__setattr__(self, name, values)
            validate.not_empty(name, values, what=_EMPTY)
        if self.has_bottlenecks:
            for name in ("cardinalities", "bottleneck_widths"):
                validate.not_empty(name, getattr(self, name), what=_EMPTY)
        if self.has_bottlenecks:
            for base in self.base_widths:
                for width in self.bottleneck_widths:
                    if base * width % 64:
                        raise ValueError(
                            f"bottleneck_widths value {width} with base_widths value {base} "
                            f"gives a fractional group width ({base} * {width} / 64); keep "
                            "base_width * bottleneck_width a multiple of 64.")
        validate.choices("units", self.units, keras_resnets.UNITS)
        validate.choices("shortcuts", self.shortcuts, keras_resnets.SHORTCUTS)
        if self.family == "cifar":
            validate.choices("blocks", self.blocks, BLOCK_KINDS)
        else:
            validate.choices("depths", self.depths, sorted(
                d for kind in BLOCK_KINDS.values() for d in kind.imagenet_depths))

    @property
    def bottleneck_depths(self) -> Tuple[int, ...]:
        """The ImageNet depths whose blocks take cardinality and bottleneck width."""
        # An unknown depth has no kind (it is refused after the emptiness checks).
        return tuple(d for d in self.depths if getattr(imagenet_kind(d), "aggregated", False))

    @property
    def bottleneck_blocks(self) -> Tuple[str, ...]:
        """The CIFAR block kinds that take cardinality and bottleneck width."""
        return tuple(b for b in self.blocks if b in BLOCK_KINDS and BLOCK_KINDS[b].aggregated)

    @property
    def has_bottlenecks(self) -> bool:
        if self.family == "cifar":
            return bool(self.bottleneck_blocks)
        return bool(self.bottleneck_depths)

    def smallest_candidates(self):
        """Values of the cheapest points: the smallest n / depth, width, C and d for every block
        kind, unit and shortcut (cost grows with each of those, but not with the others)."""
        for unit in self.units:
            for shortcut in self.shortcuts:
                common = dict(base_width=min(self.base_widths), unit=unit, shortcut=shortcut)
                if self.family == "cifar":
                    for block in self.blocks:
                        values = dict(common, block=block,
                                      blocks_per_stage=min(self.blocks_per_stage))
                        yield self._with_bottleneck(values, BLOCK_KINDS[block].aggregated)
                else:
                    for kind in BLOCK_KINDS.values():
                        chosen = [d for d in self.depths if d in kind.imagenet_depths]
                        if chosen:
                            values = dict(common, depth=min(chosen))
                            yield self._with_bottleneck(values, kind.aggregated)

    def _with_bottleneck(self, values, bottleneck):
        if bottleneck:
            values.update(cardinality=min(self.cardinalities),
                          bottleneck_width=min(self.bottleneck_widths))
        return values


@dataclasses.dataclass(frozen=True)
class TrainingSpace:
    """Optional training hyperparameters, kept apart from the architecture.

    Args:
        learning_rates: tuple of float `(low, high)`, sampled log-uniformly; `None` keeps the
            recipe's. Defaults to `None`.
        weight_decays: tuple of float `(low, high)`, log-uniform; `None` keeps the recipe's.
            Defaults to `None`.
        batch_sizes: tuple of int to choose from; `None` keeps the recipe's. Defaults to `None`.
        label_smoothings: tuple of float to choose from; `None` keeps the recipe's.
            Defaults to `None`.
    """

    learning_rates: Optional[Tuple[float, float]] = None
    weight_decays: Optional[Tuple[float, float]] = None
    batch_sizes: Optional[Tuple[int, ...]] = None
    label_smoothings: Optional[Tuple[float, ...]] = None

    def __post_init__(self):
        for name in ("learning_rates", "weight_decays"):
            bounds = getattr(self, name)
            if bounds is not None and (len(bounds) != 2 or not 0 < bounds[0] < bounds[1]):
                raise ValueError(f"{name} must be (low, high) with 0 < low < high; "
                                 f"got {bounds!r}.")
        for name in ("batch_sizes", "label_smoothings"):
            if getattr(self, name) is not None:
                validate.not_empty(name, getattr(self, name), what=_EMPTY)

    def choose(self, hp: keras_tuner.HyperParameters) -> Dict[str, object]:
        """Declare the training hyperparameters in `hp`; returns training-config overrides."""
        overrides = {}
        for name, bounds in (("learning_rate", self.learning_rates),
                             ("weight_decay", self.weight_decays)):
            if bounds is not None:
                low, high = bounds
                overrides[name] = hp.Float(name, low, high, sampling="log")
        if self.batch_sizes is not None:
            overrides["global_batch_size"] = hp.Choice("batch_size", list(self.batch_sizes))
        if self.label_smoothings is not None:
            overrides["label_smoothing"] = hp.Choice("label_smoothing",
                                                     list(self.label_smoothings))
        return overrides


class ResNetHyperModel(keras_tuner.HyperModel):
    """Builds `keras_resnets.ResNet(...)` from the choices of a `SearchSpace`.

    Args:
        space: `SearchSpace`. The architecture choices. Defaults to `SearchSpace()`.
        training_space: `TrainingSpace`. Optional training choices. Defaults to
            `TrainingSpace()` (none).
        classes: int. Number of classes. Defaults to the family's (10 or 1000).
        input_shape: tuple. Defaults to the family's image size, 3 channels.

    Example:

    >>> import keras_tuner
    >>> hp = keras_tuner.HyperParameters()
    >>> for name, value in dict(block="basic", blocks_per_stage=9, base_width=16,
    ...                         unit="original", shortcut="A").items():
    ...     _ = hp.Fixed(name, value)
    >>> model = ResNetHyperModel().build(hp)
    >>> model.count_params() == keras_resnets.ResNet56().count_params()
    True
    """

    def __init__(self, space=None, training_space=None, classes=None, input_shape=None):
        super().__init__(name="resnet_hypermodel")
        self.space = space or SearchSpace()
        self.training_space = training_space or TrainingSpace()
        stem = STEMS[self.space.family]
        self.classes = classes or stem.classes
        self.input_shape = tuple(input_shape or (stem.image_size, stem.image_size, 3))

    def architecture(self, hp: keras_tuner.HyperParameters) -> Dict[str, object]:
        """Declare the architecture hyperparameters; returns the `ResNet(...)` arguments."""
        space = self.space
        stages = len(STEMS[space.family].stage_widths)
        if space.family == "cifar":
            block = hp.Choice("block", list(space.blocks))
            n = hp.Choice("blocks_per_stage", list(space.blocks_per_stage))
            depth = BLOCK_KINDS[block].depth((n,) * stages)
            parent, bottleneck_values = "block", list(space.bottleneck_blocks)
        else:
            depth = hp.Choice("depth", list(space.depths))
            block = imagenet_kind(depth).name
            parent, bottleneck_values = "depth", list(space.bottleneck_depths)
        base = hp.Choice("base_width", list(space.base_widths))
        arguments = dict(
            stem=space.family,
            depth=depth,
            block=block,
            stage_widths=tuple(base * 2**i for i in range(stages)),
            unit=hp.Choice("unit", list(space.units)),
            shortcut=hp.Choice("shortcut", list(space.shortcuts)),
        )
        if space.has_bottlenecks:
            with hp.conditional_scope(parent, bottleneck_values):
                cardinality = hp.Choice("cardinality", list(space.cardinalities))
                width = hp.Choice("bottleneck_width", list(space.bottleneck_widths))
            if BLOCK_KINDS[block].aggregated:
                arguments.update(cardinality=cardinality, bottleneck_width=width)
        return arguments

    def training(self, hp: keras_tuner.HyperParameters) -> Dict[str, object]:
        """Declare the optional training hyperparameters; returns training overrides."""
        return self.training_space.choose(hp)

    def describe(self, values: Dict[str, object]) -> str:
        """A point in a few words, for logs: the registry name when it has one, the
        architecture, then the training choices, e.g. `resnet20: depth=20, basic, width=16,
        original, shortcut=A; learning_rate=2.5`."""
        arguments = self.architecture(self.values_to_hp(values))
        words = [f"depth={arguments['depth']}", arguments["block"],
                 f"width={arguments['stage_widths'][0]}"]
        if "cardinality" in arguments:
            words.append(f"{arguments['cardinality']}x{arguments['bottleneck_width']}d")
        words += [arguments["unit"], f"shortcut={arguments['shortcut']}"]
        text = ", ".join(words)
        name = named_model(arguments)
        if name:
            text = f"{name}: {text}"
        training = [f"{k}={values[k]:.4g}" if isinstance(values[k], float) else f"{k}={values[k]}"
                    for k in TRAINING_HYPERPARAMETERS if k in values]
        return f"{text}; {', '.join(training)}" if training else text

    def build(self, hp: keras_tuner.HyperParameters) -> keras.Model:
        """The (uncompiled) model of a point; the tuner trains it with `training`."""
        self.training(hp)  # declared here too, so the oracle sees the whole space
        return keras_resnets.ResNet(**self.architecture(hp), classes=self.classes,
                                    input_shape=self.input_shape, name="candidate")

    def values_to_hp(self, values: Dict[str, object]) -> keras_tuner.HyperParameters:
        """A `HyperParameters` holding `values` (e.g. a trial's), with the space declared."""
        hp = keras_tuner.HyperParameters()
        self.build_space(hp)
        hp.values.update(values)
        return hp

    def build_space(self, hp: keras_tuner.HyperParameters):
        """Declare every hyperparameter without building a model."""
        self.architecture(hp)
        self.training(hp)


def named_model(arguments: Dict[str, object]) -> Optional[str]:
    """The registry name of the model these `ResNet(...)` arguments build, if it has one."""
    return registry.registered_name(keras_resnets.resolve_architecture(**{
        key: value for key, value in arguments.items()
        if key in registry.ARCHITECTURE_ARGUMENTS}))
