"""The papers' augmentations and evaluation crops, as pure functions of images and seeds.

Two geometries cover the papers' recipes:

- *CIFAR-style* (augmentation `"cifar"`, or `"none"` on images of at most 64 pixels): every image
  has the output size (images of another size are resized, shorter side first, and centre
  cropped: `training.images.fit`). Training pads 1/8 of the size on each side (4 pixels at
  32x32) with zeros after normalisation (or, with `crop_padding="reflect"`, with the image's
  reflection), takes a random crop of the original size and flips half of the images (He et
  al. 2015, section 4.2): `cifar_augmenter`. Evaluation uses the whole
  image; 10-crop evaluation takes the four corners and the centre of the padded image, and their
  mirror images: `ten_crop_padded`.
- *ImageNet-style* (augmentations `"imagenet"` and `"inception"`, or `"none"` on larger images):
  images keep their own sizes until a square crop of the output size `S` (224 by default) is
  taken. `"imagenet"` is the scale augmentation of He et al. 2015 (the shorter side resized to a
  random length in [256, 480] at S = 224, that is [8/7 S, 15/7 S], then a random S x S crop and a
  random flip; computed as a crop of the original image resized to S x S, which is the same
  geometry at a fraction of the cost): `scale_crop`. `"inception"` is the random-resized crop of
  Szegedy et al. 2015 (8%-100% of the area, aspect ratio in [3/4, 4/3], at most 10 attempts, then
  the whole image) and a flip: `inception_crop`. Evaluation resizes the shorter side to 8/7 S
  (256 at 224) and takes the centre S x S crop (`center_crop`); 10-crop evaluation takes the four
  corners and the centre of that resized image, and their mirror images (`ten_crop`).

Every draw is stateless: the CIFAR crop of example `i` in epoch `e` is drawn from
`(seed, e, CIFAR_CROPS)` by NumPy's counter-based generator (`cifar_crop_ids`), an ImageNet crop
from `(base_seed(seed, e, IMAGENET_CROPS), i)` by TensorFlow's stateless random ops, so a resumed
run replays an epoch exactly.
"""

import numpy as np
import tensorflow as tf

from training import images as image_files
from training import mixing, randaugment
from training.draws import (  # noqa: F401 (re-exported: what this module offered)
    CIFAR_CROPS,
    ERASING,
    IMAGENET_CROPS,
    MIXING,
    ORDER,
    RANDAUGMENT,
    SYNTHETIC,
    base_seed,
    cifar_crop_ids,
    eval_resize_side,
    padding,
)

# Above this many index-table entries the CIFAR crops use two gathers instead of one table.
MAX_CROP_TABLE = 1 << 24


def _pad(x, pad, mode):
    """`x` `[b, h, w, c]` padded by `pad` (rows, columns) on each side: `mode` `"zeros"` or
    `"reflect"` (`DataConfig.crop_padding`)."""
    return tf.pad(x, [[0, 0], [pad[0], pad[0]], [pad[1], pad[1]], [0, 0]],
                  mode="REFLECT" if mode == "reflect" else "CONSTANT")


def cifar_augmenter(hw, channels, scale, offset, max_table=MAX_CROP_TABLE, mode="zeros"):
    """A function `(uint8 images [b, h, w, c], crop ids [b]) -> normalised, augmented images`.

    Crop id `k = (top * (2 * pad_w + 1) + left) * 2 + flip` selects where the crop of the
    padded normalised image starts and whether it is mirrored. Padding (`mode`, zeros or
    reflections) commutes with the normalisation `pixels * scale + offset`, `offset` padded
    alike, so this equals cropping the padded uint8 image, normalising it and adding the
    padded offset; with one index table per crop id (at most `max_table` entries in all) that
    is a single gather per batch (about 4x faster than gathering rows and columns).
    """
    h, w = hw
    ph, pw = padding(hw)
    hp, wp = h + 2 * ph, w + 2 * pw
    crops = (2 * ph + 1) * (2 * pw + 1) * 2
    offset_image = np.broadcast_to(np.asarray(offset, np.float32), (h, w, channels))
    offset_image = np.pad(offset_image, [(ph, ph), (pw, pw), (0, 0)],
                          mode="reflect" if mode == "reflect" else "constant")
    if crops * h * w <= max_table:
        tables = []
        for top in range(2 * ph + 1):
            for left in range(2 * pw + 1):
                for flip in (0, 1):
                    cols = left + np.arange(w)
                    if flip:
                        cols = cols[::-1]
                    tables.append(((top + np.arange(h))[:, None] * wp + cols[None]).ravel())
        tables = np.stack(tables).astype(np.int32)  # [crops, h * w]
        offsets = tf.constant(offset_image.reshape(-1, channels)[tables].reshape(
            crops, h, w, channels))
        tables = tf.constant(tables)

        def augment(images, k):
            padded = tf.reshape(_pad(images, (ph, pw), mode), [-1, hp * wp, channels])
            x = tf.gather(padded, tf.gather(tables, k), batch_dims=1)
            x = tf.reshape(x, [-1, h, w, channels])
            return tf.cast(x, tf.float32) * scale + tf.gather(offsets, k)

        return augment

    def augment(images, k):
        padded = _pad(tf.cast(images, tf.float32) * scale + offset, (ph, pw), mode)
        top, left, flip = k // (2 * (2 * pw + 1)), (k // 2) % (2 * pw + 1), k % 2
        x = tf.gather(padded, top[:, None] + tf.range(h)[None], axis=1, batch_dims=1)
        x = tf.gather(x, left[:, None] + tf.range(w)[None], axis=2, batch_dims=1)
        return tf.where(flip[:, None, None, None] > 0, tf.reverse(x, [2]), x)

    return augment


