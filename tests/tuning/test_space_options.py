"""The search space's optional dimensions (se_ratios, drop_path_rates, stems, avg_down,
width_multipliers): each off by default and switched on by its flag; the budget counts them as
`keras_resnets.profile` does; an exported trial config rebuilds the trial's model."""

import json
import os
import subprocess

import keras_tuner
import pytest

import keras_resnets
from tests.conftest import REPO_ROOT
from tests.training.conftest import subprocess_env
from tests.tuning.test_search import _search_command
from tests.tuning.test_space_flags import OPTION_FLAGS, _parsed
from training import config as config_lib
from training import field_flags
from tuning import tuner as search_lib
from tuning.budget import Budget, CostModel, check_feasible
from tuning.hypermodel import ResNetHyperModel, SearchSpace

# The hyperparameters of the default spaces, as before the optional dimensions existed.
CIFAR_NAMES = ["block", "blocks_per_stage", "base_width", "unit", "shortcut", "cardinality",
               "bottleneck_width"]
IMAGENET_NAMES = ["depth", "base_width", "unit", "shortcut", "cardinality", "bottleneck_width"]
OLD_FIELDS = ["family", "blocks_per_stage", "depths", "blocks", "base_widths", "cardinalities",
              "bottleneck_widths", "units", "shortcuts"]
CIFAR = dict(block="basic", blocks_per_stage=1, base_width=4, unit="original", shortcut="B")
IMAGENET = dict(depth=18, base_width=8, unit="original", shortcut="B")
IMAGE = (64, 64, 3)  # small ImageNet-family inputs keep the models cheap


def _space(*flags):
    return field_flags.from_flags(SearchSpace, _parsed(*flags))


def _hyperparameter_names(space):
    hp = keras_tuner.HyperParameters()
    ResNetHyperModel(space).build_space(hp)
    return [p.name for p in hp.space]


def _hypermodel(space):
    image = IMAGE if space.family == "imagenet" else (16, 16, 3)
    return ResNetHyperModel(space, classes=5, input_shape=image)


def test_the_default_spaces_are_unchanged():
    assert _hyperparameter_names(SearchSpace()) == CIFAR_NAMES
    assert _hyperparameter_names(SearchSpace(family="imagenet")) == IMAGENET_NAMES
    assert _space() == SearchSpace()
    assert (SearchSpace().se_ratios, SearchSpace().drop_path_rates, SearchSpace().stems,
            SearchSpace().avg_down, SearchSpace().width_multipliers) == ((), (), (), False, ())
    # A search saved before the options existed has the same settings, so it resumes.
    assert list(SearchSpace().to_dict()) == OLD_FIELDS
    assert list(SearchSpace(se_ratios=(0.25,)).to_dict()) == OLD_FIELDS + ["se_ratios"]


def _layer_names(model):
    return [layer.name for layer in model.layers]


def _se_layers(model):
    return [n for n in _layer_names(model) if n.endswith("_se_excite")]


def _drop_path_layers(model):
    return [n for n in _layer_names(model) if n.endswith("_drop_path")]


def _stem_convs(model):
    return [n for n in _layer_names(model) if n.startswith("conv1_") and n.endswith("_conv")]


def _pooled_shortcuts(model):
    return [n for n in _layer_names(model) if n.endswith("_0_pool")]


def _last_stage_width(model):
    return model.get_layer("avg_pool").output.shape[-1]


