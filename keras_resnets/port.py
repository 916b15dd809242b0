"""Weight porting into keras_resnets models from keras.applications and torchvision layouts.

Both functions check the whole mapping before writing anything: every weighted layer of the
target must receive weights of the right shapes and every source weight must be used, so a
model built with the wrong settings fails loudly instead of loading half its weights.
"""

import re
from typing import Dict, Mapping

import keras
import numpy as np


def _weighted_layers(model: keras.Model) -> Dict[str, keras.layers.Layer]:
    return {layer.name: layer for layer in model.layers if layer.weights}


def _assign(target: keras.Model, arrays: Mapping[str, list], source_description: str):
    """Set each target layer's weights from `arrays` (layer name -> list of arrays)."""
    layers = _weighted_layers(target)
    problems = []
    missing = sorted(set(layers) - set(arrays))
    if missing:
        problems.append(f"no source weights for {len(missing)} layer(s): {missing[:8]}")
    unused = sorted(set(arrays) - set(layers))
    if unused:
        problems.append(f"{len(unused)} source layer(s) without a target layer: {unused[:8]}")
    for name in sorted(set(layers) & set(arrays)):
        expected = [tuple(w.shape) for w in layers[name].weights]
        given = [tuple(np.shape(a)) for a in arrays[name]]
        if expected != given:
            problems.append(f"layer '{name}' expects shapes {expected}, the source has {given}")
    if problems:
        raise ValueError(
            f"Cannot port {source_description} into model '{target.name}': "
            + "; ".join(problems[:10])
            + ". Build the target with the matching settings (see keras_resnets.port)."
        )
    for name, layer in layers.items():
        layer.set_weights(arrays[name])
    return target


def from_keras_applications(source: keras.Model, target: keras.Model) -> keras.Model:
    """Copy the weights of a keras.applications ResNet / ResNetV2 into a keras_resnets model.

    The target must be built with `layer_config="keras_applications"` (stride in the first 1x1,
    conv biases, BN epsilon 1.001e-5; for V2, the strided last block of each stage), under
    which layer names and weight shapes are those of keras.applications.

    Args:
        source: `keras.Model`. E.g. `keras.applications.ResNet50(weights="imagenet")`.
        target: `keras.Model`. E.g. `keras_resnets.ResNet50(layer_config="keras_applications")`.

    Returns:
        The target model, with the source's weights.

    Example:

    >>> import keras, keras_resnets
    >>> source = keras.applications.ResNet50(weights=None)
    >>> target = keras_resnets.ResNet50(layer_config="keras_applications")
    >>> from_keras_applications(source, target).name
    'resnet50'
    """
    arrays = {name: layer.get_weights() for name, layer in _weighted_layers(source).items()}
    return _assign(target, arrays, f"keras.applications model '{source.name}'")


_TORCH_LAYER = re.compile(r"^layer(\d+)\.(\d+)\.(conv|bn)(\d+)$")
_TORCH_DOWNSAMPLE = re.compile(r"^layer(\d+)\.(\d+)\.downsample\.([012])$")
_TORCH_SE = re.compile(r"^layer(\d+)\.(\d+)\.se\.fc([12])$")
# timm's deep stem (`stem_type="deep"`): conv1 is a Sequential of conv, bn, relu, conv, bn,
# relu, conv; its final bn is bn1.
_DEEP_STEM = {"conv1.0": "conv1_1_conv", "conv1.1": "conv1_1_bn", "conv1.3": "conv1_2_conv",
              "conv1.4": "conv1_2_bn", "conv1.6": "conv1_3_conv"}


def avg_down_layout(keys) -> bool:
    """Whether state-dict `keys` have timm's `avg_down` projections (`downsample.0` the
    pooling, `.1` the conv, `.2` the bn) rather than torchvision's (`.0` conv, `.1` bn)."""
    return any(".downsample.2." in key for key in keys)


def _keras_layer_name(torch_module: str, avg_down: bool = False) -> str:
    """torchvision / timm module path -> keras_resnets layer name (`avg_down`: see
    `avg_down_layout`)."""
    if torch_module in ("conv1", "bn1"):
        return "conv1_conv" if torch_module == "conv1" else "conv1_bn"
    if torch_module in ("fc", "linear"):
        return "predictions"
    if torch_module in _DEEP_STEM:
        return _DEEP_STEM[torch_module]
    match = _TORCH_LAYER.match(torch_module)
    if match:
        stage, block, kind, index = match.groups()
        return f"conv{int(stage) + 1}_block{int(block) + 1}_{index}_{kind}"
    match = _TORCH_SE.match(torch_module)
    if match:
        stage, block, index = match.groups()
        part = "reduce" if index == "1" else "expand"
        return f"conv{int(stage) + 1}_block{int(block) + 1}_se_{part}"
    match = _TORCH_DOWNSAMPLE.match(torch_module)
    if match and (match.group(3) != "2" or avg_down):
        stage, block, index = match.groups()
        kind = "conv" if int(index) == int(avg_down) else "bn"
        return f"conv{int(stage) + 1}_block{int(block) + 1}_0_{kind}"
    raise ValueError(f"Unexpected module '{torch_module}' in a torchvision-style state dict.")


