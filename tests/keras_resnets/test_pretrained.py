"""Published weights by tag, without internet: a loopback server stands in for the publishers.

Test-only table entries carry the hashes of files the tests make themselves; the mirror
variable sends every download to the loopback server, which records what it is asked for.
"""

import dataclasses
import hashlib
import http.server
import json
import os
import shutil
import threading

import h5py
import keras
import numpy as np
import pytest

import keras_resnets
from keras_resnets import downloads, imagenet, weights_table

torch = pytest.importorskip("torch")
from bench import torch_resnets  # noqa: E402  (needs torch)
from tests.keras_resnets.test_port import _randomize, _torch_randomize  # noqa: E402
from tests.keras_resnets.test_weight_files import _save_legacy_h5  # noqa: E402

KERAS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"


class _Server:
    """Serves `root` on 127.0.0.1 and records the paths asked for."""

    def __init__(self, root):
        self.root = root
        self.requests = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):  # noqa: N802
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, url, source_path):
        """Serve the file at `source_path` where the mirror maps `url`."""
        target = self.root / url.split("://", 1)[1].split("/", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source_path, target)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path, monkeypatch):
    served = _Server(tmp_path / "served")
    (tmp_path / "served").mkdir()
    cache = tmp_path / "keras_home"
    cache.mkdir()
    monkeypatch.setattr(downloads, "cache_dir", lambda: str(cache))
    monkeypatch.setenv(downloads.MIRROR_VARIABLE, served.url)
    monkeypatch.delenv(downloads.DIR_VARIABLE, raising=False)
    yield served
    served.close()


def _digest(path, algorithm):
    return hashlib.new(algorithm, open(path, "rb").read()).hexdigest()


def _entry(**fields):
    """A test-only table row (it replaces the package's row of the same model and tag)."""
    defaults = dict(aliases=(), publisher="torchvision", notop_url=None, notop_hash=None,
                    layout="torchvision_pth", layer_config="torchvision",
                    preprocessing=weights_table._preprocessing("torch_256"), top1=1.0,
                    top5=2.0, reference="a test")
    return weights_table.WeightEntry(**{**defaults, **fields})


@pytest.fixture
def table(monkeypatch):
    """`table(*entries)` puts test entries in front of the package's table."""
    def install(*entries):
        replaced = {(e.model, e.tag) for e in entries}
        rows = tuple(entries) + tuple(e for e in weights_table._package_entries()
                                      if (e.model, e.tag) not in replaced)
        monkeypatch.setattr(weights_table, "entries", lambda: rows)
    return install


@pytest.fixture(scope="module")
def torch_resnet20():
    module = torch_resnets.cifar_resnet(20).eval()
    _torch_randomize(module)
    return module


@pytest.fixture
def resnet20_pth(tmp_path, torch_resnet20):
    """A torchvision-layout file named as torchvision names them: `<model>-<sha256[:8]>.pth`."""
    path = tmp_path / "resnet20.pth"
    torch.save(torch_resnet20.state_dict(), path)
    prefix = _digest(path, "sha256")[:8]
    named = tmp_path / f"resnet20-{prefix}.pth"
    path.rename(named)
    return named, prefix


def _resnet20_entry(resnet20_pth, **fields):
    path, prefix = resnet20_pth
    return _entry(model="resnet20", tag="test_tv", aliases=("torchvision",),
                  url=f"https://download.example/models/{path.name}", hash=f"sha256:{prefix}",
                  classes=10,
                  **fields)


