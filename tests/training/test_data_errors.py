"""training.data on bad data: one-class data sets, images that do not decode (found when the
pipeline is built, or met while reading after a file changed), and image folders with
sub-folders and hidden files.

The folders hold the pattern images of test_data.py: channel 0 of each image is its id.
"""

import logging
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.training.conftest import REPO_ROOT, subprocess_env, tiny_settings
from tests.training.test_data import (
    CLASSES,
    _pattern,
    _write,
    assert_same_batches,
    collect,
    epoch_ids,
    ids,
    make_folder,
)
from training import config as config_lib
from training import trainer
from training.data import CorruptImageError, DataConfig, Pipeline
from training.splits import Stream

# The first bytes of an AppleDouble file (`._name`), which macOS writes beside copied files.
APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 200


def garble(path, keep=100, seed=0):
    """Keeps the first `keep` bytes of an image file (its header and more) and replaces the rest
    with random bytes: the file passes a header check but does not decode."""
    with open(path, "rb") as f:
        contents = f.read()
    assert len(contents) > 2 * keep
    noise = np.random.default_rng(seed).integers(0, 256, len(contents) - keep, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(contents[:keep] + noise.tobytes())


def one_class_folder(root, class_path="cat"):
    for split in ("train", "test"):
        folder = os.path.join(root, split, class_path)
        os.makedirs(folder)
        _write(os.path.join(folder, "0000.png"), _pattern(1, 16, 16))


def changed_rows(batches, reference):
    """(batch, row) of each image that differs between two lists of batches."""
    return [(b, r) for b, (x, y) in enumerate(zip(batches, reference))
            for r in range(len(x)) if not np.array_equal(x[r], y[r])]


def assert_stand_ins(batches, reference, count):
    """`batches` are `reference` but for `count` images, each of which is the previous image of
    its batch that is not one of them (the next one for those at the start)."""
    changed = changed_rows(batches, reference)
    assert len(changed) == count, changed
    for b, r in changed:
        others = [p for p in range(len(reference[b])) if (b, p) not in changed]
        source = max([p for p in others if p < r], default=min(others))
        np.testing.assert_array_equal(batches[b][r], reference[b][source])
    return changed


# ------------------------------------------------------------------------ fewer than 2 classes


@pytest.mark.parametrize("value", [1, 0])
def test_the_config_refuses_fewer_than_two_classes(value):
    with pytest.raises(ValueError, match=re.escape(
            f"num_classes must be an integer >= 2; got {value}.")):
        DataConfig(dataset="synthetic", num_classes=value)
    assert DataConfig(dataset="synthetic", num_classes=2).num_classes == 2


def test_an_image_folder_with_one_class_folder_is_refused(tmp_path):
    root = str(tmp_path / "one")
    one_class_folder(root)
    with pytest.raises(ValueError, match=re.escape(
            f"Image folder {root} has 1 class folder(s) in {root}/train (cat); a classifier "
            "needs at least 2 classes.")):
        Pipeline(DataConfig(dataset=root))
    # Class folders are the top level: images in sub-folders belong to them.
    nested = str(tmp_path / "nested")
    one_class_folder(nested, class_path=os.path.join("animals", "cat"))
    with pytest.raises(ValueError, match=re.escape(f"has 1 class folder(s) in {nested}/train "
                                                   "(animals)")):
        Pipeline(DataConfig(dataset=nested))


@pytest.fixture(scope="module")
def one_class_tfds(tmp_path_factory):
    """The data directory of a TFDS data set prepared here whose label has one class."""
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.core.registered.skip_registration():
        class OneClassImages(tfds.core.GeneratorBasedBuilder):
            # A module name of one part: TFDS then looks for no package files of the builder.
            __module__ = "one_class_images"
            VERSION = tfds.core.Version("1.0.0")

            def _info(self):
                return tfds.core.DatasetInfo(
                    builder=self, supervised_keys=("image", "label"),
                    features=tfds.features.FeaturesDict({
                        "image": tfds.features.Image(shape=(8, 8, 3)),
                        "label": tfds.features.ClassLabel(names=["only"])}))

            def _split_generators(self, dl_manager):
                return {"train": self._generate_examples(6), "test": self._generate_examples(2)}

            def _generate_examples(self, n):
                for i in range(n):
                    yield i, {"image": np.full((8, 8, 3), i, np.uint8), "label": 0}

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    OneClassImages(data_dir=data_dir).download_and_prepare()
    return data_dir


def test_a_tfds_data_set_with_one_class_is_refused(one_class_tfds):
    with pytest.raises(ValueError, match=re.escape(
            "TFDS data set 'one_class_images' has 1 class(es) in its label feature 'label' "
            "(only); a classifier needs at least 2 classes.")):
        Pipeline(DataConfig(dataset="one_class_images", data_dir=one_class_tfds))


def test_the_command_line_refuses_one_class_and_corrupt_files_in_one_line(tmp_path):
    one, corrupt = str(tmp_path / "one"), str(tmp_path / "corrupt")
    one_class_folder(one)
    make_folder(corrupt, ext=".jpg")
    bad = os.path.join(corrupt, "train", "fox", "0002.jpg")
    garble(bad)
    cases = {
        "one class folder": ([f"--dataset={one}"],
                             f"Image folder {one} has 1 class folder(s) in {one}/train (cat)"),
        "num_classes=1": (["--dataset=synthetic", "--num_classes=1"],
                          "num_classes must be an integer >= 2; got 1."),
        "corrupt file": ([f"--dataset={corrupt}"], f"Corrupt or unreadable image file: {bad}."),
    }
    processes = {
        name: subprocess.Popen([sys.executable, "-m", "training.fit", "--epochs=1", *args],
                               cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        for name, (args, _) in cases.items()}
    for name, process in processes.items():
        out, err = process.communicate(timeout=240)
        assert process.returncode == 2, (name, err)
        assert err.splitlines() == [f"training.fit: error: {err.split(': error: ')[-1].strip()}"]
        assert cases[name][1] in err and "Traceback" not in err and out == "", (name, err)


# ------------------------------------------------------------------------ found at set-up

# How a pipeline holds the images: (image size of the folder, DataConfig.cache, cached).
HOLDINGS = {
    "decoded into memory": ((16, 16), None, True),
    "read from files, CIFAR-style": ((16, 16), False, False),
    "read from files, ImageNet-style": ((80, 80), None, False),
    "encoded in memory, ImageNet-style": ((80, 80), True, True),
}


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("holding", HOLDINGS)
def test_a_jpeg_that_does_not_decode_is_found_when_the_pipeline_is_built(tmp_path, caplog,
                                                                         holding, split):
    size, cache, cached = HOLDINGS[holding]
    corrupt, clean = str(tmp_path / "corrupt"), str(tmp_path / "clean")
    for root in (corrupt, clean):
        make_folder(root, size=size, ext=".jpg")
    bad = os.path.join(corrupt, split, "dog", "0001.jpg")
    garble(bad)
    os.remove(os.path.join(clean, split, "dog", "0001.jpg"))
    config = dict(cache=cache, image_size=32, deterministic=True)
    with pytest.raises(CorruptImageError) as raised:
        Pipeline(DataConfig(dataset=corrupt, **config))
    assert isinstance(raised.value, ValueError) and raised.value.files == (bad,)
    assert str(raised.value) == (f"Corrupt or unreadable image file: {bad}. Remove or replace "
                                 "it, or set skip_corrupt=True (--skip_corrupt) to skip it.")
    with caplog.at_level(logging.WARNING, logger="training.data"):
        skipping = Pipeline(DataConfig(dataset=corrupt, skip_corrupt=True, **config))
    assert skipping.skipped_files == (bad,)
    assert f"Skipped 1 corrupt image file(s): {bad}" in caplog.text
    assert skipping.cached is cached
    sizes = (skipping.info.train_examples, skipping.info.test_examples)
    assert sizes == ((23, 9) if split == "train" else (24, 8))
    # Exactly what a folder without the file gives.
    reference = Pipeline(DataConfig(dataset=clean, **config))
    np.testing.assert_array_equal(skipping.mean, reference.mean)
    assert_same_batches(skipping.train(1, 4), reference.train(1, 4))
    assert_same_batches(skipping.evaluation("test", 4), reference.evaluation("test", 4))


# ------------------------------------------------------------------------ met while reading

# Images read from their files each epoch: (image size of the folder, other settings).
GEOMETRIES = {"CIFAR-style": ((16, 16), {}), "ImageNet-style": ((80, 80), {"image_size": 32})}


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_a_file_that_changed_after_set_up_is_named_or_replaced_in_its_batch(tmp_path, caplog,
                                                                            geometry):
    size, settings = GEOMETRIES[geometry]
    root = str(tmp_path)
    make_folder(root, size=size, ext=".jpg")
    config = dict(dataset=root, cache=False, deterministic=True, **settings)
    strict = Pipeline(DataConfig(**config))
    skipping = Pipeline(DataConfig(skip_corrupt=True, **config))
    clean_train, clean_test = collect(skipping.train(1, 4)), collect(skipping.evaluation("test", 4))
    bad_train = os.path.join(root, "train", "dog", "0001.jpg")
    bad_test = os.path.join(root, "test", "cat", "0002.jpg")  # the third test image
    garble(bad_train)
    garble(bad_test)

    for bad, read in ((bad_train, lambda p: p.train(1, 4)),
                      (bad_test, lambda p: p.evaluation("test", 4))):
        with pytest.raises(tf.errors.InvalidArgumentError) as raised:
            collect(read(strict))
        found = CorruptImageError.from_op_error(raised.value)
        assert found.files == (bad,)
        assert str(found) == (
            f"Corrupt or unreadable image file: {bad}. It changed on disk after the pipeline "
            "checked it; restart to read it again. Remove or replace it, or set "
            "skip_corrupt=True (--skip_corrupt) to skip it.")

    with caplog.at_level(logging.WARNING, logger="training.data"):
        train = collect(skipping.train(1, 4))
    assert skipping.skipped_files == (bad_train,)
    assert (f"Skipped 1 image file(s) that changed on disk after the pipeline checked them: "
            f"{bad_train}") in caplog.text
    # Every step is there, and every batch holds what it held, but for the bad image, whose
    # place the image before it in its batch takes.
    assert len(train[0]) == skipping.steps_per_epoch(4) == 6
    assert all(len(x) == len(y) == 4 for x, y in zip(*train))
    [(b, r)] = assert_stand_ins(train[0], clean_train[0], 1)
    assert_stand_ins(train[1], clean_train[1], 1 if train[1][b][r] != clean_train[1][b][r] else 0)
    # A run resumed at that batch replays the same batches.
    resumed = collect(skipping.train(1, 4, skip_batches=b))
    assert len(resumed[0]) == 6 - b
    for x, y in zip(resumed[0], train[0][b:]):
        np.testing.assert_array_equal(x, y)
    # Evaluation leaves the bad image out (of its batch).
    test = collect(skipping.evaluation("test", 4))
    assert skipping.skipped_files == (bad_train, bad_test)
    assert [len(y) for y in test[1]] == [3, 4, 1] and [len(y) for y in clean_test[1]] == [4, 4, 1]
    np.testing.assert_array_equal(np.concatenate(test[0]),
                                  np.delete(np.concatenate(clean_test[0]), 2, axis=0))
    np.testing.assert_array_equal(np.concatenate(test[1]),
                                  np.delete(np.concatenate(clean_test[1]), 2))
    assert skipping.info == strict.info  # the sizes stay those found at set-up


def test_changed_files_are_refused_even_if_they_decode_and_named_together(tmp_path):
    root = str(tmp_path)
    make_folder(root, ext=".jpg")
    config = dict(dataset=root, cache=False)
    strict = Pipeline(DataConfig(**config))
    skipping = Pipeline(DataConfig(skip_corrupt=True, **config))
    bad = [os.path.join(root, "test", "cat", f"000{i}.jpg") for i in (0, 2)]
    garble(bad[0])
    _write(bad[1], _pattern(99, 16, 16))  # another image: it decodes, but is not the one checked
    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        collect(strict.evaluation("test", 9))
    assert str(CorruptImageError.from_op_error(raised.value)) == (
        f"Corrupt or unreadable image files: {bad[0]}, {bad[1]}. They changed on disk after the "
        "pipeline checked them; restart to read them again. Remove or replace them, or set "
        "skip_corrupt=True (--skip_corrupt) to skip them.")
    test = collect(skipping.evaluation("test", 9))
    assert skipping.skipped_files == tuple(bad)
    assert list(np.concatenate(test[1])) == [0, 1, 1, 1, 2, 2, 2]  # cat/0001 is left of cat
    # A training batch none of whose images decodes has none to stand in for the others.
    for label in CLASSES:
        for i in range(8):
            garble(os.path.join(root, "train", label, f"{i:04d}.jpg"))
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match="No image of a training batch decodes, so none can stand in"):
        collect(skipping.train(0, 24))


def test_training_goes_on_past_a_file_that_changed_after_set_up(tmp_path):
    root = str(tmp_path)
    make_folder(root, size=(80, 80), ext=".jpg")
    settings = tiny_settings(dataset=root, image_size=32, cache=False, global_batch_size=4,
                             epochs=2)
    strict = trainer.Trainer(config_lib.from_settings(settings))
    skipping = trainer.Trainer(config_lib.from_settings(dict(settings, skip_corrupt=True)))
    bad_train = os.path.join(root, "train", "dog", "0001.jpg")
    bad_test = os.path.join(root, "test", "cat", "0002.jpg")
    garble(bad_train)
    garble(bad_test)
    with pytest.raises(CorruptImageError) as raised:  # the trainer unwraps TensorFlow's error
        strict.fit()
    assert raised.value.files == (bad_train,)
    history = skipping.fit()  # no "End of sequence": every epoch has its 6 steps
    assert len(history.history["loss"]) == 2
    assert int(skipping.step.numpy()) == 2 * skipping.steps_per_epoch == 12
    assert skipping.results["skipped_files"] == 2
    assert skipping.evaluate("test")["examples"] == 8
    assert skipping.pipeline.skipped_files == (bad_train, bad_test)


@pytest.fixture
def tfds():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=48):
        yield tfds


