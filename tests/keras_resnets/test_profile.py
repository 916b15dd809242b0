"""architecture_cost: the built model's parameters and multiply-adds without building it."""

import keras
import pytest

import keras_resnets
from keras_resnets import registry
from keras_resnets.profile import architecture_cost


def _split(arguments):
    """ResNet(...) arguments -> (architecture arguments, the others)."""
    architecture = {k: v for k, v in arguments.items() if k in registry.ARCHITECTURE_ARGUMENTS}
    return architecture, {k: v for k, v in arguments.items() if k not in architecture}


_TINY_CIFAR = dict(stem="cifar", stage_widths=(4, 8, 16))
_TINY_IMAGENET = dict(stage_blocks=(1, 1, 1, 1), stage_widths=(4, 8, 8, 16))
CASES = {
    "basic, option A": dict(depth=8, shortcut="A", **_TINY_CIFAR),
    "bottleneck, option C": dict(depth=11, block="bottleneck", shortcut="C", **_TINY_CIFAR),
    "plain, wider": dict(depth=8, plain=True, width_multiplier=1.5, **_TINY_CIFAR),
    "resnext, keras.applications' biases and 1x1 strides": dict(
        depth=11, block="bottleneck", cardinality=2, bottleneck_width=32,
        layer_config="keras_applications", **_TINY_CIFAR),
    "pre-activation, keras.applications ResNetV2 (bias 'auto', downsample in the last block)":
        dict(depth=11, block="bottleneck", unit="full_preactivation",
             layer_config="keras_applications", **_TINY_CIFAR),
    "every ordering's extra layers": dict(depth=8, unit="bn_after_addition", **_TINY_CIFAR),
    "imagenet stem, odd size, 7 classes": dict(input_shape=(45, 37, 1), classes=7,
                                                **_TINY_IMAGENET),
    "dilated to output stride 8": dict(input_shape=(64, 64, 3), output_stride=8,
                                       **_TINY_IMAGENET),
    "feature map, no head": dict(include_top=False, input_shape=(40, 40, 3), **_TINY_IMAGENET),
    "max pooling head": dict(include_top=False, pooling="max", input_shape=(33, 33, 3),
                             **_TINY_IMAGENET),
    "overrides": dict(depth=8, overrides={"*_bn": {"center": False}, "conv1_conv": {
        "use_bias": True}, "conv2_block1_1_bn": {"trainable": False}}, **_TINY_CIFAR),
    "stock Keras layers": dict(depth=11, block="bottleneck", cardinality=2, layer_classes={
        "batch_norm": keras.layers.BatchNormalization, "grouped_conv": keras.layers.Conv2D},
        **_TINY_CIFAR),
    "channels first": dict(depth=8, data_format="channels_first", input_shape=(3, 24, 24),
                           **_TINY_CIFAR),
}


@pytest.mark.parametrize("arguments", CASES.values(), ids=CASES)
def test_architecture_cost_equals_the_built_models_profile(arguments):
    architecture, others = _split(arguments)
    cost = architecture_cost(keras_resnets.resolve_architecture(**architecture), **others)
    assert cost == keras_resnets.profile(keras_resnets.ResNet(**arguments))


def test_architecture_cost_defaults_are_the_stems():
    arch = registry.architecture_of("resnet50")
    cost = architecture_cost(arch)
    assert (cost.params, cost.trainable_params, cost.macs) == (25_610_152, 25_557_032,
                                                               4_089_184_256)
    assert architecture_cost(arch, input_shape=(3, 224, 224), data_format="channels_first") == (
        cost)


def test_architecture_cost_needs_a_fixed_input_size():
    arch = registry.architecture_of("resnet20")
    with pytest.raises(ValueError, match=(
            r"architecture_cost needs a fixed input size; got input_shape=None with "
            r"include_top=False\. Give input_shape=\(height, width, channels\)")):
        architecture_cost(arch, include_top=False)


def test_architecture_cost_checks_arguments_as_resnet_does():
    arch = registry.architecture_of("resnet20")
    with pytest.raises(ValueError, match=r"pooling must be one of \[None, 'avg', 'max'\]; "
                                         r"got 'sum'\."):
        architecture_cost(arch, include_top=False, input_shape=(32, 32, 3), pooling="sum")
    with pytest.raises(ValueError, match=r"overrides pattern\(s\) \['nothing\*'\] matched no "
                                         r"layer of this model"):
        architecture_cost(arch, overrides={"nothing*": {"center": False}})


class _Scale(keras.layers.Layer):
    """A layer of a kind architecture_cost does not know."""

    def __init__(self, axis=-1, momentum=0.9, epsilon=1e-5, gamma_initializer="ones", **kwargs):
        super().__init__(**kwargs)

    def call(self, inputs):
        return inputs


def test_architecture_cost_names_a_layer_class_it_cannot_count():
    arch = registry.architecture_of("resnet20")
    with pytest.raises(ValueError, match=(
            r"architecture_cost cannot count layer 'conv1_bn' of class _Scale; it counts "
            r"subclasses of \['Conv2D', 'BatchNormalization', 'Dense', ")):
        architecture_cost(arch, layer_classes={"batch_norm": _Scale})
