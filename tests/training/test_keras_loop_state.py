"""`training.keras_loop`'s checkpoints, signals, weight average, clipping and first weights.

The tests run on the backend of the test process (TensorFlow in the default suite: the Keras
loop's code is the same on every backend); `test_on_jax` reruns the interrupted run in a
`KERAS_BACKEND=jax` pytest subprocess, `test_on_jax_and_torch` (slow) every backend-neutral one
on JAX and on PyTorch.
"""

import doctest
import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.conftest import REPO_ROOT
from tests.training.conftest import TINY_MODEL, subprocess_env, tiny_settings
from training import config as config_lib
from training import initial_weights, keras_checkpoints, keras_ema, keras_evaluate, keras_loop
from training.interrupts import TrainingInterrupted

NEUTRAL = ["interrupted_within", "best_epochs_weights", "head_multiplier_scales",
           "average_is", "from_a_keras_file", "start_from_its_average", "kill_at_any_moment"]


def _tiny(**settings):
    """4 steps per epoch, 2 epochs."""
    return config_lib.from_settings(tiny_settings(
        synthetic_examples=64, image_size=8, num_classes=4, deterministic=True, **settings))


class _SignalAt(keras.callbacks.Callback):
    """Sends `signum` to this process at the end of batch `batch` of epoch `epoch`."""

    def __init__(self, epoch, batch, signum):
        super().__init__()
        self.at, self.signum, self.epoch = (epoch, batch), signum, None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            os.kill(os.getpid(), self.signum)


def _arrays(trainer):
    return [keras.ops.convert_to_numpy(v) for v in
            trainer.model.weights + trainer.optimizer.variables]


def test_a_run_interrupted_within_an_epoch_resumes_to_the_uninterrupted_run(tmp_path):
    settings = dict(ema_decay=0.9, clip_global_norm=0.5, weight_decay=0.001,
                    checkpoint_every_steps=3,  # and random masks, which must go on as they were
                    model_overrides={**TINY_MODEL, "drop_path_rate": 0.3, "dropout_rate": 0.2})
    whole = keras_loop.KerasTrainer(_tiny(model_dir=str(tmp_path / "whole"), **settings))
    whole.fit()
    config = _tiny(model_dir=str(tmp_path / "parts"), **settings)
    first = keras_loop.KerasTrainer(config)
    handler = signal.getsignal(signal.SIGINT)  # SIG_IGN where the tests run in the background
    with pytest.raises(TrainingInterrupted) as error:
        first.fit([_SignalAt(1, 0, signal.SIGINT)])  # epoch 2's first batch: step 5
    assert error.value.exit_code == 130
    state = keras_checkpoints.read_state(config.runtime.model_dir)
    assert (state["epoch"], state["batch"], state["step"], state["weights"]) == (
        1, 1, 5, "keras_step5.weights.h5")
    assert first.results["status"] == "interrupted" and first.results["steps"] == 5
    assert signal.getsignal(signal.SIGINT) is handler  # restored
    second = keras_loop.KerasTrainer(config)
    second.fit()
    assert second.results["status"] == "completed" and second.results["steps"] == 8
    for mine, reference in zip(_arrays(second), _arrays(whole), strict=True):
        np.testing.assert_allclose(mine, reference, rtol=0, atol=1e-6)
    for key in ("epoch", "step", "loss", "accuracy", "test_loss", "test_accuracy"):
        assert [row[key] for row in second.history] == pytest.approx(
            [row[key] for row in whole.history], rel=1e-6), key
    assert second.results["latest_checkpoint"] == os.path.join(
        config.runtime.model_dir, "keras_step8.weights.h5")


def test_a_run_from_before_a_setting_existed_resumes_and_other_settings_are_refused(tmp_path):
    config = _tiny(model_dir=str(tmp_path))
    with pytest.raises(TrainingInterrupted):
        keras_loop.KerasTrainer(config).fit([_SignalAt(0, 1, signal.SIGINT)])
    path = tmp_path / "config.json"
    written = json.loads(path.read_text())
    del written["optimization"]["loss"], written["optimization"]["bce_target_threshold"]
    path.write_text(json.dumps(written))  # as the version before these settings wrote it
    resumed = keras_loop.KerasTrainer(config)
    resumed.fit()
    assert resumed.results["status"] == "completed" and resumed.results["steps"] == 8
    resumed.close()
    written["optimization"]["learning_rate"] = 0.5
    path.write_text(json.dumps(written))
    with pytest.raises(ValueError, match="holds a run with other settings"):
        keras_loop.KerasTrainer(config)


