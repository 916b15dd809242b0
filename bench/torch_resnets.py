"""PyTorch ResNets in torchvision's module layout, for benchmarks and weight-port tests.

torchvision does not install beside the CPU torch wheel on these machines (nor, therefore, timm,
which imports it), so this file holds the same networks: `resnet(depth, groups, width_per_group)`
has torchvision's ResNet/ResNeXt/Wide ResNet module names and parameter counts, with timm's
options in timm's layout (`se_ratio`: `se.fc1`/`se.fc2`; `stem_type="deep"`: `conv1.0`-`conv1.6`;
`avg_down`: `downsample.0` pooling, `.1` conv, `.2` bn; timm/models/resnet.py), and
`cifar_resnet(depth)` the common option-A CIFAR ResNet (as in akamaster/pytorch_resnet_cifar10,
whose classifier is called `linear`). Importing needs torch.
"""

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_LAYERS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}


class SEModule(nn.Module):
    """timm's SEModule: mean, 1x1 conv + ReLU, 1x1 conv + sigmoid, scale; the reduced width is
    `channels * rd_ratio` rounded to a multiple of 8 (timm's make_divisible, round_limit=0)."""

    def __init__(self, channels, rd_ratio):
        super().__init__()
        reduced = max(8, int(channels * rd_ratio + 4) // 8 * 8)
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x):
        scale = self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(scale)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 dilation=1, se_ratio=None):
        super().__init__()  # torchvision refuses dilation here; both 3x3s dilate, as in ours
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, dilation, dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SEModule(planes, se_ratio) if se_ratio else None
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out if self.se is None else self.se(out)
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 dilation=1, se_ratio=None):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, dilation, dilation, groups=groups,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.se = SEModule(planes * 4, se_ratio) if se_ratio else None
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out if self.se is None else self.se(out)
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ResNet(nn.Module):
    """torchvision.models.ResNet (v1.5: the stride in the bottleneck's 3x3), with its
    `replace_stride_with_dilation` (three bools: layer2, layer3, layer4) and timm's
    `stem_type="deep"`, `avg_down` and SE blocks (`se_ratio`)."""

    def __init__(self, block, layers, num_classes=1000, groups=1, width_per_group=64,
                 replace_stride_with_dilation=(False, False, False), stem_type="",
                 avg_down=False, se_ratio=None):
        super().__init__()
        self.inplanes = 64
        self.dilation = 1
        self.avg_down, self.se_ratio = avg_down, se_ratio
        if stem_type == "deep":
            self.conv1 = nn.Sequential(
                nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                nn.Conv2d(32, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
                nn.Conv2d(32, 64, 3, 1, 1, bias=False))
        else:
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        dilate = (False,) + tuple(replace_stride_with_dilation)
        for index, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if index == 0 else 2
            setattr(self, f"layer{index + 1}", self._make_layer(
                block, planes, blocks, stride, groups, width_per_group, dilate[index]))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride, groups, base_width, dilate=False):
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            out = planes * block.expansion
            if self.avg_down:  # timm's downsample_avg (no dilation here)
                pool = (nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
                        if stride > 1 else nn.Identity())
                downsample = nn.Sequential(pool, nn.Conv2d(self.inplanes, out, 1, bias=False),
                                           nn.BatchNorm2d(out))
            else:
                downsample = nn.Sequential(
                    nn.Conv2d(self.inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
        layers = [block(self.inplanes, planes, stride, downsample, groups, base_width,
                        previous_dilation, self.se_ratio)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, None, groups, base_width, self.dilation,
                         self.se_ratio)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def features(self, x):
        """The outputs of layer1 ... layer4."""
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        outputs = []
        for index in range(1, 5):
            x = getattr(self, f"layer{index}")(x)
            outputs.append(x)
        return outputs

    def forward(self, x):
        x = self.features(x)[-1]
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def resnet(depth, num_classes=1000, groups=1, width_per_group=64,
           replace_stride_with_dilation=(False, False, False), layers=None, **timm_options):
    """torchvision's resnet{18..152}, resnext50_32x4d (groups=32, width_per_group=4),
    wide_resnet50_2 (width_per_group=128), ...; timm's seresnet50 (se_ratio=1/16), resnet50d
    (stem_type="deep", avg_down=True), ... `layers` replaces the depth's blocks per stage."""
    kind, depth_layers = IMAGENET_LAYERS[depth]
    block = BasicBlock if kind == "basic" else Bottleneck
    return ResNet(block, layers or depth_layers, num_classes, groups, width_per_group,
                  replace_stride_with_dilation, **timm_options)


class CifarBasicBlock(nn.Module):
    """Basic block with the option A shortcut (subsample, zero-pad channels on both sides)."""

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = (planes - in_planes) // 2 if stride != 1 or in_planes != planes else None
        self.stride = stride

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.pad is not None:
            shortcut = F.pad(x[:, :, :: self.stride, :: self.stride],
                             (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    def __init__(self, depth, num_classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_planes = 16
        for index, planes in enumerate((16, 32, 64)):
            blocks = []
            for b in range(n):
                blocks.append(CifarBasicBlock(in_planes, planes, 2 if index and b == 0 else 1))
                in_planes = planes
            setattr(self, f"layer{index + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.linear(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def cifar_resnet(depth, num_classes=10):
    """ResNet-20/32/44/56/110/1202 for CIFAR with option A shortcuts."""
    return CifarResNet(depth, num_classes)
