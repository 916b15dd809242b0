"""The README's commands are real: every module exists and parses every flag it is given."""

import pathlib
import re
import shlex

import pytest
from absl import flags

from tests.conftest import REPO_ROOT
from training import config, evaluate, fit, predict
from tuning import search

README = pathlib.Path(REPO_ROOT, "README.md").read_text()
DEFINERS = {"training.fit": fit.define_flags, "training.evaluate": evaluate.define_flags,
            "training.predict": predict.define_flags, "tuning.search": search.define_flags}


def _commands():
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part)
                if words[:2] == ["python", "-m"] and words[2] in DEFINERS:
                    commands.append(words[2:])
    return commands


def test_the_readme_shows_the_main_commands():
    modules = [command[0] for command in _commands()]
    assert {"training.fit", "training.evaluate", "training.predict", "tuning.search"} <= set(
        modules)
    assert "python -m pytest" in README


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c)[:60])
def test_readme_commands_parse(command):
    module, *arguments = command
    flag_values = flags.FlagValues()
    DEFINERS[module](flag_values)
    flag_values([module, *arguments])  # raises on an unknown flag or a bad value
    if module == "training.fit" and flag_values["recipe"].value:
        assert flag_values["recipe"].value in config.list_recipes()
