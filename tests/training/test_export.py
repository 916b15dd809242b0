"""The exports (`training.export`): every format, in its own runtime, agrees with Keras."""

import json
import os
import subprocess
import sys
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_resnets
from training import export, outputs, serving
from training.config import EXPORT_FORMATS

CLASSES = ["cat", "dog", "owl"]
# Everything the served graph can hold: a fit to 20x20 (resize, crop, rounding), the
# ImageNet-style centre crop to 16x16, per-channel scale and a per-pixel offset.
PREPROCESSING = serving.Preprocessing(
    (16, 16), 3, np.array([1 / 60, 1 / 62, 1 / 64], np.float32),
    np.random.default_rng(1).normal(size=(16, 16, 3)).astype(np.float32),
    fit_size=(20, 20), crop_fraction=16 / 18)


def resnext():
    """A tiny ResNeXt (grouped convolutions: the package's native kernel on TensorFlow) with
    batch-norm statistics away from their initial values."""
    network = keras_resnets.ResNet(depth=11, stem="cifar", block="bottleneck", cardinality=2,
                                   bottleneck_width=16, stage_widths=(8, 16, 32),
                                   input_shape=(16, 16, 3), classes=len(CLASSES))
    rng = np.random.default_rng(0)
    for layer in network.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.1, channels))
            layer.moving_variance.assign(rng.uniform(0.5, 2, channels))
    return network


