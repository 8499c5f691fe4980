"""The per-click step (click maps -> network -> arg-max) captured in one CUDA graph, for the torch backend.

A click costs the GPU little (the default model at 473 px is a few ms of kernels), so launching
its hundreds of kernels one by one from Python can cost as much as running them. A CUDA graph
replays the whole recorded launch sequence with one call. A graph fixes every shape and every
pointer, so the step reads its clicks from a static (max_clicks, 3) device buffer whose unused
rows carry label -1, and encodes them with :func:`encode_padded`, which has no data-dependent
shapes and never leaves the GPU. Per click only the padded clicks go up (a few hundred bytes,
through pinned memory) and the uint8 mask comes down.

Used by the GPU check (``benchmarks/gpu_check.py``) to report the latency with and without the
graph; :func:`encode_padded` is tested against the reference encoder on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

PAD_LABEL = -1


def encode_padded(clicks: torch.Tensor, num_classes: int, height: int, width: int, cap: int,
                  out: torch.Tensor) -> torch.Tensor:
    """Click maps (paper Eq. 1) from a fixed-size (K, 3) int32 (x, y, label) tensor on the maps'
    device; rows with label -1 are padding. Fixed shapes and no host round trip, so it can be
    captured in a CUDA graph. Same values as the reference encoder (integer distances in float32)."""
    reach = math.isqrt(cap)
    rows = torch.arange(height, device=out.device, dtype=torch.int32)
    cols = torch.arange(width, device=out.device, dtype=torch.int32)
    # Offsets clamped beyond reach keep squares far from int32 overflow; a clamped offset is > cap.
    dy = (rows[None, :] - clicks[:, 1:2]).clamp(-reach - 1, reach + 1)
    dx = (cols[None, :] - clicks[:, 0:1]).clamp(-reach - 1, reach + 1)
    d2 = (dy * dy)[:, :, None] + (dx * dx)[:, None, :]  # (K, H, W)
    labels = clicks[:, 2].long()
    d2 = torch.where((labels >= 0)[:, None, None], d2, cap).clamp(max=cap).to(torch.float32)
    out.fill_(cap)
    index = labels.clamp(min=0)[:, None].expand(-1, height * width)
    out.view(num_classes, height * width).scatter_reduce_(0, index, d2.view(-1, height * width), reduce="amin")
    return out


class GraphedClickStep:
    """maps -> network -> arg-max -> uint8 mask, recorded once in a CUDA graph and replayed per click.

    ``model`` is the torch backend's network (already on the GPU, channels-last, in ``dtype``).
    """

    def __init__(self, model: torch.nn.Module, num_classes: int, size: int, cap: int, dtype: torch.dtype,
                 max_clicks: int = 32, warmup: int = 3) -> None:
        device = next(model.parameters()).device
        self.model, self.dtype, self.max_clicks = model, dtype, max_clicks
        self.num_classes, self.size, self.cap = num_classes, size, cap
        self.input = torch.zeros((1, 3 + num_classes, size, size), device=device)
        self.clicks = torch.full((max_clicks, 3), PAD_LABEL, dtype=torch.int32, device=device)
        self.host_clicks = torch.full((max_clicks, 3), PAD_LABEL, dtype=torch.int32).pin_memory()
        self.labels = torch.zeros((size, size), dtype=torch.uint8, device=device)
        self.host_labels = torch.zeros((size, size), dtype=torch.uint8).pin_memory()
        with torch.no_grad():
            side = torch.cuda.Stream(device)  # warm up on a side stream, as graph capture asks
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(warmup):
                    self._step()
            torch.cuda.current_stream(device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self._step()
        torch.cuda.synchronize(device)

    def _step(self) -> None:
        encode_padded(self.clicks, self.num_classes, self.size, self.size, self.cap, out=self.input[0, 3:])
        x = self.input.to(self.dtype, memory_format=torch.channels_last)
        self.labels.copy_(self.model(x)[0].argmax(0))

    def set_image(self, image: np.ndarray) -> None:
        """(3, S, S) float32 normalised image, written into the graph's static input."""
        with torch.no_grad():
            self.input[0, :3].copy_(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)))

    def predict(self, clicks: np.ndarray) -> np.ndarray:
        """The mask for ``clicks`` (model frame), by replaying the graph."""
        return self._run(clicks, self.graph.replay)

    def predict_eager(self, clicks: np.ndarray) -> np.ndarray:
        """The same step launched kernel by kernel: the like-for-like baseline of :meth:`predict`."""
        def step() -> None:
            with torch.no_grad():
                self._step()

        return self._run(clicks, step)

    def _run(self, clicks: np.ndarray, step: Callable[[], None]) -> np.ndarray:
        if len(clicks) > self.max_clicks:
            raise ValueError(f"the graph was captured for at most {self.max_clicks} clicks, got {len(clicks)}")
        self.host_clicks.fill_(PAD_LABEL)
        self.host_clicks[: len(clicks)] = torch.from_numpy(np.ascontiguousarray(clicks, dtype=np.int32))
        stream = torch.cuda.current_stream()
        self.clicks.copy_(self.host_clicks, non_blocking=True)
        step()
        self.host_labels.copy_(self.labels, non_blocking=True)
        stream.synchronize()
        return self.host_labels.numpy().copy()
