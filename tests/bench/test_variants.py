"""The layer-choice variants of bench/variants.py compute what the package's layers compute."""

import keras
import numpy as np
import pytest

import keras_resnets
from bench import variants


def _bn_pair(**options):
    x = np.random.default_rng(0).normal(1.0, 3.0, (4, 5, 5, 6)).astype("float32")
    ours = keras.layers.BatchNormalization(**options)
    fused = variants.FusedBatchNormalization(**options)
    for layer in (ours, fused):
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 2.0, 6))
        layer.beta.assign(np.linspace(-1.0, 1.0, 6))
    return x, ours, fused


@pytest.mark.parametrize("training", [True, False])
def test_fused_batch_norm_matches_keras_outputs_gradients_and_statistics(training):
    import tensorflow as tf

    x, ours, fused = _bn_pair(momentum=0.9, epsilon=1e-5)
    weights = tf.range(6.0)
    results = []
    for layer in (ours, fused):
        inputs = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            y = layer(inputs, training=training)
            loss = tf.reduce_sum(y * y * weights)
        grads = tape.gradient(loss, [inputs, layer.gamma.value, layer.beta.value])
        results.append([y] + grads + [layer.moving_mean, layer.moving_variance])
    for a, b in zip(*results):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=2e-4, atol=2e-4)


def test_fused_batch_norm_keeps_the_input_dtype_under_mixed_precision():
    x = np.ones((2, 3, 3, 4), "float16")
    for training in (True, False):
        layer = variants.FusedBatchNormalization(dtype="mixed_float16")
        y = layer(x, training=training)
        assert y.dtype == "float16" and layer.moving_mean.dtype == "float32"


def test_variants_build_the_same_network_and_restore_the_package():
    x = np.random.default_rng(1).random((2, 32, 32, 3)).astype("float32")
    reference = keras_resnets.ResNet20()
    with variants.use("fused_bn", "pool_shortcut"):
        changed = keras_resnets.ResNet20()
    assert [l.name for l in changed.layers[1:]] == [l.name for l in reference.layers[1:]]
    kinds = {type(l).__name__ for l in changed.layers}
    assert {"FusedBatchNormalization", "PooledZeroPadShortcut"} <= kinds
    changed.set_weights(reference.get_weights())
    for training in (False, True):
        np.testing.assert_allclose(np.array(changed(x, training=training)),
                                   np.array(reference(x, training=training)), atol=1e-5)
    after = {type(l).__name__ for l in keras_resnets.ResNet20().layers}
    assert "FusedBatchNormalization" not in after and "PooledZeroPadShortcut" not in after
    with pytest.raises(ValueError, match="unknown variant"):
        with variants.use("no_such_variant"):
            pass


def test_native_grouped_conv_matches_keras_grouped_conv():
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(2).normal(size=(2, 9, 9, 8)).astype("float32"))
    results = []
    for layer_class in (keras.layers.Conv2D, variants.NativeGroupedConv2D):
        keras.utils.set_random_seed(3)
        layer = layer_class(8, 3, strides=2, padding="same", groups=4, use_bias=False)
        with tf.GradientTape() as tape:
            y = layer(x)
            loss = tf.reduce_sum(y * y)
        results.append([y, tape.gradient(loss, layer.kernel.value)])
    for a, b in zip(*results):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-4)
    with variants.use("native_gconv"):
        model = keras_resnets.ResNeXt29(cardinality=2, bottleneck_width=64,
                                        stage_widths=(8, 16, 32), include_top=False)
    grouped = [l for l in model.layers if getattr(l, "groups", 1) > 1]
    assert grouped and all(isinstance(l, variants.NativeGroupedConv2D) for l in grouped)
