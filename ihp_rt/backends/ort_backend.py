"""ONNX Runtime backend: the embedded default on CPU; CUDA / TensorRT execution providers
where the installed onnxruntime build has them.

The .onnx file alone is enough: its metadata carries the ModelSpec. The network input is one
pre-allocated (1, 3 + C, S, S) array bound with I/O binding; set_image fills the RGB channels,
predict re-encodes only the click maps into the rest, in place.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ihp_rt.encoding import encode_cpu
from ihp_rt.errors import BackendError, ModelError
from ihp_rt.spec import ONNX_OUTPUT_KEY, ONNX_PRECISION_KEY, ONNX_SPEC_KEY, ModelSpec

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def _ort():
    try:
        import onnxruntime
    except ImportError as e:
        raise BackendError(f"backend 'onnxruntime' needs the onnxruntime package: {e}") from None
    return onnxruntime


def available_providers() -> list[str]:
    """Our provider names ('cpu', 'cuda', 'tensorrt') the installed onnxruntime offers."""
    offered = set(_ort().get_available_providers())
    return [name for name, ep in PROVIDERS.items() if ep in offered]


class OrtBackend:
    """One InferenceSession with graph optimisations on and I/O binding over fixed buffers."""

    def __init__(self, path: str | Path, provider: str = "cpu", threads: int | None = None) -> None:
        ort = _ort()
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        if provider not in PROVIDERS:
            raise BackendError(f"unknown onnxruntime provider {provider!r}; known: {', '.join(PROVIDERS)}")
        if PROVIDERS[provider] not in ort.get_available_providers():
            raise BackendError(
                f"onnxruntime {ort.__version__} here has no {PROVIDERS[provider]} "
                f"(available: {', '.join(ort.get_available_providers())}); install onnxruntime-gpu and CUDA for it"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=[PROVIDERS[provider]])
        except Exception as e:
            reason = " ".join(str(e).split())[:300]
            raise ModelError(f"{path} is not a loadable ONNX model: {reason}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if ONNX_SPEC_KEY not in meta:
            raise ModelError(f"{path} has no ihp-rt metadata; export it with `ihp-rt export`")
        self.spec = ModelSpec.from_dict(json.loads(meta[ONNX_SPEC_KEY]))
        self.output = meta.get(ONNX_OUTPUT_KEY, "labels")
        self.name = f"onnxruntime-{provider}" + ("-fp16" if meta.get(ONNX_PRECISION_KEY) == "fp16" else "")
        size = self.spec.input_size
        self._input = np.zeros((1, self.spec.in_channels, size, size), dtype=np.float32)
        self._binding = self.session.io_binding()
        self._binding.bind_cpu_input("input", self._input)
        self._binding.bind_output(self.output)
        self.timings: dict[str, float] = {}

    def set_image(self, image: np.ndarray) -> None:
        self._input[0, :3] = image

    def predict(self, clicks: np.ndarray) -> np.ndarray:
        size = self.spec.input_size
        t0 = time.perf_counter()
        encode_cpu(clicks, self.spec.num_classes, size, size, self.spec.cap, out=self._input[0, 3:])
        t1 = time.perf_counter()
        self.session.run_with_iobinding(self._binding)
        t2 = time.perf_counter()
        result = self._binding.copy_outputs_to_cpu()[0][0]
        if self.output != "labels":
            result = result.argmax(0).astype(np.uint8)
        t3 = time.perf_counter()
        self.timings = {"encode_ms": (t1 - t0) * 1e3, "network_ms": (t2 - t1) * 1e3, "download_ms": (t3 - t2) * 1e3}
        return result
