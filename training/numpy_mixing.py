"""MixUp, CutMix and random erasing in NumPy, for `training.numpy_data`: timm's batch mode and
pixel mode, as `training.mixing` draws them with TensorFlow's stateless ops (read that module
for the details). The distributions are the same; the draws are NumPy's, from
`(seed, epoch, MIXING, index of the batch's first example)` for a batch and
`(seed, epoch, ERASING, index of the example)` for an image, so a resumed run replays them.
"""

import numpy as np

from training.draws import ERASE_AREA, ERASE_ATTEMPTS, ERASE_LOG_ASPECT


def cutmix_box(hw, lam, rng):
    """`(top, bottom, left, right)` of timm's `rand_bbox` for `lam`, and the corrected `lam`
    (1 - box area / image area)."""
    h, w = hw
    ratio = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(np.floor(h * ratio)), int(np.floor(w * ratio))
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    top, bottom = (int(np.clip(cy + d * (cut_h // 2), 0, h)) for d in (-1, 1))
    left, right = (int(np.clip(cx + d * (cut_w // 2), 0, w)) for d in (-1, 1))
    return (top, bottom, left, right), 1.0 - (bottom - top) * (right - left) / float(h * w)


def mix_batch(images, labels, num_classes, rng, mixup_alpha, cutmix_alpha, mix_prob,
              switch_prob):
    """`(mixed images, mixed one-hot targets [b, num_classes])` of float32 images
    `[b, h, w, c]` and int labels `[b]`: the batch mixed with itself reversed."""
    mixed = rng.random() < mix_prob
    use_cutmix = (rng.random() < switch_prob) if mixup_alpha > 0 and cutmix_alpha > 0 else (
        cutmix_alpha > 0)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(rng.beta(alpha, alpha)) if mixed else 1.0
    other = images[::-1]
    if use_cutmix:
        (top, bottom, left, right), lam = cutmix_box(images.shape[1:3], lam, rng)
        images = images.copy()
        images[:, top:bottom, left:right] = other[:, top:bottom, left:right]
    else:
        images = (np.float32(lam) * images + np.float32(1.0 - lam) * other).astype(np.float32)
    one_hot = np.eye(num_classes, dtype=np.float32)[labels]
    return images, (np.float32(lam) * one_hot + np.float32(1.0 - lam) * one_hot[::-1])


def erase(image, rng, probability):
    """timm's random erasing of one normalised float32 image `[h, w, c]`: with probability
    `probability`, one box (area 2%-1/3, log-uniform aspect in [0.3, 1/0.3], the first of
    `ERASE_ATTEMPTS` draws that fits) replaced by standard normal noise."""
    h, w = image.shape[:2]
    if rng.random() >= probability:
        return image
    for _ in range(ERASE_ATTEMPTS):
        target = rng.uniform(*ERASE_AREA) * h * w
        aspect = np.exp(rng.uniform(*ERASE_LOG_ASPECT))
        box_h, box_w = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
        if box_h < h and box_w < w:
            top, left = int(rng.integers(0, h - box_h + 1)), int(rng.integers(0, w - box_w + 1))
            image = image.copy()
            image[top:top + box_h, left:left + box_w] = rng.standard_normal(
                (box_h, box_w, image.shape[2])).astype(np.float32)
            return image
    return image
