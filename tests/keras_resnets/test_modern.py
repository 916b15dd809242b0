"""Squeeze-and-excitation, ResNet-D, wide ResNets, dropout and stochastic depth (issue 14)."""

import os

import keras
import numpy as np
import pytest

import keras_resnets
from keras_resnets import builder, port, registry
from keras_resnets.blocks import se_channels
from tests.conftest import REPO_ROOT

# timm 1.0.31's `sum(p.numel() for p in model.parameters())`, computed on 2026-11-30 with
# timm.create_model(name). timm does not install here (it imports torchvision, whose wheels on
# this index need another torch than the CPU one), so the figures are pinned; torchvision's
# wide_resnet50_2 / wide_resnet101_2 report the same (68.9M / 126.9M in its model table).
TIMM_PARAMS = {
    "seresnet50": 28_088_024,
    "seresnet101": 49_326_872,
    "seresnet152": 66_821_848,
    "seresnext50_32x4d": 27_559_896,
    "seresnext101_32x4d": 48_955_416,
    "resnet50d": 25_576_264,
    "resnet101d": 44_568_392,
    "resnet152d": 60_212_040,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
}
NEW_BUILDERS = {
    "SEResNet50": "seresnet50", "SEResNet101": "seresnet101", "SEResNet152": "seresnet152",
    "SEResNeXt50": "seresnext50_32x4d", "SEResNeXt101": "seresnext101_32x4d",
    "ResNet50D": "resnet50d", "ResNet101D": "resnet101d", "ResNet152D": "resnet152d",
    "WideResNet50_2": "wide_resnet50_2", "WideResNet101_2": "wide_resnet101_2",
    "WRN28_10": "wrn28_10", "WRN16_8": "wrn16_8",
}
TINY = dict(depth=8, stem="cifar", stage_widths=(4, 8, 16))


def _same_weights(source, target):
    """`target` with the weights of `source`'s layers of the same names."""
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
    return target


def _cost(name, **overrides):
    return keras_resnets.architecture_cost(registry.architecture_of(name, **overrides))


@pytest.mark.parametrize("name", sorted(TIMM_PARAMS))
def test_trainable_params_equal_timm(name):
    assert _cost(name).trainable_params == TIMM_PARAMS[name]


def test_wrn_params_are_the_papers():
    # Zagoruyko and Komodakis 2016, Table 1 / Section 3: WRN-28-10 36.5M, WRN-16-8 11.0M.
    assert _cost("wrn28_10").trainable_params == 36_479_194
    assert _cost("wrn16_8").trainable_params == 10_961_370
    arch = registry.architecture_of("wrn28_10")
    assert arch.stage_blocks == (4, 4, 4) and arch.stage_widths == (160, 320, 640)
    assert arch.stem_width == 16 and arch.unit == "full_preactivation" and arch.shortcut == "B"


def test_new_named_builders_are_registered_one_liners():
    for public, name in NEW_BUILDERS.items():
        assert getattr(keras_resnets, public).__name__ == public
        assert name in keras_resnets.list_models() and public in keras_resnets.__all__
    assert keras_resnets.list_models("se*") == [
        "seresnet101", "seresnet152", "seresnet50", "seresnext101_32x4d", "seresnext50_32x4d"]
    assert registry.model_name("seresnet50", depth=101) == "seresnet101"
    assert registry.model_name("resnet50d", depth=152) == "resnet152d"
    assert registry.model_name("resnet50", se_ratio=1 / 16) == "seresnet50"
    assert registry.model_name("resnet50", se_ratio=0.25) == "seresnet50_seratio0.25"
    assert registry.model_name("resnet50", avg_down=True) == "resnet50_avgdown"
    assert registry.model_name("resnet50", stem="deep", avg_down=True) == "resnet50d"
    assert registry.model_name("resnet50", bottleneck_width=128) == "wide_resnet50_2"


