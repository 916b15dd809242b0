"""training.data: exact checks of the tf.data pipelines on tiny image folders, synthetic data,
TFDS mock data and a subset of the real CIFAR-10 in ../shared/data.

The tiny folders hold PNG images whose pixels name them: channel 0 is a unique id (1, 2, ...),
channels 1 and 2 encode the row and the column, so every output pixel says which image, and where
in it, it came from.
"""

import doctest
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from tests.conftest import CIFAR10_DIR, REPO_ROOT
from training import data
from training.data import DataConfig, DatasetInfo, Pipeline
from training.sources.tfds import TfdsSource

CLASSES = ("cat", "dog", "fox")
needs_cifar = pytest.mark.skipif(
    not os.path.isdir(os.path.join(CIFAR10_DIR, "train")),
    reason=f"real CIFAR-10 image folder not found at {CIFAR10_DIR}",
)


# ------------------------------------------------------------------------ fixtures and helpers


def _write(path, image):
    image = tf.constant(image, tf.uint8)
    encoded = tf.io.encode_png(image) if path.endswith(".png") else tf.io.encode_jpeg(image,
                                                                                     quality=95)
    with open(path, "wb") as f:
        f.write(encoded.numpy())


def _pattern(uid, h, w):
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = uid
    image[..., 1] = 10 + 10 * np.arange(h)[:, None] * 16 // h
    image[..., 2] = 10 + 10 * np.arange(w)[None, :] * 16 // w
    return image


def make_folder(root, train_per_class=8, test_per_class=3, size=(16, 16), ext=".png",
                test_name="test"):
    """An image folder; returns {uid: (split, label)}."""
    uids, uid = {}, 0
    for split, count in (("train", train_per_class), (test_name, test_per_class)):
        for label, name in enumerate(CLASSES):
            folder = os.path.join(root, split, name)
            os.makedirs(folder)
            for i in range(count):
                uid += 1
                _write(os.path.join(folder, f"{i:04d}{ext}"), _pattern(uid, *size))
                uids[uid] = (split, label)
    return uids


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tiny"))
    return root, make_folder(root)


@pytest.fixture(scope="module")
def large_folder(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("large"))
    return root, make_folder(root, train_per_class=4, test_per_class=2, size=(80, 100))


def ids(images):
    """The id of each image of a batch made with normalization='none' (`[b, ...]` -> `[b]`)."""
    pixels = np.round(np.asarray(images) * 255).astype(np.int64)
    return pixels[..., 0].reshape(len(pixels), -1).max(axis=1)


def collect(dataset):
    images, labels = [], []
    for x, y in dataset:
        images.append(x.numpy())
        labels.append(y.numpy())
    return images, labels


def epoch_ids(dataset):
    return np.concatenate([ids(x) for x, _ in dataset])


def assert_same_batches(a, b):
    (ia, la), (ib, lb) = collect(a), collect(b)
    assert len(ia) == len(ib)
    for x, y in zip(ia, ib):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(x, y)


def context(pipelines, pipeline_id, replicas=None):
    return tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=pipeline_id,
                                      num_replicas_in_sync=replicas or pipelines)


def parallel_map_calls(dataset):
    """num_parallel_calls of every parallel map in a dataset's graph."""
    graph = graph_pb2.GraphDef()
    serialized = tf.raw_ops.DatasetToGraphV2(input_dataset=dataset._variant_tensor)
    graph.ParseFromString(serialized.numpy())
    nodes = {node.name: node for node in graph.node}
    calls = []
    for node in graph.node:
        if node.op.startswith("ParallelMapDataset"):
            const = nodes[node.input[-1].split(":")[0].lstrip("^")]
            calls.append(tf.make_ndarray(const.attr["value"].tensor).item())
    return calls


# ------------------------------------------------------------------------ configuration


@pytest.mark.parametrize("field, value", [
    ("augmentation", "autoaugment"), ("normalization", "zca"), ("eval_crops", 5),
    ("validation_images", -1), ("image_size", 4), ("shuffle_buffer", 0), ("cache", "yes"),
    ("max_train_examples", 0), ("max_test_examples", 0), ("seed", -1), ("num_classes", 0),
    ("synthetic_examples", 0), ("dataset", ""),
])
def test_config_rejects_bad_values_naming_the_argument(field, value):
    with pytest.raises(ValueError, match=field):
        DataConfig(**{field: value})


