"""Gradient measurements: how the loss gradient reaches each residual unit, input to output.

He et al. 2016 (Identity Mappings, Eq. 5) write the gradient at unit l as
dL/dx_l = dL/dx_L * (1 + d/dx_l sum F): with identity shortcuts it reaches every unit without
vanishing, which plain networks cannot promise. `gradient_norms` measures it on a batch.
"""

import re
from typing import List, Tuple

import keras
import numpy as np
import tensorflow as tf

_UNIT = re.compile(r"^(conv\d+_block\d+)_")
POINTS = ("units", "kernels")


def unit_outputs(model: keras.Model) -> List[keras.layers.Layer]:
    """The last layer of each residual unit (or plain block), in graph order, after the stem."""
    last = {}
    for layer in model.layers:
        match = _UNIT.match(layer.name)
        if match:
            last[match.group(1)] = layer
    if not last:
        raise ValueError(f"Model '{model.name}' has no layers named like 'conv2_block1_...'; "
                         "gradient_norms needs a keras_resnets model.")
    return list(last.values())


def gradient_norms(model: keras.Model, images, labels, points: str = "units",
                   training: bool = True) -> List[Tuple[str, float]]:
    """Root-mean-square of the loss gradient at every unit output or convolution kernel.

    Args:
        model: `keras.Model`. A keras_resnets classifier (`include_top=True`).
        images: array `[batch, height, width, channels]`, preprocessed as in training.
        labels: int array `[batch]`.
        points: str. `"units"`: the gradient with respect to each residual unit's output
            (dL/dx_l, Eq. 5 of He et al. 2016); `"kernels"`: with respect to each convolution
            kernel (what the optimizer sees). Defaults to `"units"`.
        training: bool. Batch-norm in training mode (batch statistics), as during training.
            Defaults to `True`.

    Returns:
        `(layer name, gradient RMS)` pairs from input to output. RMS (not the plain norm) makes
        layers of different sizes comparable.

    Example:

    >>> import numpy as np, keras_resnets
    >>> model = keras_resnets.ResNet20()
    >>> images = np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32")
    >>> norms = gradient_norms(model, images, np.arange(4))
    >>> [name for name, _ in norms][:2], len(norms)
    (['conv2_block1_out', 'conv2_block2_out'], 9)
    """
    if points not in POINTS:
        raise ValueError(f"points must be one of {list(POINTS)}; got {points!r}.")
    activation = getattr(model.layers[-1], "activation", None)
    from_logits = activation in (None, keras.activations.linear)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    images = tf.convert_to_tensor(images, tf.float32)
    labels = tf.convert_to_tensor(labels)
    if points == "kernels":
        layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=training))
        gradients = tape.gradient(loss, [layer.kernel for layer in layers])
    else:
        layers = unit_outputs(model)
        probe = keras.Model(model.inputs, [layer.output for layer in layers] + [model.output])
        with tf.GradientTape() as tape:
            *intermediates, outputs = probe(images, training=training)
            loss = loss_fn(labels, outputs)
        gradients = tape.gradient(loss, intermediates)
    return [(layer.name, float(np.sqrt(np.mean(np.square(gradient.numpy())))))
            for layer, gradient in zip(layers, gradients)]