def test_wide_resnet_generic_form():
    model = keras_resnets.WideResNet(depth=16, width=8, include_top=False, input_shape=(32, 32, 3))
    assert model.name == "wrn16_8" and model.output_shape == (None, 8, 8, 512)
    assert keras_resnets.profile(keras_resnets.WideResNet(depth=16, width=8)).trainable_params \
        == 10_961_370
    for depth in (27, 4, 16.0):
        with pytest.raises(ValueError, match=rf"depth must be 6n\+4 .*; got {depth!r}\."):
            keras_resnets.WideResNet(depth=depth)
    with pytest.raises(ValueError, match=r"width must be a positive integer; got 0\."):
        keras_resnets.WideResNet(depth=16, width=0)


# Squeeze-and-excitation ------------------------------------------------------------------------

def test_se_channels_follow_timms_rounding():
    assert [se_channels(c, 1 / 16) for c in (256, 512, 1024, 2048)] == [16, 32, 64, 128]
    assert se_channels(4, 1 / 16) == 8 and se_channels(100, 0.25) == 24


@pytest.mark.parametrize("unit", keras_resnets.UNITS)
def test_se_sits_after_the_branch_in_every_ordering(unit):
    model = keras_resnets.ResNet(**TINY, unit=unit, se_ratio=0.5, input_shape=(16, 16, 3))
    excite = model.get_layer("conv3_block1_se_excite")
    assert isinstance(excite, keras.layers.Multiply)
    assert excite.output.shape == (None, 8, 8, 8)
    reduce, expand = (model.get_layer(f"conv3_block1_se_{s}") for s in ("reduce", "expand"))
    assert reduce.kernel.shape == (1, 1, 8, 8) and expand.kernel.shape == (1, 1, 8, 8)
    assert reduce.use_bias and expand.activation is keras.activations.sigmoid
    # Each unit's SE: C -> 8 -> C 1x1 convolutions with biases (C = 4, 8, 16; 8 at least).
    plain = keras_resnets.ResNet(**TINY, unit=unit, input_shape=(16, 16, 3))
    assert model.count_params() - plain.count_params() == sum(
        (c * 8 + 8) + (8 * c + c) for c in (4, 8, 16))
    names = [layer.name for layer in model.layers]
    add = "conv3_block1_add" if "conv3_block1_add" in names else "conv3_block1_out"
    assert names.index("conv3_block1_se_excite") < names.index(add)


def test_se_scales_the_branch_by_the_sigmoid_of_its_mean():
    model = keras_resnets.ResNet(**TINY, se_ratio=0.5, input_shape=(16, 16, 3))
    probe = keras.Model(model.input, [model.get_layer("conv2_block1_2_bn").output,
                                      model.get_layer("conv2_block1_se_excite").output])
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    branch, excited = (np.asarray(t) for t in probe(x, training=False))
    reduce, expand = (model.get_layer(f"conv2_block1_se_{s}") for s in ("reduce", "expand"))
    (w1, b1), (w2, b2) = reduce.get_weights(), expand.get_weights()
    hidden = np.maximum(branch.mean(axis=(1, 2)) @ w1[0, 0] + b1, 0)
    scale = 1 / (1 + np.exp(-(hidden @ w2[0, 0] + b2)))
    np.testing.assert_allclose(excited, branch * scale[:, None, None, :], rtol=1e-5, atol=1e-6)


# ResNet-D ------------------------------------------------------------------------------------

def test_deep_stem_layers_and_shapes():
    model = keras_resnets.ResNet(depth=18, stem="deep", input_shape=(64, 64, 3),
                                 include_top=False)
    kernels = [(n, tuple(model.get_layer(n).kernel.shape), model.get_layer(n).strides)
               for n in ("conv1_1_conv", "conv1_2_conv", "conv1_3_conv")]
    assert kernels == [("conv1_1_conv", (3, 3, 3, 32), (2, 2)),
                       ("conv1_2_conv", (3, 3, 32, 32), (1, 1)),
                       ("conv1_3_conv", (3, 3, 32, 64), (1, 1))]
    assert model.get_layer("conv1_bn").output.shape == (None, 32, 32, 64)
    assert model.get_layer("pool1_pool").output.shape == (None, 16, 16, 64)
    assert "conv1_conv" not in [layer.name for layer in model.layers]


