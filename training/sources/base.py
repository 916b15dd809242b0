"""What every data source shares: its description, the plan the pipeline makes from it, the
splits it gives back, and the fixed choice of validation, train and test examples.

A source has one small interface (`Source`): `describe()` reads what the data is (classes,
image size, channels) without loading it; `training.sources.plan` turns that description and the
`DataConfig` into a `Plan` (output size, augmentation, normalisation, caching); `splits(plan)`
returns the train, validation and test splits (`training.splits`) made as the plan says.
"""

import abc
import dataclasses
from typing import Optional, Tuple

import numpy as np

from training.data_config import DataConfig

# Images of at most this many pixels a side are "CIFAR-size": decoded once and kept in memory.
SMALL_IMAGE_PIXELS = 64
DEFAULT_LARGE_SIZE = 224
# The validation carve-out and the test subset do not depend on DataConfig.seed, so runs and
# tuning trials with different seeds share one validation set.
SPLIT_SEED = 20151210


@dataclasses.dataclass(frozen=True)
class Description:
    """What a source holds, read without loading it.

    Args:
        name: str. The data set's name (TFDS name, folder name, ...).
        class_names: tuple of str. The class of each label.
        natural_hw: tuple of 2 ints or `None`. The images' own size (of the first one, for
            sources whose images may differ), `None` where unknown.
        fixed_size: bool. Whether every image has `natural_hw` (then it is the default output
            size of large images too).
        channels: int. Channels of the images.
        test_source: str. Where the test split comes from.
        in_memory: bool. The data is made in memory (synthetic): held decoded whatever `cache`
            says. Defaults to `False`.
    """

    name: str
    class_names: Tuple[str, ...]
    natural_hw: Optional[Tuple[int, int]]
    fixed_size: bool
    channels: int
    test_source: str
    in_memory: bool = False

    @property
    def num_classes(self):
        return len(self.class_names)


@dataclasses.dataclass(frozen=True)
class Plan:
    """How the pipeline prepares a source's images (every `"auto"` resolved).

    Args:
        augmentation: str. The training augmentation.
        normalization: str. The normalisation.
        whole: bool. The CIFAR-style geometry: every image is fitted to `out_hw`.
        out_hw: tuple of 2 ints. The output size.
        cached: bool. Whether the data is held in memory.
        arrays: bool. Whether it is held decoded (at `store_hw`).
        store_hw: tuple of 2 ints or `None`. The size images are decoded to in memory.
        channels: int. Channels of the images.
    """

    augmentation: str
    normalization: str
    whole: bool
    out_hw: Tuple[int, int]
    cached: bool
    arrays: bool
    store_hw: Optional[Tuple[int, int]]
    channels: int


def plan(config: DataConfig, description: Description) -> Plan:
    """Chooses geometry, output size, caching, augmentation and normalisation for the data."""
    if config.num_classes is not None and config.num_classes != description.num_classes:
        raise ValueError(
            f"num_classes is {config.num_classes} but {config.dataset} has "
            f"{description.num_classes} classes; leave num_classes unset for real data."
        )
    natural_hw = description.natural_hw
    small = natural_hw is not None and max(natural_hw) <= SMALL_IMAGE_PIXELS
    augmentation = config.augmentation
    if augmentation == "auto":
        augmentation = "cifar" if small else "imagenet"
    whole = augmentation == "cifar" or (augmentation == "none" and small)
    if config.image_size is not None:
        out_hw = (config.image_size, config.image_size)
    elif natural_hw is not None and (small or description.fixed_size):
        out_hw = tuple(natural_hw)
    else:
        out_hw = (DEFAULT_LARGE_SIZE, DEFAULT_LARGE_SIZE)
    if not whole and out_hw[0] != out_hw[1]:
        out_hw = (max(out_hw),) * 2
    normalization = config.normalization
    if normalization == "auto":
        normalization = "per_pixel_mean" if whole else "per_channel"
    if normalization == "per_pixel_mean" and not whole:
        raise ValueError(
            "normalization='per_pixel_mean' needs the CIFAR-style geometry (augmentation "
            "'cifar', or 'none' on images of at most 64 pixels); got augmentation "
            f"{augmentation!r} on {natural_hw or 'variable-size'} images. Use "
            "'per_channel' or 'none'."
        )
    cached = small if config.cache is None else config.cache
    # Decoded arrays hold images at the output size (CIFAR-style geometry) or, for small
    # fixed-size data, at their own size; other cached data keeps the encoded files.
    arrays = cached and (whole or small)
    store_hw = out_hw if whole else (tuple(natural_hw) if small else None)
    if description.in_memory and not arrays:  # made in memory whatever `cache` says
        cached, arrays, store_hw = True, True, tuple(natural_hw)
    return Plan(augmentation, normalization, whole, out_hw, cached, arrays, store_hw,
                description.channels)


@dataclasses.dataclass(frozen=True)
class Splits:
    """A source's splits (`training.splits`) and the corrupt images it skipped loading them."""

    train: object
    validation: object
    test: object
    skipped: Tuple[str, ...] = ()

    def __getitem__(self, split):
        return getattr(self, split)