def ten_crop_padded(x, pad, mode="zeros"):
    """`[b, 10, h, w, c]`: corners and centre of the batch padded as `mode` says, then their
    mirror images."""
    h, w = x.shape[1], x.shape[2]
    padded = _pad(x, pad, mode)
    corners = [(0, 0), (0, 2 * pad[1]), (2 * pad[0], 0), (2 * pad[0], 2 * pad[1]), pad]
    crops = [padded[:, top:top + h, left:left + w] for top, left in corners]
    crops += [tf.reverse(crop, [2]) for crop in crops]
    return tf.stack(crops, axis=1)


def _crop_resize(image, top, left, crop_h, crop_w, size):
    crop = image[top:top + crop_h, left:left + crop_w]
    return tf.ensure_shape(tf.image.resize(crop, [size, size]), [size, size, image.shape[-1]])


def _eval_crop_side(image, size):
    """Side, in the image's pixels, of a `size` crop after resizing the shorter side to 8/7 size."""
    shape = tf.shape(image)
    short = tf.minimum(shape[0], shape[1])
    resize_to = eval_resize_side(size)
    side = tf.cast(tf.round(tf.cast(short, tf.float32) * (size / resize_to)), tf.int32)
    return shape[0], shape[1], tf.clip_by_value(side, 1, short)