def test_docstring_examples_run():
    result = doctest.testmod(data, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4 and result.failed == 0


# ------------------------------------------------------------------------ tiny image folder


def test_folder_info_and_resolved_choices(folder):
    root, _ = folder
    pipeline = Pipeline(DataConfig(dataset=root, validation_images=3))
    assert pipeline.info == DatasetInfo(
        name=os.path.basename(root), num_classes=3, image_shape=(16, 16, 3), train_examples=21,
        validation_examples=3, test_examples=9, class_names=CLASSES)
    assert (pipeline.augmentation, pipeline.normalization, pipeline.cached) == (
        "cifar", "per_pixel_mean", True)
    assert pipeline.mean.shape == (16, 16, 3) and pipeline.std is None
    assert pipeline.skipped_files == ()


def test_train_epoch_shapes_dtypes_and_batch_count(folder):
    root, uids = folder
    pipeline = Pipeline(DataConfig(dataset=root, normalization="none", augmentation="none"))
    assert pipeline.steps_per_epoch(5) == 4
    batches = list(pipeline.train(0, 5))
    assert len(batches) == 4
    for images, labels in batches:
        assert images.shape == (5, 16, 16, 3) and images.dtype == tf.float32
        assert labels.shape == (5,) and labels.dtype == tf.int32
        assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0
        assert [uids[u][1] for u in ids(images)] == list(labels.numpy())
    seen = epoch_ids(pipeline.train(0, 24))  # one batch of everything: a permutation
    assert sorted(seen) == sorted(u for u, (split, _) in uids.items() if split == "train")
    assert list(seen) != sorted(seen)


def test_steps_per_epoch_rejects_a_batch_larger_than_the_split(folder):
    pipeline = Pipeline(DataConfig(dataset=folder[0]))
    with pytest.raises(ValueError, match="global_batch_size 25 is larger"):
        pipeline.steps_per_epoch(25)
    with pytest.raises(ValueError, match="global_batch_size"):
        pipeline.train(0, 0)


def test_same_seed_and_epoch_give_identical_batches_other_epochs_and_seeds_differ(folder):
    root, _ = folder
    config = DataConfig(dataset=root, deterministic=True, normalization="none")
    pipeline = Pipeline(config)
    assert_same_batches(pipeline.train(3, 4), pipeline.train(3, 4))
    tf.random.set_seed(1234)  # the global seed plays no part
    assert_same_batches(pipeline.train(3, 4), Pipeline(config).train(3, 4))
    orders = [list(epoch_ids(pipeline.train(e, 4))) for e in range(3)]
    assert orders[0] != orders[1] and orders[1] != orders[2]
    other_seed = Pipeline(DataConfig(dataset=root, deterministic=True, normalization="none",
                                     seed=1))
    assert list(epoch_ids(other_seed.train(0, 4))) != orders[0]


def test_skip_batches_equals_dropping_the_first_batches(folder):
    pipeline = Pipeline(DataConfig(dataset=folder[0], deterministic=True))
    full = collect(pipeline.train(2, 4))
    assert len(full[0]) == 6
    for k in (1, 4, 6):
        skipped = collect(pipeline.train(2, 4, skip_batches=k))
        assert len(skipped[0]) == 6 - k
        for a, b in zip(skipped[0], full[0][k:]):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(skipped[1], full[1][k:]):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="skip_batches"):
        pipeline.train(2, 4, skip_batches=7)


@pytest.mark.parametrize("crop_padding", ["zeros", "reflect"])
def test_cifar_augmentation_is_a_crop_of_the_padded_image_maybe_flipped(folder, crop_padding):
    root, _ = folder
    pipeline = Pipeline(DataConfig(dataset=root, normalization="none", crop_padding=crop_padding))
    images, _ = collect(pipeline.train(0, 24))
    images = np.round(images[0] * 255).astype(np.int64)
    flips, shifts = 0, set()
    mode = "reflect" if crop_padding == "reflect" else "constant"
    for image in images:
        uid = image[..., 0].max()
        padded = np.pad(_pattern(uid, 16, 16).astype(np.int64), [(2, 2), (2, 2), (0, 0)],
                        mode=mode)
        matches = [(top, left, flip) for top in range(5) for left in range(5) for flip in (0, 1)
                   if np.array_equal(image, padded[top:top + 16, left:left + 16][:, ::-1 if flip
                                                                               else 1])]
        assert matches, f"image {uid} is not a pad-crop-flip of its original"
        flips += matches[0][2]
        shifts.add(matches[0][:2])
    assert 0 < flips < len(images) and len(shifts) > 5