class Source(abc.ABC):
    """One kind of data. A subclass reads `config.dataset` values that `accepts` says it
    reads (`training.sources.SOURCES` tries them in order).

    Args:
        config: `DataConfig`.
    """

    def __init__(self, config: DataConfig):
        self.config = config
        self._description = None

    @classmethod
    @abc.abstractmethod
    def accepts(cls, config: DataConfig) -> bool:
        """Whether this kind of source reads `config.dataset`."""

    def describe(self) -> Description:
        """The data's `Description` (read once: `_describe`)."""
        if self._description is None:
            self._description = self._describe()
        return self._description

    @abc.abstractmethod
    def _describe(self) -> Description:
        """Reads the data's `Description`."""

    @abc.abstractmethod
    def splits(self, plan: Plan) -> Splits:
        """The train, validation and test splits, made as `plan` says."""


def check_classes(source, names, what):
    """One class would "train" to 0% error: refuse it."""
    if len(names) < 2:
        raise ValueError(f"{source} has {len(names)} {what} ({', '.join(map(str, names))}); "
                         "a classifier needs at least 2 classes.")


def validation_indices(config, n_train):
    """The positions of the validation carve-out among `n_train` training examples."""
    v = config.validation_images
    if v >= n_train:
        raise ValueError(f"validation_images must be smaller than the training split "
                         f"({n_train} images); got {v}.")
    if v == 0:
        return np.zeros(0, np.int64)
    return np.sort(np.random.default_rng(SPLIT_SEED).permutation(n_train)[n_train - v:])


def balanced_first(order, labels, k):
    """The first `k` of `order`, taking the classes in turn (classes that run out drop out)."""
    if k is None or k >= len(order):
        return order
    ordered_labels = labels[order]
    rank = np.empty(len(order), np.int64)
    for label in np.unique(ordered_labels):
        where = np.nonzero(ordered_labels == label)[0]
        rank[where] = np.arange(len(where))
    return order[np.sort(np.argsort(rank, kind="stable")[:k])]


def select(config, train_labels, test_labels):
    """Positions of the train / validation / test examples among a source's examples in
    memory: a fixed permutation of the training examples, the validation carve-out from its
    end, and `max_train_examples` / `max_test_examples` balanced over the classes."""
    n_train = len(train_labels)
    v = config.validation_images
    permutation = np.random.default_rng(SPLIT_SEED).permutation(n_train)
    validation_indices(config, n_train)  # checks the size
    validation = np.sort(permutation[n_train - v:]) if v else np.zeros(0, np.int64)
    train = np.sort(balanced_first(permutation[: n_train - v], train_labels,
                                   config.max_train_examples))
    test_order = np.random.default_rng(SPLIT_SEED + 1).permutation(len(test_labels))
    test = np.sort(balanced_first(test_order, test_labels, config.max_test_examples))
    return {"train": train, "validation": validation, "test": test}


def pools(config, plan, train, test, from_files, name_of):
    """`Splits` of pools made from `(sources, labels)` of the source's train and test splits
    (paths with `from_files`, else encoded images); `name_of(split, position)` names an
    example in errors (a path, a record)."""
    from training import splits as splits_lib  # tf.data pools
    selection = select(config, train[1], test[1])
    skipped = []
    made = {}
    for split, (sources, labels), source_split in (("train", train, "train"),
                                                   ("validation", train, "train"),
                                                   ("test", test, "test")):
        idx = selection[split]
        names = np.array([name_of(source_split, i) for i in idx])
        made[split] = splits_lib.make_pool(plan, sources[idx], labels[idx], names, from_files,
                                           config.skip_corrupt, skipped)
    return Splits(made["train"], made["validation"], made["test"], tuple(skipped))


class RecordSource(Source):
    """A source of `(encoded image, label)` records in files (TFDS, TFRecord): cached data is
    read into memory and checked; other data is streamed in file order, each of our splits
    keeping the records of a mask (the validation carve-out, `max_*_examples` as the first
    ones in file order). Subclasses give `_read(split)`, `_count(split)`, `_kind` and
    `_test_split` (after `describe`)."""

    _kind = ""
    _test_split = "test"

    @abc.abstractmethod
    def _read(self, split):
        """A fresh `tf.data.Dataset` of `(encoded image, int32 label)`, in file order."""

    @abc.abstractmethod
    def _count(self, split):
        """The number of records of `split`."""

    def _load(self, split):
        """The encoded images and the labels of a split, as NumPy arrays."""
        parts = list(self._read(split).batch(4096).as_numpy_iterator())
        data = np.concatenate([p[0] for p in parts]).astype(object)
        labels = np.concatenate([p[1] for p in parts]).astype(np.int32)
        return data, labels

    def splits(self, plan: Plan) -> Splits:
        from training import splits as splits_lib  # tf.data streams

        config, name, test_split = self.config, self.describe().name, self._test_split
        if plan.cached:
            sources = {"train": "train", "test": test_split}
            return pools(config, plan, self._load("train"), self._load(test_split), False,
                         lambda split, i: f"{name}:{sources[split]}[{i}]")
        n_train, n_test = self._count("train"), self._count(test_split)
        validation = validation_indices(config, n_train)
        train_mask = np.ones(n_train, bool)
        train_mask[validation] = False
        if config.max_train_examples is not None:
            train_mask &= np.cumsum(train_mask) <= config.max_train_examples
        validation_mask = np.zeros(n_train, bool)
        validation_mask[validation] = True
        test_mask = np.arange(n_test) < (config.max_test_examples or n_test)

        def stream(split, mask):
            return splits_lib.Stream(lambda: self._read(split), f"{name}:{split}", mask,
                                     plan.channels, self._kind)

        return Splits(stream("train", train_mask), stream("train", validation_mask),
                      stream(test_split, test_mask))