def _torch_outputs(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()


def _images(size, n=2, seed=3):
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype("float32")


# Downloads -----------------------------------------------------------------------------------

def test_download_through_the_mirror_then_the_cache(server, table, resnet20_pth, torch_resnet20,
                                                    capsys):
    entry = _resnet20_entry(resnet20_pth)
    table(entry)
    server.publish(entry.url, resnet20_pth[0])
    model = keras_resnets.ResNet20(weights="torchvision", classifier_activation=None)
    assert server.requests == [f"/models/{entry.file_name}"]
    assert f"Downloading data from {server.url}/models/{entry.file_name}" in capsys.readouterr().out
    cached = os.path.join(downloads.cache_dir(), "models", entry.file_name)
    assert os.path.isfile(cached)
    x = _images(32)
    expected = _torch_outputs(torch_resnet20, x)
    assert np.abs(np.asarray(model(x, training=False)) - expected).max() < 1e-4

    again = keras_resnets.ResNet20(weights="test_tv", classifier_activation=None)
    assert len(server.requests) == 1  # the cached file, checked against the hash again
    np.testing.assert_array_equal(again(x, training=False), model(x, training=False))


def test_a_download_that_does_not_match_is_deleted(server, table, resnet20_pth, tmp_path):
    entry = _resnet20_entry(resnet20_pth)
    table(entry)
    other = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, other)
    server.publish(entry.url, other)
    with pytest.raises(downloads.HashMismatchError) as error:
        keras_resnets.ResNet20(weights="test_tv")
    cached = os.path.join(downloads.cache_dir(), "models", entry.file_name)
    message = str(error.value)
    assert f"has sha256 {_digest(other, 'sha256')}, not the publisher's {entry.hash}" in message
    assert f"it was deleted ({cached})" in message
    assert not os.path.exists(cached)


def test_a_damaged_cached_file_is_downloaded_again(server, table, resnet20_pth, capsys):
    entry = _resnet20_entry(resnet20_pth)
    table(entry)
    server.publish(entry.url, resnet20_pth[0])
    cached = os.path.join(downloads.cache_dir(), "models", entry.file_name)
    os.makedirs(os.path.dirname(cached))
    with open(cached, "wb") as handle:
        handle.write(b"truncated")
    keras_resnets.ResNet20(weights="test_tv")
    assert "did not match the publisher's hash" in capsys.readouterr().out
    assert len(server.requests) == 1 and _digest(cached, "sha256").startswith(entry.hash[7:])


def test_no_network_is_one_clear_error(server, table, resnet20_pth, monkeypatch):
    entry = _resnet20_entry(resnet20_pth)
    table(entry)
    server.close()  # nothing answers at the mirror any more
    with pytest.raises(downloads.WeightsDownloadError) as error:
        keras_resnets.ResNet20(weights="test_tv")
    message = str(error.value)
    for part in (f"Cannot download {entry.file_name} from {server.url}/models/",
                 f"download {entry.url} on a machine with internet access",
                 f"put {entry.file_name} in a directory and set the environment variable "
                 "KERAS_RESNETS_WEIGHTS_DIR to it", "KERAS_RESNETS_WEIGHTS_MIRROR"):
        assert part in message
    assert not os.path.exists(os.path.join(downloads.cache_dir(), "models", entry.file_name))


def test_the_local_directory_is_searched_first(server, table, resnet20_pth, torch_resnet20,
                                               tmp_path, monkeypatch):
    entry = _resnet20_entry(resnet20_pth)
    table(entry)
    local = tmp_path / "offline"
    local.mkdir()
    shutil.copy(resnet20_pth[0], local)
    monkeypatch.setenv(downloads.DIR_VARIABLE, str(local))
    model = keras_resnets.ResNet20(weights="test_tv", classifier_activation=None)
    assert server.requests == []
    x = _images(32)
    assert np.abs(np.asarray(model(x, training=False))
                  - _torch_outputs(torch_resnet20, x)).max() < 1e-4

    (local / entry.file_name).write_bytes(b"something else")
    with pytest.raises(downloads.HashMismatchError, match=r"\(from KERAS_RESNETS_WEIGHTS_DIR\) "
                                                          r"does not match"):
        keras_resnets.ResNet20(weights="test_tv")
    assert (local / entry.file_name).exists()  # the user's own file is left alone