def test_a_streamed_tfds_record_that_does_not_decode_is_named_or_replaced(tfds, monkeypatch):
    config = dict(dataset="cifar10", cache=False, deterministic=True, normalization="none")
    clean = collect(Pipeline(DataConfig(skip_corrupt=True, **config)).train(0, 16))
    records = Stream.records

    def with_bad_records(self):  # records 5 and 6 of train: a JPEG header, no image
        garbage = tf.constant(b"\xff\xd8\xff\xe0" + bytes(range(256)))
        return records(self).map(lambda i, image, label: (
            i, tf.where((i == 5) | (i == 6), garbage, image) if self.name == "cifar10:train"
            else image, label))

    monkeypatch.setattr(Stream, "records", with_bad_records)
    message = ("Corrupt or unreadable image files: cifar10:train[5], cifar10:train[6]. Streamed "
               "TFDS records are not checked in advance. Remove or replace them, or set "
               "skip_corrupt=True (--skip_corrupt) to skip them.")
    # The per-pixel mean reads the train split (in one batch) when the pipeline is built.
    with pytest.raises(CorruptImageError, match=re.escape(message)):
        Pipeline(DataConfig(dataset="cifar10", cache=False))
    skipping = Pipeline(DataConfig(skip_corrupt=True, **config))
    train = collect(skipping.train(0, 16))
    assert sorted(skipping.skipped_files) == ["cifar10:train[5]", "cifar10:train[6]"]
    assert len(train[0]) == 3 and all(len(y) == 16 for y in train[1])
    assert_stand_ins(train[0], clean[0], 2)
    assert_same_batches(skipping.evaluation("test", 16),
                        Pipeline(DataConfig(**config)).evaluation("test", 16))


