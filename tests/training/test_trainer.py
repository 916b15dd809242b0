"""The training loop on the in-memory test pipeline: learning, files, callbacks, resume,
divergence, mixed precision, XLA, evaluation."""

import csv
import glob
import json
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training import fakes
from tests.training.conftest import TINY_MODEL, tiny_settings
from training import config, outputs, steps, trainer


def experiment(**overrides):
    return config.from_settings(tiny_settings(**overrides))


class Recorder(keras.callbacks.Callback):
    """Records the callback calls."""

    def __init__(self, stop_at=None):
        super().__init__()
        self.calls = []
        self.stop_at = stop_at  # (epoch, batch) after which to set model.stop_training
        self.epoch = None

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.calls.append(("epoch_begin", epoch))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, sorted(logs)))
        if self.stop_at == (self.epoch, batch):
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, sorted(logs)))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end",))


def event_tags(folder):
    tags = {}
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 3-epoch run with a validation split, every output, mid-epoch checkpoints."""
    model_dir = str(tmp_path_factory.mktemp("run") / "model_dir")
    keras.utils.set_random_seed(0)
    pipeline = fakes.FakePipeline(train_examples=128, validation_examples=24, test_examples=40)
    recorder = Recorder()
    settings = tiny_settings(
        epochs=3, model_dir=model_dir, save_model=True, keep_checkpoints=2,
        checkpoint_every_steps=3, summary_every_steps=2,
        model_overrides=dict(TINY_MODEL, bn_momentum=0.5))
    result = trainer.run(config.from_settings(settings), pipeline=pipeline, callbacks=[recorder])
    return result, model_dir, pipeline, recorder, settings


def test_run_learns(finished):
    result, *_ = finished
    history = result.history.history
    assert history["accuracy"][-1] > 0.9
    assert history["test_accuracy"][-1] > 0.6  # chance: 0.25
    assert history["loss"][-1] < history["loss"][0]


def test_results_json(finished):
    result, model_dir, _, _, settings = finished
    with open(os.path.join(model_dir, "results.json")) as file:
        results = json.load(file)
    assert results == json.loads(json.dumps(result.results))
    history = result.history.history
    assert (results["status"], results["epochs"], results["steps"], results["total_steps"],
            results["steps_per_epoch"], results["global_batch_size"]) == (
        "completed", 3, 24, 24, 8, 16)
    assert results["final_test_accuracy"] == history["test_accuracy"][-1]
    assert results["final_test_error"] == pytest.approx(1 - history["test_accuracy"][-1])
    assert results["best_test_accuracy"] == max(history["test_accuracy"])
    assert results["best_validation_accuracy"] == max(history["val_accuracy"])
    assert results["monitor"] == "val_accuracy"
    assert results["best_epoch"] == 1 + int(np.argmax(history["val_accuracy"]))
    assert results["images_per_second"] > 0 and results["wall_seconds"] > results[
        "train_seconds"] > 0
    assert results["config"] == config.from_settings(settings).to_dict()
    assert results["latest_checkpoint"].endswith("checkpoints/ckpt-24")
    assert results["best_checkpoint"].endswith(f"best/ckpt-{8 * results['best_epoch']}")


def test_checkpoints_keep_the_latest_and_the_best(finished):
    _, model_dir, *_ = finished
    latest = sorted(os.path.basename(p) for p in glob.glob(f"{model_dir}/checkpoints/*.index"))
    assert latest == ["ckpt-21.index", "ckpt-24.index"]  # keep_checkpoints=2
    assert len(glob.glob(f"{model_dir}/best/*.index")) == 1
    reader = tf.train.load_checkpoint(f"{model_dir}/checkpoints/ckpt-21")
    assert reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE") == 21
    assert reader.get_tensor("epoch/.ATTRIBUTES/VARIABLE_VALUE") == 2
    assert reader.get_tensor("batch_in_epoch/.ATTRIBUTES/VARIABLE_VALUE") == 5


def test_history_csv_and_curves_png(finished):
    result, model_dir, *_ = finished
    with open(os.path.join(model_dir, "history.csv")) as file:
        rows = list(csv.DictReader(file))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [int(r["step"]) for r in rows] == [8, 16, 24]
    assert [float(r["test_error"]) for r in rows] == pytest.approx(
        result.history.history["test_error"])
    for column in ("loss", "error", "val_loss", "val_error", "test_loss", "learning_rate",
                   "images_per_second"):
        assert column in rows[0]
    with open(os.path.join(model_dir, "curves.png"), "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("every_s, drawn_after_epochs", [(0.0, [1, 2, 3, 3]), (1e9, [1, 3])])
def test_curves_are_redrawn_at_most_every_plot_interval_and_at_the_end(
        tmp_path, monkeypatch, every_s, drawn_after_epochs):
    drawn = []
    monkeypatch.setattr(outputs, "PLOT_EVERY_S", every_s)
    monkeypatch.setattr(outputs, "plot_curves", lambda rows, path, title="": drawn.append(
        len(rows)))
    trainer.run(experiment(epochs=3, model_dir=str(tmp_path / "run"), save_model=False),
                fakes.FakePipeline())
    assert drawn == drawn_after_epochs


def test_tensorboard_logs(finished):
    _, model_dir, *_ = finished
    train = event_tags(os.path.join(model_dir, "logs", "train"))
    assert train["batch_loss"] == list(range(2, 25, 2))  # summary_every_steps=2
    assert train["epoch_loss"] == [8, 16, 24]
    assert event_tags(os.path.join(model_dir, "logs", "test"))["epoch_accuracy"] == [8, 16, 24]
    assert event_tags(os.path.join(model_dir, "logs", "validation"))["epoch_error"] == [
        8, 16, 24]


def test_final_keras_model_and_saved_model(finished):
    result, model_dir, pipeline, *_ = finished
    images = pipeline._splits["test"][0][:5]
    expected = result.model.predict(images, verbose=0)
    assert result.results["exports"] == {
        name: os.path.join(model_dir, file) for name, file in (
            ("class_names", "class_names.json"), ("keras", "model.keras"),
            ("saved_model", "saved_model"))}
    classes = ["class0", "class1", "class2", "class3"]
    assert result.results["class_names"] == classes
    with open(os.path.join(model_dir, "class_names.json")) as file:
        assert json.load(file) == classes
    # The fake pipeline's evaluation leaves images as they are: so does the exports' front.
    loaded = keras.saving.load_model(os.path.join(model_dir, "model.keras"))
    # keras_resnets.portable: built-in layers only, so the file loads without keras_resnets.
    assert all(type(layer).__module__.startswith("keras.") for layer in loaded.layers)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), expected, atol=1e-6)
    served = tf.saved_model.load(os.path.join(model_dir, "saved_model"))
    np.testing.assert_allclose(served.serve(tf.constant(images)).numpy(), expected, atol=1e-5)
    with open(os.path.join(model_dir, "config.json")) as file:
        assert json.load(file) == result.results["config"]


def test_keras_callbacks_and_history(finished):
    result, _, _, recorder, _ = finished
    calls = recorder.calls
    assert calls[0] == ("train_begin",) and calls[-1] == ("train_end",)
    assert [c[1] for c in calls if c[0] == "epoch_begin"] == [0, 1, 2]
    assert [c[1] for c in calls if c[0] == "batch_end"] == list(range(8)) * 3
    assert calls[2][2] == ["accuracy", "loss"]
    epoch_logs = [c[2] for c in calls if c[0] == "epoch_end"]
    assert len(epoch_logs) == 3
    for key in ("loss", "accuracy", "error", "learning_rate", "val_loss", "val_accuracy",
                "test_loss", "test_accuracy", "test_error", "images_per_second"):
        assert key in epoch_logs[0]
    assert result.history.epoch == [0, 1, 2]
    assert len(result.history.history["val_error"]) == 3
    assert result.model.history is result.history


def test_rerunning_a_finished_run_trains_nothing(finished):
    _, model_dir, _, _, settings = finished
    pipeline = fakes.FakePipeline(train_examples=128, validation_examples=24, test_examples=40)
    again = trainer.run(config.from_settings(settings), pipeline=pipeline)
    assert [c for c in pipeline.calls if c[0] == "train"] == []
    assert again.results["steps"] == 24
    assert again.history.epoch == [0, 1, 2]


def test_more_epochs_continue_the_run(tmp_path, capsys):
    model_dir = str(tmp_path / "run")
    first = trainer.run(experiment(epochs=1, model_dir=model_dir), fakes.FakePipeline())
    assert first.results["steps"] == 8
    pipeline = fakes.FakePipeline()
    second = trainer.run(experiment(epochs=2, model_dir=model_dir, verbose=2), pipeline)
    assert [c for c in pipeline.calls if c[0] == "train"] == [("train", 1, 0, 0)]
    assert second.results["steps"] == 16
    assert second.history.epoch == [0, 1]
    assert second.history.history["loss"][0] == first.history.history["loss"][0]
    out = capsys.readouterr().out
    assert "Resuming with changed settings: optimization.epochs: 1 -> 2" in out
    assert "Resuming from " in out and "epoch 2, batch 0, step 8" in out


def test_stopping_mid_epoch_and_resuming_matches_an_uninterrupted_run(tmp_path):
    reference = trainer.run(experiment(epochs=2), fakes.FakePipeline())
    model_dir = str(tmp_path / "run")
    stopped = trainer.run(experiment(epochs=2, model_dir=model_dir), fakes.FakePipeline(),
                          callbacks=[Recorder(stop_at=(1, 2))])
    assert (stopped.results["status"], stopped.results["steps"]) == ("stopped", 11)
    pipeline = fakes.FakePipeline()
    resumed = trainer.run(experiment(epochs=2, model_dir=model_dir), pipeline)
    assert [c for c in pipeline.calls if c[0] == "train"] == [("train", 1, 3, 0)]
    assert resumed.results["steps"] == 16
    assert resumed.history.history["loss"] == pytest.approx(
        reference.history.history["loss"], abs=1e-5)
    for got, want in zip(resumed.model.get_weights(), reference.model.get_weights()):
        np.testing.assert_allclose(got, want, atol=1e-5)


class Signaller(keras.callbacks.Callback):
    """Delivers a signal to the trainer after a given batch, as the OS would between steps."""

    def __init__(self, run, at, signum):
        super().__init__()
        self.run, self.at, self.signum, self.epoch = run, at, signum, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            self.run._stop.receive(self.signum)


@pytest.mark.parametrize("at", [(0, 3), (0, 7)], ids=["mid-epoch", "last-batch"])
def test_a_signal_checkpoints_its_step_and_the_resumed_run_matches(tmp_path, at):
    # With random masks, which the resumed run must draw as the uninterrupted one does.
    masks = dict(model_overrides={**TINY_MODEL, "drop_path_rate": 0.3, "dropout_rate": 0.2})
    reference = trainer.run(experiment(epochs=2, **masks), fakes.FakePipeline())
    model_dir = str(tmp_path / "run")
    run = trainer.Trainer(experiment(epochs=2, model_dir=model_dir, **masks),
                          fakes.FakePipeline())
    with pytest.raises(trainer.TrainingInterrupted) as error:
        run.fit(callbacks=[Signaller(run, at, signal.SIGTERM)])
    step = at[1] + 1
    assert error.value.exit_code == 143
    assert str(error.value) == (
        f"Interrupted by SIGTERM at step {step} of 16: checkpoint {model_dir}/checkpoints/"
        f"ckpt-{step} saved; rerun the same command to resume.")
    with open(os.path.join(model_dir, "results.json")) as file:
        assert json.load(file)["status"] == "interrupted"
    assert not os.path.exists(os.path.join(model_dir, "model.keras"))
    resumed = trainer.run(experiment(epochs=2, model_dir=model_dir, **masks),
                          fakes.FakePipeline())
    assert (resumed.results["status"], resumed.results["steps"]) == ("completed", 16)
    for got, want in zip(resumed.model.get_weights(), reference.model.get_weights(),
                         strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_resuming_with_another_batch_size_is_an_error(tmp_path):
    model_dir = str(tmp_path / "run")
    trainer.run(experiment(epochs=1, model_dir=model_dir), fakes.FakePipeline())
    with pytest.raises(ValueError, match="holds a run with global_batch_size=16, but this run "
                                         "has global_batch_size=32"):
        trainer.Trainer(experiment(epochs=1, model_dir=model_dir, global_batch_size=32),
                        fakes.FakePipeline()).fit()


def test_resuming_another_model_is_an_error(tmp_path):
    model_dir = str(tmp_path / "run")
    trainer.run(experiment(epochs=1, model_dir=model_dir), fakes.FakePipeline())
    other = experiment(epochs=1, model_dir=model_dir,
                       model_overrides={"depth": 8, "stage_widths": (4, 8, 32)})
    with pytest.raises(ValueError, match="holds a checkpoint .* of a different model"):
        trainer.Trainer(other, fakes.FakePipeline()).fit()


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model_dir = str(tmp_path / "run")
    run = trainer.Trainer(experiment(epochs=3, learning_rate=1e5, model_dir=model_dir,
                                     checkpoint_every_steps=1), fakes.FakePipeline())
    with pytest.raises(trainer.TrainingDiverged) as error:
        run.fit()
    message = str(error.value)
    assert message.startswith("Training diverged in update ")
    assert "Stopped without saving this state; the last good checkpoint" in message
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    assert latest in message
    with open(os.path.join(model_dir, "results.json")) as file:
        results = json.load(file)
    assert (results["status"], results["message"]) == ("diverged", message)
    restored = trainer.Trainer(experiment(epochs=3, model_dir=model_dir), fakes.FakePipeline())
    restored.checkpoint.restore(latest).assert_existing_objects_matched().expect_partial()
    assert all(np.isfinite(w).all() for w in restored.model.get_weights())
    assert int(restored.step.numpy()) < int(message.split("update ")[1].split(" ")[0])


def test_a_loss_above_max_loss_stops_the_run():
    run = trainer.Trainer(experiment(max_loss=0.01), fakes.FakePipeline())
    with pytest.raises(trainer.TrainingDiverged,
                       match=r"in update 1 of 16 \(epoch 1\): the loss .* exceeds "
                             r"max_loss=0.01.*no model_dir"):
        run.fit()


def test_total_steps_end_within_an_epoch_and_evaluation_every_two_epochs():
    result = trainer.run(experiment(epochs=None, total_steps=21, eval_every_epochs=2),
                         fakes.FakePipeline())
    assert result.results["steps"] == 21 and result.results["epochs"] == 3
    history = result.history.history
    assert len(history["loss"]) == 3
    assert len(history["test_accuracy"]) == 2  # epochs 2 and 3 (the last is always evaluated)


def test_ten_crop_evaluation_averages_the_crops_probabilities():
    pipeline = fakes.FakePipeline(eval_crops=10, num_classes=6)
    run = trainer.Trainer(experiment(epochs=1), pipeline)
    run.fit()
    metrics = run.evaluate("test")
    images, labels = pipeline._splits["test"]
    crops = np.stack([images, images[:, :, ::-1]] * 5, axis=1)
    probs = run.model.predict(crops.reshape((-1,) + images.shape[1:]), verbose=0)
    probs = probs.reshape(len(labels), 10, -1).mean(axis=1)
    assert metrics["examples"] == 40
    assert metrics["accuracy"] == pytest.approx(np.mean(probs.argmax(-1) == labels))
    top5 = np.mean([label in np.argsort(p)[-5:] for p, label in zip(probs, labels)])
    assert metrics["top5_accuracy"] == pytest.approx(top5)
    assert metrics["loss"] == pytest.approx(
        -np.mean(np.log(np.maximum(probs[np.arange(40), labels], 1e-7))), rel=1e-4)


@pytest.mark.parametrize("crops", [10, 1])
@pytest.mark.parametrize("logits_known", [True, False])
def test_top5_ranks_probabilities_below_the_loss_clip(crops, logits_known, monkeypatch):
    # The classifier is sure of class 0 and ranks 9, 8, 7, 6 next, all below 1e-7: clipping them
    # to 1e-7 before ranking made every class tie, so every example counted as a top-5 hit.
    if not logits_known:  # as for a model whose outputs are probabilities of unknown origin
        monkeypatch.setattr(steps, "_logits_of", lambda outputs, from_logits: None)
    pipeline = fakes.FakePipeline(eval_crops=crops, num_classes=10)
    run = trainer.Trainer(experiment(epochs=1), pipeline)
    classifier = run.model.get_layer("predictions")
    kernel, bias = classifier.get_weights()
    classifier.set_weights([np.zeros_like(kernel), np.array([30.0] + list(range(9)), "float32")])
    metrics = run.evaluate("test")
    labels = pipeline._splits["test"][1]
    assert metrics["accuracy"] == pytest.approx(np.mean(labels == 0))
    assert metrics["top5_accuracy"] == pytest.approx(np.mean(np.isin(labels, [0, 6, 7, 8, 9])))
    assert metrics["top5_accuracy"] < 1.0


def test_weight_decay_applies_to_kernels_or_to_everything():
    run = trainer.Trainer(experiment(weight_decay=1e-3), fakes.FakePipeline())
    kernels = [v for v in run.model.trainable_variables if v.name == "kernel"]
    assert [v.path for v in run._decayed] == [v.path for v in run.model.trainable_variables]
    expected = 0.5 * 1e-3 * sum(float(np.sum(np.square(v.numpy())))
                                for v in run.model.trainable_variables)
    assert float(run._regularization()) == pytest.approx(expected, rel=1e-5)
    kernels_only = trainer.Trainer(experiment(weight_decay=1e-3, decay_bn_and_bias=False),
                                   fakes.FakePipeline())
    assert [v.name for v in kernels_only._decayed] == ["kernel"] * len(kernels)
    expected = 0.5 * 1e-3 * sum(float(np.sum(np.square(v.numpy()))) for v in kernels_only._decayed)
    assert float(kernels_only._regularization()) == pytest.approx(expected, rel=1e-5)


def test_cross_entropy_with_label_smoothing():
    log_probs = tf.math.log(tf.constant([[0.7, 0.2, 0.1]]))
    labels = tf.constant([0], tf.int64)
    plain = float(steps.cross_entropy(labels, log_probs, 0.0)[0])
    smooth = float(steps.cross_entropy(labels, log_probs, 0.3)[0])
    assert plain == pytest.approx(-np.log(0.7))
    target = np.array([0.7 + 0.1, 0.1, 0.1])
    assert smooth == pytest.approx(-np.sum(target * np.log([0.7, 0.2, 0.1])), rel=1e-6)


@pytest.mark.parametrize("mixed, policy", [("float16", "mixed_float16"),
                                           ("bfloat16", "mixed_bfloat16")])
def test_mixed_precision_trains_with_float32_outputs(mixed, policy):
    run = trainer.Trainer(experiment(epochs=None, total_steps=3, mixed_precision=mixed),
                          fakes.FakePipeline())
    history = run.fit()
    assert run.runtime.dtype_policy == policy
    assert run.model.get_layer("conv1_conv").compute_dtype == policy.split("_")[1]
    assert run.model.get_layer("conv1_conv").kernel.dtype == "float32"
    assert run.model.output.dtype == "float32"
    assert run.model.predict(np.zeros((2, 8, 8, 3), "float32"), verbose=0).dtype == np.float32
    assert isinstance(run.optimizer, keras.optimizers.LossScaleOptimizer) is (mixed == "float16")
    assert np.isfinite(history.history["loss"]).all()
    assert keras.config.dtype_policy().name == "float32"  # restored


def test_jit_compile_true_trains_with_xla_on_cpu():
    result = trainer.run(experiment(epochs=None, total_steps=2, jit_compile="true"),
                         fakes.FakePipeline())
    assert result.results["jit_compile"] is True
    assert np.isfinite(result.history.history["loss"]).all()


def test_nesterov_momentum_reaches_the_optimizer():
    run = trainer.Trainer(experiment(nesterov=True, momentum=0.8), fakes.FakePipeline())
    assert run.optimizer.nesterov is True and run.optimizer.momentum == 0.8


def test_progress_bar_and_epoch_lines(capsys):
    trainer.run(experiment(epochs=1, verbose=1), fakes.FakePipeline())
    out = capsys.readouterr().out
    assert "Training resnet8_widths4-8-16 (ResNet-8: " in out
    assert "global batch 16 = 1 replica" in out
    assert "images/s" in out and "8/8" in out
    assert "Epoch 1/1: loss " in out and "test_error " in out
    trainer.run(experiment(epochs=1, verbose=2), fakes.FakePipeline())
    out = capsys.readouterr().out
    assert "8/8" not in out and "Epoch 1/1: loss " in out
    trainer.run(experiment(epochs=1, verbose=0), fakes.FakePipeline())
    assert capsys.readouterr().out == ""


def test_without_model_dir_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = trainer.run(experiment(epochs=1, save_model=True), fakes.FakePipeline())
    assert os.listdir(tmp_path) == []
    assert "latest_checkpoint" not in result.results


def test_a_batch_larger_than_the_data_is_an_error():
    with pytest.raises(ValueError, match="batch_size=256 is larger than the 128 training images"):
        trainer.Trainer(experiment(global_batch_size=256), fakes.FakePipeline())


def test_evaluate_test_false_never_touches_the_test_split(tmp_path):
    pipeline = fakes.FakePipeline(train_examples=64, validation_examples=16, test_examples=16)
    result = trainer.run(experiment(epochs=2, evaluate_test=False,
                                    model_dir=str(tmp_path / "run")), pipeline)
    assert [call[1] for call in pipeline.calls if call[0] == "evaluation"] == ["validation"] * 2
    assert "final_test_accuracy" not in result.results
    assert result.results["final_validation_error"] == result.history.history["val_error"][-1]
    assert os.path.exists(tmp_path / "run" / "results.json")
    with pytest.raises(ValueError, match=r"evaluate_test=False needs a validation split"):
        trainer.Trainer(experiment(evaluate_test=False), fakes.FakePipeline())


def test_epoch_logs_prefix_the_split_and_keep_the_epoch_metrics():
    sums = [6.0, 3.0, 4.0, 4.0]  # loss, correct, correct_top5, count
    metrics = steps.evaluation_metrics(sums, 10, "validation", "fake")
    assert steps.epoch_logs("validation", metrics) == {
        "val_loss": 1.5, "val_accuracy": 0.75, "val_error": 0.25, "val_top5_accuracy": 1.0,
        "val_top5_error": 0.0, "val_examples": 4}
    assert steps.epoch_logs("test", steps.evaluation_metrics(sums, 3, "test", "fake")) == {
        "test_loss": 1.5, "test_accuracy": 0.75, "test_error": 0.25, "test_examples": 4}