def center_crop(image, size):
    """The centre `size` x `size` crop after resizing the shorter side to `eval_resize_side`."""
    h, w, side = _eval_crop_side(image, size)
    return _crop_resize(image, (h - side) // 2, (w - side) // 2, side, side, size)


def ten_crop(image, size):
    """`[10, size, size, c]`: corners and centre of the resized image, then their mirrors."""
    h, w, side = _eval_crop_side(image, size)
    corners = [(0, 0), (0, w - side), (h - side, 0), (h - side, w - side),
               ((h - side) // 2, (w - side) // 2)]
    crops = [_crop_resize(image, top, left, side, side, size) for top, left in corners]
    crops += [tf.reverse(crop, [1]) for crop in crops]
    return tf.stack(crops)


def scale_crop(image, size, seed):
    """He et al. 2015 scale augmentation: shorter side to U[8/7, 15/7] size, random size crop."""
    seeds = tf.random.experimental.stateless_split(seed, 3)
    shape = tf.shape(image)
    short = tf.minimum(shape[0], shape[1])
    low, high = round(size * 256 / 224), round(size * 480 / 224)
    target = tf.random.stateless_uniform([], seeds[0], minval=low, maxval=high + 1,
                                         dtype=tf.int32)
    side = tf.cast(tf.round(tf.cast(short, tf.float32) * size / tf.cast(target, tf.float32)),
                   tf.int32)
    side = tf.clip_by_value(side, 1, short)
    top = tf.random.stateless_uniform([], seeds[1], minval=0, maxval=shape[0] - side + 1,
                                      dtype=tf.int32)
    left = tf.random.stateless_uniform([], seeds[2], minval=0, maxval=shape[1] - side + 1,
                                       dtype=tf.int32)
    return _crop_resize(image, top, left, side, side, size)


def inception_crop(image, size, seed):
    """Szegedy et al. 2015 random-resized crop (8-100% of the area, aspect 3/4-4/3)."""
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=seed,
        min_object_covered=0.1,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return _crop_resize(image, begin[0], begin[1], crop_size[0], crop_size[1], size)


def random_flip(image, seed):
    """The image mirrored left-right with probability 1/2."""
    flip = tf.random.stateless_uniform([], seed) < 0.5
    return tf.where(flip, tf.reverse(image, [1]), image)


def example_step(out_hw, whole, augmentation, train, ten_crops, base=None):
    """A function `(image, label, index) -> (image, label, index)`: the per-example geometry.

    Args:
        out_hw: tuple of 2 ints. The output size.
        whole: bool. The CIFAR-style geometry: every image is fitted to `out_hw`.
        augmentation: str. `"imagenet"`, `"inception"` or `"none"` (ImageNet-style training).
        train: bool. Training (random crops) or evaluation (centre or ten crops).
        ten_crops: bool. Ten-crop evaluation.
        base: int. The epoch's `base_seed(seed, epoch, IMAGENET_CROPS)` (random crops only).
    """
    if whole:
        return lambda image, label, i: (image_files.fit(image, out_hw), label, i)
    size = out_hw[0]
    if not train:
        if ten_crops:
            return lambda image, label, i: (ten_crop(image, size), label, i)
        return lambda image, label, i: (center_crop(image, size), label, i)
    if augmentation == "none":
        return lambda image, label, i: (center_crop(image, size), label, i)
    crop = scale_crop if augmentation == "imagenet" else inception_crop

    def prepare(image, label, i):
        seeds = tf.random.experimental.stateless_split(
            tf.stack([tf.constant(base, tf.int64), i]), 2)
        return random_flip(crop(image, size, seeds[0]), seeds[1]), label, i

    return prepare


def batch_step(out_hw, channels, scale, offset, crop_ids=None, ten_crops=False,
               max_table=MAX_CROP_TABLE, before=None, after=None, crop_padding="zeros"):
    """A function `(uint8 images, labels, indices) -> (float32 images, labels)` of a batch:
    `before(images, indices)` (RandAugment), normalisation (`pixels * scale + offset`), then the
    CIFAR crops and flips (`crop_ids`, one per index, from `cifar_crop_ids`) or the ten crops of
    the padded image (`ten_crops`), both padded as `crop_padding` says, then
    `after(images, labels, indices)` (random erasing, MixUp / CutMix): `train_components`
    makes the two."""
    pad = padding(out_hw)
    if crop_ids is not None:
        crop_ids = tf.constant(crop_ids)
        augment = cifar_augmenter(out_hw, channels, scale, offset, max_table, crop_padding)

    def finish(images, labels, index):
        if before is not None:
            images = before(images, index)
        if crop_ids is not None:
            x = augment(images, tf.gather(crop_ids, index))
        else:
            x = tf.cast(images, tf.float32) * scale + offset
            if ten_crops:
                x = ten_crop_padded(x, pad, crop_padding)
        return (x, labels) if after is None else after(x, labels, index)

    return finish


def _example_seeds(base, index):
    """`[b, 2]` stateless seeds `(base, index of the example)`."""
    index = tf.cast(index, tf.int64)
    return tf.stack([tf.fill(tf.shape(index), tf.constant(base, tf.int64)), index], axis=1)


def train_components(config, epoch, num_classes):
    """`(before, after)` of `batch_step` for the augmentation components that `config` (a
    `DataConfig`) turns on, each `None` when nothing is on.

    `before` is RandAugment (`config.randaugment`) of each image, drawn from
    `(base_seed(seed, epoch, RANDAUGMENT), index of the example)`: on the uint8 images before
    the CIFAR crop (as AutoAugment's CIFAR code applies its policy before pad-crop-flip), after
    the crop and flip otherwise (timm's order). `after` is random erasing of each normalised
    image (`config.erasing_prob`; stream `ERASING`), then MixUp / CutMix of the batch
    (`config.mixup_alpha`, `config.cutmix_alpha`, `config.mix_prob`,
    `config.mix_switch_prob`), drawn from `(base_seed(seed, epoch, MIXING), index of the
    batch's first example)`; mixing makes the labels float32 one-hot targets
    `[b, num_classes]`. `training.mixing` and `training.randaugment` give the details.
    """
    before = after_erase = after_mix = None
    if config.randaugment:
        rand_augment = randaugment.batch_function(randaugment.parse(config.randaugment))
        ra_base = base_seed(config.seed, epoch, RANDAUGMENT)

        def before(images, index):
            out = rand_augment(images, _example_seeds(ra_base, index))
            return tf.cast(out, images.dtype)

    if config.erasing_prob > 0:
        erase_base, prob = base_seed(config.seed, epoch, ERASING), config.erasing_prob

        def after_erase(images, index):
            return tf.map_fn(lambda args: mixing.erase(args[0], args[1], prob),
                             (images, _example_seeds(erase_base, index)),
                             fn_output_signature=tf.float32)

    if config.mixup_alpha > 0 or config.cutmix_alpha > 0:
        mix_base = base_seed(config.seed, epoch, MIXING)

        def after_mix(images, labels, index):
            seed = tf.stack([tf.constant(mix_base, tf.int64), tf.cast(index[0], tf.int64)])
            return mixing.mix_batch(images, labels, num_classes, seed, config.mixup_alpha,
                                    config.cutmix_alpha, config.mix_prob,
                                    config.mix_switch_prob)

    if after_erase is None and after_mix is None:
        return before, None

    def after(images, labels, index):
        if after_erase is not None:
            images = after_erase(images, index)
        if after_mix is not None:
            images, labels = after_mix(images, labels, index)
        return images, labels

    return before, after
