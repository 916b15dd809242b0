"""Optimisers (SGD, AdamW, LAMB), weight-decay modes, gradient clipping and the moving average
of the weights: the updates against hand computations, and the average through training,
evaluation, export and resume."""

import json
import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

import keras_resnets
from tests.training import fakes
from tests.training.conftest import (
    TINY_MODEL,
    kill_after_step,
    run_worker,
    tiny_settings,
    weights_of,
    worker_spec,
)
from tests.training.test_trainer import Signaller
from training import config, ema, optimizers, report, setting_flags, trainer
from training.run_state import check_same_run

W0 = np.array([1.0, -2.0, 0.5])
GRADIENTS = [np.array([0.5, 0.25, -1.0]), np.array([-0.25, 1.0, 0.5])]


def optimization(**fields):
    return config.OptimizationConfig(epochs=1, **fields)


def two_steps(settings, gradients=GRADIENTS, lr=0.1):
    """The variable after applying `gradients` with the optimizer of `settings`."""
    variable = keras.Variable(W0.astype("float32"))
    optimizer = optimizers.build(settings, lr, "float32")
    optimizer.build([variable])
    for gradient in gradients:
        optimizer.apply([tf.constant(gradient, tf.float32)], [variable])
    return variable.numpy()


def adam_moments(gradients, beta_1, beta_2):
    m = v = 0.0
    for g in gradients:
        m, v = beta_1 * m + (1 - beta_1) * g, beta_2 * v + (1 - beta_2) * g * g
    return m, v


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_by_hand(nesterov):
    lr, mu = 0.1, 0.9
    got = two_steps(optimization(momentum=mu, nesterov=nesterov, weight_decay=0.0))
    w, velocity = W0.copy(), 0.0
    for g in GRADIENTS:  # Keras' (and PyTorch's, up to the sign of v) SGD
        velocity = mu * velocity - lr * g
        w = w + (mu * velocity - lr * g if nesterov else velocity)
    np.testing.assert_allclose(got, w, rtol=1e-6)


def test_sgd_decoupled_decay_by_hand():
    lr, wd = 0.1, 0.2
    got = two_steps(optimization(momentum=0.0, weight_decay=wd, weight_decay_mode="decoupled"))
    w = W0.copy()
    for g in GRADIENTS:
        w = w - lr * wd * w - lr * g
    np.testing.assert_allclose(got, w, rtol=1e-6)


def test_coupled_decay_is_not_the_optimizers():
    sgd = optimizers.build(optimization(weight_decay=0.2), 0.1, "float32")
    assert sgd.weight_decay is None  # it is a loss term (test_trainer.py checks its value)
    np.testing.assert_allclose(two_steps(optimization(momentum=0.0, weight_decay=0.2)),
                               W0 - 0.1 * (GRADIENTS[0] + GRADIENTS[1]), rtol=1e-6)


def test_adamw_by_hand():
    lr, wd, b1, b2, eps = 0.1, 0.05, 0.8, 0.99, 1e-3
    got = two_steps(optimization(optimizer="adamw", momentum=b1, beta_2=b2, epsilon=eps,
                                 weight_decay=wd))
    w = W0.copy()
    for t in (1, 2):
        w = w - lr * wd * w  # decoupled, before the step (Loshchilov & Hutter 2019)
        m, v = adam_moments(GRADIENTS[:t], b1, b2)
        alpha = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        w = w - alpha * m / (np.sqrt(v) + eps)
    np.testing.assert_allclose(got, w, rtol=1e-5)


def test_lamb_by_hand():
    lr, wd, b1, b2 = 0.1, 0.05, 0.9, 0.999
    got = two_steps(optimization(optimizer="lamb", weight_decay=wd))
    w = W0.copy()
    for t in (1, 2):
        w = w - lr * wd * w
        m, v = adam_moments(GRADIENTS[:t], b1, b2)
        step = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + 1e-7)
        w = w - np.linalg.norm(w) / np.linalg.norm(step) * lr * step  # the trust ratio
    np.testing.assert_allclose(got, w, rtol=1e-5)


def test_decay_modes_resolve_per_optimizer():
    assert [optimization(optimizer=name).decay_mode() for name in config.OPTIMIZERS] == [
        "coupled", "decoupled", "decoupled"]
    assert optimization(weight_decay_mode="decoupled").decay_mode() == "decoupled"
    built = optimizers.build(optimization(optimizer="adamw", weight_decay=0.0), 0.1, "float32")
    assert built.weight_decay is None


