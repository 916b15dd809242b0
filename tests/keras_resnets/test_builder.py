"""ResNet(...) arguments: keras.applications behaviour, architecture, layer settings, errors."""

import inspect
import re

import keras
import numpy as np
import pytest

import keras_resnets
from keras_resnets import LayerConfig, ResNet, registry, specs


def _tiny(**kwargs):
    """A small CIFAR network for fast tests (ResNet-8 layout, widths 4-16)."""
    return ResNet(**{"depth": 8, "stem": "cifar", "stage_widths": (4, 8, 16), **kwargs})


def _batch(model, n=2, seed=0):
    shape = [n] + [32 if d is None else d for d in model.input_shape[1:]]
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _layer_names(model, prefix):
    return [layer.name for layer in model.layers if layer.name.startswith(prefix)]


# keras.applications behaviour --------------------------------------------------------------

def test_include_top_false_gives_feature_maps_of_any_size():
    model = keras_resnets.ResNet50(include_top=False)
    assert model.input_shape == (None, None, None, 3)
    assert model.output_shape == (None, None, None, 2048)
    assert model(np.zeros((1, 64, 96, 3), "float32")).shape == (1, 2, 3, 2048)


@pytest.mark.parametrize("pooling, layer", [("avg", "avg_pool"), ("max", "max_pool")])
def test_pooling(pooling, layer):
    model = keras_resnets.ResNet20(include_top=False, pooling=pooling)
    assert model.output_shape == (None, 64)
    assert model.layers[-1].name == layer


def test_input_tensor_keeps_the_source_inputs():
    image = keras.Input((40, 40, 3))
    rescaled = keras.layers.Rescaling(1 / 255.0)(image)
    model = keras_resnets.ResNet20(input_tensor=rescaled)
    assert model.inputs[0] is image
    assert model.output_shape == (None, 10)


def test_input_shape_and_classes():
    model = keras_resnets.ResNet18(input_shape=(64, 48, 1), classes=5)
    assert model.input_shape == (None, 64, 48, 1) and model.output_shape == (None, 5)


def test_classifier_activation_none_gives_logits():
    model = _tiny(classifier_activation=None)
    logits = np.asarray(model(_batch(model), training=False))
    assert not np.allclose(logits.sum(axis=1), 1.0)
    softmax = _tiny(classifier_activation="softmax")
    softmax.set_weights(model.get_weights())
    np.testing.assert_allclose(softmax(_batch(model), training=False),
                               keras.ops.softmax(logits), atol=1e-6)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_classifier_is_float32(policy):
    keras.config.set_dtype_policy(policy)
    model = _tiny()
    assert model.get_layer("conv1_conv").compute_dtype == policy.split("_")[1]
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert model(_batch(model), training=False).dtype == "float32"


def test_weights_file_round_trip(tmp_path):
    path = str(tmp_path / "tiny.weights.h5")
    model = _tiny()
    model.save_weights(path)
    reloaded = _tiny(weights=path)
    np.testing.assert_array_equal(model(_batch(model), training=False),
                                  reloaded(_batch(model), training=False))


def test_weights_with_other_class_count_names_classes(tmp_path):
    path = str(tmp_path / "tiny.weights.h5")
    _tiny().save_weights(path)
    with pytest.raises(ValueError, match=r"does not fit model .* classes=100"):
        _tiny(classes=100, weights=path)


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"nope.weights.h5': no such file"):
        _tiny(weights=str(tmp_path / "nope.weights.h5"))
    with pytest.raises(ValueError, match=r"weights='imagenet' is not a file, and model 'resnet' "
                                         r"has no published weights.*keras_resnets.port"):
        _tiny(weights="imagenet")
    with pytest.raises(ValueError, match=r"weights must be None, a tag or the path"):
        _tiny(weights=3)


# Architecture options ------------------------------------------------------------------------

UNIT_LAYERS = {
    # conv2_block2 of a basic network: the identity unit of each ordering, in graph order.
    "original": ["1_conv", "1_bn", "1_relu", "2_conv", "2_bn", "add", "out"],
    "bn_after_addition": ["1_conv", "1_bn", "1_relu", "2_conv", "add", "post_bn", "out"],
    "relu_before_addition": ["1_conv", "1_bn", "1_relu", "2_conv", "2_bn", "2_relu", "out"],
    "relu_only_preactivation": ["preact_relu", "1_conv", "1_bn", "1_relu", "2_conv", "2_bn",
                                "out"],
    "full_preactivation": ["preact_bn", "preact_relu", "1_conv", "1_bn", "1_relu", "2_conv",
                           "out"],
}


