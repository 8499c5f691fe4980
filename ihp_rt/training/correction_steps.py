"""Training the correction head on a frozen network: the evaluation's corrections, simulated.

RITM's iterative training (Sofiiuk et al. 2022), at the head's cost: a batch gets the
evaluation's initial clicks (central part clicks without background, as ``evaluation.protocol``
places them; a quarter keep their Random-Sampling clicks, so the head also sees network passes
over background and extra clicks), one network pass without gradient, then ``rounds`` rounds in
which every sample gets a correction click at the centre of one of the largest wrong regions of
the *current* prediction -- the head's own earlier output, merged as inference merges it
(Progressive Merge) -- and the head claims the cells of the clicked class in the window around
it. Every round is a training example; the state between rounds is detached, as in RITM.

The loss is the binary cross-entropy of the claim against "the truth is the clicked class",
over the window, each pixel of the wrong region that was clicked weighted ``1 + region_weight``:
the region the user asked to fix is what must flip, and it is a small part of the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ihp_rt.clicks import Click
from ihp_rt.correction import STRIDE, cell_window, merged
from ihp_rt.data.folder import IGNORE
from ihp_rt.model.deeplab import DeepLabV3Plus
from ihp_rt.simulation import central_clicks, farthest_of_candidates, wrong_regions
from ihp_rt.spec import ModelSpec
from ihp_rt.training.error_clicks import encode_batch

EVALUATION_START = 0.75  # share of samples that start from the evaluation's initial clicks
WIDER_CHOICE = 0.3  # share of corrections placed in one of the three largest wrong regions, not the largest


@dataclass
class RoundStats:
    """What a batch's rounds did: corrections placed, and how many the head honoured."""

    corrections: int = 0
    honoured: int = 0


def correction_at(prediction: np.ndarray, truth: np.ndarray, rng: np.random.Generator,
                  choices: int) -> tuple[Click, np.ndarray] | None:
    """A click at the centre of one of the ``choices`` largest wrong regions (the largest when 1),
    labelled with the truth there, and that region's mask; None when nothing is wrong."""
    regions, order = wrong_regions(prediction, truth, IGNORE)
    if not len(order):
        return None
    mask = regions == order[min(int(rng.integers(choices)), len(order) - 1)]
    x, y = farthest_of_candidates(mask, rng)
    return Click(x, y, int(truth[y, x])), mask


def padded_clicks(clicks: list[list[Click]]) -> torch.Tensor:
    """(N, K, 3) float rows (x, y, label), padded at the *front* with label -1 far outside any
    window, so that every sample's newest click is its last row (CorrectionHead's contract)."""
    width = max(len(c) for c in clicks)
    out = torch.tensor([[-1e4, -1e4, -1.0]]).repeat(len(clicks), width, 1)
    for i, sample in enumerate(clicks):
        if sample:
            out[i, width - len(sample):] = torch.tensor([[c.x, c.y, c.label] for c in sample], dtype=torch.float32)
    return out


def head_loss(model: DeepLabV3Plus, x: torch.Tensor, labels: torch.Tensor, clicks: list[list[Click]],
              spec: ModelSpec, rng: np.random.Generator, rounds: int, region_weight: float,
              autocast_bf16: bool) -> tuple[torch.Tensor, RoundStats]:
    """The loss of ``rounds`` simulated corrections on a CPU batch (x: RGB + maps of ``clicks``)."""
    head = model.correction
    truths = labels.numpy().astype(np.uint8)
    starts = [central_clicks(t, rng, IGNORE, with_background=False) if rng.random() < EVALUATION_START else list(c)
              for t, c in zip(truths, clicks, strict=True)]
    x = x.clone()
    encode_batch(x, starts, spec)
    device = next(model.parameters()).device
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=autocast_bf16):
        features = model.decode(x.to(device, memory_format=torch.channels_last))
        coarse = model.classifier(features)
    coarse = coarse.float().contiguous()
    projected = head.project(features.float())
    height, width = labels.shape[-2:]
    rows, cols = coarse.shape[-2:]
    target = F.pad(labels, (0, STRIDE * cols - width, 0, STRIDE * rows - height), value=IGNORE).to(device)
    stats, losses = RoundStats(), []
    up = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    predictions = up.contiguous(memory_format=torch.channels_last).argmax(1).to(torch.uint8).cpu().numpy()
    for _ in range(rounds):
        placed = []
        for i, (prediction, truth) in enumerate(zip(predictions, truths, strict=True)):
            found = correction_at(prediction, truth, rng, 3 if rng.random() < WIDER_CHOICE else 1)
            if found is not None:
                starts[i].append(found[0])
                placed.append((i, *found, cell_window(found[0].x, found[0].y, rows, cols)))
        if not placed:
            break
        h, w = placed[0][3][2:]
        cells = [(i, slice(r0, r0 + h), slice(c0, c0 + w)) for i, _, _, (r0, c0, _, _) in placed]
        before = torch.stack([coarse[i, :, r, c] for i, r, c in cells])
        chosen = padded_clicks([starts[i] for i, *_ in placed]).to(device)
        claim = head.claim(torch.stack([projected[i, :, r, c] for i, r, c in cells]), before, chosen,
                           torch.tensor([[r.start, c.start] for _, r, c in cells], dtype=torch.float32, device=device))
        pixels = [(slice(STRIDE * r.start, STRIDE * r.stop), slice(STRIDE * c.start, STRIDE * c.stop))
                  for _, r, c in cells]
        truth = torch.stack([target[i, r, c] for (i, _, _), (r, c) in zip(cells, pixels, strict=True)])
        region = np.zeros((len(placed), STRIDE * h, STRIDE * w), np.float32)
        for j, ((_, _, mask, _), (r, c)) in enumerate(zip(placed, pixels, strict=True)):
            part = mask[r, c]
            region[j, : part.shape[0], : part.shape[1]] = part
        weight = (truth != IGNORE).float() * (1 + region_weight * torch.from_numpy(region).to(device))
        wanted = (truth == chosen[:, -1, 2, None, None]).float()  # the cells of the clicked class
        up = F.interpolate(claim, size=(STRIDE * h, STRIDE * w), mode="bilinear", align_corners=False)[:, 0]
        bce = F.binary_cross_entropy_with_logits(up, wanted, reduction="none")
        losses.append((bce * weight).sum() / weight.sum().clamp(min=1))
        with torch.no_grad():  # the next round starts from what inference shows: merged, detached
            after = head.merge(before, claim, chosen[:, -1, 2])
            window_labels = F.interpolate(after, size=(STRIDE * h, STRIDE * w), mode="bilinear",
                                          align_corners=False).argmax(1).cpu().numpy()
            coarse = coarse.clone()
            for j, ((i, click, _, _), (r, c)) in enumerate(zip(placed, pixels, strict=True)):
                coarse[i, :, cells[j][1], cells[j][2]] = after[j]
                shown = predictions[i, r, c]  # a view: the window's pixels inside the crop
                new = window_labels[j, : shown.shape[0], : shown.shape[1]]
                keep = merged(new != shown, click.y - r.start, click.x - c.start)
                shown[keep] = new[keep]
                stats.honoured += int(predictions[i, click.y, click.x] == click.label)
        stats.corrections += len(placed)
    if not losses:  # every prediction already perfect: nothing to learn from this batch
        return projected.sum() * 0, stats
    return torch.stack(losses).mean(), stats
