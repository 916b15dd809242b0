"""The named models: each row holds the `ResNet(...)` arguments that define it (data, not code)."""

from typing import Any, Dict, NamedTuple


class Spec(NamedTuple):
    paper: str  # a key of PAPERS
    arguments: Dict[str, Any]  # keyword arguments of keras_resnets.ResNet


_V1 = "He et al. 2015, Deep Residual Learning for Image Recognition"
_V2 = "He et al. 2016, Identity Mappings in Deep Residual Networks"
_NEXT = "Xie et al. 2016, Aggregated Residual Transformations for Deep Neural Networks"
_PREACT = dict(unit="full_preactivation")
_CIFAR_NEXT = dict(stem="cifar", depth=29, block="bottleneck", stage_widths=(64, 128, 256),
                   bottleneck_width=64)

PAPERS = {"v1": _V1, "v2": _V2, "resnext": _NEXT}

MODEL_SPECS = {
    # ResNet v1 on ImageNet (He et al. 2015, Table 1; ResNet-200 from He et al. 2016).
    **{f"resnet{d}": Spec("v1", dict(stem="imagenet", depth=d))
       for d in (18, 34, 50, 101, 152, 200)},
    # ResNet v1 on CIFAR-10 with option A shortcuts (He et al. 2015, Section 4.2, Table 6).
    **{f"resnet{d}": Spec("v1", dict(stem="cifar", depth=d, shortcut="A"))
       for d in (20, 32, 44, 56, 110, 1202)},
    # Pre-activation (full pre-activation units) on ImageNet (He et al. 2016, Table 5).
    **{f"resnet{d}v2": Spec("v2", dict(stem="imagenet", depth=d, **_PREACT))
       for d in (50, 101, 152, 200)},
    # Pre-activation on CIFAR (He et al. 2016, Tables 2-4): basic 110, bottleneck 164 and 1001.
    "preact_resnet110": Spec("v2", dict(stem="cifar", depth=110, **_PREACT)),
    **{f"preact_resnet{d}": Spec("v2", dict(stem="cifar", depth=d, block="bottleneck", **_PREACT))
       for d in (164, 1001)},
    # ResNeXt on ImageNet (Xie et al. 2016, Tables 1, 3, 4) and torchvision's 32x8d.
    "resnext50_32x4d": Spec("resnext", dict(stem="imagenet", depth=50, cardinality=32,
                                        bottleneck_width=4)),
    **{f"resnext101_{c}x{w}d": Spec("resnext", dict(stem="imagenet", depth=101, cardinality=c,
                                                bottleneck_width=w))
       for c, w in ((32, 4), (32, 8), (64, 4), (2, 64))},
    # ResNeXt-29 on CIFAR (Xie et al. 2016, Table 7).
    **{f"resnext29_{c}x64d": Spec("resnext", dict(cardinality=c, **_CIFAR_NEXT)) for c in (8, 16)},
    # Plain networks for the degradation experiment (He et al. 2015, Figures 4 and 6).
    **{f"plain{d}": Spec("v1", dict(stem="imagenet", depth=d, plain=True)) for d in (18, 34)},
    **{f"plain{d}": Spec("v1", dict(stem="cifar", depth=d, plain=True))
       for d in (20, 32, 44, 56, 110)},
}
