"""RandAugment (training.randaugment, training.randaugment_config): timm's settings string, the
magnitudes of the ops, the ops themselves and their seeded draws."""

import math

import numpy as np
import pytest
import tensorflow as tf

from training import randaugment
from training.randaugment_config import Settings, parse


def image(h=12, w=12, c=3, seed=0):
    return tf.constant(np.random.default_rng(seed).integers(0, 256, (h, w, c)), tf.float32)


@pytest.mark.parametrize("config, settings", [
    ("rand", Settings()),  # timm's defaults: m10, n2, mstd0, inc0, p0.5
    ("rand-m9-mstd0.5-inc1", Settings(magnitude=9, magnitude_std=0.5, increasing=True)),
    ("m7-n3", Settings(magnitude=7, ops=3)),
    ("m9-mstd101-p1", Settings(magnitude=9, magnitude_std=math.inf, prob=1.0)),
])
def test_timm_strings_parse(config, settings):
    assert parse(config) == settings


@pytest.mark.parametrize("config", [
    "", "rand-m11", "m9-n0", "n2.5", "m9-inc2", "p1.5", "m9-x1", "m9-m8", "auto", "m-9", 9])
def test_bad_strings_are_one_error_naming_randaugment(config):
    with pytest.raises(ValueError, match=r"^randaugment must be dash-separated m<0-10>, n<ops>, "
                                         r"mstd<std>, inc<0\|1>, p<0-1> \(timm's rand_augment"):
        parse(config)


def test_op_arguments_at_magnitude_9_are_timms():
    def arg(name, increasing=False, sign=1.0):
        value = randaugment.level_argument(name, tf.constant(9.0), increasing, sign)
        return None if value is None else round(float(value), 6)

    assert {name: arg(name) for name in randaugment.OPS} == {
        "AutoContrast": None, "Equalize": None, "Invert": None, "Rotate": 27.0,
        "Posterize": 3.0, "Solarize": 230.0, "SolarizeAdd": 99.0, "Color": 1.72,
        "Contrast": 1.72, "Brightness": 1.72, "Sharpness": 1.72, "ShearX": 0.27,
        "ShearY": 0.27, "TranslateXRel": 0.405, "TranslateYRel": 0.405}
    assert (arg("Rotate", sign=-1.0), arg("Posterize", True), arg("Solarize", True),
            arg("Brightness", True, -1.0), arg("Color", True)) == (-27.0, 1.0, 26.0, 0.19, 1.81)


def test_ops_apply_their_argument_exactly():
    x = image()
    v = x.numpy()

    def op(name, argument=None):
        return randaugment.apply_op(name, x, argument).numpy()

    np.testing.assert_array_equal(op("Invert"), 255 - v)
    np.testing.assert_array_equal(op("Posterize", 3.0), v.astype(np.uint8) & 0b11100000)
    np.testing.assert_array_equal(op("Solarize", 230.0), np.where(v >= 230, 255 - v, v))
    np.testing.assert_array_equal(op("SolarizeAdd", 99.0),
                                  np.where(v < 128, np.minimum(255, v + 99), v))
    np.testing.assert_array_equal(op("Brightness", 1.72), np.clip(np.round(v * 1.72), 0, 255))
    np.testing.assert_array_equal(op("Rotate", 90.0), np.rot90(v))  # counter-clockwise
    shifted = np.full_like(v, 128.0)  # TranslateXRel 0.25 of 12: content moves 3 pixels left
    shifted[:, :9] = v[:, 3:]
    np.testing.assert_array_equal(op("TranslateXRel", 0.25), shifted)
    shifted = np.full_like(v, 128.0)
    shifted[3:] = v[:9]
    np.testing.assert_array_equal(op("TranslateYRel", -0.25), shifted)
    sheared = op("ShearX", 1.0)  # output (x, y) samples input (x + y, y)
    for y in range(12):
        np.testing.assert_array_equal(sheared[y, :12 - y], v[y, y:])
    grey = np.floor((v @ [19595, 38470, 7471] + 32768) / 65536)[..., None]
    np.testing.assert_array_equal(op("Color", 0.0), np.repeat(grey, 3, -1))
    np.testing.assert_array_equal(op("Contrast", 0.0), np.full_like(v, np.floor(grey.mean()
                                                                                 + 0.5)))
    low, high = v.min((0, 1)), v.max((0, 1))
    np.testing.assert_array_equal(op("AutoContrast"), np.floor((v - low) * 255 / (high - low)))
    equalized = op("Equalize")
    for c in range(3):  # a histogram-equalised channel: its values keep their order
        order = np.argsort(v[..., c], axis=None, kind="stable")
        assert (np.diff(equalized[..., c].ravel()[order]) >= 0).all()
    assert equalized.max() <= 255 and equalized.min() >= 0


def test_sharpness_keeps_the_border_and_blends_the_smoothed_interior():
    x = image(6, 6, 1)
    v = x.numpy()[..., 0]
    out = randaugment.apply_op("Sharpness", x, 0.0).numpy()[..., 0]
    kernel = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]]) / 13
    smooth = np.array([[(v[i - 1:i + 2, j - 1:j + 2] * kernel).sum() for j in range(1, 5)]
                       for i in range(1, 5)])
    np.testing.assert_array_equal(out[1:5, 1:5], np.round(smooth))
    np.testing.assert_array_equal(out[0], v[0])
    np.testing.assert_array_equal(out[:, -1], v[:, -1])


def test_one_op_with_probability_one_is_one_of_the_ops_at_the_magnitude():
    x = image()
    settings = Settings(magnitude=9, ops=1, prob=1.0)
    candidates = []
    for name in randaugment.OPS:
        for sign in (1.0, -1.0):
            argument = randaugment.level_argument(name, tf.constant(9.0), False, sign)
            candidates.append(randaugment.apply_op(name, x, argument).numpy())
    for seed in range(8):
        out = randaugment.apply(x, tf.constant([seed, 0], tf.int64), settings).numpy()
        assert any((out == c).all() for c in candidates)


def test_the_seed_fixes_the_draws_and_probability_zero_keeps_the_image():
    x = image()
    settings = parse("rand-m9-mstd0.5-n3")
    seed = tf.constant([5, 1], tf.int64)
    once = randaugment.apply(x, seed, settings).numpy()
    np.testing.assert_array_equal(once, randaugment.apply(x, seed, settings).numpy())
    outs = [randaugment.apply(x, tf.constant([5, s], tf.int64), settings).numpy()
            for s in range(2, 8)]
    assert any((out != once).any() for out in outs)
    np.testing.assert_array_equal(
        randaugment.apply(x, seed, Settings(prob=0.0)).numpy(), x.numpy())
