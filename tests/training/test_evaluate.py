"""`training.evaluate`: a model directory's best or latest checkpoint on a split."""

import json
import os
import shutil

import pytest

from tests.training.conftest import read_only, run_cli, tiny_settings
from training import config, evaluate, trainer
from training.dirlock import DirectoryLock


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


def test_a_missing_validation_split_is_named(model_dir):
    folder, _ = model_dir
    with pytest.raises(ValueError, match=r"split='validation': the run in .* has no validation "
                                         r"split \(validation_images=0\); use split='test'\."):
        evaluate.evaluate(folder, split="validation")


def test_a_damaged_config_is_named(model_dir, tmp_path):
    folder = str(tmp_path / "run")
    shutil.copytree(model_dir[0], folder)
    path = os.path.join(folder, "config.json")
    with open(path, "w") as file:
        file.write('{"model": {"name": "resnet20"')
    with pytest.raises(ValueError, match=rf"^{path} is damaged and cannot be read "
                                         r"\(JSONDecodeError: "):
        evaluate.evaluate(folder)
    with open(path, "w") as file:
        json.dump({"model": {"name": "resnet20"}}, file)
    with pytest.raises(ValueError, match=rf"^{path} is damaged and cannot be read \(KeyError: "):
        evaluate.evaluate(folder)


def test_latest_falls_back_past_a_damaged_checkpoint(model_dir, tmp_path, capfd):
    folder = str(tmp_path / "run")
    shutil.copytree(model_dir[0], folder)
    data = os.path.join(folder, "checkpoints", "ckpt-18.data-00000-of-00001")
    with open(data, "r+b") as file:
        file.truncate(100)
    metrics = evaluate.evaluate(folder, checkpoint="latest")
    assert metrics["checkpoint"] == os.path.join(folder, "checkpoints", "ckpt-12")
    assert f"{data} is damaged or missing" in capfd.readouterr().err
    with pytest.raises(ValueError, match=rf"checkpoint='.*ckpt-18' cannot be read: {data} is "
                                         "damaged or missing"):
        evaluate.evaluate(folder, checkpoint=os.path.join(folder, "checkpoints", "ckpt-18"))


def test_the_cli_refuses_a_model_dir_in_use_and_reports_an_unwritable_one(model_dir, tmp_path):
    folder = str(tmp_path / "run")
    shutil.copytree(model_dir[0], folder)
    with DirectoryLock(folder, program="training.fit"):
        busy = run_cli("training.evaluate", f"--model_dir={folder}")
    assert busy.returncode == 2
    assert busy.stderr.strip().startswith(
        f"training.evaluate: error: model_dir={folder} is in use by training.fit (pid "
        f"{os.getpid()} on ")
    assert busy.stdout == "" and len(busy.stderr.splitlines()) == 1
    with read_only(folder):
        result = run_cli("training.evaluate", f"--model_dir={folder}", "--checkpoint=latest")
    assert result.returncode == 2
    metrics = json.loads(result.stdout)
    assert (metrics["step"], metrics["examples"]) == (18, 20)
    out = os.path.join(folder, "evaluation_latest_test_1crop.json")
    reason = "Read-only file system." if os.geteuid() == 0 else "Permission denied."
    assert result.stderr.splitlines() == [
        f"training.evaluate: error: the metrics above could not be written to {out}: {reason}"]
    assert not os.path.exists(out)
    validation = run_cli("training.evaluate", f"--model_dir={folder}", "--split=validation")
    assert validation.returncode == 2
    assert validation.stderr.splitlines() == [
        f"training.evaluate: error: split='validation': the run in {folder} has no validation "
        "split (validation_images=0); use split='test'."]
