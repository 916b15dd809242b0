"""`training.field_flags`: command-line flags generated from a dataclass's fields, and the
generated flags of `python -m training.fit` (`training.setting_flags`)."""

import dataclasses
import doctest
from typing import Dict, Optional, Tuple

import pytest
from absl import flags

from tests.training.test_fit import parse as fit_flags
from training import config, field_flags, setting_flags
from training.data_config import SHARED_WITH_RUNTIME, DataConfig
from training.finetune import FinetuneConfig


def _parsed(cls, *arguments, skip=()):
    flag_values = flags.FlagValues()
    field_flags.define(cls, flag_values, skip)
    flag_values(["program", *arguments])
    return flag_values


def test_the_module_example_runs():
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(field_flags):
        runner.run(test)
    assert runner.summarize(verbose=False) == doctest.TestResults(failed=0, attempted=9)


@dataclasses.dataclass(frozen=True)
class _Settings:
    """Args:
        mode: str. The docstring's help, unused: the metadata's wins. Defaults to `"fast"`.
        crops: int. Integer choices are left to the class. Defaults to `1`.
        cache: bool or `None`. Keep the data in memory; `None` decides by size.
            Defaults to `None`.
        name: str or `None`. Renamed on the command line. Defaults to `None`.
        tags: tuple of str. Free-form tags. Defaults to `("a", "b")`.
    """

    mode: str = dataclasses.field(default="fast", metadata={
        "help": "How to run.", "choices": ("fast", "exact")})
    crops: int = dataclasses.field(default=1, metadata={"choices": (1, 10)})
    cache: Optional[bool] = None
    name: Optional[str] = dataclasses.field(default=None, metadata={"flag": "run_name"})
    tags: Tuple[str, ...] = dataclasses.field(default=("a", "b"), metadata={"help": "Tags."})


def test_metadata_help_wins_and_string_choices_make_an_enum():
    assert field_flags.field_flags(_Settings) == [
        field_flags.FieldFlag("mode", "mode", str, False, "fast", "How to run.",
                              ("fast", "exact")),
        field_flags.FieldFlag("crops", "crops", int, False, 1,
                              "Integer choices are left to the class."),
        field_flags.FieldFlag("cache", "cache", bool, False, None,
                              "Keep the data in memory; None decides by size."),
        field_flags.FieldFlag("name", "run_name", str, False, None,
                              "Renamed on the command line."),
        field_flags.FieldFlag("tags", "tags", str, True, "a,b", "Tags. A comma-separated list."),
    ]
    flag_values = _parsed(_Settings, "--mode=exact", "--crops=10", "--nocache",
                          "--run_name=first", "--tags=x")
    assert [flag_values[name].flag_type() for name in ("mode", "crops", "cache", "run_name",
                                                        "tags")] == [
        "string enum", "int", "bool", "string", "string"]
    assert flag_values["mode"].parser.enum_values == ["fast", "exact"]
    assert field_flags.from_flags(_Settings, flag_values) == _Settings(
        mode="exact", crops=10, cache=False, name="first", tags=("x",))
    with pytest.raises(flags.IllegalFlagValueError, match="value should be one of <fast|exact>"):
        _parsed(_Settings, "--mode=slow")


def test_skipped_fields_get_no_flag():
    flag_values = _parsed(_Settings, skip={"mode", "tags"})
    assert sorted(flag_values) == ["cache", "crops", "run_name"]
    assert [spec.field for spec in field_flags.field_flags(_Settings, skip={"mode", "tags"})] == [
        "crops", "cache", "name"]


def test_parse_turns_only_comma_separated_text_into_a_tuple():
    specs = {spec.field: spec for spec in field_flags.field_flags(_Settings)}
    tags, crops = specs["tags"], specs["crops"]
    assert field_flags.parse(tags, "x,,y") == ("x", "y")
    assert field_flags.parse(tags, "") == ()
    assert field_flags.parse(tags, None) is None
    assert field_flags.parse(crops, 10) == 10


@dataclasses.dataclass(frozen=True)
class _Modern:
    """Args:
        widths: tuple of int. Written with the built-in generics. Defaults to `None`.
        ratio: float. A scalar flag. Defaults to `0.5`.
    """

    widths: tuple[int, ...] | None = None
    ratio: float = 0.5


def test_built_in_generics_and_scalars_are_flags_too():
    flag_values = _parsed(_Modern, "--widths=8,16", "--ratio=0.25")
    assert flag_values["ratio"].flag_type() == "float"
    assert field_flags.from_flags(_Modern, flag_values) == _Modern(widths=(8, 16), ratio=0.25)