@pytest.mark.parametrize("unit", sorted(UNIT_LAYERS))
def test_unit_orderings_place_bn_and_relu_as_in_figure_4(unit):
    model = ResNet(depth=14, stem="cifar", stage_widths=(4, 8, 16), unit=unit)
    names = _layer_names(model, "conv2_block2_")
    assert names == [f"conv2_block2_{suffix}" for suffix in UNIT_LAYERS[unit]]
    preactivation = unit in ("relu_only_preactivation", "full_preactivation")
    assert ("conv1_bn" in [layer.name for layer in model.layers]) is not preactivation
    assert (model.layers[-3].name.startswith("post_")) is preactivation


def test_bottleneck_unit_layers_and_projection():
    model = ResNet(stage_blocks=(2, 1), block="bottleneck", stem="cifar", stage_widths=(4, 8))
    assert sorted(_layer_names(model, "conv2_block1_")) == sorted([
        "conv2_block1_1_conv", "conv2_block1_1_bn", "conv2_block1_1_relu",
        "conv2_block1_2_conv", "conv2_block1_2_bn", "conv2_block1_2_relu",
        "conv2_block1_3_conv", "conv2_block1_3_bn",
        "conv2_block1_0_conv", "conv2_block1_0_bn", "conv2_block1_add", "conv2_block1_out"])
    assert model.get_layer("conv2_block1_3_conv").filters == 16
    assert model.output_shape == (None, 10)


def _trainable(model):
    return keras_resnets.profile(model).trainable_params


def test_shortcut_options_parameter_counts():
    a, b, c = (_trainable(ResNet(20, stem="cifar", shortcut=s)) for s in "ABC")
    assert a == 269_722
    # B: 1x1 projection + BN where the width doubles (16->32, 32->64).
    assert b - a == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    # C: a projection in all nine units.
    widths = [(16, 16)] * 3 + [(16, 32)] + [(32, 32)] * 2 + [(32, 64)] + [(64, 64)] * 2
    assert c - a == sum(i * o + 2 * o for i, o in widths)


def test_option_a_shortcut_is_parameter_free_zero_padding():
    model = keras_resnets.ResNet20()
    shortcut = model.get_layer("conv3_block1_0_pad")
    assert isinstance(shortcut, keras_resnets.ZeroPadShortcut) and not shortcut.weights
    assert shortcut.output.shape == (None, 16, 16, 32)


def test_plain_networks_have_no_additions():
    plain = keras_resnets.Plain20()
    assert not [layer for layer in plain.layers if isinstance(layer, keras.layers.Add)]
    assert _trainable(plain) == _trainable(keras_resnets.ResNet20())
    assert keras_resnets.get_model("plain56").count_params() == (
        keras_resnets.ResNet56().count_params())


@pytest.mark.parametrize("stride_in, strides", [("3x3", [1, 2]), ("1x1", [2, 1])])
def test_stride_placement(stride_in, strides):
    model = keras_resnets.ResNet50(stride_in=stride_in, include_top=False)
    assert [model.get_layer(f"conv3_block1_{i}_conv").strides[0] for i in (1, 2)] == strides
    assert model.get_layer("conv3_block1_0_conv").strides == (2, 2)
    assert model.output_shape == (None, None, None, 2048)


def test_downsample_in_last_block_moves_the_stride():
    model = ResNet(depth=50, downsample_block="last", include_top=False, input_shape=(64, 64, 3))
    assert model.get_layer("conv2_block3_2_conv").strides == (2, 2)
    assert model.get_layer("conv3_block1_2_conv").strides == (1, 1)
    assert model.get_layer("conv5_block3_2_conv").strides == (1, 1)
    assert model.output_shape == (None, 2, 2, 2048)


def test_strided_convolutions_pad_symmetrically():
    model = keras_resnets.ResNet20()
    pad = model.get_layer("conv3_block1_1_pad")
    assert pad.padding == ((1, 1), (1, 1))
    assert model.get_layer("conv3_block1_1_conv").padding == "valid"
    assert model.get_layer("conv3_block1_2_conv").padding == "same"


