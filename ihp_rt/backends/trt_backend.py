"""Native TensorRT backend: the click -> mask loop stays on the GPU.

Device memory, the stream and the click-encoding kernel all belong to CuPy (one CUDA library,
one context). Per image the normalised RGB is uploaded once into channels 0..2 of the engine's
input buffer; per click the CuPy kernel writes the maps straight into channels 3.. of that same
buffer, the engine runs with ``execute_async_v3`` on the stream (arg-max inside the graph), and
only the uint8 mask is copied back, into pinned host memory.

Opened from an .onnx file it builds (or reuses) a cached engine keyed by ONNX hash, TensorRT
version and GPU; opened from an .engine file it checks the sidecar and refuses a mismatch.
This module could not be run where it was written (no TensorRT on the machines available);
it is kept thin over parts tested elsewhere: the ONNX graph, engine_cache, the CUDA kernel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ihp_rt.backends.engine_cache import check_compatible, read_sidecar
from ihp_rt.errors import BackendError, ModelError
from ihp_rt.spec import ModelSpec


def _import_gpu_libraries():
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendError(f"backend 'tensorrt' needs the tensorrt package (pip install 'ihp-rt[gpu]'): {e}") from None
    try:
        import cupy as cp
    except ImportError as e:
        raise BackendError(f"backend 'tensorrt' needs CuPy for its device buffers (pip install 'ihp-rt[gpu]'): {e}"
                           ) from None
    try:
        if cp.cuda.runtime.getDeviceCount() < 1:
            raise BackendError("backend 'tensorrt' needs a CUDA GPU; none is visible")
    except cp.cuda.runtime.CUDARuntimeError as e:
        raise BackendError(f"backend 'tensorrt' needs a CUDA GPU: {e}") from None
    return trt, cp


class TensorRTBackend:
    """One execution context over static CuPy buffers on a dedicated stream."""

    def __init__(self, model: str | Path) -> None:
        trt, cp = _import_gpu_libraries()
        from ihp_rt.encoding.cuda import encode_cuda
        from ihp_rt.export.to_tensorrt import build_engine, gpu_identity

        self._cp, self._encode = cp, encode_cuda
        self.timings: dict[str, float] = {}
        path = Path(model)
        if path.suffix.lower() == ".onnx":
            path = build_engine(path)  # cached by ONNX hash + TensorRT version + GPU: never stale
        info = read_sidecar(path)
        check_compatible(info, trt.__version__, *gpu_identity(), engine=path)
        self.spec = ModelSpec.from_dict(info.spec)
        self.name = f"tensorrt-{info.precision}"
        logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(logger)
        self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise ModelError(f"{path} is corrupt or was built for another TensorRT/GPU: rebuild it")
        self._context = self._engine.create_execution_context()
        self._stream = cp.cuda.Stream(non_blocking=True)
        if info.output != "labels":
            raise ModelError(f"{path} outputs {info.output}: export with the default `--head labels` so the "
                             "arg-max runs on the GPU and only the mask is copied back")
        size, spec = self.spec.input_size, self.spec
        self._input = cp.zeros((1, spec.in_channels, size, size), dtype=cp.float32)
        self._output = cp.empty((1, size, size), dtype=cp.uint8)
        self._host = cp.cuda.alloc_pinned_memory(self._output.nbytes)
        self._host_view = np.frombuffer(self._host, dtype=np.uint8, count=self._output.size).reshape(1, size, size)
        self._context.set_input_shape("input", self._input.shape)
        self._context.set_tensor_address("input", int(self._input.data.ptr))
        self._context.set_tensor_address("labels", int(self._output.data.ptr))

    def set_image(self, image: np.ndarray) -> None:
        with self._stream:
            self._input[0, :3].set(np.ascontiguousarray(image, dtype=np.float32), stream=self._stream)

    def predict(self, clicks: np.ndarray) -> np.ndarray:
        size, spec = self.spec.input_size, self.spec
        events = [self._cp.cuda.Event() for _ in range(4)]  # stage timing without extra synchronisation
        with self._stream:
            events[0].record(self._stream)
            self._encode(clicks, spec.num_classes, size, size, spec.cap, out=self._input[0, 3:], stream=self._stream)
            events[1].record(self._stream)
            if not self._context.execute_async_v3(self._stream.ptr):
                raise BackendError("TensorRT execution failed (see the log above)")
            events[2].record(self._stream)
            self._output.get(stream=self._stream, out=self._host_view)
            events[3].record(self._stream)
        self._stream.synchronize()
        elapsed = self._cp.cuda.get_elapsed_time
        self.timings = {"encode_ms": elapsed(events[0], events[1]), "network_ms": elapsed(events[1], events[2]),
                        "download_ms": elapsed(events[2], events[3])}
        return self._host_view[0].copy()
