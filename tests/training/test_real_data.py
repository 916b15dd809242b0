"""A short ResNet-20 run on the real CIFAR-10 (../shared/data/cifar10) learns (slow)."""

import json
import os

import pytest

from tests.conftest import CIFAR10_DIR
from training import config, trainer


@pytest.mark.slow
def test_resnet20_learns_cifar10(tmp_path):
    if not os.path.isdir(CIFAR10_DIR):
        pytest.skip(f"no CIFAR-10 image folder at {CIFAR10_DIR}")
    model_dir = str(tmp_path / "resnet20")
    experiment = config.recipe(
        "cifar10_resnet20", dataset=CIFAR10_DIR, validation_images=0,
        max_train_examples=12_800, max_test_examples=2_000, global_batch_size=64, epochs=2,
        model_dir=model_dir, verbose=2)
    result = trainer.run(experiment)
    assert result.results["steps"] == 400
    assert result.results["final_test_accuracy"] > 0.35  # chance: 0.10
    with open(os.path.join(model_dir, "results.json")) as file:
        assert json.load(file)["status"] == "completed"
    for name in ("curves.png", "history.csv", "model.keras"):
        assert os.path.isfile(os.path.join(model_dir, name))
    assert os.listdir(os.path.join(model_dir, "checkpoints"))
    assert os.listdir(os.path.join(model_dir, "best"))
