"""Weight files of every layout load into keras_resnets models: equal outputs, clear errors."""

import collections

import h5py
import keras
import numpy as np
import pytest

import keras_resnets
from keras_resnets import ResNet, torch_files, weight_files

torch = pytest.importorskip("torch")
from bench import torch_resnets  # noqa: E402  (needs torch)
from tests.keras_resnets.test_port import _randomize, _torch_randomize  # noqa: E402


def _tiny(**kwargs):
    return ResNet(**{"depth": 8, "stem": "cifar", "stage_widths": (4, 8, 16), **kwargs})


def _images(size, n=2, seed=0):
    return np.random.default_rng(seed).normal(size=(n, size, size, 3)).astype("float32")


def _outputs(model, x):
    return np.asarray(model(x, training=False))


def _torch_outputs(module, x):
    with torch.no_grad():
        return module(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()


def _state(module):
    return {key: value.numpy() for key, value in module.state_dict().items()}


def _save_legacy_h5(model, path):
    """A legacy (Keras 2) HDF5 weights file by layer name: keras.applications' layout."""
    from keras.src.legacy.saving import legacy_h5_format

    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, model)


# The file readers ----------------------------------------------------------------------------

@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pth_reader_matches_torch_save(tmp_path, zip_format):
    state = collections.OrderedDict(
        transposed=torch.arange(6, dtype=torch.float32).reshape(2, 3).t(),
        count=torch.tensor(7),
        half=torch.linspace(-1, 1, 5).half(),
        bfloat=torch.tensor([1.5, -2.25]).bfloat16(),
        sliced=torch.randn(4, 5, dtype=torch.float64)[:, 1:3],
        empty=torch.zeros(0, 3),
    )
    state["shared"] = state["sliced"]
    path = tmp_path / "state.pth"
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    arrays = torch_files.read_pth(path)
    assert list(arrays) == list(state)
    for key, tensor in state.items():
        expected = tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
        assert arrays[key].dtype == expected.dtype and arrays[key].shape == expected.shape
        np.testing.assert_array_equal(arrays[key], expected)


def test_pth_reader_refuses_anything_but_tensors(tmp_path):
    path = tmp_path / "module.pth"
    torch.save(torch.nn.Linear(2, 3), path)  # a pickled module: unpickling it would run code
    with pytest.raises(torch_files.UnsupportedFileError,
                       match=r"refused to unpickle the global 'torch.nn.modules.linear.Linear'"):
        torch_files.read_pth(path)
    checkpoint = tmp_path / "checkpoint.pth"
    torch.save({"state_dict": torch.nn.Linear(2, 3).state_dict(), "epoch": 3}, checkpoint)
    assert sorted(torch_files.read_pth(checkpoint)) == ["bias", "weight"]
    other = tmp_path / "other.pth"
    other.write_bytes(b"not a torch file")
    with pytest.raises(torch_files.UnsupportedFileError, match="not a file written by torch.save"):
        torch_files.read_pth(other)


def test_safetensors_round_trip(tmp_path):
    arrays = {"a": np.arange(6, dtype="float32").reshape(2, 3), "b": np.array([3], "int64"),
              "c": np.ones((2, 1, 1), "float16")}
    path = tmp_path / "w.safetensors"
    torch_files.save_safetensors(path, arrays, metadata={"format": "pt"})
    loaded = torch_files.read_safetensors(path)
    assert list(loaded) == list(arrays)
    for key in arrays:
        assert loaded[key].dtype == arrays[key].dtype
        np.testing.assert_array_equal(loaded[key], arrays[key])


def test_layouts_are_detected_from_the_content(tmp_path):
    model = _tiny()
    paths = {"keras": tmp_path / "a.weights.h5", "keras_applications": tmp_path / "b.h5",
             "torchvision_pth": tmp_path / "c.bin", "torchvision_safetensors": tmp_path / "d"}
    model.save_weights(paths["keras"])
    _save_legacy_h5(model, paths["keras_applications"])
    torch.save({"x": torch.ones(1)}, paths["torchvision_pth"])
    torch_files.save_safetensors(paths["torchvision_safetensors"], {"x": np.ones(1)})
    for layout, path in paths.items():
        assert weight_files.detect_layout(path) == layout
    (tmp_path / "e.txt").write_text("hello")
    with pytest.raises(ValueError, match="Cannot tell the layout"):
        weight_files.detect_layout(tmp_path / "e.txt")