@pytest.mark.parametrize("fields, message", [
    (dict(optimizer="adam"), "optimizer must be one of ['sgd', 'adamw', 'lamb']; got 'adam'."),
    (dict(optimizer="adamw", weight_decay_mode="coupled"),
     "weight_decay_mode='coupled' contradicts optimizer='adamw', whose weight decay is "
     "decoupled by definition; use weight_decay_mode='decoupled' or 'auto', or "
     "optimizer='sgd'."),
    (dict(weight_decay_mode="l2"),
     "weight_decay_mode must be one of ['auto', 'coupled', 'decoupled']; got 'l2'."),
    (dict(optimizer="lamb", nesterov=True),
     "nesterov=True applies to optimizer='sgd', not optimizer='lamb'."),
    (dict(beta_2=0.9), "beta_2=0.9 applies to optimizer='adamw' or 'lamb', not "
                       "optimizer='sgd'."),
    (dict(optimizer="adamw", epsilon=0.0), "epsilon must be a number in (0, inf]; got 0.0."),
    (dict(optimizer="adamw", beta_2=1.0), "beta_2 must be a number in [0, 1); got 1.0."),
    (dict(clip_global_norm=-1.0), "clip_global_norm must be a number in (0, inf]; got -1.0."),
    (dict(ema_decay=1.0), "ema_decay must be a number in (0, 1); got 1.0."),
    (dict(ema_decay="0.9"), "ema_decay must be a number in (0, 1); got '0.9'."),
])
def test_bad_settings_are_named(fields, message):
    with pytest.raises(ValueError) as error:
        optimization(**fields)
    assert str(error.value) == message


def test_clip_by_global_norm():
    gradients = [tf.constant([3.0]), None, tf.constant([[4.0]])]
    clipped = optimizers.clip_by_global_norm(gradients, 1.0)
    assert clipped[1] is None
    np.testing.assert_allclose(clipped[0].numpy(), [0.6], rtol=1e-6)
    np.testing.assert_allclose(clipped[2].numpy(), [[0.8]], rtol=1e-6)
    kept = optimizers.clip_by_global_norm(gradients, 10.0)
    np.testing.assert_array_equal(kept[0].numpy(), [3.0])
    # Loss-scaled gradients (x8) are clipped by their unscaled norm 5, and stay scaled.
    scaled = optimizers.clip_by_global_norm([8 * g for g in (gradients[0], gradients[2])],
                                            2.5, loss_scale=8.0)
    np.testing.assert_allclose(scaled[0].numpy(), [12.0], rtol=1e-6)


def experiment(**overrides):
    return config.from_settings(tiny_settings(**overrides))


def test_one_clipped_sgd_step_has_the_clip_norm():
    settings = dict(epochs=None, total_steps=1, schedule="constant", learning_rate=0.5,
                    momentum=0.0, weight_decay=0.0)
    run = trainer.Trainer(experiment(clip_global_norm=1e-3, **settings), fakes.FakePipeline())
    before = [v.numpy() for v in run.model.trainable_variables]
    run.fit()
    change = np.sqrt(sum(np.sum((v.numpy() - b) ** 2)
                         for v, b in zip(run.model.trainable_variables, before)))
    assert change == pytest.approx(0.5 * 1e-3, rel=1e-4)


def test_decoupled_decay_in_the_trainer_skips_bn_and_bias_when_asked():
    run = trainer.Trainer(experiment(weight_decay=1e-3, weight_decay_mode="decoupled",
                                     decay_bn_and_bias=False), fakes.FakePipeline())
    assert float(run._regularization()) == 0.0  # not a loss term
    assert run.optimizer.weight_decay == 1e-3
    decayed = [run.optimizer._use_weight_decay(v) for v in run.model.trainable_variables]
    assert decayed == [v.name == "kernel" for v in run.model.trainable_variables]
    assert decayed.count(True) == 8 and decayed.count(False) == 15  # 7 convs + dense; 7 BN, bias


def test_head_lr_multiplier_scales_adamw_updates():
    settings = dict(epochs=None, total_steps=1, schedule="constant", learning_rate=0.01,
                    optimizer="adamw", weight_decay=0.01)
    runs = []
    for multiplier in (1.0, 3.0):
        run = trainer.Trainer(experiment(head_lr_multiplier=multiplier, **settings),
                              fakes.FakePipeline())
        start = [v.numpy() for v in run.model.trainable_variables]
        run.fit()
        runs.append((run, start))
    (plain, start), (scaled, start_scaled) = runs
    head = {id(v) for v in scaled.model.get_layer("predictions").trainable_weights}
    assert len(head) == 2
    for a, b, w0 in zip(plain.model.trainable_variables, scaled.model.trainable_variables,
                        start):
        factor = 3.0 if id(b) in head else 1.0
        np.testing.assert_allclose(b.numpy() - w0, factor * (a.numpy() - w0), rtol=1e-4,
                                   atol=1e-7)
    assert [np.array_equal(a, b) for a, b in zip(start, start_scaled)] == [True] * len(start)


