"""Multi-scale feature outputs: `pyramid_outputs`, `feature_extractor` and `output_stride`."""

import ast
import pathlib
import re

import keras
import numpy as np
import pytest

import keras_resnets
from tests.conftest import REPO_ROOT

IMAGENET = {(f"P{k}", 224 // 2 ** k) for k in range(2, 6)}

PYRAMIDS = {  # level: (size at 224 px or 32 px, channels, the layer that computes it)
    "resnet18": {"P2": (56, 64, "conv2_block2_out"), "P3": (28, 128, "conv3_block2_out"),
                 "P4": (14, 256, "conv4_block2_out"), "P5": (7, 512, "conv5_block2_out")},
    "resnet50": {"P2": (56, 256, "conv2_block3_out"), "P3": (28, 512, "conv3_block4_out"),
                 "P4": (14, 1024, "conv4_block6_out"), "P5": (7, 2048, "conv5_block3_out")},
    "resnet101": {"P2": (56, 256, "conv2_block3_out"), "P3": (28, 512, "conv3_block4_out"),
                  "P4": (14, 1024, "conv4_block23_out"), "P5": (7, 2048, "conv5_block3_out")},
    "resnext50_32x4d": {"P2": (56, 256, "conv2_block3_out"), "P3": (28, 512, "conv3_block4_out"),
                        "P4": (14, 1024, "conv4_block6_out"),
                        "P5": (7, 2048, "conv5_block3_out")},
    # Pre-activation: the deepest level after the closing batch norm and activation.
    "resnet50v2": {"P2": (56, 256, "conv2_block3_out"), "P3": (28, 512, "conv3_block4_out"),
                   "P4": (14, 1024, "conv4_block6_out"), "P5": (7, 2048, "post_relu")},
    "resnet20": {"P0": (32, 16, "conv2_block3_out"), "P1": (16, 32, "conv3_block3_out"),
                 "P2": (8, 64, "conv4_block3_out")},
    "preact_resnet164": {"P0": (32, 64, "conv2_block18_out"), "P1": (16, 128, "conv3_block18_out"),
                         "P2": (8, 256, "post_relu")},
}


@pytest.mark.parametrize("name", sorted(PYRAMIDS))
def test_pyramid_levels_have_the_stage_shapes(name):
    expected = PYRAMIDS[name]
    image = 32 if "P0" in expected else 224
    model = keras_resnets.get_model(name, include_top=False, input_shape=(image, image, 3))
    assert list(model.pyramid_outputs) == list(expected)
    for level, (size, channels, layer) in expected.items():
        tensor = model.pyramid_outputs[level]
        assert tuple(tensor.shape) == (None, size, size, channels), level
        assert tensor is model.get_layer(layer).output, level


def test_keras_applications_v2_layout_takes_the_last_map_of_each_stride():
    # keras.applications' ResNetV2 strides in the last unit of a stage: the stride-4 map is the
    # output of the unit before it.
    model = keras_resnets.ResNet50V2(include_top=False, input_shape=(224, 224, 3),
                                     layer_config="keras_applications")
    layers = {"P2": "conv2_block2_out", "P3": "conv3_block3_out", "P4": "conv4_block5_out",
              "P5": "post_relu"}
    for level, layer in layers.items():
        assert model.pyramid_outputs[level] is model.get_layer(layer).output
    assert {(k, v.shape[1]) for k, v in model.pyramid_outputs.items()} == IMAGENET


def test_feature_extractor_returns_the_levels_with_the_models_weights():
    model = keras_resnets.ResNet20(include_top=False, input_shape=(32, 32, 3))
    features = keras_resnets.feature_extractor(model, levels=("P2", "P1"))
    assert features.name == "resnet20_features"
    assert features.count_params() == model.count_params()
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    outputs = features(x)
    assert list(outputs) == ["P2", "P1"]
    assert outputs["P1"].shape == (2, 16, 16, 32)
    np.testing.assert_allclose(np.asarray(outputs["P2"]), np.asarray(model(x)), rtol=0, atol=0)
    everything = keras_resnets.feature_extractor(model)
    assert list(everything.output) == ["P0", "P1", "P2"]


def test_feature_extractor_errors_name_the_problem(tmp_path):
    model = keras_resnets.ResNet20()
    with pytest.raises(ValueError, match=r"levels must be names among \['P0', 'P1', 'P2'\]; "
                                         r"got \['P5'\]\."):
        keras_resnets.feature_extractor(model, levels=["P5"])
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    with pytest.raises(ValueError, match="model 'resnet20' has no pyramid_outputs"):
        keras_resnets.feature_extractor(loaded)


@pytest.mark.parametrize("output_stride, sizes", [
    (32, {"P2": 56, "P3": 28, "P4": 14, "P5": 7}),
    (16, {"P2": 56, "P3": 28, "P4": 14, "P5": 14}),
    (8, {"P2": 56, "P3": 28, "P4": 28, "P5": 28}),
])
def test_output_stride_dilates_the_last_stages_with_the_same_parameters(output_stride, sizes):
    model = keras_resnets.ResNet50(include_top=False, input_shape=(224, 224, 3),
                                   output_stride=output_stride)
    assert {k: v.shape[1] for k, v in model.pyramid_outputs.items()} == sizes
    assert model.count_params() == 23_561_152  # keras.applications' ResNet50(include_top=False)
    dilations = {layer.name: layer.dilation_rate for layer in model.layers
                 if layer.name.endswith("_2_conv")}
    if output_stride == 8:  # torchvision: the first unit of a dilated stage keeps the old rate
        assert dilations["conv4_block1_2_conv"] == (1, 1)
        assert dilations["conv4_block2_2_conv"] == (2, 2)
        assert dilations["conv5_block1_2_conv"] == (2, 2)
        assert dilations["conv5_block3_2_conv"] == (4, 4)


def test_output_stride_must_be_a_resolution_the_stages_reach():
    with pytest.raises(ValueError, match=r"output_stride must be one of \[4, 8, 16, 32\]; got 12"):
        keras_resnets.ResNet18(output_stride=12)
    with pytest.raises(ValueError, match=r"output_stride must be one of \[1, 2, 4\]; got 8"):
        keras_resnets.ResNet20(output_stride=8)
    model = keras_resnets.ResNet20(include_top=False, input_shape=(32, 32, 3), output_stride=2)
    assert [v.shape[1] for v in model.pyramid_outputs.values()] == [32, 16, 16]


def test_weights_of_an_undilated_model_load_into_a_dilated_one(tmp_path):
    source = keras_resnets.ResNet50(include_top=False, input_shape=(64, 64, 3))
    path = str(tmp_path / "resnet50.weights.h5")
    source.save_weights(path)
    dilated = keras_resnets.ResNet50(include_top=False, input_shape=(64, 64, 3),
                                     output_stride=8, weights=path)
    for ours, theirs in zip(dilated.weights, source.weights):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    assert dilated.output_shape == (None, 8, 8, 2048)


def test_a_dilated_model_survives_saving(tmp_path):
    model = keras_resnets.ResNeXt50(include_top=False, input_shape=(33, 33, 3), output_stride=16)
    path = str(tmp_path / "dilated.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.random.default_rng(0).normal(size=(1, 33, 33, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(model(x)), atol=1e-5)


def test_the_readmes_backbone_example_prints_what_it_says():
    readme = pathlib.Path(REPO_ROOT, "README.md").read_text()
    block = re.search(r"## Use as a backbone\n.*?```python\n(.*?)```", readme, re.S).group(1)
    *code, expression, comment = block.strip().splitlines()
    namespace = {"keras_resnets": keras_resnets}
    exec("\n".join(code), namespace)
    assert eval(expression, namespace) == ast.literal_eval(comment.lstrip("# "))


torch = pytest.importorskip("torch")
from bench import torch_resnets  # noqa: E402  (needs torch)
from tests.keras_resnets.test_port import _torch_randomize  # noqa: E402


@pytest.mark.parametrize("depth, groups, width, output_stride, dilate", [
    (50, 1, 64, 8, (False, True, True)),  # torchvision's DeepLabV3 / FCN backbone
    (50, 32, 4, 16, (False, False, True)),  # ResNeXt-50 32x4d, DeepLabV3+ style
    (18, 1, 64, 8, (False, True, True)),
])
def test_dilated_levels_equal_torchvisions_replace_stride_with_dilation(
        depth, groups, width, output_stride, dilate):
    reference = torch_resnets.resnet(depth, groups=groups, width_per_group=width,
                                     replace_stride_with_dilation=dilate).eval()
    _torch_randomize(reference)
    size = 49
    model = keras_resnets.ResNet(depth, cardinality=groups,
                                 bottleneck_width=width if groups > 1 else None,
                                 input_shape=(size, size, 3), output_stride=output_stride,
                                 classifier_activation=None)
    state = {key: value.numpy() for key, value in reference.state_dict().items()}
    keras_resnets.port.from_torchvision(state, model)
    features = keras_resnets.feature_extractor(model)
    x = np.random.default_rng(3).normal(size=(2, size, size, 3)).astype("float32")
    with torch.no_grad():
        expected = [t.numpy().transpose(0, 2, 3, 1)
                    for t in reference.features(torch.from_numpy(x.transpose(0, 3, 1, 2)))]
    actual = features(x)
    for level, want in zip(("P2", "P3", "P4", "P5"), expected):
        got = np.asarray(actual[level])
        assert got.shape == want.shape, level
        assert np.abs(got - want).max() < 1e-4 * max(1.0, np.abs(want).max()), level

