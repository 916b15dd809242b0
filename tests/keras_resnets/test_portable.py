"""`portable(model)`: only built-in Keras layers, equal outputs, `.keras` files loading anywhere."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_resnets
from keras_resnets import ResNet, ZeroPadShortcut, portable
from tests.conftest import REPO_ROOT

KINDS = {
    # option A: ZeroPadShortcut with subsampling and channel padding; unknown spatial size.
    "resnet20": dict(depth=20, stem="cifar", shortcut="A", include_top=False, pooling="avg"),
    "resnext": dict(stage_blocks=(1, 1), block="bottleneck", stem="cifar", stage_widths=(8, 16),
                    cardinality=4, bottleneck_width=32),
    # keras.applications ResNetV2: a ZeroPadShortcut that only subsamples.
    "resnet50v2_keras_applications": dict(stage_blocks=(2, 2), block="bottleneck",
                                          stage_widths=(8, 16), unit="full_preactivation",
                                          layer_config="keras_applications",
                                          input_shape=(64, 64, 3)),
    "plain": dict(depth=8, stem="cifar", stage_widths=(4, 8, 16), plain=True),
    "imagenet_shortcut_c": dict(stage_blocks=(1, 1), stage_widths=(8, 16), shortcut="C",
                                unit="bn_after_addition", input_shape=(None, None, 3),
                                include_top=False),
}
PACKAGE_LAYERS = {"FusedBatchNormalization", "GroupedConv2D", "ZeroPadShortcut"}


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _inputs(model, seed=1):
    shape = [2] + [32 if d is None else d for d in model.input_shape[1:]]
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _moved_statistics(model):
    """Batch-norm statistics moved away from 0 and 1, so that inference exercises them."""
    model(_inputs(model, seed=2), training=True)
    return model


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_portable_model_has_only_keras_layers_and_the_same_outputs(kind):
    model = _moved_statistics(ResNet(**KINDS[kind]))
    exported = portable(model)
    assert exported is not model and exported.name == model.name
    assert {type(layer).__name__ for layer in _all_layers(model)} & PACKAGE_LAYERS
    assert all(type(layer).__module__.startswith("keras.") for layer in _all_layers(exported))
    assert [layer.name for layer in exported.layers] == [layer.name for layer in model.layers]
    assert exported.count_params() == model.count_params()
    assert [(w.path, tuple(w.shape)) for w in exported.weights] == [
        (w.path, tuple(w.shape)) for w in model.weights]
    x = _inputs(model)
    # Keras' batch normalisation rounds differently from TensorFlow's fused kernel (~1e-6).
    np.testing.assert_allclose(exported(x, training=False), model(x, training=False),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(exported(x, training=True), model(x, training=True),
                               rtol=1e-5, atol=1e-5)


def test_portable_zero_pad_shortcut_in_both_layouts():
    """The built-in replacement (average pooling, then ZeroPadding2D reading the tensor in the
    other layout) equals the layer for every mix of stride and padding, sizes unknown."""
    rng = np.random.default_rng(3)
    for data_format in ("channels_last", "channels_first"):
        channels_first = data_format == "channels_first"
        for strides, filters, expected_steps in [
            (1, 3, ["Identity"]), (1, 6, ["ZeroPadding2D"]), (2, 3, ["AveragePooling2D"]),
            (2, 8, ["AveragePooling2D", "ZeroPadding2D"]),
        ]:
            inputs = keras.Input((3, None, None) if channels_first else (None, None, 3))
            layer = ZeroPadShortcut(filters, strides, data_format=data_format, name="shortcut")
            model = keras.Model(inputs, layer(inputs))
            replacement = portable(model).get_layer("shortcut")
            assert [type(step).__name__ for step in replacement.layers] == expected_steps
            x = rng.normal(size=(2, 3, 5, 6) if channels_first else (2, 5, 6, 3))
            np.testing.assert_array_equal(replacement(x.astype("float32")),
                                          layer(x.astype("float32")))


def test_portable_keeps_mixed_precision_policies():
    keras.config.set_dtype_policy("mixed_float16")
    model = _moved_statistics(ResNet(**KINDS["resnext"], shortcut="A"))
    keras.config.set_dtype_policy("float32")  # the copy takes the layers' policies, not this one
    exported = portable(model)
    policies = [(layer.name, layer.dtype_policy.name) for layer in model.layers]
    assert [(layer.name, layer.dtype_policy.name) for layer in exported.layers[1:]] == (
        policies[1:])
    assert [layer.output.dtype for layer in exported.layers] == [
        layer.output.dtype for layer in model.layers]
    assert exported.get_layer("predictions").dtype_policy.name == "float32"
    x = _inputs(model)
    np.testing.assert_array_equal(exported(x, training=False), model(x, training=False))


def test_portable_converts_nested_models():
    inner = _moved_statistics(keras_resnets.ResNet20(include_top=False, pooling="avg"))
    image = keras.Input((32, 32, 3))
    outer = keras.Model(image, keras.layers.Dense(3, name="head")(inner(image)), name="outer")
    exported = portable(outer)
    assert all(type(layer).__module__.startswith("keras.") for layer in _all_layers(exported))
    x = _inputs(outer)
    np.testing.assert_allclose(exported(x, training=False), outer(x, training=False),
                               rtol=1e-5, atol=1e-5)


def test_portable_rejects_what_is_not_a_model():
    with pytest.raises(ValueError, match=r"model must be a functional or Sequential keras.Model; "
                                         r"got Conv2D"):
        portable(keras.layers.Conv2D(4, 3))


_LOAD = r"""
import json, os, sys
import numpy as np
import keras
directory = sys.argv[1]
errors = {}
for name in sorted(json.load(open(os.path.join(directory, "kinds.json")))):
    model = keras.models.load_model(os.path.join(directory, name + ".keras"))
    x = np.load(os.path.join(directory, name + "_x.npy"))
    y = keras.ops.convert_to_numpy(model(x, training=False))
    expected = np.load(os.path.join(directory, name + "_y.npy"))
    errors[name] = float(np.abs(y - expected).max() / np.abs(expected).max())
