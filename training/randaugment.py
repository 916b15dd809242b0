"""RandAugment (Cubuk et al. 2019) as timm implements it, in stateless TensorFlow ops.

`training.randaugment_config.parse` reads the settings from timm's configuration string.

Each image gets `n` ops drawn uniformly with replacement from the 15 of `OPS`; each is applied
with probability `p` at the magnitude `m` (plus Gaussian noise of `mstd`, clipped to [0, 10]),
mapped to its argument by `level_argument` as timm's `*_level_to_arg` functions do, and with a
random sign where timm negates it. Images are uint8-valued (0-255) floats, as PIL's images are in
timm: each op rounds and clips its result. Affine ops sample bilinearly about the pixel grid
(TensorFlow's convention, not PIL's pixel centres) and fill with timm's default grey, 128.
Every draw is a function of the image's seed (`apply`), so a resumed run replays it.
`keras.layers.RandAugment` is not used: it ignores the seed it is given (its draws come from
its own SeedGenerator), picks the same ops for a whole batch, and its `factor` is a range of
random strengths rather than timm's fixed magnitude (keras/src/layers/preprocessing/
image_preprocessing/rand_augment.py).
"""

import functools
import math

import tensorflow as tf

from training.randaugment_config import MAX_MAGNITUDE, Settings, parse  # noqa: F401

OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
       "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel",
       "TranslateYRel")
FILL = 128.0
_SIGNED = {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel"}
_ENHANCE = {"Color", "Contrast", "Brightness", "Sharpness"}


def level_argument(name, magnitude, increasing=False, sign=1.0):
    """The argument of op `name` at `magnitude` (0-10), as timm's `*_level_to_arg` give it:
    degrees (Rotate, up to 30), shear (up to 0.3), translation as a fraction of the side (up to
    0.45), bits kept (Posterize), threshold (Solarize), value added (SolarizeAdd, up to 110) or
    enhancement factor (Color, Contrast, Brightness, Sharpness). `sign` (+1 or -1) negates the
    signed ones (and the "increasing" enhancement factors); `None` for ops without argument."""
    level = magnitude / MAX_MAGNITUDE
    if name in _SIGNED:
        return sign * level * {"Rotate": 30.0, "ShearX": 0.3, "ShearY": 0.3}.get(name, 0.45)
    if name == "Posterize":
        bits = tf.floor(level * 4)
        return 4 - bits if increasing else bits
    if name == "Solarize":
        threshold = tf.minimum(256.0, tf.floor(level * 256))
        return 256 - threshold if increasing else threshold
    if name == "SolarizeAdd":
        return tf.minimum(128.0, tf.floor(level * 110))
    if name in _ENHANCE:
        if increasing:
            return tf.maximum(0.1, 1.0 + sign * level * 0.9)
        return level * 1.8 + 0.1
    return None


def _finish(x):
    return tf.clip_by_value(tf.round(x), 0.0, 255.0)


def _grey(image):
    """PIL's `convert("L")`: (19595 R + 38470 G + 7471 B + 2^15) >> 16 of RGB images."""
    if image.shape[-1] != 3:
        return image
    weights = tf.constant([19595.0, 38470.0, 7471.0])
    return tf.floor((tf.reduce_sum(image * weights, -1, keepdims=True) + 32768.0) / 65536.0)


def _blend(degenerate, image, factor):
    """PIL's ImageEnhance: `degenerate + factor * (image - degenerate)`."""
    return _finish(degenerate + factor * (image - degenerate))


def _affine(image, transform):
    """The image sampled at `transform` (output pixel -> input pixel, TensorFlow's 8 numbers)."""
    h, w = image.shape[0], image.shape[1]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[None], transforms=tf.cast(tf.reshape(transform, [1, 8]), tf.float32),
        output_shape=tf.constant([h, w]), fill_value=FILL, interpolation="BILINEAR",
        fill_mode="CONSTANT")
    return _finish(out[0])


def _rotate(image, degrees):
    """PIL's `rotate(degrees)`: counter-clockwise about the centre."""
    angle = -degrees * math.pi / 180.0
    cy, cx = (image.shape[0] - 1) / 2, (image.shape[1] - 1) / 2
    cos, sin = tf.cos(angle), tf.sin(angle)
    return _affine(image, tf.stack([cos, sin, cx - cos * cx - sin * cy,
                                    -sin, cos, cy + sin * cx - cos * cy, 0.0, 0.0]))