def test_width_multiplier_scales_stages_not_the_stem():
    model = ResNet(depth=20, stem="cifar", width_multiplier=2)
    assert model.get_layer("conv1_conv").filters == 16
    assert [model.get_layer(f"conv{s}_block1_1_conv").filters for s in (2, 3, 4)] == [32, 64, 128]


def test_resnext_grouped_convolution():
    model = keras_resnets.ResNeXt50(include_top=False)
    conv = model.get_layer("conv2_block1_2_conv")
    assert (conv.groups, conv.filters) == (32, 128)
    assert model.get_layer("conv5_block1_2_conv").filters == 1024
    cifar = keras_resnets.ResNeXt29(include_top=False)
    assert (cifar.get_layer("conv2_block1_2_conv").filters, cifar.output_shape[-1]) == (512, 1024)


def test_cardinality_without_bottleneck_width_keeps_the_stage_width():
    model = ResNet(stage_blocks=(1, 1), block="bottleneck", stem="cifar", stage_widths=(8, 16),
                   cardinality=4)
    assert [model.get_layer(f"conv{s}_block1_2_conv").filters for s in (2, 3)] == [8, 16]
    assert model.get_layer("conv2_block1_2_conv").groups == 4


def test_imagenet_depth_table():
    assert keras_resnets.resolve_architecture(depth=200).stage_blocks == (3, 24, 36, 3)
    assert keras_resnets.resolve_architecture(depth=34).block == "basic"
    arch = keras_resnets.resolve_architecture(depth=164, stem="cifar", block="bottleneck")
    assert arch.stage_blocks == (18, 18, 18)


# Layer settings ------------------------------------------------------------------------------

def test_layer_options_reach_every_layer():
    model = _tiny(bn_momentum=0.5, bn_epsilon=1e-3, activation="swish",
                  kernel_initializer="glorot_uniform")
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(bn.momentum == 0.5 and bn.epsilon == 1e-3 for bn in bns)
    activations = [layer for layer in model.layers if isinstance(layer, keras.layers.Activation)]
    assert activations and all(a.activation.__name__ == "silu" for a in activations)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert all(type(c.kernel_initializer).__name__ == "GlorotUniform" for c in convs)


def test_layer_config_object_and_options_combine():
    config = LayerConfig(bn_momentum=0.7, bn_epsilon=1e-4)
    model = _tiny(layer_config=config, bn_momentum=0.8)
    bn = model.get_layer("conv1_bn")
    assert (bn.momentum, bn.epsilon) == (0.8, 1e-4)


_TINY_CONVS = {"conv1_conv", "conv2_block1_1_conv", "conv2_block1_2_conv"} | {
    f"conv{stage}_block1_{index}_conv" for stage in (3, 4) for index in (0, 1, 2)}
_TINY_CONVS_WITHOUT_BN_AFTER = {"conv1_conv"} | {
    f"conv{stage}_block1_{index}_conv" for stage in (3, 4) for index in (0, 2)} | {
    "conv2_block1_2_conv"}


@pytest.mark.parametrize("use_bias, biased", [
    (False, set()), (True, _TINY_CONVS), ("auto", _TINY_CONVS_WITHOUT_BN_AFTER)])
def test_use_bias(use_bias, biased):
    # Full pre-activation: the projections and last convolutions feed an addition, not a BN.
    model = _tiny(use_bias=use_bias, unit="full_preactivation", shortcut="B")
    convs = {layer.name: layer.use_bias for layer in model.layers
             if isinstance(layer, keras.layers.Conv2D)}
    assert set(convs) == _TINY_CONVS
    assert {name for name, bias in convs.items() if bias} == biased


def test_kernel_regularizer_float_is_l2_on_every_kernel():
    model = _tiny(kernel_regularizer=1e-4)
    kernels = [layer for layer in model.layers
               if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    assert len(model.losses) == len(kernels)
    expected = sum(1e-4 * float(np.sum(np.square(layer.kernel.numpy()))) for layer in kernels)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)


def test_zero_init_residual_zeroes_the_end_of_each_branch():
    model = _tiny(zero_init_residual=True)
    assert not np.any(model.get_layer("conv2_block1_2_bn").gamma.numpy())
    assert np.all(model.get_layer("conv2_block1_1_bn").gamma.numpy() == 1)
    # With option A and identity BN statistics every unit starts as relu(shortcut).
    probe = keras.Model(model.input, [model.get_layer("conv1_relu").output,
                                      model.get_layer("conv2_block1_out").output])
    stem, unit = probe(_batch(model), training=False)
    np.testing.assert_allclose(unit, stem, atol=1e-6)
    preact = _tiny(zero_init_residual=True, unit="full_preactivation")
    assert not np.any(preact.get_layer("conv2_block1_2_conv").kernel.numpy())


