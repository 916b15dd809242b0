"""`training.numpy_data`: the TensorFlow-free pipeline gives the examples of the tf.data one."""

import json
import os

import numpy as np
import pytest

from tests.conftest import CIFAR10_DIR
from tests.training.conftest import run_cli
from training import loaders, numpy_data, pil_images
from training.data import DataConfig, Pipeline
from training.image_folders import CorruptImageError
from training.numpy_data import NumpyPipeline

needs_cifar = pytest.mark.skipif(not os.path.isdir(CIFAR10_DIR), reason="no CIFAR-10 folder")
# PIL decodes JPEGs as tf.io.decode_jpeg(dct_method="INTEGER_ACCURATE") does, bit for bit;
# tf.io.decode_image (the tf.data pipeline's) uses libjpeg's fast integer DCT, which differs by
# up to 5 levels (mean 1.0) on 200 CIFAR-10 test files (measured 2026-11-30).
JPEG_LEVELS = 5
# deterministic: tf.data keeps the order of the examples (else it may deliver them out of order).
CIFAR = dict(dataset=CIFAR10_DIR, max_train_examples=60, max_test_examples=20,
             validation_images=10, seed=3, deterministic=True)
# TensorFlow hidden from the import system's path finder, as on a machine without it:
# `import tensorflow` raises ModuleNotFoundError and importlib.util.find_spec gives None (which
# PyTorch's torch._dynamo asks).
BLOCKER = """import importlib.machinery
_find_spec = importlib.machinery.PathFinder.find_spec
def _without_tensorflow(fullname, path=None, target=None):
    if fullname == "tensorflow" or fullname.startswith("tensorflow."):
        return None
    return _find_spec(fullname, path, target)
importlib.machinery.PathFinder.find_spec = staticmethod(_without_tensorflow)
"""


def _tf_batches(dataset):
    return [tuple(np.asarray(x) for x in batch) for batch in dataset.as_numpy_iterator()]


def _same(tf_pipeline, np_pipeline, epoch, batch, splits=("validation", "test")):
    """Max abs difference of the images of both pipelines (train epoch and eval splits); the
    labels and their order must be equal."""
    worst = 0.0
    pairs = [(_tf_batches(tf_pipeline.train(epoch, batch)), list(np_pipeline.train(epoch,
                                                                                   batch)))]
    pairs += [(_tf_batches(tf_pipeline.evaluation(s, batch)), list(np_pipeline.evaluation(
        s, batch))) for s in splits]
    for tf_batches, np_batches in pairs:
        assert len(tf_batches) == len(np_batches)
        for (tf_images, tf_labels), (np_images, np_labels) in zip(tf_batches, np_batches):
            np.testing.assert_array_equal(np_labels, tf_labels)
            assert np_images.shape == tf_images.shape and np_images.dtype == np.float32
            worst = max(worst, float(np.abs(np_images - tf_images).max()))
    return worst


def _same_setup(tf_pipeline, np_pipeline):
    assert np_pipeline.info == tf_pipeline.info
    assert (np_pipeline.augmentation, np_pipeline.normalization, np_pipeline.fit_size,
            np_pipeline.eval_center_crop) == (tf_pipeline.augmentation,
                                              tf_pipeline.normalization, tf_pipeline.fit_size,
                                              tf_pipeline.eval_center_crop)


@pytest.mark.parametrize("eval_crops, crop_padding", [(1, "zeros"), (10, "zeros"),
                                                      (10, "reflect")])
def test_synthetic_data_equals_the_tf_data_pipeline_bit_for_bit(eval_crops, crop_padding):
    config = DataConfig(dataset="synthetic", synthetic_examples=72, validation_images=8,
                        eval_crops=eval_crops, seed=5, deterministic=True,
                        crop_padding=crop_padding)
    tf_pipeline, np_pipeline = Pipeline(config), NumpyPipeline(config)
    _same_setup(tf_pipeline, np_pipeline)
    for a, b in zip(np_pipeline.normalizer, tf_pipeline.normalizer):
        np.testing.assert_array_equal(a, b)
    assert _same(tf_pipeline, np_pipeline, epoch=2, batch=16) == 0.0
    skipped = np_pipeline.train(2, 16, skip_batches=3)
    assert len(skipped) == 1
    np.testing.assert_array_equal(skipped[0][0], np_pipeline.train(2, 16)[3][0])


