"""PyTorch backend: the reference every other engine is compared with (CPU), and the GPU
path that can be measured without TensorRT (CUDA, channels-last, optional FP16)."""

from __future__ import annotations

import copy
import time

import numpy as np
import torch

from ihp_rt.correction import Boost, Corrector, Pass
from ihp_rt.encoding.torch_encoding import encode_torch
from ihp_rt.errors import BackendError
from ihp_rt.model.checkpoint import Checkpoint
from ihp_rt.model.correction_head import CorrectionHead


def cuda_available() -> bool:
    return torch.cuda.is_available()


class TorchBackend:
    """Keeps one (1, 3 + C, S, S) input tensor on the device; the image part is written once
    per image and the click maps are re-encoded into the rest of it on every predict."""

    def __init__(self, checkpoint: Checkpoint, device: str = "cpu", half: bool = False) -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError("backend 'torch' on CUDA needs a CUDA build of PyTorch and a GPU; none found")
        self.device = torch.device(device)
        self.spec = checkpoint.spec
        self.dtype = torch.float16 if half else torch.float32
        self.name = f"torch-{self.device.type}" + ("-fp16" if half else "")
        model = checkpoint.model
        if half or self.device.type != "cpu":  # .to() works in place: keep the caller's model as it was
            model = copy.deepcopy(model)
        self.model = model.to(self.device, self.dtype, memory_format=torch.channels_last).eval()
        size = self.spec.input_size
        self._input = torch.zeros((1, self.spec.in_channels, size, size), device=self.device)
        self.timings: dict[str, float] = {}
        self.corrector: Corrector = (TorchCorrector(self.model.correction, self.dtype) if self.spec.correction_head
                                     else Boost(self.spec.input_size))

    def set_image(self, image: np.ndarray) -> None:
        self._input[0, :3].copy_(torch.from_numpy(image))

    def _sync(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    @torch.inference_mode()
    def predict(self, clicks: np.ndarray) -> Pass:
        size = self.spec.input_size
        t0 = time.perf_counter()
        encode_torch(clicks, self.spec.num_classes, size, size, self.spec.cap, out=self._input[0, 3:])
        t1 = self._sync()
        x = self._input.to(self.dtype, memory_format=torch.channels_last)
        logits, *extra = self.model.full_pass(x)
        labels = logits[0].argmax(0).to(torch.uint8)
        t2 = self._sync()
        result = Pass(labels.cpu().numpy(), *(e[0].float().cpu().numpy() for e in extra))
        t3 = time.perf_counter()
        self.timings = {"encode_ms": (t1 - t0) * 1e3, "network_ms": (t2 - t1) * 1e3, "download_ms": (t3 - t2) * 1e3}
        return result


class TorchCorrector:
    """The correction head in PyTorch, on the network's device and precision; host arrays in and out."""

    def __init__(self, head: CorrectionHead, dtype: torch.dtype) -> None:
        self.head, self.dtype = head, dtype
        self.device = next(head.parameters()).device

    @torch.inference_mode()
    def __call__(self, features: np.ndarray, coarse: np.ndarray, clicks: np.ndarray,
                 origin: np.ndarray) -> np.ndarray:
        def put(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(array).to(self.device, self.dtype)

        return self.head(put(features), put(coarse), put(clicks), put(origin)).float().cpu().numpy()
