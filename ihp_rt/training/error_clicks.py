"""Error-driven training clicks: batches that show the network the states the evaluation puts it in.

Random-Sampling trains on central clicks, a background click and 1..15 random extras, but the
evaluation starts from central part clicks alone (no background click) and then adds clicks
where the model is wrong. RITM (Sofiiuk et al. 2022) trains on such clicks: a prediction
without gradient, new clicks where it errs, then the training step. Here a chosen batch gets
the evaluation's own initial clicks (:func:`central_clicks` without background, as
``evaluation.protocol`` makes them), one prediction without gradient (in training mode: the
running BatchNorm statistics lag far behind mid-run), and 0..``max_corrections`` clicks at the
centres of that prediction's largest wrong regions (:func:`correction_clicks`, the evaluation's
rule). One forward pass places all of a sample's corrections, so a batch costs one extra
forward pass however many clicks it gets.
"""

from __future__ import annotations

import numpy as np
import torch

from ihp_rt.clicks import Click, clicks_array
from ihp_rt.data.folder import IGNORE
from ihp_rt.encoding import encode_cpu
from ihp_rt.simulation import central_clicks, correction_clicks
from ihp_rt.spec import ModelSpec
from ihp_rt.training.dataset import MAX_CLICKS


def encode_batch(x: torch.Tensor, clicks: list[list[Click]], spec: ModelSpec) -> None:
    """Overwrite the click maps of the batch ``x`` (on the CPU) with each sample's ``clicks``."""
    _, _, h, w = x.shape
    for i, sample_clicks in enumerate(clicks):
        maps = encode_cpu(clicks_array(sample_clicks), spec.num_classes, h, w, spec.cap)
        x[i, 3:] = torch.from_numpy(maps)


def unpadded(clicks: torch.Tensor) -> list[list[Click]]:
    """Each sample's clicks of a (N, MAX_CLICKS, 3) batch padded with label -1 (the data set's form)."""
    return [[Click(x, y, label) for x, y, label in sample.tolist() if label >= 0] for sample in clicks]


def _padded(clicks: list[list[Click]]) -> torch.Tensor:
    out = torch.full((len(clicks), MAX_CLICKS, 3), -1, dtype=torch.int64)
    for i, sample_clicks in enumerate(clicks):
        kept = sample_clicks[:MAX_CLICKS]
        if kept:
            out[i, : len(kept)] = torch.from_numpy(clicks_array(kept).astype(np.int64))
    return out


@torch.no_grad()
def error_driven_batch(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, spec: ModelSpec,
                       rng: np.random.Generator, max_corrections: int, autocast_bf16: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(input, padded clicks) of a CPU batch with its clicks replaced by the evaluation's initial
    clicks plus 0..``max_corrections`` clicks where ``model`` errs; ``model`` stays in training mode."""
    device = next(model.parameters()).device
    x = x.clone()
    truths = labels.numpy().astype(np.uint8)
    clicks = [central_clicks(truth, rng, IGNORE, with_background=False) for truth in truths]
    encode_batch(x, clicks, spec)
    with torch.autocast(device.type, torch.bfloat16, enabled=autocast_bf16):
        logits = model(x.to(device, memory_format=torch.channels_last))
    predictions = logits.argmax(1).to(torch.uint8).cpu().numpy()
    for i, (prediction, truth) in enumerate(zip(predictions, truths, strict=True)):
        count = int(rng.integers(0, max_corrections + 1))
        clicks[i] = clicks[i] + correction_clicks(prediction, truth, rng, count, IGNORE)
    encode_batch(x, clicks, spec)
    return x, _padded(clicks)
