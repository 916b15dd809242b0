"""The custom layers of keras_resnets; each is serializable for `.keras` files."""

import keras
from keras import ops

from keras_resnets import backends, config


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
        data_format: str or `None`. `"channels_last"` (batch, height, width, channels) or
            `"channels_first"` (batch, channels, height, width). Defaults to `None`, which
            means `keras.config.image_data_format()`.

    Example:

    >>> import numpy as np
    >>> layer = ZeroPadShortcut(filters=8, strides=2, data_format="channels_last")
    >>> tuple(layer(np.ones((1, 4, 4, 4), "float32")).shape)
    (1, 2, 2, 8)
    >>> layer = ZeroPadShortcut(filters=8, strides=2, data_format="channels_first")
    >>> tuple(layer(np.ones((1, 4, 4, 4), "float32")).shape)
    (1, 8, 2, 2)
    """

    def __init__(self, filters, strides=1, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if int(filters) != filters or filters < 1:
            raise ValueError(f"filters must be a positive integer; got {filters!r}.")
        if int(strides) != strides or strides < 1:
            raise ValueError(f"strides must be a positive integer; got {strides!r}.")
        self.filters = int(filters)
        self.strides = int(strides)
        self.data_format = config.data_format(data_format)
        self._channel_axis = 1 if self.data_format == "channels_first" else 3

    def build(self, input_shape):
        channels = input_shape[self._channel_axis]
        if channels is None or channels > self.filters:
            raise ValueError(
                f"ZeroPadShortcut '{self.name}' pads channels up to filters={self.filters} but "
                f"its input has {channels} channels ({self.data_format} input of shape "
                f"{tuple(input_shape)}); use a projection shortcut to reduce them."
            )
        extra = self.filters - channels
        self._padding = [[0, 0]] * 4
        self._padding[self._channel_axis] = [extra // 2, extra - extra // 2]
        self.built = True

    def call(self, inputs):
        x = inputs
        if self.strides > 1:
            # A 1x1 pooling of stride s is x[:, ::s, ::s], through pooling kernels that are
            # several times faster than strided slicing (and its gradient) on CPU.
            x = ops.average_pool(x, pool_size=1, strides=self.strides, padding="valid",
                                 data_format=self.data_format)
        if self._padding[self._channel_axis] != [0, 0]:
            x = ops.pad(x, self._padding)
        return x

    def compute_output_shape(self, input_shape):
        def subsample(size):
            return None if size is None else -(-size // self.strides)

        batch = input_shape[0]
        if self.data_format == "channels_first":
            return (batch, self.filters, subsample(input_shape[2]), subsample(input_shape[3]))
        return (batch, subsample(input_shape[1]), subsample(input_shape[2]), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "strides": self.strides,
                "data_format": self.data_format}


@keras.saving.register_keras_serializable(package="keras_resnets")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` computed by TensorFlow's fused kernel where it can be.

    Same arguments, weights, outputs and moving-statistics rule as the Keras layer (so weights
    port to and from `keras.layers.BatchNormalization` by name). On the TensorFlow backend, for
    4-D inputs normalised over their channels (`axis=-1` or `3` for channels-last, `axis=1` for
    channels-first) without a mask, renormalisation or cross-replica statistics, it runs
    `FusedBatchNormV3` (see `keras_resnets.backends`); everywhere else it is the Keras layer.
    """

    def _data_format(self, inputs, mask):
        """The layout the fused kernel reads the input as, or `None` where it does not apply."""
        if mask is not None or self.renorm or self.synchronized or len(inputs.shape) != 4:
            return None
        return {-1: "channels_last", 3: "channels_last",
                1: "channels_first", -3: "channels_first"}.get(self.axis)

    def call(self, inputs, training=None, mask=None):
        data_format = self._data_format(inputs, mask)
        if data_format is None:
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[self.axis]
        gamma = ops.cast(self.gamma, "float32") if self.scale else ops.ones((channels,))
        beta = ops.cast(self.beta, "float32") if self.center else ops.zeros((channels,))
        x = inputs if inputs.dtype in ("float16", "bfloat16", "float32") else ops.cast(
            inputs, "float32")
        moving_mean = ops.cast(self.moving_mean, "float32")
        moving_variance = ops.cast(self.moving_variance, "float32")
        if training and self.trainable:
            result = backends.fused_batch_norm(x, gamma, beta, self.epsilon,
                                               data_format=data_format)
            if result is None:
                return super().call(inputs, training=training, mask=mask)
            outputs, mean, variance = result
            self.moving_mean.assign(ops.cast(
                moving_mean * self.momentum + mean * (1.0 - self.momentum),
                self.moving_mean.dtype))
            self.moving_variance.assign(ops.cast(
                moving_variance * self.momentum + variance * (1.0 - self.momentum),
                self.moving_variance.dtype))
        else:
            outputs = backends.fused_batch_norm(x, gamma, beta, self.epsilon, moving_mean,
                                                moving_variance, data_format=data_format)
            if outputs is None:
                return super().call(inputs, training=training, mask=mask)
        return ops.cast(outputs, self.compute_dtype)


@keras.saving.register_keras_serializable(package="keras_resnets")
class GroupedConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` whose grouped convolutions run natively on TensorFlow.

    Keras 3 compiles every grouped convolution with XLA on the TensorFlow backend, which on CPU
    is hundreds of times slower than TensorFlow's own kernel (see `keras_resnets.backends`).
    Same arguments, weights and outputs as the Keras layer; ungrouped convolutions and other
    backends are the Keras layer's.
    """

    def convolution_op(self, inputs, kernel):
        if self.groups > 1:
            outputs = backends.grouped_conv(inputs, kernel, self.strides, self.padding,
                                            self.dilation_rate, self.data_format)
            if outputs is not None:
                return outputs
        return super().convolution_op(inputs, kernel)


# The layers a model is built from where the package has its own, by role. `LayerConfig`'s
# `layer_classes` replaces any of them (bench/variants.py builds its stock-Keras ablations
# that way).
LAYER_CLASSES = {
    "conv": keras.layers.Conv2D,
    "grouped_conv": GroupedConv2D,
    "batch_norm": FusedBatchNormalization,
    "zero_pad_shortcut": ZeroPadShortcut,
}
