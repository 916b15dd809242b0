"""tf.data input pipelines over a data source, with the papers' augmentation and preprocessing.

`Pipeline(DataConfig(...))` opens the source (`training.sources`: synthetic data, an image
folder, a folder of TFRecord files or a TFDS data set), plans the preparation from the source's
description (`training.sources.plan`: output size, augmentation, normalisation, caching), has
the source make its splits (listing the files, decoding CIFAR-size data into memory, checking
every file it can) and computes the normalisation statistics. It then builds one
`tf.data.Dataset` per call: `train(epoch, ...)` for one shuffled, augmented epoch,
`evaluation(split, ...)` for a finite pass over the validation or test split. The geometry of
each augmentation is described in `training.augment`.

Reproducibility: the order of epoch `e` is a permutation drawn from `(seed, e)` and the
augmentation of an example is drawn from `(seed, e, index of the example)` (NumPy's counter-based
generator for the CIFAR crops, TensorFlow's stateless random ops for the ImageNet crops,
RandAugment and random erasing), MixUp and CutMix of a batch from `(seed, e, index of its first
example)`, so a resumed run replays an epoch exactly. With `DataConfig.deterministic=False`
tf.data may deliver elements out of order when that is faster; which examples an epoch holds and
how each is augmented do not change, but which examples share a batch (and are mixed) may.
"""

import logging
import time
from typing import Optional, Tuple

import tensorflow as tf

from training import augment, normalization, sources, splits
from training.augment import eval_resize_side  # noqa: F401 (re-exported)
from training.data_config import (  # noqa: F401 (re-exported)
    AUGMENTATIONS,
    EVAL_CROPS,
    EVAL_SPLITS,
    FIXED_STATISTICS,
    NORMALIZATIONS,
    SYNTHETIC,
    DataConfig,
    DatasetInfo,
    check_int,
)
from training.images import CorruptImageError, decode_dataset  # noqa: F401 (re-exported)
from training.normalization import STATS_SAMPLE  # noqa: F401 (re-exported)
from training.pipeline_base import PipelineBase
from training.splits import STREAM_SHUFFLE_BUFFER  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

_DECODE_BATCH = 256
# The CIFAR crops' index tables may hold this many entries (training.augment.cifar_augmenter).
_MAX_CROP_TABLE = augment.MAX_CROP_TABLE


