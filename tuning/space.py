"""The search space's choices: `SearchSpace` (the architecture) and `TrainingSpace` (optional
training hyperparameters, kept apart from the architecture).

Both are plain dataclasses, and each field is also a flag of `python -m tuning.search`
(`training.field_flags`): its name, default and help come from the field and its entry in the
class docstring, so a new search dimension is one field with its docstring entry. This module
imports neither Keras nor KerasTuner (keras_resnets is imported when a space is checked), so
the command line can define its flags, print its help and refuse bad flags at once.
"""

import dataclasses
from typing import TYPE_CHECKING, Dict, Optional, Tuple

if TYPE_CHECKING:
    import keras_tuner

_EMPTY = "The search space is empty: "
TRAINING_HYPERPARAMETERS = ("learning_rate", "weight_decay", "batch_size", "label_smoothing")


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The architecture choices. Every field but `family` is a tuple of allowed values.

    Args:
        family: str. `"cifar"` (3x3 stem, three stages, depth 6n+2 or 9n+2) or `"imagenet"`
            (7x7 stem, four stages, the depths of He et al. 2015 Table 1). Defaults to `"cifar"`.
        blocks_per_stage: tuple of int. CIFAR only: the papers' n (ResNet-8, 14, 20, 32, 44,
            56, 110 with basic blocks). Defaults to `(1, 2, 3, 5, 7, 9, 18)`.
        depths: tuple of int. ImageNet only; the block kind follows from the depth.
            Defaults to `(18, 34, 50, 101, 152)`.
        blocks: tuple of str. CIFAR only: `"basic"` and/or `"bottleneck"` (the rows of
            `keras_resnets.specs.BLOCK_KINDS`). Defaults to `("basic", "bottleneck")`.
        base_widths: tuple of int. Width of the first stage and the stem; stage i has
            base * 2**i. `None`: `(16, 32, 64)` for CIFAR, `(64,)` for ImageNet.
            Defaults to `None`.
        cardinalities: tuple of int. ResNeXt's C (bottleneck blocks only).
            Defaults to `(1, 2, 4, 8)`.
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
        import keras_resnets
        from keras_resnets import validate
        from keras_resnets.specs import BLOCK_KINDS, STEMS

        validate.choice("family", self.family, sorted({stem.family for stem in STEMS.values()}))
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
        from keras_resnets.specs import imagenet_kind

        # An unknown depth has no kind (it is refused after the emptiness checks).
        return tuple(d for d in self.depths if getattr(imagenet_kind(d), "aggregated", False))

    @property
    def bottleneck_blocks(self) -> Tuple[str, ...]:
        """The CIFAR block kinds that take cardinality and bottleneck width."""
        from keras_resnets.specs import BLOCK_KINDS

        return tuple(b for b in self.blocks if b in BLOCK_KINDS and BLOCK_KINDS[b].aggregated)

    @property
    def has_bottlenecks(self) -> bool:
        if self.family == "cifar":
            return bool(self.bottleneck_blocks)
        return bool(self.bottleneck_depths)

    def smallest_candidates(self):
        """Values of the cheapest points: the smallest n / depth, width, C and d for every block
        kind, unit and shortcut (cost grows with each of those, but not with the others)."""
        from keras_resnets.specs import BLOCK_KINDS

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


def _flag(name):
    # The command line names these `--tune_<hyperparameter>` (training.field_flags).
    return dataclasses.field(default=None, metadata={"flag": f"tune_{name}"})


@dataclasses.dataclass(frozen=True)
class TrainingSpace:
    """Optional training hyperparameters, kept apart from the architecture.

    Args:
        learning_rates: tuple of float. `(low, high)`: also search the learning rate, sampled
            log-uniformly; `None` keeps the recipe's. Defaults to `None`.
        weight_decays: tuple of float. `(low, high)`: also search the weight decay, sampled
            log-uniformly; `None` keeps the recipe's. Defaults to `None`.
        batch_sizes: tuple of int. Global batch sizes to choose from; `None` keeps the
            recipe's. Defaults to `None`.
        label_smoothings: tuple of float. Label smoothings to choose from; `None` keeps the
            recipe's. Defaults to `None`.
    """

    learning_rates: Optional[Tuple[float, float]] = _flag("learning_rate")
    weight_decays: Optional[Tuple[float, float]] = _flag("weight_decay")
    batch_sizes: Optional[Tuple[int, ...]] = _flag("batch_size")
    label_smoothings: Optional[Tuple[float, ...]] = _flag("label_smoothing")

    def __post_init__(self):
        from keras_resnets import validate

        for name in ("learning_rates", "weight_decays"):
            if getattr(self, name) is not None:
                validate.log_range(name, getattr(self, name))
        for name in ("batch_sizes", "label_smoothings"):
            if getattr(self, name) is not None:
                validate.not_empty(name, getattr(self, name), what=_EMPTY)

    def choose(self, hp: "keras_tuner.HyperParameters") -> Dict[str, object]:
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