# flags, the hyperparameter they add with a value, and what the model built with it shows
# (the same measure of the model built without the flag in the last column).
SWITCHES = [
    (["--se_ratios=0.25"], "se_ratio", 0.25, CIFAR, _se_layers,
     ["conv2_block1_se_excite", "conv3_block1_se_excite", "conv4_block1_se_excite"], []),
    # The rate rises from 0 in the first unit (keras_resnets.builder.unit_drop_path_rates).
    (["--drop_path_rates=0.2"], "drop_path_rate", 0.2, CIFAR, _drop_path_layers,
     ["conv3_block1_drop_path", "conv4_block1_drop_path"], []),
    (["--family=imagenet", "--stems=imagenet,deep"], "stem", "deep", IMAGENET, _stem_convs,
     ["conv1_1_conv", "conv1_2_conv", "conv1_3_conv"], ["conv1_conv"]),
    (["--avg_down"], "avg_down", True, CIFAR, _pooled_shortcuts,
     ["conv3_block1_0_pool", "conv4_block1_0_pool"], []),
    (["--width_multipliers=2"], "width_multiplier", 2.0, CIFAR, _last_stage_width, 32, 16),
]


@pytest.mark.parametrize("flags, name, value, point, measure, on, off", SWITCHES,
                         ids=[s[1] for s in SWITCHES])
def test_each_flag_switches_its_dimension_on(flags, name, value, point, measure, on, off):
    space = _space(*flags, "--units=original", "--shortcuts=A,B")
    default = CIFAR_NAMES if space.family == "cifar" else IMAGENET_NAMES
    assert _hyperparameter_names(space) == default + [name]
    hypermodel = _hypermodel(space)
    chosen = hypermodel.build(hypermodel.values_to_hp(dict(point, **{name: value})))
    assert measure(chosen) == on
    without = _hypermodel(SearchSpace(family=space.family, units=("original",)))
    assert measure(without.build(without.values_to_hp(point))) == off


def test_avg_down_is_a_choice_of_the_projection_shortcuts_only():
    hypermodel = _hypermodel(SearchSpace(avg_down=True, shortcuts=("A", "B", "C")))
    hp = hypermodel.values_to_hp(dict(CIFAR, shortcut="A", avg_down=True))
    assert "avg_down" not in hypermodel.architecture(hp)
    assert not hp.is_active("avg_down")
    hp = hypermodel.values_to_hp(dict(CIFAR, shortcut="C", avg_down=True))
    assert hypermodel.architecture(hp)["avg_down"] is True


def test_off_values_are_the_builders_defaults():
    space = SearchSpace(se_ratios=(0, 0.25), drop_path_rates=(0, 0.1), width_multipliers=(1,),
                        avg_down=True)
    assert (space.se_ratios, space.drop_path_rates, space.width_multipliers) == (
        (0.0, 0.25), (0.0, 0.1), (1.0,))
    hypermodel = _hypermodel(space)
    values = dict(CIFAR, se_ratio=0.0, drop_path_rate=0.0, width_multiplier=1.0, avg_down=False)
    plain = _hypermodel(SearchSpace())
    assert hypermodel.architecture(hypermodel.values_to_hp(values)) == plain.architecture(
        plain.values_to_hp(CIFAR))


def test_describe_names_the_options():
    space = SearchSpace(family="imagenet", stems=("deep",), se_ratios=(0.0625,),
                        drop_path_rates=(0.1,), avg_down=True, width_multipliers=(1.5,))
    values = dict(IMAGENET, stem="deep", se_ratio=0.0625, drop_path_rate=0.1, avg_down=True,
                  width_multiplier=1.5)
    assert ResNetHyperModel(space).describe(values) == (
        "depth=18, basic, width=8, original, shortcut=B, deep stem, width_multiplier=1.5, "
        "se_ratio=0.0625, avg_down, drop_path_rate=0.1")


