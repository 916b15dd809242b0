"""A folder of TFRecord files of `(encoded image, label)` examples, as the TF Model Garden's and
TF-slim's ImageNet data: `train-00000-of-01024`, ..., and `validation-00000-of-00128`, ... (or
`test-*`), each record a `tf.train.Example` with the encoded image (JPEG, PNG, ...) under
`image/encoded` and the int64 label under `image/class/label` (`DataConfig.tfrecord_image_key`,
`DataConfig.tfrecord_label_key`).

Building the pipeline reads every record once (labels only) to count the examples and classes;
a file that is truncated or not a TFRecord file is named then. Data of at most 64 pixels a side
is held in memory by default (`DataConfig.cache`), larger data is streamed in file order.
"""

import glob
import os

import numpy as np

from training.optional import tensorflow as tf  # imported on use: sources/__init__ needs not
from training.sources import base

TRAIN_PREFIX = "train"
TEST_PREFIXES = ("test", "validation")  # the first one with files is the test split
_LABEL_BATCH = 8192


def _files(root, prefix):
    return sorted(glob.glob(os.path.join(glob.escape(root), f"{prefix}-*")))


class TfrecordSource(base.RecordSource):
    """TFRecord shards `train-*` and `test-*` (or `validation-*`) in the folder `dataset`; the
    classes are `0 .. num_classes - 1` (the largest label + 1 unless `num_classes` says more)."""

    _kind = "TFRecord"

    @classmethod
    def accepts(cls, config):
        root = os.path.expanduser(config.dataset)
        return (os.path.isdir(root) and not os.path.isdir(os.path.join(root, "train"))
                and bool(_files(root, TRAIN_PREFIX)))

    def _describe(self):
        config = self.config
        root = os.path.abspath(os.path.expanduser(config.dataset))
        self._split_files = {TRAIN_PREFIX: _files(root, TRAIN_PREFIX)}
        test = next((prefix for prefix in TEST_PREFIXES if _files(root, prefix)), None)
        if test is None:
            raise ValueError(
                f"TFRecord folder {root} has no test split: expected files "
                f"{' or '.join(os.path.join(root, p + '-*') for p in TEST_PREFIXES)}.")
        self._split_files[test] = _files(root, test)
        self._test_split = test
        self._labels = {split: self._read_labels(split) for split in self._split_files}
        if not len(self._labels[TRAIN_PREFIX]):
            raise ValueError(f"The TFRecord files {os.path.join(root, 'train-*')} hold no "
                             "records.")
        found = max(int(labels.max()) if len(labels) else -1 for labels in self._labels.values())
        lowest = min(int(labels.min()) for labels in self._labels.values() if len(labels))
        if lowest < 0:
            raise ValueError(f"TFRecord folder {root} has a negative label ({lowest}) under "
                             f"tfrecord_label_key {config.tfrecord_label_key!r}; labels must "
                             "be class numbers 0, 1, ...")
        classes = config.num_classes or found + 1
        if classes <= found:
            raise ValueError(f"num_classes is {classes} but TFRecord folder {root} has the "
                             f"label {found}; set num_classes to at least {found + 1} or "
                             "leave it unset.")
        base.check_classes(f"TFRecord folder {root}", [str(label) for label in range(classes)],
                           f"class(es) (labels under {config.tfrecord_label_key!r})")
        return base.Description(
            os.path.basename(root.rstrip(os.sep)) or root,
            tuple(f"class_{label}" for label in range(classes)), self._probe_size(),
            fixed_size=False, channels=3, test_source=os.path.join(root, f"{test}-*"))

    def _parse(self, keys):
        config = self.config
        spec = {key: tf.io.FixedLenFeature([], dtype)
                for key, dtype in ((config.tfrecord_image_key, tf.string),
                                   (config.tfrecord_label_key, tf.int64)) if key in keys}

        def parse(record):
            example = tf.io.parse_single_example(record, spec)
            return tuple(example[key] if key == config.tfrecord_image_key
                         else tf.cast(example[key], tf.int32) for key in keys)

        return parse

    def _records(self, split, *keys):
        """The parsed `keys` of every record of `split`, in file order."""
        parse = self._parse(keys)
        return tf.data.TFRecordDataset(self._split_files[split]).map(
            parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def _read(self, split):
        return self._records(split, self.config.tfrecord_image_key,
                             self.config.tfrecord_label_key)

    def _count(self, split):
        return len(self._labels[split])

    def _read_labels(self, split):
        key = self.config.tfrecord_label_key
        try:
            batches = self._records(split, key).map(lambda label: label).batch(_LABEL_BATCH)
            return np.concatenate([np.zeros(0, np.int32), *batches.as_numpy_iterator()])
        except tf.errors.InvalidArgumentError as error:
            if key in str(error):
                raise ValueError(
                    f"TFRecord files {self._split_files[split][0]}, ... hold examples without "
                    f"the int64 feature {key!r} (tfrecord_label_key) ({_first_line(error)})."
                ) from None
            raise self._unreadable(split, error) from None
        except tf.errors.DataLossError as error:
            raise self._unreadable(split, error) from None

    def _unreadable(self, split, error):
        """A `ValueError` naming the file of `split` that does not read to its end."""
        for path in self._split_files[split]:
            try:
                for _ in tf.data.TFRecordDataset(path):
                    pass
            except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as file_error:
                return ValueError(f"TFRecord file {path} is truncated or not a TFRecord file "
                                  f"({_first_line(file_error)}).")
        return ValueError(f"The TFRecord files of the {split} split do not read "
                          f"({_first_line(error)}).")

    def _probe_size(self):
        """(height, width) of the first training image that decodes among the first 16."""
        from training import images as image_files

        key = self.config.tfrecord_image_key
        try:
            for (contents,) in self._records(TRAIN_PREFIX, key).take(16).as_numpy_iterator():
                try:
                    shape = image_files.decode(contents, 3).shape
                    return int(shape[0]), int(shape[1])
                except tf.errors.InvalidArgumentError:
                    continue
        except tf.errors.InvalidArgumentError as error:
            raise ValueError(
                f"TFRecord files {self._split_files[TRAIN_PREFIX][0]}, ... hold examples "
                f"without the bytes feature {key!r} (tfrecord_image_key) "
                f"({_first_line(error)}).") from None
        raise ValueError(f"None of the first 16 images of {self._split_files[TRAIN_PREFIX][0]}"
                         f", ... decodes (feature {key!r}, tfrecord_image_key).")


def _first_line(error):
    return str(getattr(error, "message", error)).strip().splitlines()[0]