@dataclasses.dataclass(frozen=True)
class _Undocumented:
    """Args:
        depth: int. Documented. Defaults to `1`.
    """

    depth: int = 1
    width: int = 2


@dataclasses.dataclass(frozen=True)
class _Mapping:
    """Args:
        sizes: dict. Not a flag type. Defaults to `None`.
    """

    sizes: Optional[Dict[str, int]] = None


@dataclasses.dataclass(frozen=True)
class _Required:
    """Args:
        depth: int. No default.
    """

    depth: int


@dataclasses.dataclass(frozen=True)
class _OnlyDefault:
    """Args:
        rate: float. Defaults to `0.01`.
    """

    rate: float = 0.01


@pytest.mark.parametrize("cls, message", [
    (_Undocumented, "_Undocumented.width has no entry in the Args of its docstring; document "
                    "it there (it is the flag's help)."),
    (_Mapping, "_Mapping.sizes has type typing.Dict[str, int]; a flag needs str, int, float or "
               "bool, or a tuple of str, int or float."),
    (_Required, "_Required.depth has no default; a flag needs one."),
    (_OnlyDefault, "_OnlyDefault's docstring entry for rate is not 'rate: type. Meaning.'; got "
                   "'float. Defaults to `0.01`.'."),
])
def test_fields_that_cannot_be_flags_are_named(cls, message):
    with pytest.raises(TypeError) as raised:
        field_flags.field_flags(cls)
    assert str(raised.value) == message


# The flags of `python -m training.fit` that training.setting_flags defines itself.
EXPLICIT = ["recipe", "config", "model", "model_overrides", "batch_size", "optimizer",
            "weight_decay_mode", "schedule", "decay_steps", "decay_epochs", "strategy",
            "mixed_precision", "jit_compile", "export_format", "freeze"]
SECTIONS = {DataConfig: set(SHARED_WITH_RUNTIME), config.OptimizationConfig: {"global_batch_size"},
            config.RuntimeConfig: set(), FinetuneConfig: set()}


def test_every_other_config_field_is_a_generated_flag_of_fit():
    flag_values = fit_flags()
    generated = [spec for cls, skip in SECTIONS.items()
                 for spec in field_flags.field_flags(cls, skip | set(EXPLICIT))]
    process = ["backend", "coordinator_address", "num_processes", "process_id", "input_pipeline"]
    assert sorted(flag_values) == sorted(EXPLICIT + process + [spec.flag for spec in generated])
    for spec in generated:  # each with its field's default and help (absl prefixes enums')
        assert flag_values[spec.flag].default == spec.default, spec.flag
        assert flag_values[spec.flag].help.endswith(spec.help), spec.flag
    assert flag_values["learning_rate"].help == "The peak learning rate."
    assert flag_values["warm_start_learning_rate"].help == "The learning rate of the warm start."
    assert flag_values["dataset"].help == DataConfig.__dataclass_fields__["dataset"].metadata[
        "help"]
    assert flag_values["schedule"].parser.enum_values == list(config.SCHEDULES)
    assert "global_batch_size" not in flag_values


def test_generated_flags_are_settings_only_when_given():
    settings = setting_flags.settings_from_flags(fit_flags(
        "--init_weights=imagenet", "--nofreeze_bn", "--head_lr_multiplier=10", "--verbose=2",
        "--max_loss=50", "--epochs=3", "--cache", "--image_size=40", "--batch_size=32"))
    assert settings == {"init_weights": "imagenet", "freeze_bn": False, "head_lr_multiplier": 10.0,
                        "verbose": 2, "max_loss": 50.0, "epochs": 3, "cache": True,
                        "image_size": 40, "global_batch_size": 32}
    assert setting_flags.settings_from_flags(fit_flags()) == {}


@dataclasses.dataclass(frozen=True)
class _WithClipping(config.OptimizationConfig):
    """An optimisation config with one more field.

    Args:
        clip_norm: float or `None`. Clip the gradients to this norm. Defaults to `None`.
    """

    clip_norm: Optional[float] = None


def test_a_new_documented_field_is_a_new_flag():
    skip = SECTIONS[config.OptimizationConfig] | set(EXPLICIT)
    specs = {spec.flag: spec for spec in field_flags.field_flags(_WithClipping, skip)}
    assert set(specs) - set(fit_flags()) == {"clip_norm"}
    assert specs["clip_norm"] == field_flags.FieldFlag(
        "clip_norm", "clip_norm", float, False, None, "Clip the gradients to this norm.")
