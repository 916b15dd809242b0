"""The input pipeline without TensorFlow: NumPy batches from PIL-decoded images.

`NumpyPipeline(DataConfig(...))` has the interface of `training.data.Pipeline` that the Keras
loop (`training.keras_loop`) uses: `info`, `steps_per_epoch`, `train(epoch, batch,
skip_batches=0)`, `evaluation(split, batch)`, `normalizer`, `fit_size` and
`eval_center_crop`. It reads `"synthetic"` and image folders, where TensorFlow is not
installed (`pip install keras-resnets[jax]`), with what `training.data.Pipeline` does:

- the same plan (`training.sources.plan`: output size, geometry, caching, normalisation), the
  same examples in each split (`training.sources.base.select`: the validation carve-out,
  `max_train_examples`, `max_test_examples`), the same normalisation statistics;
- the same order of each epoch (`training.draws.train_order`) and, with the `"cifar"`
  augmentation, the same crops and flips (`training.draws.cifar_crop_ids`): a batch of a run
  equals the tf.data pipeline's up to the image decoders (PIL here, TensorFlow's there);
- the same evaluation geometry (`training.pil_images`: TensorFlow's resize in NumPy) and ten
  crops. The `"imagenet"` and `"inception"` crops and flips have the tf.data pipeline's
  distributions but NumPy's draws (from `(seed, epoch, IMAGENET_CROPS, index)`): TensorFlow's
  stateless random ops cannot be reproduced without it.

Random erasing, MixUp and CutMix are `training.numpy_mixing`'s (timm's, as `training.mixing`,
with NumPy's draws). RandAugment is made of TensorFlow image ops; this pipeline refuses it (and
TFRecord and TFDS data) with one line naming the setting. Batches are a
`keras.utils.PyDataset` whose worker threads prepare the next ones while the model trains.
"""

import concurrent.futures
import logging
import os
import threading
import time

import keras
import numpy as np

from training import draws, normalization, numpy_mixing, pil_images
from training.data_config import DataConfig, DatasetInfo
from training.image_folders import CorruptImageError
from training.normalization import STATS_SAMPLE
from training.pipeline_base import PipelineBase
from training.sources import base
from training.sources.folder import ImageFolderSource
from training.sources.synthetic import SyntheticSource

logger = logging.getLogger(__name__)

# Batches prepared ahead of the one the model trains on (keras.utils.PyDataset's threads), and
# the threads that decode and crop the images of a batch (PIL and NumPy release the GIL).
WORKERS = 2
THREADS = min(16, os.cpu_count() or 1)
# Settings drawn by TensorFlow ops: (is it on?, the setting as the error names it).
TF_ONLY = ((lambda c: bool(c.randaugment), lambda c: f"randaugment={c.randaugment!r}"),)


class _PilFolderSource(ImageFolderSource):
    """An image folder whose probe decodes with PIL."""

    _probe_size = staticmethod(pil_images.probe_size)


class _Split:
    """One split in memory: decoded arrays (`images`) or, for larger images, file paths or
    encoded images (`sources`, decoded when a batch is made)."""

    def __init__(self, labels, names, images=None, sources=None, from_files=False):
        self.labels, self.names = np.asarray(labels, np.int32), np.asarray(names)
        self.images, self.sources, self.from_files = images, sources, from_files

    def __len__(self):
        return len(self.labels)

    def image(self, i, channels):
        """uint8 `[h, w, c]` of example `i`; a file that no longer decodes (it changed on disk
        since the pipeline checked it) raises a `CorruptImageError` naming it."""
        if self.images is not None:
            return self.images[i]
        source = self.sources[i]
        try:
            return pil_images.decode(pil_images.read(source) if self.from_files else source,
                                     channels)
        except ValueError:
            raise CorruptImageError([str(self.names[i])], "It changed on disk after the "
                                    "pipeline checked it; restart to read it again. ") from None


def check_config(config: DataConfig) -> None:
    """Raises one `ValueError` naming the first setting of `config` that needs TensorFlow."""
    for is_on, named in TF_ONLY:
        if is_on(config):
            raise ValueError(f"{named(config)} is drawn by TensorFlow ops, which the "
                             "TensorFlow-free input pipeline (input_pipeline='numpy') does not "
                             "have; turn it off or install TensorFlow.")
    if not (SyntheticSource.accepts(config) or ImageFolderSource.accepts(config)) or (
            os.path.isdir(os.path.expanduser(config.dataset))
            and not os.path.isdir(os.path.join(os.path.expanduser(config.dataset), "train"))):
        raise ValueError(f"dataset={config.dataset!r}: the TensorFlow-free input pipeline "
                         "(input_pipeline='numpy') reads 'synthetic' and image folders "
                         "(<folder>/train/<class>/*.jpg); TFDS names and TFRecord folders need "
                         "TensorFlow.")