@pytest.mark.parametrize("runtime", [
    pytest.param(dict(jit_compile="true"), marks=pytest.mark.slow),  # ~30 s of XLA compiling
    dict(mixed_precision="float16")], ids=["xla", "float16"])
def test_clipping_and_the_average_with_xla_and_loss_scaling(runtime):
    run = trainer.Trainer(experiment(epochs=None, total_steps=2, optimizer="adamw",
                                     clip_global_norm=0.05, ema_decay=0.5, **runtime),
                          fakes.FakePipeline())
    log = WeightLog()
    history = run.fit(callbacks=[log])
    assert np.isfinite(history.history["loss"]).all()
    first = [0.5 * w0 + 0.5 * w1 for w0, w1 in zip(log.values[0], log.values[1])]
    expected = [0.5 * a + 0.5 * w2 for a, w2 in zip(first, log.values[2])]
    for average, want in zip(run.average.averages, expected):
        np.testing.assert_allclose(average.numpy(), want, rtol=1e-5, atol=1e-6)


class WeightLog(keras.callbacks.Callback):
    """The values of the averaged variables at the start and after every batch."""

    def __init__(self):
        super().__init__()
        self.values = []

    def record(self):
        self.values.append([v.numpy().astype("float64")
                            for v in ema.averaged_variables(self.model)])

    def on_train_begin(self, logs=None):
        self.record()

    def on_train_batch_end(self, batch, logs=None):
        self.record()


