"""Weight files of every supported layout, read by layer and loaded into a keras_resnets model.

Layouts (detected from the file's content, not its name):

- `"keras"`: a Keras 3 `.weights.h5` (`model.save_weights`), whose entries are keyed by layer
  class and position (`layers/conv2d_3/vars/0`), as Keras itself loads them.
- `"keras_applications"`: a legacy HDF5 weights file keyed by layer name, as keras.applications
  publishes (Keras 2's `save_weights` to `.h5`); it fits a model built with
  `layer_config="keras_applications"`.
- `"torchvision_pth"`: a PyTorch state dict in torchvision's ResNet key layout (`conv1.weight`,
  `layer1.0.bn1.running_mean`, `fc.weight`), read without PyTorch (`keras_resnets.torch_files`).
- `"torchvision_safetensors"`: the same keys in a `.safetensors` file (timm's ResNets use them).

Loading checks the whole mapping before writing anything: every weighted layer of the model
must get weights of the right shapes from the file and every entry of the file must be used;
otherwise the error names the first missing and the first extra key.
"""

import dataclasses
import os
import re
import zipfile
from typing import Dict, List, Optional

import keras
import numpy as np

from keras_resnets import port, torch_files

LAYOUTS = ("keras", "keras_applications", "torchvision_pth", "torchvision_safetensors")
CLASSIFIER = "predictions"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class WeightsMismatchError(ValueError):
    """A weight file whose entries do not fit the model."""


@dataclasses.dataclass
class Source:
    """Weights read from a file, grouped by the keras_resnets layer they belong to.

    Attributes:
        layout: one of `LAYOUTS`.
        arrays: layer name -> its weights, in the order of `layer.weights`.
        keys: layer name -> the file's key for it (for messages).
        expected_keys: layer name -> the key the file would hold for it (for messages).
        unmatched: keys of the file that belong to no layer name (in file order).
        incomplete: layer name -> the first key of that layer the file lacks.
    """

    layout: str
    arrays: Dict[str, List[np.ndarray]]
    keys: Dict[str, str]
    expected_keys: Dict[str, str] = dataclasses.field(default_factory=dict)
    unmatched: List[str] = dataclasses.field(default_factory=list)
    incomplete: Dict[str, str] = dataclasses.field(default_factory=dict)


def detect_layout(path) -> str:
    """The layout of the weight file at `path` (one of `LAYOUTS`), from its content.

    Raises:
        ValueError: the file is in none of them.
    """
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(_HDF5_SIGNATURE):
        import h5py

        with h5py.File(path, "r") as file:
            root = file["model_weights"] if "model_weights" in file else file
            if "layer_names" in root.attrs:
                return "keras_applications"
            if "layers" in file or "vars" in file:
                return "keras"
        raise ValueError(f"{path} is an HDF5 file but neither a Keras .weights.h5 nor a "
                         "keras.applications (legacy Keras) weights file.")
    if zipfile.is_zipfile(path) or torch_files._is_legacy_pth(_head(path, 64)):
        return "torchvision_pth"
    if len(head) >= 9 and head[8:9] == b"{":
        return "torchvision_safetensors"
    raise ValueError(
        f"Cannot tell the layout of {path}: it is not a Keras .weights.h5, a keras.applications "
        ".h5, a PyTorch .pth (torch.save) or a .safetensors file.")


def _head(path, size):
    with open(path, "rb") as handle:
        return handle.read(size)


def read(path, model: keras.Model, layout: Optional[str] = None) -> Source:
    """Read the weights at `path`, grouped by the layer names of `model`."""
    layout = layout or detect_layout(path)
    if layout == "keras":
        return _read_keras(path, model)
    if layout == "keras_applications":
        return _read_keras_applications(path)
    if layout == "torchvision_pth":
        return from_state_dict(torch_files.read_pth(path), layout)
    if layout == "torchvision_safetensors":
        return from_state_dict(torch_files.read_safetensors(path), layout)
    raise ValueError(f"layout must be one of {list(LAYOUTS)}; got {layout!r}.")


def _snake_case(name):
    """Keras' `naming.to_snake_case`, by which `.weights.h5` files key layers."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


# Layers whose weights are those of a Keras layer (keras_resnets.portable swaps them).
_KERAS_EQUIVALENTS = {"fused_batch_normalization": "batch_normalization"}


def _keras_keys(model) -> Dict[str, str]:
    """`.weights.h5` group of each layer of `model`: `layers/<class>_<n>`, numbered per class
    in layer order, as Keras' saving library names them."""
    used, keys = {}, {}
    for layer in model.layers:
        base = _snake_case(type(layer).__name__)
        base = _KERAS_EQUIVALENTS.get(base, base)
        count = used.get(base, -1) + 1
        used[base] = count
        keys[layer.name] = f"layers/{base}" + (f"_{count}" if count else "")
    return keys


def _read_keras(path, model) -> Source:
    import h5py

    expected = _keras_keys(model)
    by_key = {key: name for name, key in expected.items()}
    arrays, keys, unmatched = {}, {}, []
    with h5py.File(path, "r") as file:
        groups = file["layers"] if "layers" in file else {}
        for group_name in groups:
            group = groups[group_name]
            base = re.sub(r"_\d+$", "", group_name)
            number = group_name[len(base):]
            key = "layers/" + _KERAS_EQUIVALENTS.get(base, base) + number
            values = _keras_vars(group)
            if not values:
                continue
            # A keras_resnets model's only Dense layer is its classifier, which a model
            # built without one (include_top=False) lacks.
            name = by_key.get(key, CLASSIFIER if base == "dense" else None)
            if name is not None and name not in arrays:
                arrays[name] = values
                keys[name] = f"layers/{group_name}/vars"
            else:
                unmatched.append(f"layers/{group_name}/vars")
    unmatched.sort(key=lambda key: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)])
    return Source("keras", arrays, keys,
                  expected_keys={name: f"{key}/vars" for name, key in expected.items()},
                  unmatched=unmatched)


