"""TensorRT: build (or reuse) an engine for this GPU, then run the click -> mask loop on it.

Building lives here, in the runtime, because opening an .onnx on TensorRT builds and caches the
engine; ``ihp_rt.export.to_tensorrt`` (``ihp-rt build-engine``) re-exports the builder, and the
runtime never imports ``ihp_rt.export``.

Precision. TensorRT 11 builds strongly typed networks only (BuilderFlag.FP16 is gone): the
engine computes in the types of the ONNX graph. So an FP16 engine comes from an FP16 export
(``ihp-rt export --precision fp16``); an FP32 graph builds an FP32 engine, and the backend says
so in ``backend.choice`` instead of refusing to open. Asking explicitly for FP16 (``fp16=True``,
``build-engine --fp16``) from an FP32 graph on TensorRT 11 is refused with that fix named. On
TensorRT 10 the FP16 builder flag over a weakly typed network is still used for FP32 graphs.

Running. Device memory, the stream and the click-encoding kernel all belong to CuPy (one CUDA
library, one context). Per image the normalised RGB is uploaded once into channels 0..2 of the
engine's input buffer; per click the CuPy kernel writes the maps straight into channels 3.. of
that same buffer, the engine runs with ``execute_async_v3`` on our stream (arg-max inside the
graph), and only the uint8 mask is copied back, into pinned host memory -- with the stride-4
logits corrections edit on the host (:class:`~ihp_rt.correction.Boost`), and for a model with a
correction head its features: the head runs its own small graph on the host
(:class:`~ihp_rt.backends.ort_backend.OrtCorrector`), which the sidecar carries from the .onnx.
The sidecar also names the graph's outputs, so an engine of an older export without them runs
the network on every click. An execution that
fails is the engine's fault, which retrying the click does not fix: ModelError (a server's 500),
not BackendError (its 503 with Retry-After).

No machine here has TensorRT: tests/test_tensorrt_contract.py checks this module's calls
against a stand-in that follows the documented TensorRT Python API.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ihp_rt.backends.base import cupy_with_click_kernel, cupy_with_gpu, one_line
from ihp_rt.backends.engine_cache import (
    EngineFile,
    EngineInfo,
    atomic_write_bytes,
    cache_dir,
    check_compatible,
    check_engine_bytes,
    engine_lock,
    file_sha256,
    read_sidecar,
    reusable_engine,
    timing_cache_path,
    write_engine,
)
from ihp_rt.backends.ort_backend import OrtCorrector
from ihp_rt.correction import Boost, Corrector, Pass
from ihp_rt.errors import BackendError, IhpError, ModelError
from ihp_rt.spec import ONNX_HEAD_KEY, ONNX_OUTPUT_KEY, ONNX_PASS_OUTPUTS, ONNX_SPEC_KEY, ModelSpec

log = logging.getLogger(__name__)

INPUT, OUTPUT = "input", "labels"  # tensor names of every `ihp-rt export` graph with the labels head


def import_tensorrt():
    """The tensorrt module, or BackendError: a wheel whose libraries fail to load raises OSError
    or RuntimeError rather than ImportError, and must be reported the same way."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendError(f"backend 'tensorrt' needs the tensorrt package (pip install 'ihp-rt[gpu]'): {e}") from None
    except Exception as e:
        raise BackendError(f"TensorRT is installed but does not load: {one_line(e)}") from None
    return trt


def onnx_precision(model) -> str:
    """'fp16' when the graph's convolution weights are half precision, else 'fp32'."""
    import onnx

    types = {init.data_type for init in model.graph.initializer if len(init.dims) == 4}
    return "fp16" if types == {onnx.TensorProto.FLOAT16} else "fp32"


def read_onnx_spec(model, path: Path) -> tuple[ModelSpec, str, str | None]:
    """(spec, output, correction head graph in base64 or None) from an exported graph's metadata."""
    meta = {p.key: p.value for p in model.metadata_props}
    if ONNX_SPEC_KEY not in meta:
        raise ModelError(f"{path} has no ihp-rt metadata; export it with `ihp-rt export`")
    return ModelSpec.from_dict(json.loads(meta[ONNX_SPEC_KEY])), meta.get(ONNX_OUTPUT_KEY, OUTPUT), meta.get(
        ONNX_HEAD_KEY)


