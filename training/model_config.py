"""Which network a training run trains: a registry name and builder overrides.

`ModelConfig` is the `model` part of a `training.config.ExperimentConfig`; it builds the network
for a data set (its classes and image shape) through `keras_resnets`.
"""

import dataclasses
from typing import Any, Mapping

CUSTOM_MODEL = "custom"


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which network to train.

    Args:
        name: str. A name from `keras_resnets.list_models()`, e.g. `"resnet20"` or
            `"resnext29_8x64d"`, or `"custom"`: `keras_resnets.ResNet(**overrides)` (a point
            of a search, say). Defaults to `"resnet20"`.
        overrides: dict. Arguments of `keras_resnets.ResNet` that replace the registry's, e.g.
            `{"stage_widths": (4, 8, 16)}`, `{"zero_init_residual": True}` or
            `{"overrides": {"*_bn": {"synchronized": True}}}` (cross-replica batch norm). The
            number of classes and the input shape come from the data set. Defaults to `{}`.

    Example:

    >>> ModelConfig("resnet56").build(num_classes=100, image_shape=(32, 32, 3)).output_shape
    (None, 100)
    """

    name: str = "resnet20"
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        import keras_resnets
        from keras_resnets import validate

        validate.choice("model", self.name, keras_resnets.list_models() + [CUSTOM_MODEL])
        if not isinstance(self.overrides, Mapping):
            raise ValueError(
                f"model_overrides must be a dict of keras_resnets.ResNet arguments; "
                f"got {self.overrides!r}."
            )
        reserved = sorted({"classes", "input_shape", "include_top", "name"} & set(self.overrides))
        if reserved:
            raise ValueError(
                f"model_overrides may not set {reserved}: the classes and input shape come from "
                "the data set, and a trained classifier needs include_top."
            )
        if self.overrides.get("data_format", "channels_last") != "channels_last":
            raise ValueError(
                "model_overrides may not set data_format="
                f"{self.overrides['data_format']!r}: training's input pipeline gives "
                "channels-last images (batch, height, width, channels).")
        # JSON gives lists; keras_resnets takes tuples (and equal configs compare equal).
        object.__setattr__(self, "overrides", {
            k: tuple(v) if isinstance(v, list) else v for k, v in self.overrides.items()})

    def architecture(self):
        """The network these settings build (a `keras_resnets.builder.Architecture`): what
        the model is, whatever its registry name and overrides."""
        from keras_resnets import builder, registry

        if self.name != CUSTOM_MODEL:
            return registry.architecture_of(self.name, **self.overrides)
        return builder.resolve_architecture(**{
            key: value for key, value in self.overrides.items()
            if key in registry.ARCHITECTURE_ARGUMENTS})

    def model_name(self) -> str:
        """The name of the model these settings build (`keras_resnets.registry.model_name`):
        a registry name, or one that states the architecture."""
        from keras_resnets import registry

        if self.name == CUSTOM_MODEL:
            return registry.name_for(self.architecture())
        return registry.model_name(self.name, **self.overrides)

    def build(self, num_classes: int, image_shape):
        """Builds the model for a data set of `num_classes` classes and `image_shape` images.

        The model is named after its architecture (`keras_resnets.registry.model_name`):
        `resnet20` with `{"depth": 56}` is `resnet56`, a custom model gets a registry name or
        a descriptive one."""
        import keras_resnets

        # The pipeline's images are channels-last whatever keras.config.image_data_format() says.
        arguments = {"data_format": "channels_last", **self.overrides,
                     "classes": int(num_classes), "input_shape": tuple(image_shape)}
        if self.name == CUSTOM_MODEL:
            return keras_resnets.ResNet(name=self.model_name(), **arguments)
        return keras_resnets.get_model(self.name, **arguments)
