"""tf.data input pipelines: TFDS data sets, image folders and synthetic data, with the papers'
augmentation and preprocessing.

`Pipeline(DataConfig(...))` resolves the source once (lists the files, decodes CIFAR-size data
into memory, computes the normalisation statistics) and then builds one `tf.data.Dataset` per
call: `train(epoch, ...)` for one shuffled, augmented epoch, `evaluation(split, ...)` for a
finite pass over the validation or test split.

Two geometries cover the papers' recipes:

- *CIFAR-style* (augmentation `"cifar"`, or `"none"` on images of at most 64 pixels): every image
  has the output size (images of another size are resized, shorter side first, and centre
  cropped). Training pads 1/8 of the size on each side (4 pixels at 32x32) with zeros after
  normalisation, takes a random crop of the original size and flips half of the images (He et al.
  2015, section 4.2). Evaluation uses the whole image; 10-crop evaluation takes the four corners
  and the centre of the padded image, and their mirror images.
- *ImageNet-style* (augmentations `"imagenet"` and `"inception"`, or `"none"` on larger images):
  images keep their own sizes until a square crop of the output size `S` (224 by default) is
  taken. `"imagenet"` is the scale augmentation of He et al. 2015 (the shorter side resized to a
  random length in [256, 480] at S = 224, that is [8/7 S, 15/7 S], then a random S x S crop and a
  random flip; computed as a crop of the original image resized to S x S, which is the same
  geometry at a fraction of the cost). `"inception"` is the random-resized crop of Szegedy et al.
  2015 (8%-100% of the area, aspect ratio in [3/4, 4/3], at most 10 attempts, then the whole
  image) and a flip. Evaluation resizes the shorter side to 8/7 S (256 at 224) and takes the
  centre S x S crop; 10-crop evaluation takes the four corners and the centre of that resized
  image, and their mirror images.

Reproducibility: the order of epoch `e` is a permutation drawn from `(seed, e)` and the
augmentation of an example is drawn from `(seed, e, index of the example)` (NumPy's counter-based
generator for the CIFAR crops, TensorFlow's stateless random ops for the ImageNet crops), so a
resumed run replays an epoch exactly. With `DataConfig.deterministic=False` tf.data may deliver
elements out of order when that is faster; which examples an epoch holds and how each is
augmented do not change.
"""

import dataclasses
import logging
import os
import threading
import time
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from training import images as image_files  # "images" is a common local name here
from training.images import CorruptImageError, decode_dataset  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

AUGMENTATIONS = ("auto", "cifar", "imagenet", "inception", "none")
NORMALIZATIONS = ("auto", "per_pixel_mean", "per_channel", "none")
EVAL_SPLITS = ("validation", "test")
EVAL_CROPS = (1, 10)
TEST_FOLDERS = ("test", "val", "validation")
SYNTHETIC = "synthetic"

# Images of at most this many pixels a side are "CIFAR-size": decoded once and kept in memory.
SMALL_IMAGE_PIXELS = 64
DEFAULT_LARGE_SIZE = 224
DEFAULT_SYNTHETIC_SIZE = 32
STREAM_SHUFFLE_BUFFER = 10_000
# Per-channel statistics of data that is not held in memory come from this many train images.
STATS_SAMPLE = 512
# The validation carve-out and the test subset do not depend on DataConfig.seed, so runs and
# tuning trials with different seeds share one validation set.
SPLIT_SEED = 20151210

