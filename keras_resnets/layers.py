"""The custom layers of keras_resnets; each is serializable for `.keras` files."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_resnets")
class ZeroPadShortcut(keras.layers.Layer):
    """Parameter-free shortcut: spatial subsampling, then zero channels up to `filters`.

    Option A of He et al. 2015 ("Deep Residual Learning for Image Recognition"): the identity
    shortcut subsamples with `strides` and pads the extra channels with zeros, split evenly
    before and after the input channels (as the common PyTorch CIFAR ResNets do, so their
    weights port unchanged). With `filters` equal to the input channels it only subsamples,
    which is the strided identity of keras.applications' ResNetV2.

    Args:
        filters: int. Number of output channels; at least the number of input channels.
        strides: int. Subsampling factor of both spatial axes. Defaults to `1`.

    Example:

    >>> import numpy as np
    >>> layer = ZeroPadShortcut(filters=8, strides=2)
    >>> tuple(layer(np.ones((1, 4, 4, 4), "float32")).shape)
    (1, 2, 2, 8)
    """

    def __init__(self, filters, strides=1, **kwargs):
        super().__init__(**kwargs)
        if int(filters) != filters or filters < 1:
            raise ValueError(f"filters must be a positive integer; got {filters!r}.")
        if int(strides) != strides or strides < 1:
            raise ValueError(f"strides must be a positive integer; got {strides!r}.")
        self.filters = int(filters)
        self.strides = int(strides)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None or channels > self.filters:
            raise ValueError(
                f"ZeroPadShortcut '{self.name}' pads channels up to filters={self.filters} but "
                f"its input has {channels} channels; use a projection shortcut to reduce them."
            )
        extra = self.filters - channels
        self._padding = [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]]
        self.built = True

    def call(self, inputs):
        x = inputs
        if self.strides > 1:
            x = x[:, :: self.strides, :: self.strides, :]
        if self._padding[-1] != [0, 0]:
            x = ops.pad(x, self._padding)
        return x

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape

        def subsample(size):
            return None if size is None else -(-size // self.strides)

        return (batch, subsample(height), subsample(width), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides}