class NumpyPipeline(PipelineBase):
    """NumPy batches of one data set, without TensorFlow (see the module's docstring).

    Args:
        config: `DataConfig`. What to read and how to prepare it.

    Attributes:
        info, augmentation, normalization, cached, mean, std, skipped_files, test_source,
        load_seconds: as in `training.data.Pipeline`; `normalizer`, `fit_size`,
        `eval_center_crop` and `steps_per_epoch` are `training.pipeline_base`'s.

    Example:

    >>> pipeline = NumpyPipeline(DataConfig(dataset="synthetic", synthetic_examples=64))
    >>> images, labels = pipeline.train(epoch=0, global_batch_size=16)[0]
    >>> images.shape, images.dtype.name, labels.dtype.name
    ((16, 32, 32, 3), 'float32', 'int32')
    >>> pipeline.steps_per_epoch(16)
    4
    """

    def __init__(self, config: DataConfig):
        if not isinstance(config, DataConfig):
            raise ValueError(f"config must be a DataConfig; got {type(config).__name__}.")
        check_config(config)
        self.config = config
        start = time.perf_counter()
        synthetic = SyntheticSource.accepts(config)
        source = SyntheticSource(config) if synthetic else _PilFolderSource(config)
        description = source.describe()
        self._plan = plan = base.plan(config, description)
        skipped = []
        if synthetic:
            self._splits = {split: _Split(labels, names, images=images)
                            for split, (images, labels, names) in source.arrays().items()}
        else:
            self._splits = self._folder_splits(source, plan, skipped)
        self.skipped_files = tuple(skipped)
        if skipped:
            logger.warning("Skipped %d corrupt image file(s): %s%s", len(skipped),
                           ", ".join(skipped[:10]), " ..." if len(skipped) > 10 else "")
        self.load_seconds = time.perf_counter() - start
        self.augmentation, self.normalization = plan.augmentation, plan.normalization
        self.cached, self.test_source = plan.cached, description.test_source
        self.mean, self.std = self._statistics(description.name)
        self._scale, self._offset = self._normalizer()
        self._threads, self._threads_lock = None, threading.Lock()
        h, w = plan.out_hw
        self.info = DatasetInfo(
            name=description.name, num_classes=description.num_classes,
            image_shape=(h, w, plan.channels),
            train_examples=len(self._splits["train"]),
            validation_examples=len(self._splits["validation"]),
            test_examples=len(self._splits["test"]), class_names=description.class_names)

    def _folder_splits(self, source, plan, skipped):
        """The folder's splits (`training.sources.base.pools` without tf.data)."""
        train, test = source.listing()
        selection = base.select(self.config, train.labels, test.labels)
        made = {}
        for split, listed in (("train", train), ("validation", train), ("test", test)):
            idx = selection[split]
            paths, labels = listed.paths[idx], listed.labels[idx]
            if plan.arrays:
                images, bad = pil_images.decode_all(paths, plan.store_hw, plan.channels, True)
            else:
                images, bad = None, pil_images.verify_all(paths, from_files=True)
            if len(bad):
                if not self.config.skip_corrupt:
                    raise CorruptImageError([str(paths[i]) for i in bad])
                skipped.extend(str(paths[i]) for i in bad)
                keep = np.ones(len(labels), bool)
                keep[bad] = False
                paths, labels = paths[keep], labels[keep]
                images = None if images is None else images[keep]
            sources = None
            if images is None:
                sources = np.array(pil_images.map_threads(pil_images.read, list(paths)),
                                   object) if plan.cached else paths
            made[split] = _Split(labels, paths, images, sources, not plan.cached)
        return made

    def train(self, epoch: int, global_batch_size: int, skip_batches: int = 0) -> "Batches":
        """One epoch of shuffled, augmented `(images, labels)` batches (float32 `[b, H, W, C]`,
        int32 `[b]`), the last partial batch dropped; the first `skip_batches` are left out."""
        steps = self._check_train(epoch, global_batch_size, skip_batches)
        config, split = self.config, self._splits["train"]
        order = draws.train_order(config.seed, epoch, config.shuffle_buffer, len(split))
        keys = order[skip_batches * global_batch_size:steps * global_batch_size]
        crop_ids = (draws.cifar_crop_ids(config.seed, epoch, len(split), self._plan.out_hw)
                    if self._plan.whole and self.augmentation == "cifar" else None)
        return Batches(self, split, keys, global_batch_size, train=True, epoch=epoch,
                       crop_ids=crop_ids)

    def evaluation(self, split: str, global_batch_size: int) -> "Batches":
        """Every example of a split once, in the split's order, without augmentation
        (`[b, 10, H, W, C]` with `eval_crops=10`); the last batch may be smaller."""
        examples = self._check_evaluation(split, global_batch_size)
        return Batches(self, examples, np.arange(len(examples)), global_batch_size,
                       train=False, epoch=0)

    # ---------------------------------------------------------------- preparation

    def raw(self, split, index) -> np.ndarray:
        """One image of a split (`_Split`) before normalisation: fitted (CIFAR-style) or the
        evaluation centre crop (ImageNet-style), as the tf.data pipeline's raw images."""
        image = split.image(index, self._plan.channels)
        if self._plan.whole:
            return pil_images.fit(image, self._plan.out_hw)
        return pil_images.center_crop(image, self._plan.out_hw[0])

    def prepare_batch(self, split, keys, train, epoch, crop_ids=None):
        """`(images, labels)` of the examples `keys` of a split (`_Split`): float32 images,
        normalised and augmented (random erasing of each, then MixUp / CutMix of the batch
        in training, as `training.augment.train_components`), int32 labels or, mixed, float32
        targets `[b, classes]`."""
        config, labels = self.config, split.labels[keys]
        images = self._prepare_images(split, keys, train, epoch, crop_ids)
        if not train:
            return images, labels
        if config.erasing_prob > 0:
            images = np.stack([numpy_mixing.erase(image, np.random.default_rng(
                [config.seed, epoch, draws.ERASING, int(k)]), config.erasing_prob)
                for image, k in zip(images, keys)])
        if config.mixup_alpha > 0 or config.cutmix_alpha > 0:
            rng = np.random.default_rng([config.seed, epoch, draws.MIXING, int(keys[0])])
            images, labels = numpy_mixing.mix_batch(
                images, labels, self.info.num_classes, rng, config.mixup_alpha,
                config.cutmix_alpha, config.mix_prob, config.mix_switch_prob)
        return images, labels

    def _prepare_images(self, split, keys, train, epoch, crop_ids):
        """float32 examples `keys`, normalised and cropped: in one NumPy pass for decoded
        images of the output size, else by `THREADS` threads."""
        plan, ten = self._plan, not train and self.config.eval_crops == 10
        if plan.whole and split.images is not None:
            x = split.images[keys].astype(np.float32) * self._scale + self._offset
            mode = self.config.crop_padding
            if crop_ids is not None:
                return np.stack([cifar_crop(image, int(crop_ids[k]), mode) for image, k in zip(
                    x, keys)])
            return np.stack([ten_crop_padded(image, mode) for image in x]) if ten else x
        with self._threads_lock:
            if self._threads is None:
                self._threads = concurrent.futures.ThreadPoolExecutor(THREADS)
        return np.stack(list(self._threads.map(lambda k: self.prepare(
            split, int(k), train, epoch, None if crop_ids is None else int(crop_ids[k])),
            keys))).astype(np.float32, copy=False)

    def prepare(self, split, index, train, epoch, crop_id=None) -> np.ndarray:
        """One normalised example (`training.augment`'s geometry)."""
        plan, scale, offset = self._plan, self._scale, self._offset
        size = plan.out_hw[0]
        if plan.whole:
            x = self.raw(split, index).astype(np.float32) * scale + offset
            if crop_id is not None:
                return cifar_crop(x, crop_id, self.config.crop_padding)
            if not train and self.config.eval_crops == 10:
                return ten_crop_padded(x, self.config.crop_padding)
            return x
        image = split.image(index, plan.channels)
        if not train:
            crops = (pil_images.ten_crop(image, size) if self.config.eval_crops == 10
                     else pil_images.center_crop(image, size))
            return crops * scale + offset
        if self.augmentation == "none":
            return pil_images.center_crop(image, size) * scale + offset
        rng = np.random.default_rng([self.config.seed, epoch, draws.IMAGENET_CROPS, index])
        crop = scale_crop if self.augmentation == "imagenet" else inception_crop
        x = crop(image, size, rng)
        if rng.random() < 0.5:
            x = x[:, ::-1]
        return x * scale + offset

    def _statistics(self, name):
        """As `training.data.Pipeline._statistics`: every train image (CIFAR-style), else the
        first `STATS_SAMPLE` centre crops."""
        split = self._splits["train"]
        count = len(split) if self._plan.whole else min(STATS_SAMPLE, len(split))

        def raw_batches():
            for start in range(0, count, 1024):
                yield np.stack(pil_images.map_threads(lambda i: self.raw(split, i), list(
                    range(start, min(start + 1024, count)))))

        return normalization.statistics(self.normalization, self._plan.channels, name,
                                        self._plan.whole, raw_batches)

    def _normalizer(self):
        return normalization.normalizer(self.normalization, self.mean, self.std)