# Keras files ---------------------------------------------------------------------------------

def test_keras_weights_file_loads_with_and_without_classifier(tmp_path):
    path = tmp_path / "tiny.weights.h5"
    source = _tiny()
    _randomize(source)
    source.save_weights(path)
    x = _images(32)
    target = keras_resnets.load_weights(_tiny(), path)
    np.testing.assert_array_equal(_outputs(target, x), _outputs(source, x))

    other = _tiny(classes=3)
    classifier = [w.copy() for w in other.get_layer("predictions").get_weights()]
    with pytest.raises(ValueError, match=r"layer 'predictions' has weight shapes \[\(16, 3\), "
                                         r"\(3,\)\] but the file's 'layers/dense/vars' has"):
        keras_resnets.load_weights(other, path)
    keras_resnets.load_weights(other, path, skip_classifier=True)
    for kept, before in zip(other.get_layer("predictions").get_weights(), classifier):
        np.testing.assert_array_equal(kept, before)
    np.testing.assert_array_equal(other.get_layer("conv1_conv").kernel.numpy(),
                                  source.get_layer("conv1_conv").kernel.numpy())

    backbone = _tiny(include_top=False, pooling="avg")  # the file's classifier is ignored
    keras_resnets.load_weights(backbone, path)
    np.testing.assert_array_equal(backbone.get_layer("conv4_block1_2_bn").moving_variance.numpy(),
                                  source.get_layer("conv4_block1_2_bn").moving_variance.numpy())


def test_keras_weights_file_of_another_architecture_names_the_first_key(tmp_path):
    path = tmp_path / "tiny.weights.h5"
    _tiny().save_weights(path)
    deeper = ResNet(depth=14, stem="cifar", stage_widths=(4, 8, 16))
    with pytest.raises(ValueError, match=r"the file lacks 'layers/conv2d_9/vars' for layer "
                                         r"'conv3_block2_2_conv' \(and 11 more layers\)"):
        keras_resnets.load_weights(deeper, path)
    shallower = ResNet(stage_blocks=(1, 1), stem="cifar", stage_widths=(4, 8))
    with pytest.raises(ValueError, match=r"the file's 'layers/conv2d_6/vars' fits no layer"):
        keras_resnets.load_weights(shallower, path)


def test_portable_copies_save_weights_that_load_back(tmp_path):
    model = _tiny()
    _randomize(model)
    path = tmp_path / "portable.weights.h5"
    keras_resnets.portable(model).save_weights(path)  # Keras' BatchNormalization layers
    x = _images(32)
    np.testing.assert_array_equal(_outputs(keras_resnets.load_weights(_tiny(), path), x),
                                  _outputs(model, x))


def test_keras_applications_h5_gives_keras_applications_outputs(tmp_path):
    source = keras.applications.ResNet50V2(weights=None, input_shape=(64, 64, 3),
                                           classifier_activation=None)
    _randomize(source)
    path = tmp_path / "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5"
    _save_legacy_h5(source, path)
    target = keras_resnets.ResNet50V2(layer_config="keras_applications", input_shape=(64, 64, 3),
                                      classifier_activation=None)
    keras_resnets.load_weights(target, path)
    x = _images(64)
    expected = _outputs(source, x)
    assert 0.1 < np.abs(expected).max() < 100
    assert np.abs(_outputs(target, x) - expected).max() < 1e-4

    with pytest.raises(ValueError, match=r"layer_config='keras_applications'"):
        keras_resnets.load_weights(keras_resnets.ResNet50V2(input_shape=(64, 64, 3)), path)


# torchvision state dicts ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def torch_resnet18():
    module = torch_resnets.resnet(18).eval()
    _torch_randomize(module)
    return module


