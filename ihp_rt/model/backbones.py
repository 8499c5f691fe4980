"""Encoders for DeepLabV3+, each returning (stride-4, stride-16) feature maps.

Written here rather than taken from timm / segmentation-models-pytorch: both import
torchvision at import time, and no torchvision build matches the CPU torch 2.13.0 wheel this
project pins (PyPI's fails with "operator torchvision::nms does not exist"). The layer layouts
follow the published architectures (He et al. 2016; Howard et al. 2019) with output stride 16
(last stage dilated instead of strided), as DeepLabV3+ uses them. The stem convolution is
``first_kernel`` x ``first_kernel`` over ``in_channels`` (RGB + click maps), as in the paper.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def conv_bn_act(
    cin: int, cout: int, k: int, stride: int = 1, dilation: int = 1, groups: int = 1,
    act: type[nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, dilation * (k // 2), dilation, groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


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

    def __init__(self, block: type[BasicBlock | Bottleneck], depths: tuple[int, ...],
                 in_channels: int, first_kernel: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            conv_bn_act(in_channels, 64, first_kernel, stride=2),
            nn.MaxPool2d(3, 2, 1),
        )
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


def _make_divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = _make_divisible(channels / 4)
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1),
            nn.Hardsigmoid(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, k: int, exp: int, cout: int, se: bool, act: type[nn.Module],
                 stride: int, dilation: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if exp != cin:
            layers.append(conv_bn_act(cin, exp, 1, act=act))
        layers.append(conv_bn_act(exp, exp, k, stride, dilation, groups=exp, act=act))
        if se:
            layers.append(SqueezeExcite(exp))
        layers.append(conv_bn_act(exp, cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


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

    def __init__(self, in_channels: int, first_kernel: int) -> None:
        super().__init__()
        self.stem = conv_bn_act(in_channels, 16, first_kernel, stride=2, act=nn.Hardswish)
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


BACKBONES: dict[str, Callable[[int, int], nn.Module]] = {
    "resnet18": lambda cin, k: ResNet(BasicBlock, (2, 2, 2, 2), cin, k),
    "resnet50": lambda cin, k: ResNet(Bottleneck, (3, 4, 6, 3), cin, k),
    "resnet101": lambda cin, k: ResNet(Bottleneck, (3, 4, 23, 3), cin, k),
    "mobilenetv3_large": lambda cin, k: MobileNetV3Large(cin, k),
}
