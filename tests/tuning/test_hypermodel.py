"""The search space: pinned points are the papers' models; every point of a small grid builds."""

import itertools

import keras_tuner
import pytest

import keras_resnets
from keras_resnets import specs
from training import config as config_lib
from tuning.hypermodel import ResNetHyperModel, SearchSpace, TrainingSpace, named_model


def _fixed(**values):
    hp = keras_tuner.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp


PINNED = [
    (dict(block="basic", blocks_per_stage=3, base_width=16, unit="original", shortcut="A"),
     keras_resnets.ResNet20, "resnet20"),
    (dict(block="basic", blocks_per_stage=9, base_width=16, unit="original", shortcut="A"),
     keras_resnets.ResNet56, "resnet56"),
    (dict(block="basic", blocks_per_stage=18, base_width=16, unit="full_preactivation",
          shortcut="B"), keras_resnets.PreActResNet110, "preact_resnet110"),
    (dict(block="bottleneck", blocks_per_stage=18, base_width=16, unit="full_preactivation",
          shortcut="B", cardinality=1, bottleneck_width=64),
     keras_resnets.PreActResNet164, "preact_resnet164"),
    (dict(block="bottleneck", blocks_per_stage=3, base_width=64, unit="original", shortcut="B",
          cardinality=8, bottleneck_width=64), keras_resnets.ResNeXt29, "resnext29_8x64d"),
]


@pytest.mark.parametrize("values, builder, name", PINNED, ids=[p[2] for p in PINNED])
def test_pinned_points_are_the_named_models(values, builder, name):
    hypermodel = ResNetHyperModel(SearchSpace(units=keras_resnets.UNITS))
    hp = _fixed(**values)
    model = hypermodel.build(hp)
    assert model.count_params() == builder().count_params()
    names = [layer.name for layer in model.layers[1:]]  # all but the input layer
    assert names == [layer.name for layer in builder().layers[1:]]
    assert named_model(hypermodel.architecture(hp)) == name


def test_imagenet_points():
    hypermodel = ResNetHyperModel(SearchSpace(family="imagenet"))
    hp = _fixed(depth=50, base_width=64, unit="original", shortcut="B", cardinality=32,
                bottleneck_width=4)
    assert hypermodel.build(hp).count_params() == keras_resnets.ResNeXt50().count_params()
    assert named_model(hypermodel.architecture(hp)) == "resnext50_32x4d"
    basic = _fixed(depth=18, base_width=64, unit="original", shortcut="B")
    assert named_model(hypermodel.architecture(basic)) == "resnet18"


def test_every_point_of_a_small_grid_builds():
    space = SearchSpace(blocks_per_stage=(1, 2), base_widths=(16, 32), cardinalities=(1, 4),
                        bottleneck_widths=(4, 64), units=keras_resnets.UNITS,
                        shortcuts=("A", "B", "C"))
    hypermodel = ResNetHyperModel(space, input_shape=(32, 32, 3))
    built = 0
    for block, n, base, unit, shortcut in itertools.product(
            space.blocks, space.blocks_per_stage, space.base_widths, space.units,
            space.shortcuts):
        extras = ([dict(cardinality=c, bottleneck_width=d) for c in space.cardinalities
                   for d in space.bottleneck_widths] if block == "bottleneck" else [{}])
        for extra in extras:
            hp = _fixed(block=block, blocks_per_stage=n, base_width=base, unit=unit,
                        shortcut=shortcut, **extra)
            model = hypermodel.build(hp)
            assert model.output_shape == (None, 10)
            depth = (6 if block == "basic" else 9) * n + 2
            convs = [layer for layer in model.layers if layer.name.endswith("_conv")
                     and not layer.name.endswith("_0_conv")]
            assert len(convs) == depth - 1  # every weighted layer but the classifier
            built += 1
    assert built == 2 * 2 * 5 * 3 * (1 + 4)


def test_architecture_and_training_choices_are_separate():
    hypermodel = ResNetHyperModel(training_space=TrainingSpace(
        learning_rates=(0.01, 0.4), weight_decays=(1e-5, 1e-3), batch_sizes=(64, 128),
        label_smoothings=(0.0, 0.1)))
    hp = keras_tuner.HyperParameters()
    hypermodel.build_space(hp)
    training = hypermodel.training(hp)
    assert set(training) == {"learning_rate", "weight_decay", "global_batch_size",
                             "label_smoothing"}
    # The choices are settings a trial's training takes as they are.
    experiment = config_lib.recipe("cifar10_resnet20", dataset="synthetic")
    chosen = experiment.replace(**training)
    assert chosen.optimization.global_batch_size == hp.values["batch_size"] in (64, 128)
    assert chosen.optimization.learning_rate == hp.values["learning_rate"]
    assert not set(training) & set(hypermodel.architecture(hp))
    assert {"learning_rate", "batch_size"} <= {p.name for p in hp.space}
    assert "learning_rate" not in {p.name for p in
                                   _space_of(ResNetHyperModel()).space}


def _space_of(hypermodel):
    hp = keras_tuner.HyperParameters()
    hypermodel.build_space(hp)
    return hp


@pytest.mark.parametrize("kwargs, message", [
    (dict(units=()), r"The search space is empty: units has no values"),
    (dict(blocks_per_stage=()), r"The search space is empty: blocks_per_stage"),
    (dict(family="imagenet", depths=()), r"The search space is empty: depths"),
    (dict(cardinalities=()), r"The search space is empty: cardinalities"),
    (dict(units=("preact",)), r"units holds unknown values \['preact'\]"),
    (dict(family="imagenet", depths=(51,)), r"depths holds unknown values \[51\]"),
    (dict(family="mobile"), r"family must be one of \['cifar', 'imagenet'\]"),
    (dict(base_widths=(8,), bottleneck_widths=(4,)), r"bottleneck_widths value 4 with "
                                                    r"base_widths value 8 gives a fractional"),
])
def test_bad_spaces_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SearchSpace(**kwargs)


def test_describe_names_the_point_and_its_training_choices():
    hypermodel = ResNetHyperModel(training_space=TrainingSpace(learning_rates=(0.01, 0.4)))
    values = dict(block="basic", blocks_per_stage=9, base_width=16, unit="original",
                  shortcut="A", learning_rate=0.123456)
    assert hypermodel.describe(values) == (
        "resnet56: depth=56, basic, width=16, original, shortcut=A; learning_rate=0.1235")
    values = dict(block="bottleneck", blocks_per_stage=1, base_width=64, cardinality=8,
                  bottleneck_width=4, unit="full_preactivation", shortcut="B")
    assert ResNetHyperModel().describe(values) == (
        "depth=11, bottleneck, width=64, 8x4d, full_preactivation, shortcut=B")


def test_a_new_block_kind_row_is_a_choice_of_the_space(monkeypatch):
    triple = specs.BlockKind("triple", kernel_sizes=(3, 3, 3), expansion=2, aggregated=False,
                             imagenet_depths={})
    monkeypatch.setitem(specs.BLOCK_KINDS, "triple", triple)
    space = SearchSpace(blocks=("basic", "triple"), blocks_per_stage=(2,), base_widths=(8,))
    assert not space.has_bottlenecks
    arguments = ResNetHyperModel(space).architecture(_fixed(
        block="triple", blocks_per_stage=2, base_width=8, unit="original", shortcut="B"))
    assert arguments == dict(stem="cifar", depth=20, block="triple", stage_widths=(8, 16, 32),
                             unit="original", shortcut="B")  # depth 9n+2 from the row