@pytest.mark.parametrize("crop_padding", ["zeros", "reflect"])
def test_one_gather_crop_table_and_the_two_gather_fallback_agree(folder, monkeypatch,
                                                                  crop_padding):
    # The per-pixel mean's offset image is padded as the pixels are.
    config = DataConfig(dataset=folder[0], deterministic=True, crop_padding=crop_padding)
    assert Pipeline(config).normalization == "per_pixel_mean"
    table = collect(Pipeline(config).train(1, 8))
    monkeypatch.setattr(data, "_MAX_CROP_TABLE", 0)
    fallback = collect(Pipeline(config).train(1, 8))
    for a, b in zip(table[0], fallback[0]):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_validation_is_disjoint_from_train_and_has_exactly_validation_images(folder):
    root, uids = folder
    pipeline = Pipeline(DataConfig(dataset=root, validation_images=5, normalization="none"))
    validation = epoch_ids(pipeline.evaluation("validation", 2))
    train = epoch_ids(pipeline.train(0, 19))
    assert len(validation) == len(set(validation)) == 5
    assert len(train) == len(set(train)) == 19
    assert not set(validation) & set(train)
    assert set(validation) | set(train) == {u for u, (s, _) in uids.items() if s == "train"}
    # The carve-out is the same for every seed (tuning trials share it).
    other = Pipeline(DataConfig(dataset=root, validation_images=5, normalization="none", seed=7))
    assert sorted(epoch_ids(other.evaluation("validation", 5))) == sorted(validation)


def test_evaluation_gives_every_test_example_once_in_a_fixed_order(folder):
    root, uids = folder
    pipeline = Pipeline(DataConfig(dataset=root, normalization="none"))
    batches = collect(pipeline.evaluation("test", 4))
    assert [len(b) for b in batches[0]] == [4, 4, 1]  # no drop_remainder
    seen = np.concatenate([ids(x) for x in batches[0]])
    assert sorted(seen) == [u for u, (split, _) in uids.items() if split == "test"]
    labels = np.concatenate(batches[1])
    assert list(labels) == [uids[u][1] for u in seen]
    assert list(epoch_ids(pipeline.evaluation("test", 4))) == list(seen)
    for images in batches[0]:  # no augmentation: the original pixels
        for image in np.round(images * 255).astype(np.uint8):
            np.testing.assert_array_equal(image, _pattern(image[0, 0, 0], 16, 16))


def test_evaluation_rejects_bad_splits(folder):
    pipeline = Pipeline(DataConfig(dataset=folder[0]))
    with pytest.raises(ValueError, match="validation_images"):
        pipeline.evaluation("validation", 4)
    with pytest.raises(ValueError, match="split must be one of"):
        pipeline.evaluation("train", 4)


def test_two_input_pipelines_read_disjoint_halves_of_the_epoch(folder):
    root, _ = folder
    pipeline = Pipeline(DataConfig(dataset=root, normalization="none", deterministic=True))
    whole = epoch_ids(pipeline.train(1, 8))
    assert len(whole) == 24
    for skip in (0, 1):
        shards = [pipeline.train(1, 8, input_context=context(2, i), skip_batches=skip)
                  for i in range(2)]
        parts = [collect(shard) for shard in shards]
        assert all(len(p[0]) == 3 - skip for p in parts)  # the same number of steps
        assert all(x.shape[0] == 4 for p in parts for x in p[0])  # per-replica batches
        halves = [np.concatenate([ids(x) for x in p[0]]) for p in parts]
        assert not set(halves[0]) & set(halves[1])
        assert sorted(np.concatenate(halves)) == sorted(whole[8 * skip:])
        assert shards[0].options().experimental_distribute.auto_shard_policy == (
            tf.data.experimental.AutoShardPolicy.OFF)
    # Two replicas fed by one pipeline: batches of 4 for each, 6 per epoch.
    assert len(list(pipeline.train(1, 8, input_context=context(1, 0, replicas=2)))) == 6
    test = [epoch_ids(pipeline.evaluation("test", 4, input_context=context(2, i)))
            for i in range(2)]
    assert not set(test[0]) & set(test[1]) and len(test[0]) + len(test[1]) == 9