def test_hashes_are_md5_or_sha256_digests_or_prefixes(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    sha = hashlib.sha256(b"abc").hexdigest()
    assert downloads.matches(path, f"sha256:{sha}") and downloads.matches(path, f"sha256:{sha[:8]}")
    assert downloads.matches(path, f"md5:{hashlib.md5(b'abc').hexdigest()}")
    assert not downloads.matches(path, "sha256:00000000")
    with pytest.raises(ValueError, match="'md5:<hex>' or 'sha256:<hex>'"):
        downloads.matches(path, "crc32:1234")


# keras.applications entries ------------------------------------------------------------------

def _without_classifier(path, target):
    """The keras.applications no-top file of a top file: the same, less `predictions`."""
    shutil.copyfile(path, target)
    with h5py.File(target, "a") as file:
        del file["predictions"]
        names = [n for n in file.attrs["layer_names"] if n not in (b"predictions", "predictions")]
        file.attrs["layer_names"] = names


def test_imagenet_weights_give_keras_applications_outputs(server, table, tmp_path):
    source = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3),
                                         classifier_activation=None)
    _randomize(source)
    top = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    _save_legacy_h5(source, top)
    notop = tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
    _without_classifier(top, notop)
    entry = _entry(model="resnet50", tag="imagenet", publisher="keras.applications",
                   url=KERAS_BASE + top.name, hash=f"md5:{_digest(top, 'md5')}",
                   notop_url=KERAS_BASE + notop.name, notop_hash=f"md5:{_digest(notop, 'md5')}",
                   layout="keras_applications", layer_config="keras_applications",
                   preprocessing=weights_table._preprocessing("caffe"))
    table(entry)
    server.publish(entry.url, top)
    server.publish(entry.notop_url, notop)

    model = keras_resnets.ResNet50(weights="imagenet", input_shape=(64, 64, 3),
                                   classifier_activation=None)
    assert model.get_layer("conv1_conv").use_bias  # layer_config="keras_applications" implied
    x = keras_resnets.preprocess_input(np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)),
                                       "imagenet", model=model)
    expected = np.asarray(source(x, training=False))
    scale = np.abs(expected).max()
    assert 0.1 < scale < 1e4
    assert np.abs(np.asarray(model(x, training=False)) - expected).max() < 1e-5 * scale

    backbone = keras_resnets.ResNet50(weights="imagenet", include_top=False)
    assert server.requests[-1].endswith("_notop.h5")
    features = keras.Model(source.input, source.get_layer("conv5_block3_out").output)
    expected = np.asarray(features(x, training=False))
    assert np.abs(np.asarray(backbone(x, training=False)) - expected).max() < (
        1e-5 * np.abs(expected).max())

    # A dilated backbone (DeepLab's output_stride=8) takes the same file, weight for weight.
    dilated = keras_resnets.ResNet50(weights="imagenet", include_top=False, output_stride=8)
    assert dilated.get_layer("conv5_block3_2_conv").dilation_rate == (4, 4)
    for ours, theirs in zip(dilated.weights, backbone.weights):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    assert dilated(x, training=False).shape == (2, 8, 8, 2048)


def test_a_tag_implies_its_layer_settings_and_refuses_others(table, resnet20_pth):
    table(_resnet20_entry(resnet20_pth))
    with pytest.raises(ValueError, match=r"weights='imagenet' of resnet50 \(published by "
                                         r"keras.applications\) need layer_config="
                                         r"'keras_applications'.*got layer_config='torchvision'"):
        keras_resnets.ResNet50(weights="imagenet", layer_config="torchvision")
    with pytest.raises(ValueError, match=r"trained with bn_epsilon=1.001e-05"):
        keras_resnets.ResNet50(weights="imagenet", bn_epsilon=1e-3)
    with pytest.raises(ValueError, match=r"with include_top=True needs classes=1000; got "
                                         r"classes=10"):
        keras_resnets.ResNet50(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match=r"No weights 'tv3' for model 'resnet50'; its weights "
                                         r"are 'imagenet', 'tv_in1k', 'tv2_in1k', 'torchvision'"):
        keras_resnets.ResNet50(weights="tv3")
    with pytest.raises(ValueError, match=r"model 'resnet56' has no published weights"):
        keras_resnets.ResNet56(weights="imagenet")


