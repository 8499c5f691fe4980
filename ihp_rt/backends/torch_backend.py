"""PyTorch eager backend: the reference every other engine is compared with."""

from __future__ import annotations

import numpy as np
import torch

from ihp_rt.encoding.torch_encoding import encode_torch
from ihp_rt.errors import BackendError
from ihp_rt.model.checkpoint import Checkpoint


class TorchBackend:
    """Keeps one (1, 3 + C, S, S) input tensor on the device; the image part is written once
    per image and the click maps are re-encoded into the rest of it on every predict."""

    def __init__(self, checkpoint: Checkpoint, device: str = "cpu") -> None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError("backend 'torch' on CUDA needs a CUDA build of PyTorch and a GPU; none found")
        self.device = torch.device(device)
        self.name = f"torch-{self.device.type}"
        self.spec = checkpoint.spec
        self.model = checkpoint.model.to(self.device).eval()
        size = self.spec.input_size
        self._input = torch.zeros((1, self.spec.in_channels, size, size), device=self.device)

    def set_image(self, image: np.ndarray) -> None:
        self._input[0, :3].copy_(torch.from_numpy(image))

    @torch.inference_mode()
    def predict(self, clicks: np.ndarray) -> np.ndarray:
        size = self.spec.input_size
        encode_torch(clicks, self.spec.num_classes, size, size, self.spec.cap, out=self._input[0, 3:])
        logits = self.model(self._input)
        return logits[0].argmax(0).to(torch.uint8).cpu().numpy()
