"""channels_first: the same network as channels_last (parameters, weights, outputs) in NCHW."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_resnets
from keras_resnets import ResNet, ZeroPadShortcut
from tests.conftest import REPO_ROOT

FORMATS = ("channels_last", "channels_first")


@pytest.fixture(autouse=True)
def _restore_image_data_format():
    yield
    keras.config.set_image_data_format("channels_last")


def _shrunk(name):
    """A registered model's arguments with two units per stage and a quarter of the width: the
    same kind of network (stem, block, unit, shortcut, grouping, downsampling), built fast."""
    arguments = keras_resnets.model_arguments(name)
    depth = arguments.pop("depth")
    arch = keras_resnets.resolve_architecture(
        depth=depth, block=arguments.get("block"), stem=arguments["stem"],
        stage_widths=arguments.get("stage_widths"))
    return {**arguments, "block": arch.block, "stage_blocks": (2,) * len(arch.stage_blocks),
            "stage_widths": tuple(width // 4 for width in arch.stage_widths)}


def _registry_kinds():
    """One case per distinct shrunk registry row (rows differing only in depth coincide)."""
    kinds = {}
    for name in keras_resnets.list_models():
        arguments = _shrunk(name)
        key = repr(sorted(arguments.items()))
        kinds.setdefault(key, (name, arguments))
    return dict(kinds.values())


_CIFAR = dict(stem="cifar", stage_blocks=(1, 2, 1), stage_widths=(4, 8, 16))
KINDS = {
    **{f"registry_{name}": arguments for name, arguments in _registry_kinds().items()},
    # keras.applications ResNetV2: the last unit of a stage strides, with a ZeroPadShortcut
    # that only subsamples (filters == input channels).
    "keras_applications_v2": dict(stage_blocks=(2, 2), block="bottleneck", stage_widths=(8, 16),
                                  unit="full_preactivation", layer_config="keras_applications"),
    "keras_applications_v1": dict(stage_blocks=(1, 1), block="bottleneck", stage_widths=(8, 16),
                                  layer_config="keras_applications"),
    "shortcut_b": dict(_CIFAR, shortcut="B"),
    "shortcut_c": dict(_CIFAR, shortcut="C"),
    "resnext_option_a": dict(stem="cifar", stage_blocks=(1, 1), block="bottleneck",
                             stage_widths=(8, 16), cardinality=4, bottleneck_width=32,
                             shortcut="A"),
    **{unit: dict(_CIFAR, unit=unit, shortcut="A") for unit in keras_resnets.UNITS},
    "features_max_pool": dict(_CIFAR, include_top=False, pooling="max"),
}


def _weights(model):
    return [(w.path, tuple(w.shape)) for w in model.weights]


def _check_layout(model, data_format):
    """Every layer that reads a spatial or channel axis reads it in `data_format`."""
    formats = {layer.name: layer.data_format for layer in model.layers
               if hasattr(layer, "data_format")}
    axes = {layer.name: layer.axis for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)}
    assert formats and set(formats.values()) == {data_format}, formats
    assert axes and set(axes.values()) == {1 if data_format == "channels_first" else -1}, axes


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_channels_first_has_the_weights_of_channels_last(kind):
    last, first = (ResNet(**KINDS[kind], data_format=f) for f in FORMATS)
    assert first.count_params() == last.count_params()
    assert _weights(first) == _weights(last)
    assert [layer.name for layer in first.layers[1:]] == [layer.name for layer in last.layers[1:]]
    _check_layout(last, "channels_last")
    _check_layout(first, "channels_first")
    assert first.input_shape[1] == last.input_shape[-1] == 3
    assert first.input_shape[2:] == last.input_shape[1:3]
    assert first.output_shape == last.output_shape
    if last.input_shape[1] is not None:
        assert keras_resnets.profile(first) == keras_resnets.profile(last)


def test_resnet18_channels_first_has_the_paper_parameters():
    keras.config.set_image_data_format("channels_first")
    model = keras_resnets.ResNet18()
    assert model.input_shape == (None, 3, 224, 224)
    assert model.count_params() == 11_699_112
    assert keras_resnets.profile(model) == keras_resnets.profile(
        keras_resnets.ResNet18(data_format="channels_last"))


def test_option_a_pads_the_channel_axis_under_the_global_setting():
    keras.config.set_image_data_format("channels_first")
    model = keras_resnets.ResNet20()
    shortcut = model.get_layer("conv3_block1_0_pad")
    assert shortcut.data_format == "channels_first"
    assert shortcut.output.shape == (None, 32, 16, 16)
    assert not [layer for layer in model.layers if layer.name.endswith("_0_conv")]  # option A
    assert model.count_params() == 271_098


def test_shortcut_b_projects_only_where_the_channels_change():
    model = ResNet(20, stem="cifar", shortcut="B", data_format="channels_first")
    assert sorted(layer.name for layer in model.layers if layer.name.endswith("_0_conv")) == [
        "conv3_block1_0_conv", "conv4_block1_0_conv"]


@pytest.mark.parametrize("data_format, include_top, expected", [
    ("channels_first", True, (None, 3, 32, 32)),
    ("channels_first", False, (None, 3, None, None)),
    ("channels_last", True, (None, 32, 32, 3)),
    ("channels_last", False, (None, None, None, 3)),
])
def test_default_input_shape_follows_the_data_format(data_format, include_top, expected):
    assert keras_resnets.ResNet20(include_top=include_top,
                                  data_format=data_format).input_shape == expected
    keras.config.set_image_data_format(data_format)
    assert keras_resnets.ResNet20(include_top=include_top).input_shape == expected


def test_channels_first_input_shape_and_input_tensor():
    model = keras_resnets.ResNet18(input_shape=(1, None, None), include_top=False,
                                   data_format="channels_first")
    assert model.input_shape == (None, 1, None, None)
    assert model.output_shape == (None, 512, None, None)
    image = keras.Input((3, 40, 40))
    model = keras_resnets.ResNet20(input_tensor=image, data_format="channels_first")
    assert model.get_layer("conv4_block1_0_pad").output.shape == (None, 64, 10, 10)


@pytest.mark.parametrize("kwargs, message", [
    (dict(data_format="NCHW"), r"data_format must be None or one of \['channels_last', "
                               r"'channels_first'\]; got 'NCHW'"),
    (dict(data_format="channels_first", input_shape=(None, 32, 32)),
     r"input_shape must give the number of channels: it is \(channels, height, width\) under "
     r"data_format='channels_first'"),
    (dict(data_format="channels_first", input_shape=(3, 32)),
     r"input_shape must be \(channels, height, width\)"),
    (dict(data_format="channels_last", input_shape=(3, None, None)),
     r"input_shape must give the number of channels: it is \(height, width, channels\)"),
])
def test_bad_data_format_and_input_shape(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResNet(20, stem="cifar", **kwargs)


def test_zero_pad_shortcut_channels_first_values_and_config():
    layer = ZeroPadShortcut(filters=6, strides=2, data_format="channels_first", name="shortcut")
    config = layer.get_config()
    assert config["data_format"] == "channels_first"
    restored = ZeroPadShortcut.from_config(config)
    x = np.arange(2 * 3 * 5 * 5, dtype="float32").reshape(2, 3, 5, 5)
    y = np.asarray(restored(x))
    assert y.shape == (2, 6, 3, 3)
    np.testing.assert_array_equal(y[:, 1:4], x[:, :, ::2, ::2])  # 3 zero channels split 1 | 2
    assert not y[:, 0].any() and not y[:, 4:].any()
    assert restored.compute_output_shape((None, 3, 5, None)) == (None, 6, 3, None)
    with pytest.raises(ValueError, match=r"pads channels up to filters=2 but its input has 3 "
                                         r"channels \(channels_first input"):
        ZeroPadShortcut(filters=2, data_format="channels_first")(x)
    with pytest.raises(ValueError, match=r"data_format must be None or one of"):
        ZeroPadShortcut(filters=2, data_format="NHWC")


def test_channels_first_config_round_trip_under_the_channels_last_default():
    """The layout is saved with each layer (ZeroPadShortcut included), not read again from the
    global setting when the model is loaded."""
    model = ResNet(**KINDS["resnext_option_a"], data_format="channels_first")
    clone = keras.Model.from_config(model.get_config())
    _check_layout(clone, "channels_first")
    assert _weights(clone) == _weights(model)


def test_zero_pad_shortcut_defaults_to_the_global_data_format():
    assert ZeroPadShortcut(filters=4).data_format == "channels_last"
    keras.config.set_image_data_format("channels_first")
    assert ZeroPadShortcut(filters=4).get_config()["data_format"] == "channels_first"


def test_profile_and_model_table_read_channels_first_shapes():
    def build(name):
        return keras_resnets.get_model(name, data_format="channels_first")

    assert keras_resnets.model_table(["resnet20", "resnext29_8x64d"], build=build) == (
        keras_resnets.model_table(["resnet20", "resnext29_8x64d"]))


# Outputs ----------------------------------------------------------------------------------------

# Networks whose channels_first outputs must equal channels_last outputs on transposed inputs,
# in inference and training mode, covering every layer the layout reaches.
OUTPUT_CASES = {
    "option_a": dict(_CIFAR, shortcut="A"),
    "option_b_max_pool_stem": dict(stage_blocks=(1, 1), stage_widths=(8, 16), shortcut="B"),
    "option_c": dict(_CIFAR, shortcut="C", unit="relu_before_addition"),
    "grouped_conv": dict(stem="cifar", stage_blocks=(1, 1), block="bottleneck",
                         stage_widths=(8, 16), cardinality=4, bottleneck_width=32),
    "preactivation_keras_applications": KINDS["keras_applications_v2"],
    "feature_map": dict(_CIFAR, include_top=False, unit="relu_only_preactivation"),
    "max_pooling": dict(_CIFAR, include_top=False, pooling="max", shortcut="A"),
}

_COMPARE = r"""
import json, sys
import numpy as np
import keras, keras_resnets
from tests.keras_resnets.test_data_format import OUTPUT_CASES, compare_formats
print(json.dumps({name: compare_formats(kwargs) for name, kwargs in OUTPUT_CASES.items()}))
"""


def compare_formats(kwargs, seed=0):
    """Largest |channels_first - channels_last| relative to the output scale, per mode, with
    the same (randomised) weights; channels_first outputs are transposed back to compare."""
    rng = np.random.default_rng(seed)
    size = 64 if kwargs.get("stem", "imagenet") == "imagenet" else 32
    last = ResNet(**kwargs, data_format="channels_last", input_shape=(size, size, 3),
                  classifier_activation=None)
    last.set_weights([rng.uniform(0.5, 1.5, w.shape) if "variance" in w.path or "gamma" in w.path
                      else rng.normal(0.0, 0.5 / np.sqrt(np.prod(w.shape[:-1])), w.shape)
                      if len(w.shape) > 1 else rng.normal(0.0, 0.1, w.shape)
                      for w in last.weights])
    first = ResNet(**kwargs, data_format="channels_first", input_shape=(3, size, size),
                   classifier_activation=None)
    first.set_weights(last.get_weights())
    x = rng.normal(size=(3, size, size, 3)).astype("float32")
    errors = {}
    for mode in ("inference", "training"):
        expected = keras.ops.convert_to_numpy(last(x, training=mode == "training"))
        got = keras.ops.convert_to_numpy(first(x.transpose(0, 3, 1, 2),
                                               training=mode == "training"))
        if got.ndim == 4:
            got = got.transpose(0, 2, 3, 1)
        errors[mode] = float(np.abs(got - expected).max() / max(np.abs(expected).max(), 1e-6))
    return errors


def _run_on(backend, code):
    env = {**os.environ, "KERAS_BACKEND": backend}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_channels_first_outputs_equal_channels_last_on_torch():
    """PyTorch runs NCHW natively on CPU (TensorFlow's CPU kernels need oneDNN for it)."""
    pytest.importorskip("torch")
    errors = _run_on("torch", _COMPARE)
    assert set(errors) == set(OUTPUT_CASES)
    for name, by_mode in errors.items():
        for mode, error in by_mode.items():
            assert error < 1e-5, (name, mode, error)


_TORCHVISION_NCHW = r"""
import json, sys
import numpy as np, torch
import keras, keras_resnets
from keras_resnets import port
from bench import torch_resnets
errors = {}
for name, reference, model, size in [
    ("resnet20", torch_resnets.cifar_resnet(20), keras_resnets.ResNet20, 32),
    ("resnext50_32x4d", torch_resnets.resnet(50, groups=32, width_per_group=4),
     keras_resnets.ResNeXt50, 64),
]:
    reference.eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    target = model(input_shape=(3, size, size), classifier_activation=None,
                   data_format="channels_first")
    port.from_torchvision(reference.state_dict(), target)
    x = np.random.default_rng(0).normal(size=(2, 3, size, size)).astype("float32")
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    got = keras.ops.convert_to_numpy(target(x, training=False))
    errors[name] = float(np.abs(got - expected).max() / np.abs(expected).max())
print(json.dumps(errors))
"""


def test_torchvision_weights_port_into_channels_first_models():
    """Kernels are HWIO in both layouts: a channels_first model takes PyTorch's NCHW inputs."""
    pytest.importorskip("torch")
    errors = _run_on("torch", _TORCHVISION_NCHW)
    assert set(errors) == {"resnet20", "resnext50_32x4d"}
    assert max(errors.values()) < 1e-5, errors


def test_channels_first_outputs_on_tensorflow_where_its_cpu_runs_nchw():
    """TensorFlow runs NCHW convolutions and poolings on CPU only through oneDNN (its default on
    x86; `TF_ENABLE_ONEDNN_OPTS=0` turns it off and such models then fail with "The Conv2D op
    currently only supports the NHWC tensor format on the CPU"). This covers the TensorFlow
    paths of the package's layers (fused NCHW batch norm, native grouped convolution) where it
    can, and is skipped where the CPU lacks those kernels."""
    import tensorflow as tf

    try:
        tf.nn.conv2d(tf.zeros((1, 1, 2, 2)), tf.zeros((1, 1, 1, 1)), 1, "SAME",
                     data_format="NCHW")
        tf.nn.max_pool2d(tf.zeros((1, 1, 2, 2)), 1, 1, "SAME", data_format="NCHW")
    except (tf.errors.UnimplementedError, tf.errors.InvalidArgumentError):
        pytest.skip("this TensorFlow CPU build has no NCHW convolution or pooling kernels")
    for name in ("grouped_conv", "preactivation_keras_applications", "option_b_max_pool_stem"):
        errors = compare_formats(OUTPUT_CASES[name])
        assert max(errors.values()) < 1e-5, (name, errors)
