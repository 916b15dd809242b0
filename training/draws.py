"""The random draws of the input pipelines that are pure NumPy, shared by both of them: the
order of each epoch, the CIFAR crops, the seeds of the other streams, and the sizes they use.

`training.augment` and `training.splits` (tf.data) re-export these; `training.numpy_data`
(without TensorFlow) uses them directly, so both pipelines give an epoch the same order and the
same CIFAR crops and flips.
"""

import math

import numpy as np

# Stream names of the NumPy / TensorFlow random draws, so that they never share a seed.
ORDER, CIFAR_CROPS, IMAGENET_CROPS, SYNTHETIC = 1, 2, 3, 4
RANDAUGMENT, ERASING, MIXING = 5, 6, 7
# Random erasing's boxes (timm's RandomErasing): area, log aspect ratio, attempts to fit.
ERASE_AREA = (0.02, 1 / 3)
ERASE_LOG_ASPECT = (math.log(0.3), math.log(1 / 0.3))
ERASE_ATTEMPTS = 10


def base_seed(seed, epoch, stream):
    """One int64 drawn from (seed, epoch, stream): the first half of per-example seeds."""
    return int(np.random.default_rng([seed, epoch, stream]).integers(0, 2 ** 62))


def eval_resize_side(size: int) -> int:
    """The shorter side that ImageNet-style evaluation resizes an image to before it takes the
    centre `size` crop: 8/7 of it (256 at 224, He et al. 2015)."""
    return round(size * 256 / 224)


def padding(hw):
    """The CIFAR-style zero padding of each side: 1/8 of the size (4 pixels at 32x32)."""
    return max(1, hw[0] // 8), max(1, hw[1] // 8)


def cifar_crop_ids(seed, epoch, keys, hw):
    """int32 crop id (see `cifar_augmenter`) of each of `keys` examples in epoch `epoch`."""
    ph, pw = padding(hw)
    rng = np.random.default_rng([seed, epoch, CIFAR_CROPS])
    return rng.integers(0, (2 * ph + 1) * (2 * pw + 1) * 2, keys).astype(np.int32)


def train_order(seed, epoch, shuffle_buffer, n):
    """The order of `0..n-1` in epoch `epoch`: a permutation, or that of a shuffle buffer."""
    rng = np.random.default_rng([seed, epoch, ORDER])
    if shuffle_buffer is None or shuffle_buffer >= n:
        return rng.permutation(n)
    return buffer_shuffle(n, shuffle_buffer, rng)


def buffer_shuffle(n, buffer, rng):
    """The order a shuffle buffer of `buffer` elements gives to 0..n-1."""
    size = min(buffer, n)
    slots = np.arange(size)
    out = np.empty(n, np.int64)
    draws = rng.integers(0, size, size=n - size)
    for t, j in enumerate(draws.tolist()):
        out[t] = slots[j]
        slots[j] = size + t
    out[n - size:] = rng.permutation(slots)
    return out
