"""Alternative layer choices for keras_resnets, measured here before they go into the package.

bench/ may import TensorFlow; keras_resnets may not (it stays backend-neutral), so a variant that
wins here is proposed to the package with its figures rather than applied from here.

- `fused_bn`: batch normalisation through TensorFlow's fused kernel (`FusedBatchNormV3` and its
  fused gradient) instead of Keras 3's composite of `moments` and element-wise ops. tf.keras 2
  used the fused kernel by default; Keras 3's `BatchNormalization` does not, and on CPU the
  composite costs about a third of a ResNet training step (see bench/README.md).

- `pool_shortcut`: the parameter-free shortcut (option A, and the strided identity of ResNetV2)
  subsamples with a 1x1 average pooling of stride s instead of the strided slice `x[:, ::s,
  ::s]`: the same values and gradients, through the pooling kernels instead of TensorFlow's
  generic `StridedSlice` / `StridedSliceGrad`, which are several times slower on CPU.
  keras.applications' ResNetV2 subsamples its shortcut the same way (`MaxPooling2D(1, s)`).

- `native_gconv`: grouped convolutions (ResNeXt) through TensorFlow's own `Conv2D` kernels.
  Keras 3's TensorFlow backend compiles every grouped convolution with XLA (`ops.conv` sets
  `jit_compile=True` when input channels differ from the kernel's, "grouped convolutions are
  broken on CPU without XLA"), whatever the model's `jit_compile`; on this CPU, XLA's grouped
  convolution is several hundred times slower than TensorFlow's native kernel, which computes
  the same values and gradients in TF 2.21.

Use a variant while building:

    with variants.use("fused_bn"):
        model = keras_resnets.ResNet50()
"""

import contextlib

import keras
from keras import ops

from keras_resnets import blocks, layers


@keras.saving.register_keras_serializable(package="keras_resnets_bench")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` with the same weights, settings and outputs, computed by
    TensorFlow's fused kernel for 4-D channels-last inputs on the TensorFlow backend (other
    cases fall back to the parent).

    The moving statistics follow Keras' rule exactly (`moving = moving * momentum + batch *
    (1 - momentum)` with the biased batch variance): the fused kernel returns the unbiased
    variance, which is rescaled by (n - 1) / n before the update.
    """

    def _fusable(self, inputs, mask):
        return (keras.backend.backend() == "tensorflow" and mask is None and not self.renorm
                and not self.synchronized and len(inputs.shape) == 4
                and self.axis in (-1, 3))

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        gamma = (tf.convert_to_tensor(self.gamma) if self.scale
                 else tf.ones((channels,), "float32"))
        beta = (tf.convert_to_tensor(self.beta) if self.center
                else tf.zeros((channels,), "float32"))
        gamma, beta = tf.cast(gamma, "float32"), tf.cast(beta, "float32")
        x = inputs
        if x.dtype not in (tf.float16, tf.bfloat16, tf.float32):
            x = tf.cast(x, "float32")
        if training and self.trainable:
            empty = tf.constant([], "float32")
            y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=empty, variance=empty,
                epsilon=self.epsilon, exponential_avg_factor=1.0, data_format="NHWC",
                is_training=True)
            shape = tf.shape(x)
            count = tf.cast(shape[0] * shape[1] * shape[2], "float32")
            variance = variance * ((count - 1.0) / tf.maximum(count, 1.0))
            moving_mean = tf.cast(self.moving_mean, "float32")
            moving_variance = tf.cast(self.moving_variance, "float32")
            self.moving_mean.assign(
                tf.cast(moving_mean * self.momentum + mean * (1.0 - self.momentum),
                        self.moving_mean.dtype))
            self.moving_variance.assign(
                tf.cast(moving_variance * self.momentum + variance * (1.0 - self.momentum),
                        self.moving_variance.dtype))
        else:
            y, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta,
                mean=tf.cast(self.moving_mean, "float32"),
                variance=tf.cast(self.moving_variance, "float32"),
                epsilon=self.epsilon, exponential_avg_factor=1.0, data_format="NHWC",
                is_training=False)
        return tf.cast(y, inputs.dtype)


def _fused_bn(self, x, name, zero_gamma=False):
    return self.create(
        FusedBatchNormalization,
        name,
        momentum=self.config.bn_momentum,
        epsilon=self.config.bn_epsilon,
        gamma_initializer="zeros" if zero_gamma else "ones",
    )(x)


@keras.saving.register_keras_serializable(package="keras_resnets_bench")
class PooledZeroPadShortcut(layers.ZeroPadShortcut):
    """`keras_resnets.ZeroPadShortcut` subsampling by 1x1 average pooling (backend-neutral)."""

    def call(self, inputs):
        x = inputs
        if self.strides > 1:
            x = ops.average_pool(x, pool_size=1, strides=self.strides, padding="valid")
        if self._padding[-1] != [0, 0]:
            x = ops.pad(x, self._padding)
        return x


@keras.saving.register_keras_serializable(package="keras_resnets_bench")
class NativeGroupedConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` whose grouped convolution calls `tf.nn.convolution` directly on
    the TensorFlow backend instead of Keras' forced XLA compilation (same weights, outputs)."""

    def convolution_op(self, inputs, kernel):
        if keras.backend.backend() != "tensorflow" or self.groups == 1:
            return super().convolution_op(inputs, kernel)
        import tensorflow as tf

        return tf.nn.convolution(
            inputs, kernel, strides=list(self.strides), padding=self.padding.upper(),
            dilations=list(self.dilation_rate),
            data_format="NHWC" if self.data_format == "channels_last" else "NCHW")


_create = blocks.LayerFactory.create


def _create_native_grouped(self, layer_class, name, **kwargs):
    if layer_class is keras.layers.Conv2D and kwargs.get("groups", 1) > 1:
        layer_class = NativeGroupedConv2D
    return _create(self, layer_class, name, **kwargs)


# name -> (object patched, {attribute: replacement}) while building.
VARIANTS = {
    "fused_bn": (blocks.LayerFactory, {"bn": _fused_bn}),
    "pool_shortcut": (blocks, {"ZeroPadShortcut": PooledZeroPadShortcut}),
    "native_gconv": (blocks.LayerFactory, {"create": _create_native_grouped}),
}


@contextlib.contextmanager
def use(*names):
    """Build keras_resnets models with the named variants inside this block."""
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; valid: {sorted(VARIANTS)}")
    saved = []
    try:
        for name in names:
            owner, replacements = VARIANTS[name]
            for attribute, replacement in replacements.items():
                saved.append((owner, attribute, getattr(owner, attribute)))
                setattr(owner, attribute, replacement)
        yield
    finally:
        for owner, attribute, original in reversed(saved):
            setattr(owner, attribute, original)
