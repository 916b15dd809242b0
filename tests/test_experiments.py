"""Every experiment script runs end to end (on a tiny schedule, in a temporary folder)."""

import importlib
import json
import os

import pytest

from experiments import common
from tests.conftest import CIFAR10_DIR

NAMES = ["degradation", "gradients", "orderings", "shortcuts", "cardinality"]


@pytest.fixture(scope="module")
def tiny_experiments(tmp_path_factory):
    if not os.path.isdir(CIFAR10_DIR):
        pytest.skip(f"no CIFAR-10 image folder at {CIFAR10_DIR}")
    patch = pytest.MonkeyPatch()
    patch.setattr(common, "EXPERIMENTS", str(tmp_path_factory.mktemp("experiments")))
    patch.setattr(common, "CIFAR10", CIFAR10_DIR)
    patch.setitem(common.SHORT_SCHEDULE, "dataset", CIFAR10_DIR)
    patch.setitem(common.SHORT_SCHEDULE, "max_train_examples", 256)
    patch.setitem(common.SHORT_SCHEDULE, "max_test_examples", 128)
    patch.setitem(common.SHORT_SCHEDULE, "validation_images", 5000)
    patch.setitem(common.SHORT_SCHEDULE, "epochs", 1)
    patch.setitem(common.SHORT_SCHEDULE, "decay_epochs", (0.5,))
    patch.setitem(common.SHORT_SCHEDULE, "verbose", 0)
    yield common.EXPERIMENTS
    patch.undo()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_experiment_runs_and_writes_its_results(name, tiny_experiments):
    importlib.import_module(f"experiments.{name}.run").main()
    folder = os.path.join(tiny_experiments, name, "results")
    assert os.path.exists(os.path.join(folder, "results.csv"))
    with open(os.path.join(folder, "results.csv")) as file:
        assert len(file.read().splitlines()) > 2


@pytest.mark.slow
def test_modern_recipe_runs_and_writes_its_results(tiny_experiments, monkeypatch):
    from experiments.modern_recipe import run

    monkeypatch.setattr(run, "RECIPES", {name: {**settings, "max_train_examples": 256, "epochs": 1}
                                         for name, settings in run.RECIPES.items()})
    run.main()
    with open(os.path.join(tiny_experiments, "modern_recipe", "results", "results.json")) as file:
        rows = json.load(file)
    assert [(row["recipe"], row["seed"], row["run"]) for row in rows] == [
        ("experiment 1", 0, "experiments/accuracy"), ("experiment 1", 1, "experiment1_seed1"),
        ("modern", 0, "modern_seed0"), ("modern", 1, "modern_seed1")]
    assert rows[0]["test_accuracy"] == pytest.approx(87.51)  # experiment 1's committed figure
    assert {row["params"] for row in rows} == {271_098}
    with open(os.path.join(tiny_experiments, "modern_recipe", "runs", "modern_seed1",
                           "config.json")) as file:
        modern = json.load(file)
    assert (modern["data"]["erasing_prob"], modern["optimization"]["label_smoothing"],
            modern["optimization"]["ema_decay"], modern["runtime"]["seed"]) == (0.5, 0.1, 0.999, 1)