def raw_images(seed=0):
    """Batches of raw images: at the fit size, larger and non-square, smaller."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, shape).astype(np.uint8)
            for shape in [(2, 20, 20, 3), (1, 37, 29, 3), (1, 11, 14, 3)]]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("exports"))
    network = resnext()
    # ONNX first: Keras' ONNX exporter wants a model that was called before (as by another
    # export); export() calls it.
    written = export.export(network, PREPROCESSING, CLASSES, directory,
                            formats=EXPORT_FORMATS[::-1])
    served = serving.serving_model(network, PREPROCESSING)
    expected = [served.predict(images, verbose=0) for images in raw_images()]
    return directory, written, expected


def test_every_format_is_written_with_the_class_names(exported):
    directory, written, _ = exported
    assert EXPORT_FORMATS == ("keras", "saved_model", "onnx", "litert")
    assert written == {"class_names": f"{directory}/class_names.json",
                       "litert": f"{directory}/model.tflite", "onnx": f"{directory}/model.onnx",
                       "saved_model": f"{directory}/saved_model",
                       "keras": f"{directory}/model.keras"}
    with open(written["class_names"]) as file:
        assert json.load(file) == CLASSES
    assert sorted(os.listdir(directory)) == [
        "class_names.json", "model.keras", "model.onnx", "model.tflite", "saved_model"]


def test_onnx_and_litert_agree_with_keras(exported):
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    directory, written, expected = exported
    session = onnxruntime.InferenceSession(written["onnx"])
    [onnx_input] = session.get_inputs()
    assert (onnx_input.type, onnx_input.shape[-1]) == ("tensor(float)", 3)
    interpreter = Interpreter(model_path=written["litert"])
    [litert_input] = interpreter.get_input_details()
    assert list(litert_input["shape_signature"]) == [-1, -1, -1, 3]
    for images, want in zip(raw_images(), expected):
        x = images.astype(np.float32)
        onnx_out = session.run(None, {onnx_input.name: x})[0]
        interpreter.resize_tensor_input(litert_input["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(litert_input["index"], x)
        interpreter.invoke()
        litert_out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        assert onnx_out.shape == litert_out.shape == want.shape
        assert np.abs(onnx_out - want).max() < 1e-4
        assert np.abs(litert_out - want).max() < 1e-4


def test_the_saved_model_serves_float_images(exported):
    _, written, expected = exported
    served = tf.saved_model.load(written["saved_model"])
    for images, want in zip(raw_images(), expected):
        got = served.serve(tf.constant(images, tf.float32)).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


_LOAD = r"""
import json, sys
import numpy as np
import keras
model = keras.models.load_model(sys.argv[1])
outputs = [keras.ops.convert_to_numpy(model(np.load(path))).tolist() for path in sys.argv[2:]]
assert "keras_resnets" not in sys.modules, "keras_resnets was imported"
print(json.dumps(outputs))
"""


@pytest.mark.parametrize("backend", [
    "tensorflow", pytest.param("torch", marks=pytest.mark.slow)])  # 11 and 13 s (2 cores)
def test_model_keras_loads_without_keras_resnets(exported, tmp_path, backend):
    if backend == "torch":
        pytest.importorskip("torch")
    directory, written, expected = exported
    paths = []
    for index, images in enumerate(raw_images()):
        paths.append(str(tmp_path / f"images_{index}.npy"))
        np.save(paths[-1], images)  # uint8, as decoded
    # Started outside the repository, so keras_resnets is not even importable by accident.
    result = subprocess.run([sys.executable, "-c", _LOAD, written["keras"], *paths],
                            cwd=str(tmp_path), capture_output=True, text=True, timeout=600,
                            env={**os.environ, "PYTHONPATH": "", "KERAS_BACKEND": backend})
    assert result.returncode == 0, result.stderr[-3000:]
    outputs_ = json.loads(result.stdout.strip().splitlines()[-1])
    for got, want in zip(outputs_, expected):
        np.testing.assert_allclose(np.array(got), want, rtol=0, atol=1e-5)


def run_directory(path):
    return outputs.RunDirectory(str(path), types.SimpleNamespace(is_chief=True, task_id=0),
                                tf.train.Checkpoint(), keep=1)


def test_a_converter_failure_is_one_error_and_keeps_what_was_written(tmp_path, monkeypatch):
    network = keras_resnets.ResNet(depth=8, stem="cifar", stage_widths=(4, 8, 16),
                                   input_shape=(16, 16, 3), classes=3)
    preprocessing = serving.Preprocessing((16, 16), 3, np.float32(1), np.float32(0),
                                          fit_size=(16, 16))
    run = run_directory(tmp_path / "run")
    try:
        run.save_model(network, preprocessing, CLASSES, ("keras", "saved_model"))
        before = sorted(os.listdir(run.model_dir))
        inodes = {name: os.stat(os.path.join(run.model_dir, name)).st_ino
                  for name in ("saved_model", "model.keras")}
        original = keras.Model.export

        def failing(model, path, format="tf_saved_model", **kwargs):
            if format == "litert":
                raise RuntimeError("converter broke\nmore detail")
            return original(model, path, format=format, **kwargs)

        monkeypatch.setattr(keras.Model, "export", failing)
        with pytest.raises(outputs.RunDirectoryError) as error:
            run.save_model(network, preprocessing, CLASSES, ("saved_model", "litert", "keras"))
        assert str(error.value) == (
            f"Could not export the model to {run.model_dir} as litert: converter broke. The "
            "checkpoints are kept; rerun to export, or leave litert out of export_format.")
        # saved_model/ (before litert) was replaced, model.keras (after it) was not, and no
        # temporary file or folder is left.
        assert sorted(os.listdir(run.model_dir)) == before == [
            ".lock", "class_names.json", "model.keras", "saved_model"]
        assert os.stat(os.path.join(run.model_dir, "saved_model")).st_ino != inodes[
            "saved_model"]
        assert os.stat(os.path.join(run.model_dir, "model.keras")).st_ino == inodes[
            "model.keras"]
    finally:
        run.close()


def test_an_unwritable_directory_is_one_error(tmp_path, read_only_dir, monkeypatch):
    run = run_directory(tmp_path / "run")
    monkeypatch.setattr(run, "model_dir", read_only_dir)
    network = keras_resnets.ResNet(depth=8, stem="cifar", stage_widths=(4, 8, 16),
                                   input_shape=(16, 16, 3), classes=3)
    preprocessing = serving.Preprocessing((16, 16), 3, np.float32(1), np.float32(0),
                                          fit_size=(16, 16))
    try:
        with pytest.raises(outputs.RunDirectoryError, match=(
                rf"^Could not export the model to {read_only_dir}: .*\. The checkpoints are "
                r"kept; rerun to export\.$")):
            run.save_model(network, preprocessing, CLASSES)
        assert os.listdir(read_only_dir) == []
    finally:
        run.close()


def test_bad_arguments_are_named(tmp_path, monkeypatch):
    network = keras_resnets.ResNet(depth=8, stem="cifar", stage_widths=(4, 8, 16),
                                   input_shape=(16, 16, 3), classes=3)
    preprocessing = serving.Preprocessing((16, 16), 3, np.float32(1), np.float32(0),
                                          fit_size=(16, 16))
    with pytest.raises(ValueError, match=r"formats must be among \['keras', 'saved_model', "
                                         r"'onnx', 'litert'\]; got \['pdf'\]\."):
        export.export(network, preprocessing, CLASSES, str(tmp_path), formats=("pdf",))
    with pytest.raises(ValueError, match=r"class_names has 2 names for the network's 3 "
                                         r"outputs\."):
        export.export(network, preprocessing, CLASSES[:2], str(tmp_path))
    assert os.listdir(tmp_path) == []
    found = {"tf2onnx": None, "onnx": object()}
    monkeypatch.setattr("importlib.util.find_spec", lambda name: found.get(name, object()))
    export.check_available(("keras", "litert"))
    with pytest.raises(ValueError, match=r"^export_format needs tf2onnx \(for onnx\): pip "
                                         r"install \"keras-resnets\[export\]\", or leave the "
                                         r"format out\.$"):
        export.check_available(("keras", "onnx"))
