"""Stock-Keras variants of keras_resnets, to measure what the package's own layer choices buy.

keras_resnets uses three layers of its own where Keras 3's stock layers are slow on TensorFlow
(`keras_resnets.layers`, `keras_resnets.backends`). Each variant here rebuilds a model with the
stock choice instead, with the same layer names, weights and outputs, so every choice stays
measurable as a before/after ablation (`bench.models --groups=ablations`):

- `stock_bn`: `keras.layers.BatchNormalization` (Keras 3's composite of `moments` and
  element-wise ops) instead of `keras_resnets.FusedBatchNormalization` (TensorFlow's
  `FusedBatchNormV3` and its fused gradient).
- `stock_gconv`: `keras.layers.Conv2D(groups=...)` for grouped convolutions (ResNeXt), which
  Keras 3's TensorFlow backend always compiles with XLA, instead of
  `keras_resnets.GroupedConv2D` (TensorFlow's native kernel).
- `stock_shortcut`: the parameter-free shortcut (option A, ResNetV2's strided identity)
  subsamples with the strided slice `x[:, ::s, ::s]` (`StridedSlice` / `StridedSliceGrad`)
  instead of a 1x1 average pooling of stride s.

Each variant is a `layer_classes` setting of `keras_resnets.LayerConfig`, passed in when
building:

    model = keras_resnets.ResNet50(layer_classes=variants.layer_classes("stock_bn"))
"""

import keras

from keras_resnets import layers


@keras.saving.register_keras_serializable(package="keras_resnets_bench")
class SlicedZeroPadShortcut(layers.ZeroPadShortcut):
    """`keras_resnets.ZeroPadShortcut` subsampling by strided slicing (its earlier form)."""

    def call(self, inputs):
        x = inputs
        if self.strides > 1:
            x = x[:, :: self.strides, :: self.strides, :]
        if self._padding[-1] != [0, 0]:
            x = keras.ops.pad(x, self._padding)
        return x


# name -> the stock classes it builds, by role of keras_resnets.layers.LAYER_CLASSES.
VARIANTS = {
    "stock_bn": {"batch_norm": keras.layers.BatchNormalization},
    "stock_gconv": {"grouped_conv": keras.layers.Conv2D},
    "stock_shortcut": {"zero_pad_shortcut": SlicedZeroPadShortcut},
}


def layer_classes(*names):
    """The `layer_classes` option of keras_resnets builders for the named variants together."""
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; valid: {sorted(VARIANTS)}")
    return {role: cls for name in names for role, cls in VARIANTS[name].items()}
