"""training.sources.tfrecord: folders of TFRecord shards (`train-*`, `test-*` or
`validation-*`) of `tf.train.Example` records with an encoded image and an int64 label, the
layout of the TF Model Garden's ImageNet files.

The images are the pattern images of test_data.py: channel 0 of each is its id, so every output
image says which record it came from.
"""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

from tests.training.conftest import tiny_settings
from tests.training.test_data import (
    CLASSES,
    _pattern,
    assert_same_batches,
    collect,
    context,
    epoch_ids,
    ids,
    make_folder,
)
from training import config as config_lib
from training import trainer
from training.data import CorruptImageError, DataConfig, DatasetInfo, Pipeline
from training.sources import TfrecordSource, open_source

GARBAGE = b"\xff\xd8\xff\xe0" + bytes(range(256))  # a JPEG header, no image


def png(uid, size=16):
    return tf.io.encode_png(tf.constant(_pattern(uid, size, size))).numpy()


def example(image, label, image_key="image/encoded", label_key="image/class/label"):
    return tf.train.Example(features=tf.train.Features(feature={
        image_key: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
        label_key: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
    })).SerializeToString()


def write_split(root, prefix, records, shards):
    """Writes `records` (serialized examples) in order into `shards` files
    `prefix-0000s-of-0000n`, the first ones first (file order = record order)."""
    per_shard = -(-len(records) // shards)
    for shard in range(shards):
        path = os.path.join(root, f"{prefix}-{shard:05d}-of-{shards:05d}")
        with tf.io.TFRecordWriter(path) as writer:
            for record in records[shard * per_shard:(shard + 1) * per_shard]:
                writer.write(record)


def make_tfrecords(root, train_per_class=8, test_per_class=3, test_prefix="test",
                   label_offset=0, bad=()):
    """Ids 1.. in file order (train by class, then test by class), 3 classes; `bad` ids get an
    image that does not decode. Returns {uid: (split, label)}."""
    os.makedirs(root, exist_ok=True)
    uids, uid = {}, 0
    for prefix, count, shards in (("train", train_per_class, 2), (test_prefix, test_per_class,
                                                                   1)):
        records = []
        for label in range(len(CLASSES)):
            for _ in range(count):
                uid += 1
                uids[uid] = (prefix, label)
                records.append(example(GARBAGE if uid in bad else png(uid),
                                       label + label_offset))
        write_split(root, prefix, records, shards)
    return uids


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("imagenet_like"))
    return root, make_tfrecords(root)


def expected_ids(uids, split):
    return [uid for uid, (where, _) in uids.items() if where == split]


def test_a_folder_of_train_shards_is_a_tfrecord_source(records):
    root, _ = records
    assert type(open_source(DataConfig(dataset=root))) is TfrecordSource
    pipeline = Pipeline(DataConfig(dataset=root, normalization="none"))
    assert pipeline.info == DatasetInfo(
        name=os.path.basename(root), num_classes=3, image_shape=(16, 16, 3), train_examples=24,
        validation_examples=0, test_examples=9, class_names=("class_0", "class_1", "class_2"))
    assert pipeline.test_source == os.path.join(root, "test-*")
    assert (pipeline.cached, pipeline.augmentation, pipeline.normalization) == (
        True, "cifar", "none")


@pytest.mark.parametrize("cache", [None, False])
def test_every_record_once_with_its_label_in_file_order(records, cache):
    root, uids = records
    pipeline = Pipeline(DataConfig(dataset=root, normalization="none", cache=cache))
    images, labels = collect(pipeline.evaluation("test", 4))
    assert [len(x) for x in images] == [4, 4, 1]
    assert list(np.concatenate([ids(x) for x in images])) == expected_ids(uids, "test")
    assert list(np.concatenate(labels)) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    epoch, labels = collect(pipeline.train(0, 8))
    train_ids = np.concatenate([ids(x) for x in epoch])
    assert sorted(train_ids) == expected_ids(uids, "train")
    assert [uids[uid][1] for uid in train_ids] == list(np.concatenate(labels))


