"""The first layer: how RGB and the click maps enter the network.

Two ways, chosen by measurement (README, "Training recipe"):

- ``concat`` (the paper): one convolution over RGB + maps. A pretrained RGB stem is widened
  with zero weights for the maps, so step 0 computes exactly the pretrained features.
- ``branch`` (RITM's idea, kept linear): the maps get a convolution of their own, scaled by a
  learnable gain and added to the RGB stem's normalised output, so BatchNorm statistics of the
  pretrained stem never see the maps and the click signal has its own learnable scale.

``map_scale`` multiplies the maps (0..cap, Eq. 1) before the convolution: the units they are
learned in. Both ways are linear in the maps up to the activation, so :meth:`InputStem.fused`
turns either into the plain conv -> BN -> activation over all channels that every export
(ONNX, the first-layer split of ONNX Runtime, INT8, TensorRT) expects, with the scale folded in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ihp_rt.spec import MAP_ENTRIES


@dataclass(frozen=True)
class MapEntry:
    """What an encoder's stem needs to know about its input."""

    num_maps: int
    kernel: int
    mode: str = "concat"
    scale: float = 1.0
    bn_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.mode not in MAP_ENTRIES:
            raise ValueError(f"map entry must be one of {MAP_ENTRIES}, got {self.mode!r}")


class InputStem(nn.Sequential):
    """conv -> BN -> activation over (N, 3 + maps, H, W); children 0, 1, 2 keep checkpoint keys stable."""

    def __init__(self, entry: MapEntry, cout: int, stride: int, act: type[nn.Module]) -> None:
        k = entry.kernel
        rgb_in = 3 if entry.mode == "branch" else 3 + entry.num_maps
        super().__init__(
            nn.Conv2d(rgb_in, cout, k, stride, k // 2, bias=False),
            nn.BatchNorm2d(cout, eps=entry.bn_eps),
            act(inplace=True),
        )
        self.entry = entry
        if entry.mode == "branch":
            self.maps = nn.Conv2d(entry.num_maps, cout, k, stride, k // 2, bias=False)
            self.maps_gain = nn.Parameter(torch.ones(()))
            nn.init.zeros_(self.maps.weight)

    @property
    def conv(self) -> nn.Conv2d:
        return self[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn, act = self[0], self[1], self[2]
        if self.entry.mode == "branch":
            maps = self.maps(x[:, 3:] * self.entry.scale) if self.entry.scale != 1 else self.maps(x[:, 3:])
            return act(bn(conv(x[:, :3])) + self.maps_gain * maps)
        return act(bn(F.conv2d(x, self._scaled_weight(), None, conv.stride, conv.padding)))

    def _scaled_weight(self) -> torch.Tensor:
        """The concat weights as applied to unscaled maps: map columns times ``map_scale``."""
        weight = self[0].weight
        if self.entry.scale == 1:
            return weight
        return torch.cat([weight[:, :3], weight[:, 3:] * self.entry.scale], dim=1)

    @torch.no_grad()
    def fused(self) -> nn.Sequential:
        """The same function in eval mode as a plain conv -> BN -> activation over all channels."""
        conv, bn, act = self[0], self[1], self[2]
        k, stride, padding = conv.kernel_size, conv.stride, conv.padding
        cin = 3 + self.entry.num_maps
        like = {"dtype": conv.weight.dtype, "device": conv.weight.device}
        if self.entry.mode == "concat":
            plain = nn.Conv2d(cin, conv.out_channels, k, stride, padding, bias=False, **like)
            plain.weight.copy_(self._scaled_weight())
            return nn.Sequential(plain, bn, act)
        # BatchNorm (eval) is affine: fold it into the RGB weights, then the maps add linearly.
        gamma = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        plain = nn.Conv2d(cin, conv.out_channels, k, stride, padding, bias=True, **like)
        plain.weight[:, :3] = conv.weight * gamma[:, None, None, None]
        plain.weight[:, 3:] = self.maps.weight * (self.maps_gain * self.entry.scale)
        plain.bias.copy_(bn.bias - bn.running_mean * gamma)
        return nn.Sequential(plain, nn.Identity(), act)


def fuse_input_stems(model: nn.Module) -> nn.Module:
    """Replace every InputStem of ``model`` (in place) by its fused plain form; returns ``model``."""
    for name, module in list(model.named_modules()):
        if isinstance(module, InputStem):
            parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            setattr(parent, name.rpartition(".")[2], module.fused())
    return model
