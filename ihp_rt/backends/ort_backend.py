"""ONNX Runtime backend: the embedded default on CPU; CUDA / TensorRT execution providers
where the installed onnxruntime build has them.

The .onnx file alone is enough: its metadata carries the ModelSpec. The network input is one
pre-allocated (1, 3 + C, S, S) array bound with I/O binding; set_image fills the RGB channels,
predict re-encodes only the click maps into the rest, in place.

On the CUDA provider that array lives in GPU memory (CuPy) and is bound by device pointer: the
RGB channels are uploaded once per image and the CuPy kernel rewrites only the maps per click,
on the GPU, so no click copies the ~20 MB input again (ONNX Runtime copies a host-bound input
to the GPU on every run). Without a working CuPy it falls back to the host buffer and says so
in ``note``. A CUDA provider that ONNX Runtime fails to load (it then runs the session on CPU
and only logs why) is seen in the session's providers: the backend becomes the CPU one and says so.

On the CPU provider the graph is cut after its first convolution (see :mod:`.stem`): set_image
runs that convolution once with empty click maps, and each click patches its output only
where the clicks reach, so the full-resolution 7x7 convolution over 3 + C channels is not
paid again per click. Graphs that do not start with a plain convolution run whole.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

from ihp_rt.backends.base import cupy_with_click_kernel, one_line
from ihp_rt.backends.stem import SplitGraph, patch_stem, split_after_stem
from ihp_rt.correction import Boost, Corrector, Pass
from ihp_rt.encoding import encode_cpu
from ihp_rt.errors import BackendError, ModelError
from ihp_rt.spec import (
    ONNX_HEAD_INPUTS,
    ONNX_HEAD_KEY,
    ONNX_OUTPUT_KEY,
    ONNX_PASS_OUTPUTS,
    ONNX_PRECISION_KEY,
    ONNX_SPEC_KEY,
    ModelSpec,
)

SPLIT_MAX_BYTES = 64 * 2**20  # see OrtBackend._split
STEM_CACHE = 16  # images whose first-layer output is kept (3.6 MB each for the default model at 473 px)

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


CudaKit = tuple[ModuleType, Callable, int]  # cupy, its click encoder, the CUDA device to run on


class _CudaInput:
    """The network input in GPU memory, bound to ONNX Runtime by pointer (IOBinding.bind_input
    with device_type 'cuda'), written by CuPy on a stream of its own. ONNX Runtime's CUDA
    provider runs on its own stream, so every write is synchronised before the run.

    Everything runs on one device, ``device_id``: the session's CUDA provider is given it (it
    would default to device 0), and every CuPy call here makes it current first, since CUDA's
    current device is per thread and a server calls from threads of its own."""

    def __init__(self, kit: CudaKit, spec: ModelSpec) -> None:
        self._cp, self._encode, self.device_id = kit
        self.spec = spec
        size = spec.input_size
        with self._cp.cuda.Device(self.device_id):
            self.buffer = self._cp.zeros((1, spec.in_channels, size, size), dtype=self._cp.float32)
            self.stream = self._cp.cuda.Stream(non_blocking=True)

    @staticmethod
    def probe() -> tuple[CudaKit | None, str]:
        """CuPy, its click encoder and CuPy's current device, or None and why CuPy cannot be used.
        Done before the session is made, which must be told the device."""
        try:
            cp, encode_cuda = cupy_with_click_kernel()
        except BackendError as e:
            return None, f"input bound from host memory, copied whole to the GPU on every click: {e}"
        return (cp, encode_cuda, cp.cuda.Device().id), ""

    def bind(self, binding) -> None:
        binding.bind_input("input", "cuda", self.device_id, np.float32, tuple(self.buffer.shape),
                           int(self.buffer.data.ptr))

    def set_image(self, image: np.ndarray) -> None:
        with self._cp.cuda.Device(self.device_id):
            self.buffer[0, :3].set(np.ascontiguousarray(image, dtype=np.float32), stream=self.stream)
            self.stream.synchronize()

    def encode(self, clicks: np.ndarray) -> None:
        size = self.spec.input_size
        with self._cp.cuda.Device(self.device_id):
            self._encode(clicks, self.spec.num_classes, size, size, self.spec.cap, out=self.buffer[0, 3:],
                         stream=self.stream)
            self.stream.synchronize()


class OrtCorrector:
    """The correction head's own graph on ONNX Runtime's CPU provider, whatever runs the network:
    a few small convolutions over a window, which a GPU backend would not win back from two
    transfers per click."""

    def __init__(self, graph: bytes, threads: int, origin: str) -> None:
        ort = _ort()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise ModelError(f"{origin}: its correction head does not load: {one_line(e)}") from None

    @classmethod
    def from_metadata(cls, meta: dict[str, str], spec: ModelSpec, threads: int, origin: str) -> OrtCorrector | None:
        """The head a model's metadata carries, None for a model without one; a model whose spec
        has a head and whose metadata lacks it is refused."""
        if not spec.correction_head:
            return None
        if ONNX_HEAD_KEY not in meta:
            raise ModelError(f"{origin}: the model has a correction head but its file does not carry it; "
                             "export it again with `ihp-rt export`")
        return cls(base64.b64decode(meta[ONNX_HEAD_KEY]), threads, origin)

    def __call__(self, features: np.ndarray, coarse: np.ndarray, clicks: np.ndarray,
                 origin: np.ndarray) -> np.ndarray:
        return self.session.run(None, dict(zip(ONNX_HEAD_INPUTS, (features, coarse, clicks, origin), strict=True)))[0]


def _not_loadable(path: Path, error: Exception) -> ModelError:
    """One line naming the file, whichever library (onnx or onnxruntime) failed to read it."""
    return ModelError(f"{path} is not a loadable ONNX model: {one_line(error)}")


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
        split = self._split(path) if provider == "cpu" else None
        cuda, self.note = _CudaInput.probe() if provider == "cuda" else (None, "")
        provider_options = {"device_id": cuda[2]} if cuda else None  # CuPy's device, where the input will live
        self.session = self._session(ort, split.body_model if split else str(path), options, provider, path,
                                     provider_options)
        if PROVIDERS[provider] not in self.session.get_providers():
            # ONNX Runtime answers a provider that fails to load (CUDA or cuDNN libraries missing or of
            # another version) by logging it and running the session on its CPU provider: no exception.
            # A device pointer bound into that session would be read as host memory, so the backend is
            # rebuilt as the CPU one it really is, and says so.
            self.note = (f"{PROVIDERS[provider]} did not load (ONNX Runtime's log above says why, usually CUDA or "
                         "cuDNN libraries that do not load); running on CPU")
            provider, cuda = "cpu", None
            split = self._split(path)
            self.session = self._session(ort, split.body_model if split else str(path), options, provider, path)
        meta = self.session.get_modelmeta().custom_metadata_map
        if ONNX_SPEC_KEY not in meta:
            raise ModelError(f"{path} has no ihp-rt metadata; export it with `ihp-rt export`")
        self.spec = ModelSpec.from_dict(json.loads(meta[ONNX_SPEC_KEY]))
        self.output = meta.get(ONNX_OUTPUT_KEY, "labels")
        self.name = f"onnxruntime-{provider}" + ("-fp16" if meta.get(ONNX_PRECISION_KEY) == "fp16" else "")
        if split is not None and split.stem.weight.shape[1] != self.spec.num_classes:
            raise ModelError(f"{path}: its first layer reads {split.stem.weight.shape[1]} click maps, its label set "
                             f"{self.spec.labels.name!r} has {self.spec.num_classes} classes")
        size = self.spec.input_size
        self._device = _CudaInput(cuda, self.spec) if cuda else None
        self._binding = self.session.io_binding()
        if self._device is not None:
            self._input = np.zeros(0, dtype=np.float32)  # unused: the input lives on the GPU
            self._device.bind(self._binding)
        else:
            self._input = np.zeros((1, self.spec.in_channels, size, size), dtype=np.float32)
            self._binding.bind_cpu_input("input", self._input)
        graph_outputs = {output.name for output in self.session.get_outputs()}
        self.corrector: Corrector | None = OrtCorrector.from_metadata(meta, self.spec, options.intra_op_num_threads,
                                                                      str(path))
        if self.corrector is None and ONNX_PASS_OUTPUTS[0] in graph_outputs:  # older exports: network on every click
            self.corrector = Boost(self.spec.input_size)
        for name in (self.output, *(name for name in ONNX_PASS_OUTPUTS if name in graph_outputs)):
            self._binding.bind_output(name)
        self._stem_conv = split.stem if split else None
        if split is not None:
            stem_options = ort.SessionOptions()  # runs once per image: its threads must not spin beside the body's
            stem_options.intra_op_num_threads = options.intra_op_num_threads
            stem_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._stem_session = self._session(ort, split.stem_model, stem_options, provider, path)
            self._input[0, 3:] = self.spec.cap  # stays empty: the stem sees clicks only through its patch
            self._maps = np.empty((self.spec.num_classes, size, size), dtype=np.float32)
            self._stem = np.zeros((1, split.stem.weight.shape[0], *(2 * [split.stem.out_size(size)])), np.float32)
            self._base = self._stem[0].copy()
            self._bases: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
            self._binding.bind_cpu_input(split.stem_output, self._stem)
        self.timings: dict[str, float] = {}

    @staticmethod
    def _split(path: Path) -> SplitGraph | None:
        """The graph cut after its first convolution, for light models only: cutting reads the
        whole graph into Python once, a transient copy of every weight. The stem took a quarter of
        the default MobileNetV3 model's per-click time (19 MB) but is a few per cent of the
        paper's ResNet-101 (180 MB), where the copy would cost more than the cut saves."""
        if path.stat().st_size > SPLIT_MAX_BYTES:
            return None
        import onnx

        try:
            model = onnx.load(str(path))
        except Exception as e:
            raise _not_loadable(path, e) from None
        return split_after_stem(model, "input")

    @staticmethod
    def _session(ort, source: str | bytes, options, provider: str, path: Path, provider_options: dict | None = None):
        providers = [(PROVIDERS[provider], provider_options) if provider_options else PROVIDERS[provider]]
        try:
            return ort.InferenceSession(source, options, providers=providers)
        except Exception as e:
            raise _not_loadable(path, e) from None

    def set_image(self, image: np.ndarray) -> None:
        """Load an image; with a cut graph, its first-layer output is kept for the last
        ``STEM_CACHE`` images, so sessions sharing this backend (a server's clients clicking in
        turn) do not pay the first layer again each time the turn passes."""
        if self._device is not None:
            self._device.set_image(image)
            return
        if self._stem_conv is None:
            self._input[0, :3] = image
            return
        cached = self._bases.get(id(image))
        if cached is None or cached[0] is not image:  # the image itself is kept, so its id is not reused
            self._input[0, :3] = image
            cached = (image, self._stem_session.run(None, {"input": self._input})[0][0])
            self._bases[id(image)] = cached
            while len(self._bases) > STEM_CACHE:
                self._bases.popitem(last=False)
        self._bases.move_to_end(id(image))
        self._base = cached[1]

    def predict(self, clicks: np.ndarray) -> np.ndarray:
        size, cap = self.spec.input_size, self.spec.cap
        t0 = time.perf_counter()
        if self._device is not None:
            self._device.encode(clicks)
        else:
            encode_cpu(clicks, self.spec.num_classes, size, size, cap,
                       out=self._input[0, 3:] if self._stem_conv is None else self._maps)
        t1 = time.perf_counter()
        if self._stem_conv is not None:  # the first layer of the network: counted in network_ms
            patch_stem(self._stem_conv, self._base, self._maps, clicks, cap, out=self._stem[0])
        self.session.run_with_iobinding(self._binding)
        t2 = time.perf_counter()
        first, *extra = (output[0] for output in self._binding.copy_outputs_to_cpu())
        if self.output != "labels":
            first = first.argmax(0).astype(np.uint8)
        t3 = time.perf_counter()
        self.timings = {"encode_ms": (t1 - t0) * 1e3, "network_ms": (t2 - t1) * 1e3, "download_ms": (t3 - t2) * 1e3}
        return Pass(first, *extra)