_DECODE_BATCH = 256
# Stream names for the NumPy / TensorFlow random draws, so that they never share a seed.
_ORDER, _CIFAR_CROPS, _IMAGENET_CROPS, _SYNTHETIC = 1, 2, 3, 4


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What to read and how to prepare it.

    Args:
        dataset: str. A TFDS name (`"cifar10"`, `"cifar100"`, `"imagenet2012"`, ...), a path to
            an image folder with `train/` and `test/` (or `val/`, `validation/`) sub-folders of
            one folder per class (`.jpg`, `.jpeg`, `.png` files; class folders in alphabetical
            order are the labels), or `"synthetic"` (random images, for throughput runs). As in
            `keras.utils.image_dataset_from_directory`, images in sub-folders of a class folder
            belong to that class. Files and folders whose names start with `"."` (such as the
            `._*` files macOS leaves beside copied images) are ignored. Both are reported in a
            logged warning with their count. Every data set needs at least 2 classes.
            Defaults to `"cifar10"`.
        data_dir: str or `None`. The TFDS data directory. Defaults to `None` (TFDS' default,
            `~/tensorflow_datasets`).
        image_size: int or `None`. Side of the square images the pipeline outputs. Defaults to
            `None`: the data's own size for CIFAR-size data (at most 64 pixels) and for TFDS data
            sets of a fixed image shape, 32 for `"synthetic"`, 224 otherwise.
        augmentation: str. `"cifar"` (pad 1/8 of the size, random crop, flip), `"imagenet"`
            (scale augmentation: shorter side in [256, 480] at 224, 224 crop, flip),
            `"inception"` (random-resized crop and flip), `"none"`, or `"auto"` (`"cifar"` for
            data of at most 64 pixels, `"imagenet"` otherwise). The module docstring gives the
            details. Defaults to `"auto"`.
        normalization: str. `"per_pixel_mean"` (pixels scaled to [0, 1] minus the mean image of
            the training split, the papers' CIFAR preprocessing; CIFAR-style geometry only),
            `"per_channel"` (per-channel mean and standard deviation of the training split),
            `"none"` (pixels scaled to [0, 1]), or `"auto"` (`"per_pixel_mean"` for the
            CIFAR-style geometry, `"per_channel"` otherwise). Statistics exclude the validation
            carve-out; the per-channel statistics of data not held in memory come from the first
            512 training images. Defaults to `"auto"`.
        validation_images: int. Size of the validation split, carved from the end of a fixed
            permutation of the training split (5000 gives the papers' 45k/5k CIFAR split); the
            remaining images are the training split. Defaults to `0`.
        cache: bool or `None`. `True` keeps the data in memory: decoded for CIFAR-style data,
            the encoded files otherwise (decoded each epoch). `False` reads every file each
            epoch (TFDS data is streamed). Defaults to `None`: `True` for data of at most 64
            pixels, `False` otherwise.
        shuffle_buffer: int or `None`. `None` shuffles the whole training split every epoch
            (an exact permutation; streamed TFDS data uses a window of 10,000 records). An int
            emulates a tf.data shuffle buffer of that size (streamed TFDS data: a window).
            Defaults to `None`.
        seed: int. Seed of the order and augmentation of every epoch (and of synthetic data).
            Defaults to `0`.
        deterministic: bool. `tf.data.Options.deterministic` of the training data: `True`
            delivers elements in order (a resumed run replays its epochs exactly); `False` lets
            tf.data trade order for speed. Augmentation is stateless either way, and evaluation
            data always comes in order. Defaults to `False`.
        skip_corrupt: bool. What to do with image files that cannot be decoded: `False` raises
            a `CorruptImageError` (a `ValueError`) naming them, `True` skips them, logs how many
            and lists them in `Pipeline.skipped_files`. Building the pipeline decodes every
            image of an image folder or of cached TFDS data once, so such files are found and
            counted then. A file that changed on disk after that check (even into another
            image), or a streamed TFDS record that does not decode, stops the input with an
            error naming it, or with `True` is skipped where it is met: in a training batch the
            batch's previous image takes its place (epochs keep their steps, and resumed runs
            their batches), evaluation leaves it out. Defaults to `False`.
        eval_crops: int. `1` (the whole image or the centre crop) or `10` (four corners, centre
            and their mirror images; evaluation batches are then `[batch, 10, H, W, C]`).
            Defaults to `1`.
        synthetic_examples: int. Number of training images of `"synthetic"`; the test split has
            a quarter as many. Defaults to `1024`.
        num_classes: int or `None`. Number of classes of `"synthetic"` (`None`: 10), at least
            2. For other data sets it is read from the data, and a different value is an error.
            Defaults to `None`.
        max_train_examples: int or `None`. Keep only this many training images (after the
            validation carve-out): the first ones of a fixed permutation, taking the classes in
            turn so they stay balanced (streamed TFDS data: the first ones in file order).
            Defaults to `None` (all).
        max_test_examples: int or `None`. The same for the test split. Defaults to `None` (all).

    Example:

    >>> config = DataConfig(dataset="synthetic", synthetic_examples=64, validation_images=16)
    >>> Pipeline(config).info.train_examples
    48
    """

    dataset: str = "cifar10"
    data_dir: Optional[str] = None
    image_size: Optional[int] = None
    augmentation: str = "auto"
    normalization: str = "auto"
    validation_images: int = 0
    cache: Optional[bool] = None
    shuffle_buffer: Optional[int] = None
    seed: int = 0
    deterministic: bool = False
    skip_corrupt: bool = False
    eval_crops: int = 1
    synthetic_examples: int = 1024
    num_classes: Optional[int] = None
    max_train_examples: Optional[int] = None
    max_test_examples: Optional[int] = None

    def __post_init__(self):
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ValueError(
                "dataset must be a TFDS name, an image folder or 'synthetic'; "
                f"got {self.dataset!r}."
            )
        _check_choice("augmentation", self.augmentation, AUGMENTATIONS)
        _check_choice("normalization", self.normalization, NORMALIZATIONS)
        _check_choice("eval_crops", self.eval_crops, EVAL_CROPS)
        _check_int("validation_images", self.validation_images, minimum=0)
        _check_int("seed", self.seed, minimum=0)
        _check_int("synthetic_examples", self.synthetic_examples, minimum=1)
        for name in ("image_size", "shuffle_buffer", "max_train_examples", "max_test_examples"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        if self.num_classes is not None:  # one class would "train" to 0% error
            _check_int("num_classes", self.num_classes, minimum=2)
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"image_size must be at least 8 or None; got {self.image_size!r}.")
        if self.cache not in (None, True, False):
            raise ValueError(f"cache must be True, False or None; got {self.cache!r}.")


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a `Pipeline` delivers.

    Args:
        name: str. The data set (TFDS name, folder name or `"synthetic"`).
        num_classes: int. Number of classes; labels are in `[0, num_classes)`.
        image_shape: tuple of 3 ints. `(height, width, channels)` of each output image.
        train_examples: int. Images in the training split (after the validation carve-out and
            `max_train_examples`, without skipped corrupt files).
        validation_examples: int. Images in the validation split.
        test_examples: int. Images in the test split.
        class_names: tuple of str. The class of each label.
    """

    name: str
    num_classes: int
    image_shape: Tuple[int, int, int]
    train_examples: int
    validation_examples: int
    test_examples: int
    class_names: Tuple[str, ...]


def _check_choice(argument, value, choices):
    if value not in choices:
        raise ValueError(f"{argument} must be one of {list(choices)}; got {value!r}.")


def _check_classes(source, names, what):
    """One class would "train" to 0% error: refuse it."""
    if len(names) < 2:
        raise ValueError(f"{source} has {len(names)} {what} ({', '.join(map(str, names))}); "
                         "a classifier needs at least 2 classes.")


def _check_int(argument, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{argument} must be an integer >= {minimum}; got {value!r}.")


@dataclasses.dataclass
class _Pool:
    """The examples of one split, addressed by index 0..n-1.

    `kind` is `"array"` (`data` is uint8 `[n, h, w, c]`), `"encoded"` (`data` holds the encoded
    files) or `"files"` (`data` holds paths). `names` says where each example came from.
    `fingerprints` (files) are those of the contents that decoded when the pool was made.
    """

    kind: str
    data: np.ndarray
    labels: np.ndarray
    names: np.ndarray
    channels: int
    fingerprints: Optional[np.ndarray] = None
    _tensors: Optional[tuple] = None

    def __len__(self):
        return len(self.labels)

    def tensors(self):
        """(data, labels, fingerprints or None) as tensors, made once."""
        if self._tensors is None:
            self._tensors = (tf.convert_to_tensor(self.data), tf.convert_to_tensor(self.labels),
                             None if self.fingerprints is None
                             else tf.convert_to_tensor(self.fingerprints))
        return self._tensors


@dataclasses.dataclass
class _Stream:
    """The records of a TFDS split that belong to one of our splits, read in file order."""

    split: str
    mask: np.ndarray  # bool, one per record of `split`
    channels: int

    @property
    def records(self):
        return len(self.mask)

    def __len__(self):
        return int(self.mask.sum())


class Pipeline:
    """tf.data pipelines over one data set.

    Building a `Pipeline` resolves the source, checks the folders, splits and files (a
    `ValueError` names the bad path, folder, split or file), decodes CIFAR-size data into memory
    (other images are decoded once to check them) and computes the normalisation statistics.
    Each `train` / `evaluation` call then returns a fresh `tf.data.Dataset`.

    Args:
        config: `DataConfig`. What to read and how to prepare it.

    Attributes:
        info: `DatasetInfo`. Sizes, classes and output image shape.
        augmentation: str. The augmentation in use (`"auto"` resolved).
        normalization: str. The normalisation in use (`"auto"` resolved).
        cached: bool. Whether the data is held in memory.
        mean: NumPy array or `None`. The mean image `[H, W, C]` (`"per_pixel_mean"`) or channel
            means `[C]` (`"per_channel"`), in pixel units (0-255).
        std: NumPy array or `None`. The channel standard deviations (`"per_channel"`).
        skipped_files: tuple of str. Corrupt files skipped by `skip_corrupt=True`: those found
            when the pipeline was built, then any met while reading (files that changed on disk
            since, TFDS records that do not decode).
        test_source: str. Where the test split comes from: the `test/`, `val/` or
            `validation/` folder, the TFDS split (`"test"`, or `"validation"` where the test
            split is missing or unlabelled, as in `imagenet2012`), or `"synthetic"`.
        load_seconds: float. Seconds spent reading and decoding when the pipeline was built.

    Example:

    >>> pipeline = Pipeline(DataConfig(dataset="synthetic", synthetic_examples=64))
    >>> images, labels = next(iter(pipeline.train(epoch=0, global_batch_size=16)))
    >>> images.shape, images.dtype.name, labels.dtype.name
    (TensorShape([16, 32, 32, 3]), 'float32', 'int32')
    >>> pipeline.steps_per_epoch(16)
    4
    """

    def __init__(self, config: DataConfig):
        if not isinstance(config, DataConfig):
            raise ValueError(f"config must be a DataConfig; got {type(config).__name__}.")
        self.config = config
        self._skipped = []  # appended to by the input pipelines' threads (under the lock)
        self._skipped_lock = threading.Lock()
        self._builder = None
        self._splits = {}
        start = time.perf_counter()
        if config.dataset == SYNTHETIC:
            self._load_synthetic()
        elif os.path.isdir(os.path.expanduser(config.dataset)):
            self._load_folder(os.path.abspath(os.path.expanduser(config.dataset)))
        else:
            self._load_tfds()
        self.load_seconds = time.perf_counter() - start
        try:  # statistics of streamed records meet their corrupt images here: name them
            self.mean, self.std = self._statistics()
        except tf.errors.InvalidArgumentError as error:
            corrupt = CorruptImageError.from_op_error(error)
            if corrupt is None:
                raise
            raise corrupt from None
        self._scale, self._offset = self._normalizer()
        h, w = self._out_hw
        self.info = DatasetInfo(
            name=self._name,
            num_classes=self._num_classes,
            image_shape=(h, w, self._channels),
            train_examples=len(self._splits["train"]),
            validation_examples=len(self._splits["validation"]),
            test_examples=len(self._splits["test"]),
            class_names=tuple(self._class_names),
        )
        logger.info(
            "%s: %d train / %d validation / %d test images of %dx%dx%d, %d classes; %s in "
            "%.1f s; augmentation %s, normalization %s.",
            self.info.name, self.info.train_examples, self.info.validation_examples,
            self.info.test_examples, h, w, self._channels, self.info.num_classes,
            "decoded into memory" if self._arrays else ("read into memory" if self.cached
                                                        else "indexed"),
            self.load_seconds, self.augmentation, self.normalization,
        )

    # ---------------------------------------------------------------- public interface

    @property
    def normalizer(self) -> Tuple[np.ndarray, np.ndarray]:
        """`(scale, offset)`: normalised image = pixels (0-255) * scale + offset, for every
        normalisation (exports put the same step in front of the trained model)."""
        return self._scale, self._offset

    @property
    def fit_size(self) -> Optional[Tuple[int, int]]:
        """`(height, width)` that every image is fitted to first (`training.images.fit`:
        resized, shorter side first, and centre cropped unless it has that size): the output
        size in the CIFAR-style geometry, the data's own size where small ImageNet-style data
        is held in memory, else `None` (images keep their own size until the crop).
        Exports put the same steps in front of the trained model."""
        if self._full:
            return self._out_hw
        return self._store_hw if self._arrays else None

    @property
    def eval_center_crop(self) -> bool:
        """Whether evaluation (one crop) takes the ImageNet-style centre crop of the output
        size after resizing the shorter side to `eval_resize_side(size)`."""
        return not self._full

    @property
    def skipped_files(self) -> Tuple[str, ...]:
        with self._skipped_lock:
            return tuple(self._skipped)

    def steps_per_epoch(self, global_batch_size: int) -> int:
        """Training batches per epoch: `train_examples // global_batch_size`."""
        _check_int("global_batch_size", global_batch_size, minimum=1)
        steps = self.info.train_examples // global_batch_size
        if steps == 0:
            raise ValueError(
                f"global_batch_size {global_batch_size} is larger than the training split "
                f"({self.info.train_examples} images)."
            )
        return steps

    def train(
        self,
        epoch: int,
        global_batch_size: int,
        input_context: Optional[tf.distribute.InputContext] = None,
        skip_batches: int = 0,
    ) -> tf.data.Dataset:
        """One epoch of shuffled, augmented `(images, labels)` batches.

        Images are float32 `[batch, H, W, C]`, labels int32 `[batch]`. The last partial batch is
        dropped, so there are `steps_per_epoch(global_batch_size)` steps.

        Args:
            epoch: int. The epoch (from 0); with `DataConfig.seed` it fixes the order and the
                augmentation.
            global_batch_size: int. Images per step over all replicas.
            input_context: `tf.distribute.InputContext` or `None`. Under
                `strategy.distribute_datasets_from_function`: this input pipeline reads
                `1 / num_input_pipelines` of the epoch (disjoint shards) in batches of
                `get_per_replica_batch_size(global_batch_size)`. Defaults to `None`.
            skip_batches: int. Steps of this epoch already taken (to resume mid-epoch): the
                first `skip_batches` global batches are left out without being read. Defaults
                to `0`.
        """
        _check_int("epoch", epoch, minimum=0)
        steps = self.steps_per_epoch(global_batch_size)
        _check_int("skip_batches", skip_batches, minimum=0)
        if skip_batches > steps:
            raise ValueError(f"skip_batches must be at most {steps} (steps per epoch); "
                             f"got {skip_batches}.")
        pipelines, pipeline_id, batch = _sharding(input_context, global_batch_size)
        per_pipeline = global_batch_size // pipelines
        source = self._splits["train"]
        if isinstance(source, _Pool):
            order = self._train_order(epoch, len(source))[: steps * global_batch_size]
            order = order[skip_batches * global_batch_size:][pipeline_id::pipelines]
            keys = tf.data.Dataset.from_tensor_slices(order)
        else:
            keys = self._shard_stream(self._stream_records(source), pipelines, pipeline_id)
            keys = self._window_shuffle(keys, epoch)
            keys = keys.take(steps * per_pipeline).skip(skip_batches * per_pipeline)
        ds = self._batches(source, keys, batch, train=True, epoch=epoch)
        return self._finish(ds, self.config.deterministic, sharded=input_context is not None)

    def evaluation(
        self,
        split: str,
        global_batch_size: int,
        input_context: Optional[tf.distribute.InputContext] = None,
    ) -> tf.data.Dataset:
        """Every example of a split exactly once, in a fixed order, without augmentation.

        The order is fixed whatever `DataConfig.deterministic` says: the split's order of
        examples (files sorted by class and name, TFDS records in file order).

        Batches are `(images, labels)` with float32 images `[batch, H, W, C]`, or
        `[batch, 10, H, W, C]` with `eval_crops=10` (average the predictions over axis 1); the
        last batch may be smaller.

        Args:
            split: str. `"validation"` (needs `validation_images > 0`) or `"test"`.
            global_batch_size: int. Images per step over all replicas.
            input_context: `tf.distribute.InputContext` or `None`. Shards the split over the
                input pipelines (disjoint, together complete) and batches per replica.
                Defaults to `None`.
        """
        _check_choice("split", split, EVAL_SPLITS)
        _check_int("global_batch_size", global_batch_size, minimum=1)
        source = self._splits[split]
        if len(source) == 0:
            raise ValueError(
                "The validation split is empty: set DataConfig.validation_images (e.g. 5000 "
                "for CIFAR's 45k/5k split)."
                if split == "validation" else f"The {split} split is empty."
            )
        pipelines, pipeline_id, batch = _sharding(input_context, global_batch_size)
        if isinstance(source, _Pool):
            keys = tf.data.Dataset.from_tensor_slices(
                np.arange(len(source), dtype=np.int64)[pipeline_id::pipelines])
        else:
            keys = self._shard_stream(self._stream_records(source), pipelines, pipeline_id)
        ds = self._batches(source, keys, batch, train=False, epoch=0)
        return self._finish(ds, True, sharded=input_context is not None)

    # ---------------------------------------------------------------- sources

    def _resolve(self, natural_hw, fixed_size, channels):
        """Choose geometry, output size, caching, augmentation and normalisation."""
        config = self.config
        if config.num_classes is not None and config.num_classes != self._num_classes:
            raise ValueError(
                f"num_classes is {config.num_classes} but {config.dataset} has "
                f"{self._num_classes} classes; leave num_classes unset for real data."
            )
        small = natural_hw is not None and max(natural_hw) <= SMALL_IMAGE_PIXELS
        self.augmentation = config.augmentation
        if self.augmentation == "auto":
            self.augmentation = "cifar" if small else "imagenet"
        self._full = self.augmentation == "cifar" or (self.augmentation == "none" and small)
        if config.image_size is not None:
            self._out_hw = (config.image_size, config.image_size)
        elif natural_hw is not None and (small or fixed_size):
            self._out_hw = tuple(natural_hw)
        else:
            self._out_hw = (DEFAULT_LARGE_SIZE, DEFAULT_LARGE_SIZE)
        if not self._full and self._out_hw[0] != self._out_hw[1]:
            self._out_hw = (max(self._out_hw),) * 2
        self.normalization = config.normalization
        if self.normalization == "auto":
            self.normalization = "per_pixel_mean" if self._full else "per_channel"
        if self.normalization == "per_pixel_mean" and not self._full:
            raise ValueError(
                "normalization='per_pixel_mean' needs the CIFAR-style geometry (augmentation "
                "'cifar', or 'none' on images of at most 64 pixels); got augmentation "
                f"{self.augmentation!r} on {natural_hw or 'variable-size'} images. Use "
                "'per_channel' or 'none'."
            )
        self.cached = small if config.cache is None else config.cache
        # Decoded arrays hold images at the output size (CIFAR-style geometry) or, for small
        # fixed-size data, at their own size; other cached data keeps the encoded files.
        self._arrays = self.cached and (self._full or small)
        self._store_hw = self._out_hw if self._full else (tuple(natural_hw) if small else None)
        self._channels = channels

    def _load_synthetic(self):
        config = self.config
        size = config.image_size or DEFAULT_SYNTHETIC_SIZE
        self._name = SYNTHETIC
        self.test_source = SYNTHETIC
        self._num_classes = config.num_classes or 10
        self._class_names = [f"class_{i}" for i in range(self._num_classes)]
        self._resolve((size, size), fixed_size=True, channels=3)
        if not self._arrays:  # synthetic data lives in memory whatever `cache` says
            self._arrays, self.cached = True, True
            self._store_hw = (size, size)
        rng = np.random.default_rng([config.seed, _SYNTHETIC])
        n_train, n_test = config.synthetic_examples, max(1, config.synthetic_examples // 4)

        def make(n):
            images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
            labels = rng.integers(0, self._num_classes, size=n).astype(np.int32)
            return images, labels

        train_images, train_labels = make(n_train)
        test_images, test_labels = make(n_test)
        selection = self._select(train_labels, test_labels)
        for split, (images, labels) in zip(
            ("train", "validation", "test"),
            ((train_images, train_labels), (train_images, train_labels),
             (test_images, test_labels)),
        ):
            idx = selection[split]
            names = np.array([f"synthetic:{split}[{i}]" for i in idx])
            self._splits[split] = _Pool("array", images[idx], labels[idx], names, 3)

    def _load_folder(self, root):
        self._name = os.path.basename(root.rstrip(os.sep)) or root
        train_dir = os.path.join(root, "train")
        if not os.path.isdir(train_dir):
            raise ValueError(
                f"Image folder {root} has no train split: {train_dir} does not exist (expected "
                f"{root}/train/<class>/*.jpg and {root}/test/<class>/*.jpg)."
            )
        test_dir = next((os.path.join(root, name) for name in TEST_FOLDERS
                         if os.path.isdir(os.path.join(root, name))), None)
        if test_dir is None:
            raise ValueError(
                f"Image folder {root} has no test split: expected one of the folders "
                f"{', '.join(os.path.join(root, name) for name in TEST_FOLDERS)}."
            )
        self.test_source = test_dir
        train, test = image_files.list_split(train_dir), image_files.list_split(test_dir)
        classes, test_classes = train.classes, test.classes
        if classes != test_classes:
            raise ValueError(
                f"The class folders of {train_dir} and {test_dir} differ: only in train: "
                f"{sorted(set(classes) - set(test_classes))}; only in "
                f"{os.path.basename(test_dir)}: {sorted(set(test_classes) - set(classes))}."
            )
        _check_classes(f"Image folder {root}", classes, f"class folder(s) in {train_dir}")
        self._num_classes, self._class_names = len(classes), classes
        for what, found in (("images in sub-folders of class folders, included in their "
                             "class", train.nested + test.nested),
                            ("hidden files and folders (names starting with '.') in class "
                             "folders, ignored", train.hidden + test.hidden)):
            if found:
                logger.warning("%s: %d %s, e.g. %s", root, len(found), what, found[0])
        natural_hw = image_files.probe_size(train.paths)
        self._resolve(natural_hw, fixed_size=False, channels=3)
        selection = self._select(train.labels, test.labels)
        skipped = []
        for split, paths, labels in (("train", train.paths, train.labels),
                                     ("validation", train.paths, train.labels),
                                     ("test", test.paths, test.labels)):
            idx = selection[split]
            self._splits[split] = self._make_pool(paths[idx], labels[idx], paths[idx],
                                                  from_files=True, skipped=skipped)
        self._report_skipped(skipped)

    def _load_tfds(self):
        import tensorflow_datasets as tfds  # imported on use: TFDS is slow to import

        config, name = self.config, self.config.dataset
        try:
            builder = tfds.builder(name, data_dir=config.data_dir)
        except (tfds.core.registered.DatasetNotFoundError, ValueError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ValueError(
                f"dataset {name!r} is neither an existing image folder (no folder "
                f"{os.path.abspath(os.path.expanduser(name))}) nor a TFDS data set "
                f"({first_line}). Give a TFDS name such as 'cifar10', a folder with train/ "
                "and test/ class folders, or 'synthetic'."
            ) from None
        self._builder = builder
        self._name = name
        info = builder.info
        keys = tuple(info.supervised_keys or ("image", "label"))[:2]
        self._image_key, self._label_key = keys
        features = info.features
        if self._image_key not in features or self._label_key not in features or not hasattr(
                features[self._label_key], "num_classes"):
            raise ValueError(
                f"TFDS data set {name!r} is not an image classification data set: it has no "
                f"image feature and class label (features: {list(features.keys())})."
            )
        label_feature = features[self._label_key]
        self._class_names = list(label_feature.names)
        _check_classes(f"TFDS data set {name!r}", self._class_names,
                       f"class(es) in its label feature {self._label_key!r}")
        self._num_classes = len(self._class_names)
        shape = tuple(features[self._image_key].shape)
        channels = shape[-1] if len(shape) == 3 and shape[-1] else 3
        fixed = len(shape) == 3 and shape[0] is not None and shape[1] is not None
        natural_hw = (int(shape[0]), int(shape[1])) if fixed else None

        split_sizes = {split: int(value.num_examples) for split, value in info.splits.items()}
        if split_sizes and "train" not in split_sizes:
            raise ValueError(f"TFDS data set {name!r} has no 'train' split; its splits are "
                             f"{sorted(split_sizes)}.")
        try:
            builder.as_dataset(split="train", shuffle_files=False)
        except (AssertionError, tf.errors.NotFoundError, FileNotFoundError) as error:
            data_dir = config.data_dir or os.path.join("~", "tensorflow_datasets")
            raise ValueError(
                f"TFDS data set {name!r} is not prepared in {data_dir} ({error}). TFDS "
                "downloads data on first use, which needs internet: run "
                f"`tfds.builder({name!r}).download_and_prepare()` on a machine with internet "
                "access and copy its data directory here, or point data_dir (--data_dir) at a "
                "prepared copy."
            ) from None
        test_split = self._tfds_test_split(split_sizes)
        self.test_source = test_split
        self._resolve(natural_hw, fixed_size=fixed, channels=channels)

        if self.cached:
            train_data, train_labels = self._tfds_load("train")
            test_data, test_labels = self._tfds_load(test_split)
            selection = self._select(train_labels, test_labels)
            skipped = []
            for split, data, labels, source in (("train", train_data, train_labels, "train"),
                                                ("validation", train_data, train_labels, "train"),
                                                ("test", test_data, test_labels, test_split)):
                idx = selection[split]
                names = np.array([f"{name}:{source}[{i}]" for i in idx])
                self._splits[split] = self._make_pool(data[idx], labels[idx], names,
                                                      from_files=False, skipped=skipped)
            self._report_skipped(skipped)
        else:
            n_train = split_sizes.get("train") or self._tfds_count("train")
            n_test = split_sizes.get(test_split) or self._tfds_count(test_split)
            validation = self._validation_indices(n_train)
            train_mask = np.ones(n_train, bool)
            train_mask[validation] = False
            if config.max_train_examples is not None:
                train_mask &= np.cumsum(train_mask) <= config.max_train_examples
            validation_mask = np.zeros(n_train, bool)
            validation_mask[validation] = True
            test_mask = np.arange(n_test) < (config.max_test_examples or n_test)
            self._splits = {
                "train": _Stream("train", train_mask, channels),
                "validation": _Stream("train", validation_mask, channels),
                "test": _Stream(test_split, test_mask, channels),
            }

    def _tfds_test_split(self, split_sizes):
        """`"test"`, or `"validation"` where the test split is missing or unlabelled (TFDS'
        `imagenet2012` test split has label -1)."""
        candidates = [s for s in ("test", "validation") if not split_sizes or s in split_sizes]
        for split in candidates:
            if self._tfds_first_label(split) >= 0:
                return split
        raise ValueError(
            f"TFDS data set {self.config.dataset!r} has no labelled 'test' or 'validation' "
            f"split (its splits: {sorted(split_sizes) or candidates})."
        )

    def _tfds_first_label(self, split):
        for example in self._tfds_dataset(split).take(1):
            return int(example[self._label_key])
        return -1

    def _tfds_dataset(self, split):
        import tensorflow_datasets as tfds

        return self._builder.as_dataset(
            split=split,
            shuffle_files=False,
            decoders={self._image_key: tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(try_autocache=False),
        )

    def _tfds_count(self, split):
        return int(self._tfds_dataset(split).reduce(np.int64(0), lambda count, _: count + 1))

    def _tfds_load(self, split):
        """The encoded images and the labels of a TFDS split, as NumPy arrays."""
        image_key, label_key = self._image_key, self._label_key
        ds = self._tfds_dataset(split).map(
            lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)),
            num_parallel_calls=tf.data.AUTOTUNE,
        ).batch(4096)
        parts = list(ds.as_numpy_iterator())
        data = np.concatenate([p[0] for p in parts]).astype(object)
        labels = np.concatenate([p[1] for p in parts]).astype(np.int32)
        return data, labels

    def _validation_indices(self, n_train):
        v = self.config.validation_images
        if v >= n_train:
            raise ValueError(f"validation_images must be smaller than the training split "
                             f"({n_train} images); got {v}.")
        if v == 0:
            return np.zeros(0, np.int64)
        return np.sort(np.random.default_rng(SPLIT_SEED).permutation(n_train)[n_train - v:])

    def _select(self, train_labels, test_labels):
        """Indices of the train / validation / test examples among the source's examples."""
        config = self.config
        n_train = len(train_labels)
        v = config.validation_images
        permutation = np.random.default_rng(SPLIT_SEED).permutation(n_train)
        self._validation_indices(n_train)  # checks the size
        validation = np.sort(permutation[n_train - v:]) if v else np.zeros(0, np.int64)
        train = np.sort(_balanced_first(permutation[: n_train - v], train_labels,
                                        config.max_train_examples))
        test_order = np.random.default_rng(SPLIT_SEED + 1).permutation(len(test_labels))
        test = np.sort(_balanced_first(test_order, test_labels, config.max_test_examples))
        return {"train": train, "validation": validation, "test": test}

    def _make_pool(self, sources, labels, names, from_files, skipped):
        """A pool from file paths (`from_files`) or encoded images, decoding every image once:
        into memory, or to check it (so that the batches meet no corrupt file)."""
        channels, fingerprints = self._channels, None
        if self._arrays:
            data, bad = image_files.decode_all(sources, self._store_hw, channels, from_files)
            kind = "array"
        elif from_files and not self.cached:
            data, kind = sources, "files"
            bad, fingerprints = image_files.verify_all(sources, from_files=True)
        else:
            data = image_files.read_all(sources) if from_files else sources
            kind = "encoded"
            bad, _ = image_files.verify_all(data, from_files=False)
        if len(bad):
            files = [str(names[i]) for i in bad]
            if not self.config.skip_corrupt:
                raise CorruptImageError(files)
            skipped.extend(files)
            keep = np.ones(len(labels), bool)
            keep[bad] = False
            data, labels, names = data[keep], labels[keep], names[keep]
            fingerprints = None if fingerprints is None else fingerprints[keep]
        return _Pool(kind, data, np.asarray(labels, np.int32), np.asarray(names), channels,
                     fingerprints)

    def _report_skipped(self, skipped):
        with self._skipped_lock:
            self._skipped.extend(skipped)
        if skipped:
            logger.warning("Skipped %d corrupt image file(s): %s%s", len(skipped),
                           ", ".join(skipped[:10]), " ..." if len(skipped) > 10 else "")

    # ---------------------------------------------------------------- statistics

    def _statistics(self):
        """Mean image, or channel means and standard deviations, of the train split (0-255)."""
        if self.normalization == "none":
            return None, None
        source = self._splits["train"]
        channels = self._channels
        if self._full:
            if isinstance(source, _Pool) and source.kind == "array":
                batches = (source.data[i:i + 4096] for i in range(0, len(source), 4096))
            else:
                keys = self._all_keys(source)
                batches = self._batches(source, keys, _DECODE_BATCH, train=False, epoch=0,
                                        raw=True).as_numpy_iterator()
            squares = self.normalization == "per_channel"
            total, total_sq, count = 0.0, 0.0, 0
            for images in batches:
                wide = images.astype(np.int64)
                total = total + wide.sum(axis=0)
                if squares:
                    total_sq = total_sq + (wide * wide).sum(axis=0)
                count += len(images)
            mean_image = total / count
            if self.normalization == "per_pixel_mean":
                return mean_image.astype(np.float32), None
            pixels = count * mean_image.shape[0] * mean_image.shape[1]
            mean = total.reshape(-1, channels).sum(axis=0) / pixels
            var = total_sq.reshape(-1, channels).sum(axis=0) / pixels - mean ** 2
        else:
            keys = self._all_keys(source).take(STATS_SAMPLE)
            ds = self._batches(source, keys, _DECODE_BATCH, train=False, epoch=0, raw=True)
            sums, sums_sq, pixels = np.zeros(channels), np.zeros(channels), 0
            for images in ds.as_numpy_iterator():
                flat = images.reshape(-1, channels).astype(np.float64)
                sums += flat.sum(axis=0)
                sums_sq += (flat * flat).sum(axis=0)
                pixels += len(flat)
            mean = sums / pixels
            var = sums_sq / pixels - mean ** 2
        std = np.sqrt(np.maximum(var, 1.0))
        return mean.astype(np.float32), std.astype(np.float32)

    def _normalizer(self):
        """(scale, offset) with normalised = pixel * scale + offset."""
        if self.normalization == "none":
            return np.float32(1 / 255), np.float32(0)
        if self.normalization == "per_pixel_mean":
            return np.float32(1 / 255), (-self.mean / 255).astype(np.float32)
        return (1 / self.std).astype(np.float32), (-self.mean / self.std).astype(np.float32)

    # ---------------------------------------------------------------- dataset building

    def _train_order(self, epoch, n):
        rng = np.random.default_rng([self.config.seed, epoch, _ORDER])
        buffer = self.config.shuffle_buffer
        if buffer is None or buffer >= n:
            return rng.permutation(n)
        return _buffer_shuffle(n, buffer, rng)

    def _all_keys(self, source):
        if isinstance(source, _Pool):
            return tf.data.Dataset.from_tensor_slices(np.arange(len(source), dtype=np.int64))
        return self._stream_records(source)

    def _stream_records(self, stream):
        """`(index, encoded image, label)` of the records of a stream, in file order."""
        mask = tf.constant(stream.mask)
        image_key, label_key = self._image_key, self._label_key
        return (self._tfds_dataset(stream.split).enumerate()
                .filter(lambda i, ex: tf.gather(mask, i))
                .map(lambda i, ex: (i, ex[image_key], tf.cast(ex[label_key], tf.int32))))

    @staticmethod
    def _shard_stream(records, pipelines, pipeline_id):
        if pipelines == 1:
            return records
        return (records.enumerate()
                .filter(lambda j, record: j % pipelines == pipeline_id)
                .map(lambda j, record: record))

    def _window_shuffle(self, records, epoch):
        """Shuffle a stream within windows of `shuffle_buffer` records, statelessly."""
        window = self.config.shuffle_buffer or STREAM_SHUFFLE_BUFFER
        base = _base_seed(self.config.seed, epoch, _ORDER)

        def shuffle(w, record):
            index, image, label = record
            seed = tf.stack([tf.constant(base, tf.int64), w])
            order = tf.argsort(tf.random.stateless_uniform(tf.shape(index), seed))
            return tf.gather(index, order), tf.gather(image, order), tf.gather(label, order)

        return records.batch(window).enumerate().map(shuffle).unbatch()

    def _loader(self, source):
        """A function from a key (stream record, or index of a pool in memory) to
        `(image, label, index)`. (Pools of files have `_checked_example`.)"""
        channels = source.channels
        if isinstance(source, _Stream):
            return lambda i, contents, label: (image_files.decode(contents, channels), label, i)
        data, labels, _ = source.tensors()
        if source.kind == "array":
            return lambda i: (tf.gather(data, i), tf.gather(labels, i), i)
        return lambda i: (image_files.decode(tf.gather(data, i), channels),
                          tf.gather(labels, i), i)

    def _batches(self, source, keys, batch, train, epoch, raw=False):
        """Batches of `(images, labels)`, or of raw (unnormalised) images when `raw`."""
        finish = self._finish_batch(source, train, epoch, raw)
        if isinstance(source, _Pool) and source.kind == "array" and self._full:
            data, labels, _ = source.tensors()
            ds = keys.batch(batch, drop_remainder=train)
            return ds.map(lambda i: finish(tf.gather(data, i), tf.gather(labels, i), i),
                          num_parallel_calls=tf.data.AUTOTUNE)
        prepare = self._prepare_example(train, epoch, raw)
        if isinstance(source, _Stream):  # records not checked in advance
            check = self._checked_batch(source, prepare, batch)
            ds = keys.batch(batch, drop_remainder=train)
        elif source.kind == "files":  # checked when the pool was made, but files can change
            example, check = self._checked_files(source, prepare)
            ds = keys.map(example, num_parallel_calls=tf.data.AUTOTUNE)
            ds = ds.batch(batch, drop_remainder=train)
        else:  # decoded images, or encoded ones in memory that decoded: nothing can fail
            load = self._loader(source)
            ds = keys.map(lambda i: prepare(*load(i)), num_parallel_calls=tf.data.AUTOTUNE)
            return ds.batch(batch, drop_remainder=train).map(
                finish, num_parallel_calls=tf.data.AUTOTUNE)
        settle = self._settle(train)
        return ds.map(lambda *checked: finish(*settle(*check(*checked))),
                      num_parallel_calls=tf.data.AUTOTUNE)

    def _checked_files(self, source, prepare):
        """Functions for a pool of files: from an index to `(image, label, index, same)`, and
        from a batch of those to `(images, labels, indices, ok)`.

        Every file decoded when the pool was made; one whose contents no longer have the
        fingerprint they had then (it changed on disk since: `same` false, and a placeholder
        stands in for it) stops the input with an error naming it or, with `skip_corrupt`, is
        counted and gives `ok=False`. A changed file that still decodes is refused too: the
        statistics and a resumed run assume the contents that were checked. Checking costs
        0.098 -> 0.110 ms of CPU per CIFAR-size JPEG and 2.96 -> 3.06 ms per 500x375 JPEG
        cropped to 224 (2 cores); decoding each file where a failure can be seen instead (as
        `_checked_batch` does) cost 10-35% more. (A file that is gone stops the input with
        TensorFlow's error, which names it.)
        """
        paths, labels, fingerprints = source.tensors()
        channels = source.channels
        placeholder = tf.io.encode_png(tf.zeros([8, 8, channels], tf.uint8))
        report = self._reporter(
            "image file(s) that changed on disk after the pipeline checked them",
            "It changed on disk after the pipeline checked it; restart to read it again. ",
            "They changed on disk after the pipeline checked them; restart to read them "
            "again. ")

        def example(i):
            contents = tf.io.read_file(tf.gather(paths, i))
            same = tf.equal(image_files.fingerprint(contents), tf.gather(fingerprints, i))
            return (*prepare(image_files.decode(tf.where(same, contents, placeholder), channels),
                             tf.gather(labels, i), i), same)

        def check(images, labels_, index, same):
            changed = tf.gather(index, tf.where(tf.logical_not(same))[:, 0])
            with tf.control_dependencies([report(tf.gather(paths, changed))]):
                return tf.identity(images), labels_, index, tf.identity(same)

        return example, check

    def _checked_batch(self, source, prepare, batch):
        """A function from a batch of stream records to `(images, labels, indices, ok)`.

        The batch decodes its images in a dataset of its own, where a failure can be seen: it
        stops the input with an error naming the record or, with `skip_corrupt`, is counted and
        gives `ok=False` (zeros in its place). Decoding image files this way cost about 10%
        more CPU per ImageNet-size image (3.0 -> 3.4 ms for a 500x375 JPEG cropped to 224, on
        2 cores) and 35% per CIFAR-size one.
        """
        load, prefix = self._loader(source), f"{self._name}:{source.split}["
        report = self._reporter("corrupt image record(s) met while reading",
                                "Streamed TFDS records are not checked in advance. ")

        def check(*keys):
            n = tf.shape(keys[0])[0]
            found, example = image_files.decode_seen(keys, lambda *key: prepare(*load(*key)), batch)
            ok = tf.scatter_nd(found[:, None], tf.ones_like(found, tf.bool), [n])
            bad = tf.gather(keys[0], tf.where(tf.logical_not(ok))[:, 0])
            with tf.control_dependencies([report(
                    tf.strings.join([prefix, tf.strings.as_string(bad), "]"]))]):
                return (*(tf.scatter_nd(found[:, None], x, tf.concat([[n], tf.shape(x)[1:]], 0))
                          for x in example), ok)

        return check

    def _reporter(self, skipped, detail, plural_detail=None):
        """A function from the names of bad images of a batch (maybe none) to an op that stops
        the input with a `CorruptImageError` message naming them (`detail` says more) or, with
        `skip_corrupt`, counts them and logs them as `skipped` ("corrupt image files", ...)."""
        if self.config.skip_corrupt:
            return lambda names: tf.cond(
                tf.size(names) > 0,
                lambda: tf.py_function(lambda found: self._note_skipped(found, skipped), [names],
                                       tf.int32),
                lambda: tf.constant(0))
        singular = image_files.message_around(1, detail)
        plural = image_files.message_around(2, plural_detail or detail)

        def report(names):
            many = tf.size(names) > 1
            return tf.debugging.Assert(tf.size(names) == 0, [tf.strings.join([
                tf.where(many, plural[0], singular[0]),
                tf.strings.reduce_join(names, separator=", "),
                tf.where(many, plural[1], singular[1])])])

        return report

    def _settle(self, train):
        """A function `(images, labels, indices, ok) -> (images, labels, indices)` of a batch.

        The images that did not decode or changed (`ok` false, met with `skip_corrupt`) are
        left out in evaluation. In training, the batch's previous image (the next one for the
        first) takes the place of each, so that the batch keeps its size and every later batch
        its examples (a resumed run replays the same batches).
        """
        if not self.config.skip_corrupt:  # every image decoded, or the input stopped
            return lambda images, labels, index, ok: (images, labels, index)

        def leave_out(batch, ok):
            return tuple(tf.boolean_mask(x, ok) for x in batch)

        def stand_in(batch, ok):
            check = tf.debugging.Assert(tf.reduce_any(ok), [
                "No image of a training batch decodes, so none can stand in for the others "
                "(they are logged as skipped). Remove or replace them."])
            with tf.control_dependencies([check]):
                kept = tf.where(ok)[:, 0]
                rows = tf.gather(kept, tf.maximum(tf.cumsum(tf.cast(ok, tf.int32)) - 1, 0))
                return tuple(tf.gather(x, rows) for x in batch)

        fix = stand_in if train else leave_out

        def settle(images, labels, index, ok):
            batch = (images, labels, index)
            return tf.cond(tf.reduce_all(ok), lambda: batch, lambda: fix(batch, ok))

        return settle

    def _note_skipped(self, names, what):
        """Counts and logs the bad images of a batch (called by the input pipeline)."""
        new = []
        with self._skipped_lock:
            for name in names.numpy():
                name = name.decode("utf-8", "replace")
                if name not in self._skipped:
                    self._skipped.append(name)
                    new.append(name)
        if new:
            logger.warning("Skipped %d %s: %s%s", len(new), what, ", ".join(new[:10]),
                           " ..." if len(new) > 10 else "")
        return np.int32(len(new))

    def _prepare_example(self, train, epoch, single_crop=False):
        """Per-example geometry: fit to the output size, or the ImageNet-style crops."""
        out_hw = self._out_hw
        if self._full:
            return lambda image, label, i: (image_files.fit(image, out_hw), label, i)
        size = out_hw[0]
        if not train:
            if self.config.eval_crops == 10 and not single_crop:
                return lambda image, label, i: (_ten_crop(image, size), label, i)
            return lambda image, label, i: (_center_crop(image, size), label, i)
        if self.augmentation == "none":
            return lambda image, label, i: (_center_crop(image, size), label, i)
        crop = _scale_crop if self.augmentation == "imagenet" else _inception_crop
        base = _base_seed(self.config.seed, epoch, _IMAGENET_CROPS)

        def prepare(image, label, i):
            seeds = tf.random.experimental.stateless_split(
                tf.stack([tf.constant(base, tf.int64), i]), 2)
            return _random_flip(crop(image, size, seeds[0]), seeds[1]), label, i

        return prepare

    def _finish_batch(self, source, train, epoch, raw):
        """Per-batch work: normalisation, then the CIFAR crops and flips or the 10 crops."""
        if raw:
            return lambda images, labels, index: images
        scale, offset = self._scale, self._offset
        full, ten = self._full, self.config.eval_crops == 10 and not train
        cifar = train and full and self.augmentation == "cifar"
        h, w = self._out_hw
        pad = (max(1, h // 8), max(1, w // 8))
        if cifar:
            n = len(source) if isinstance(source, _Pool) else source.records
            rng = np.random.default_rng([self.config.seed, epoch, _CIFAR_CROPS])
            crop_ids = tf.constant(rng.integers(
                0, (2 * pad[0] + 1) * (2 * pad[1] + 1) * 2, n).astype(np.int32))
            augment = _cifar_augmenter((h, w), self._channels, pad, scale, offset)

        def finish(images, labels, index):
            if cifar:
                return augment(images, tf.gather(crop_ids, index)), labels
            x = tf.cast(images, tf.float32) * scale + offset
            if ten and full:
                x = _ten_crop_padded(x, pad)
            return x, labels

        return finish

    @staticmethod
    def _finish(ds, deterministic, sharded):
        options = tf.data.Options()
        options.deterministic = deterministic
        if sharded:  # already sharded per input pipeline
            options.experimental_distribute.auto_shard_policy = (
                tf.data.experimental.AutoShardPolicy.OFF)
        return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


# ------------------------------------------------------------------------ helpers


def _sharding(input_context, global_batch_size):
    """(input pipelines, this pipeline's id, per-replica batch size)."""
    _check_int("global_batch_size", global_batch_size, minimum=1)
    if input_context is None:
        return 1, 0, global_batch_size
    batch = input_context.get_per_replica_batch_size(global_batch_size)
    pipelines = input_context.num_input_pipelines
    if global_batch_size % pipelines:
        raise ValueError(f"global_batch_size {global_batch_size} is not divisible by the "
                         f"{pipelines} input pipelines.")
    return pipelines, input_context.input_pipeline_id, batch


def eval_resize_side(size: int) -> int:
    """The shorter side that ImageNet-style evaluation resizes an image to before it takes the
    centre `size` crop: 8/7 of it (256 at 224, He et al. 2015)."""
    return round(size * 256 / 224)


def _base_seed(seed, epoch, stream):
    """One int64 drawn from (seed, epoch, stream): the first half of per-example seeds."""
    return int(np.random.default_rng([seed, epoch, stream]).integers(0, 2 ** 62))


def _buffer_shuffle(n, buffer, rng):
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


def _balanced_first(order, labels, k):
    """The first `k` of `order`, taking the classes in turn (classes that run out drop out)."""
    if k is None or k >= len(order):
        return order
    ordered_labels = labels[order]
    rank = np.empty(len(order), np.int64)
    for label in np.unique(ordered_labels):
        where = np.nonzero(ordered_labels == label)[0]
        rank[where] = np.arange(len(where))
    return order[np.sort(np.argsort(rank, kind="stable")[:k])]


# Above this many index-table entries the CIFAR crops use two gathers instead of one table.
_MAX_CROP_TABLE = 1 << 24


def _cifar_augmenter(hw, channels, pad, scale, offset):
    """A function `(uint8 images [b, h, w, c], crop ids [b]) -> normalised, augmented images`.

    Crop id `k = (top * (2 * pad_w + 1) + left) * 2 + flip` selects where the crop of the
    zero-padded normalised image starts and whether it is mirrored. Since padding is zero after
    normalisation, this equals cropping the padded uint8 image, normalising it and adding the
    padded offset; with one index table per crop id that is a single gather per batch (about 4x
    faster than gathering rows and columns).
    """
    h, w = hw
    ph, pw = pad
    hp, wp = h + 2 * ph, w + 2 * pw
    crops = (2 * ph + 1) * (2 * pw + 1) * 2
    offset_image = np.broadcast_to(np.asarray(offset, np.float32), (h, w, channels))
    offset_image = np.pad(offset_image, [(ph, ph), (pw, pw), (0, 0)])
    if crops * h * w <= _MAX_CROP_TABLE:
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
            padded = tf.pad(images, [[0, 0], [ph, ph], [pw, pw], [0, 0]])
            padded = tf.reshape(padded, [-1, hp * wp, channels])
            x = tf.gather(padded, tf.gather(tables, k), batch_dims=1)
            x = tf.reshape(x, [-1, h, w, channels])
            return tf.cast(x, tf.float32) * scale + tf.gather(offsets, k)

        return augment

    def augment(images, k):
        x = tf.cast(images, tf.float32) * scale + offset
        padded = tf.pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]])
        top, left, flip = k // (2 * (2 * pw + 1)), (k // 2) % (2 * pw + 1), k % 2
        x = tf.gather(padded, top[:, None] + tf.range(h)[None], axis=1, batch_dims=1)
        x = tf.gather(x, left[:, None] + tf.range(w)[None], axis=2, batch_dims=1)
        return tf.where(flip[:, None, None, None] > 0, tf.reverse(x, [2]), x)

    return augment


def _ten_crop_padded(x, pad):
    """`[b, 10, h, w, c]`: corners and centre of the padded batch, then their mirror images."""
    h, w = x.shape[1], x.shape[2]
    padded = tf.pad(x, [[0, 0], [pad[0], pad[0]], [pad[1], pad[1]], [0, 0]])
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


def _center_crop(image, size):
    h, w, side = _eval_crop_side(image, size)
    return _crop_resize(image, (h - side) // 2, (w - side) // 2, side, side, size)


def _ten_crop(image, size):
    h, w, side = _eval_crop_side(image, size)
    corners = [(0, 0), (0, w - side), (h - side, 0), (h - side, w - side),
               ((h - side) // 2, (w - side) // 2)]
    crops = [_crop_resize(image, top, left, side, side, size) for top, left in corners]
    crops += [tf.reverse(crop, [1]) for crop in crops]
    return tf.stack(crops)


def _scale_crop(image, size, seed):
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


def _inception_crop(image, size, seed):
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


def _random_flip(image, seed):
    flip = tf.random.stateless_uniform([], seed) < 0.5
    return tf.where(flip, tf.reverse(image, [1]), image)
