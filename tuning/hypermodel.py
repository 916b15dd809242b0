"""The search space: a KerasTuner HyperModel that only chooses numbers and calls keras_resnets.

Every point of the space is a `keras_resnets.ResNet(...)` call, and the papers' named models are
points of it: ResNet-20...110 (basic blocks, base width 16, n = 3...18, option A), pre-activation
ResNet-164 (bottleneck, n = 18), ResNeXt-29 8x64d (bottleneck, base width 64, C = 8, d = 64),
ResNet-18...152 and ResNeXt-50/101 on the ImageNet layout. Training hyperparameters live in a
separate, optional `TrainingSpace`; they never reach the architecture. Both spaces are defined
in `tuning.space` (importable without Keras) and exported here too.
"""

from typing import Dict, Optional

import keras
import keras_tuner

import keras_resnets
from keras_resnets import registry
from keras_resnets.specs import BLOCK_KINDS, STEMS, imagenet_kind
from tuning.space import TRAINING_HYPERPARAMETERS, SearchSpace, TrainingSpace

__all__ = ["ResNetHyperModel", "SearchSpace", "TrainingSpace", "named_model"]


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
        arguments.update(self._options(hp, arguments["shortcut"]))
        return arguments

    def _options(self, hp: keras_tuner.HyperParameters, shortcut: str) -> Dict[str, object]:
        """Declare the optional dimensions that are on; returns the `ResNet(...)` arguments of
        the chosen values that differ from the builder's defaults (so a point with them all
        off has the arguments of the default space's point)."""
        space, options = self.space, {}
        if space.stems:
            options["stem"] = hp.Choice("stem", list(space.stems))
        if space.width_multipliers:
            options["width_multiplier"] = hp.Choice("width_multiplier",
                                                    list(space.width_multipliers))
        if space.se_ratios:
            options["se_ratio"] = hp.Choice("se_ratio", list(space.se_ratios)) or None
        if space.avg_down:
            with hp.conditional_scope("shortcut", list(space.projection_shortcuts)):
                avg_down = hp.Boolean("avg_down")
            options["avg_down"] = bool(avg_down) and shortcut != "A"
        if space.drop_path_rates:
            # A LayerConfig field, which ResNet(...) and training's model overrides take too.
            options["drop_path_rate"] = hp.Choice("drop_path_rate", list(space.drop_path_rates))
        defaults = dict(width_multiplier=1.0, se_ratio=None, avg_down=False, drop_path_rate=0.0)
        return {k: v for k, v in options.items() if k not in defaults or v != defaults[k]}

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
        if arguments["stem"] != self.space.family:
            words.append(f"{arguments['stem']} stem")
        words += [k if k == "avg_down" else f"{k}={arguments[k]:g}"
                  for k in ("width_multiplier", "se_ratio", "avg_down", "drop_path_rate")
                  if k in arguments]
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