def test_avg_down_pools_strided_projections_only():
    model = keras_resnets.ResNet(stage_blocks=(1, 1, 1), block="bottleneck", stem="cifar",
                                 stage_widths=(4, 8, 16), avg_down=True, input_shape=(15, 15, 3))
    names = [layer.name for layer in model.layers]
    assert [n for n in names if n.endswith("_0_pool")] == ["conv3_block1_0_pool",
                                                           "conv4_block1_0_pool"]
    pool = model.get_layer("conv3_block1_0_pool")
    assert pool.pool_size == (2, 2) and pool.strides == (2, 2) and pool.padding == "same"
    assert pool.output.shape == (None, 8, 8, 16)  # 15 -> 8, as PyTorch's ceil_mode
    assert model.get_layer("conv3_block1_0_conv").strides == (1, 1)
    same_params = keras_resnets.ResNet(stage_blocks=(1, 1, 1), block="bottleneck", stem="cifar",
                                       stage_widths=(4, 8, 16), input_shape=(15, 15, 3))
    assert model.count_params() == same_params.count_params()
    # A unit that output_stride dilates keeps stride 1: its projection is an unpooled 1x1.
    dilated = keras_resnets.ResNet(stage_blocks=(1, 1, 1), block="bottleneck", stem="cifar",
                                   stage_widths=(4, 8, 16), avg_down=True, output_stride=2,
                                   input_shape=(16, 16, 3))
    assert [n for n in (layer.name for layer in dilated.layers) if n.endswith("_0_pool")] == [
        "conv3_block1_0_pool"]
    assert dilated.count_params() == model.count_params()


# Wide ResNets and dropout -------------------------------------------------------------------

def test_wide_bottleneck_doubles_the_3x3():
    arch = registry.architecture_of("wide_resnet50_2")
    assert arch.bottleneck_widths == (128, 256, 512, 1024) and arch.cardinality == 1


def test_dropout_layers_sit_between_convolutions_and_before_the_classifier():
    model = keras_resnets.ResNet(**TINY, block_dropout_rate=0.3, dropout_rate=0.5,
                                 unit="full_preactivation")
    names = [layer.name for layer in model.layers]
    dropouts = [n for n in names if n.endswith("dropout")]
    assert dropouts == ["conv2_block1_1_dropout", "conv3_block1_1_dropout",
                        "conv4_block1_1_dropout", "top_dropout"]
    assert names.index("conv2_block1_1_dropout") == names.index("conv2_block1_2_conv") - 1
    assert names[-2:] == ["top_dropout", "predictions"]
    assert model.get_layer("conv2_block1_1_dropout").rate == 0.3
    assert model.get_layer("top_dropout").rate == 0.5
    # Inference ignores dropout: the outputs equal those of the same weights without it.
    bare = _same_weights(model, keras_resnets.ResNet(**TINY, unit="full_preactivation"))
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(model(x, training=False), bare(x, training=False), rtol=1e-6)


# Stochastic depth ------------------------------------------------------------------------------

def test_drop_path_rates_rise_linearly_over_units():
    arch = keras_resnets.resolve_architecture(depth=20, stem="cifar")  # 9 units
    assert builder.unit_drop_path_rates(arch, 0.2) == pytest.approx(
        [0.2 * i / 8 for i in range(9)])
    model = keras_resnets.ResNet(depth=20, stem="cifar", drop_path_rate=0.2)
    rates = {layer.name: layer.rate for layer in model.layers if layer.name.endswith("drop_path")}
    assert "conv2_block1_drop_path" not in rates  # rate 0 in the first unit: no layer
    assert rates["conv4_block3_drop_path"] == pytest.approx(0.2)
    assert rates["conv3_block1_drop_path"] == pytest.approx(0.2 * 3 / 8)
    assert model.get_layer("conv4_block3_drop_path").noise_shape == (None, 1, 1, 1)


