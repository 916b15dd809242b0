"""`training.backends`: the `--backend` flag and the settings that exist only on TensorFlow."""

import keras
import pytest

from tests.training.conftest import run_cli, tiny_settings
from training import backends
from training import config as config_lib


def _config(**overrides):
    return config_lib.from_settings(tiny_settings(**overrides))


def test_default_backend_reads_keras_backend(monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    assert backends.default_backend() == "tensorflow"
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert backends.default_backend() == "jax"
    monkeypatch.setenv("KERAS_BACKEND", "flax")
    with pytest.raises(ValueError, match=r"^KERAS_BACKEND must be one of tensorflow, jax, "
                                         r"torch; got 'flax'\.$"):
        backends.default_backend()


def test_select_refuses_an_unknown_backend_and_a_switch_after_keras_is_loaded():
    with pytest.raises(ValueError, match=r"^backend must be one of tensorflow, jax, torch; "
                                         r"got 'mxnet'\.$"):
        backends.select("mxnet")
    assert keras.backend.backend() == "tensorflow"  # the test process'
    with pytest.raises(ValueError, match=r"^backend='torch', but Keras was already imported "
                                         r"with the 'tensorflow' backend; set KERAS_BACKEND "
                                         r"before importing Keras\.$"):
        backends.select("torch")
    assert backends.select("tensorflow") == "tensorflow"


def test_tensorflow_accepts_every_setting():
    config = _config(strategy="mirrored", cpu_devices=2, model_dir="runs/x", save_model=True,
                     export_format="saved_model,onnx")
    assert backends.for_backend(config, "tensorflow", False) is config


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_other_backends_refuse_tensorflow_only_settings(backend):
    for strategy in ("mirrored", "multi_worker", "tpu"):
        with pytest.raises(ValueError, match=rf"^strategy='{strategy}' is a tf.distribute "
                                             rf"strategy and exists only on the tensorflow "
                                             rf"backend; on {backend} use strategy='auto' or "
                                             r"'one_device'\.$"):
            backends.check_settings(_config(strategy=strategy), backend)
    with pytest.raises(ValueError, match=r"^cpu_devices=2 splits the CPU into TensorFlow "
                                         r"logical devices and exists only on the tensorflow "
                                         rf"backend; on {backend} leave it 0\.$"):
        backends.check_settings(_config(cpu_devices=2), backend)
    exports = _config(model_dir="runs/x", save_model=True, export_format="keras,onnx,litert")
    with pytest.raises(ValueError, match=r"^export_format='keras,onnx,litert': onnx, litert is "
                                         r"written from a TensorFlow model and exists only on "
                                         rf"the tensorflow backend; on {backend} use "
                                         r"export_format='keras' \(model.keras loads on every "
                                         r"backend\)\.$"):
        backends.for_backend(exports, backend, True)
    for strategy in ("auto", "one_device"):
        backends.check_settings(_config(strategy=strategy), backend)


def test_without_chosen_exports_other_backends_write_model_keras_only():
    config = _config(model_dir="runs/x", save_model=True)
    assert config.runtime.export_format == ("keras", "saved_model")
    assert backends.for_backend(config, "jax", False).runtime.export_format == ("keras",)
    assert backends.for_backend(config, "tensorflow", False).runtime.export_format == (
        "keras", "saved_model")


def test_fit_refuses_a_tf_distribute_strategy_on_torch_in_one_line():
    pytest.importorskip("torch")
    result = run_cli("training.fit", "--backend=torch", "--strategy=mirrored",
                     "--dataset=synthetic", "--epochs=1")
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "training.fit: error: strategy='mirrored' is a tf.distribute strategy and exists only "
        "on the tensorflow backend; on torch use strategy='auto' or 'one_device'.\n")


def test_fit_refuses_an_unknown_backend_flag_and_its_help_lists_the_flag():
    result = run_cli("training.fit", "--backend=mxnet", "--dataset=synthetic", "--epochs=1")
    assert result.returncode == 2
    assert "  --backend: <tensorflow|jax|torch>: The Keras backend" in run_cli(
        "training.fit", "--help").stdout
    assert result.stderr.startswith("training.fit: error: flag --backend=mxnet: value should "
                                    "be one of <tensorflow|jax|torch>")


def test_select_names_a_backend_that_is_not_installed(monkeypatch):
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: None)
    monkeypatch.delitem(backends.sys.modules, "keras")
    with pytest.raises(ValueError, match=r"^backend='jax' needs the jax package, which is not "
                                         r"installed here\.$"):
        backends.select("jax")
