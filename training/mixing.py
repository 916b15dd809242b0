"""MixUp (Zhang et al. 2018), CutMix (Yun et al. 2019) and random erasing (Zhong et al. 2020)
as timm implements them (timm/data/mixup.py `Mixup` in its default "batch" mode,
timm/data/random_erasing.py `RandomErasing` in its default "pixel" mode), in stateless
TensorFlow ops.

MixUp and CutMix mix a batch with itself reversed (example `i` with example `b - 1 - i`), with
one `lam` per batch: with probability `mix_prob` the batch is mixed, by CutMix with probability
`switch_prob` when both are on, else by MixUp; `lam` is drawn from Beta(alpha, alpha) of the
chosen one. CutMix pastes a box of sides `int(side * sqrt(1 - lam))` (halved each way around a
uniformly drawn centre, then clipped to the image), and `lam` becomes the uncovered fraction of
the image, so the label weights are the areas. The labels become the mixed one-hot targets
`lam * one_hot(y) + (1 - lam) * one_hot(reversed y)`.

Random erasing replaces, with probability `erasing_prob`, one box of each image (area 2%-1/3 of
the image, aspect ratio from 0.3 to 1/0.3 uniform in log scale, up to 10 attempts to fit) by
standard normal noise, after normalisation.

Every draw is a function of a stateless seed (a batch's or an image's), so a resumed run
replays it. Keras 3's layers are not used: `keras.layers.CutMix` and `RandomErasing` evaluate
`seed or <their SeedGenerator>`, so a seed tensor cannot drive them statelessly, and they draw
CutMix boxes inside the image (not timm's clipped box around a uniform centre) and erasing sides
rather than areas, filled with a constant; `keras.layers.MixUp` takes a seed tensor but draws a
weight per example and a random pairing, not timm's batch mode (keras/src/layers/preprocessing/
image_preprocessing/).
"""

import tensorflow as tf

from training.draws import ERASE_AREA, ERASE_ATTEMPTS, ERASE_LOG_ASPECT  # noqa: F401 (API)


def beta(alpha, seed):
    """One draw of Beta(alpha, alpha): X / (X + Y) of two Gamma(alpha) draws."""
    gammas = tf.random.stateless_gamma([2], tf.cast(seed, tf.int64), alpha)
    return gammas[0] / tf.reduce_sum(gammas)


def cutmix_box(hw, lam, seed):
    """`(top, bottom, left, right)` of timm's `rand_bbox` for `lam`, and the corrected `lam`
    (1 - box area / image area)."""
    h, w = hw
    ratio = tf.sqrt(1.0 - lam)
    cut_h = tf.cast(tf.floor(h * ratio), tf.int32)
    cut_w = tf.cast(tf.floor(w * ratio), tf.int32)
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 2)
    cy = tf.random.stateless_uniform([], seeds[0], 0, h, tf.int32)
    cx = tf.random.stateless_uniform([], seeds[1], 0, w, tf.int32)
    top, bottom = (tf.clip_by_value(cy + d * (cut_h // 2), 0, h) for d in (-1, 1))
    left, right = (tf.clip_by_value(cx + d * (cut_w // 2), 0, w) for d in (-1, 1))
    area = tf.cast((bottom - top) * (right - left), tf.float32)
    return (top, bottom, left, right), 1.0 - area / float(h * w)


def box_mask(hw, box):
    """`[h, w, 1]` booleans: inside `box` = (top, bottom, left, right)."""
    rows = tf.range(hw[0])[:, None, None]
    cols = tf.range(hw[1])[None, :, None]
    top, bottom, left, right = box
    return (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)


def mix_batch(images, labels, num_classes, seed, mixup_alpha, cutmix_alpha, mix_prob,
              switch_prob):
    """`(mixed images, mixed one-hot targets [b, num_classes])` of a batch of images
    `[b, h, w, c]` and int labels `[b]`, drawn from `seed` (2 ints)."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    mixed = tf.random.stateless_uniform([], seeds[0]) < mix_prob
    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cutmix = tf.random.stateless_uniform([], seeds[1]) < switch_prob
    else:
        use_cutmix = tf.constant(cutmix_alpha > 0)
    alpha = tf.where(use_cutmix, float(cutmix_alpha), float(mixup_alpha))
    lam = tf.where(mixed, beta(tf.maximum(alpha, 1e-6), seeds[2]), 1.0)
    other = tf.reverse(images, [0])
    box, box_lam = cutmix_box(images.shape[1:3], lam, seeds[3])
    images = tf.where(use_cutmix, tf.where(box_mask(images.shape[1:3], box), other, images),
                      lam * images + (1.0 - lam) * other)
    lam = tf.where(use_cutmix, box_lam, lam)
    one_hot = tf.one_hot(labels, num_classes, dtype=tf.float32)
    return images, lam * one_hot + (1.0 - lam) * tf.reverse(one_hot, [0])


def erase(image, seed, probability):
    """timm's random erasing of one normalised image `[h, w, c]` with seed `seed` (2 ints)."""
    h, w = image.shape[0], image.shape[1]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 5)
    target = tf.random.stateless_uniform([ERASE_ATTEMPTS], seeds[0], *ERASE_AREA) * (h * w)
    aspect = tf.exp(tf.random.stateless_uniform([ERASE_ATTEMPTS], seeds[1], *ERASE_LOG_ASPECT))
    box_h = tf.cast(tf.round(tf.sqrt(target * aspect)), tf.int32)
    box_w = tf.cast(tf.round(tf.sqrt(target / aspect)), tf.int32)
    fits = (box_h < h) & (box_w < w)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    box_h, box_w = box_h[first], box_w[first]
    corner = tf.random.stateless_uniform([2], seeds[2])
    top = tf.cast(tf.floor(corner[0] * tf.cast(h - box_h + 1, tf.float32)), tf.int32)
    left = tf.cast(tf.floor(corner[1] * tf.cast(w - box_w + 1, tf.float32)), tf.int32)
    erased = tf.random.stateless_uniform([], seeds[3]) < probability
    inside = box_mask((h, w), (top, top + box_h, left, left + box_w))
    inside &= erased & tf.reduce_any(fits)
    return tf.where(inside, tf.random.stateless_normal(tf.shape(image), seeds[4]), image)
