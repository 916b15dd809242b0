"""Multi-scale feature outputs: a ResNet as a backbone for detection and segmentation.

Every model the builders return carries `pyramid_outputs`, keras-hub's convention: a dict from
level name to feature map, `"P{k}"` for the last unit output at stride 2**k. ImageNet models
have `P2`-`P5` (strides 4-32), CIFAR models `P0`-`P2` (strides 1, 2, 4). The deepest level of
a pre-activation model is taken after its closing batch norm and activation (`post_relu`); the
other levels are residual sums, as in keras-hub. With `output_stride`, the dilated levels keep
their names at the coarser resolution (`P5` of an `output_stride=16` model is at stride 16).
"""

from typing import Optional, Sequence

import keras


def feature_extractor(model: keras.Model, levels: Optional[Sequence[str]] = None,
                      name: Optional[str] = None) -> keras.Model:
    """A model from the same inputs to a dict of pyramid levels (the same layers and weights).

    Args:
        model: `keras.Model` built by `keras_resnets` (it has `pyramid_outputs`), with or
            without its top.
        levels: sequence of str. Level names, e.g. `("P3", "P4", "P5")`. Defaults to every
            level of the model.
        name: str. The new model's name. Defaults to `"{model.name}_features"`.

    Returns:
        A `keras.Model` whose output is a dict `{level: feature map}`.

    Example:

    >>> import keras_resnets
    >>> backbone = keras_resnets.ResNet50(include_top=False, input_shape=(224, 224, 3))
    >>> features = keras_resnets.feature_extractor(backbone, levels=("P3", "P5"))
    >>> {level: tuple(tensor.shape) for level, tensor in features.output.items()}
    {'P3': (None, 28, 28, 512), 'P5': (None, 7, 7, 2048)}
    """
    pyramid = getattr(model, "pyramid_outputs", None)
    if not pyramid:
        raise ValueError(
            f"model '{model.name}' has no pyramid_outputs: feature_extractor needs a model built "
            "by keras_resnets (a model loaded from a file has lost them: rebuild it with its "
            "builder and load its weights).")
    levels = list(pyramid) if levels is None else list(levels)
    unknown = [level for level in levels if level not in pyramid]
    if unknown or not levels:
        raise ValueError(f"levels must be names among {list(pyramid)}; got {levels!r}.")
    return keras.Model(model.input, {level: pyramid[level] for level in levels},
                       name=name or f"{model.name}_features")
