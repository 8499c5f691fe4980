"""The contract between a Session and an inference engine.

A backend owns its input buffer and the click encoding for its device, so that e.g. a GPU
backend can encode straight into device memory: the session hands it the pre-processed image
once, then only the clicks (model frame) on each predict.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Protocol

import numpy as np

from ihp_rt.correction import Corrector, Pass
from ihp_rt.errors import BackendError
from ihp_rt.spec import ModelSpec

ONE_LINE_LIMIT = 300  # characters of a library's error kept in a message


def one_line(error: BaseException) -> str:
    """``error`` as one line of at most ONE_LINE_LIMIT characters (its type name when it has no text).

    CUDA, TensorRT and ONNX Runtime errors often span many lines; they end up inside
    ``backend.choice``, a backend's ``note`` and the CLI's one-line error, which must stay one
    line each. Every backend uses this one formatter so those messages read alike."""
    return " ".join(str(error).split())[:ONE_LINE_LIMIT] or type(error).__name__


def cupy_with_gpu() -> ModuleType:
    """The cupy module with at least one CUDA device visible, else BackendError saying what is missing.

    One probe for every GPU path -- auto's TensorRT check, the TensorRT backend and builder, ONNX
    Runtime's device input -- so they agree on what "usable" means and say it in the same words.
    It calls CuPy rather than only importing it: a CuPy built for another CUDA major version
    imports fine and fails on its first call."""
    try:
        import cupy as cp
    except ImportError as e:
        if e.name == "cupy":
            raise BackendError("CuPy is not installed; pip install 'ihp-rt[gpu]'") from None
        raise BackendError(f"CuPy does not load: {one_line(e)}") from None  # e.g. its CUDA libraries
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as e:  # CUDARuntimeError, or a CuPy built for another CUDA major version
        raise BackendError(f"no usable CUDA GPU through CuPy: {one_line(e)}") from None
    if count < 1:
        raise BackendError("no CUDA GPU visible to CuPy")
    return cp


def cupy_with_click_kernel() -> tuple[ModuleType, Callable[..., object]]:
    """The cupy module and its click encoder, the encoder compiled and run once on the current
    device, else BackendError saying what is missing.

    The probe of every path that encodes clicks on the GPU (auto's TensorRT check, the TensorRT
    backend, ONNX Runtime's device input): CuPy imports and finds the GPU without NVRTC or the
    CUDA toolkit, and the kernel is compiled only at its first launch, which would be a user's
    first click."""
    cp = cupy_with_gpu()
    try:
        from ihp_rt.encoding.cuda import check_kernel, encode_cuda

        check_kernel()
    except Exception as e:  # CuPy's RuntimeError or CompileException (NVRTC), a CUDA error, a wrong result
        raise BackendError(f"the CUDA click-map kernel does not compile or run through CuPy: {one_line(e)}") from None
    return cp, encode_cuda


class Backend(Protocol):
    """An engine that maps (image, clicks) to a label map in the model frame."""

    name: str  # engine and precision actually running, e.g. "onnxruntime-cpu", "tensorrt-fp16"
    spec: ModelSpec
    choice: str  # why this engine: "backend 'torch' as asked", or what `auto` found
    timings: dict[str, float]  # stage times of the last predict: encode_ms, network_ms, download_ms
    corrector: Corrector | None  # what answers corrections on this engine (None: every click runs the network)

    def set_image(self, image: np.ndarray) -> None:
        """Take a (3, S, S) float32 normalised image; called once per image."""

    def predict(self, clicks: np.ndarray) -> Pass:
        """(K, 3) int32 (x, y, label) clicks in the model frame -> a network pass: (S, S) uint8
        labels and what corrections read: the stride-4 logits, and for a model with a correction head
        its features."""
