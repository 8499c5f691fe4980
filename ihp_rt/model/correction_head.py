"""The correction head: late fusion of a correction click into the network's stride-4 features.

Measured on the landed default (README, "Clicks the network overrides"): fed back only through
the first layer, a correction click next to an earlier one barely changes the network's input,
and the network alone left the clicked pixel wrong after 71 % of corrections, each costing a full
pass. The head instead takes what the last full pass computed -- the decoder's stride-4 features
(projected once per full pass) and the current stride-4 logits -- in a fixed window around the
newest click, with every click drawn as a wide cone at stride 4 (reaching ``reach`` cells, far
beyond Eq. 1's 15 pixels) and a feature-similarity map of the newest click. Its cost is a few
small convolutions over the window, not the network.

What it answers is binary, per cell: does this cell belong to the clicked class? (its *claim*,
a logit). A correction says "this is class c"; the best fix an oracle can make is to give c to the
wrongly labelled region under the click (94.6 % mIoU after 10 corrections on held-back photos,
issue 28), which is that binary segmentation. The window's new logits follow from the claim: c
takes every cell it claims, beating the best other class there by the claim, and keeps every
cell it had; every other class keeps its logit. Measured on the 64 held-out photos after 25
minutes of training each: a head predicting a change of all C logits lowered mIoU after 20
corrections (it repainted thin parts across the window); one whose negative claims also took
cells away from c lost 2 points at the first correction (a background click's doubtful cells
went to the best other class, a part).

Clicks enter as coordinates, so the maps are computed inside the module: one definition for
training, the torch backend and the ONNX graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ihp_rt.correction import STRIDE

PROJECTED = 32  # channels of the projected features the head reads
WIDTH = 64  # channels inside the head
REACH = 12.0  # cells at which a click's cone falls to zero
DILATIONS = (1, 2, 4, 8)


class CorrectionHead(nn.Module):
    """``project`` runs once per full pass; ``forward`` once per correction, on a window."""

    def __init__(self, feature_channels: int, num_classes: int, projected: int = PROJECTED, width: int = WIDTH,
                 reach: float = REACH) -> None:
        super().__init__()
        self.num_classes, self.reach = num_classes, reach
        self.project = nn.Conv2d(feature_channels, projected, 1)
        cin = projected + 3 * num_classes + 1
        self.entry = nn.Conv2d(cin, width, 3, padding=1)
        # Dilated residual layers: a receptive field of 33 cells (132 model pixels) over the window.
        self.body = nn.ModuleList(nn.Conv2d(width, width, 3, padding=d, dilation=d) for d in DILATIONS)
        self.out = nn.Conv2d(width, 1, 1)
        for conv in (self.entry, *self.body):
            # He initialisation keeps activations at scale through the stack; PyTorch's default
            # shrank them about 2.5x per layer (std 0.016 after five), which stalled learning.
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.out.weight)  # step 0 claims nothing either way: a claim of 0 everywhere
        nn.init.zeros_(self.out.bias)

    def cones(self, clicks: torch.Tensor, origin: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(N, K, h, w) cones 1 - d / reach (clamped at 0) of (N, K, 3) clicks (x, y, label in model
        pixels) over the window whose top-left cell is ``origin`` (N, 2: row, col)."""
        rows = (origin[:, 0:1] + torch.arange(height, dtype=clicks.dtype, device=clicks.device)) * STRIDE + 1.5
        cols = (origin[:, 1:2] + torch.arange(width, dtype=clicks.dtype, device=clicks.device)) * STRIDE + 1.5
        dy = rows[:, None, :, None] - clicks[:, :, 1, None, None]
        dx = cols[:, None, None, :] - clicks[:, :, 0, None, None]
        distance = torch.sqrt(dy * dy + dx * dx) / STRIDE
        return torch.clamp(1 - distance / self.reach, min=0)

    def forward(self, features: torch.Tensor, logits: torch.Tensor, clicks: torch.Tensor,
                origin: torch.Tensor) -> torch.Tensor:
        """New logits of a window: :meth:`claim`, then :meth:`merge`. Arguments as for :meth:`claim`."""
        return self.merge(logits, self.claim(features, logits, clicks, origin), clicks[:, -1, 2])

    def claim(self, features: torch.Tensor, logits: torch.Tensor, clicks: torch.Tensor,
              origin: torch.Tensor) -> torch.Tensor:
        """(N, 1, h, w): per cell, the logit that it belongs to the newest click's class.

        ``features`` (N, projected, h, w) and ``logits`` (N, C, h, w): the window of the projected
        features and of the current logits; ``clicks`` (N, K, 3) float (x, y, label) in model
        pixels, all clicks so far with the newest last, rows with label < 0 ignored (padding);
        ``origin`` (N, 2) float: the window's top-left cell (row, col).
        """
        height, width = features.shape[-2:]
        cones = self.cones(clicks, origin, height, width)  # (N, K, h, w)
        labels = clicks[:, :, 2].long()
        onehot = F.one_hot(labels.clamp(min=0), self.num_classes).to(cones.dtype)
        onehot = onehot * (labels >= 0).to(cones.dtype)[..., None]  # (N, K, C)
        per_class = (cones[:, :, None] * onehot[:, :, :, None, None]).amax(dim=1)  # (N, C, h, w)
        newest_cone = cones[:, -1:]  # (N, 1, h, w)
        newest = newest_cone * onehot[:, -1, :, None, None]
        unit = F.normalize(features, dim=1)
        weight = newest_cone * newest_cone
        query = (unit * weight).sum((2, 3), keepdim=True) / weight.sum((2, 3), keepdim=True).clamp(min=1e-6)
        similarity = (unit * F.normalize(query, dim=1)).sum(1, keepdim=True)
        x = torch.cat([features, torch.softmax(logits, dim=1), per_class, newest, similarity], dim=1)
        x = F.relu(self.entry(x))
        for conv in self.body:
            x = x + F.relu(conv(x))
        return self.out(x)

    def merge(self, logits: torch.Tensor, claim: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """Logits in which class ``label`` (N,) wins every cell it claims (beating the best other
        class there by the claim) and loses none it had: a correction only adds its class. The
        other classes keep their logits."""
        chosen = F.one_hot(label.long(), self.num_classes).to(logits.dtype)[:, :, None, None]
        own = (logits * chosen).sum(dim=1, keepdim=True)
        best_other = (logits - 1e4 * chosen).amax(dim=1, keepdim=True)
        return logits * (1 - chosen) + torch.maximum(own, best_other + claim) * chosen
