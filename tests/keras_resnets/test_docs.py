"""Docs match the code: docstring examples run, the README's table and quick start are current."""

import ast
import doctest
import importlib
import os
import pathlib
import pkgutil
import re
import subprocess
import sys

import pytest

import keras_resnets
from keras_resnets import downloads, weights_table
from keras_resnets.profile import model_table
from tests.conftest import REPO_ROOT

MODULES = ["keras_resnets"] + sorted(
    f"keras_resnets.{module.name}" for module in pkgutil.iter_modules(keras_resnets.__path__))
README = pathlib.Path(REPO_ROOT, "README.md").read_text()


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0


def test_every_public_builder_has_a_tested_example():
    examples = doctest.DocTestFinder().find(importlib.import_module("keras_resnets.registry"))
    tested = {test.name.rsplit(".", 1)[-1] for test in examples if test.examples}
    builders = {name for name in keras_resnets.__dict__
                if name[:1].isupper() and callable(getattr(keras_resnets, name))
                and getattr(keras_resnets, name).__module__ == "keras_resnets.registry"}
    assert len(builders) == 42 and builders <= tested


def test_readme_model_table_is_generated_by_the_package():
    match = re.search(r"<!-- model-table:start -->\n(.*)<!-- model-table:end -->", README, re.S)
    assert match, "README.md lacks the model-table markers"
    assert match.group(1) == model_table()


def test_readme_weights_table_is_generated_by_the_package():
    match = re.search(r"<!-- weights-table:start -->\n(.*)<!-- weights-table:end -->", README, re.S)
    assert match, "README.md lacks the weights-table markers"
    assert match.group(1) == weights_table.markdown_table()
    for variable in ("KERAS_RESNETS_WEIGHTS_DIR", "KERAS_RESNETS_WEIGHTS_MIRROR"):
        assert variable in README and variable in (downloads.DIR_VARIABLE,
                                                   downloads.MIRROR_VARIABLE)


def test_readme_quick_start_runs():
    block = re.search(r"## Quick start\n\n```python\n(.*?)```", README, re.S).group(1)
    namespace = {}
    exec(compile(block, "README quick start", "exec"), namespace)
    assert namespace["model"].output_shape == (None, 1024)
    assert namespace["custom"].name == "resnet"


def _tensorflow_imports(tree):
    for node in ast.walk(tree):
        names = ([alias.name for alias in node.names] if isinstance(node, ast.Import) else
                 [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(name.split(".")[0] == "tensorflow" for name in names):
            yield node


def test_only_the_backends_module_imports_tensorflow_and_only_lazily():
    package = pathlib.Path(keras_resnets.__file__).parent
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        if path.name != "backends.py":
            assert not list(_tensorflow_imports(tree)), path
            continue
        for function in [node for node in tree.body if isinstance(node, ast.FunctionDef)]:
            for node in _tensorflow_imports(function):
                node.lazy = True
        assert all(getattr(node, "lazy", False) for node in _tensorflow_imports(tree))


def test_builders_run_on_the_torch_backend_without_tensorflow():
    pytest.importorskip("torch")
    code = (
        "import sys, numpy as np, keras_resnets\n"
        "m = keras_resnets.ResNeXt29(cardinality=2, bottleneck_width=16,"
        " stage_widths=(8, 16, 32))\n"
        "assert tuple(m(np.ones((1, 32, 32, 3), 'float32')).shape) == (1, 10)\n"
        "assert keras_resnets.ResNet20().predict(np.ones((2, 32, 32, 3), 'float32'),"
        " verbose=0).shape == (2, 10)\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported'\n"
        "print('ok')\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")
