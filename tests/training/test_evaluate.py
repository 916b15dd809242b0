"""`training.evaluate`: a model directory's best or latest checkpoint on a split."""

import os

import pytest

from tests.training.conftest import tiny_settings
from training import config, evaluate, trainer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A run through `training.data.Pipeline(config.data)` on synthetic data."""
    folder = str(tmp_path_factory.mktemp("evaluate") / "run")
    settings = tiny_settings(
        epochs=3, model_dir=folder, synthetic_examples=96, image_size=8, num_classes=6,
        max_test_examples=20)
    result = trainer.run(config.from_settings(settings))
    return folder, result


def test_latest_checkpoint_gives_the_final_test_metrics(model_dir):
    folder, result = model_dir
    metrics = evaluate.evaluate(folder, checkpoint="latest")
    assert metrics["checkpoint"] == os.path.join(folder, "checkpoints", "ckpt-18")
    assert (metrics["step"], metrics["split"], metrics["eval_crops"], metrics["examples"]) == (
        18, "test", 1, 20)
    history = result.history.history
    assert metrics["accuracy"] == pytest.approx(history["test_accuracy"][-1])
    assert metrics["loss"] == pytest.approx(history["test_loss"][-1], rel=1e-5)
    assert metrics["top5_accuracy"] == pytest.approx(history["test_top5_accuracy"][-1])


def test_best_checkpoint_gives_the_best_test_accuracy(model_dir):
    folder, result = model_dir
    metrics = evaluate.evaluate(folder)  # best by test accuracy: no validation split
    assert metrics["step"] == 6 * result.results["best_epoch"]
    assert metrics["accuracy"] == pytest.approx(result.results["best_test_accuracy"])


def test_ten_crops_and_an_explicit_checkpoint_path(model_dir):
    folder, _ = model_dir
    path = os.path.join(folder, "checkpoints", "ckpt-12")
    metrics = evaluate.evaluate(folder, checkpoint=path, eval_crops=10,
                                global_batch_size=7)
    assert (metrics["checkpoint"], metrics["step"], metrics["eval_crops"],
            metrics["examples"]) == (path, 12, 10, 20)


def test_bad_model_dir_and_checkpoint_are_value_errors(model_dir, tmp_path):
    folder, _ = model_dir
    with pytest.raises(ValueError, match="has no config.json"):
        evaluate.evaluate(str(tmp_path))
    with pytest.raises(ValueError, match="checkpoint must be 'best', 'latest' or a checkpoint "
                                         "path; 'ckpt-99' is none of them"):
        evaluate.evaluate(folder, checkpoint="ckpt-99")
