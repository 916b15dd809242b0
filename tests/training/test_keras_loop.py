"""`training.keras_loop`: `python -m training.fit` on the JAX and PyTorch backends (Keras' fit)."""

import csv
import json
import os

import numpy as np
import pytest

from tests.training.conftest import TINY_MODEL, run_cli, tiny_settings
from training import config as config_lib
from training import keras_loop

TINY = ["--model=resnet20", '--model_overrides={"depth": 8, "stage_widths": [4, 8, 16]}',
        "--dataset=synthetic", "--synthetic_examples=96", "--image_size=8", "--num_classes=4",
        "--batch_size=16", "--epochs=2", "--verbose=2"]


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_fit_trains_on_the_backend_and_writes_results_history_and_model_keras(backend, tmp_path):
    pytest.importorskip(backend)
    model_dir = tmp_path / "run"
    result = run_cli("training.fit", *TINY, "--label_smoothing=0.1", f"--model_dir={model_dir}",
                     KERAS_BACKEND=backend)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"with Keras' fit on {backend}: 2 epochs of 6 steps, batch 16" in result.stdout
    results = json.loads((model_dir / "results.json").read_text())
    assert (results["status"], results["backend"], results["epochs"], results["steps"],
            results["total_steps"], results["steps_per_epoch"]) == (
        "completed", backend, 2, 12, 12, 6)
    assert results["test_examples"] == 24  # synthetic: a quarter of the training examples
    assert results["monitor"] == "test_accuracy" and results["best_epoch"] in (1, 2)
    assert sorted(results["exports"]) == ["class_names", "keras"]
    assert results["config"]["optimization"]["label_smoothing"] == 0.1
    with open(model_dir / "history.csv") as file:
        rows = list(csv.DictReader(file))
    assert [(row["epoch"], row["step"]) for row in rows] == [("1", "6"), ("2", "12")]
    assert set(rows[0]) == {"epoch", "step", "loss", "accuracy", "error", "learning_rate",
                            "test_loss", "test_accuracy", "test_error", "images_per_second",
                            "epoch_seconds"}
    assert float(rows[-1]["test_error"]) == results["final_test_error"]
    assert all(os.path.isfile(model_dir / name) for name in (
        "config.json", "curves.png", "model.keras", "class_names.json"))


def test_a_model_dir_with_other_settings_is_refused_on_jax(tmp_path):
    pytest.importorskip("jax")
    (tmp_path / "config.json").write_text("{}")
    result = run_cli("training.fit", *TINY, f"--model_dir={tmp_path}", "--backend=jax")
    assert result.returncode == 2
    assert result.stderr == (
        f"training.fit: error: model_dir='{tmp_path}' holds a run with other settings; the "
        "Keras loop resumes only the same settings: use a new model_dir.\n")


def _tiny(**settings):
    return config_lib.from_settings(tiny_settings(
        synthetic_examples=64, image_size=8, num_classes=4, **settings))


def test_the_training_loss_adds_the_coupled_decay_of_the_decayed_variables():
    import keras

    from training.steps import decayed_variables

    run = keras_loop.KerasTrainer(_tiny(weight_decay=0.01, label_smoothing=0.1,
                                        decay_bn_and_bias=False))
    images = np.random.default_rng(0).random((4, 8, 8, 3), dtype="float32")
    targets = np.eye(4, dtype="float32")
    outputs = run.model(images)
    loss = float(run.model.compute_loss(images, targets, outputs))
    smoothed = targets * 0.9 + 0.1 / 4
    cross_entropy = float(np.mean(-np.sum(smoothed * np.log(np.asarray(outputs)), axis=-1)))
    decayed = decayed_variables(run.model, False)
    assert len(decayed) < len(run.model.trainable_variables)  # no BN or biases by default
    penalty = 0.5 * 0.01 * sum(float(np.sum(np.square(v.numpy()))) for v in decayed)
    assert loss == pytest.approx(cross_entropy + penalty, rel=1e-5)
    assert keras.backend.backend() == "tensorflow"  # the Keras loop runs here too


# The classifier's bias over a zero kernel: sure of class 0 and ranking 7, 6, 5, 4 next, the rest
# of the probabilities below 1e-7, where the loss clips (30), or below float32's smallest (200:
# only the logits still rank them).
@pytest.mark.parametrize("sure_by, activation", [(None, "softmax"), (30.0, "softmax"),
                                                 (200.0, None)])
@pytest.mark.parametrize("eval_crops", [1, 10])
def test_evaluate_equals_the_tensorflow_loops_evaluate(eval_crops, sure_by, activation):
    from training import trainer

    config = config_lib.from_settings(tiny_settings(
        synthetic_examples=64, num_classes=8, image_size=8, eval_crops=eval_crops,
        model_overrides={**TINY_MODEL, "classifier_activation": activation}))
    ours, theirs = keras_loop.KerasTrainer(config), trainer.Trainer(config)
    images, labels = next(iter(ours.pipeline.evaluation("test", 16)))
    assert images.shape == ((16, 8, 8, 3) if eval_crops == 1 else (16, 10, 8, 8, 3))
    if sure_by is not None:
        classifier = ours.model.get_layer("predictions")
        kernel, _ = classifier.get_weights()
        classifier.set_weights([np.zeros_like(kernel),
                                np.array([sure_by, *range(7)], "float32")])
        labels = np.asarray(labels)
        labels = labels.argmax(-1) if labels.ndim > 1 else labels
        top5 = np.mean(np.isin(labels, [0, 4, 5, 6, 7]))
        assert ours.evaluate("test")["top5_accuracy"] == pytest.approx(top5)
    theirs.model.set_weights(ours.model.get_weights())
    mine, reference = ours.evaluate("test"), theirs.evaluate("test")
    assert mine.keys() == reference.keys()
    assert mine["examples"] == reference["examples"] == 16
    for key in mine:
        assert mine[key] == pytest.approx(reference[key], abs=1e-5), key


