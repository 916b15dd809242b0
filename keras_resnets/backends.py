"""Native kernels for the two operations where Keras 3 is slow on the TensorFlow backend.

keras_resnets runs on every Keras 3 backend through `keras.ops`. On TensorFlow two of those ops
cost far more than TensorFlow's own kernels for the same values (measured in bench/README.md):

- Grouped convolutions: Keras compiles every grouped convolution with XLA (a workaround for old
  TensorFlow versions whose CPU kernel lacked groups). TensorFlow 2.16+ runs them natively, and
  XLA's CPU grouped convolution is hundreds of times slower.
- Batch normalisation: Keras composes it from `moments` and element-wise ops; tf.keras 2 used
  the fused kernel (`FusedBatchNormV3` and its fused gradient), which is about a third of a
  ResNet training step faster on CPU.

This is the only module that touches TensorFlow, and it imports it inside the functions, only
when Keras runs on TensorFlow (which Keras has then imported already). Other backends never load
it; every function returns `None` there and the caller uses `keras.ops`.
"""

import keras


def _on_tensorflow() -> bool:
    return keras.backend.backend() == "tensorflow"


def grouped_conv(inputs, kernel, strides, padding, dilation_rate, data_format):
    """`tf.nn.convolution` without Keras' forced XLA, or `None` off TensorFlow."""
    if not _on_tensorflow():
        return None
    import tensorflow as tf

    return tf.nn.convolution(
        inputs, kernel, strides=list(strides), padding=padding.upper(),
        dilations=list(dilation_rate),
        data_format="NHWC" if data_format == "channels_last" else "NCHW")


def fused_batch_norm(x, gamma, beta, epsilon, mean=None, variance=None,
                     data_format="channels_last"):
    """Batch normalisation by TensorFlow's fused kernel, or `None` off TensorFlow.

    Without `mean` and `variance` it normalises with the batch statistics and returns
    `(outputs, batch mean, biased batch variance)` (Keras' convention); with them it returns the
    outputs normalised by those statistics (inference). `data_format` is the layout of the 4-D
    `x`; TensorFlow's CPU kernel supports both layouts (it transposes channels-first inputs),
    with or without oneDNN, and GPUs run both natively.
    """
    if not _on_tensorflow():
        return None
    import tensorflow as tf

    training = mean is None
    empty = tf.constant([], tf.float32)
    channels_first = data_format == "channels_first"
    outputs, batch_mean, batch_variance, *_ = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=gamma, offset=beta,
        mean=empty if training else mean, variance=empty if training else variance,
        epsilon=epsilon, exponential_avg_factor=1.0,
        data_format="NCHW" if channels_first else "NHWC", is_training=training)
    if not training:
        return outputs
    # The kernel returns the unbiased variance; Keras' moving statistics use the biased one.
    shape = tf.shape(x)
    height_axis = 2 if channels_first else 1
    count = tf.cast(shape[0] * shape[height_axis] * shape[height_axis + 1], tf.float32)
    return outputs, batch_mean, batch_variance * (count - 1.0) / tf.maximum(count, 1.0)