def test_load_weights_by_tag_with_another_head(server, table, resnet20_pth, torch_resnet20):
    entry = _resnet20_entry(resnet20_pth)
    table(entry)
    server.publish(entry.url, resnet20_pth[0])
    model = keras_resnets.ResNet20(classes=4)
    head = [w.copy() for w in model.get_layer("predictions").get_weights()]
    assert keras_resnets.load_weights(model, "test_tv", skip_classifier=True) is model
    np.testing.assert_array_equal(model.get_layer("conv4_block3_2_bn").moving_mean.numpy(),
                                  torch_resnet20.layer3[2].bn2.running_mean.numpy())
    for kept, before in zip(model.get_layer("predictions").get_weights(), head):
        np.testing.assert_array_equal(kept, before)
    with pytest.raises(ValueError, match=r"'predictions' has weight shapes \[\(64, 4\), \(4,\)\]"):
        keras_resnets.load_weights(model, "test_tv")


# The table -----------------------------------------------------------------------------------

def test_the_table_holds_keras_applications_urls_and_hashes():
    from keras.src.applications import resnet

    rows = [row for row in weights_table.entries() if row.publisher == "keras.applications"]
    assert sorted(row.model for row in rows) == sorted(
        ["resnet50", "resnet101", "resnet152", "resnet50v2", "resnet101v2", "resnet152v2"])
    for row in rows:
        top, notop = resnet.WEIGHTS_HASHES[row.model]
        name = f"{row.model}_weights_tf_dim_ordering_tf_kernels"
        assert (row.url, row.hash) == (f"{resnet.BASE_WEIGHTS_PATH}{name}.h5", f"md5:{top}")
        assert (row.notop_url, row.notop_hash) == (f"{resnet.BASE_WEIGHTS_PATH}{name}_notop.h5",
                                                   f"md5:{notop}")
        assert (row.tag, row.layer_config, row.layout) == (
            "imagenet", "keras_applications", "keras_applications")
        assert row.preprocessing.mode == ("tf" if row.model.endswith("v2") else "caffe")


def test_the_table_holds_torchvision_file_names_and_their_hash_prefixes():
    rows = [row for row in weights_table.entries() if row.publisher == "torchvision"]
    assert {row.model for row in rows} == {
        "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
        "resnext101_32x8d", "resnext101_64x4d"}
    assert set(keras_resnets.list_models()) >= {row.model for row in rows}
    for row in rows:
        assert row.url.startswith("https://download.pytorch.org/models/")
        assert row.hash == "sha256:" + row.file_name.rsplit("-", 1)[1].split(".")[0]
        assert row.tag == {"V1": "tv_in1k", "V2": "tv2_in1k"}[row.reference[-2:]]
        assert row.preprocessing.resize_size == (256 if row.tag == "tv_in1k" and
                                                 row.model != "resnext101_64x4d" else 232)
    defaults = {row.model: row.tag for row in rows if "torchvision" in row.aliases}
    assert defaults["resnet50"] == "tv2_in1k" and defaults["resnet18"] == "tv_in1k"
    assert len(defaults) == 8


def test_weight_entry_and_list_weights(capsys):
    entry = keras_resnets.weight_entry("resnext101_64x4d", "torchvision")
    assert (entry.tag, entry.layer_config, entry.top1) == ("tv_in1k", "torchvision", 83.246)
    assert entry.preprocessing.mean == (0.485, 0.456, 0.406)
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.top1 = 90.0
    rows = keras_resnets.list_weights("*.tv2_in1k")
    printed = capsys.readouterr().out.splitlines()
    assert [row.model for row in rows] == ["resnet50", "resnet101", "resnet152",
                                           "resnext50_32x4d", "resnext101_32x8d"]
    assert printed[0].split() == ["Model", "Tag", "Top-1", "Resize/crop", "Mode", "layer_config",
                                  "File"]
    assert printed[1].split() == ["resnet50", "tv2_in1k", "(torchvision)", "80.858", "232/224",
                                  "torch", "torchvision", "resnet50-11ad3fa6.pth"]
    assert len(keras_resnets.list_weights(verbose=False)) == 19