@pytest.mark.parametrize("unit", ["original", "full_preactivation"])
def test_drop_path_keeps_or_drops_each_samples_branch(unit):
    keras.utils.set_random_seed(3)
    model = keras_resnets.ResNet(**TINY, unit=unit, drop_path_rate=0.5, input_shape=(8, 8, 3))
    layer = model.get_layer("conv4_block1_drop_path")  # the last of three units: rate 0.5
    probe = keras.Model(model.input, [layer.input, layer.output])
    x = np.random.default_rng(0).normal(size=(64, 8, 8, 3)).astype("float32")
    branch, dropped = (np.asarray(t) for t in probe(x, training=True))
    kept = np.array([np.allclose(d, 2 * b, rtol=1e-5, atol=1e-6) for b, d in zip(branch, dropped)])
    zero = np.all(dropped == 0, axis=(1, 2, 3))
    assert np.all(kept ^ zero) and 10 < kept.sum() < 54  # each sample: all or nothing
    # Inference is the model without stochastic depth.
    bare = _same_weights(model, keras_resnets.ResNet(**TINY, unit=unit, input_shape=(8, 8, 3)))
    np.testing.assert_allclose(model(x, training=False), bare(x, training=False), rtol=1e-6)


def test_drop_path_is_seeded_by_keras_random_seed():
    outputs = []
    for _ in range(2):
        keras.utils.set_random_seed(7)
        model = keras_resnets.ResNet(**TINY, drop_path_rate=0.5, input_shape=(8, 8, 3),
                                     kernel_initializer="ones")
        x = np.ones((16, 8, 8, 3), "float32")
        outputs.append(np.asarray(model(x, training=True)))
    np.testing.assert_array_equal(*outputs)


# Arguments ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(se_ratio=0), r"se_ratio must be None or a number in \(0, 1\]; got 0\."),
    (dict(se_ratio=1.5), r"se_ratio must be None or a number in \(0, 1\]; got 1\.5\."),
    (dict(avg_down=True, shortcut="A"), r"avg_down=True pools before projection shortcuts"),
    (dict(drop_path_rate=1.0), r"drop_path_rate must be in \[0, 1\); got 1\.0\."),
    (dict(block_dropout_rate=-0.1), r"block_dropout_rate must be in \[0, 1\); got -0\.1\."),
    (dict(dropout_rate="0.2"), r"dropout_rate must be in \[0, 1\); got '0\.2'\."),
    (dict(drop_path_rate=0.1, plain=True), r"drop_path_rate=0\.1 needs shortcuts"),
])
def test_bad_options_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        keras_resnets.ResNet(**TINY, **kwargs)


# Serialisation, layouts, backends -------------------------------------------------------------

ALL_OPTIONS = dict(stage_blocks=(1, 1, 1), block="bottleneck", stem="cifar",
                   stage_widths=(4, 8, 16), se_ratio=0.25, avg_down=True, drop_path_rate=0.2,
                   block_dropout_rate=0.1, dropout_rate=0.1)


def test_architecture_cost_counts_every_option_as_profile_does():
    arch_options = {k: v for k, v in ALL_OPTIONS.items() if k in registry.ARCHITECTURE_ARGUMENTS}
    layer_options = {k: v for k, v in ALL_OPTIONS.items() if k not in arch_options}
    arch = keras_resnets.resolve_architecture(**arch_options)
    model = keras_resnets.ResNet(**ALL_OPTIONS, input_shape=(15, 15, 3))
    cost = keras_resnets.architecture_cost(arch, input_shape=(15, 15, 3), **layer_options)
    assert cost == keras_resnets.profile(model)


def test_keras_file_round_trip_with_every_option(tmp_path):
    model = keras_resnets.ResNet(**ALL_OPTIONS, input_shape=(16, 16, 3))
    path = os.path.join(tmp_path, "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x, training=False), model(x, training=False), rtol=1e-6)


def test_channels_first_equals_channels_last_with_every_option():
    last = keras_resnets.ResNet(**ALL_OPTIONS, input_shape=(15, 15, 3))
    first = keras_resnets.ResNet(**ALL_OPTIONS, input_shape=(3, 15, 15),
                                 data_format="channels_first")
    first.set_weights(last.get_weights())
    x = np.random.default_rng(0).normal(size=(2, 15, 15, 3)).astype("float32")
    try:
        got = first(x.transpose(0, 3, 1, 2), training=False)
    except Exception as error:  # TensorFlow's CPU kernels need oneDNN for NCHW
        pytest.skip(f"this TensorFlow CPU build cannot run NCHW: {type(error).__name__}")
    np.testing.assert_allclose(got, last(x, training=False), rtol=1e-5, atol=1e-6)


_ON_BACKEND = r"""
import json
import numpy as np
import keras, keras_resnets
options = dict(stage_blocks=(1, 1, 1), block="bottleneck", stem="cifar", stage_widths=(4, 8, 16),
               se_ratio=0.25, avg_down=True, drop_path_rate=0.2, block_dropout_rate=0.1,
               dropout_rate=0.1, input_shape=(16, 16, 3))
model = keras_resnets.ResNet(**options)
x = np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype("float32")
inference = keras.ops.convert_to_numpy(model(x, training=False))
training = keras.ops.convert_to_numpy(model(x, training=True))
print(json.dumps({"backend": keras.backend.backend(), "inference": inference.tolist(),
                  "finite": bool(np.isfinite(training).all())}))
"""


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_every_option_runs_on_other_backends(backend):
    pytest.importorskip(backend)
    import json
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _ON_BACKEND], cwd=REPO_ROOT, text=True,
                            env={**os.environ, "KERAS_BACKEND": backend},
                            capture_output=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == backend and report["finite"]
    assert np.asarray(report["inference"]).shape == (4, 10)


