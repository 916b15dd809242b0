"""The splits a data source gives the pipeline: examples that can be listed, sharded and loaded.

A split is addressed by integer keys. `ArrayPool`, `EncodedPool` and `FilePool` hold their
examples in memory (decoded images, encoded images, or paths checked when the pool was made)
and are addressed by position 0..n-1; a `Stream` reads records in file order and keeps those
that belong to it. Every split has the same methods: `len()`, `key_space` (the range of its
keys), `train_keys` (one epoch's order, sharded), `eval_keys` (every example once, sharded) and
`batches` (keys -> batches of prepared examples). `Guard` decides what a corrupt image met while
reading does: stop the input with an error naming it, or (`skip_corrupt`) count and skip it.
"""

import logging
import threading

import numpy as np
import tensorflow as tf

from training import augment
from training import images as image_files
from training.draws import buffer_shuffle, train_order  # noqa: F401 (re-exported)

logger = logging.getLogger(__name__)

STREAM_SHUFFLE_BUFFER = 10_000


class Guard:
    """What corrupt images do: `skip_corrupt=False` stops the input with a `CorruptImageError`
    message naming them; `True` counts them (`skipped`), logs them and leaves them out."""

    def __init__(self, skip_corrupt):
        self.skip_corrupt = skip_corrupt
        self._skipped = []  # appended to by the input pipelines' threads (under the lock)
        self._lock = threading.Lock()

    @property
    def skipped(self):
        with self._lock:
            return tuple(self._skipped)

    def found(self, names):
        """Counts and logs the corrupt images that a source skipped when it was loaded."""
        with self._lock:
            self._skipped.extend(names)
        if names:
            logger.warning("Skipped %d corrupt image file(s): %s%s", len(names),
                           ", ".join(names[:10]), " ..." if len(names) > 10 else "")

    def reporter(self, skipped, detail, plural_detail=None):
        """A function from the names of bad images of a batch (maybe none) to an op that stops
        the input with a `CorruptImageError` message naming them (`detail` says more) or, with
        `skip_corrupt`, counts them and logs them as `skipped` ("corrupt image files", ...)."""
        if self.skip_corrupt:
            return lambda names: tf.cond(
                tf.size(names) > 0,
                lambda: tf.py_function(lambda found: self._note(found, skipped), [names],
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

    def settle(self, train):
        """A function `(images, labels, indices, ok) -> (images, labels, indices)` of a batch.

        The images that did not decode or changed (`ok` false, met with `skip_corrupt`) are
        left out in evaluation. In training, the batch's previous image (the next one for the
        first) takes the place of each, so that the batch keeps its size and every later batch
        its examples (a resumed run replays the same batches).
        """
        if not self.skip_corrupt:  # every image decoded, or the input stopped
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

    def _note(self, names, what):
        """Counts and logs the bad images of a batch (called by the input pipeline)."""
        new = []
        with self._lock:
            for name in names.numpy():
                name = name.decode("utf-8", "replace")
                if name not in self._skipped:
                    self._skipped.append(name)
                    new.append(name)
        if new:
            logger.warning("Skipped %d %s: %s%s", len(new), what, ", ".join(new[:10]),
                           " ..." if len(new) > 10 else "")
        return np.int32(len(new))


class _Pool:
    """Examples in memory, addressed by position 0..n-1; `names` says where each came from."""

    def __init__(self, data, labels, names, channels, fingerprints=None):
        self.data, self.labels, self.names = data, np.asarray(labels, np.int32), names
        self.channels, self.fingerprints = channels, fingerprints
        self._tensors = None

    def __len__(self):
        return len(self.labels)

    @property
    def key_space(self):
        return len(self)

    def tensors(self):
        """(data, labels, fingerprints or None) as tensors, made once."""
        if self._tensors is None:
            self._tensors = (tf.convert_to_tensor(self.data), tf.convert_to_tensor(self.labels),
                             None if self.fingerprints is None
                             else tf.convert_to_tensor(self.fingerprints))
        return self._tensors

    def train_keys(self, epoch, seed, shuffle_buffer, examples, skip, shard):
        """The keys of one epoch's first `examples` examples after the first `skip`, this
        input pipeline's share (`shard`: pipelines, pipeline id)."""
        pipelines, pipeline_id = shard
        order = train_order(seed, epoch, shuffle_buffer, len(self))[:examples]
        return tf.data.Dataset.from_tensor_slices(order[skip:][pipeline_id::pipelines])

    def eval_keys(self, shard):
        pipelines, pipeline_id = shard
        return tf.data.Dataset.from_tensor_slices(
            np.arange(len(self), dtype=np.int64)[pipeline_id::pipelines])

    def batches(self, keys, batch, train, prepare, finish, whole, guard):
        """Batches `finish(images, labels, indices)` of `prepare(image, label, index)` of the
        examples of `keys` (`whole`: `prepare` only fits images to the output size)."""
        data, labels, _ = self.tensors()
        load = self._loader(data, labels)
        ds = keys.map(lambda i: prepare(*load(i)), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch, drop_remainder=train).map(finish,
                                                         num_parallel_calls=tf.data.AUTOTUNE)


class ArrayPool(_Pool):
    """Decoded uint8 images `[n, h, w, c]` in memory."""

    def _loader(self, data, labels):
        return lambda i: (tf.gather(data, i), tf.gather(labels, i), i)

    def batches(self, keys, batch, train, prepare, finish, whole, guard):
        if not whole:
            return super().batches(keys, batch, train, prepare, finish, whole, guard)
        data, labels, _ = self.tensors()  # held at the output size: one gather per batch
        return keys.batch(batch, drop_remainder=train).map(
            lambda i: finish(tf.gather(data, i), tf.gather(labels, i), i),
            num_parallel_calls=tf.data.AUTOTUNE)


class EncodedPool(_Pool):
    """Encoded images in memory (each decoded when the pool was made, so none fails)."""

    def _loader(self, data, labels):
        channels = self.channels
        return lambda i: (image_files.decode(tf.gather(data, i), channels),
                          tf.gather(labels, i), i)


class FilePool(_Pool):
    """Paths of image files, with the fingerprints of the contents that decoded when the pool
    was made."""

    def batches(self, keys, batch, train, prepare, finish, whole, guard):
        """Every file decoded when the pool was made; one whose contents no longer have the
        fingerprint they had then (it changed on disk since: a placeholder stands in for it)
        stops the input with an error naming it or, with `skip_corrupt`, is counted and left
        out. A changed file that still decodes is refused too: the statistics and a resumed run
        assume the contents that were checked. Checking costs 0.098 -> 0.110 ms of CPU per
        CIFAR-size JPEG and 2.96 -> 3.06 ms per 500x375 JPEG cropped to 224 (2 cores); decoding
        each file where a failure can be seen instead (as `Stream` does) cost 10-35% more. (A
        file that is gone stops the input with TensorFlow's error, which names it.)
        """
        paths, labels, fingerprints = self.tensors()
        channels = self.channels
        placeholder = tf.io.encode_png(tf.zeros([8, 8, channels], tf.uint8))
        report = guard.reporter(
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

        settle = guard.settle(train)
        ds = keys.map(example, num_parallel_calls=tf.data.AUTOTUNE)
        return ds.batch(batch, drop_remainder=train).map(
            lambda *checked: finish(*settle(*check(*checked))),
            num_parallel_calls=tf.data.AUTOTUNE)


def make_pool(plan, sources, labels, names, from_files, skip_corrupt, skipped):
    """A pool from file paths (`from_files`) or encoded images, decoding every image once:
    into memory (`plan.arrays`), or to check it (so that the batches meet no corrupt file).
    Images that do not decode raise a `CorruptImageError` naming them or, with
    `skip_corrupt`, are left out and their names appended to `skipped`."""
    channels, fingerprints = plan.channels, None
    if plan.arrays:
        data, bad = image_files.decode_all(sources, plan.store_hw, channels, from_files)
        kind = ArrayPool
    elif from_files and not plan.cached:
        data, kind = sources, FilePool
        bad, fingerprints = image_files.verify_all(sources, from_files=True)
    else:
        data = image_files.read_all(sources) if from_files else sources
        kind = EncodedPool
        bad, _ = image_files.verify_all(data, from_files=False)
    if len(bad):
        files = [str(names[i]) for i in bad]
        if not skip_corrupt:
            raise image_files.CorruptImageError(files)
        skipped.extend(files)
        keep = np.ones(len(labels), bool)
        keep[bad] = False
        data, labels, names = data[keep], labels[keep], names[keep]
        fingerprints = None if fingerprints is None else fingerprints[keep]
    return kind(data, labels, np.asarray(names), channels, fingerprints)


class Stream:
    """The records of a source's split that belong to one of our splits, read in file order.

    Args:
        read: callable. A fresh `tf.data.Dataset` of `(encoded image, int32 label)` records of
            the source's split, in file order.
        name: str. How a record is named in errors: `name[index]`.
        mask: bool NumPy array. Which records belong to this split.
        channels: int. Channels to decode to.
        kind: str. What the records are, in errors (`"TFDS"`, `"TFRecord"`).
    """

    def __init__(self, read, name, mask, channels, kind):
        self.read, self.name, self.mask, self.channels = read, name, mask, channels
        self.kind = kind

    def __len__(self):
        return int(self.mask.sum())

    @property
    def key_space(self):
        return len(self.mask)

    def records(self):
        """`(index, encoded image, label)` of this split's records, in file order."""
        mask = tf.constant(self.mask)
        return (self.read().enumerate()
                .filter(lambda i, record: tf.gather(mask, i))
                .map(lambda i, record: (i, record[0], record[1])))

    @staticmethod
    def _shard(records, shard):
        pipelines, pipeline_id = shard
        if pipelines == 1:
            return records
        return (records.enumerate()
                .filter(lambda j, record: j % pipelines == pipeline_id)
                .map(lambda j, record: record))

    def train_keys(self, epoch, seed, shuffle_buffer, examples, skip, shard):
        """This pipeline's records (every `pipelines`-th), shuffled within windows of
        `shuffle_buffer` records statelessly; `examples` and `skip` count over all pipelines."""
        pipelines = shard[0]
        window = shuffle_buffer or STREAM_SHUFFLE_BUFFER
        base = augment.base_seed(seed, epoch, augment.ORDER)

        def shuffle(w, record):
            index, image, label = record
            order = tf.argsort(tf.random.stateless_uniform(
                tf.shape(index), tf.stack([tf.constant(base, tf.int64), w])))
            return tf.gather(index, order), tf.gather(image, order), tf.gather(label, order)

        keys = self._shard(self.records(), shard).batch(window).enumerate().map(shuffle)
        return keys.unbatch().take(examples // pipelines).skip(skip // pipelines)

    def eval_keys(self, shard):
        return self._shard(self.records(), shard)

    def batches(self, keys, batch, train, prepare, finish, whole, guard):
        """The batch decodes its images in a dataset of its own, where a failure can be seen:
        it stops the input with an error naming the record or, with `skip_corrupt`, is counted
        and left out. Decoding image files this way cost about 10% more CPU per ImageNet-size
        image (3.0 -> 3.4 ms for a 500x375 JPEG cropped to 224, on 2 cores) and 35% per
        CIFAR-size one.
        """
        channels, prefix = self.channels, f"{self.name}["
        report = guard.reporter("corrupt image record(s) met while reading",
                                f"Streamed {self.kind} records are not checked in advance. ")

        def load(i, contents, label):
            return image_files.decode(contents, channels), label, i

        def check(*keys):
            n = tf.shape(keys[0])[0]
            found, example = image_files.decode_seen(keys, lambda *key: prepare(*load(*key)),
                                                     batch)
            ok = tf.scatter_nd(found[:, None], tf.ones_like(found, tf.bool), [n])
            bad = tf.gather(keys[0], tf.where(tf.logical_not(ok))[:, 0])
            with tf.control_dependencies([report(
                    tf.strings.join([prefix, tf.strings.as_string(bad), "]"]))]):
                return (*(tf.scatter_nd(found[:, None], x, tf.concat([[n], tf.shape(x)[1:]], 0))
                          for x in example), ok)

        settle = guard.settle(train)
        return keys.batch(batch, drop_remainder=train).map(
            lambda *checked: finish(*settle(*check(*checked))),
            num_parallel_calls=tf.data.AUTOTUNE)
