"""A TensorFlow Datasets name (`"cifar10"`, `"imagenet2012"`, ...): prepared data in
`data_dir`; TFDS downloads data sets on first use, which needs internet."""

import os

import numpy as np

from training.optional import tensorflow as tf  # imported on use: sources/__init__ needs not
from training.sources import base


class TfdsSource(base.RecordSource):
    """An image classification data set of TFDS (an image feature and a class label); the test
    split is `"test"`, or `"validation"` where the test split is missing or unlabelled."""

    _kind = "TFDS"

    @classmethod
    def accepts(cls, config):
        return True  # the last source tried: any other name is a TFDS name, or an error

    def _describe(self):
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
                "and test/ class folders or train-* TFRecord files, or 'synthetic'."
            ) from None
        self._builder = builder
        info = builder.info
        self._image_key, self._label_key = tuple(info.supervised_keys or ("image", "label"))[:2]
        features = info.features
        if self._image_key not in features or self._label_key not in features or not hasattr(
                features[self._label_key], "num_classes"):
            raise ValueError(
                f"TFDS data set {name!r} is not an image classification data set: it has no "
                f"image feature and class label (features: {list(features.keys())})."
            )
        class_names = tuple(features[self._label_key].names)
        base.check_classes(f"TFDS data set {name!r}", class_names,
                           f"class(es) in its label feature {self._label_key!r}")
        shape = tuple(features[self._image_key].shape)
        channels = shape[-1] if len(shape) == 3 and shape[-1] else 3
        fixed = len(shape) == 3 and shape[0] is not None and shape[1] is not None
        self._sizes = {split: int(value.num_examples) for split, value in info.splits.items()}
        if self._sizes and "train" not in self._sizes:
            raise ValueError(f"TFDS data set {name!r} has no 'train' split; its splits are "
                             f"{sorted(self._sizes)}.")
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
        self._test_split = self._find_test_split()
        return base.Description(
            name, class_names, (int(shape[0]), int(shape[1])) if fixed else None,
            fixed_size=fixed, channels=channels, test_source=self._test_split)

    def _find_test_split(self):
        """`"test"`, or `"validation"` where the test split is missing or unlabelled (TFDS'
        `imagenet2012` test split has label -1)."""
        candidates = [s for s in ("test", "validation") if not self._sizes or s in self._sizes]
        for split in candidates:
            if self._first_label(split) >= 0:
                return split
        raise ValueError(
            f"TFDS data set {self.config.dataset!r} has no labelled 'test' or 'validation' "
            f"split (its splits: {sorted(self._sizes) or candidates})."
        )

    def _first_label(self, split):
        for _, label in self._read(split).take(1):
            return int(label)
        return -1

    def _read(self, split):
        import tensorflow_datasets as tfds

        image_key, label_key = self._image_key, self._label_key
        return self._builder.as_dataset(
            split=split,
            shuffle_files=False,
            decoders={image_key: tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(try_autocache=False),
        ).map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)))  # in file order

    def _count(self, split):
        if self._sizes.get(split):
            return self._sizes[split]
        return int(self._read(split).reduce(np.int64(0), lambda count, _: count + 1))
