"""`.keras` files and get_config / from_config for every builder kind."""

import keras
import numpy as np
import pytest

import keras_resnets
from keras_resnets import ResNet, ZeroPadShortcut

KINDS = {
    "cifar_option_a": dict(depth=8, stem="cifar", stage_widths=(4, 8, 16), shortcut="A"),
    "bottleneck_preactivation": dict(stage_blocks=(1, 1), block="bottleneck", stem="cifar",
                                     stage_widths=(4, 8), unit="full_preactivation"),
    "resnext": dict(stage_blocks=(1, 1), block="bottleneck", stem="cifar", stage_widths=(8, 16),
                    cardinality=4, bottleneck_width=32),
    "plain": dict(depth=8, stem="cifar", stage_widths=(4, 8, 16), plain=True),
    "imagenet_keras_v2": dict(stage_blocks=(1, 2), block="bottleneck", stage_widths=(4, 8),
                              unit="full_preactivation", layer_config="keras_applications",
                              input_shape=(64, 64, 3)),
    **{unit: dict(depth=8, stem="cifar", stage_widths=(4, 8, 16), unit=unit, shortcut="C")
       for unit in ("bn_after_addition", "relu_before_addition", "relu_only_preactivation")},
}


def _inputs(model):
    shape = (2, *model.input_shape[1:])
    return np.random.default_rng(1).normal(size=shape).astype("float32")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_keras_file_round_trip(kind, tmp_path):
    model = ResNet(**KINDS[kind], kernel_regularizer=1e-4)
    x = _inputs(model)
    model(x, training=True)  # move the BN statistics away from their initial values
    path = str(tmp_path / f"{kind}.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), atol=1e-6)
    assert len(loaded.losses) == len(model.losses)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_get_config_from_config(kind):
    model = ResNet(**KINDS[kind])
    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    x = _inputs(model)
    np.testing.assert_allclose(clone(x, training=False), model(x, training=False), atol=1e-6)


def test_deep_model_round_trip(tmp_path):
    """ResNet-1202 has 4,210 layers: saving and loading must not hit Python's recursion limit."""
    model = keras_resnets.ResNet1202()
    path = str(tmp_path / "resnet1202.keras")
    model.save(path)
    assert len(keras.saving.load_model(path).layers) == len(model.layers) == 4210


def test_zero_pad_shortcut_config_and_values():
    layer = ZeroPadShortcut(filters=6, strides=2, name="shortcut")
    restored = ZeroPadShortcut.from_config(layer.get_config())
    assert (restored.filters, restored.strides, restored.name) == (6, 2, "shortcut")
    x = np.arange(2 * 4 * 4 * 3, dtype="float32").reshape(2, 4, 4, 3)
    y = np.asarray(restored(x))
    assert y.shape == (2, 2, 2, 6)
    np.testing.assert_array_equal(y[..., 1:4], x[:, ::2, ::2, :])  # 3 zeros split 1 | 2
    assert not y[..., 0].any() and not y[..., 4:].any()
    assert restored.compute_output_shape((None, 5, 5, 3)) == (None, 3, 3, 6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(filters=0), "filters must be a positive integer"),
    (dict(filters=4, strides=1.5), "strides must be a positive integer"),
])
def test_zero_pad_shortcut_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ZeroPadShortcut(**kwargs)


@pytest.mark.parametrize("axis, shape", [(-1, (4, 6, 6, 5)), (1, (4, 5, 6, 7))],
                         ids=["channels_last", "channels_first"])
def test_fused_batch_norm_equals_the_keras_layer(axis, shape):
    """TensorFlow's fused kernel, NHWC and NCHW (on CPU it transposes; with or without oneDNN):
    outputs, moving statistics and gradients equal Keras' layer."""
    import tensorflow as tf

    from keras_resnets import FusedBatchNormalization

    x = tf.constant(np.random.default_rng(2).normal(1.0, 3.0, size=shape), tf.float32)
    reference = keras.layers.BatchNormalization(axis=axis, momentum=0.8, epsilon=1e-3)
    fused = FusedBatchNormalization(axis=axis, momentum=0.8, epsilon=1e-3)
    assert fused._data_format(x, None) is not None  # the fused path, not the fallback
    reference.build(x.shape)
    fused.build(x.shape)
    fused.set_weights([w + 0.1 * i for i, w in enumerate(reference.get_weights())])
    reference.set_weights(fused.get_weights())
    per_channel = [1, 1, 1, 1]
    per_channel[axis] = 5
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        outputs = [layer(x, training=True) for layer in (reference, fused)]
        weights = tf.reshape(tf.range(5, dtype=tf.float32), per_channel)
        losses = [tf.reduce_sum(tf.square(y) * weights) for y in outputs]
    np.testing.assert_allclose(outputs[1], outputs[0], atol=1e-5)
    for a, b in zip(reference.get_weights(), fused.get_weights()):  # moving statistics
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    for source in (x, reference.gamma):
        other = fused.gamma if source is reference.gamma else x
        np.testing.assert_allclose(tape.gradient(losses[1], other),
                                   tape.gradient(losses[0], source), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fused(x, training=False), reference(x, training=False),
                               atol=1e-5)
    assert FusedBatchNormalization(axis=2)._data_format(x, None) is None  # the Keras layer


def test_fused_batch_norm_under_mixed_precision_and_fallbacks():
    from keras_resnets import FusedBatchNormalization

    keras.config.set_dtype_policy("mixed_float16")
    layer = FusedBatchNormalization()
    x = np.random.default_rng(3).normal(size=(2, 4, 4, 3)).astype("float16")
    assert layer(x, training=True).dtype == "float16"
    keras.config.set_dtype_policy("float32")
    synced = FusedBatchNormalization(synchronized=True)  # cross-replica: the Keras path
    flat = np.ones((2, 3), "float32")  # 2-D input: the Keras path
    assert synced(np.ones((2, 4, 4, 3), "float32"), training=True).shape == (2, 4, 4, 3)
    assert FusedBatchNormalization()(flat, training=True).shape == (2, 3)


def test_grouped_conv_equals_keras_grouped_conv():
    import tensorflow as tf

    from keras_resnets import GroupedConv2D

    x = tf.constant(np.random.default_rng(4).normal(size=(2, 9, 9, 8)), tf.float32)
    ours = GroupedConv2D(12, 3, strides=2, groups=4, padding="valid")
    theirs = keras.layers.Conv2D(12, 3, strides=2, groups=4, padding="valid")
    ours.build(x.shape)
    theirs.build(x.shape)
    theirs.set_weights(ours.get_weights())
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        a, b = ours(x), theirs(x)
        loss_a, loss_b = tf.reduce_sum(a * a), tf.reduce_sum(b * b)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(tape.gradient(loss_a, ours.kernel),
                               tape.gradient(loss_b, theirs.kernel), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(tape.gradient(loss_a, x), tape.gradient(loss_b, x), atol=1e-4)
    assert type(keras_resnets.ResNeXt50(include_top=False).get_layer(
        "conv2_block1_2_conv")) is GroupedConv2D
    assert type(keras_resnets.ResNet50(include_top=False).get_layer(
        "conv2_block1_2_conv")) is keras.layers.Conv2D
