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
# SearchSpace's optional dimensions: off (not searched, no hyperparameter) while empty.
OPTION_FIELDS = ("se_ratios", "drop_path_rates", "stems", "width_multipliers")


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
        se_ratios: tuple of float. Squeeze-and-excitation ratios to try (Hu et al. 2018;
            `keras_resnets.ResNet`'s `se_ratio`), each in [0, 1]: 0 is no SE, 0.0625 the
            paper's reduction 16. Empty: no SE, not searched. Defaults to `()`.
        drop_path_rates: tuple of float. Stochastic-depth rates to try (Huang et al. 2016; the
            `drop_path_rate` of `keras_resnets.LayerConfig`), each in [0, 1): 0 is none.
            Training only: it adds no parameters or multiply-adds. Empty: not searched.
            Defaults to `()`.
        stems: tuple of str. ImageNet family only: stems to try among `"imagenet"` (7x7) and
            `"deep"` (ResNet-C of He et al. 2019: three 3x3 convolutions). Empty: the
            family's stem. Defaults to `()`.
        avg_down: bool. Also try ResNet-D's average-pooled projection shortcuts (He et al.
            2019; `keras_resnets.ResNet`'s `avg_down`) on and off, in points with shortcut B
            or C. Defaults to `False`.
        width_multipliers: tuple of float. Factors scaling every stage width (Wide ResNets;
            `keras_resnets.ResNet`'s `width_multiplier`), each positive. Empty: 1, not
            searched. Defaults to `()`.
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
    se_ratios: Tuple[float, ...] = ()
    drop_path_rates: Tuple[float, ...] = ()
    stems: Tuple[str, ...] = ()
    avg_down: bool = False
    width_multipliers: Tuple[float, ...] = ()

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
        self._check_options()
        if self.has_bottlenecks:
            for name in ("cardinalities", "bottleneck_widths"):
                validate.not_empty(name, getattr(self, name), what=_EMPTY)
            self._check_group_widths()
        validate.choices("units", self.units, keras_resnets.UNITS)
        validate.choices("shortcuts", self.shortcuts, keras_resnets.SHORTCUTS)
        if self.family == "cifar":
            validate.choices("blocks", self.blocks, BLOCK_KINDS)
        else:
            validate.choices("depths", self.depths, sorted(
                d for kind in BLOCK_KINDS.values() for d in kind.imagenet_depths))

    def _check_options(self):
        """The optional dimensions (se_ratios ... width_multipliers): empty is off."""
        from keras_resnets import validate
        from keras_resnets.specs import STEMS

        for name in OPTION_FIELDS:
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for ratio in self.se_ratios:
            validate.number_in("se_ratios values", ratio, 0, 1, what="in ")
        for rate in self.drop_path_rates:
            validate.number_in("drop_path_rates values", rate, 0, 1, high_open=True,
                              what="in ")
        for multiplier in self.width_multipliers:
            validate.positive_number("width_multipliers values", multiplier)
        for name in ("se_ratios", "drop_path_rates", "width_multipliers"):
            # KerasTuner's Choice takes one type: 0 and 0.25 become 0.0 and 0.25.
            object.__setattr__(self, name, tuple(float(value) for value in getattr(self, name)))
        family_stems = [name for name, stem in STEMS.items() if stem.family == self.family]
        if self.stems and len(family_stems) == 1:
            raise ValueError(
                f"stems chooses among the imagenet family's stems; the {self.family} family has "
                f"one stem ({family_stems[0]!r}): drop stems or use family='imagenet'.")
        validate.choices("stems", self.stems, family_stems)
        validate.boolean("avg_down", self.avg_down)
        if self.avg_down and not self.projection_shortcuts:
            raise ValueError("avg_down pools before projection shortcuts; shortcuts "
                             f"{self.shortcuts} has none: add 'B' or 'C'.")

    def _check_group_widths(self):
        from keras_resnets.specs import STEMS

        stages = len(STEMS[self.family].stage_widths)
        for base in self.base_widths:
            for multiplier in self.width_multipliers or (1.0,):
                # keras_resnets.builder.resolve_architecture's rounding of the stage widths.
                planes = [max(1, int(round(base * 2**i * multiplier))) for i in range(stages)]
                for width in self.bottleneck_widths:
                    bad = [p for p in planes if p * width % 64]
                    if bad:
                        scaled = ("" if multiplier == 1.0 else
                                  f" and width_multipliers value {multiplier}")
                        raise ValueError(
                            f"bottleneck_widths value {width} with base_widths value {base}"
                            f"{scaled} gives a fractional group width ({bad[0]} * {width} / "
                            "64); keep each stage width * bottleneck_width a multiple of 64.")

    def to_dict(self) -> Dict[str, object]:
        """The fields, without the optional dimensions that are off: a search saved before they
        existed (`tuning.tuner`'s `search_config.json`) has the same settings, so it resumes."""
        return {name: value for name, value in dataclasses.asdict(self).items()
                if value or name not in OPTION_FIELDS + ("avg_down",)}

    @property
    def projection_shortcuts(self) -> Tuple[str, ...]:
        """The shortcut options with projections (those `avg_down` changes)."""
        return tuple(s for s in self.shortcuts if s != "A")

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
        """Values of the cheapest points: the smallest n / depth, width, C, d, SE ratio and width
        multiplier for every block kind, unit, shortcut, stem and avg_down (cost grows with each
        of the former, but not with the latter; drop path costs nothing)."""
        for unit in self.units:
            for shortcut in self.shortcuts:
                for options in self._option_candidates(shortcut):
                    yield from self._smallest_of(dict(
                        options, base_width=min(self.base_widths), unit=unit, shortcut=shortcut))

    def _option_candidates(self, shortcut):
        """The optional dimensions' values of the cheapest points with `shortcut`."""
        # By hyperparameter name: the field's without its plural "s".
        smallest = {name[:-1]: min(getattr(self, name)) for name in OPTION_FIELDS
                    if name != "stems" and getattr(self, name)}
        for stem in self.stems or (None,):
            for avg_down in ((False, True) if self.avg_down and shortcut != "A" else (None,)):
                yield dict(smallest, **({"stem": stem} if stem else {}),
                           **({} if avg_down is None else {"avg_down": avg_down}))

    def _smallest_of(self, common):
        """The cheapest points with `common` values, one per block kind."""
        from keras_resnets.specs import BLOCK_KINDS

        if self.family == "cifar":
            for block in self.blocks:
                values = dict(common, block=block, blocks_per_stage=min(self.blocks_per_stage))
                yield self._with_bottleneck(values, BLOCK_KINDS[block].aggregated)
        else:
            for kind in BLOCK_KINDS.values():
                chosen = [d for d in self.depths if d in kind.imagenet_depths]
                if chosen:
                    yield self._with_bottleneck(dict(common, depth=min(chosen)), kind.aggregated)

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