def gpu_identity() -> tuple[str, str]:
    """(GPU name, compute capability) of the current CUDA device, through CuPy.

    Through the shared probe, not a bare import: `ihp-rt build-engine` calls this before any
    other CuPy use, and a missing CuPy or GPU must read as a one-line BackendError there too."""
    try:
        cp = cupy_with_gpu()
    except BackendError as e:
        raise BackendError(f"TensorRT engines are built and checked per GPU, which needs CuPy and a CUDA GPU: {e}"
                           ) from None
    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return name, f"{props['major']}.{props['minor']}"


def _unparsable(trt, onnx_path: Path, parser_errors: str) -> IhpError:
    """The error for a graph TensorRT's parser rejects, chosen by whether ONNX Runtime loads it.

    The parser supports fewer operators than ONNX Runtime, so a rejection is usually TensorRT's
    limit: BackendError, which `auto` answers by moving on to ONNX Runtime. Only a graph ONNX
    Runtime cannot load either is the model's fault (ModelError: no other engine would hide it)."""
    try:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL  # only loading
        onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    except ImportError:
        pass  # nothing to compare with: the parser's refusal is all we know, and it is TensorRT's
    except Exception as e:
        return ModelError(f"{onnx_path} is not a loadable ONNX model: TensorRT cannot parse it ({parser_errors}) and "
                          f"ONNX Runtime cannot load it ({one_line(e)})")
    return BackendError(f"TensorRT {trt.__version__} cannot parse {onnx_path}: {parser_errors}")


def strongly_typed_only(trt) -> bool:
    """TensorRT 11 dropped BuilderFlag.FP16: every network is strongly typed."""
    return not hasattr(trt.BuilderFlag, "FP16")


@dataclass(frozen=True)
class BuildPlan:
    """How an engine is built, decided before building so the cache key knows the precision."""

    precision: str  # of the engine: "fp16" or "fp32"
    network_flags: int  # for Builder.create_network
    fp16_flag: bool  # set BuilderFlag.FP16 (weakly typed network, TensorRT 10 only)
    why: str


def plan_build(trt, graph_precision: str, fp16: bool | None) -> BuildPlan:
    """The build for a graph of ``graph_precision`` on this TensorRT.

    ``fp16``: True = the engine must be FP16; False = no FP16 flag (the graph's own precision);
    None (opening an .onnx) = FP16 where this TensorRT can make it, else the graph's precision.
    """
    if strongly_typed_only(trt):  # the STRONGLY_TYPED creation flag is deprecated there and ignored
        if graph_precision == "fp32" and fp16:
            raise BackendError(f"TensorRT {trt.__version__} builds strongly typed networks only, in the precision of "
                               "the graph, and this graph is FP32: export an FP16 graph with `ihp-rt export "
                               "--precision fp16` and build from that (or build without --fp16 for an FP32 engine)")
        why = f"strongly typed (TensorRT {trt.__version__}): the engine keeps the graph's {graph_precision.upper()}"
        return BuildPlan(graph_precision, 0, False, why)
    strongly_typed = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if graph_precision == "fp32" and fp16 is not False:
        return BuildPlan("fp16", 0, True, f"weakly typed with BuilderFlag.FP16 (TensorRT {trt.__version__})")
    return BuildPlan(graph_precision, strongly_typed, False,
                     f"strongly typed (TensorRT {trt.__version__}): the engine keeps the graph's "
                     f"{graph_precision.upper()}")


def _attach_timing_cache(trt, config, cache_file: Path) -> None:
    """Load ``cache_file`` into the builder config. set_timing_cache returns False for a cache
    TensorRT will not use (another TensorRT build or device): the build then starts from an empty
    cache, and the file is replaced after it, instead of the refusal passing unnoticed."""
    blob = cache_file.read_bytes() if cache_file.is_file() else b""
    cache = config.create_timing_cache(blob)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return
    if blob:
        log.warning("TensorRT refused the timing cache %s (another TensorRT build or GPU); starting a new one",
                    cache_file)
        cache = config.create_timing_cache(b"")
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return
    raise BackendError(f"TensorRT {trt.__version__} refused an empty timing cache")


def build_engine(onnx_path: str | Path, engine_path: str | Path | None = None, fp16: bool | None = None,
                 workspace_gib: float = 4.0, timing_cache: str | Path | None = None) -> Path:
    """Build the engine for ``onnx_path`` on this GPU and TensorRT, or reuse the one already there;
    returns its path (see :func:`ensure_engine`, which this is for `ihp-rt build-engine`)."""
    return ensure_engine(onnx_path, engine_path, fp16, workspace_gib, timing_cache).path


