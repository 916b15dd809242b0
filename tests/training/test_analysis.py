"""Gradient measurements against hand-derived gradients."""

import numpy as np
import pytest

import keras_resnets
from training.analysis import gradient_norms, unit_outputs


def _batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 32, 32, 3)).astype("float32"), np.arange(n) % 10


def test_last_unit_gradient_equals_the_closed_form():
    # After the last unit: global average pooling, dense, softmax cross-entropy (batch mean), so
    # dL/dx_L[b, h, w, c] = ((softmax(z_b) - onehot(y_b)) @ W.T)[c] / (H * W * batch).
    model = keras_resnets.ResNet(8, stem="cifar", stage_widths=(4, 8, 16))
    images, labels = _batch()
    features = keras_resnets.ResNet(8, stem="cifar", stage_widths=(4, 8, 16), include_top=False)
    features.set_weights(model.get_weights()[:len(features.get_weights())])
    x_last = np.asarray(features(images, training=False))
    kernel, bias = model.get_layer("predictions").get_weights()
    logits = x_last.mean(axis=(1, 2)) @ kernel + bias
    softmax = np.exp(logits - logits.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    delta = (softmax - np.eye(10)[labels]) @ kernel.T / (x_last.shape[1] * x_last.shape[2])
    expected = np.sqrt(np.mean(np.square(delta / len(labels))))
    norms = gradient_norms(model, images, labels, training=False)
    assert norms[-1][0] == "conv4_block1_out"
    assert norms[-1][1] == pytest.approx(expected, rel=1e-4)


def test_points_in_graph_order():
    model = keras_resnets.ResNet20()
    names = [name for name, _ in gradient_norms(model, *_batch())]
    assert names == [f"conv{s}_block{b}_out" for s in (2, 3, 4) for b in (1, 2, 3)]
    kernels = gradient_norms(model, *_batch(), points="kernels")
    assert len(kernels) == 19 and kernels[0][0] == "conv1_conv"
    assert all(value > 0 for _, value in kernels)


def test_plain_and_preactivation_units_are_found():
    plain = keras_resnets.Plain20()
    assert [layer.name for layer in unit_outputs(plain)][:2] == [
        "conv2_block1_out", "conv2_block2_out"]
    preact = keras_resnets.ResNet(20, stem="cifar", unit="full_preactivation", plain=True)
    assert unit_outputs(preact)[0].name == "conv2_block1_2_conv"


def test_bad_arguments():
    model = keras_resnets.ResNet(8, stem="cifar", stage_widths=(4, 8, 16))
    with pytest.raises(ValueError, match=r"points must be one of \['units', 'kernels'\]"):
        gradient_norms(model, *_batch(), points="layers")
    import keras
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    with pytest.raises(ValueError, match=r"has no layers named like 'conv2_block1_...'"):
        gradient_norms(other, np.zeros((1, 4)), np.zeros(1))
