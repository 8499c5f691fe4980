"""Inference engines behind one interface; each imports its own library only when opened.

``open_backend`` picks the engine from the model file and the backend name. A backend asked
for by name that cannot run raises BackendError naming what is missing: never a silent
fallback. ``auto`` chooses by what is installed and usable -- TensorRT, then ONNX Runtime CUDA,
then ONNX Runtime CPU for an .onnx file; PyTorch (CUDA when present) for a checkpoint -- and
records why in ``backend.choice``. "Usable" means the libraries load, a GPU answers and the
click kernel compiles and runs on it, not only that the packages exist; and when TensorRT
still fails to open (say, its parser rejects this graph or it cannot build an engine for it),
``auto`` moves on to ONNX Runtime with that reason recorded. One fallback is ONNX Runtime's
own: a CUDA provider whose libraries do not load runs the session on CPU; the backend then
runs as onnxruntime-cpu and says why in ``backend.choice`` (see :mod:`.ort_backend`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from ihp_rt.backends.base import Backend, cupy_with_click_kernel, one_line
from ihp_rt.errors import BackendError, ModelError

if TYPE_CHECKING:
    from ihp_rt.model.checkpoint import Checkpoint

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")
CHECKPOINT_SUFFIXES = (".pt", ".pth")


def _tensorrt_usable() -> str | None:
    """None when TensorRT can run here, else why not. The libraries are loaded, not only found:
    a tensorrt wheel whose CUDA/TensorRT libraries do not load raises OSError or RuntimeError on
    import, a CuPy built for another CUDA version fails on its first call, and one without NVRTC
    fails to compile the click kernel, which is therefore compiled and run here."""
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed"
    try:
        import tensorrt as trt

        trt.Runtime(trt.Logger(trt.Logger.ERROR))
    except Exception as e:
        return f"TensorRT does not load: {one_line(e)}"
    try:
        cupy_with_click_kernel()
    except BackendError as e:
        return str(e)
    return None


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
    fallback_device: str | None = None  # ONNX Runtime's device if `auto` picked TensorRT and it fails to open
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

            providers = available_providers()
            problem = "device 'cpu' was asked" if device == "cpu" else _tensorrt_usable()
            backend, auto_device, choice = choose_onnx_backend(problem, providers)
            if backend == "tensorrt":
                fallback_device = device or ("cuda" if "cuda" in providers else "cpu")
            device = device or auto_device
        else:
            backend, choice = "torch", "a PyTorch checkpoint"

    if backend == "tensorrt":
        from ihp_rt.backends.trt_backend import TensorRTBackend

        try:
            opened: Backend = TensorRTBackend(model)
        except BackendError as e:  # a broken model (ModelError) is the user's to fix: not retried
            if fallback_device is None:
                raise
            from ihp_rt.backends.ort_backend import OrtBackend

            opened = OrtBackend(model, fallback_device, threads)
            choice = f"TensorRT failed to open ({one_line(e)}); ONNX Runtime on {fallback_device.upper()}"
    elif backend == "onnxruntime":
        from ihp_rt.backends.ort_backend import OrtBackend

        opened = OrtBackend(model, device or "cpu", threads)
    else:
        from ihp_rt.backends.torch_backend import TorchBackend, cuda_available
        from ihp_rt.model.checkpoint import Checkpoint, load_checkpoint

        checkpoint = model if isinstance(model, Checkpoint) else load_checkpoint(model)
        opened = TorchBackend(checkpoint, device or ("cuda" if cuda_available() else "cpu"), half)
    note = getattr(opened, "note", "")  # e.g. a TensorRT engine built in FP32 from an FP32 graph
    opened.choice = f"{choice}; {note}" if note else choice
    return opened


__all__ = ["BACKENDS", "Backend", "choose_onnx_backend", "open_backend"]
