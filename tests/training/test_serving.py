"""The served model (`training.serving`): raw images in, the run's evaluation inside."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnets
from training import data, images, serving

# Sizes around a 16x16 CIFAR-style input: the same size, larger, smaller, non-square.
FIT_SIZES = [(16, 16), (23, 19), (12, 16), (16, 40), (9, 7)]
# Around a 24x24 ImageNet-style crop (27 = 8/7 of 24, rounded): down- and upsampled crops. The
# first image is over 64 pixels: the pipeline reads such data at each image's own size.
CROP_SIZES = [(70, 52), (27, 27), (24, 24), (31, 64), (13, 20)]


def write_folder(root, sizes, seed=0):
    """An image folder of two classes, each image of `sizes` once per class and split (PNG
    and JPEG alternately)."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for name in ("cat", "dog"):
            os.makedirs(os.path.join(root, split, name))
            for index, (h, w) in enumerate(sizes):
                image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                encode = tf.io.encode_png if index % 2 == 0 else tf.io.encode_jpeg
                suffix = "png" if index % 2 == 0 else "jpg"
                tf.io.write_file(os.path.join(root, split, name, f"{index}.{suffix}"),
                                 encode(image))
    return root


def tiny_network(shape, classes=2, **options):
    return keras_resnets.ResNet(depth=8, stem="cifar", stage_widths=(4, 8, 16),
                                input_shape=shape, classes=classes, **options)


def raw_test_images(pipeline, root):
    """The test split's files, decoded as they are, in the pipeline's order."""
    paths = images.list_split(os.path.join(root, "test")).paths
    return [images.decode(tf.io.read_file(path), 3).numpy() for path in paths]


PIPELINES = {
    "cifar per-pixel mean": (FIT_SIZES, {}),
    "cifar per-channel": (FIT_SIZES, {"normalization": "per_channel"}),
    "cifar none": (FIT_SIZES, {"normalization": "none"}),
    "imagenet": (CROP_SIZES, {"image_size": 24}),
    # Small data held in memory is fitted to its (first image's) size before the crop.
    "imagenet-style small": (FIT_SIZES, {"image_size": 12, "augmentation": "imagenet"}),
}


@pytest.mark.parametrize("name", list(PIPELINES))
def test_the_served_model_sees_the_pipelines_evaluation_images(tmp_path, name):
    sizes, settings = PIPELINES[name]
    root = write_folder(str(tmp_path / "folder"), sizes)
    pipeline = data.Pipeline(data.DataConfig(dataset=root, **settings))
    preprocessing = serving.Preprocessing.from_pipeline(pipeline)
    network = tiny_network(pipeline.info.image_shape)
    served = serving.serving_model(network, preprocessing)
    inputs = keras.Model(served.input, served.get_layer("normalization").output)

    evaluated = np.concatenate([x for x, _ in pipeline.evaluation("test", 64)
                                .as_numpy_iterator()])
    raw = raw_test_images(pipeline, root)
    seen = np.concatenate([inputs(image[None].astype("float32")).numpy() for image in raw])
    np.testing.assert_array_equal(seen, evaluated)  # bit for bit
    outputs = np.concatenate([served(image[None]).numpy() for image in raw])  # uint8 in
    np.testing.assert_allclose(outputs, network.predict(evaluated, verbose=0), rtol=0,
                               atol=1e-6)


def test_preprocessing_from_pipelines(tmp_path):
    cifar = data.Pipeline(data.DataConfig(dataset="synthetic", synthetic_examples=8))
    fit = serving.Preprocessing.from_pipeline(cifar)
    assert (fit.image_size, fit.channels, fit.fit_size, fit.crop_fraction) == (
        (32, 32), 3, (32, 32), None)
    np.testing.assert_array_equal(fit.offset, -cifar.mean / 255)
    root = write_folder(str(tmp_path / "folder"), CROP_SIZES)
    imagenet = data.Pipeline(data.DataConfig(dataset=root, image_size=24))
    crop = serving.Preprocessing.from_pipeline(imagenet)
    assert (crop.image_size, crop.fit_size, crop.crop_fraction) == ((24, 24), None, 24 / 27)
    np.testing.assert_array_equal(crop.scale, 1 / imagenet.std)
    small = data.Pipeline(data.DataConfig(dataset="synthetic", synthetic_examples=8,
                                          image_size=16, augmentation="imagenet"))
    both = serving.Preprocessing.from_pipeline(small)
    assert (both.image_size, both.fit_size, both.crop_fraction) == ((16, 16), (16, 16),
                                                                    16 / 18)


def test_a_network_of_logits_gets_a_softmax():
    network = tiny_network((16, 16, 3), classes=3, classifier_activation=None)
    preprocessing = serving.Preprocessing((16, 16), 3, np.float32(1 / 255), np.float32(0),
                                          fit_size=(16, 16))
    served = serving.serving_model(network, preprocessing)
    assert served.layers[-1].name == "probabilities"
    raw = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3)).astype("float32")
    expected = keras.ops.softmax(network(raw / 255)).numpy()
    np.testing.assert_allclose(served(raw).numpy(), expected, rtol=0, atol=1e-6)
    # The network's layers join the served model: same names, same weights.
    assert [layer.name for layer in served.layers[1:-1]] == (
        ["normalization"] + [layer.name for layer in network.layers[1:]])
    assert served.count_params() == network.count_params()


def test_bad_preprocessing_is_named():
    one, zero = np.float32(1), np.float32(0)
    with pytest.raises(ValueError, match=r"Without a crop_fraction, fit_size must be image_size "
                                         r"\(16, 16\); got \(16, 20\)\."):
        serving.Preprocessing((16, 16), 3, one, zero, fit_size=(16, 20))
    with pytest.raises(ValueError, match=r"crop_fraction must be in \(0, 1\] or None; got "
                                         r"1\.5\."):
        serving.Preprocessing((16, 16), 3, one, zero, crop_fraction=1.5)
    with pytest.raises(ValueError, match=r"image_size must be a \(height, width\) tuple of "
                                         r"positive ints; got \[16, 16\]\."):
        serving.Preprocessing([16, 16], 3, one, zero, fit_size=(16, 16))
    with pytest.raises(ValueError, match=r"fit_size must be a \(height, width\) tuple of "
                                         r"positive ints or None; got \(0, 16\)\."):
        serving.Preprocessing((16, 16), 3, one, zero, fit_size=(0, 16), crop_fraction=0.5)
    preprocessing = serving.Preprocessing((32, 32), 3, one, zero, fit_size=(32, 32))
    with pytest.raises(ValueError, match=r"network takes \(16, 16\) images but preprocessing "
                                         r"gives \(32, 32\)\."):
        serving.serving_model(tiny_network((16, 16, 3)), preprocessing)