def _equalize(image):
    """PIL's `ImageOps.equalize`, channel by channel."""
    channels = []
    for c in range(image.shape[-1]):
        x = tf.cast(image[..., c], tf.int32)
        hist = tf.math.bincount(x, minlength=256, maxlength=256)
        step = (tf.reduce_sum(hist) - hist[tf.reduce_max(x)]) // 255
        lut = (step // 2 + tf.cumsum(hist, exclusive=True)) // tf.maximum(step, 1)
        lut = tf.minimum(lut, 255)
        channels.append(tf.where(step > 0, tf.cast(tf.gather(lut, x), tf.float32),
                                 image[..., c]))
    return tf.stack(channels, -1)


def _auto_contrast(image):
    """PIL's `ImageOps.autocontrast`: each channel stretched to [0, 255]."""
    low = tf.reduce_min(image, [0, 1], keepdims=True)
    high = tf.reduce_max(image, [0, 1], keepdims=True)
    # (x - low) * 255 / (high - low): exact integers over a divisor, so the floor is exact.
    stretched = tf.floor((image - low) * 255.0 / tf.maximum(high - low, 1.0))
    return tf.where(high > low, stretched, image)


def _sharpness(image, factor):
    """PIL's ImageEnhance.Sharpness: blend with the SMOOTH-filtered image (borders kept)."""
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    channels = image.shape[-1]
    kernel = tf.tile(kernel[:, :, None, None], [1, 1, channels, 1])
    smooth = tf.round(tf.nn.depthwise_conv2d(image[None], kernel, [1, 1, 1, 1], "VALID")[0])
    smooth = tf.pad(smooth, [[1, 1], [1, 1], [0, 0]])
    h, w = image.shape[0], image.shape[1]
    interior = tf.pad(tf.ones([h - 2, w - 2, 1], tf.bool), [[1, 1], [1, 1], [0, 0]])
    return _blend(tf.where(interior, smooth, image), image, factor)


def apply_op(name, image, argument):
    """Op `name` of `OPS` applied to a uint8-valued float image `[h, w, c]` with the
    `level_argument` `argument`."""
    h, w = image.shape[0], image.shape[1]
    if name == "AutoContrast":
        return _auto_contrast(image)
    if name == "Equalize":
        return _equalize(image)
    if name == "Invert":
        return 255.0 - image
    if name == "Rotate":
        return _rotate(image, argument)
    if name == "Posterize":  # keep the `argument` most significant bits
        step = tf.pow(2.0, 8.0 - argument)
        return tf.floor(image / step) * step
    if name == "Solarize":
        return tf.where(image >= argument, 255.0 - image, image)
    if name == "SolarizeAdd":
        return tf.where(image < 128.0, tf.minimum(255.0, image + argument), image)
    if name == "Color":
        return _blend(_grey(image), image, argument)
    if name == "Contrast":
        mean = tf.floor(tf.reduce_mean(_grey(image)) + 0.5)
        return _blend(mean, image, argument)
    if name == "Brightness":
        return _blend(0.0, image, argument)
    if name == "Sharpness":
        return _sharpness(image, argument)
    zero, one = tf.constant(0.0), tf.constant(1.0)
    transforms = {
        "ShearX": [one, argument, zero, zero, one, zero],
        "ShearY": [one, zero, zero, argument, one, zero],
        "TranslateXRel": [one, zero, argument * w, zero, one, zero],
        "TranslateYRel": [one, zero, zero, zero, one, argument * h],
    }
    return _affine(image, tf.stack([*transforms[name], zero, zero]))


def apply(image, seed, settings: Settings):
    """RandAugment of one image `[h, w, c]` (values 0-255) with stateless seed `seed` (2 ints):
    a float32 image of uint8 values."""
    image = _finish(tf.cast(image, tf.float32))
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 5)
    n = settings.ops
    picks = tf.random.stateless_uniform([n], seeds[0], 0, len(OPS), tf.int32)
    applied = tf.random.stateless_uniform([n], seeds[1]) < settings.prob
    signs = tf.where(tf.random.stateless_uniform([n], seeds[2]) < 0.5, -1.0, 1.0)
    magnitude = tf.fill([n], float(settings.magnitude))
    if math.isinf(settings.magnitude_std):
        magnitude = tf.random.stateless_uniform([n], seeds[3], 0.0, settings.magnitude)
    elif settings.magnitude_std > 0:
        magnitude += settings.magnitude_std * tf.random.stateless_normal([n], seeds[3])
    magnitude = tf.clip_by_value(magnitude, 0.0, MAX_MAGNITUDE)
    for k in range(n):
        def branch(name, k=k):
            argument = level_argument(name, magnitude[k], settings.increasing, signs[k])
            return lambda: tf.ensure_shape(apply_op(name, image, argument), image.shape)

        changed = tf.switch_case(picks[k], [branch(name) for name in OPS])
        image = tf.where(applied[k], changed, image)
    return image


@functools.lru_cache(maxsize=None)
def batch_function(settings: Settings):
    """A `tf.function` `(images [b, h, w, c], seeds [b, 2]) -> float32 images`: `apply` to each
    image. It is traced once per image shape in a process (about 2 s, rather than at every
    epoch's input pipeline) and kept, one per `Settings`."""

    @tf.function(autograph=False)
    def augment(images, seeds):
        return tf.map_fn(lambda args: apply(args[0], args[1], settings),
                         (tf.cast(images, tf.float32), seeds), fn_output_signature=tf.float32)

    return augment