def test_the_table_is_package_data():
    setup = open(os.path.join(os.path.dirname(keras_resnets.__file__), "..", "setup.py")).read()
    assert '"keras_resnets": ["weights.json"]' in setup
    with open(weights_table.TABLE_PATH) as handle:
        assert len(json.load(handle)["weights"]) == 19


# Preprocessing and class names ---------------------------------------------------------------

@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_preprocess_input_equals_keras_applications(data_format):
    rng = np.random.default_rng(0)
    shape = (2, 5, 6, 3) if data_format == "channels_last" else (2, 3, 5, 6)
    pixels = rng.uniform(0, 255, shape).astype("float32")
    kept = pixels.copy()
    from keras.src.applications import imagenet_utils

    cases = {"resnet50.imagenet": "caffe", "resnet50v2.imagenet": "tf",
             "resnet50.tv2_in1k": "torch"}
    for weights, mode in cases.items():
        expected = imagenet_utils.preprocess_input(pixels.copy(), data_format=data_format,
                                                   mode=mode)
        actual = keras_resnets.preprocess_input(pixels, weights, data_format=data_format)
        assert actual.dtype == np.float32
        np.testing.assert_array_equal(actual, expected)
        tensor = keras_resnets.preprocess_input(keras.ops.convert_to_tensor(pixels), weights,
                                                data_format=data_format)
        np.testing.assert_allclose(keras.ops.convert_to_numpy(tensor), expected, atol=1e-4)
        single = keras_resnets.preprocess_input(pixels[0], weights, data_format=data_format)
        np.testing.assert_array_equal(single, expected[0])
    np.testing.assert_array_equal(pixels, kept)  # the input is left alone
    uint8 = rng.integers(0, 256, shape).astype("uint8")
    np.testing.assert_array_equal(
        keras_resnets.preprocess_input(uint8, "imagenet", model="resnet101",
                                       data_format=data_format),
        keras.applications.resnet.preprocess_input(uint8.copy(), data_format=data_format))


def test_preprocess_input_needs_to_know_the_model():
    with pytest.raises(ValueError, match=r"needs the model"):
        keras_resnets.preprocess_input(np.zeros((1, 2, 2, 3)), "imagenet")
    entry = keras_resnets.weight_entry("resnet18", "tv_in1k")
    np.testing.assert_array_equal(keras_resnets.preprocess_input(np.zeros((1, 1, 1, 3)), entry),
                                  keras_resnets.preprocess_input(np.zeros((1, 1, 1, 3)), "torch"))


def test_decode_predictions_reads_the_published_class_index(server, tmp_path, monkeypatch):
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    path = tmp_path / "imagenet_class_index.json"
    path.write_text(json.dumps(index))
    url = "https://storage.example/download.tensorflow.org/data/imagenet_class_index.json"
    monkeypatch.setattr(weights_table, "file_spec",
                        lambda name: (url, f"md5:{_digest(path, 'md5')}"))
    monkeypatch.setattr(imagenet, "_CLASS_INDEX", None)
    server.publish(url, path)
    preds = np.zeros((2, 1000), "float32")
    preds[0, [3, 7]] = [0.5, 0.25]
    preds[1, 999] = 1.0
    decoded = keras_resnets.decode_predictions(preds, top=2)
    assert decoded[0] == [("n00000003", "class_3", 0.5), ("n00000007", "class_7", 0.25)]
    assert decoded[1][0] == ("n00000999", "class_999", 1.0)
    assert server.requests == ["/download.tensorflow.org/data/imagenet_class_index.json"]
    with pytest.raises(ValueError, match=r"shape \(samples, 1000\)"):
        keras_resnets.decode_predictions(np.zeros((2, 10)))
