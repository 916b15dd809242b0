"""Parameter and multiply-add (FLOP) counting, as the papers count them."""

import dataclasses
import math

import keras


@dataclasses.dataclass(frozen=True)
class ModelProfile:
    """What a model costs.

    Attributes:
        params: all weights, including batch-norm moving statistics (`model.count_params()`).
        trainable_params: trainable weights only (what PyTorch's `numel` sum and the papers
            report, since running statistics are buffers there).
        macs: multiply-accumulates of one forward pass of one image through the convolutions
            and dense layers (the papers' "FLOPs"; batch norm, activations and additions are
            not counted).
    """

    params: int
    trainable_params: int
    macs: int

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def _layer_macs(layer) -> int:
    if isinstance(layer, keras.layers.Conv2D):
        if layer.data_format == "channels_first":
            _, filters, height, width = layer.output.shape
            in_channels = layer.input.shape[1] // layer.groups
        else:
            _, height, width, filters = layer.output.shape
            in_channels = layer.input.shape[-1] // layer.groups
        kernel_height, kernel_width = layer.kernel_size
        return height * width * kernel_height * kernel_width * in_channels * filters
    if isinstance(layer, keras.layers.Dense):
        return math.prod(layer.output.shape[1:-1]) * layer.input.shape[-1] * layer.units
    return 0


def profile(model: keras.Model) -> ModelProfile:
    """Count parameters and multiply-adds of a functional model with a fixed input size.

    Args:
        model: `keras.Model`. A functional model whose input height and width are known.

    Returns:
        A `ModelProfile`.

    Example:

    >>> import keras_resnets
    >>> result = keras_resnets.profile(keras_resnets.ResNet20())
    >>> result.trainable_params, round(result.macs / 1e6, 1)
    (269722, 40.6)
    """
    input_shape = model.inputs[0].shape
    if any(size is None for size in input_shape[1:]):
        raise ValueError(
            f"profile needs a fixed input size, but model '{model.name}' has input shape "
            f"{tuple(input_shape)}; build it with input_shape=(height, width, channels), or "
            "(channels, height, width) for channels-first models."
        )
    macs = sum(_layer_macs(layer) for layer in _all_layers(model))
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    return ModelProfile(model.count_params(), int(trainable), int(macs))


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def model_table(names=None, build=None) -> str:
    """A Markdown table of registered models: input size, parameters, multiply-adds and the
    tags of their published weights (`keras_resnets.list_weights()`).

    Args:
        names: list of str. Registry names. Defaults to every registered model, in spec order.
        build: callable. Builds a model from its name. Defaults to `keras_resnets.get_model`.
    """
    from keras_resnets import registry, specs, weights_table

    build = build or registry.get_model
    rows = [
        "| Model | Paper | Input | Parameters | Trainable | Multiply-adds | Pretrained |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for name in names or list(specs.MODEL_SPECS):
        model = build(name)
        result = profile(model)
        paper = specs.PAPERS[specs.MODEL_SPECS[name].paper].split(",")[0]
        pretrained = ", ".join(f"`{tag}`" for tag in weights_table.tags_of(name))
        channels_first = model.get_layer("conv1_conv").data_format == "channels_first"
        spatial = model.input_shape[2:4] if channels_first else model.input_shape[1:3]
        size = "x".join(str(d) for d in spatial)
        rows.append(f"| `{name}` | {paper} | {size} | {result.params:,} | "
                    f"{result.trainable_params:,} | {result.gmacs:.2f}G | {pretrained} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(model_table(), end="")