@needs_cifar
def test_cifar_folder_gives_the_same_files_order_crops_and_statistics():
    config = DataConfig(**CIFAR)
    tf_pipeline, np_pipeline = Pipeline(config), NumpyPipeline(config)
    _same_setup(tf_pipeline, np_pipeline)
    assert (np_pipeline.info.train_examples, np_pipeline.info.validation_examples,
            np_pipeline.info.test_examples) == (60, 10, 20)
    for split in ("train", "validation", "test"):
        np.testing.assert_array_equal(np_pipeline._splits[split].names,
                                      tf_pipeline._splits[split].names)
    # Pixels differ by the decoders' JPEG_LEVELS, the per-pixel mean by less; normalised by 255.
    assert np.abs(np_pipeline.mean - tf_pipeline.mean).max() <= JPEG_LEVELS
    assert _same(tf_pipeline, np_pipeline, epoch=1, batch=20) <= 2 * JPEG_LEVELS / 255


@needs_cifar
def test_pil_decodes_jpegs_as_tensorflows_accurate_dct():
    import glob

    import tensorflow as tf

    for path in sorted(glob.glob(os.path.join(CIFAR10_DIR, "test", "*", "*.jpg")))[::500]:
        contents = open(path, "rb").read()
        np.testing.assert_array_equal(pil_images.decode(contents, 3), tf.io.decode_jpeg(
            contents, channels=3, dct_method="INTEGER_ACCURATE").numpy())
        assert np.abs(pil_images.decode(contents, 3).astype(int) - tf.io.decode_image(
            contents, channels=3).numpy()).max() <= JPEG_LEVELS