@pytest.mark.parametrize("file_format", ["pth", "legacy_pth", "safetensors"])
def test_torchvision_files_give_torch_outputs(tmp_path, torch_resnet18, file_format):
    path = tmp_path / f"resnet18.{file_format.split('_')[-1]}"
    if file_format == "safetensors":
        torch_files.save_safetensors(path, _state(torch_resnet18))
    else:
        torch.save(torch_resnet18.state_dict(), path,
                   _use_new_zipfile_serialization=file_format == "pth")
    model = keras_resnets.ResNet18(input_shape=(65, 65, 3), classifier_activation=None)
    keras_resnets.load_weights(model, path)
    x = _images(65)
    expected = _torch_outputs(torch_resnet18, x)
    assert np.abs(_outputs(model, x) - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())


def test_torchvision_file_into_a_backbone_or_another_head(tmp_path, torch_resnet18):
    path = tmp_path / "resnet18.pth"
    torch.save(torch_resnet18.state_dict(), path)
    backbone = keras_resnets.load_weights(
        keras_resnets.ResNet18(include_top=False, pooling="avg"), path)
    np.testing.assert_array_equal(backbone.get_layer("conv5_block2_2_conv").kernel.numpy(),
                                  torch_resnet18.layer4[1].conv2.weight.detach().numpy()
                                  .transpose(2, 3, 1, 0))
    head = keras_resnets.ResNet18(classes=5)
    with pytest.raises(ValueError, match=r"'predictions' has weight shapes \[\(512, 5\), \(5,\)\] "
                                         r"but the file's 'fc.weight' has \[\(512, 1000\)"):
        keras_resnets.load_weights(head, path)
    keras_resnets.load_weights(head, path, skip_classifier=True)
    assert head.get_layer("predictions").kernel.shape == (512, 5)


def test_torchvision_mismatches_name_the_first_missing_and_extra_key(tmp_path, torch_resnet18):
    path = tmp_path / "resnet18.pth"
    torch.save(torch_resnet18.state_dict(), path)
    with pytest.raises(ValueError, match=r"the file lacks 'layer1.2.conv1.weight' for layer "
                                         r"'conv2_block3_1_conv' \(and 31 more layers\)"):
        keras_resnets.load_weights(keras_resnets.ResNet34(), path)

    state = _state(torch_resnets.resnet(34))
    state["extra.weight"] = np.zeros(3, "float32")
    torch_files.save_safetensors(tmp_path / "resnet34.safetensors", state)
    with pytest.raises(ValueError, match=r"the file's 'layer1.2.conv1.weight' fits no layer of "
                                         r"the model \(and 32 more entries\)"):
        keras_resnets.load_weights(keras_resnets.ResNet18(), tmp_path / "resnet34.safetensors")

    state = _state(torch_resnet18)
    del state["layer2.0.bn1.running_var"]
    torch_files.save_safetensors(tmp_path / "partial.safetensors", state)
    with pytest.raises(ValueError, match=r"lacks 'layer2.0.bn1.running_var' for layer "
                                         r"'conv3_block1_1_bn'"):
        keras_resnets.load_weights(keras_resnets.ResNet18(), tmp_path / "partial.safetensors")


def test_nothing_is_written_when_a_file_does_not_fit(tmp_path, torch_resnet18):
    path = tmp_path / "resnet18.pth"
    torch.save(torch_resnet18.state_dict(), path)
    model = keras_resnets.ResNet18(classes=10)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError):
        keras_resnets.load_weights(model, path)
    for after, original in zip(model.get_weights(), before):
        np.testing.assert_array_equal(after, original)


def test_unknown_weights_are_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"nope.pth': no such file"):
        keras_resnets.load_weights(_tiny(), str(tmp_path / "nope.pth"))
    with pytest.raises(ValueError, match=r"neither a file nor a tag"):
        keras_resnets.load_weights(_tiny(), "imagenet")
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ValueError, match=r"Cannot tell the layout"):
        keras_resnets.load_weights(_tiny(), tmp_path / "x.txt")