def test_the_best_epochs_weights_are_kept_until_a_better_epoch(tmp_path):
    run = keras_loop.KerasTrainer(_tiny(model_dir=str(tmp_path), epochs=3, ema_decay=0.9))
    evaluate, calls = run.evaluate, []

    def scripted(split):  # the best epoch is the first
        calls.append(split)
        return {**evaluate(split), "accuracy": [0.5, 0.25, 0.4][calls.count(split) - 1]}

    class Keep(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            kept.append(_arrays(run))

    run.evaluate, kept = scripted, []
    run.fit([Keep()])
    best = os.path.join(str(tmp_path), "keras_best_step4.weights.h5")
    assert (run.results["best_epoch"], run.results["best_checkpoint"]) == (1, best)
    assert keras_checkpoints.read_state(str(tmp_path))["best"] == os.path.basename(best)
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".h5")) == [
        "keras_best_step4.weights.h5", "keras_step12.weights.h5"]
    assert keras_evaluate.find_checkpoint(str(tmp_path), "best") == (best, 4)
    fresh = keras_loop.KerasTrainer(_tiny(ema_decay=0.9))
    fresh.model.load_weights(best)
    for mine, reference in zip(_arrays(fresh), kept[0], strict=True):
        np.testing.assert_array_equal(mine, reference)
    assert not all(np.array_equal(a, b) for a, b in zip(kept[0], kept[2]))
    target = _tiny().model.build(4, (8, 8, 3))  # --init_weights=<this run's directory>
    start = initial_weights.load(target, str(tmp_path))
    assert (start.path, start.classifier_reinitialized) == (best, False)
    with keras_ema.averaged(fresh.average):  # the average of the best epoch, as evaluated
        averaged = _by_layer(fresh.model)
    for name, values in _by_layer(target).items():
        for mine, want in zip(values, averaged[name], strict=True):
            np.testing.assert_array_equal(mine, want, err_msg=name)


def test_the_average_is_evaluated_exported_and_differs_from_the_weights(tmp_path):
    run = keras_loop.KerasTrainer(_tiny(ema_decay=0.5, epochs=1, save_model=True,
                                        export_format="keras", model_dir=str(tmp_path)))
    before = [keras.ops.convert_to_numpy(v) for v in run.average.sources]
    run.fit()
    sources = [keras.ops.convert_to_numpy(v) for v in run.average.sources]
    averages = [keras.ops.convert_to_numpy(v) for v in run.average.averages]
    assert len(averages) == len(run.model.trainable_variables) + 14  # 7 batch norms' statistics
    assert not all(np.array_equal(a, s) for a, s in zip(averages, sources))
    raw = run._evaluation_sums("test")
    with keras_ema_swap(run):
        averaged = run._evaluation_sums("test")
    assert run.evaluate("test")["loss"] == pytest.approx(averaged[0] / averaged[3], rel=1e-6)
    assert raw[0] != averaged[0]
    assert run.history[-1]["test_loss"] == pytest.approx(averaged[0] / averaged[3], rel=1e-6)
    exported = keras.models.load_model(tmp_path / "model.keras", compile=False)
    kernel = exported.get_layer("conv1_conv").kernel
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), averages[0], atol=1e-7)
    assert not np.array_equal(before[0], sources[0])  # the weights trained


def keras_ema_swap(run):
    return keras_ema.averaged(run.average)


def test_the_average_example_runs():
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(keras_ema):
        runner.run(test)
    assert runner.summarize(verbose=False) == doctest.TestResults(failed=0, attempted=6)


