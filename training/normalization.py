"""The normalisation statistics of a training split and the `(scale, offset)` they give, in
NumPy: one implementation for both input pipelines (`training.data`, `training.numpy_data`)."""

from typing import Callable, Iterable, Optional, Tuple

import numpy as np

from training.data_config import FIXED_STATISTICS

# Per-channel statistics of data that is not held in memory come from this many train images.
STATS_SAMPLE = 512


def statistics(normalization: str, channels: int, name: str, whole: bool,
               raw_batches: Callable[[], Iterable[np.ndarray]]
               ) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """Mean image, or channel means and standard deviations, of the train split (0-255).

    Args:
        normalization: str. A resolved `DataConfig.normalization`.
        channels: int. Channels of the images.
        name: str. The data set, in errors.
        whole: bool. The CIFAR-style geometry: exact integer sums over every train image.
        raw_batches: callable. Gives batches of raw (unnormalised) train images: all of them
            (`whole`), else the first `STATS_SAMPLE`. Called only when statistics are needed.
    """
    if normalization == "none":
        return None, None
    if normalization in FIXED_STATISTICS:
        if channels != 3:
            raise ValueError(
                f"normalization={normalization!r} is for RGB images; {name} "
                f"has {channels} channel(s).")
        return tuple(np.array(values, np.float32) for values in FIXED_STATISTICS[normalization])
    if whole:  # exact integer sums over the whole split
        squares = normalization == "per_channel"
        total, total_sq, count = 0.0, 0.0, 0
        for images in raw_batches():
            wide = images.astype(np.int64)
            total = total + wide.sum(axis=0)
            if squares:
                total_sq = total_sq + (wide * wide).sum(axis=0)
            count += len(images)
        mean_image = total / count
        if normalization == "per_pixel_mean":
            return mean_image.astype(np.float32), None
        pixels = count * mean_image.shape[0] * mean_image.shape[1]
        mean = total.reshape(-1, channels).sum(axis=0) / pixels
        var = total_sq.reshape(-1, channels).sum(axis=0) / pixels - mean ** 2
    else:
        sums, sums_sq, pixels = np.zeros(channels), np.zeros(channels), 0
        for images in raw_batches():
            flat = images.reshape(-1, channels).astype(np.float64)
            sums += flat.sum(axis=0)
            sums_sq += (flat * flat).sum(axis=0)
            pixels += len(flat)
        mean = sums / pixels
        var = sums_sq / pixels - mean ** 2
    std = np.sqrt(np.maximum(var, 1.0))
    return mean.astype(np.float32), std.astype(np.float32)


def normalizer(normalization: str, mean, std) -> Tuple[np.ndarray, np.ndarray]:
    """(scale, offset) with normalised = pixel * scale + offset."""
    if normalization == "none":
        return np.float32(1 / 255), np.float32(0)
    if normalization == "per_pixel_mean":
        return np.float32(1 / 255), (-mean / 255).astype(np.float32)
    return (1 / std).astype(np.float32), (-mean / std).astype(np.float32)