def test_streamed_and_cached_records_give_the_same_splits_and_statistics(records):
    root, _ = records
    settings = dict(dataset=root, validation_images=6, augmentation="none")
    cached, streamed = Pipeline(DataConfig(**settings)), Pipeline(DataConfig(cache=False,
                                                                             **settings))
    assert (cached.cached, streamed.cached) == (True, False) and cached.info == streamed.info
    np.testing.assert_allclose(streamed.mean, cached.mean, rtol=1e-6)
    for split in ("validation", "test"):
        assert_same_batches(streamed.evaluation(split, 3), cached.evaluation(split, 3))
    raw = Pipeline(DataConfig(cache=False, normalization="none", deterministic=True,
                              **settings))
    validation = set(epoch_ids(raw.evaluation("validation", 6)))
    train = epoch_ids(raw.train(0, 2))
    assert len(validation) == 6 and len(train) == 18 and not validation & set(train)
    assert_same_batches(raw.train(1, 4, skip_batches=2), raw.train(1, 4).skip(2))


def test_streamed_records_shard_across_input_pipelines(records):
    root, uids = records
    pipeline = Pipeline(DataConfig(dataset=root, cache=False, normalization="none",
                                   max_train_examples=20, max_test_examples=8))
    assert (pipeline.info.train_examples, pipeline.info.test_examples) == (20, 8)
    halves = [epoch_ids(pipeline.train(0, 4, input_context=context(2, i))) for i in range(2)]
    assert len(halves[0]) == len(halves[1]) == 10 and not set(halves[0]) & set(halves[1])
    # streamed data keeps the first max_train_examples records in file order
    assert sorted(np.concatenate(halves)) == expected_ids(uids, "train")[:20]
    tests = [epoch_ids(pipeline.evaluation("test", 4, input_context=context(2, i)))
             for i in range(2)]
    assert list(tests[0]) == expected_ids(uids, "test")[0:8:2]
    assert list(tests[1]) == expected_ids(uids, "test")[1:8:2]


def test_validation_shards_are_the_test_split_without_test_shards(tmp_path):
    uids = make_tfrecords(str(tmp_path), train_per_class=2, test_per_class=2,
                          test_prefix="validation")
    pipeline = Pipeline(DataConfig(dataset=str(tmp_path), normalization="none"))
    assert pipeline.test_source == os.path.join(str(tmp_path), "validation-*")
    assert list(epoch_ids(pipeline.evaluation("test", 6))) == expected_ids(uids, "validation")


def test_the_class_count_comes_from_the_labels_or_num_classes(tmp_path):
    # TF-slim's ImageNet files: labels 1..1000 and class 0 "background", 1001 classes.
    make_tfrecords(str(tmp_path), train_per_class=2, test_per_class=1, label_offset=1)
    assert Pipeline(DataConfig(dataset=str(tmp_path))).info.num_classes == 4
    more = Pipeline(DataConfig(dataset=str(tmp_path), num_classes=6))
    assert more.info.class_names == tuple(f"class_{i}" for i in range(6))
    with pytest.raises(ValueError, match=re.escape(
            f"num_classes is 3 but TFRecord folder {tmp_path} has the label 3; set num_classes "
            "to at least 4 or leave it unset.")):
        Pipeline(DataConfig(dataset=str(tmp_path), num_classes=3))


def test_other_feature_names(tmp_path):
    root = str(tmp_path)
    records = [example(png(uid), uid % 2, "jpeg", "class") for uid in (1, 2, 3, 4)]
    write_split(root, "train", records, 1)
    write_split(root, "test", records[:2], 1)
    pipeline = Pipeline(DataConfig(dataset=root, normalization="none", tfrecord_image_key="jpeg",
                                   tfrecord_label_key="class"))
    assert list(epoch_ids(pipeline.evaluation("test", 2))) == [1, 2]
    with pytest.raises(ValueError, match=re.escape(
            "hold examples without the int64 feature 'image/class/label' (tfrecord_label_key)")):
        Pipeline(DataConfig(dataset=root))
    with pytest.raises(ValueError, match=re.escape(
            "hold examples without the bytes feature 'image' (tfrecord_image_key)")):
        Pipeline(DataConfig(dataset=root, tfrecord_image_key="image", tfrecord_label_key="class"))