@pytest.mark.parametrize("flags, message", [
    (["--se_ratios=0.25,1.5"], "se_ratios values must be in [0, 1]; got 1.5."),
    (["--drop_path_rates=1"], "drop_path_rates values must be in [0, 1); got 1.0."),
    (["--width_multipliers=0"], "width_multipliers values must be a positive number; got 0.0."),
    (["--stems=deep"], "stems chooses among the imagenet family's stems; the cifar family has "
                       "one stem ('cifar'): drop stems or use family='imagenet'."),
    (["--family=imagenet", "--stems=deep,cifar"], "stems holds unknown values ['cifar']; valid "
                                                  "values are ['imagenet', 'deep']."),
    (["--avg_down", "--shortcuts=A"], "avg_down pools before projection shortcuts; shortcuts "
                                      "('A',) has none: add 'B' or 'C'."),
    (["--base_widths=16", "--bottleneck_widths=4", "--width_multipliers=1.5"],
     "bottleneck_widths value 4 with base_widths value 16 and width_multipliers value 1.5 gives "
     "a fractional group width (24 * 4 / 64); keep each stage width * bottleneck_width a "
     "multiple of 64."),
    (["--se_ratios=0.25,much"], "--se_ratios must be a comma-separated list of numbers; got "
                                "'0.25,much'."),
], ids=["se_ratios", "drop_path_rates", "width_multipliers", "cifar_stems", "stems",
        "avg_down", "group_width", "not_a_number"])
def test_bad_values_name_the_flag(flags, message):
    with pytest.raises(ValueError) as raised:
        _space(*flags)
    assert str(raised.value) == message


# One point per option (and all at once), on a bottleneck depth too: ImageNet family.
OPTIONS = SearchSpace(family="imagenet", depths=(18, 50), base_widths=(8,), cardinalities=(2,),
                      bottleneck_widths=(64,), units=("original",), shortcuts=("B",),
                      se_ratios=(0.0, 0.25), drop_path_rates=(0.0, 0.3),
                      stems=("imagenet", "deep"), avg_down=True, width_multipliers=(1.0, 1.5))
OFF = dict(stem="imagenet", se_ratio=0.0, drop_path_rate=0.0, avg_down=False,
           width_multiplier=1.0)
# The options, and whether a point with them costs what the point without them does.
COST_POINTS = [
    (dict(OFF, se_ratio=0.25), False),
    (dict(OFF, stem="deep"), False),
    (dict(OFF, width_multiplier=1.5), False),
    # A 2x2 average pooling, then the 1x1 at the pooled resolution: the strided 1x1's cost.
    (dict(OFF, avg_down=True), True),
    (dict(OFF, drop_path_rate=0.3), True),  # training only
    (dict(stem="deep", se_ratio=0.25, drop_path_rate=0.3, avg_down=True, width_multiplier=1.5),
     False),
]


@pytest.mark.parametrize("depth", [18, 50])
@pytest.mark.parametrize("options, free", COST_POINTS,
                         ids=["se", "deep", "wide", "avg_down", "drop_path", "all"])
def test_the_budget_counts_each_option_as_profile_does(options, free, depth):
    hypermodel = _hypermodel(OPTIONS)
    values = dict(IMAGENET, depth=depth, cardinality=2, bottleneck_width=64, **options)
    model = hypermodel.build(hypermodel.values_to_hp(values))
    cost = CostModel(hypermodel)(values)
    assert cost == keras_resnets.profile(model)
    assert (cost == CostModel(hypermodel)(dict(values, **OFF))) is free


def test_the_cheapest_point_of_a_space_with_options_bounds_the_budget():
    space = SearchSpace(family="imagenet", depths=(18,), base_widths=(8,), units=("original",),
                        shortcuts=("B",), se_ratios=(0.25, 0.5), stems=("imagenet", "deep"),
                        width_multipliers=(1.5, 2.0))
    cost_model = CostModel(_hypermodel(space))
    every = [cost_model(dict(IMAGENET, stem=stem, se_ratio=ratio, width_multiplier=multiplier))
             for stem in space.stems for ratio in space.se_ratios
             for multiplier in space.width_multipliers]
    cheapest = min(every, key=lambda cost: cost.macs)
    check_feasible(space, cost_model, Budget(max_flops=cheapest.macs))
    with pytest.raises(ValueError, match=r"The budget \(max_flops=[\d,]+\) is below the smallest"):
        check_feasible(space, cost_model, Budget(max_flops=cheapest.macs - 1))