def ensure_engine(onnx_path: str | Path, engine_path: str | Path | None = None, fp16: bool | None = None,
                  workspace_gib: float = 4.0, timing_cache: str | Path | None = None) -> EngineFile:
    """The engine for ``onnx_path`` on this GPU and TensorRT, built or reused, with its sidecar.

    An existing engine (in the cache, or at ``engine_path``) is reused only when its sidecar says
    it was built from this ONNX file for this TensorRT, GPU and precision, and its bytes are the
    ones the sidecar recorded; anything else is rebuilt in place. ``fp16``: see :func:`plan_build`.
    Check, build and write happen under the engine's lock, and the bytes and sidecar returned are
    the ones checked or written there: a caller that read the files again could find another
    process's pair, or half of it (see :mod:`ihp_rt.backends.engine_cache`).
    """
    import onnx

    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ModelError(f"model file not found: {onnx_path}")
    try:
        model = onnx.load(str(onnx_path))
    except Exception as e:  # DecodeError and the like: no engine could read this file
        raise ModelError(f"{onnx_path} is not a loadable ONNX model: {one_line(e)}") from None
    spec, output, head = read_onnx_spec(model, onnx_path)
    plan = plan_build(trt, onnx_precision(model), fp16)
    gpu, capability = gpu_identity()
    passes = [out.name for out in model.graph.output if out.name in ONNX_PASS_OUTPUTS]
    wanted = EngineInfo(file_sha256(onnx_path), trt.__version__, gpu, capability, plan.precision, spec.to_dict(),
                        output, head=head, passes=passes)
    engine_path = Path(engine_path) if engine_path else cache_dir() / f"{wanted.key()}.engine"
    with engine_lock(engine_path):  # N workers starting together: one builds, the others reuse its engine
        reused = reusable_engine(engine_path, wanted)
        if reused is not None:
            return reused
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(plan.network_flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(onnx_path.read_bytes()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise _unparsable(trt, onnx_path, errors)
        inputs = [network.get_input(i).name for i in range(network.num_inputs)]
        if inputs != [INPUT]:
            raise ModelError(f"{onnx_path} has inputs {inputs}, expected one named {INPUT!r}: "
                             "export it with `ihp-rt export`")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
        if plan.fp16_flag:
            config.set_flag(trt.BuilderFlag.FP16)
        # One profile with the one shape the session feeds: a static shape lets TensorRT pick its
        # fastest kernels.
        shape = (1, spec.in_channels, spec.input_size, spec.input_size)
        profile = builder.create_optimization_profile()
        profile.set_shape(INPUT, shape, shape, shape)
        config.add_optimization_profile(profile)
        cache_file = Path(timing_cache) if timing_cache else timing_cache_path(trt.__version__, gpu, capability)
        _attach_timing_cache(trt, config, cache_file)
        log.info("building a TensorRT engine from %s: %s", onnx_path, plan.why)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
        atomic_write_bytes(cache_file, memoryview(config.get_timing_cache().serialize()))
        data = bytes(serialized)
        return EngineFile(engine_path, write_engine(engine_path, data, wanted), data)


class TensorRTBackend:
    """One execution context over static CuPy buffers on a dedicated stream.

    Everything lives on the device that is current when the backend opens. CUDA's current device
    is per thread and a server predicts from threads of its own (current device 0), so every call
    makes that device current for its duration."""

    def __init__(self, model: str | Path) -> None:
        trt = import_tensorrt()
        try:  # device buffers, stream and click kernel all belong to CuPy; the kernel is tried here
            cp, encode_cuda = cupy_with_click_kernel()
        except BackendError as e:
            raise BackendError(f"backend 'tensorrt' needs CuPy and a CUDA GPU: {e}") from None
        self._cp, self._encode = cp, encode_cuda
        self._device_id = cp.cuda.Device().id  # the current one, made current again in every call
        self.timings: dict[str, float] = {}
        self.note = ""  # what `backend.choice` should add: e.g. why the engine is FP32
        path = Path(model)
        from_onnx = path.suffix.lower() == ".onnx"
        data: bytes | None = None
        if from_onnx:  # cached by ONNX hash + TensorRT version + GPU: never stale
            built = ensure_engine(path)  # its bytes and sidecar, as checked under the cache's lock:
            path, info, data = built.path, built.info, built.data  # the files may have changed since
        else:
            info = read_sidecar(path)
        check_compatible(info, trt.__version__, *gpu_identity(), engine=path)
        if info.output != OUTPUT:
            raise ModelError(f"{path} outputs {info.output}: export with the default `--head labels` so the "
                             "arg-max runs on the GPU and only the mask is copied back")
        if data is None:
            data = path.read_bytes()
            check_engine_bytes(info, data, path)
        self.spec = ModelSpec.from_dict(info.spec)
        self.name = f"tensorrt-{info.precision}"
        self._path = path  # the engine, named when it fails to execute
        if from_onnx and info.precision == "fp32" and strongly_typed_only(trt):
            self.note = (f"FP32 engine: TensorRT {trt.__version__} keeps the graph's precision and {Path(model).name} "
                         "is FP32; open an FP16 export (`ihp-rt export --precision fp16`) for an FP16 engine")
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise ModelError(f"{path} is corrupt or was built for another TensorRT/GPU: rebuild it")
        for name, dtype in ((INPUT, trt.DataType.FLOAT), (OUTPUT, trt.DataType.UINT8)):
            if self._engine.get_tensor_dtype(name) != dtype:
                raise ModelError(f"{path}: tensor {name!r} is {self._engine.get_tensor_dtype(name)}, expected {dtype}"
                                 " (export with `ihp-rt export`, which keeps a float32 input and a uint8 mask)")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise BackendError(f"TensorRT could not create an execution context for {path} (GPU memory?)")
        self._stream = cp.cuda.Stream(non_blocking=True)
        size, spec = self.spec.input_size, self.spec
        self._input = cp.zeros((1, spec.in_channels, size, size), dtype=cp.float32)
        if not self._context.set_input_shape(INPUT, self._input.shape):
            raise ModelError(f"{path} does not accept input shape {self._input.shape}")
        self.corrector: Corrector | None = None
        outputs = {OUTPUT: cp.uint8} | dict.fromkeys(info.passes, cp.float32)  # all go to the host with the mask
        if spec.correction_head:
            if info.head is None or len(info.passes) != len(ONNX_PASS_OUTPUTS):
                raise ModelError(f"{path}: the model has a correction head but its engine sidecar does not carry it; "
                                 "rebuild the engine from the .onnx with this ihp-rt")
            self.corrector = OrtCorrector(base64.b64decode(info.head), os.cpu_count() or 1, str(path))
        elif info.passes:
            self.corrector = Boost(self.spec.input_size)
        self._outputs = {name: cp.empty(tuple(self._context.get_tensor_shape(name)), dtype=dtype)
                         for name, dtype in outputs.items()}
        self._host = {name: cp.cuda.alloc_pinned_memory(buffer.nbytes) for name, buffer in self._outputs.items()}
        self._host_view = {name: np.frombuffer(self._host[name], dtype=buffer.dtype, count=buffer.size
                                               ).reshape(buffer.shape) for name, buffer in self._outputs.items()}
        for name, buffer in ((INPUT, self._input), *self._outputs.items()):
            if not self._context.set_tensor_address(name, int(buffer.data.ptr)):
                raise ModelError(f"{path} has no tensor {name!r} to bind")

    def set_image(self, image: np.ndarray) -> None:
        """Upload the RGB channels once per image; the click maps never leave the GPU."""
        with self._cp.cuda.Device(self._device_id):
            self._input[0, :3].set(np.ascontiguousarray(image, dtype=np.float32), stream=self._stream)

    def predict(self, clicks: np.ndarray) -> Pass:
        with self._cp.cuda.Device(self._device_id):
            size, spec = self.spec.input_size, self.spec
            events = [self._cp.cuda.Event() for _ in range(4)]  # stage timing without extra synchronisation
            with self._stream:
                events[0].record(self._stream)
                self._encode(clicks, spec.num_classes, size, size, spec.cap, out=self._input[0, 3:],
                             stream=self._stream)
                events[1].record(self._stream)
                if not self._context.execute_async_v3(self._stream.ptr):  # the engine's fault: a retry fails alike
                    raise ModelError(f"TensorRT failed to execute {self._path} (see the log above): the engine is "
                                     "broken or does not fit this GPU; rebuild it")
                events[2].record(self._stream)
                # queued behind the engine on our stream; the one synchronize below waits for both
                for name, buffer in self._outputs.items():
                    buffer.get(stream=self._stream, out=self._host_view[name], blocking=False)
                events[3].record(self._stream)
            self._stream.synchronize()
            elapsed = self._cp.cuda.get_elapsed_time
            self.timings = {"encode_ms": elapsed(events[0], events[1]), "network_ms": elapsed(events[1], events[2]),
                            "download_ms": elapsed(events[2], events[3])}
            return Pass(*(self._host_view[name][0].copy() for name in self._outputs))