def test_mixed_bfloat16_and_soft_targets_train(tmp_path):
    run = keras_loop.KerasTrainer(_tiny(mixed_precision="bfloat16", mixup_alpha=0.2,
                                        model_dir=str(tmp_path)))
    history = run.fit()
    assert run.model.dtype_policy.name == "mixed_bfloat16"
    assert len(history.history["loss"]) == 2 and run.results["status"] == "completed"
    assert run.results["dtype_policy"] == "mixed_bfloat16"
    assert np.isfinite(history.history["loss"]).all()


def test_a_diverging_run_stops_with_training_diverged_and_results_say_so(tmp_path):
    from training.interrupts import TrainingDiverged

    run = keras_loop.KerasTrainer(_tiny(max_loss=0.01, model_dir=str(tmp_path)))
    with pytest.raises(TrainingDiverged) as error:
        run.fit()
    assert str(error.value).startswith("Training diverged in update 1 of 8 (epoch 1): the loss ")
    assert str(error.value).endswith("exceeds max_loss=0.01. Stopped; it had saved no "
                                     "checkpoint. Lower the learning rate (now 0.1) or check "
                                     "the data.")
    results = json.loads((tmp_path / "results.json").read_text())
    assert (results["status"], results["steps"], results["message"]) == (
        "diverged", 1, str(error.value))


def test_a_classifier_without_softmax_trains_as_the_one_with_it():
    """`classifier_activation=None` gives logits: the loss, its metric and the evaluation take
    them as such, so the run computes what the softmax classifier's does (same first weights:
    the activation has none)."""
    runs = {}
    for activation in ("softmax", None):
        run = keras_loop.KerasTrainer(_tiny(
            deterministic=True, label_smoothing=0.1,
            model_overrides={**TINY_MODEL, "classifier_activation": activation}))
        run.fit()
        runs[activation] = run
    assert runs[None].logits and not runs["softmax"].logits
    for key in ("loss", "accuracy", "test_loss", "test_accuracy"):
        assert [row[key] for row in runs[None].history] == pytest.approx(
            [row[key] for row in runs["softmax"].history], rel=1e-4), key


class _InfiniteStatistics(keras_loop.keras.callbacks.Callback):
    """Before step 2, makes a batch norm's moving variance infinite: training normalises with
    the batch's statistics, so the loss stays finite while a weight is not."""

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 1:
            variance = self.model.get_layer("conv1_bn").moving_variance
            variance.assign(np.full(variance.shape, np.inf, "float32"))


def test_weights_that_are_no_longer_finite_are_never_saved(tmp_path):
    from training import keras_checkpoints
    from training.interrupts import TrainingDiverged

    settings = dict(checkpoint_every_steps=1, model_dir=str(tmp_path))
    run = keras_loop.KerasTrainer(_tiny(**settings))
    with pytest.raises(TrainingDiverged) as error:
        run.fit([_InfiniteStatistics()])
    last = os.path.join(str(tmp_path), "keras_step1.weights.h5")
    assert str(error.value) == (
        f"Training diverged in update 2 of 8 (epoch 1): the weights are no longer finite. "
        f"Stopped; the last checkpoint, {last}, is from before. Lower the learning rate (now "
        "0.1) or check the data.")
    assert keras_checkpoints.read_state(str(tmp_path))["weights"] == "keras_step1.weights.h5"
    resumed = keras_loop.KerasTrainer(_tiny(**settings))  # reads that checkpoint
    assert all(np.isfinite(keras_loop.ops.convert_to_numpy(v)).all()
               for v in resumed.model.weights)


class _StopAfterFirstEpoch(keras_loop.keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


def test_a_stopped_run_resumes_to_the_weights_and_history_of_an_uninterrupted_one(tmp_path):
    config = _tiny(weight_decay=0.01, deterministic=True, model_dir=str(tmp_path / "whole"))
    whole = keras_loop.KerasTrainer(config)
    whole.fit()
    parts = config.replace(model_dir=str(tmp_path / "parts"))
    first = keras_loop.KerasTrainer(parts)
    first.fit([_StopAfterFirstEpoch()])
    assert first.results["status"] == "stopped" and first.results["steps"] == 4
    second = keras_loop.KerasTrainer(parts)
    assert second._resumed["epoch"] == 1 and second._resumed["step"] == 4
    second.fit()
    assert second.results["status"] == "completed" and second.results["steps"] == 8
    for mine, reference in zip(second.model.get_weights(), whole.model.get_weights()):
        np.testing.assert_array_equal(mine, reference)
    for key in ("epoch", "step", "loss", "accuracy", "test_loss", "test_accuracy"):
        assert [row[key] for row in second.history] == [row[key] for row in whole.history], key
    assert sorted(os.listdir(tmp_path / "parts")) == sorted(os.listdir(tmp_path / "whole"))
