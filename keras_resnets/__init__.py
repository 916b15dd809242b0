"""keras-resnets: every ResNet, pre-activation ResNet, ResNeXt, SE-ResNe(X)t, ResNet-D and Wide
ResNet as Keras 3 functional models.

>>> import keras_resnets
>>> model = keras_resnets.ResNeXt29(cardinality=16, include_top=False, pooling="avg")
>>> model.name, model.output_shape
('resnext29_16x64d', (None, 1024))
"""

from keras_resnets.blocks import ORDERINGS, SHORTCUTS
from keras_resnets.builder import ResNet, resolve_architecture
from keras_resnets.config import LayerConfig
from keras_resnets.features import feature_extractor
from keras_resnets.imagenet import decode_predictions, preprocess_input
from keras_resnets.layers import FusedBatchNormalization, GroupedConv2D, ZeroPadShortcut
from keras_resnets.portable import portable
from keras_resnets.pretrained import load_weights
from keras_resnets.profile import ModelProfile, architecture_cost, model_table, profile
from keras_resnets.registry import (
    WRN16_8,
    WRN28_10,
    Plain18,
    Plain20,
    Plain32,
    Plain34,
    Plain44,
    Plain56,
    Plain110,
    PreActResNet110,
    PreActResNet164,
    PreActResNet1001,
    ResNet18,
    ResNet20,
    ResNet32,
    ResNet34,
    ResNet44,
    ResNet50,
    ResNet50D,
    ResNet50V2,
    ResNet56,
    ResNet101,
    ResNet101D,
    ResNet101V2,
    ResNet110,
    ResNet152,
    ResNet152D,
    ResNet152V2,
    ResNet200,
    ResNet200V2,
    ResNet1202,
    ResNeXt29,
    ResNeXt50,
    ResNeXt101,
    SEResNet50,
    SEResNet101,
    SEResNet152,
    SEResNeXt50,
    SEResNeXt101,
    WideResNet,
    WideResNet50_2,
    WideResNet101_2,
    get_model,
    list_models,
    model_arguments,
)
from keras_resnets.weights_table import WeightEntry, list_weights, weight_entry

UNITS = tuple(ORDERINGS)

__all__ = [
    "LayerConfig",
    "ModelProfile",
    "ORDERINGS",
    "Plain110",
    "Plain18",
    "Plain20",
    "Plain32",
    "Plain34",
    "Plain44",
    "Plain56",
    "PreActResNet1001",
    "PreActResNet110",
    "PreActResNet164",
    "ResNeXt101",
    "ResNeXt29",
    "ResNeXt50",
    "ResNet",
    "ResNet101",
    "ResNet101V2",
    "ResNet110",
    "ResNet1202",
    "ResNet152",
    "ResNet152V2",
    "ResNet18",
    "ResNet20",
    "ResNet200",
    "ResNet200V2",
    "ResNet32",
    "ResNet34",
    "ResNet44",
    "ResNet50",
    "ResNet50V2",
    "ResNet56",
    "SHORTCUTS",
    "SEResNet50",
    "SEResNet101",
    "SEResNet152",
    "SEResNeXt50",
    "SEResNeXt101",
    "ResNet50D",
    "ResNet101D",
    "ResNet152D",
    "WideResNet50_2",
    "WideResNet101_2",
    "WRN28_10",
    "WRN16_8",
    "WideResNet",
    "UNITS",
    "ZeroPadShortcut",
    "FusedBatchNormalization",
    "GroupedConv2D",
    "architecture_cost",
    "feature_extractor",
    "WeightEntry",
    "decode_predictions",
    "get_model",
    "list_models",
    "list_weights",
    "load_weights",
    "model_arguments",
    "model_table",
    "portable",
    "preprocess_input",
    "profile",
    "resolve_architecture",
    "weight_entry",
]

__version__ = "0.1.0"
