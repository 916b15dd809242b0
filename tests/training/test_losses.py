"""The training losses of `optimization.loss`: softmax cross-entropy and the binary
cross-entropy of "ResNet strikes back", in both loops."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training.conftest import TINY_MODEL, tiny_settings
from training import config as config_lib
from training import keras_loop, keras_model, steps

LOGITS = np.array([[2.0, -1.0, 0.5, 0.0], [-3.0, 4.0, 1.0, -0.5]], "float32")
SOFT = np.array([[0.7, 0.3, 0.0, 0.0], [0.0, 0.15, 0.85, 0.0]], "float32")  # mixed targets


def _reference(targets, logits, smoothing, threshold):
    """timm's BinaryCrossEntropy: smoothed, thresholded targets, BCE-with-logits averaged over
    the classes (per example here)."""
    targets = targets * (1 - smoothing) + smoothing / targets.shape[-1]
    if threshold is not None:
        targets = (targets > threshold).astype("float32")
    p = 1 / (1 + np.exp(-logits.astype("float64")))
    return -(targets * np.log(p) + (1 - targets) * np.log(1 - p)).mean(axis=-1)


@pytest.mark.parametrize("smoothing, threshold", [(0.0, None), (0.1, None), (0.1, 0.2)])
def test_binary_cross_entropy_is_timms(smoothing, threshold):
    expected = _reference(SOFT, LOGITS, smoothing, threshold)
    ours = steps.binary_cross_entropy(tf.constant(SOFT), tf.constant(LOGITS), smoothing,
                                      threshold).numpy()
    keras_ours = keras.ops.convert_to_numpy(keras_model.binary_cross_entropy(
        SOFT, LOGITS, smoothing, threshold))
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    np.testing.assert_allclose(keras_ours, expected, rtol=1e-6)
    sparse = steps.binary_cross_entropy(tf.constant([0, 2]), tf.constant(LOGITS), smoothing,
                                        threshold).numpy()
    np.testing.assert_allclose(sparse, _reference(np.eye(4, dtype="float32")[[0, 2]], LOGITS,
                                                  smoothing, threshold), rtol=1e-6)


def test_the_threshold_binarises_mixed_targets():
    # 0.15 of class 1 falls under 0.2: only classes 0, 1 (0.3) and 2 (0.85) count as present.
    low = _reference(SOFT, LOGITS, 0.0, 0.2)
    assert not np.allclose(low, _reference(SOFT, LOGITS, 0.0, None))
    np.testing.assert_allclose(low, _reference(
        np.array([[1, 1, 0, 0], [0, 0, 1, 0]], "float32"), LOGITS, 0.0, None))


def _tiny(**settings):
    return config_lib.from_settings(tiny_settings(
        synthetic_examples=64, image_size=8, num_classes=4, deterministic=True, **settings))


BCE = dict(loss="binary_cross_entropy", bce_target_threshold=0.2, label_smoothing=0.1,
           mixup_alpha=0.4, epochs=1, evaluate_test=True)


def test_the_tensorflow_loop_reads_the_logits_behind_a_softmax():
    from training import trainer

    runs = [trainer.Trainer(_tiny(model_overrides={**TINY_MODEL, "classifier_activation": a},
                                  **BCE)) for a in (None, "softmax")]
    runs[1].model.set_weights(runs[0].model.get_weights())
    images = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype("float32")
    eye = np.eye(4, dtype="float32")
    targets = 0.6 * eye[np.arange(16) % 4] + 0.4 * eye[(np.arange(16) + 1) % 4]
    losses = [tf.function(lambda x, t, run=run: run._steps._training_loss(
        t, run.model(x, training=False)))(images, targets).numpy() for run in runs]
    logits = runs[0].model(images, training=False).numpy()
    np.testing.assert_allclose(losses[0], _reference(targets, logits, 0.1, 0.2), rtol=1e-5)
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    history = runs[1].fit().history
    assert np.isfinite(history["loss"]).all() and len(history["loss"]) == 1


def test_both_loops_take_the_same_steps_on_the_binary_cross_entropy():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("compares with training.trainer, which runs on TensorFlow")
    from training import trainer

    config = _tiny(model_overrides={**TINY_MODEL, "classifier_activation": None}, **BCE)
    ours, theirs = keras_loop.KerasTrainer(config), trainer.Trainer(config)
    theirs.model.set_weights(ours.model.get_weights())
    ours.fit()
    reference_history = theirs.fit().history
    for mine, reference in zip(ours.model.weights, theirs.model.weights, strict=True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(mine), reference.numpy(),
                                   rtol=1e-4, atol=1e-6)
    assert ours.history[0]["loss"] == pytest.approx(reference_history["loss"][0], rel=1e-4)
    assert ours.history[0]["loss"] < 0.7  # a mean over the classes, not a sum or a softmax CE


def test_the_keras_loop_asks_for_logits():
    backend = keras.backend.backend()
    with pytest.raises(ValueError, match=rf"loss='binary_cross_entropy' on the {backend} backend "
                                         r"needs a network that outputs logits: add "
                                         r"\"classifier_activation\": null to model_overrides"):
        keras_loop.KerasTrainer(_tiny(**BCE))


@pytest.mark.parametrize("settings, message", [
    (dict(loss="bce"), r"loss must be one of \['cross_entropy', 'binary_cross_entropy'\]; "
                       r"got 'bce'\."),
    (dict(bce_target_threshold=0.2), r"bce_target_threshold=0\.2 applies to "
                                     r"loss='binary_cross_entropy', not loss='cross_entropy'\."),
    (dict(loss="binary_cross_entropy", bce_target_threshold=1.0),
     r"bce_target_threshold must be a number in \[0, 1\); got 1\.0\."),
])
def test_bad_loss_settings_name_the_argument(settings, message):
    with pytest.raises(ValueError, match=message):
        config_lib.OptimizationConfig(epochs=1, **settings)
