"""Encoders for DeepLabV3+, each returning (stride-4, stride-16) feature maps.

Written here rather than taken from timm / segmentation-models-pytorch: both import
torchvision at import time, and no torchvision build matches the CPU torch 2.13.0 wheel this
project pins (PyPI's fails with "operator torchvision::nms does not exist"). The layer layouts
follow the published architectures (He et al. 2016; Howard et al. 2019) with output stride 16
(last stage dilated instead of strided), as DeepLabV3+ uses them. The stem is an
:class:`InputStem`: a ``first_kernel`` x ``first_kernel`` convolution over RGB + click maps, as in
the paper, or with the maps in a branch of their own (``map_entry``). EfficientNet-Lite lives in
:mod:`ihp_rt.model.efficientnet_lite`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ihp_rt.model.efficientnet_lite import EfficientNetLite
from ihp_rt.model.input_stem import InputStem, MapEntry
from ihp_rt.model.layers import InvertedResidual, conv_bn_act


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int, dilation: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_act(cin, planes, 3, stride, dilation),
            conv_bn_act(planes, planes, 3, 1, dilation, act=None),
        )
        self.shortcut = _shortcut(cin, planes, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int, dilation: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn_act(cin, planes, 1),
            conv_bn_act(planes, planes, 3, stride, dilation),
            conv_bn_act(planes, planes * 4, 1, act=None),
        )
        self.shortcut = _shortcut(cin, planes * 4, stride)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return conv_bn_act(cin, cout, 1, stride, act=None)


class ResNet(nn.Module):
    """ResNet with a dilated last stage (output stride 16)."""

    def __init__(self, block: type[BasicBlock | Bottleneck], depths: tuple[int, ...], entry: MapEntry) -> None:
        super().__init__()
        self.stem = nn.Sequential(InputStem(entry, 64, stride=2, act=nn.ReLU), nn.MaxPool2d(3, 2, 1))
        cin = 64
        stages = []
        layout = zip((64, 128, 256, 512), depths, (1, 2, 2, 1), (1, 1, 1, 2), strict=True)
        for planes, depth, stride, dilation in layout:
            blocks = []
            for i in range(depth):
                blocks.append(block(cin, planes, stride if i == 0 else 1, dilation))
                cin = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.low_channels = 64 * block.expansion
        self.high_channels = cin

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.layer1(self.stem(x))
        return low, self.layer4(self.layer3(self.layer2(low)))


# (kernel, expansion, out, squeeze-excite, hard-swish, stride) of MobileNetV3-Large.
_MBV3_LARGE = (
    (3, 16, 16, False, False, 1),
    (3, 64, 24, False, False, 2),
    (3, 72, 24, False, False, 1),  # <- stride 4: low-level features
    (5, 72, 40, True, False, 2),
    (5, 120, 40, True, False, 1),
    (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2),
    (3, 200, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 480, 112, True, True, 1),
    (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2),  # dilated instead: output stride 16
    (5, 960, 160, True, True, 1),
    (5, 960, 160, True, True, 1),
)


class MobileNetV3Large(nn.Module):
    """MobileNetV3-Large with its last stage dilated (output stride 16)."""

    def __init__(self, entry: MapEntry) -> None:
        super().__init__()
        self.stem = InputStem(entry, 16, stride=2, act=nn.Hardswish)
        blocks, cin, dilation = [], 16, 1
        for k, exp, cout, se, hs, stride in _MBV3_LARGE:
            if stride == 2 and len(blocks) == 12:
                stride, dilation = 1, 2
            blocks.append(InvertedResidual(cin, k, exp, cout, se, nn.Hardswish if hs else nn.ReLU,
                                           stride, dilation))
            cin = cout
        self.low = nn.Sequential(*blocks[:3])
        self.high = nn.Sequential(*blocks[3:], conv_bn_act(cin, 960, 1, act=nn.Hardswish))
        self.low_channels = 24
        self.high_channels = 960

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        low = self.low(self.stem(x))
        return low, self.high(low)


BACKBONES: dict[str, Callable[[MapEntry], nn.Module]] = {
    "resnet18": lambda entry: ResNet(BasicBlock, (2, 2, 2, 2), entry),
    "resnet50": lambda entry: ResNet(Bottleneck, (3, 4, 6, 3), entry),
    "resnet101": lambda entry: ResNet(Bottleneck, (3, 4, 23, 3), entry),
    "mobilenetv3_large": MobileNetV3Large,
    "efficientnet_lite0": lambda entry: EfficientNetLite("efficientnet_lite0", entry),
    "efficientnet_lite2": lambda entry: EfficientNetLite("efficientnet_lite2", entry),
}