def _png_folder(root, sizes=((36, 44), (50, 40), (45, 45))):
    """train/ and test/ with classes a and b of PNG images (lossless: both decoders agree)."""
    from PIL import Image

    for split in ("train", "test"):
        for label in ("a", "b"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i, hw in enumerate(sizes):
                pixels = np.random.default_rng([i, ord(label), len(split)]).integers(
                    0, 256, (*hw, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return str(root)


@pytest.mark.parametrize("settings, bound", [
    (dict(augmentation="none", image_size=28, cache=True), 0.0),  # fit: resized, rounded
    (dict(augmentation="imagenet", image_size=24, eval_crops=10), 2e-6),  # ten crops
    (dict(augmentation="imagenet", image_size=24), 2e-6),  # centre crops
])
def test_resized_evaluation_images_equal_tensorflow_resize(settings, bound, tmp_path):
    config = DataConfig(dataset=_png_folder(tmp_path), validation_images=2, **settings)
    tf_pipeline, np_pipeline = Pipeline(config), NumpyPipeline(config)
    _same_setup(tf_pipeline, np_pipeline)
    np.testing.assert_allclose(np_pipeline.mean, tf_pipeline.mean, rtol=1e-6)
    worst = 0.0
    for split in ("validation", "test"):
        for (tf_images, tf_labels), (np_images, np_labels) in zip(
                _tf_batches(tf_pipeline.evaluation(split, 4)),
                np_pipeline.evaluation(split, 4)):
            np.testing.assert_array_equal(np_labels, tf_labels)
            assert np_images.shape == tf_images.shape
            worst = max(worst, float(np.abs(np_images - tf_images).max()))
    assert worst <= bound


def test_cifar_crops_are_windows_of_the_padded_image_and_flip_on_odd_ids():
    x = np.random.default_rng(0).normal(size=(8, 8, 3)).astype(np.float32)
    padded = np.pad(x, [(1, 1), (1, 1), (0, 0)])
    ids = range(3 * 3 * 2)
    windows = {(top, left): padded[top:top + 8, left:left + 8]
               for top in range(3) for left in range(3)}
    for crop_id in ids:
        top, left = crop_id // 6, (crop_id // 2) % 3
        expected = windows[top, left][:, ::-1] if crop_id % 2 else windows[top, left]
        np.testing.assert_array_equal(numpy_data.cifar_crop(x, crop_id), expected)
    ten = numpy_data.ten_crop_padded(x)
    assert ten.shape == (10, 8, 8, 3)
    np.testing.assert_array_equal(ten[4], x)  # the centre window is the image
    np.testing.assert_array_equal(ten[9], x[:, ::-1])
    np.testing.assert_array_equal(ten[0], windows[0, 0])
    mirrored = np.pad(x, [(1, 1), (1, 1), (0, 0)], mode="reflect")  # row -1 is row 1
    np.testing.assert_array_equal(mirrored[0, 1:-1], x[1])
    np.testing.assert_array_equal(numpy_data.cifar_crop(x, 0, "reflect"), mirrored[:8, :8])
    np.testing.assert_array_equal(numpy_data.ten_crop_padded(x, "reflect")[3], mirrored[2:, 2:])


@pytest.mark.parametrize("augmentation", ["imagenet", "inception"])
def test_imagenet_style_training_crops_have_the_output_size_and_replay_per_epoch(augmentation,
                                                                                 tmp_path):
    root = _png_folder(tmp_path, sizes=((90, 120), (100, 120), (110, 120), (120, 120)))
    config = DataConfig(dataset=root, augmentation=augmentation, image_size=64,
                        normalization="none")
    pipeline = NumpyPipeline(config)
    assert (pipeline.info.image_shape, pipeline.fit_size, pipeline.eval_center_crop) == (
        (64, 64, 3), None, True)
    images, labels = pipeline.train(0, 4)[0]
    assert images.shape == (4, 64, 64, 3) and images.dtype == np.float32
    assert labels.dtype == np.int32 and 0.0 <= images.min() and images.max() <= 1.0
    np.testing.assert_array_equal(pipeline.train(0, 4)[1][0], pipeline.train(0, 4)[1][0])
    assert not np.array_equal(pipeline.train(1, 8)[0][0], pipeline.train(0, 8)[0][0])
    image = np.random.default_rng(1).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    crop = numpy_data.scale_crop(image, 32, np.random.default_rng(0))
    assert crop.shape == (32, 32, 3) and crop.dtype == np.float32
    whole = pil_images.crop_resize(image, 0, 0, 50, 70, 50)  # a resize to the image's size
    np.testing.assert_array_equal(pil_images.crop_resize(image, 0, 0, 50, 50, 50),
                                  image[:, :50].astype(np.float32))
    assert whole.shape == (50, 50, 3)


def _plain_and_augmented(**settings):
    """The first training batch of epoch 1 without and with `settings` (no crops: random
    pixels everywhere, so that no two images share a pixel by chance)."""
    base = dict(dataset="synthetic", synthetic_examples=32, num_classes=4, seed=2,
                augmentation="none")
    plain = NumpyPipeline(DataConfig(**base)).train(1, 8)[0]
    return plain, NumpyPipeline(DataConfig(**base, **settings)).train(1, 8)[0]


def test_mixup_mixes_the_batch_with_itself_reversed_and_the_targets_alike():
    (x, y), (images, targets) = _plain_and_augmented(mixup_alpha=0.4)
    one_hot = np.eye(4, dtype=np.float32)[y]
    difference = x - x[::-1]  # least squares of images - x[::-1] = lam * difference
    lam = float(np.sum((images - x[::-1]) * difference) / np.sum(difference ** 2))
    assert 0.0 < lam < 1.0 and targets.shape == (8, 4) and targets.dtype == np.float32
    np.testing.assert_allclose(images, lam * x + (1 - lam) * x[::-1], atol=1e-4)
    np.testing.assert_allclose(targets, lam * one_hot + (1 - lam) * one_hot[::-1], atol=1e-4)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)


def test_cutmix_pastes_one_box_of_the_reversed_batch_weighted_by_its_area():
    (x, y), (images, targets) = _plain_and_augmented(cutmix_alpha=1.0)
    rows, cols = np.nonzero(np.any(images[0] != x[0], axis=-1))
    top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    expected = x.copy()
    expected[:, top:bottom, left:right] = x[::-1][:, top:bottom, left:right]
    np.testing.assert_array_equal(images, expected)
    lam = 1 - (bottom - top) * (right - left) / (32 * 32)
    one_hot = np.eye(4, dtype=np.float32)[y]
    np.testing.assert_allclose(targets, lam * one_hot + (1 - lam) * one_hot[::-1], atol=1e-6)


def test_random_erasing_replaces_one_box_of_each_image_by_noise():
    (x, _), (images, labels) = _plain_and_augmented(erasing_prob=1.0)
    assert labels.dtype == np.int32
    for before, after in zip(x, images):
        rows, cols = np.nonzero(np.any(before != after, axis=-1))
        area = (rows.max() + 1 - rows.min()) * (cols.max() + 1 - cols.min())
        assert area == len(rows) and 0.02 * 32 * 32 * 0.8 <= area <= 32 * 32 / 3 * 1.2
    _, (kept, _) = _plain_and_augmented(erasing_prob=1e-9)
    np.testing.assert_array_equal(kept, x)


def test_tensorflow_only_settings_and_data_are_refused_in_one_line(tmp_path):
    with pytest.raises(ValueError) as error:
        NumpyPipeline(DataConfig(dataset="synthetic", randaugment="rand-m9-n2"))
    assert str(error.value) == (
        "randaugment='rand-m9-n2' is drawn by TensorFlow ops, which the TensorFlow-free input "
        "pipeline (input_pipeline='numpy') does not have; turn it off or install TensorFlow.")
    (tmp_path / "train-00000-of-00001").write_bytes(b"")
    for dataset in ("cifar10", str(tmp_path)):
        with pytest.raises(ValueError, match=rf"^dataset={dataset!r}: the TensorFlow-free "
                                             r"input pipeline \(input_pipeline='numpy'\) reads "):
            NumpyPipeline(DataConfig(dataset=dataset))


def test_a_file_that_stops_decoding_is_named(tmp_path):
    root = _png_folder(tmp_path, sizes=((80, 90),))
    pipeline = NumpyPipeline(DataConfig(dataset=root, image_size=64))  # files read per batch
    (tmp_path / "test" / "b" / "0.png").write_bytes(b"not a png")
    with pytest.raises(CorruptImageError, match=r"^Corrupt or unreadable image file: "
                                                rf"{tmp_path}/test/b/0\.png\. It changed on disk"):
        list(pipeline.evaluation("test", 2))


def test_fit_refuses_the_numpy_pipeline_on_the_tensorflow_backend():
    result = run_cli("training.fit", "--backend=tensorflow", "--input_pipeline=numpy",
                     "--dataset=synthetic")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(
        "input_pipeline='numpy' feeds the jax and torch backends; the tensorflow backend's "
        "loop reads tf.data (use input_pipeline='tf_data' or 'auto').")


def test_input_pipeline_choice(monkeypatch):
    monkeypatch.delenv(loaders.ENVIRONMENT, raising=False)
    assert loaders.input_pipeline() == "tf_data"  # TensorFlow is installed here
    monkeypatch.setenv(loaders.ENVIRONMENT, "numpy")
    assert loaders.input_pipeline() == "numpy"
    assert isinstance(loaders.make_pipeline(DataConfig(dataset="synthetic",
                                                       synthetic_examples=32)), NumpyPipeline)
    assert isinstance(loaders.make_pipeline(DataConfig(dataset="synthetic",
                                                       synthetic_examples=32), "tf_data"),
                      Pipeline)
    with pytest.raises(ValueError, match=r"^input_pipeline must be one of auto, tf_data, numpy; "
                                         r"got 'pil'\.$"):
        loaders.input_pipeline("pil")


@pytest.mark.parametrize("backend, dataset", [  # 11-30 s each on 2 busy cores
    ("jax", "folder"),
    pytest.param("jax", "synthetic", marks=pytest.mark.slow),
    pytest.param("torch", "folder", marks=pytest.mark.slow),
])
def test_fit_trains_where_tensorflow_cannot_be_imported(backend, dataset, tmp_path):
    pytest.importorskip(backend)
    from PIL import Image

    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCKER)
    args = ["--model=resnet20", '--model_overrides={"depth": 8, "stage_widths": [4, 8, 16]}',
            "--batch_size=8", "--epochs=1", "--verbose=2", f"--model_dir={tmp_path / 'run'}"]
    if dataset == "synthetic":
        args += ["--dataset=synthetic", "--synthetic_examples=32", "--image_size=8",
                 "--num_classes=3"]
    else:
        for split, count in (("train", 12), ("test", 4)):
            for label in ("cat", "dog"):
                (tmp_path / "data" / split / label).mkdir(parents=True)
                for i in range(count // 2):
                    Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(
                        tmp_path / "data" / split / label / f"{i}.png")
        args += [f"--dataset={tmp_path / 'data'}", "--validation_images=4"]
    from tests.conftest import REPO_ROOT

    result = run_cli("training.fit", *args, KERAS_BACKEND=backend,
                     PYTHONPATH=f"{blocker}{os.pathsep}{REPO_ROOT}")
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert (results["status"], results["backend"], results["steps"]) == (
        "completed", backend, 4 if dataset == "synthetic" else 1)
    assert sorted(results["exports"]) == ["class_names", "keras"]
    if dataset == "folder":
        assert (results["class_names"], results["test_examples"]) == (["cat", "dog"], 4)
