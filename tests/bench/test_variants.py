"""The stock-Keras variants of bench/variants.py compute what the package's layers compute, with
the stock layer classes."""

import keras
import numpy as np
import pytest

import keras_resnets
from bench import models, variants


def _same_outputs(reference, changed, x):
    changed.set_weights(reference.get_weights())
    for training in (False, True):
        np.testing.assert_allclose(np.array(changed(x, training=training)),
                                   np.array(reference(x, training=training)),
                                   rtol=1e-5, atol=1e-5)


def _kinds(model):
    return {type(layer) for layer in model.layers}


def test_stock_bn_and_shortcut_build_the_same_resnet20_with_stock_layers():
    x = np.random.default_rng(1).random((2, 32, 32, 3)).astype("float32")
    reference = keras_resnets.ResNet20()
    assert {keras_resnets.FusedBatchNormalization, keras_resnets.ZeroPadShortcut} <= _kinds(
        reference)
    changed = keras_resnets.ResNet20(layer_classes=variants.layer_classes("stock_bn",
                                                                          "stock_shortcut"))
    assert [la.name for la in changed.layers[1:]] == [la.name for la in reference.layers[1:]]
    kinds = _kinds(changed)
    assert keras.layers.BatchNormalization in kinds
    assert variants.SlicedZeroPadShortcut in kinds
    assert keras_resnets.FusedBatchNormalization not in kinds
    assert keras_resnets.ZeroPadShortcut not in kinds
    _same_outputs(reference, changed, x)
    # Nothing of the package changed: the next model has its own layers again.
    assert _kinds(keras_resnets.ResNet20()) == _kinds(reference)


def test_stock_shortcut_matches_the_package_shortcut_and_its_gradient():
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(4).normal(size=(2, 7, 7, 4)).astype("float32"))
    results = []
    for layer in (keras_resnets.ZeroPadShortcut(8, strides=2),
                  variants.SlicedZeroPadShortcut(8, strides=2)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * y * tf.range(8.0))
        results.append([y, tape.gradient(loss, x)])
    for a, b in zip(*results):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-6, atol=1e-6)


def test_stock_gconv_builds_keras_grouped_convolutions_with_the_same_outputs():
    x = np.random.default_rng(2).random((2, 16, 16, 3)).astype("float32")
    options = dict(cardinality=2, bottleneck_width=64, stage_widths=(8, 16, 32),
                   input_shape=(16, 16, 3), classes=10)
    reference = keras_resnets.ResNeXt29(**options)
    changed = keras_resnets.ResNeXt29(**options,
                                      layer_classes=variants.layer_classes("stock_gconv"))
    grouped = [la for la in changed.layers if getattr(la, "groups", 1) > 1]
    assert grouped and all(type(la) is keras.layers.Conv2D for la in grouped)
    assert any(isinstance(la, keras_resnets.GroupedConv2D) for la in reference.layers)
    _same_outputs(reference, changed, x)


def test_unknown_variant_and_the_names_bench_models_uses():
    with pytest.raises(ValueError, match="unknown variant"):
        variants.layer_classes("no_such_variant")
    assert models.VARIANT_NAMES == tuple(variants.VARIANTS)
    group = models.GROUPS["ablation_resnet20"]
    assert group.members[0] == "keras_resnets.ResNet20"
    assert all(baseline != "keras_resnets.ResNet20" and candidate == "keras_resnets.ResNet20"
               for candidate, baseline in group.comparisons)
    assert "keras_resnets.ResNet20+stock" in group.members
