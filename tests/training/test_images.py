"""training.images: listing image folders, checking and decoding encoded images."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

from training import images
from training.images import CorruptImageError

# The first bytes of an AppleDouble file (`._name`), which macOS writes beside copied files.
APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 200


def image(seed, h=24, w=32):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def jpeg(seed, **size):
    return tf.io.encode_jpeg(image(seed, **size), quality=90).numpy()


def png(seed, **size):
    return tf.io.encode_png(image(seed, **size)).numpy()


def garbled(contents, keep=100, seed=0):
    """The first `keep` bytes (a valid header and more), then random bytes."""
    noise = np.random.default_rng(seed).integers(0, 256, len(contents) - keep, dtype=np.uint8)
    return contents[:keep] + noise.tobytes()


def write(path, contents):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(contents)


# Good and bad encoded images; every bad one starts like an image or is not one at all.
SAMPLES = {
    "jpeg": jpeg(1),
    "png": png(2),
    "jpeg, half of it": jpeg(3)[: len(jpeg(3)) // 2],
    "jpeg, 100 bytes then noise": garbled(jpeg(4, h=64, w=64)),
    "jpeg without its end marker": jpeg(5)[:-2],
    "png, 100 bytes then noise": garbled(png(6)),
    "empty": b"",
    "AppleDouble": APPLE_DOUBLE,
    "text": b"not an image",
}
BAD = [i for i, name in enumerate(SAMPLES) if name not in ("jpeg", "png")]


def test_verify_all_finds_exactly_the_images_that_do_not_decode(tmp_path):
    contents = list(SAMPLES.values())
    bad, fingerprints = images.verify_all(np.array(contents, object), False)
    np.testing.assert_array_equal(bad, BAD)
    expected = images.fingerprint(tf.constant(contents)).numpy()
    expected[BAD] = 0
    np.testing.assert_array_equal(fingerprints, expected)
    assert len(set(expected)) == 3  # two images and the zeros of the others
    paths = [str(tmp_path / f"{i}.img") for i in range(len(contents))]
    for path, data in zip(paths, contents):
        write(path, data)
    paths.append(str(tmp_path / "missing.jpg"))
    bad, from_files = images.verify_all(paths, True)
    np.testing.assert_array_equal(bad, BAD + [len(contents)])
    np.testing.assert_array_equal(from_files, np.append(expected, 0))
    assert [len(x) for x in images.verify_all([], True)] == [0, 0]


def test_verify_all_and_decode_all_agree_across_many_batches(tmp_path):
    # 600 images: three decode batches of 256, with bad images in the first and the last.
    paths = []
    for i in range(600):
        path = str(tmp_path / f"{i:04d}.jpg")
        write(path, garbled(jpeg(i, h=8, w=8), keep=60) if i in (5, 590) else jpeg(i, h=8, w=8))
        paths.append(path)
    np.testing.assert_array_equal(images.verify_all(paths, True)[0], [5, 590])
    decoded, bad = images.decode_all(paths, (8, 8), 3, True)
    np.testing.assert_array_equal(bad, [5, 590])
    expected = tf.io.decode_jpeg(tf.io.read_file(paths[7])).numpy()
    np.testing.assert_array_equal(decoded[7], expected)


def test_corrupt_image_error_names_the_files_in_one_line():
    one = CorruptImageError(["/data/train/cat/1.jpg"])
    assert isinstance(one, ValueError) and one.files == ("/data/train/cat/1.jpg",)
    assert str(one) == ("Corrupt or unreadable image file: /data/train/cat/1.jpg. Remove or "
                        "replace it, or set skip_corrupt=True (--skip_corrupt) to skip it.")
    many = CorruptImageError([f"/d/{i}.jpg" for i in range(7)], detail="Checked twice. ")
    assert str(many) == (
        "Corrupt or unreadable image files: /d/0.jpg, /d/1.jpg, /d/2.jpg, /d/3.jpg, /d/4.jpg "
        "and 2 more. Checked twice. Remove or replace them, or set skip_corrupt=True "
        "(--skip_corrupt) to skip them.")


def test_from_op_error_finds_the_message_in_a_tensorflow_error():
    inner = str(CorruptImageError(["/d/a b.jpg", "/d/c.jpg"], detail="It changed. "))

    def fail(i):
        with tf.control_dependencies([tf.debugging.Assert(i < 1, [tf.constant(inner)])]):
            return tf.identity(i)

    with pytest.raises(tf.errors.InvalidArgumentError) as raised:
        list(tf.data.Dataset.range(2).map(fail))
    found = CorruptImageError.from_op_error(raised.value)
    assert str(found) == inner and found.files == ("/d/a b.jpg", "/d/c.jpg")
    assert inner in str(raised.value) and str(raised.value) != inner  # TensorFlow's is longer
    assert CorruptImageError.from_op_error(tf.errors.InvalidArgumentError(
        None, None, "jpeg::Uncompress failed. Invalid JPEG data or crop window.")) is None


def test_list_split_walks_sub_folders_in_order_and_skips_hidden_entries(tmp_path):
    split = str(tmp_path / "train")
    for name in ("cat/b.jpg", "cat/a.png", "cat/sub/z.jpg", "cat/sub/deeper/y.JPG",
                 "cat/another/x.jpeg", "dog/1.jpg", "dog/.cache/2.jpg", "dog/._1.jpg",
                 "dog/.DS_Store", "dog/notes.txt", ".hidden_class/3.jpg"):
        write(os.path.join(split, name), jpeg(1))
    listed = images.list_split(split)
    assert listed.classes == ["cat", "dog"]
    assert [os.path.relpath(p, split) for p in listed.paths] == [
        "cat/a.png", "cat/b.jpg", "cat/another/x.jpeg", "cat/sub/z.jpg", "cat/sub/deeper/y.JPG",
        "dog/1.jpg"]
    assert list(listed.labels) == [0, 0, 0, 0, 0, 1] and listed.labels.dtype == np.int32
    assert [os.path.relpath(p, split) for p in listed.nested] == [
        "cat/another/x.jpeg", "cat/sub/z.jpg", "cat/sub/deeper/y.JPG"]
    assert [os.path.relpath(p, split) for p in listed.hidden] == [
        "dog/.cache", "dog/.DS_Store", "dog/._1.jpg"]


def test_a_class_folder_with_only_hidden_files_is_named(tmp_path):
    write(str(tmp_path / "cat" / "1.jpg"), jpeg(1))
    write(str(tmp_path / "dog" / "._1.jpg"), APPLE_DOUBLE)
    with pytest.raises(ValueError, match=re.escape(
            f"Class folder {tmp_path / 'dog'} has no images (.jpg, .jpeg, .png files); ignored 1 "
            f"hidden file(s) or folder(s) such as {tmp_path / 'dog' / '._1.jpg'}.")):
        images.list_split(str(tmp_path))