def test_overrides_by_layer_name():
    model = _tiny(overrides={"*_bn": {"momentum": 0.42}, "predictions": {"use_bias": False}})
    assert model.get_layer("conv3_block1_2_bn").momentum == 0.42
    assert not model.get_layer("predictions").use_bias
    with pytest.raises(ValueError, match=r"overrides pattern\(s\) \['conv9\*'\] matched no layer"):
        _tiny(overrides={"conv9*": {"momentum": 0.5}})
    with pytest.raises(ValueError, match=r"Invalid arguments for layer 'conv1_bn'"):
        _tiny(overrides={"conv1_bn": {"no_such_argument": 1}})


# Errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(depth=21, stem="cifar"), r"depth=21 is invalid for block='basic'.*6n\+2 \(8, 14, 20"),
    (dict(depth=57, stem="cifar", block="bottleneck"), r"depth=57 .*9n\+2 \(11, 20, 29"),
    (dict(depth=51), r"depth=51 is not an ImageNet depth.*'bottleneck': \[26, 50, 101"),
    (dict(depth=50, block="basic"), r"depth=50 is not an ImageNet depth"),
    (dict(depth=29, stem="cifar", block="bottleneck", cardinality=3),
     r"cardinality=3 does not divide the bottleneck width 16 of stage conv2"),
    (dict(depth=29, stem="cifar", block="bottleneck", cardinality=8, bottleneck_width=6),
     r"bottleneck_width=6 gives a fractional group width"),
    (dict(depth=20, stem="cifar", cardinality=2), r"cardinality and bottleneck_width need "
                                                   r"block='bottleneck'"),
    (dict(depth=20, stem="cifar", unit="preact"), r"unit must be one of \['original', "),
    (dict(depth=20, stem="cifar", shortcut="D"), r"shortcut must be one of \['A', 'B', 'C'\]"),
    (dict(depth=20, stem="mnist"), r"stem must be one of \['imagenet', 'cifar', 'deep'\]"),
    (dict(depth=20, stem="cifar", block="wide"), r"block must be one of \['basic', 'bottleneck'\]"),
    (dict(stem="cifar"), r"Pass exactly one of depth and stage_blocks"),
    (dict(depth=20, stage_blocks=(3, 3, 3), stem="cifar"), r"Pass exactly one of depth"),
    (dict(stage_blocks=(2, 2), stem="cifar"), r"stage_blocks has 2 stages but stage_widths has 3"),
    (dict(stage_blocks=(2, 0, 2), stem="cifar"), r"stage_blocks entries must be a positive"),
    (dict(depth=20, stem="cifar", width_multiplier=0), r"width_multiplier must be a positive"),
    (dict(depth=20, stem="cifar", pooling="mean"),
     r"pooling must be one of \[None, 'avg', 'max'\]"),
    (dict(depth=20, stem="cifar", classes=0), r"classes must be a positive integer"),
    (dict(depth=20, stem="cifar", input_shape=(32, 32)), r"input_shape must be \(height, width, "),
    (dict(depth=20, stem="cifar", stride_in="2x2"), r"stride_in must be one of \['1x1', '3x3'\]"),
    (dict(depth=20, stem="cifar", use_bias="yes"), r"use_bias must be True, False or 'auto'"),
    (dict(depth=20, stem="cifar", bn_momentum=1.5), r"bn_momentum must be in \[0, 1\)"),
    (dict(depth=20, stem="cifar", layer_config="timm"), r"layer_config must be one of \["),
    (dict(depth=20, stem="cifar", layer_classes={"norm": keras.layers.BatchNormalization}),
     r"layer_classes must map roles among \['conv', 'grouped_conv', 'batch_norm', "
     r"'zero_pad_shortcut'\] to keras.layers.Layer subclasses; got \{'norm': "),
    (dict(depth=20, stem="cifar", layer_classes={"conv": "Conv2D"}),
     r"layer_classes must map roles .*; got \{'conv': 'Conv2D'\}\."),
])
def test_bad_arguments_raise_value_errors_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResNet(**kwargs)