# ------------------------------------------------------------------------ folder layout


def test_sub_folders_are_included_and_hidden_files_ignored_alike_in_both_splits(tmp_path,
                                                                                caplog):
    root = str(tmp_path)
    uids = make_folder(root)
    nested = {os.path.join(root, "train", "cat", "extra", "0000.png"): (100, "train", 0),
              os.path.join(root, "test", "dog", "more", "deeper", "0000.png"): (101, "test", 1)}
    hidden = {os.path.join(root, "train", "cat", "._0000.png"): APPLE_DOUBLE,
              os.path.join(root, "train", "dog", ".ipynb_checkpoints", "0000.png"): None,
              os.path.join(root, "test", "fox", "._0001.png"): APPLE_DOUBLE}
    for path, (uid, split, label) in nested.items():
        os.makedirs(os.path.dirname(path))
        _write(path, _pattern(uid, 16, 16))
        uids[uid] = (split, label)
    for path, contents in hidden.items():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if contents is None:  # an image in a hidden folder: ignored too
            _write(path, _pattern(102, 16, 16))
        else:
            with open(path, "wb") as f:
                f.write(contents)
    for cache in (None, False):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="training.data"):
            pipeline = Pipeline(DataConfig(dataset=root, cache=cache, normalization="none",
                                           augmentation="none"))
        assert pipeline.cached is (cache is None) and pipeline.skipped_files == ()
        info = pipeline.info
        assert (info.train_examples, info.test_examples, info.class_names) == (25, 10, CLASSES)
        for split, batches in (("train", collect(pipeline.train(0, 25))),
                               ("test", collect(pipeline.evaluation("test", 10)))):
            seen = np.concatenate([ids(x) for x in batches[0]])
            assert sorted(seen) == sorted(u for u, (s, _) in uids.items() if s == split)
            assert list(np.concatenate(batches[1])) == [uids[u][1] for u in seen]
        assert [record.getMessage() for record in caplog.records] == [
            f"{root}: 2 images in sub-folders of class folders, included in their class, e.g. "
            f"{root}/train/cat/extra/0000.png",
            f"{root}: 3 hidden files and folders (names starting with '.') in class folders, "
            f"ignored, e.g. {root}/train/cat/._0000.png",
        ]
    assert 102 not in epoch_ids(pipeline.train(0, 25))