class Pipeline(PipelineBase):
    """tf.data pipelines over one data set.

    Building a `Pipeline` opens the source, checks the folders, splits and files (a
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
            means `[C]` (the other normalisations but `"none"`), in pixel units (0-255).
        std: NumPy array or `None`. The channel standard deviations (the normalisations with
            channel means).
        skipped_files: tuple of str. Corrupt files skipped by `skip_corrupt=True`: those found
            when the pipeline was built, then any met while reading (files that changed on disk
            since, TFDS or TFRecord records that do not decode).
        test_source: str. Where the test split comes from: the `test/`, `val/` or
            `validation/` folder, the TFDS split (`"test"`, or `"validation"` where the test
            split is missing or unlabelled, as in `imagenet2012`), the TFRecord files
            (`<folder>/test-*` or `<folder>/validation-*`), or `"synthetic"`.
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
        self._guard = splits.Guard(config.skip_corrupt)
        start = time.perf_counter()
        source = sources.open_source(config)
        description = source.describe()
        self._plan = plan = sources.plan(config, description)
        self._splits = source.splits(plan)
        self._guard.found(list(self._splits.skipped))
        self.load_seconds = time.perf_counter() - start
        self._name, self._channels = description.name, plan.channels
        self._num_classes = description.num_classes
        self.augmentation, self.normalization = plan.augmentation, plan.normalization
        self.cached, self.test_source = plan.cached, description.test_source
        try:  # statistics of streamed records meet their corrupt images here: name them
            self.mean, self.std = self._statistics()
        except tf.errors.InvalidArgumentError as error:
            corrupt = CorruptImageError.from_op_error(error)
            if corrupt is None:
                raise
            raise corrupt from None
        self._scale, self._offset = self._normalizer()
        h, w = plan.out_hw
        self.info = DatasetInfo(
            name=description.name,
            num_classes=description.num_classes,
            image_shape=(h, w, plan.channels),
            train_examples=len(self._splits["train"]),
            validation_examples=len(self._splits["validation"]),
            test_examples=len(self._splits["test"]),
            class_names=description.class_names,
        )
        logger.info(
            "%s: %d train / %d validation / %d test images of %dx%dx%d, %d classes; %s in "
            "%.1f s; augmentation %s, normalization %s.",
            self.info.name, self.info.train_examples, self.info.validation_examples,
            self.info.test_examples, h, w, plan.channels, self.info.num_classes,
            "decoded into memory" if plan.arrays else ("read into memory" if self.cached
                                                       else "indexed"),
            self.load_seconds, self.augmentation, self.normalization,
        )

    # ---------------------------------------------------------------- public interface

    @property
    def skipped_files(self) -> Tuple[str, ...]:
        return self._guard.skipped

    def train(
        self,
        epoch: int,
        global_batch_size: int,
        input_context: Optional[tf.distribute.InputContext] = None,
        skip_batches: int = 0,
    ) -> tf.data.Dataset:
        """One epoch of shuffled, augmented `(images, labels)` batches.

        Images are float32 `[batch, H, W, C]`, labels int32 `[batch]` (with MixUp or CutMix
        on, float32 mixed one-hot targets `[batch, classes]`). The last partial batch is
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
        steps = self._check_train(epoch, global_batch_size, skip_batches)
        pipelines, pipeline_id, batch = _sharding(input_context, global_batch_size)
        split, config = self._splits["train"], self.config
        keys = split.train_keys(epoch, config.seed, config.shuffle_buffer,
                                steps * global_batch_size, skip_batches * global_batch_size,
                                (pipelines, pipeline_id))
        ds = self._batches(split, keys, batch, train=True, epoch=epoch)
        return _finish(ds, config.deterministic, sharded=input_context is not None)

    def evaluation(
        self,
        split: str,
        global_batch_size: int,
        input_context: Optional[tf.distribute.InputContext] = None,
    ) -> tf.data.Dataset:
        """Every example of a split exactly once, in a fixed order, without augmentation.

        The order is fixed whatever `DataConfig.deterministic` says: the split's order of
        examples (files sorted by class and name, records in file order).

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
        examples = self._check_evaluation(split, global_batch_size)
        pipelines, pipeline_id, batch = _sharding(input_context, global_batch_size)
        keys = examples.eval_keys((pipelines, pipeline_id))
        ds = self._batches(examples, keys, batch, train=False, epoch=0)
        return _finish(ds, True, sharded=input_context is not None)

    # ---------------------------------------------------------------- statistics

    def _statistics(self):
        """Mean image, or channel means and standard deviations, of the train split (0-255)."""
        split = self._splits["train"]

        def raw_batches():
            keys = split.eval_keys((1, 0))
            if not self._plan.whole:
                keys = keys.take(STATS_SAMPLE)
            return self._batches(split, keys, _DECODE_BATCH, train=False, epoch=0,
                                 raw=True).as_numpy_iterator()

        return normalization.statistics(self.normalization, self._channels, self._name,
                                        self._plan.whole, raw_batches)

    def _normalizer(self):
        """(scale, offset) with normalised = pixel * scale + offset."""
        return normalization.normalizer(self.normalization, self.mean, self.std)

    # ---------------------------------------------------------------- dataset building

    def _batches(self, split, keys, batch, train, epoch, raw=False):
        """Batches of `(images, labels)`, or of raw (unnormalised, uncropped) images when
        `raw`: the split loads the examples, `training.augment` prepares them."""
        plan, config = self._plan, self.config
        ten = config.eval_crops == 10 and not train and not raw
        prepare = augment.example_step(
            plan.out_hw, plan.whole, plan.augmentation, train, ten,
            augment.base_seed(config.seed, epoch, augment.IMAGENET_CROPS) if train else None)
        if raw:
            def finish(images, labels, index):
                return images
        else:
            crop_ids = None
            if train and plan.whole and plan.augmentation == "cifar":
                crop_ids = augment.cifar_crop_ids(config.seed, epoch, split.key_space,
                                                  plan.out_hw)
            before, after = (augment.train_components(config, epoch, self._num_classes)
                             if train else (None, None))
            finish = augment.batch_step(plan.out_hw, plan.channels, self._scale, self._offset,
                                        crop_ids, ten and plan.whole, _MAX_CROP_TABLE,
                                        before, after, config.crop_padding)
        return split.batches(keys, batch, train, prepare, finish, plan.whole, self._guard)


def _finish(ds, deterministic, sharded):
    options = tf.data.Options()
    options.deterministic = deterministic
    if sharded:  # already sharded per input pipeline
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF)
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options)


def _sharding(input_context, global_batch_size):
    """(input pipelines, this pipeline's id, per-replica batch size)."""
    check_int("global_batch_size", global_batch_size, minimum=1)
    if input_context is None:
        return 1, 0, global_batch_size
    batch = input_context.get_per_replica_batch_size(global_batch_size)
    pipelines = input_context.num_input_pipelines
    if global_batch_size % pipelines:
        raise ValueError(f"global_batch_size {global_batch_size} is not divisible by the "
                         f"{pipelines} input pipelines.")
    return pipelines, input_context.input_pipeline_id, batch
