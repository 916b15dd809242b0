"""MixUp, CutMix and random erasing (training.mixing) and the soft targets of the loss."""

import math

import numpy as np
import pytest
import tensorflow as tf

from training import mixing, steps

SEED = tf.constant([3, 7], tf.int64)


def batch(b=4, h=8, w=6, c=3):
    images = np.arange(b * h * w * c, dtype=np.float32).reshape(b, h, w, c)
    return tf.constant(images), tf.constant([0, 1, 2, 3][:b], tf.int32)


def test_mixup_with_a_fixed_lambda_is_the_hand_formula(monkeypatch):
    monkeypatch.setattr(mixing, "beta", lambda alpha, seed: tf.constant(0.3))
    images, labels = batch()
    mixed, targets = mixing.mix_batch(images, labels, 5, SEED, mixup_alpha=0.8,
                                      cutmix_alpha=0.0, mix_prob=1.0, switch_prob=0.5)
    x = images.numpy()
    np.testing.assert_allclose(mixed.numpy(), 0.3 * x + 0.7 * x[::-1], rtol=1e-6)
    want = np.zeros([4, 5], np.float32)
    want[np.arange(4), [0, 1, 2, 3]] += 0.3
    want[np.arange(4), [3, 2, 1, 0]] += 0.7
    np.testing.assert_allclose(targets.numpy(), want, rtol=1e-6)


def test_beta_draws_have_the_mean_and_variance_of_beta_alpha_alpha():
    alpha = 0.8
    draws = np.array([float(mixing.beta(alpha, tf.constant([1, i], tf.int64)))
                      for i in range(1000)])
    assert draws.min() >= 0 and draws.max() <= 1
    assert abs(draws.mean() - 0.5) < 0.03
    assert abs(draws.var() - 1 / (4 * (2 * alpha + 1))) < 0.01  # Beta(a, a): 1 / (4 (2a + 1))


@pytest.mark.parametrize("seed", range(20))
def test_cutmix_label_weight_is_the_uncovered_area_after_clipping(seed):
    images, labels = batch(h=8, w=6)
    mixed, targets = mixing.mix_batch(images, labels, 4, tf.constant([seed, 1], tf.int64),
                                      mixup_alpha=0.0, cutmix_alpha=1.0, mix_prob=1.0,
                                      switch_prob=0.5)
    x, y = images.numpy(), mixed.numpy()
    pasted = (y != x).any(axis=-1)  # pixels of example i that came from example b - 1 - i
    np.testing.assert_array_equal(y[pasted[..., None].repeat(3, -1)],
                                  x[::-1][pasted[..., None].repeat(3, -1)])
    rows, cols = np.nonzero(pasted[0])
    area = 0 if rows.size == 0 else (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
    assert rows.size == area  # one rectangle, the same in every image
    assert (pasted == pasted[0]).all()
    np.testing.assert_allclose(targets.numpy()[0, 0], 1 - area / 48, rtol=1e-6)
    np.testing.assert_allclose(targets.numpy()[0, 3], area / 48, rtol=1e-6)


def test_cutmix_box_is_timms_rand_bbox_clipped_to_the_image():
    for seed in range(50):
        seed = tf.constant([seed, 2], tf.int64)
        (top, bottom, left, right), lam = mixing.cutmix_box((32, 20), tf.constant(0.36), seed)
        # timm: cut = int(side * sqrt(1 - lam)), a box of 2 * (cut // 2) around the centre
        assert 0 <= top <= bottom <= 32 and 0 <= left <= right <= 20
        assert bottom - top <= 2 * (int(32 * 0.8) // 2) and right - left <= 2 * (16 // 2)
        assert math.isclose(float(lam), 1 - int(bottom - top) * int(right - left) / 640,
                            rel_tol=1e-6)


def test_mix_prob_zero_leaves_the_batch_and_gives_one_hot_targets():
    images, labels = batch()
    mixed, targets = mixing.mix_batch(images, labels, 4, SEED, 0.8, 1.0, mix_prob=0.0,
                                      switch_prob=0.5)
    np.testing.assert_array_equal(mixed.numpy(), images.numpy())
    np.testing.assert_array_equal(targets.numpy(), np.eye(4, dtype=np.float32))


def test_switch_prob_picks_cutmix_or_mixup():
    images, labels = batch()
    for switch, pixels_kept in ((1.0, True), (0.0, False)):
        counts = []
        for seed in range(10):
            mixed, _ = mixing.mix_batch(images, labels, 4, tf.constant([seed, 5], tf.int64),
                                        0.8, 1.0, mix_prob=1.0, switch_prob=switch)
            x, y = images.numpy(), mixed.numpy()
            counts.append(((y == x) | (y == x[::-1])).all())  # CutMix only moves pixels
        assert all(counts) is pixels_kept


def test_erasing_changes_one_box_of_the_drawn_size():
    image = tf.zeros([32, 24, 3])
    changed = []
    for seed in range(30):
        out = mixing.erase(image, tf.constant([seed, 9], tf.int64), probability=1.0).numpy()
        mask = (out != 0).any(-1)
        rows, cols = np.nonzero(mask)
        box = (np.ptp(rows) + 1) * (np.ptp(cols) + 1)
        assert mask.sum() == box  # a filled rectangle: every channel of every pixel of it
        assert (out[mask] != 0).all()
        assert 0.02 * 768 * 0.5 <= box <= 768 / 3 * 1.5  # area 2%-1/3 up to the rounding
        assert np.ptp(rows) + 1 < 32 and np.ptp(cols) + 1 < 24
        changed.append(box)
    assert len(set(changed)) > 10


def test_erasing_probability_zero_changes_nothing_and_the_seed_fixes_the_box():
    image = tf.random.stateless_normal([16, 16, 3], [1, 2])
    np.testing.assert_array_equal(mixing.erase(image, SEED, 0.0).numpy(), image.numpy())
    np.testing.assert_array_equal(mixing.erase(image, SEED, 1.0).numpy(),
                                  mixing.erase(image, SEED, 1.0).numpy())
    erased = [(mixing.erase(image, tf.constant([s, 0], tf.int64), 0.5).numpy()
               != image.numpy()).any() for s in range(100)]
    assert 35 < sum(erased) < 65


def test_soft_targets_give_the_cross_entropy_of_mixed_smoothed_one_hots():
    log_probs = tf.nn.log_softmax(tf.constant([[1.0, 2.0, 0.5, -1.0]]))
    smoothing, lam = 0.1, 0.3
    soft = tf.constant([[lam, 0.0, 1 - lam, 0.0]])
    smoothed = [np.full(4, smoothing / 4) + (1 - smoothing) * np.eye(4)[k] for k in (0, 2)]
    target = lam * smoothed[0] + (1 - lam) * smoothed[1]  # timm's mixup_target
    want = -(target * log_probs.numpy()[0]).sum()
    got = steps.cross_entropy(soft, log_probs, smoothing).numpy()
    np.testing.assert_allclose(got, [want], rtol=1e-6)
    one_hot = steps.cross_entropy(tf.constant([[0.0, 0, 1, 0]]), log_probs, smoothing)
    sparse = steps.cross_entropy(tf.constant([2]), log_probs, smoothing)
    np.testing.assert_allclose(one_hot.numpy(), sparse.numpy(), rtol=1e-7)


def test_training_accuracy_counts_the_larger_weight_label():
    assert steps.sparse_labels(tf.constant([[0.3, 0.0, 0.7], [0.6, 0.4, 0.0]])).numpy(
    ).tolist() == [2, 0]