def test_missing_or_empty_splits_are_named(tmp_path):
    root = str(tmp_path)
    write_split(root, "train", [], 1)
    with pytest.raises(ValueError, match=re.escape(
            f"TFRecord folder {root} has no test split: expected files {root}/test-* or "
            f"{root}/validation-*.")):
        Pipeline(DataConfig(dataset=root))
    write_split(root, "test", [], 1)
    with pytest.raises(ValueError, match=re.escape(
            f"The TFRecord files {root}/train-* hold no records.")):
        Pipeline(DataConfig(dataset=root))


def test_a_truncated_file_is_named(tmp_path):
    root = str(tmp_path)
    make_tfrecords(root, train_per_class=2, test_per_class=1)
    path = os.path.join(root, "train-00001-of-00002")
    with open(path, "rb") as f:
        contents = f.read()
    with open(path, "wb") as f:
        f.write(contents[:-10])
    with pytest.raises(ValueError, match=re.escape(
            f"TFRecord file {path} is truncated or not a TFRecord file")):
        Pipeline(DataConfig(dataset=root))


@pytest.mark.parametrize("cache", [None, False])
def test_records_that_do_not_decode_are_named_or_skipped(tmp_path, cache):
    root = str(tmp_path)
    name = os.path.basename(root)
    uids = make_tfrecords(root, train_per_class=4, test_per_class=2, bad=(6, 14))
    config = dict(dataset=root, cache=cache, normalization="none", deterministic=True)
    what = "" if cache is None else "Streamed TFRecord records are not checked in advance. "
    # records 5 of train and 1 of test: ids 6 and 14
    # Streamed records are met when the per-pixel mean reads the train split.
    with pytest.raises(CorruptImageError, match=re.escape(
            f"Corrupt or unreadable image file: {name}:train[5]. {what}Remove or replace it")):
        Pipeline(DataConfig(dataset=root, cache=cache))
    skipping = Pipeline(DataConfig(skip_corrupt=True, **config))
    test = epoch_ids(skipping.evaluation("test", 6))
    assert list(test) == [uid for uid in expected_ids(uids, "test") if uid != 14]
    train = epoch_ids(skipping.train(0, 4))
    assert 6 not in train and 14 not in train
    assert sorted(skipping.skipped_files) == [f"{name}:test[1]", f"{name}:train[5]"]
    if cache is False:  # a stand-in keeps the epoch's 3 steps of 4
        assert len(train) == 12 and len(set(train)) == 11
    else:  # left out when the pipeline was built
        assert skipping.info.train_examples == 11 and len(train) == 8


def test_a_tfrecord_copy_of_an_image_folder_trains_to_the_same_history(tmp_path):
    folder, shards = str(tmp_path / "folder"), str(tmp_path / "shards")
    uids = make_folder(folder, train_per_class=4, test_per_class=2)
    for prefix, split in (("train", "train"), ("test", "test")):
        records = [example(png(uid), label) for uid, (where, label) in uids.items()
                   if where == split]
        os.makedirs(shards, exist_ok=True)
        write_split(shards, prefix, records, 2)
    histories = [trainer.run(config_lib.from_settings(tiny_settings(
        dataset=dataset, validation_images=4, deterministic=True, seed=1, global_batch_size=4,
        epochs=1))).history.history for dataset in (folder, shards)]
    metrics = ("loss", "accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy")
    assert len(histories[0]["loss"]) == 1
    assert [histories[0][key] for key in metrics] == [histories[1][key] for key in metrics]


@pytest.mark.parametrize("field", ["tfrecord_image_key", "tfrecord_label_key"])
def test_feature_names_must_be_names(field):
    with pytest.raises(ValueError, match=re.escape(f"{field} must be a feature name; got ''.")):
        DataConfig(**{field: ""})