_KERAS_LAYER = re.compile(r"^conv(\d+)_block(\d+)_(\d+|se)_(conv|bn|reduce|expand)$")


def torchvision_module(layer_name: str, avg_down: bool = False):
    """keras_resnets layer name -> torchvision (or timm) module path (`None` where it has
    none); `avg_down` for timm's pooled projections.

    >>> torchvision_module("conv3_block1_0_conv"), torchvision_module("conv2_block2_3_bn")
    ('layer2.0.downsample.0', 'layer1.1.bn3')
    >>> torchvision_module("conv3_block1_0_conv", avg_down=True)
    'layer2.0.downsample.1'
    >>> torchvision_module("conv2_block1_se_reduce"), torchvision_module("conv1_2_conv")
    ('layer1.0.se.fc1', 'conv1.3')
    """
    fixed = {"conv1_conv": "conv1", "conv1_bn": "bn1", "predictions": "fc",
             **{keras_name: module for module, keras_name in _DEEP_STEM.items()}}
    if layer_name in fixed:
        return fixed[layer_name]
    match = _KERAS_LAYER.match(layer_name)
    if not match:
        return None
    stage, block, index, kind = match.groups()
    prefix = f"layer{int(stage) - 1}.{int(block) - 1}"
    if index == "se":
        return f"{prefix}.se.fc{1 if kind == 'reduce' else 2}"
    if index == "0":
        return f"{prefix}.downsample.{int(avg_down) + (0 if kind == 'conv' else 1)}"
    return f"{prefix}.{kind}{index}"


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch.Tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def from_torchvision(state_dict: Mapping[str, object], target: keras.Model) -> keras.Model:
    """Load a PyTorch state dict in torchvision's ResNet key layout into a keras_resnets model.

    Keys look like `conv1.weight`, `bn1.running_mean`, `layer1.0.conv1.weight`,
    `layer2.0.downsample.0.weight`, `fc.weight` (or `linear.weight`, as in the common CIFAR
    ResNets, whose option A shortcuts have no weights). timm's ResNets port too: SE modules
    (`layer1.0.se.fc1`, `.fc2`: build with `se_ratio`), the deep stem (`conv1.0` ... `conv1.6`:
    `stem="deep"`) and average-pooled projections (`downsample.1` conv, `downsample.2` bn:
    `avg_down=True`). Values are numpy arrays or torch tensors,
    so torch is not needed. Build the target with torchvision's settings (the defaults: stride
    in the 3x3, no conv bias, BN epsilon 1e-5); strided convolutions pad symmetrically as in
    PyTorch, so outputs match: on the transposed images for a channels-last target, on PyTorch's
    NCHW images themselves for a `data_format="channels_first"` one (Keras kernels are HWIO in
    both layouts).

    Args:
        state_dict: mapping of str to array. E.g. `torchvision.models.resnet50().state_dict()`.
        target: `keras.Model`. E.g. `keras_resnets.ResNet50()`.

    Returns:
        The target model, with the state dict's weights.

    Example:

    >>> import numpy as np, keras_resnets
    >>> model = keras_resnets.ResNet20()
    >>> weights = {"conv1.weight": np.zeros((16, 3, 3, 3))}
    >>> from_torchvision(weights, model)
    Traceback (most recent call last):
    ...
    ValueError: Cannot port a torchvision state dict into model 'resnet20': no source weights
    for 38 layer(s): ...
    """
    grouped: Dict[str, Dict[str, np.ndarray]] = {}
    avg_down = avg_down_layout(state_dict)
    for key, value in state_dict.items():
        module, _, parameter = key.rpartition(".")
        if parameter == "num_batches_tracked":
            continue
        grouped.setdefault(_keras_layer_name(module, avg_down), {})[parameter] = _to_numpy(value)
    try:
        arrays = {name: _keras_order(name, parameters) for name, parameters in grouped.items()}
    except KeyError as missing:
        raise ValueError(f"The state dict lacks parameter {missing} of a module.") from None
    return _assign(target, arrays, "a torchvision state dict")


def _keras_order(name: str, parameters: Dict[str, np.ndarray]) -> list:
    """Torch parameters of one module -> the keras layer's weight list."""
    if name.endswith("_bn"):
        return [parameters[k] for k in ("weight", "bias", "running_mean", "running_var")]
    if name == "predictions":  # Linear: (out, in) -> (in, out)
        return [parameters["weight"].T] + ([parameters["bias"]] if "bias" in parameters else [])
    kernel = parameters["weight"].transpose(2, 3, 1, 0)  # OIHW -> HWIO (per group for groups > 1)
    return [kernel] + ([parameters["bias"]] if "bias" in parameters else [])
