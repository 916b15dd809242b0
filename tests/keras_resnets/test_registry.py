"""Every registered model against the papers' and torchvision's parameter and FLOP figures.

Each registered model is built once, by the test that runs it and checks `architecture_cost`
against its profile; the figure tests then count with `architecture_cost`, which builds nothing.
(A session-wide cache of every built model held 8 GB in one pytest worker.)
"""

import numpy as np
import pytest

import keras_resnets
from keras_resnets import registry

# torchvision's exact trainable-parameter counts (running statistics are buffers there).
TORCHVISION_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "resnext101_64x4d": 83_455_272,
}
# timm's exact counts for the models torchvision lacks.
TIMM_PARAMS = {"resnext101_32x4d": 44_177_704, "resnet200": 64_673_832}

# Published figures in millions, at the papers' precision. He et al. 2015 counts every trainable
# weight; He et al. 2016 and Xie et al. 2016 count convolution and classifier weights only
# (their ResNet-1001 and ResNeXt-29 16x64d figures hold only without batch-norm parameters).
PAPER_PARAMS_ALL = {
    "resnet20": 0.27, "resnet32": 0.46, "resnet44": 0.66, "resnet56": 0.85, "resnet110": 1.7,
    "resnet1202": 19.4,
}
PAPER_PARAMS_NO_BN = {
    "preact_resnet110": 1.7, "preact_resnet164": 1.7, "preact_resnet1001": 10.2,
    "resnext29_8x64d": 34.4, "resnext29_16x64d": 68.1,
}
# Multiply-adds at 224x224 in billions (He et al. 2015 Table 1; Xie et al. 2016 Table 1, 5).
PAPER_GMACS = {"resnet50": 4.1, "resnext50_32x4d": 4.2, "resnext101_64x4d": 15.5}


def _cifar_resnet_params(n, classes=10):
    """Closed form for the option-A CIFAR ResNet with n basic blocks per stage."""
    total = 3 * 9 * 16 + 2 * 16  # conv1 + bn
    in_width = 16
    for width in (16, 32, 64):
        for _ in range(n):
            total += 9 * in_width * width + 9 * width * width + 4 * width
            in_width = width
    return total + 64 * classes + classes


def _cost(name):
    """What `profile(get_model(name))` counts (checked for every model below), without a build."""
    return keras_resnets.architecture_cost(registry.architecture_of(name))


def _params_without_bn(model):
    return sum(int(np.prod(w.shape)) for layer in model.layers for w in layer.trainable_weights
               if not layer.name.endswith("_bn"))


@pytest.mark.parametrize("name", sorted({**TORCHVISION_PARAMS, **TIMM_PARAMS}))
def test_imagenet_params_equal_torchvision_and_timm(name):
    expected = {**TORCHVISION_PARAMS, **TIMM_PARAMS}[name]
    assert _cost(name).trainable_params == expected


@pytest.mark.parametrize("depth", [20, 32, 44, 56, 110, 1202])
def test_cifar_resnet_params_equal_closed_form(depth):
    assert _cost(f"resnet{depth}").trainable_params == _cifar_resnet_params((depth - 2) // 6)


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS_ALL))
def test_params_round_to_he_2015_figures(name):
    millions = _cost(name).trainable_params / 1e6
    figure = PAPER_PARAMS_ALL[name]
    assert round(millions, 2 if figure < 1 else 1) == figure


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS_NO_BN))
def test_params_round_to_he_2016_and_xie_2016_figures(name):
    millions = _params_without_bn(keras_resnets.get_model(name)) / 1e6
    assert round(millions, 1) == PAPER_PARAMS_NO_BN[name]


@pytest.mark.parametrize("name", sorted(PAPER_GMACS))
def test_multiply_adds_within_3_percent_of_papers(name):
    gmacs = _cost(name).gmacs
    assert gmacs == pytest.approx(PAPER_GMACS[name], rel=0.03)


@pytest.mark.parametrize("name", keras_resnets.list_models())
def test_every_registered_model_runs_and_costs_its_architecture_cost(name):
    model = keras_resnets.get_model(name)
    assert keras_resnets.profile(model) == _cost(name)
    # Training mode: with untrained moving statistics, inference-mode activations of the deepest
    # nets (1001, 1202 layers) grow past float32 by design, as they do in any framework.
    batch = np.random.default_rng(0).uniform(size=(2, *model.input_shape[1:])).astype("float32")
    probabilities = np.asarray(model(batch, training=True))
    classes = 10 if model.input_shape[1] == 32 else 1000
    assert probabilities.shape == (2, classes)
    assert np.all(np.isfinite(probabilities))
    np.testing.assert_allclose(probabilities.sum(axis=1), [1.0, 1.0], rtol=1e-4)


