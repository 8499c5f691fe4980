"""Inference engines behind one interface; each imports its own library only when opened.

``open_backend`` picks the engine from the model file and the backend name. A backend asked
for by name that cannot run raises BackendError naming what is missing: never a silent
fallback. ``auto`` chooses by what is installed and usable, and the choice is reported in the
backend's ``name``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ihp_rt.backends.base import Backend
from ihp_rt.errors import BackendError, ModelError

if TYPE_CHECKING:
    from ihp_rt.model.checkpoint import Checkpoint

BACKENDS = ("auto", "torch", "onnxruntime")


def _cuda_torch() -> bool:
    import torch

    return torch.cuda.is_available()


def open_backend(model: str | Path | Checkpoint, backend: str = "auto", device: str | None = None,
                 threads: int | None = None) -> Backend:
    """A backend for a checkpoint (.pt or loaded Checkpoint) or an exported .onnx file.

    ``device`` is 'cpu' or 'cuda'; None lets ``auto`` prefer the GPU when one is usable.
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    is_onnx = isinstance(model, (str, Path)) and Path(model).suffix.lower() == ".onnx"
    if is_onnx:
        if backend == "torch":
            raise BackendError("backend 'torch' needs a PyTorch checkpoint (.pt), not an .onnx file")
        from ihp_rt.backends.ort_backend import OrtBackend, available_providers

        if device is None:
            provider = "cuda" if "cuda" in available_providers() else "cpu"
        else:
            provider = device.split(":")[0]
        return OrtBackend(model, provider, threads)
    if backend == "onnxruntime":
        raise BackendError("backend 'onnxruntime' needs an exported .onnx model; run `ihp-rt export` first")
    from ihp_rt.backends.torch_backend import TorchBackend
    from ihp_rt.model.checkpoint import Checkpoint, load_checkpoint

    if isinstance(model, (str, Path)) and Path(model).suffix.lower() not in (".pt", ".pth"):
        raise ModelError(f"unsupported model file {model}: expected a .pt checkpoint or an .onnx export")
    checkpoint = model if isinstance(model, Checkpoint) else load_checkpoint(model)
    return TorchBackend(checkpoint, device or ("cuda" if _cuda_torch() else "cpu"))


__all__ = ["BACKENDS", "Backend", "open_backend"]
