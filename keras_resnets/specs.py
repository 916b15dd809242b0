"""The tables of the family (data, not code): block kinds, stems and the named models.

- `BLOCK_KINDS`: what a residual block is made of and which depths it gives.
- `STEMS`: the layers before the first stage and the defaults that go with them.
- `MODEL_SPECS`: each named model as the `ResNet(...)` arguments that define it.

The builder, the cost counter (`keras_resnets.profile`), the registry and the tuner read these
tables; adding a block kind or a stem is a new row here.
"""

import dataclasses
from typing import Any, Dict, Mapping, NamedTuple, Optional, Sequence, Tuple


@dataclasses.dataclass(frozen=True)
class BlockKind:
    """A kind of residual block: the convolutions of its branch and the depths it makes.

    Attributes:
        name: str. The `block` argument of `ResNet(...)`.
        kernel_sizes: tuple of int. The branch's convolutions in order. The inner ones have
            the stage's (group) width, the last one `expansion` times the stage width; the
            spatial ones (kernel > 1) carry the groups (ResNeXt's cardinality) and any
            dilation.
        expansion: int. Output channels per channel of stage width.
        aggregated: bool. Whether ResNeXt's `cardinality` and `bottleneck_width` apply (they
            set the inner convolutions' width and groups; Xie et al. 2016 aggregate
            bottleneck transformations only).
        imagenet_depths: dict. The ImageNet depths of this kind: depth -> blocks per stage.
    """

    name: str
    kernel_sizes: Tuple[int, ...]
    expansion: int
    aggregated: bool
    imagenet_depths: Mapping[int, Tuple[int, ...]]

    @property
    def layers(self) -> int:
        """Weighted layers per block: its convolutions."""
        return len(self.kernel_sizes)

    def depth(self, stage_blocks: Sequence[int]) -> int:
        """Weighted layers of a network: the stem's convolution, the blocks, the classifier."""
        return self.layers * sum(stage_blocks) + 2

    def uniform_blocks(self, depth: int, stages: int) -> Optional[Tuple[int, ...]]:
        """The same number of blocks n in each of `stages` stages giving `depth` (the CIFAR
        networks: 6n+2 with basic blocks, 9n+2 with bottlenecks), or `None` if none does."""
        per_block = self.layers * stages
        if depth < per_block + 2 or (depth - 2) % per_block:
            return None
        return ((depth - 2) // per_block,) * stages


BLOCK_KINDS = {
    # Per-stage block counts of the ImageNet depths (He et al. 2015, Table 1; ResNet-200 from
    # He et al. 2016).
    "basic": BlockKind("basic", kernel_sizes=(3, 3), expansion=1, aggregated=False,
                       imagenet_depths={10: (1, 1, 1, 1), 18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}),
    "bottleneck": BlockKind("bottleneck", kernel_sizes=(1, 3, 1), expansion=4, aggregated=True,
                            imagenet_depths={26: (2, 2, 2, 2), 50: (3, 4, 6, 3),
                                             101: (3, 4, 23, 3), 152: (3, 8, 36, 3),
                                             200: (3, 24, 36, 3)}),
}

# The kind of a network given by stage_blocks, or by a cifar-stem depth, without a block.
DEFAULT_BLOCK_KIND = "basic"


def imagenet_kind(depth: int) -> Optional[BlockKind]:
    """The block kind whose ImageNet depths hold `depth`, or `None`."""
    return next((kind for kind in BLOCK_KINDS.values() if depth in kind.imagenet_depths), None)


@dataclasses.dataclass(frozen=True)
class Stem:
    """The layers before the first stage and the defaults that go with them.

    `convs` convolutions of `kernel_size` (the first one strided by `strides`; the inner ones
    half the stem's width, as in timm's deep stem), then an optional 3x3/2 max pooling.
    `family` is the depth table the stem takes: `"imagenet"` (the depths of
    `BlockKind.imagenet_depths`) or `"cifar"` (6n+2 / 9n+2).
    """

    kernel_size: int
    strides: int
    max_pool: bool
    stage_widths: Tuple[int, ...]
    image_size: int
    classes: int
    convs: int = 1
    family: str = "imagenet"

    @property
    def stride(self) -> int:
        """The resolution the first stage receives: input size / stride."""
        return self.strides * (2 if self.max_pool else 1)


STEMS = {
    # 7x7/2 convolution + 3x3/2 max pooling, four stages (He et al. 2015, Table 1).
    "imagenet": Stem(7, 2, True, (64, 128, 256, 512), image_size=224, classes=1000),
    # 3x3 convolution, three stages, depth 6n+2 (basic) or 9n+2 (bottleneck) (Section 4.2).
    "cifar": Stem(3, 1, False, (16, 32, 64), image_size=32, classes=10, family="cifar"),
    # ResNet-C of He et al. 2019 ("Bag of Tricks", Figure 2b): three 3x3 convolutions (32, 32,
    # 64 filters, the first one strided) in place of the 7x7, then the max pooling.
    "deep": Stem(3, 2, True, (64, 128, 256, 512), image_size=224, classes=1000, convs=3),
}


class Spec(NamedTuple):
    paper: str  # a key of PAPERS
    arguments: Dict[str, Any]  # keyword arguments of keras_resnets.ResNet


_V1 = "He et al. 2015, Deep Residual Learning for Image Recognition"
_V2 = "He et al. 2016, Identity Mappings in Deep Residual Networks"
_NEXT = "Xie et al. 2016, Aggregated Residual Transformations for Deep Neural Networks"
_SE = "Hu et al. 2018, Squeeze-and-Excitation Networks"
_TRICKS = ("He et al. 2019, Bag of Tricks for Image Classification with Convolutional Neural "
           "Networks")
_WRN = "Zagoruyko and Komodakis 2016, Wide Residual Networks"
_PREACT = dict(unit="full_preactivation")
_CIFAR_NEXT = dict(stem="cifar", depth=29, block="bottleneck", stage_widths=(64, 128, 256),
                   bottleneck_width=64)

PAPERS = {"v1": _V1, "v2": _V2, "resnext": _NEXT, "se": _SE, "tricks": _TRICKS, "wrn": _WRN}

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
    # Squeeze-and-excitation (Hu et al. 2018, Table 2: reduction 16) on ResNet and ResNeXt
    # 32x4d, as timm's seresnet50 and seresnext50_32x4d.
    **{f"seresnet{d}": Spec("se", dict(stem="imagenet", depth=d, se_ratio=1 / 16))
       for d in (50, 101, 152)},
    **{f"seresnext{d}_32x4d": Spec("se", dict(stem="imagenet", depth=d, cardinality=32,
                                              bottleneck_width=4, se_ratio=1 / 16))
       for d in (50, 101)},
    # ResNet-D (He et al. 2019, Figure 2: deep stem, average-pooling projections, stride in
    # the 3x3), as timm's resnet50d.
    **{f"resnet{d}d": Spec("tricks", dict(stem="deep", depth=d, avg_down=True))
       for d in (50, 101, 152)},
    # torchvision's Wide ResNets: the bottleneck's 3x3 twice as wide (width per group 128).
    **{f"wide_resnet{d}_2": Spec("wrn", dict(stem="imagenet", depth=d, bottleneck_width=128))
       for d in (50, 101)},
    # WRN-d-k on CIFAR (Zagoruyko and Komodakis 2016, Table 1): n = (d - 4) / 6 units per stage,
    # which is ResNet depth d - 2 (the paper's depth counts two projection shortcuts too),
    # widths 16k-64k after a 16-filter stem, pre-activation basic units, 1x1 projection
    # shortcuts where the shape changes.
    **{f"wrn{d}_{k}": Spec("wrn", dict(stem="cifar", depth=d - 2, width_multiplier=k, **_PREACT))
       for d, k in ((28, 10), (16, 8))},
}