def test_list_models_holds_the_issue_names():
    names = keras_resnets.list_models()
    for name in ("resnet50", "resnet110", "preact_resnet1001", "resnext101_64x4d",
                 "resnext29_16x64d", "plain20", "plain56", "resnet200v2"):
        assert name in names
    assert names == sorted(names)
    assert keras_resnets.list_models("plain*") == [
        "plain110", "plain18", "plain20", "plain32", "plain34", "plain44", "plain56"]


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="Unknown model name 'resnet51'.*resnet50, "):
        keras_resnets.get_model("resnet51")


def test_get_model_overrides_win():
    model = keras_resnets.get_model("resnet20", classes=100, name="mine")
    assert model.name == "mine" and model.output_shape == (None, 100)


@pytest.mark.parametrize(
    "builder, name, classes, size",
    [
        (keras_resnets.ResNet18, "resnet18", 1000, 224),
        (keras_resnets.ResNet56, "resnet56", 10, 32),
        (keras_resnets.ResNet50V2, "resnet50v2", 1000, 224),
        (keras_resnets.PreActResNet110, "preact_resnet110", 10, 32),
        (keras_resnets.ResNeXt50, "resnext50_32x4d", 1000, 224),
        (keras_resnets.ResNeXt29, "resnext29_8x64d", 10, 32),
        (keras_resnets.Plain20, "plain20", 10, 32),
        (keras_resnets.Plain34, "plain34", 1000, 224),
    ],
)
def test_named_builders_match_the_registry(builder, name, classes, size):
    model = builder()
    assert model.name == name
    assert model.input_shape == (None, size, size, 3) and model.output_shape == (None, classes)
    assert model.count_params() == _cost(name).params


def test_resnext_builders_name_the_chosen_template():
    assert keras_resnets.ResNeXt101(cardinality=64, include_top=False).name == "resnext101_64x4d"
    wide = keras_resnets.ResNeXt101(cardinality=2, bottleneck_width=64)
    assert wide.name == "resnext101_2x64d"
    assert wide.count_params() == _cost("resnext101_2x64d").params
    assert keras_resnets.ResNeXt29(cardinality=16).count_params() == (
        _cost("resnext29_16x64d").params)


RENAMES = [
    # (registry row, overrides, the name of what is built)
    ("resnet20", {"depth": 32}, "resnet32"),
    ("resnet20", {"depth": 8, "stage_widths": (4, 8, 16)}, "resnet8_widths4-8-16"),
    ("resnet20", {"shortcut": "B"}, "resnet20_shortcutB"),
    ("resnet20", {"depth": None, "stage_blocks": (1, 2, 3)}, "resnet14_blocks1-2-3"),
    # Another number of stages than the stem's (a name always states the widths then).
    ("resnet20", {"depth": None, "stage_blocks": (1, 1), "stage_widths": (4, 8)},
     "resnet6_widths4-8"),
    ("resnet20", {"depth": None, "stage_blocks": (1, 1), "stage_widths": (16, 32)},
     "resnet6_widths16-32"),
    ("resnet50", {"depth": None, "stage_blocks": (2, 2, 2, 2, 2),
                  "stage_widths": (64, 128, 256, 512, 1024)},
     "resnet22_basic_blocks2-2-2-2-2_widths64-128-256-512-1024"),
    ("resnet56", {"block": "bottleneck"}, "resnet56_bottleneck"),
    ("resnet50", {"unit": "full_preactivation"}, "resnet50v2"),
    ("resnet50", {"unit": "relu_before_addition"}, "resnet50_relu_before_addition"),
    ("resnet50", {"width_multiplier": 2}, "resnet50_widths128-256-512-1024"),
    ("resnet50v2", {"depth": 26}, "resnet26v2"),
    ("preact_resnet164", {"depth": 272}, "preact_resnet272"),
    ("resnext101_32x4d", {"cardinality": 16}, "resnext101_16x4d"),
    ("resnext29_8x64d", {"cardinality": 16}, "resnext29_16x64d"),
    ("resnet50", {"bn_momentum": 0.5, "classes": 7}, "resnet50"),  # layer settings, same net
]


@pytest.mark.parametrize("row, overrides, expected", RENAMES)
def test_overriding_the_architecture_renames_the_model(row, overrides, expected):
    arguments = {**keras_resnets.model_arguments(row), **overrides}
    assert registry.model_name(row, **arguments) == expected


def test_get_model_builds_under_the_real_name():
    model = keras_resnets.get_model("resnet20", depth=32)
    assert model.name == "resnet32"
    assert model.count_params() == _cost("resnet32").params
    assert keras_resnets.get_model("resnet20", depth=32, name="mine").name == "mine"
    assert keras_resnets.ResNet20(depth=44, include_top=False).name == "resnet44"


def test_name_for_a_custom_architecture():
    arch = keras_resnets.resolve_architecture(depth=56, stem="cifar", shortcut="A")
    assert registry.name_for(arch) == "resnet56"
    odd = keras_resnets.resolve_architecture(depth=26, stem="cifar", unit="bn_after_addition")
    assert registry.name_for(odd) == "resnet26_bn_after_addition"