def test_the_average_is_the_closed_form_over_weights_and_bn_statistics():
    decay, steps = 0.6, 5
    run = trainer.Trainer(experiment(epochs=None, total_steps=steps, ema_decay=decay),
                          fakes.FakePipeline())
    assert len(run.average.averages) == len(run.model.trainable_variables) + 2 * sum(
        isinstance(layer, keras.layers.BatchNormalization) for layer in run.model.layers)
    log = WeightLog()
    run.fit(callbacks=[log])
    assert len(log.values) == steps + 1
    for index, average in enumerate(run.average.averages):
        history = [values[index] for values in log.values]
        # average_N = d^N w_0 + sum_k (1 - d) d^(N - k) w_k
        expected = decay ** steps * history[0] + sum(
            (1 - decay) * decay ** (steps - k) * history[k] for k in range(1, steps + 1))
        np.testing.assert_allclose(average.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_the_average_helpers_swap_and_checkpoint_exactly_the_averages():
    model = keras_resnets.ResNet(stem="cifar", classes=10, input_shape=(8, 8, 3), **TINY_MODEL)
    strategy = tf.distribute.get_strategy()
    assert ema.for_decay(model, None, strategy) is None
    assert ema.checkpoint_entries(None) == {}
    with ema.averaged(None, sync=lambda: pytest.fail("no average: nothing to sync")):
        pass
    average = ema.for_decay(model, 0.5, strategy)
    assert average.decay == 0.5 and ema.checkpoint_entries(average) == {"ema": average.trackable}
    own = [v.numpy().copy() for v in ema.averaged_variables(model)]
    for variable in average.averages:
        variable.assign(variable.value + 1.0)
    synced = []
    with ema.averaged(average, sync=lambda: synced.append(True)):
        assert synced == [True]
        for value, variable in zip(own, ema.averaged_variables(model)):
            np.testing.assert_array_equal(variable.numpy(), value + 1.0)
    for value, variable in zip(own, ema.averaged_variables(model)):
        np.testing.assert_array_equal(variable.numpy(), value)


@pytest.fixture(scope="module")
def averaged_run(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("ema") / "run")
    run = trainer.Trainer(experiment(
        epochs=1, ema_decay=0.5, optimizer="lamb", weight_decay=0.01, clip_global_norm=5.0,
        model_dir=model_dir, save_model=True, export_format="keras"),
        fakes.FakePipeline(validation_examples=16))
    history = run.fit()
    return run, history, model_dir


def test_evaluation_uses_the_averaged_weights(averaged_run):
    run, history, _ = averaged_run
    averaged = run.evaluate("test")
    assert averaged["loss"] == history.history["test_loss"][-1]
    average, run.average = run.average, None  # the trained weights, for comparison
    try:
        trained = run.evaluate("test")
    finally:
        run.average = average
    assert trained["loss"] != averaged["loss"]
    assert run.evaluate("test") == averaged  # the swaps put the weights back


def test_exports_and_results_have_the_average(averaged_run):
    run, _, model_dir = averaged_run
    images = fakes.FakePipeline()._splits["test"][0][:4]
    with run.averaged_weights():
        expected = run.model.predict(images, verbose=0)
    trained = run.model.predict(images, verbose=0)
    loaded = keras.saving.load_model(os.path.join(model_dir, "model.keras"))
    np.testing.assert_allclose(loaded.predict(images, verbose=0), expected, atol=1e-6)
    assert np.abs(trained - expected).max() > 1e-4
    with open(os.path.join(model_dir, "results.json")) as file:
        results = json.load(file)
    assert {key: results[key] for key in (
        "optimizer", "weight_decay", "weight_decay_mode", "clip_global_norm", "ema_decay",
        "evaluated_weights")} == {
        "optimizer": "lamb", "weight_decay": 0.01, "weight_decay_mode": "decoupled",
        "clip_global_norm": 5.0, "ema_decay": 0.5, "evaluated_weights": "ema"}


def test_evaluating_a_checkpoint_restores_the_average(averaged_run):
    from training import evaluate

    run, history, model_dir = averaged_run
    metrics = evaluate.evaluate(model_dir, "latest", "test",
                                pipeline=fakes.FakePipeline(validation_examples=16))
    assert metrics["loss"] == pytest.approx(history.history["test_loss"][-1], rel=1e-6)


def test_an_interrupted_run_resumes_to_the_same_average(tmp_path):
    settings = dict(epochs=2, ema_decay=0.7, optimizer="adamw", weight_decay=0.01,
                    learning_rate=0.01, clip_global_norm=1.0)
    reference = trainer.run(experiment(**settings), fakes.FakePipeline())
    model_dir = str(tmp_path / "run")
    run = trainer.Trainer(experiment(model_dir=model_dir, **settings), fakes.FakePipeline())
    with pytest.raises(trainer.TrainingInterrupted):
        run.fit(callbacks=[Signaller(run, (0, 4), signal.SIGTERM)])
    resumed = trainer.run(experiment(model_dir=model_dir, **settings), fakes.FakePipeline())
    assert resumed.results["steps"] == 16
    assert resumed.history.history["test_loss"] == pytest.approx(
        reference.history.history["test_loss"], abs=1e-5)
    for got, want in zip(resumed.model.get_weights(), reference.model.get_weights()):
        np.testing.assert_allclose(got, want, atol=1e-5)  # the averages (trainer.run)


def test_resuming_with_another_optimizer_or_without_the_average_is_named():
    def config_of(**fields):
        return {"model": {"name": "resnet20", "overrides": {}},
                "optimization": {"global_batch_size": 16, **fields}}

    old = config_of()  # a config.json from before the optimizer could be chosen
    check_same_run("runs/a", old, config_of(optimizer="sgd", ema_decay=None), ["ckpt-8"])
    check_same_run("runs/a", config_of(ema_decay=0.9), config_of(ema_decay=0.99), ["ckpt-8"])
    with pytest.raises(ValueError) as error:
        check_same_run("runs/a", old, config_of(optimizer="adamw"), ["ckpt-8"])
    assert str(error.value) == (
        "model_dir='runs/a' holds a run with optimizer='sgd', whose state the checkpoint "
        "holds, but this run has optimizer='adamw'; resume with the same optimizer or use a "
        "new model_dir.")
    with pytest.raises(ValueError) as error:
        check_same_run("runs/a", old, config_of(ema_decay=0.9), ["ckpt-8"])
    assert str(error.value) == (
        "model_dir='runs/a' holds a run that keeps no weight average (ema_decay=None), but "
        "this run has ema_decay=0.9; resume with ema_decay on or off as before (its value may "
        "change) or use a new model_dir.")


def test_the_log_line_of_the_optimizer():
    assert report.optimizer_line(optimization()) == (
        "Optimizer: SGD (momentum 0.9), weight decay 0.0001 coupled.")
    assert report.optimizer_line(optimization(nesterov=True, weight_decay_mode="decoupled")) == (
        "Optimizer: SGD (momentum 0.9, Nesterov), weight decay 0.0001 decoupled.")
    assert report.optimizer_line(optimization(
        optimizer="adamw", weight_decay=0.05, clip_global_norm=1.0, ema_decay=0.9999)) == (
        "Optimizer: AdamW (beta_1 0.9, beta_2 0.999), weight decay 0.05 decoupled, gradients "
        "clipped to norm 1; evaluated and exported: the weights' moving average (decay "
        "0.9999).")
    assert report.optimizer_line(optimization(
        optimizer="lamb", loss="binary_cross_entropy", bce_target_threshold=0.2)) == (
        "Optimizer: LAMB (beta_1 0.9, beta_2 0.999), weight decay 0.0001 decoupled; loss: "
        "binary cross-entropy of targets binarised at 0.2.")
    assert report.optimizer_line(optimization(loss="binary_cross_entropy")).endswith(
        "coupled; loss: binary cross-entropy.")


def test_flags():
    flag_values = flags.FlagValues()
    setting_flags.define_flags(flag_values)
    flag_values(["fit", "--optimizer=lamb", "--beta_2=0.99", "--epsilon=1e-6",
                 "--weight_decay_mode=decoupled", "--clip_global_norm=2.5", "--ema_decay=0.999"])
    settings = setting_flags.settings_from_flags(flag_values)
    assert settings == {"optimizer": "lamb", "beta_2": 0.99, "epsilon": 1e-6,
                        "weight_decay_mode": "decoupled", "clip_global_norm": 2.5,
                        "ema_decay": 0.999}
    optimization_ = config.from_settings({"epochs": 1, **settings}).optimization
    assert (optimization_.optimizer, optimization_.ema_decay) == ("lamb", 0.999)


def test_mirrored_on_two_cpus_matches_one_device_with_clipping_and_the_average(tmp_path):
    # Clipping by a norm below the gradients' (so that it acts), AdamW, the average; synchronised
    # batch norm, so that both strategies normalise over the same global batch.
    # epsilon 1e-3: Adam's step is then linear in gradients near 0, whose sign the two
    # strategies' summation orders could flip.
    settings = tiny_settings(
        epochs=1, cpu_devices=2, deterministic=True, optimizer="adamw", learning_rate=0.01,
        epsilon=1e-3, weight_decay=0.01, clip_global_norm=0.05, ema_decay=0.8,
        model_overrides=dict(TINY_MODEL, overrides={"*_bn": {"synchronized": True}}))
    spec, output = worker_spec(tmp_path, "mirrored", settings,
                               {"train_examples": 64, "test_examples": 16},
                               compare_strategies=["one_device", "mirrored"])
    run_worker(spec)
    npz = np.load(output)
    assert json.loads(str(npz["results_mirrored"]))["num_replicas"] == 2
    names = sorted(k for k in npz.files if k.startswith("weight_one_device_"))
    assert names
    for name in names:  # the averages (trainer.run)
        np.testing.assert_allclose(npz[name.replace("one_device", "mirrored")], npz[name],
                                   atol=1e-5)


@pytest.mark.slow  # ~55 s; test_an_interrupted_run_resumes_to_the_same_average is quick
def test_a_deterministic_run_killed_mid_way_resumes_to_the_same_average(tmp_path):
    pipeline = {"train_examples": 96, "test_examples": 16}
    common = dict(epochs=2, deterministic=True, checkpoint_every_steps=2, ema_decay=0.8,
                  optimizer="adamw", learning_rate=0.01, clip_global_norm=1.0)
    reference_spec, reference_out = worker_spec(tmp_path, "reference", tiny_settings(**common),
                                                pipeline)
    model_dir = str(tmp_path / "killed")
    killed_spec, _ = worker_spec(tmp_path, "killed", tiny_settings(model_dir=model_dir, **common),
                                 pipeline, sleep_per_batch=0.3)
    resumed_spec, resumed_out = worker_spec(tmp_path, "resumed", tiny_settings(
        model_dir=model_dir, **common), pipeline)
    assert 4 <= kill_after_step(killed_spec, model_dir, 4) < 12
    run_worker(resumed_spec)
    run_worker(reference_spec)
    resumed, reference = np.load(resumed_out), np.load(reference_out)
    assert json.loads(str(resumed["results_run"]))["steps"] == 12
    for a, b in zip(weights_of(resumed, "weight_run_"), weights_of(reference, "weight_run_")):
        np.testing.assert_array_equal(a, b)  # the averages (trainer.run), bit for bit
