"""`training.evaluate` of runs of Keras' fit (`training.keras_evaluate`) and `--backend`."""

import json
import os

import pytest

from tests.training.conftest import run_cli
from training import evaluate, keras_checkpoints, keras_evaluate

TINY = ["--model=resnet20", '--model_overrides={"depth": 8, "stage_widths": [4, 8, 16]}',
        "--dataset=synthetic", "--synthetic_examples=96", "--image_size=8", "--num_classes=4",
        "--batch_size=16", "--epochs=2", "--export_format=keras", "--verbose=0"]


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory):
    """A run of `python -m training.fit --backend=jax`: its directory and results.json."""
    pytest.importorskip("jax")
    folder = tmp_path_factory.mktemp("jax") / "run"
    result = run_cli("training.fit", *TINY, "--backend=jax", f"--model_dir={folder}")
    assert result.returncode == 0, result.stderr[-3000:]
    return str(folder), json.loads((folder / "results.json").read_text())


def test_evaluate_on_jax_reproduces_the_test_metrics_of_a_jax_run(jax_run):
    folder, results = jax_run
    result = run_cli("training.evaluate", "--backend=jax", f"--model_dir={folder}",
                     "--checkpoint=latest")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert (metrics["checkpoint"], metrics["step"], metrics["split"], metrics["eval_crops"],
            metrics["examples"]) == (
        os.path.join(folder, "keras_step12.weights.h5"), 12, "test", 1, 24)
    assert metrics["accuracy"] == results["final_test_accuracy"]
    assert metrics["loss"] == pytest.approx(results["final_test_loss"], rel=1e-6)
    with open(os.path.join(folder, "evaluation_latest_test_1crop.json")) as file:
        assert json.load(file) == metrics


def test_a_jax_run_evaluates_on_tensorflow_too(jax_run):
    folder, results = jax_run  # this process' Keras backend is tensorflow
    metrics = evaluate.evaluate(folder, checkpoint="latest", eval_crops=10)
    assert (metrics["step"], metrics["eval_crops"], metrics["examples"]) == (12, 10, 24)
    metrics = evaluate.evaluate(folder, checkpoint="latest")
    assert metrics["accuracy"] == pytest.approx(results["final_test_accuracy"], abs=1 / 24)
    assert metrics["loss"] == pytest.approx(results["final_test_loss"], rel=1e-3)
    with pytest.raises(ValueError) as error:
        evaluate.evaluate(folder, strategy=object())
    assert str(error.value) == (f"strategy applies to runs of the tensorflow loop; the run in "
                                f"{folder} was trained with Keras' fit.")


def test_a_tensorflow_loop_run_is_refused_off_tensorflow(tmp_path, monkeypatch):
    import keras

    (tmp_path / "config.json").write_text(json.dumps(
        evaluate.config_lib.from_settings({"epochs": 1}).to_dict()))
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError) as error:
        evaluate.evaluate(str(tmp_path))
    assert str(error.value) == (
        f"model_dir='{tmp_path}' holds TensorFlow checkpoints of the tensorflow loop "
        "(training.trainer), which only the tensorflow backend reads; use --backend=tensorflow.")


def _state(folder, step, best=None):
    (folder / f"keras_step{step}.weights.h5").write_bytes(b"")
    if best:
        (folder / keras_checkpoints.best_name(best)).write_bytes(b"")
    (folder / keras_checkpoints.STATE).write_text(json.dumps({
        "weights": f"keras_step{step}.weights.h5", "step": step,
        "best": best and keras_checkpoints.best_name(best)}))


def test_best_latest_and_explicit_checkpoints_of_a_keras_run(tmp_path):
    _state(tmp_path, 6)  # nothing evaluated yet: "best" is the latest
    latest = str(tmp_path / "keras_step6.weights.h5")
    assert keras_evaluate.find_checkpoint(str(tmp_path), "best") == (latest, 6)
    _state(tmp_path, 12, best=6)
    latest, best = str(tmp_path / "keras_step12.weights.h5"), str(
        tmp_path / "keras_best_step6.weights.h5")
    assert keras_evaluate.is_keras_run(str(tmp_path))
    assert keras_evaluate.find_checkpoint(str(tmp_path), "latest") == (latest, 12)
    assert keras_evaluate.find_checkpoint(str(tmp_path), "best") == (best, 6)
    assert keras_evaluate.find_checkpoint(str(tmp_path), latest) == (latest, 12)
    assert keras_evaluate.find_checkpoint(str(tmp_path), best) == (best, 6)
    missing = str(tmp_path / "keras_step7.weights.h5")
    with pytest.raises(ValueError) as error:
        keras_evaluate.find_checkpoint(str(tmp_path), missing)
    assert str(error.value) == (
        f"checkpoint must be 'best', 'latest' or a keras_step<N>.weights.h5 or "
        f"keras_best_step<N>.weights.h5 file of the run in {tmp_path}; {missing!r} is none of "
        "them.")
