"""The search space's flags of `python -m tuning.search` come from the fields of
`tuning.space.SearchSpace` and `TrainingSpace` (`training.field_flags`); validators and the
atomic write."""

import dataclasses
import json
import os
import subprocess
import sys
from typing import Tuple

import pytest
from absl import flags

from tests.conftest import REPO_ROOT
from tests.training.conftest import subprocess_env
from training import config as config_lib
from training import field_flags
from tuning import search
from tuning.space import SearchSpace, TrainingSpace

SPACE_FLAGS = ["family", "blocks_per_stage", "depths", "blocks", "base_widths", "cardinalities",
               "bottleneck_widths", "units", "shortcuts"]
OPTION_FLAGS = ["se_ratios", "drop_path_rates", "stems", "avg_down", "width_multipliers"]
TUNE_FLAGS = ["tune_learning_rate", "tune_weight_decay", "tune_batch_size",
              "tune_label_smoothing"]


def _parsed(*arguments, define=search.define_flags):
    flag_values = flags.FlagValues()
    define(flag_values)
    flag_values(["tuning.search", *arguments])
    return flag_values


def test_one_flag_per_field_with_the_fields_defaults():
    specs = field_flags.field_flags(SearchSpace) + field_flags.field_flags(TrainingSpace)
    assert [spec.flag for spec in specs] == SPACE_FLAGS + OPTION_FLAGS + TUNE_FLAGS
    flag_values = _parsed()
    assert {name: flag_values[name].default for name in SPACE_FLAGS + TUNE_FLAGS} == {
        "family": "cifar", "blocks_per_stage": "1,2,3,5,7,9,18", "depths": "18,34,50,101,152",
        "blocks": "basic,bottleneck", "base_widths": None, "cardinalities": "1,2,4,8",
        "bottleneck_widths": "4,16,64", "units": "original,full_preactivation",
        "shortcuts": "A,B", "tune_learning_rate": None, "tune_weight_decay": None,
        "tune_batch_size": None, "tune_label_smoothing": None}
    assert field_flags.from_flags(SearchSpace, flag_values) == SearchSpace()
    assert field_flags.from_flags(TrainingSpace, flag_values) == TrainingSpace()


def test_comma_separated_flags_parse_to_typed_tuples():
    flag_values = _parsed("--family=imagenet", "--depths=50,101", "--base_widths=64,",
                          "--units=", "--tune_learning_rate=0.01,0.4", "--tune_batch_size=64",
                          "--tune_label_smoothing=0,0.1")
    assert field_flags.values_from_flags(SearchSpace, flag_values) == dict(
        family="imagenet", blocks_per_stage=(1, 2, 3, 5, 7, 9, 18), depths=(50, 101),
        blocks=("basic", "bottleneck"), base_widths=(64,), cardinalities=(1, 2, 4, 8),
        bottleneck_widths=(4, 16, 64), units=(), shortcuts=("A", "B"), se_ratios=(),
        drop_path_rates=(), stems=(), avg_down=False, width_multipliers=())
    training = field_flags.from_flags(TrainingSpace, flag_values)
    assert training == TrainingSpace(learning_rates=(0.01, 0.4), batch_sizes=(64,),
                                     label_smoothings=(0.0, 0.1))
    assert type(training.batch_sizes[0]) is int and type(training.label_smoothings[0]) is float


@pytest.mark.parametrize("cls, argument, message", [
    (SearchSpace, "--base_widths=16,wide", "--base_widths must be a comma-separated list of "
                                           "integers; got '16,wide'."),
    (TrainingSpace, "--tune_learning_rate=0.1,fast", "--tune_learning_rate must be a "
                                                     "comma-separated list of numbers; got "
                                                     "'0.1,fast'."),
])
def test_a_bad_item_names_the_flag_and_the_item_type(cls, argument, message):
    with pytest.raises(ValueError) as raised:
        field_flags.from_flags(cls, _parsed(argument))
    assert str(raised.value) == message


def test_help_lists_every_space_flag_with_its_docstring_and_default():
    # `--help` shows the main module's key flags: the space's are declared key flags there.
    result = subprocess.run([sys.executable, "-m", "tuning.search", "--help"], cwd=REPO_ROOT,
                            env=subprocess_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for name in SPACE_FLAGS + TUNE_FLAGS:
        assert f"\n  --{name}: " in text
    assert ("  --blocks_per_stage: CIFAR only: the papers' n (ResNet-8, 14, 20, 32, 44, 56,\n"
            "    110 with basic blocks). A comma-separated list.\n"
            "    (default: '1,2,3,5,7,9,18')\n") in text
    assert ("  --tune_batch_size: Global batch sizes to choose from; None keeps the recipe's.\n"
            "    A comma-separated list.\n  --tune_label_smoothing:") in text
    assert "    (default: 'original,full_preactivation')\n" in text
    # A flag whose default is None says in its help what None means.
    for name in ["base_widths"] + TUNE_FLAGS:
        assert "None" in _parsed()[name].help


@dataclasses.dataclass(frozen=True)
class StridedSpace(SearchSpace):
    """A search space with one more dimension.

    Args:
        stem_strides: tuple of int. Strides of the stem's convolution to try.
            Defaults to `(1, 2)`.
    """

    stem_strides: Tuple[int, ...] = (1, 2)


def test_a_new_field_is_a_new_flag_of_the_search(monkeypatch):
    monkeypatch.setattr(search, "SearchSpace", StridedSpace)
    flag_values = _parsed("--dataset=synthetic", "--validation_images=16", "--stem_strides=2",
                          "--units=original")
    assert flag_values["stem_strides"].default == "1,2"
    assert flag_values["stem_strides"].help == (
        "Strides of the stem's convolution to try. A comma-separated list.")
    space = search.search_config_from_flags(flag_values).space
    assert space == StridedSpace(stem_strides=(2,), units=("original",))


@pytest.mark.parametrize("bounds", [(0.1,), (0.0, 1.0), (0.5, 0.1), ("low", 1.0), 0.1])
def test_a_bad_log_range_names_the_field(bounds):
    with pytest.raises(ValueError) as raised:
        TrainingSpace(weight_decays=bounds)
    assert str(raised.value) == (
        f"weight_decays must be (low, high) with 0 < low < high; got {bounds!r}.")


def test_an_unknown_role_lists_the_roles():
    from tuning import tuner

    with pytest.raises(ValueError) as raised:
        tuner.build_tuner(None, role="boss")
    assert str(raised.value) == "role must be one of ['local', 'chief', 'worker']; got 'boss'."


def test_the_search_settings_file_is_written_whole(tmp_path):
    from tuning import tuner

    experiment = config_lib.from_settings(dict(dataset="synthetic", validation_images=16,
                                                      epochs=1))
    config = tuner.SearchConfig(experiment=experiment, directory=str(tmp_path))
    tuner._check_same_search(config)
    assert os.listdir(config.project_dir) == ["search_config.json"]  # no temporary file left
    with open(os.path.join(config.project_dir, "search_config.json")) as file:
        assert json.load(file) == json.loads(json.dumps(config.to_dict()))
    tuner._check_same_search(config)  # the same search: resumed, nothing rewritten
