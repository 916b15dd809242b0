"""Docstring examples of training and tuning run (keras_resnets has its own in test_docs)."""

import doctest
import importlib

import pytest

MODULES = ["training.analysis", "training.config", "training.data", "training.data_config",
           "training.ema", "training.sources", "training.evaluate",
           "training.export", "training.finetune", "training.fit", "training.predict",
           "training.model_config", "training.optimization_config", "training.optimizers",
           "training.randaugment_config",
           "training.runtime", "training.schedules", "training.serving", "training.trainer",
           "tuning.budget", "tuning.hypermodel", "tuning.report", "tuning.search",
           "tuning.tuner"]


@pytest.mark.parametrize("module_name", MODULES)
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(module):
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
