"""Inference engines behind one interface; each imports its own library only when opened.

``open_backend`` picks the engine from the model file and the backend name. A backend asked
for by name that cannot run raises BackendError naming what is missing: never a silent
fallback. ``auto`` chooses by what is installed and usable -- TensorRT, then ONNX Runtime CUDA,
then ONNX Runtime CPU for an .onnx file; PyTorch (CUDA when present) for a checkpoint -- and
records why in ``backend.choice``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from ihp_rt.backends.base import Backend
from ihp_rt.errors import BackendError, ModelError

if TYPE_CHECKING:
    from ihp_rt.model.checkpoint import Checkpoint

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
CHECKPOINT_SUFFIXES = (".pt", ".pth")


def _tensorrt_usable() -> str | None:
    """None when TensorRT can run here, else why not."""
    for module in ("tensorrt", "cupy"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed"
    import cupy as cp

    try:
        return None if cp.cuda.runtime.getDeviceCount() > 0 else "no CUDA GPU"
    except cp.cuda.runtime.CUDARuntimeError as e:
        return f"no usable CUDA GPU ({e})"


def choose_onnx_backend(tensorrt_problem: str | None, ort_providers: list[str]) -> tuple[str, str, str]:
    """(backend, device, reason) that ``auto`` picks for an .onnx model."""
    if tensorrt_problem is None:
        return "tensorrt", "cuda", "TensorRT and a GPU are available"
    if "cuda" in ort_providers:
        return "onnxruntime", "cuda", f"TensorRT unusable ({tensorrt_problem}); ONNX Runtime has CUDA"
    return "onnxruntime", "cpu", f"TensorRT unusable ({tensorrt_problem}); ONNX Runtime has no CUDA provider"


def open_backend(model: str | Path | Checkpoint, backend: str = "auto", device: str | None = None,
                 threads: int | None = None, half: bool = False) -> Backend:
    """A backend for a checkpoint (.pt or loaded Checkpoint), an .onnx export or a TensorRT .engine.

    ``device`` ('cpu' or 'cuda') applies to torch and onnxruntime; None lets them prefer a GPU.
    ``half`` runs the torch backend in FP16 (for CUDA).
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    suffix = Path(model).suffix.lower() if isinstance(model, (str, Path)) else ".pt"
    if suffix not in (*CHECKPOINT_SUFFIXES, ".onnx", ".engine"):
        raise ModelError(f"unsupported model file {model}: expected a .pt checkpoint, an .onnx export or an .engine")
    choice = f"backend {backend!r} as asked"
    if suffix == ".engine" and backend not in ("auto", "tensorrt"):
        raise BackendError(f"a TensorRT .engine runs only on backend 'tensorrt', not {backend!r}")
    if suffix == ".onnx" and backend == "torch":
        raise BackendError("backend 'torch' needs a PyTorch checkpoint (.pt), not an .onnx file")
    if suffix in CHECKPOINT_SUFFIXES and backend in ("onnxruntime", "tensorrt"):
        raise BackendError(f"backend {backend!r} needs an exported .onnx model; run `ihp-rt export` first")
    if backend == "auto":
        if suffix == ".engine":
            backend, choice = "tensorrt", "a TensorRT engine file"
        elif suffix == ".onnx":
            from ihp_rt.backends.ort_backend import available_providers

            backend, auto_device, choice = choose_onnx_backend(_tensorrt_usable(), available_providers())
            device = device or auto_device
        else:
            backend, choice = "torch", "a PyTorch checkpoint"

    if backend == "tensorrt":
        from ihp_rt.backends.trt_backend import TensorRTBackend

        opened: Backend = TensorRTBackend(model)
    elif backend == "onnxruntime":
        from ihp_rt.backends.ort_backend import OrtBackend

        opened = OrtBackend(model, device or "cpu", threads)
    else:
        from ihp_rt.backends.torch_backend import TorchBackend, cuda_available
        from ihp_rt.model.checkpoint import Checkpoint, load_checkpoint

        checkpoint = model if isinstance(model, Checkpoint) else load_checkpoint(model)
        opened = TorchBackend(checkpoint, device or ("cuda" if cuda_available() else "cpu"), half)
    opened.choice = choice
    return opened


__all__ = ["BACKENDS", "Backend", "choose_onnx_backend", "open_backend"]