assert "keras_resnets" not in sys.modules, "keras_resnets was imported"
print(json.dumps(errors))
"""


def test_saved_portable_models_load_in_a_fresh_process_without_keras_resnets(tmp_path):
    names = ["resnet20", "resnext", "resnet50v2_keras_applications"]
    for name in names:
        model = _moved_statistics(ResNet(**KINDS[name]))
        x = _inputs(model, seed=4)
        np.save(tmp_path / f"{name}_x.npy", x)
        np.save(tmp_path / f"{name}_y.npy", np.asarray(model(x, training=False)))
        portable(model).save(str(tmp_path / f"{name}.keras"))
    (tmp_path / "kinds.json").write_text(json.dumps(names))
    # Started outside the repository, so keras_resnets is not even importable by accident.
    result = subprocess.run([sys.executable, "-c", _LOAD, str(tmp_path)], cwd=str(tmp_path),
                            env={**os.environ, "PYTHONPATH": ""}, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(errors) == set(names)
    assert max(errors.values()) <= 1e-5, errors  # relative to the outputs' scale


def test_unconverted_models_need_keras_resnets_to_load(tmp_path):
    """Why `portable` exists: the package's own layers are found only once it is imported."""
    path = str(tmp_path / "resnet20.keras")
    keras_resnets.ResNet20().save(path)
    code = f"import keras; keras.models.load_model({path!r})"
    result = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path),
                            env={**os.environ, "PYTHONPATH": ""}, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode != 0
    assert "keras_resnets>FusedBatchNormalization" in result.stderr


def test_portable_channels_first_model_on_torch(tmp_path):
    """The ZeroPadding2D trick in channels-first models, saved and loaded on PyTorch."""
    pytest.importorskip("torch")
    code = (
        "import json, sys, numpy as np, keras, keras_resnets\n"
        "model = keras_resnets.ResNet(8, stem='cifar', stage_widths=(4, 8, 16), shortcut='A',\n"
        "                             data_format='channels_first')\n"
        "x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype('float32')\n"
        "model(x, training=True)\n"
        "path = sys.argv[1] + '/first.keras'\n"
        "keras_resnets.portable(model).save(path)\n"
        "loaded = keras.models.load_model(path)\n"
        "got, expected = (keras.ops.convert_to_numpy(m(x, training=False))\n"
        "                 for m in (loaded, model))\n"
        "print(json.dumps(float(np.abs(got - expected).max())))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO_ROOT,
                            env={**os.environ, "KERAS_BACKEND": "torch"}, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) <= 1e-6
