"""Weight porting: keras.applications twins and torchvision state dicts give equal outputs."""

import keras
import numpy as np
import pytest

import keras_resnets
from keras_resnets import port

KERAS_TWINS = [
    (keras_resnets.ResNet50, keras.applications.ResNet50),
    (keras_resnets.ResNet101, keras.applications.ResNet101),
    (keras_resnets.ResNet152, keras.applications.ResNet152),
    (keras_resnets.ResNet50V2, keras.applications.ResNet50V2),
    (keras_resnets.ResNet101V2, keras.applications.ResNet101V2),
    (keras_resnets.ResNet152V2, keras.applications.ResNet152V2),
]


def _randomize(model, seed=0):
    """Random weights everywhere, scaled so that activations stay of order one through the
    network (kernels ~ 1/sqrt(fan-in), residual branches ending small), with plausible
    batch-norm statistics."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for weight in layer.weights:
            shape = tuple(weight.shape)
            if "gamma" in weight.path or "variance" in weight.path:
                value = rng.uniform(0.5, 1.5, size=shape)
            elif len(shape) > 1:  # a kernel
                scale = 1 / np.sqrt(np.prod(shape[:-1]))
                if layer.name.endswith("_3_conv"):  # the end of a residual branch
                    scale *= 0.2
                value = rng.normal(scale=scale, size=shape)
            else:
                value = rng.normal(scale=0.05, size=shape)
            values.append(value.astype("float32"))
        if values:
            layer.set_weights(values)


def _weight_shapes(model):
    return {layer.name: [tuple(w.shape) for w in layer.weights]
            for layer in model.layers if layer.weights}


@pytest.mark.parametrize("ours, theirs", KERAS_TWINS, ids=lambda f: getattr(f, "__name__", ""))
def test_keras_applications_twins_port_with_equal_outputs(ours, theirs):
    source = theirs(weights=None, classifier_activation=None)
    target = ours(layer_config="keras_applications", classifier_activation=None)
    assert _weight_shapes(target) == _weight_shapes(source)
    assert target.count_params() == source.count_params()
    _randomize(source)
    port.from_keras_applications(source, target)
    x = np.random.default_rng(1).normal(size=(2, 224, 224, 3)).astype("float32")
    expected = np.asarray(source(x, training=False))
    difference = np.abs(np.asarray(target(x, training=False)) - expected)
    assert 0.1 < np.abs(expected).max() < 100  # logits of a sensible scale
    assert difference.max() < 1e-4


def test_keras_applications_port_refuses_other_settings():
    source = keras.applications.ResNet50(weights=None)
    with pytest.raises(ValueError, match=r"layer 'conv1_conv' expects shapes \[\(7, 7, 3, 64\)\], "
                                         r"the source has \[\(7, 7, 3, 64\), \(64,\)\]"):
        port.from_keras_applications(source, keras_resnets.ResNet50())


torch = pytest.importorskip("torch")
from bench import torch_resnets  # noqa: E402  (needs torch)

TORCH_TWINS = {
    "resnet18": (lambda: torch_resnets.resnet(18), keras_resnets.ResNet18),
    "resnet34": (lambda: torch_resnets.resnet(34), keras_resnets.ResNet34),
    "resnet50": (lambda: torch_resnets.resnet(50), keras_resnets.ResNet50),
    "resnet101": (lambda: torch_resnets.resnet(101), keras_resnets.ResNet101),
    "resnet152": (lambda: torch_resnets.resnet(152), keras_resnets.ResNet152),
    "resnext50_32x4d": (lambda: torch_resnets.resnet(50, groups=32, width_per_group=4),
                        keras_resnets.ResNeXt50),
    "resnext101_32x8d": (lambda: torch_resnets.resnet(101, groups=32, width_per_group=8),
                         lambda **kw: keras_resnets.ResNeXt101(bottleneck_width=8, **kw)),
    "resnet20": (lambda: torch_resnets.cifar_resnet(20), keras_resnets.ResNet20),
    "resnet56": (lambda: torch_resnets.cifar_resnet(56), keras_resnets.ResNet56),
}


def _torch_randomize(module, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for submodule in module.modules():
            for name, tensor in [*submodule.named_parameters(recurse=False),
                                 *submodule.named_buffers(recurse=False)]:
                if name == "num_batches_tracked":
                    continue
                positive = isinstance(submodule, torch.nn.BatchNorm2d) and name in (
                    "weight", "running_var")
                random = torch.rand if positive else torch.randn
                tensor.copy_(random(tensor.shape, generator=generator) * (1 if positive else 0.05)
                             + (0.5 if positive else 0))


@pytest.mark.parametrize("name", sorted(TORCH_TWINS))
def test_torchvision_state_dict_ports_with_equal_outputs(name):
    make_torch, make_keras = TORCH_TWINS[name]
    reference = make_torch().eval()
    _torch_randomize(reference)
    cifar = name in ("resnet20", "resnet56")
    size = 32 if cifar else 97  # an odd size: stride-2 padding must match PyTorch's
    model = make_keras(input_shape=(size, size, 3), classifier_activation=None)
    state = {key: value.numpy() for key, value in reference.state_dict().items()}
    port.from_torchvision(state, model)
    x = np.random.default_rng(2).normal(size=(2, size, size, 3)).astype("float32")
    with torch.no_grad():
        expected = reference(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
    actual = np.asarray(model(x, training=False))
    assert np.abs(actual - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())


def test_torch_tensors_are_accepted_directly():
    reference = torch_resnets.cifar_resnet(20).eval()
    model = port.from_torchvision(reference.state_dict(), keras_resnets.ResNet20())
    np.testing.assert_array_equal(model.get_layer("predictions").kernel.numpy(),
                                  reference.linear.weight.detach().numpy().T)


def test_torchvision_port_reports_missing_and_unused_weights():
    state = torch_resnets.resnet(18).state_dict()
    missing = r"no source weights for 32 layer\(s\): \['conv2_block3_1_bn'"
    with pytest.raises(ValueError, match=missing):
        port.from_torchvision(state, keras_resnets.ResNet34())
    del state["layer1.0.bn1.running_var"]
    with pytest.raises(ValueError, match=r"lacks parameter 'running_var'"):
        port.from_torchvision(state, keras_resnets.ResNet18())
    state = {"layer9.x.conv1.weight": np.zeros(1)}
    with pytest.raises(ValueError, match=r"Unexpected module 'layer9.x.conv1'"):
        port.from_torchvision(state, keras_resnets.ResNet18())