def test_the_average_and_clipping_give_the_tensorflow_loops_numbers():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("compares with training.trainer, which runs on TensorFlow")
    from training import trainer

    config = _tiny(ema_decay=0.9, clip_global_norm=0.05, epochs=1, evaluate_test=True)
    ours, theirs = keras_loop.KerasTrainer(config), trainer.Trainer(config)
    theirs.model.set_weights(ours.model.get_weights())
    theirs.average.reset()
    ours.fit()
    theirs.fit()
    assert ours.average.decay == theirs.average.decay == 0.9
    for mine, reference in zip(ours.average.averages, theirs.average.averages, strict=True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(mine), reference.numpy(),
                                   rtol=1e-4, atol=1e-6)
    for mine, reference in zip(ours.model.weights, theirs.model.weights, strict=True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(mine), reference.numpy(),
                                   rtol=1e-4, atol=1e-6)


def test_the_head_multiplier_scales_the_first_update_of_the_classifier_only():
    x = np.random.default_rng(0).uniform(size=(16, 8, 8, 3)).astype("float32")
    y = np.eye(4, dtype="float32")[np.arange(16) % 4]
    for optimizer in ("sgd", "adamw"):
        changes, first = [], None
        for multiplier in (1.0, 10.0):
            run = keras_loop.KerasTrainer(
                _tiny(optimizer=optimizer, head_lr_multiplier=multiplier))
            first = first or run.model.get_weights()
            run.model.set_weights(first)
            variables = run.model.trainable_variables
            start = [keras.ops.convert_to_numpy(v) for v in variables]
            run.model.train_on_batch(x, y)
            changes.append({v.path: keras.ops.convert_to_numpy(v) - value
                            for v, value in zip(variables, start)})
        head = {v.path for v in run.model.get_layer("predictions").trainable_weights}
        assert len(head) == 2
        for path, change in changes[0].items():
            expected = 10 * change if path in head else change
            np.testing.assert_allclose(changes[1][path], expected, rtol=1e-4, atol=1e-7,
                                       err_msg=f"{optimizer}: {path}")


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_the_head_multiplier_gives_the_tensorflow_loops_numbers(optimizer):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("compares with training.trainer, which runs on TensorFlow")
    from training import trainer

    config = _tiny(optimizer=optimizer, head_lr_multiplier=10.0, epochs=1)
    ours, theirs = keras_loop.KerasTrainer(config), trainer.Trainer(config)
    theirs.model.set_weights(ours.model.get_weights())
    ours.fit()
    theirs.fit()
    for mine, reference in zip(ours.model.weights, theirs.model.weights, strict=True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(mine), reference.numpy(),
                                   rtol=1e-4, atol=1e-6)


def test_init_weights_from_a_keras_file_start_the_run(tmp_path):
    keras.utils.set_random_seed(7)  # other first weights than the run's own (seed 0)
    source = _tiny().model.build(4, (8, 8, 3))
    path = str(tmp_path / "source.keras")
    source.save(path)
    run = keras_loop.KerasTrainer(_tiny(init_weights=path, trainable_from="stage3", epochs=1,
                                        model_dir=str(tmp_path / "run")))
    fresh = keras_loop.KerasTrainer(_tiny()).model
    assert not np.array_equal(fresh.get_layer("conv1_conv").get_weights()[0],
                              source.get_layer("conv1_conv").get_weights()[0])
    run.fit()
    for name in ("conv1_conv", "conv2_block1_1_conv"):  # frozen: still the source's weights
        np.testing.assert_array_equal(run.model.get_layer(name).get_weights()[0],
                                      source.get_layer(name).get_weights()[0])
    assert run.results["initialization"] == {
        "source": path, "path": path, "source_classes": 4, "classifier_reinitialized": False,
        "reason": "", "weight_average": False}
    assert run.results["frozen_groups"] == ["stem", "stage1", "stage2"]