def test_resolve_architecture_takes_keywords_only():
    with pytest.raises(TypeError, match="positional argument"):
        keras_resnets.resolve_architecture(20, None, None, "cifar")


def test_unknown_layer_option_lists_the_valid_ones():
    with pytest.raises(TypeError, match=r"Unknown layer option\(s\) \['bn_mom'\]; valid options"):
        _tiny(bn_mom=0.9)


def test_option_a_cannot_reduce_channels():
    with pytest.raises(ValueError, match=r"pads channels up to filters=8 but its input has 16"):
        ResNet(stage_blocks=(1, 1), stem="cifar", stage_widths=(16, 8), shortcut="A")


# One vocabulary: the architecture arguments and the block kinds are defined once ------------

def test_resnet_signature_is_the_architecture_arguments_then_its_own():
    parameters = inspect.signature(ResNet).parameters
    names = list(parameters)
    assert names[:13] == list(registry.ARCHITECTURE_ARGUMENTS) == [
        "depth", "stage_blocks", "block", "stem", "stage_widths", "width_multiplier",
        "cardinality", "bottleneck_width", "unit", "shortcut", "plain", "se_ratio", "avg_down"]
    assert names[13:] == ["include_top", "weights", "input_tensor", "input_shape", "pooling",
                          "classes", "classifier_activation", "name", "data_format",
                          "output_stride", "layer_config", "layer_options"]
    assert parameters["depth"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert parameters["unit"].kind is inspect.Parameter.KEYWORD_ONLY
    assert parameters["unit"].default == "original" and parameters["shortcut"].default == "B"
    # The docstring documents every argument, in the signature's order.
    documented = re.findall(r"^        (\*{0,2}\w+): ", ResNet.__doc__, re.M)
    assert documented == names[:-1] + ["**layer_options"]


def test_a_new_block_kind_is_one_row_of_the_table(monkeypatch):
    # Three 3x3 convolutions per block, 2x wider output: depth 9n+2 with the cifar stem.
    triple = specs.BlockKind("triple", kernel_sizes=(3, 3, 3), expansion=2, aggregated=False,
                             imagenet_depths={})
    monkeypatch.setitem(specs.BLOCK_KINDS, "triple", triple)
    model = _tiny(depth=11, block="triple", stage_widths=(4, 8, 16), shortcut="B")
    assert sorted(la.name for la in model.layers if la.name.startswith("conv2_block1_")
                  and la.name.endswith("_conv")) == [f"conv2_block1_{i}_conv" for i in range(4)]
    assert model.get_layer("conv2_block1_3_conv").filters == 8
    assert model.get_layer("conv4_block1_3_conv").filters == 32
    assert model.output_shape == (None, 10)
    arch = keras_resnets.resolve_architecture(depth=11, block="triple", stem="cifar",
                                              stage_widths=(4, 8, 16))
    assert arch.stage_blocks == (1, 1, 1) and arch.depth == 11
    assert keras_resnets.architecture_cost(arch) == keras_resnets.profile(model)
    with pytest.raises(ValueError, match=r"depth=12 is invalid for block='triple' with the "
                                         r"cifar stem: expected 9n\+2"):
        keras_resnets.resolve_architecture(depth=12, block="triple", stem="cifar")


class _CountingConv(keras.layers.Conv2D):
    """keras.layers.Conv2D under another class, to see where the builder uses it."""


def test_layer_classes_replace_the_packages_layers_by_role():
    model = _tiny(block="bottleneck", depth=11, cardinality=2, layer_classes={
        "conv": _CountingConv, "batch_norm": keras.layers.BatchNormalization})
    kinds = {type(layer) for layer in model.layers}
    assert _CountingConv in kinds and keras.layers.BatchNormalization in kinds
    assert keras_resnets.FusedBatchNormalization not in kinds
    grouped = [la for la in model.layers if getattr(la, "groups", 1) > 1]
    assert grouped and all(type(la) is keras_resnets.GroupedConv2D for la in grouped)
    assert all(type(la) is _CountingConv for la in model.layers
               if isinstance(la, keras.layers.Conv2D) and la.groups == 1)
    reference = _tiny(block="bottleneck", depth=11, cardinality=2)
    assert [la.name for la in model.layers[1:]] == [la.name for la in reference.layers[1:]]
    assert model.count_params() == reference.count_params()