def test_mirrored_strategy_feeds_each_replica_its_own_half(tmp_path):
    """distribute_datasets_from_function on two logical CPUs (a subprocess: logical devices must
    be set before TensorFlow starts)."""
    script = textwrap.dedent("""
        import numpy as np, tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from training.data import DataConfig, Pipeline
        pipeline = Pipeline(DataConfig(dataset="synthetic", synthetic_examples=64,
                                       normalization="none", augmentation="none",
                                       deterministic=True))
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        dist = strategy.distribute_datasets_from_function(
            lambda ctx: pipeline.train(0, 16, input_context=ctx))
        seen, steps = [], 0
        for images, labels in dist:
            parts = strategy.experimental_local_results(images)
            assert [tuple(p.shape) for p in parts] == [(8, 32, 32, 3)] * 2, parts
            seen += [image.tobytes() for part in parts for image in part.numpy()]
            steps += 1
        whole = [image.tobytes() for images, _ in pipeline.train(0, 64)
                 for image in images.numpy()]
        assert steps == pipeline.steps_per_epoch(16) == 4, steps
        assert sorted(seen) == sorted(whole) and len(set(seen)) == 64
        print("ok")
    """)
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    result = subprocess.run([sys.executable, "-c", script], env=env, cwd=str(tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_nondeterministic_order_keeps_the_examples_and_their_augmentation(large_folder):
    config = dict(dataset=large_folder[0], image_size=32, augmentation="inception")
    ordered = collect(Pipeline(DataConfig(deterministic=True, **config)).train(5, 4))[0]
    unordered = collect(Pipeline(DataConfig(deterministic=False, **config)).train(5, 4))[0]
    assert sorted(x.tobytes() for b in ordered for x in b) == sorted(
        x.tobytes() for b in unordered for x in b)


def test_dataset_options_follow_the_config(folder):
    for deterministic in (True, False):
        pipeline = Pipeline(DataConfig(dataset=folder[0], deterministic=deterministic))
        assert pipeline.train(0, 4).options().deterministic is deterministic
        assert pipeline.evaluation("test", 4).options().deterministic is True  # always


def test_shuffle_buffer_emulates_a_buffer_of_that_size(folder):
    root, _ = folder
    sequential = Pipeline(DataConfig(dataset=root, normalization="none", augmentation="none",
                                     shuffle_buffer=1))
    order = epoch_ids(sequential.train(0, 24))
    assert list(order) == sorted(order)  # a buffer of one keeps the file order
    small = Pipeline(DataConfig(dataset=root, normalization="none", augmentation="none",
                                shuffle_buffer=4))
    a, b = epoch_ids(small.train(0, 24)), epoch_ids(small.train(0, 24))
    np.testing.assert_array_equal(a, b)
    assert sorted(a) == sorted(order) and list(a) != list(order)
    # A buffer of 4 can bring an element forward by at most 3 places.
    position = {u: i for i, u in enumerate(order)}
    assert all(i >= position[u] - 3 for i, u in enumerate(a))


def test_max_examples_keep_balanced_deterministic_subsets(folder):
    root, uids = folder
    config = DataConfig(dataset=root, normalization="none", max_train_examples=6,
                        max_test_examples=5)
    pipeline = Pipeline(config)
    assert (pipeline.info.train_examples, pipeline.info.test_examples) == (6, 5)
    train = epoch_ids(pipeline.train(0, 6))
    assert sorted(np.bincount([uids[u][1] for u in train])) == [2, 2, 2]
    test = epoch_ids(pipeline.evaluation("test", 5))
    assert sorted(np.bincount([uids[u][1] for u in test], minlength=3)) == [1, 2, 2]
    again = Pipeline(config)
    assert sorted(epoch_ids(again.train(0, 6))) == sorted(train)


def test_cache_false_reads_files_each_epoch_with_identical_results(folder):
    root, _ = folder
    cached = Pipeline(DataConfig(dataset=root, deterministic=True, eval_crops=10))
    files = Pipeline(DataConfig(dataset=root, deterministic=True, eval_crops=10, cache=False))
    assert (cached.cached, files.cached) == (True, False)
    np.testing.assert_allclose(cached.mean, files.mean)
    assert_same_batches(cached.train(4, 8), files.train(4, 8))
    assert_same_batches(cached.evaluation("test", 4), files.evaluation("test", 4))


def test_cifar_ten_crops_are_corners_centre_and_mirrors_of_the_padded_image(folder):
    root, _ = folder
    single = Pipeline(DataConfig(dataset=root))
    ten = Pipeline(DataConfig(dataset=root, eval_crops=10))
    (x1, y1), (x10, y10) = next(iter(single.evaluation("test", 9))), next(iter(
        ten.evaluation("test", 9)))
    assert x10.shape == (9, 10, 16, 16, 3) and x10.dtype == tf.float32
    np.testing.assert_array_equal(y1, y10)
    x1, x10 = x1.numpy(), x10.numpy()
    np.testing.assert_array_equal(x10[:, 4], x1)  # centre crop = the image
    np.testing.assert_array_equal(x10[:, 5:], x10[:, :5, :, ::-1])  # mirrors
    padded = np.pad(x1, [(0, 0), (2, 2), (2, 2), (0, 0)])
    for crop, (top, left) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
        np.testing.assert_array_equal(x10[:, crop], padded[:, top:top + 16, left:left + 16])


def test_per_pixel_mean_is_computed_from_train_without_validation(folder):
    root, _ = folder
    pipeline = Pipeline(DataConfig(dataset=root, validation_images=6, augmentation="none"))
    images, _ = next(iter(pipeline.train(0, 18)))
    np.testing.assert_allclose(np.mean(images, axis=0), 0.0, atol=1e-6)
    raw = Pipeline(DataConfig(dataset=root, validation_images=6, augmentation="none",
                              normalization="none"))
    raw_images, _ = next(iter(raw.train(0, 18)))
    np.testing.assert_allclose(pipeline.mean, np.mean(raw_images, axis=0) * 255, atol=1e-3)
    assert not np.allclose(np.mean(next(iter(pipeline.evaluation("validation", 6)))[0], 0), 0)


def test_per_channel_normalisation_gives_zero_mean_unit_std(folder):
    pipeline = Pipeline(DataConfig(dataset=folder[0], augmentation="none",
                                   normalization="per_channel"))
    images, _ = next(iter(pipeline.train(0, 24)))
    np.testing.assert_allclose(np.mean(images, axis=(0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.std(images, axis=(0, 1, 2)), 1.0, rtol=1e-4)
    assert pipeline.mean.shape == pipeline.std.shape == (3,)


def test_image_size_resizes_small_images_and_val_folder_is_the_test_split(tmp_path):
    make_folder(str(tmp_path), test_name="val")
    with open(os.path.join(tmp_path, "train", "cat", "README.txt"), "w") as f:
        f.write("not an image, ignored")
    pipeline = Pipeline(DataConfig(dataset=str(tmp_path), image_size=24))
    assert pipeline.info.image_shape == (24, 24, 3) and pipeline.info.test_examples == 9
    assert pipeline.test_source == str(tmp_path / "val")
    assert pipeline.info.train_examples == 24
    assert next(iter(pipeline.train(0, 4)))[0].shape == (4, 24, 24, 3)
    assert next(iter(pipeline.evaluation("test", 4)))[0].shape == (4, 24, 24, 3)


# ------------------------------------------------------------------------ errors


def test_a_wrong_path_names_the_path(tmp_path):
    missing = str(tmp_path / "no_such_folder")
    with pytest.raises(ValueError, match=missing):
        Pipeline(DataConfig(dataset=missing))


def test_a_missing_split_folder_is_named(tmp_path):
    make_folder(str(tmp_path))
    os.rename(tmp_path / "test", tmp_path / "testing")
    with pytest.raises(ValueError, match=f"{tmp_path} has no test split.*{tmp_path / 'val'}"):
        Pipeline(DataConfig(dataset=str(tmp_path)))
    os.rename(tmp_path / "train", tmp_path / "training")
    with pytest.raises(ValueError, match=str(tmp_path / "train") + " does not exist"):
        Pipeline(DataConfig(dataset=str(tmp_path)))


def test_an_empty_class_folder_is_named(tmp_path):
    make_folder(str(tmp_path))
    empty = tmp_path / "test" / "emu"
    os.makedirs(empty)
    os.makedirs(tmp_path / "train" / "emu")
    _write(str(tmp_path / "train" / "emu" / "0000.png"), _pattern(99, 16, 16))
    with pytest.raises(ValueError, match=f"Class folder {empty} has no images"):
        Pipeline(DataConfig(dataset=str(tmp_path)))


def test_class_folders_that_differ_between_splits_are_named(tmp_path):
    make_folder(str(tmp_path))
    os.rename(tmp_path / "test" / "fox", tmp_path / "test" / "wolf")
    with pytest.raises(ValueError, match=r"only in train: \['fox'\]; only in test: \['wolf'\]"):
        Pipeline(DataConfig(dataset=str(tmp_path)))


def test_num_classes_must_match_real_data(folder):
    with pytest.raises(ValueError, match="num_classes is 10 but .* has 3 classes"):
        Pipeline(DataConfig(dataset=folder[0], num_classes=10))


@pytest.mark.parametrize("cache", [None, False])
def test_a_corrupt_file_is_named_or_skipped_and_counted(tmp_path, caplog, cache):
    make_folder(str(tmp_path))
    corrupt = str(tmp_path / "train" / "dog" / "0003.png")
    with open(corrupt, "wb") as f:
        f.write(b"this is not a PNG file")
    with pytest.raises(ValueError, match=f"Corrupt or unreadable image file: {corrupt}"):
        Pipeline(DataConfig(dataset=str(tmp_path), cache=cache))
    with caplog.at_level(logging.WARNING, logger="training.data"):
        pipeline = Pipeline(DataConfig(dataset=str(tmp_path), cache=cache, skip_corrupt=True,
                                       normalization="none"))
    assert pipeline.skipped_files == (corrupt,)
    assert "Skipped 1 corrupt image file(s)" in caplog.text and corrupt in caplog.text
    assert pipeline.info.train_examples == 23
    assert len(epoch_ids(pipeline.train(0, 23))) == 23


# ------------------------------------------------------------------------ ImageNet-style images


@pytest.mark.parametrize("augmentation", ["imagenet", "inception", "none"])
def test_large_images_are_read_lazily_and_cropped(large_folder, augmentation):
    root, _ = large_folder
    pipeline = Pipeline(DataConfig(dataset=root, image_size=48, augmentation=augmentation,
                                   deterministic=True))
    assert pipeline.cached is False and pipeline.normalization == "per_channel"
    assert pipeline.info.image_shape == (48, 48, 3)
    batches = collect(pipeline.train(0, 4))
    assert len(batches[0]) == 3 and all(x.shape == (4, 48, 48, 3) for x in batches[0])
    assert all(x.dtype == np.float32 and np.isfinite(x).all() for x in batches[0])
    assert_same_batches(pipeline.train(0, 4), pipeline.train(0, 4))
    first_again = collect(pipeline.train(1, 12))[0][0]
    first = np.concatenate(batches[0])
    if augmentation == "none":  # the centre crop: the same images in another order
        np.testing.assert_allclose(np.sort(first.ravel()), np.sort(first_again.ravel()),
                                   rtol=1e-6)
    else:  # other crops
        assert not np.allclose(np.sort(first.ravel()), np.sort(first_again.ravel()))


def test_large_image_crops_take_the_expected_regions(large_folder):
    root, _ = large_folder
    config = dict(dataset=root, image_size=35, normalization="none", deterministic=True)
    centre = Pipeline(DataConfig(augmentation="none", **config))
    image = next(iter(centre.evaluation("test", 1)))[0].numpy()[0] * 255
    # 80x100 image: the shorter side goes to 40 (8/7 of 35), so the crop is the central 70x70.
    original = _pattern(image[..., 0].max().round(), 80, 100).astype(np.float32)
    expected = tf.image.resize(original[5:75, 15:85], [35, 35]).numpy()
    np.testing.assert_allclose(image, expected, atol=1e-3)
    ten = Pipeline(DataConfig(augmentation="none", eval_crops=10, **config))
    crops = next(iter(ten.evaluation("test", 2)))[0].numpy()
    assert crops.shape == (2, 10, 35, 35, 3)
    np.testing.assert_allclose(crops[0, 4] * 255, expected, atol=1e-3)
    np.testing.assert_array_equal(crops[:, 5:], crops[:, :5, :, ::-1])
    top_left = tf.image.resize(original[0:70, 0:70], [35, 35]).numpy()
    np.testing.assert_allclose(crops[0, 0] * 255, top_left, atol=1e-3)
    # Scale augmentation keeps to squares of side 80 * 35 / [40, 75] of the original.
    scale = Pipeline(DataConfig(augmentation="imagenet", **config))
    rows = np.concatenate([x[..., 1] for x in collect(scale.train(0, 12))[0]])
    spans = (rows[:, -1, :].mean(axis=1) - rows[:, 0, :].mean(axis=1)) * 255
    assert spans.min() > 0 and spans.max() <= 160 * 70 / 80 + 1e-3


def test_cache_true_on_large_images_keeps_the_encoded_files_with_identical_results(large_folder):
    root, _ = large_folder
    config = dict(dataset=root, image_size=40, deterministic=True, augmentation="inception")
    lazy, cached = Pipeline(DataConfig(**config)), Pipeline(DataConfig(cache=True, **config))
    assert cached.cached is True and lazy.cached is False
    np.testing.assert_allclose(lazy.mean, cached.mean)
    assert_same_batches(lazy.train(2, 4), cached.train(2, 4))


def test_cifar_augmentation_on_large_images_fits_them_first(large_folder):
    pipeline = Pipeline(DataConfig(dataset=large_folder[0], image_size=32, augmentation="cifar"))
    assert pipeline.normalization == "per_pixel_mean" and pipeline.mean.shape == (32, 32, 3)
    assert next(iter(pipeline.train(0, 4)))[0].shape == (4, 32, 32, 3)


def test_per_pixel_mean_needs_the_cifar_geometry(large_folder):
    with pytest.raises(ValueError, match="per_pixel_mean.*augmentation 'imagenet'"):
        Pipeline(DataConfig(dataset=large_folder[0], normalization="per_pixel_mean"))


def test_decoding_runs_in_parallel_maps(folder, large_folder):
    paths = [os.path.join(folder[0], "train", "cat", f"{i:04d}.png") for i in range(8)]
    decoded = data.decode_dataset(paths, (16, 16))
    assert parallel_map_calls(decoded) == [tf.data.AUTOTUNE]
    positions, images = next(iter(decoded))
    assert images.shape == (8, 16, 16, 3) and list(positions.numpy()) == list(range(8))
    lazy = Pipeline(DataConfig(dataset=large_folder[0], image_size=32))
    assert parallel_map_calls(lazy.train(0, 4)) == [tf.data.AUTOTUNE] * 2  # decode, normalise
    assert parallel_map_calls(lazy.evaluation("test", 4)) == [tf.data.AUTOTUNE] * 2


# ------------------------------------------------------------------------ synthetic data


def test_synthetic_data_shapes_classes_and_sizes():
    pipeline = Pipeline(DataConfig(dataset="synthetic", synthetic_examples=80,
                                   validation_images=16, deterministic=True))
    assert pipeline.test_source == "synthetic"
    assert pipeline.info == DatasetInfo(
        name="synthetic", num_classes=10, image_shape=(32, 32, 3), train_examples=64,
        validation_examples=16, test_examples=20,
        class_names=tuple(f"class_{i}" for i in range(10)))
    images, labels = next(iter(pipeline.train(0, 32)))
    assert images.shape == (32, 32, 32, 3) and labels.dtype == tf.int32
    assert_same_batches(pipeline.train(0, 32), Pipeline(pipeline.config).train(0, 32))
    five = Pipeline(DataConfig(dataset="synthetic", num_classes=5, synthetic_examples=200))
    labels = np.concatenate([y for _, y in five.train(0, 50)])
    assert set(labels) == set(range(5))


def test_synthetic_imagenet_size():
    pipeline = Pipeline(DataConfig(dataset="synthetic", image_size=96, synthetic_examples=8,
                                   eval_crops=10))
    assert (pipeline.augmentation, pipeline.normalization) == ("imagenet", "per_channel")
    assert next(iter(pipeline.train(0, 4)))[0].shape == (4, 96, 96, 3)
    assert next(iter(pipeline.evaluation("test", 2)))[0].shape == (2, 10, 96, 96, 3)


# ------------------------------------------------------------------------ TFDS


@pytest.fixture
def tfds():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=48):
        yield tfds


def test_tfds_cifar10_cached(tfds):
    pipeline = Pipeline(DataConfig(dataset="cifar10", validation_images=8, deterministic=True))
    info = pipeline.info
    assert (info.name, info.num_classes, info.image_shape) == ("cifar10", 10, (32, 32, 3))
    assert (info.train_examples, info.validation_examples, info.test_examples) == (40, 8, 48)
    assert len(info.class_names) == 10 and pipeline.cached and pipeline.test_source == "test"
    batches = collect(pipeline.train(0, 16))
    assert len(batches[0]) == 2 and batches[0][0].shape == (16, 32, 32, 3)
    test_labels = np.concatenate(collect(pipeline.evaluation("test", 10))[1])
    expected = [int(ex["label"]) for ex in tfds.builder("cifar10").as_dataset(split="test")]
    assert list(test_labels) == expected  # every test example once, in file order


def test_tfds_streamed_matches_cached_statistics_and_splits(tfds):
    config = dict(dataset="cifar10", validation_images=8, deterministic=True,
                  normalization="none", augmentation="none")
    cached = Pipeline(DataConfig(**config))
    streamed = Pipeline(DataConfig(cache=False, **config))
    assert streamed.cached is False and streamed.info == cached.info

    def images(ds):
        return sorted(x.tobytes() for batch in collect(ds)[0] for x in batch)

    assert images(streamed.evaluation("validation", 3)) == images(
        cached.evaluation("validation", 3))
    assert images(streamed.train(0, 40)) == images(cached.train(0, 40))
    assert images(streamed.evaluation("test", 7)) == images(cached.evaluation("test", 7))
    assert not set(images(streamed.train(0, 40))) & set(images(streamed.evaluation(
        "validation", 8)))
    assert_same_batches(streamed.train(1, 8), streamed.train(1, 8))
    assert len(collect(streamed.train(1, 8, skip_batches=3))[0]) == 2
    halves = [images(streamed.train(0, 8, input_context=context(2, i))) for i in range(2)]
    assert not set(halves[0]) & set(halves[1]) and len(halves[0]) == len(halves[1]) == 20
    mean_cached = Pipeline(DataConfig(dataset="cifar10", validation_images=8)).mean
    mean_streamed = Pipeline(DataConfig(dataset="cifar10", validation_images=8, cache=False)).mean
    np.testing.assert_allclose(mean_streamed, mean_cached, rtol=1e-6)


def test_tfds_streamed_training_is_augmented(tfds):
    pipeline = Pipeline(DataConfig(dataset="cifar10", cache=False, deterministic=True,
                                   max_train_examples=32, shuffle_buffer=16))
    assert pipeline.info.train_examples == 32
    x0 = np.concatenate(collect(pipeline.train(0, 16))[0])
    x1 = np.concatenate(collect(pipeline.train(1, 16))[0])
    assert x0.shape == (32, 32, 32, 3) and not np.allclose(np.sort(x0.ravel()),
                                                           np.sort(x1.ravel()))


@pytest.mark.parametrize("cache", [None, False])
def test_tfds_grayscale_keeps_one_channel(tfds, cache):
    pipeline = Pipeline(DataConfig(dataset="mnist", cache=cache, eval_crops=10))
    assert pipeline.info.image_shape == (28, 28, 1) and pipeline.mean.shape == (28, 28, 1)
    assert next(iter(pipeline.train(0, 8)))[0].shape == (8, 28, 28, 1)
    assert next(iter(pipeline.evaluation("test", 4)))[0].shape == (4, 10, 28, 28, 1)


def test_tfds_unlabelled_test_split_falls_back_to_validation(tfds, monkeypatch):
    # TFDS' imagenet2012 test split has label -1: evaluate on its validation split instead.
    first_label = TfdsSource._first_label
    monkeypatch.setattr(TfdsSource, "_first_label", lambda self, split: (
        -1 if split == "test" else first_label(self, split)))
    pipeline = Pipeline(DataConfig(dataset="imagenet2012", image_size=32, cache=False))
    assert pipeline.test_source == "validation" and pipeline.info.num_classes == 1000
    assert next(iter(pipeline.evaluation("test", 4)))[0].shape == (4, 32, 32, 3)
    monkeypatch.setattr(TfdsSource, "_first_label", lambda self, split: -1)
    with pytest.raises(ValueError, match="no labelled 'test' or 'validation' split"):
        Pipeline(DataConfig(dataset="imagenet2012"))


def test_tfds_not_prepared_tells_how_to_get_the_data(tmp_path):
    with pytest.raises(ValueError, match=f"not prepared in {tmp_path}.*internet.*data_dir"):
        Pipeline(DataConfig(dataset="cifar10", data_dir=str(tmp_path)))


def test_an_unknown_name_is_neither_a_folder_nor_a_tfds_data_set():
    with pytest.raises(ValueError, match="'no_such_data_set' is neither an existing image folder"):
        Pipeline(DataConfig(dataset="no_such_data_set"))


# ------------------------------------------------------------------------ real CIFAR-10


@pytest.fixture(scope="module")
def cifar():
    if not os.path.isdir(os.path.join(CIFAR10_DIR, "train")):
        pytest.skip(f"real CIFAR-10 image folder not found at {CIFAR10_DIR}")
    return Pipeline(DataConfig(dataset=CIFAR10_DIR, validation_images=200, max_train_examples=600,
                               max_test_examples=300, deterministic=True))


@needs_cifar
def test_real_cifar_subset(cifar):
    assert cifar.info == DatasetInfo(
        name="cifar10", num_classes=10, image_shape=(32, 32, 3), train_examples=600,
        validation_examples=200, test_examples=300,
        class_names=tuple(sorted(os.listdir(os.path.join(CIFAR10_DIR, "train")))))
    assert (cifar.augmentation, cifar.normalization, cifar.cached) == (
        "cifar", "per_pixel_mean", True)
    assert cifar.steps_per_epoch(128) == 4
    batches = collect(cifar.train(0, 128))
    assert len(batches[0]) == 4
    assert all(x.shape == (128, 32, 32, 3) and x.dtype == np.float32 for x in batches[0])
    assert all(-1.0 <= x.min() and x.max() <= 1.0 for x in batches[0])
    everything = collect(cifar.train(0, 600))
    assert list(np.bincount(everything[1][0])) == [60] * 10  # balanced, each image once
    test = collect(cifar.evaluation("test", 128))
    assert [len(y) for y in test[1]] == [128, 128, 44]
    assert list(np.bincount(np.concatenate(test[1]))) == [30] * 10


@needs_cifar
def test_real_cifar_per_pixel_mean_and_validation_split():
    pipeline = Pipeline(DataConfig(dataset=CIFAR10_DIR, validation_images=100,
                                   max_train_examples=300, max_test_examples=10,
                                   augmentation="none"))
    images, _ = next(iter(pipeline.train(0, 300)))
    np.testing.assert_allclose(np.mean(images, axis=0), 0.0, atol=1e-5)
    train = {x.tobytes() for x in images.numpy()}
    validation = {x.tobytes() for batch in collect(pipeline.evaluation("validation", 64))[0]
                  for x in batch}
    assert len(validation) == 100 and not train & validation


@needs_cifar
@pytest.mark.slow
def test_real_cifar_full(caplog):
    """All 60,000 images: the papers' 45k/5k split; logs the decode time."""
    with caplog.at_level(logging.INFO, logger="training.data"):
        pipeline = Pipeline(DataConfig(dataset=CIFAR10_DIR, validation_images=5000))
    print(f"decoded 60,000 CIFAR-10 images in {pipeline.load_seconds:.1f} s")
    assert "decoded into memory" in caplog.text
    info = pipeline.info
    assert (info.train_examples, info.validation_examples, info.test_examples) == (
        45000, 5000, 10000)
    assert pipeline.steps_per_epoch(128) == 351
    labels = np.concatenate([y for _, y in pipeline.train(0, 128)])
    assert len(labels) == 351 * 128 and len(set(labels)) == 10
    test_labels = np.concatenate([y for _, y in pipeline.evaluation("test", 1000)])
    assert list(np.bincount(test_labels)) == [1000] * 10
    validation_labels = np.concatenate([y for _, y in pipeline.evaluation("validation", 1000)])
    assert len(validation_labels) == 5000