def test_init_weights_from_a_run_with_a_weight_average_start_from_its_average(tmp_path):
    """The average is what the run evaluated and chose its best epoch by. It is a variable of
    the file's optimizer, here a loss-scaling one, and follows only the trained weights."""
    source = keras_loop.KerasTrainer(_tiny(model_dir=str(tmp_path), epochs=1, ema_decay=0.5,
                                           freeze=("stem",), mixed_precision="float16"))
    source.fit()
    raw = _by_layer(source.model)
    with keras_ema.averaged(source.average):
        averaged = _by_layer(source.model)
    target = _tiny().model.build(4, (8, 8, 3))
    start = initial_weights.load(target, str(tmp_path))
    best = os.path.join(str(tmp_path), "keras_best_step4.weights.h5")
    assert (start.path, start.weight_average) == (best, True)
    assert start.line() == f"Initialised from {best} (its weight average)."
    loaded = _by_layer(target)
    assert loaded.keys() == averaged.keys()
    for name, values in loaded.items():
        for mine, want in zip(values, averaged[name], strict=True):
            np.testing.assert_array_equal(mine, want, err_msg=name)
    differ = [name for name in loaded if not all(
        np.array_equal(a, b) for a, b in zip(loaded[name], raw[name]))]
    assert "predictions" in differ and "conv1_conv" not in differ and "conv1_bn" not in differ


def _by_layer(model):
    return {layer.name: [keras.ops.convert_to_numpy(w) for w in layer.weights]
            for layer in model.layers if layer.weights}


def test_a_checkpoint_survives_a_kill_at_any_moment_of_its_writing(tmp_path, monkeypatch):
    """Each write of `save` in turn is cut short as a kill there would leave it; the state then
    still names a whole checkpoint (the previous one until the new state is written), and the
    next save removes what the cut one left."""
    run = keras_loop.KerasTrainer(_tiny())
    model_dir = str(tmp_path)
    keras_checkpoints.save(model_dir, run.model, {"step": 1, "history": []})
    first = _arrays(run)
    kernel = run.model.get_layer("conv1_conv").kernel
    kernel.assign(np.ones(kernel.shape, "float32"))

    class Killed(BaseException):
        pass

    def half_written(path, **kwargs):
        with open(path, "wb") as file:
            file.write(b"\x89HDF")
        raise Killed()

    def kill(*args, **kwargs):
        raise Killed()

    for stage, (owner, name, cut) in enumerate([
            (run.model, "save_weights", half_written), (os, "replace", kill),
            (keras_checkpoints, "atomic_write", kill), (os, "remove", kill)]):
        with monkeypatch.context() as patch:
            patch.setattr(owner, name, cut)
            with pytest.raises(Killed):
                keras_checkpoints.save(model_dir, run.model, {"step": 2, "history": []})
        fresh = keras_loop.KerasTrainer(_tiny())
        state = keras_checkpoints.load(model_dir, fresh.model)
        assert state["step"] == (1 if stage < 3 else 2), stage
        expected = first if stage < 3 else _arrays(run)
        for mine, reference in zip(_arrays(fresh), expected, strict=True):
            np.testing.assert_array_equal(mine, reference)
    assert sorted(os.listdir(model_dir)) == [
        "keras_state.json", "keras_step1.weights.h5", "keras_step2.weights.h5"]
    with open(os.path.join(model_dir, "partial.keras_step9.weights.h5"), "wb") as file:
        file.write(b"\x89HDF")  # what a kill within save_weights leaves
    keras_checkpoints.save(model_dir, run.model, {"step": 3, "history": []})
    assert sorted(os.listdir(model_dir)) == ["keras_state.json", "keras_step3.weights.h5"]


def _pytest_on(backend, tmp_path, tests):
    pytest.importorskip(backend)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "0", "-q", "-p", "no:cacheprovider",
         f"--basetemp={tmp_path}", __file__, "-k", " or ".join(tests)], cwd=REPO_ROOT,
        env=subprocess_env(KERAS_BACKEND=backend), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:]
    assert result.stdout.splitlines()[-1].startswith(f"{len(tests)} passed, ")


def test_on_jax(tmp_path):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the wrapper runs in the default (TensorFlow) process only")
    _pytest_on("jax", tmp_path, NEUTRAL[:1])


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_on_jax_and_torch(backend, tmp_path):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the wrapper runs in the default (TensorFlow) process only")
    _pytest_on(backend, tmp_path, NEUTRAL)