def _keras_vars(group) -> List[np.ndarray]:
    if "vars" not in group:
        return []
    variables = group["vars"]
    return [np.asarray(variables[str(i)]) for i in range(len(variables))]


def _read_keras_applications(path) -> Source:
    import h5py

    arrays, keys = {}, {}
    with h5py.File(path, "r") as file:
        root = file["model_weights"] if "model_weights" in file else file
        for raw in root.attrs["layer_names"]:
            name = raw.decode() if isinstance(raw, bytes) else str(raw)
            group = root[name]
            weight_names = [w.decode() if isinstance(w, bytes) else str(w)
                            for w in group.attrs.get("weight_names", [])]
            if weight_names:
                arrays[name] = [np.asarray(group[w]) for w in weight_names]
                keys[name] = name
    return Source("keras_applications", arrays, keys, expected_keys={})


def from_state_dict(state_dict, layout="torchvision_pth") -> Source:
    """Group a torchvision-layout state dict (arrays or tensors) by keras_resnets layer."""
    modules: Dict[str, Dict[str, np.ndarray]] = {}
    module_keys: Dict[str, str] = {}
    unmatched = []
    avg_down = port.avg_down_layout(state_dict)
    for key, value in state_dict.items():
        module, _, parameter = key.rpartition(".")
        if parameter == "num_batches_tracked":
            continue
        try:
            name = port._keras_layer_name(module, avg_down)
        except ValueError:
            unmatched.append(key)
            continue
        modules.setdefault(name, {})[parameter] = port._to_numpy(value)
        module_keys.setdefault(name, key)
    arrays, incomplete = {}, {}
    for name, parameters in modules.items():
        module = module_keys[name].rpartition(".")[0]
        needed = (("weight", "bias", "running_mean", "running_var") if name.endswith("_bn")
                  else ("weight",))
        lacking = [p for p in needed if p not in parameters]
        extra = sorted(set(parameters) - set(needed) - {"bias"})
        if lacking:
            incomplete[name] = f"{module}.{lacking[0]}"
            continue
        if extra:
            unmatched.append(f"{module}.{extra[0]}")
            continue
        arrays[name] = port._keras_order(name, parameters)
    return Source(layout, arrays, module_keys, unmatched=unmatched, incomplete=incomplete)


def _expected_key(source: Source, name: str) -> str:
    if source.layout.startswith("torchvision"):
        module = port.torchvision_module(name)
        return f"'{module}.weight'" if module else f"a key for layer '{name}'"
    if source.layout == "keras_applications":
        return f"'{name}'"
    return f"'{source.expected_keys.get(name, name)}'"


def assign(model: keras.Model, source: Source, skip_classifier: bool = False,
           description: str = "the weights") -> keras.Model:
    """Set the weights of `model` from `source`, after checking that they fit entirely.

    The source's classifier (layer `predictions`) is ignored when `skip_classifier` is set (the
    model's own is then left as it is) or when the model has no classifier (a backbone built
    with `include_top=False`).
    """
    layers = {layer.name: layer for layer in model.layers if layer.weights}
    arrays = dict(source.arrays)
    incomplete = dict(source.incomplete)
    if skip_classifier or CLASSIFIER not in layers:
        arrays.pop(CLASSIFIER, None)
        incomplete.pop(CLASSIFIER, None)
        layers.pop(CLASSIFIER, None)
    problems = []
    missing = [name for name in layers if name not in arrays]
    if missing:
        first = missing[0]
        key = incomplete.get(first)
        what = f"'{key}'" if key else _expected_key(source, first)
        problems.append(f"the file lacks {what} for layer '{first}'"
                        + (f" (and {len(missing) - 1} more layers)" if len(missing) > 1 else ""))
    extra = [source.keys.get(name, name) for name in arrays if name not in layers]
    extra += source.unmatched
    if extra:
        problems.append(f"the file's '{extra[0]}' fits no layer of the model"
                        + (f" (and {len(extra) - 1} more entries)" if len(extra) > 1 else ""))
    for name, layer in layers.items():
        if name not in arrays:
            continue
        expected = [tuple(w.shape) for w in layer.weights]
        given = [tuple(np.shape(a)) for a in arrays[name]]
        if expected != given:
            problems.append(f"layer '{name}' has weight shapes {expected} but the file's "
                            f"'{source.keys.get(name, name)}' has {given}")
            break
    if problems:
        hint = _hint(source, model)
        raise WeightsMismatchError(
            f"{description} ({source.layout} layout) do not fit model '{model.name}': "
            + "; ".join(problems) + "." + hint)
    for name, layer in layers.items():
        layer.set_weights(arrays[name])
    return model


def _hint(source, model):
    if source.layout == "keras_applications":
        return (" keras.applications weights need a model built with "
                "layer_config='keras_applications'.")
    if source.layout.startswith("torchvision"):
        return (" torchvision weights need a model built with torchvision's settings (the "
                "default layer_config).")
    return " A .weights.h5 loads into the architecture it was saved from."


def load(model: keras.Model, path, skip_classifier: bool = False) -> keras.Model:
    """Load the weight file at `path` (any layout of `LAYOUTS`) into `model`."""
    path = os.fspath(path)
    try:
        layout = detect_layout(path)
        source = read(path, model, layout)
    except torch_files.UnsupportedFileError as error:
        raise ValueError(f"Cannot read {path}: {error}") from None
    return assign(model, source, skip_classifier, description=f"The weights in {path}")