class Batches(keras.utils.PyDataset):
    """Batches `(float32 images, int32 labels)` (with MixUp or CutMix, float32 targets
    `[b, classes]`) of the examples `keys` of a split, made by
    `workers` threads ahead of use (`keras.utils.PyDataset`): `len()` batches, `batches[i]`,
    iteration in order. `model.fit` and `model.evaluate` take it on every backend."""

    def __init__(self, pipeline, split, keys, batch, train, epoch, crop_ids=None,
                 workers=WORKERS, num_classes=None):
        super().__init__(workers=workers, use_multiprocessing=False)
        self.pipeline, self.split, self.keys, self.batch = pipeline, split, keys, batch
        self.train, self.epoch, self.crop_ids = train, epoch, crop_ids
        self.num_classes = num_classes

    def one_hot(self, num_classes: int) -> "Batches":
        """These batches with float32 one-hot targets `[b, num_classes]` (for `model.fit`)."""
        return Batches(self.pipeline, self.split, self.keys, self.batch, self.train,
                       self.epoch, self.crop_ids, self.workers, num_classes)

    def __len__(self):
        return (len(self.keys) // self.batch if self.train
                else -(-len(self.keys) // self.batch))

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(f"batch {i} of {len(self)}")
        keys = self.keys[i * self.batch:(i + 1) * self.batch]
        images, labels = self.pipeline.prepare_batch(self.split, keys, self.train, self.epoch,
                                                     self.crop_ids)
        if self.num_classes is not None and labels.ndim == 1:  # mixed targets are soft already
            labels = np.eye(self.num_classes, dtype=np.float32)[labels]
        return images, labels

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


def _padded(x: np.ndarray, mode: str) -> np.ndarray:
    """`x` `[h, w, c]` padded by 1/8 of its size on each side: `mode` `"zeros"` or
    `"reflect"` (`DataConfig.crop_padding`)."""
    ph, pw = draws.padding(x.shape[:2])
    return np.pad(x, [(ph, ph), (pw, pw), (0, 0)],
                  mode="reflect" if mode == "reflect" else "constant")


def cifar_crop(x: np.ndarray, crop_id: int, mode: str = "zeros") -> np.ndarray:
    """The CIFAR crop `crop_id` (`training.draws.cifar_crop_ids`) of a normalised image: a
    window of the image padded by 1/8 of its size as `mode` says, mirrored for odd ids (as
    `training.augment.cifar_augmenter`)."""
    h, w = x.shape[:2]
    ph, pw = draws.padding((h, w))
    top, left, flip = crop_id // (2 * (2 * pw + 1)), (crop_id // 2) % (2 * pw + 1), crop_id % 2
    crop = _padded(x, mode)[top:top + h, left:left + w]
    return crop[:, ::-1] if flip else crop


def ten_crop_padded(x: np.ndarray, mode: str = "zeros") -> np.ndarray:
    """`[10, h, w, c]`: corners and centre of the image padded as `mode` says, then their
    mirror images (`training.augment.ten_crop_padded`)."""
    h, w = x.shape[:2]
    ph, pw = draws.padding((h, w))
    padded = _padded(x, mode)
    corners = [(0, 0), (0, 2 * pw), (2 * ph, 0), (2 * ph, 2 * pw), (ph, pw)]
    crops = [padded[top:top + h, left:left + w] for top, left in corners]
    return np.stack(crops + [crop[:, ::-1] for crop in crops])


def scale_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """He et al. 2015 scale augmentation (`training.augment.scale_crop`): the shorter side to
    a uniform length in [8/7, 15/7] size, a random `size` crop; float32."""
    h, w = image.shape[:2]
    short = min(h, w)
    target = rng.integers(round(size * 256 / 224), round(size * 480 / 224) + 1)
    side = min(max(int(np.round(np.float32(short) * size / np.float32(target))), 1), short)
    top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    return pil_images.crop_resize(image, int(top), int(left), side, side, size)


def inception_crop(image: np.ndarray, size: int, rng: np.random.Generator,
                   attempts: int = 10) -> np.ndarray:
    """Szegedy et al. 2015 random-resized crop, as `tf.image.sample_distorted_bounding_box`
    draws it in `training.augment.inception_crop`: area 8-100% of the image (and at least
    the 10% that `min_object_covered` asks), aspect ratio uniform in [3/4, 4/3], at most
    `attempts` tries, else the whole image; float32."""
    h, w = image.shape[:2]
    for _ in range(attempts):
        aspect = rng.uniform(3 / 4, 4 / 3)
        area = rng.uniform(0.08, 1.0) * h * w
        crop_h = int(round(np.sqrt(area / aspect)))
        crop_w = int(round(crop_h * aspect))
        if 0 < crop_h <= h and 0 < crop_w <= w and crop_h * crop_w >= 0.1 * h * w:
            top, left = rng.integers(0, h - crop_h + 1), rng.integers(0, w - crop_w + 1)
            return pil_images.crop_resize(image, int(top), int(left), crop_h, crop_w, size)
    return pil_images.crop_resize(image, 0, 0, h, w, size)