def test_an_exported_config_rebuilds_the_trials_model():
    hypermodel = _hypermodel(OPTIONS)
    values = dict(IMAGENET, depth=50, cardinality=2, bottleneck_width=64, stem="deep",
                  se_ratio=0.25, drop_path_rate=0.3, avg_down=True, width_multiplier=1.5)
    hp = hypermodel.values_to_hp(values)
    experiment = config_lib.from_settings(dict(
        model=config_lib.CUSTOM_MODEL, model_overrides=hypermodel.architecture(hp), epochs=1))
    again = config_lib.ExperimentConfig.from_dict(json.loads(json.dumps(experiment.to_dict())))
    rebuilt = again.model.build(num_classes=5, image_shape=IMAGE)
    trial = hypermodel.build(hp)
    assert rebuilt.count_params() == trial.count_params()
    assert _layer_names(rebuilt)[1:] == _layer_names(trial)[1:]
    assert len(_drop_path_layers(rebuilt)) == 15 and len(_se_layers(rebuilt)) == 16


def test_a_tiny_search_with_every_option_on(tmp_path):
    experiment = config_lib.from_settings(dict(
        dataset="synthetic", synthetic_examples=64, image_size=8, num_classes=4,
        validation_images=16, global_batch_size=16, epochs=1, verbose=0))
    space = SearchSpace(blocks_per_stage=(1,), base_widths=(4,), blocks=("basic",),
                        units=("original",), shortcuts=("B",), se_ratios=(0.25,),
                        drop_path_rates=(0.1,), avg_down=True, width_multipliers=(2.0,))
    search = search_lib.SearchConfig(experiment=experiment, space=space, max_trials=1,
                                     epochs_per_trial=1, directory=str(tmp_path),
                                     budget=Budget(max_params=100_000))
    result = search_lib.run(search)
    assert len(result.completed) == 1
    for record in result.records:
        assert {"se_ratio", "drop_path_rate", "avg_down", "width_multiplier"} <= set(
            record.values)
        assert record.arguments["se_ratio"] == 0.25
        assert record.arguments["drop_path_rate"] == 0.1
        assert record.arguments["width_multiplier"] == 2.0
    with open(result.tables["csv"]) as file:
        header = file.readline().strip().split(",")
    assert header[3:12] == CIFAR_NAMES[:5] + ["width_multiplier", "se_ratio", "avg_down",
                                              "drop_path_rate"]


def test_the_flags_help_and_defaults():
    flag_values = _parsed()
    assert {name: flag_values[name].default for name in OPTION_FLAGS} == dict(
        se_ratios="", drop_path_rates="", stems="", avg_down=False, width_multipliers="")
    assert flag_values["stems"].help == (
        "ImageNet family only: stems to try among \"imagenet\" (7x7) and \"deep\" (ResNet-C of "
        "He et al. 2019: three 3x3 convolutions). Empty: the family's stem. A comma-separated "
        "list.")
    assert _space("--family=imagenet", "--se_ratios=0,0.0625", "--drop_path_rates=0.1",
                  "--stems=deep", "--avg_down", "--width_multipliers=1,2") == SearchSpace(
        family="imagenet", se_ratios=(0.0, 0.0625), drop_path_rates=(0.1,), stems=("deep",),
        avg_down=True, width_multipliers=(1.0, 2.0))


def test_a_bad_option_on_the_command_line_is_one_line_and_exit_code_2(tmp_path):
    result = subprocess.run(_search_command(f"--directory={tmp_path}", "--stems=deep"),
                            cwd=REPO_ROOT, env=subprocess_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines() == [
        "tuning.search: error: stems chooses among the imagenet family's stems; the cifar "
        "family has one stem ('cifar'): drop stems or use family='imagenet'."]
    assert os.listdir(tmp_path) == []
