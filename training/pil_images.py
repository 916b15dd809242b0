"""Image files without TensorFlow: PIL decoding and TensorFlow's resize geometry in NumPy.

The TensorFlow-free pipeline (`training.numpy_data`) decodes with PIL and resizes as
`tf.image.resize` does (bilinear, half-pixel centres, no antialiasing; the kernel's float32
arithmetic, in its order: columns, then rows), so that its images equal those of
`training.images` and `training.augment` up to the decoders' differences. `fit`, `center_crop`
and `crop_resize` mirror `training.images.fit`, `training.augment.center_crop` and
`training.augment._crop_resize`; `serving` writes the same resize with `keras.ops`.
"""

import concurrent.futures
import io
import os
from typing import Sequence, Tuple

import numpy as np
from PIL import Image

from training.draws import eval_resize_side

_PROBE_FILES = 16
_MODES = {1: "L", 3: "RGB"}


def decode(contents: bytes, channels: int = 3) -> np.ndarray:
    """uint8 `[h, w, channels]` of encoded image bytes (JPEG, PNG); a `ValueError` for bytes
    that do not decode. EXIF orientation is ignored, as `tf.io.decode_image` ignores it."""
    if channels not in _MODES:
        raise ValueError(f"channels must be 1 or 3; got {channels!r}.")
    try:
        with Image.open(io.BytesIO(contents)) as image:
            return np.asarray(image.convert(_MODES[channels]), np.uint8).reshape(
                image.size[1], image.size[0], channels)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"not a decodable image ({error})") from None


def read(path: str) -> bytes:
    """The file's contents (b"" for a file that cannot be read: it then fails to decode)."""
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return b""


def probe_size(paths: Sequence[str]) -> Tuple[int, int]:
    """(height, width) of the first decodable image among the first few (as
    `training.images.probe_size`)."""
    for path in paths[:_PROBE_FILES]:
        try:
            shape = decode(read(path), 3).shape
            return int(shape[0]), int(shape[1])
        except ValueError:
            continue
    raise ValueError(f"None of the first {min(_PROBE_FILES, len(paths))} images decodes, e.g. "
                     f"{paths[0]}; is this an image folder?")


def _axis(size, scale, window, shift=0):
    """Where `tf.image.resize` reads output pixels `shift .. shift + size - 1` of one axis from
    the `window` `(start, extent)` of the input: lower and upper input pixels and the upper
    one's weight. `scale` is the kernel's float32 `extent / resized size`."""
    start, extent = window
    x = (np.arange(shift, shift + size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(
        0.5)
    below = np.floor(x)
    lower = np.maximum(below, 0).astype(np.int64) + start
    upper = np.minimum(np.ceil(x), extent - 1).astype(np.int64) + start
    return lower, upper, (x - below).astype(np.float32)


def _resample(image, rows, columns):
    """Bilinear interpolation of float32 `[h, w, c]`, in `tf.image.resize`'s order."""
    top, bottom = image[rows[0]], image[rows[1]]
    left, right, weight = columns
    weight = weight[None, :, None]

    def across(x):
        x_left = x[:, left]
        return x_left + (x[:, right] - x_left) * weight

    top, bottom = across(top), across(bottom)
    return top + (bottom - top) * rows[2][:, None, None]


def _scale(extent, size):
    return np.float32(extent) / np.float32(size)


def crop_resize(image: np.ndarray, top: int, left: int, crop_h: int, crop_w: int,
                size: int) -> np.ndarray:
    """float32 `[size, size, c]`: the crop resized as `tf.image.resize(crop, [size, size])`."""
    image = image.astype(np.float32, copy=False)
    return _resample(image, _axis(size, _scale(crop_h, size), (top, crop_h)),
                     _axis(size, _scale(crop_w, size), (left, crop_w)))


def fit(image: np.ndarray, hw: Tuple[int, int]) -> np.ndarray:
    """uint8 image of exactly `hw`: resized to cover it (shorter side first), centre cropped and
    rounded, as `training.images.fit`; an image of that size is returned as it is."""
    h, w = image.shape[:2]
    target_h, target_w = hw
    if (h, w) == (target_h, target_w):
        return image
    scale = max(np.float32(target_h) / np.float32(h), np.float32(target_w) / np.float32(w))
    new_h = max(target_h, int(np.round(np.float32(h) * scale)))
    new_w = max(target_w, int(np.round(np.float32(w) * scale)))
    top, left = (new_h - target_h) // 2, (new_w - target_w) // 2
    resized = _resample(image.astype(np.float32),
                        _axis(target_h, _scale(h, new_h), (0, h), top),
                        _axis(target_w, _scale(w, new_w), (0, w), left))
    return np.clip(np.round(resized), 0, 255).astype(np.uint8)


def eval_crop_side(image: np.ndarray, size: int) -> int:
    """Side, in the image's pixels, of the `size` crop after resizing the shorter side to
    `eval_resize_side(size)` (`training.augment._eval_crop_side`, in float32)."""
    short = min(image.shape[:2])
    side = int(np.round(np.float32(short) * np.float32(size / eval_resize_side(size))))
    return min(max(side, 1), short)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The ImageNet-style evaluation crop (`training.augment.center_crop`), float32."""
    h, w = image.shape[:2]
    side = eval_crop_side(image, size)
    return crop_resize(image, (h - side) // 2, (w - side) // 2, side, side, size)


def ten_crop(image: np.ndarray, size: int) -> np.ndarray:
    """`[10, size, size, c]`: corners and centre of the resized image, then their mirrors
    (`training.augment.ten_crop`)."""
    h, w = image.shape[:2]
    side = eval_crop_side(image, size)
    corners = [(0, 0), (0, w - side), (h - side, 0), (h - side, w - side),
               ((h - side) // 2, (w - side) // 2)]
    crops = [crop_resize(image, top, left, side, side, size) for top, left in corners]
    return np.stack(crops + [crop[:, ::-1] for crop in crops])


def map_threads(function, items, workers=None):
    """`[function(item) for item in items]`, computed by a pool of threads (PIL and NumPy
    release the GIL while they decode and resize)."""
    workers = workers or min(16, os.cpu_count() or 1)
    if workers == 1 or len(items) < 2:
        return [function(item) for item in items]
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items, chunksize=max(1, len(items) // (4 * workers))))


def decode_all(sources, hw, channels, from_files):
    """(uint8 images `[n, h, w, c]` fitted to `hw`, positions of the sources that do not
    decode), as `training.images.decode_all`."""
    def one(source):
        try:
            return fit(decode(read(source) if from_files else source, channels), hw)
        except ValueError:
            return None

    decoded = map_threads(one, list(sources))
    images = np.zeros((len(decoded), *hw, channels), np.uint8)
    for i, image in enumerate(decoded):
        if image is not None:
            images[i] = image
    return images, np.array([i for i, image in enumerate(decoded) if image is None], np.int64)


def verify_all(sources, from_files):
    """Positions of the sources (paths, or encoded images) that do not decode."""
    def fails(source):
        try:
            decode(read(source) if from_files else source, 3)
            return False
        except ValueError:
            return True

    return np.nonzero(map_threads(fails, list(sources)))[0] if len(sources) else np.zeros(
        0, np.int64)