# Weight ports from timm's layout ---------------------------------------------------------------

torch = pytest.importorskip("torch")
from bench import torch_resnets  # noqa: E402  (needs torch)
from tests.keras_resnets.test_port import _torch_randomize  # noqa: E402

# (PyTorch reference in timm's layout, the keras_resnets twin): one unit per stage keeps them
# small; the odd input size checks the strided paddings and the ceil-mode average pooling.
TIMM_TWINS = {
    "seresnet_basic": (dict(depth=18, layers=(1, 1, 1, 1), se_ratio=1 / 16),
                       dict(stage_blocks=(1, 1, 1, 1), block="basic", se_ratio=1 / 16)),
    "seresnext_resnetd": (
        dict(depth=50, layers=(1, 1, 1, 1), groups=8, width_per_group=4, se_ratio=1 / 16,
             stem_type="deep", avg_down=True),
        dict(stage_blocks=(1, 1, 1, 1), block="bottleneck", cardinality=8, bottleneck_width=4,
             se_ratio=1 / 16, stem="deep", avg_down=True)),
    "wide_resnet": (dict(depth=50, layers=(1, 1, 1, 1), width_per_group=128),
                    dict(stage_blocks=(1, 1, 1, 1), block="bottleneck", bottleneck_width=128)),
}


@pytest.mark.parametrize("name", sorted(TIMM_TWINS))
def test_timm_layout_state_dicts_port_with_equal_outputs(name):
    torch_options, keras_options = TIMM_TWINS[name]
    reference = torch_resnets.resnet(**torch_options).eval()
    _torch_randomize(reference)
    state = {key: value.numpy() for key, value in reference.state_dict().items()}
    if name == "seresnext_resnetd":
        assert {"conv1.6.weight", "layer2.0.downsample.1.weight", "layer2.0.downsample.2.bias",
                "layer1.0.se.fc1.weight", "layer4.0.se.fc2.bias"} <= set(state)
    model = keras_resnets.ResNet(**keras_options, input_shape=(67, 67, 3),
                                 classifier_activation=None)
    port.from_torchvision(state, model)
    x = np.random.default_rng(2).normal(size=(2, 67, 67, 3)).astype("float32")
    with torch.no_grad():
        expected = reference(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    actual = np.asarray(model(x, training=False))
    assert np.abs(actual - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())


def test_timm_module_names_map_both_ways():
    assert port.torchvision_module("conv2_block1_se_expand") == "layer1.0.se.fc2"
    assert port.torchvision_module("conv1_3_conv") == "conv1.6"
    assert port.torchvision_module("conv4_block1_0_bn", avg_down=True) == "layer3.0.downsample.2"
    assert port._keras_layer_name("layer3.0.downsample.2", avg_down=True) == "conv4_block1_0_bn"
    assert port._keras_layer_name("layer3.0.downsample.1", avg_down=True) == "conv4_block1_0_conv"
    assert port._keras_layer_name("layer3.0.downsample.1") == "conv4_block1_0_bn"
    with pytest.raises(ValueError, match=r"Unexpected module 'layer3.0.downsample.2'"):
        port._keras_layer_name("layer3.0.downsample.2")
