"""`python -m training.predict` and `training.predict.predict`: classes of image files."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnets
from tests.training.conftest import REPO_ROOT, subprocess_env
from training import export, predict, serving

CLASSES = ["cat", "dog", "owl"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A model directory as training.fit leaves it (its model.keras and class names), and
    image files: two sizes, a file that is no image, an empty folder."""
    root = tmp_path_factory.mktemp("predict")
    network = keras_resnets.ResNet(depth=8, stem="cifar", stage_widths=(4, 8, 16),
                                   input_shape=(16, 16, 3), classes=len(CLASSES))
    preprocessing = serving.Preprocessing((16, 16), 3, np.float32(1 / 64), np.float32(-2),
                                          fit_size=(16, 16))
    export.export(network, preprocessing, CLASSES, str(root), formats=("keras",))
    rng = np.random.default_rng(0)
    folder = root / "photos"
    (folder / "more").mkdir(parents=True)
    (folder / "empty").mkdir()
    for name, shape in (("a.png", (16, 16, 3)), ("b.jpg", (30, 20, 3)),
                        ("more/c.png", (16, 16, 3)), ("more/d.PNG", (16, 16, 1))):
        encode = tf.io.encode_jpeg if name.endswith("jpg") else tf.io.encode_png
        tf.io.write_file(str(folder / name), encode(rng.integers(0, 256, shape, np.uint8)))
    (folder / ".hidden.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("not an image, and not listed")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    return str(root)


def expected_probabilities(model_dir, path):
    model = keras.models.load_model(os.path.join(model_dir, "model.keras"))
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    return model(image[None]).numpy()[0]


def test_predict_lists_the_top_classes_of_each_image(model_dir):
    model, names = predict.load(model_dir)
    assert names == CLASSES
    photos = os.path.join(model_dir, "photos")
    empty, broken = os.path.join(photos, "empty"), os.path.join(model_dir, "broken.jpg")
    results = predict.predict(model, names, [photos, empty, broken, "/no/such.png"], top_k=2)
    assert [r["file"] for r in results] == [
        os.path.join(photos, name) for name in ("a.png", "b.jpg", "more/c.png", "more/d.PNG")
    ] + [empty, broken, "/no/such.png"]
    for result in results[:4]:
        expected = expected_probabilities(model_dir, result["file"])
        order = np.argsort(-expected)[:2]
        assert [p["class"] for p in result["predictions"]] == [CLASSES[k] for k in order]
        np.testing.assert_allclose([p["probability"] for p in result["predictions"]],
                                   expected[order], rtol=0, atol=1e-6)
    assert [r.get("error") for r in results[4:]] == [
        "a folder without .jpg, .jpeg or .png files",
        "not a JPEG, PNG, GIF or BMP image, or a damaged one", "no such file"]
    with pytest.raises(ValueError, match=r"top_k must be at least 1; got 0\."):
        predict.predict(model, names, [photos], top_k=0)


def test_a_model_dir_without_its_files_is_named(model_dir, tmp_path):
    with pytest.raises(ValueError, match=r"model_dir='/no/run' is not a directory\."):
        predict.load("/no/run")
    with pytest.raises(ValueError, match=rf"model_dir='{tmp_path}' has no model\.keras; train "
                                         r"with python -m training\.fit --export_format="
                                         r"keras,\.\.\. \(the default\) to write it\."):
        predict.load(str(tmp_path))
    os.symlink(os.path.join(model_dir, "model.keras"), tmp_path / "model.keras")
    (tmp_path / "class_names.json").write_text(json.dumps(["cat", "dog"]))
    with pytest.raises(ValueError, match=r"model\.keras has 3 outputs but .*class_names\.json "
                                         r"names 2 classes\."):
        predict.load(str(tmp_path))
    (tmp_path / "class_names.json").write_text("{")
    with pytest.raises(ValueError, match=r"class_names\.json is unreadable"):
        predict.load(str(tmp_path))


def run_predict(*args):
    return subprocess.Popen([sys.executable, "-m", "training.predict", *args], cwd=REPO_ROOT,
                            env=subprocess_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_the_command_line(model_dir):
    photo = os.path.join(model_dir, "photos", "a.png")
    broken = os.path.join(model_dir, "broken.jpg")
    runs = {"text": run_predict(f"--model_dir={model_dir}", photo, broken, "--top_k=1"),
            "json": run_predict(f"--model_dir={model_dir}", "--json", photo, broken),
            "no model": run_predict("--model_dir=/no/run", photo),
            "no images": run_predict(f"--model_dir={model_dir}")}
    out = {name: process.communicate(timeout=240) for name, process in runs.items()}
    codes = {name: process.returncode for name, process in runs.items()}
    assert codes == {"text": 1, "json": 1, "no model": 2, "no images": 2}, out
    expected = expected_probabilities(model_dir, photo)
    best = int(np.argmax(expected))
    assert out["text"] == (
        f"{photo}: {CLASSES[best]} ({100 * expected[best]:.2f}%)\n",
        f"training.predict: error: {broken}: not a JPEG, PNG, GIF or BMP image, or a damaged "
        "one.\n")
    lines = [json.loads(line) for line in out["json"][0].splitlines()]
    assert [line["file"] for line in lines] == [photo, broken]
    assert [p["class"] for p in lines[0]["predictions"]] == [
        CLASSES[k] for k in np.argsort(-expected)]
    assert lines[1] == {"file": broken, "error": "not a JPEG, PNG, GIF or BMP image, or a "
                                                 "damaged one"}
    assert out["json"][1] == ""
    assert out["no model"] == ("", "training.predict: error: model_dir='/no/run' is not a "
                                   "directory.\n")
    assert out["no images"] == ("", "training.predict: error: give at least one image file or "
                                    "folder after the flags.\n")
