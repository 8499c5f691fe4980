"""ONNX -> TensorRT engine (+ JSON sidecar), with a timing cache.

TensorRT 11 builds strongly typed networks only: precision comes from the ONNX graph, so an FP16
engine is built from an FP16 export (``ihp-rt export --precision fp16``). On TensorRT 10 the
FP16 builder flag is used instead when asked for. One optimisation profile with the model's
fixed input shape (1, 3 + C, S, S): the session always feeds that shape, and a static shape
lets TensorRT pick its fastest kernels.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from ihp_rt.backends.engine_cache import EngineInfo, cache_dir, file_sha256, write_sidecar
from ihp_rt.errors import BackendError, ModelError
from ihp_rt.spec import ONNX_OUTPUT_KEY, ONNX_SPEC_KEY, ModelSpec


def onnx_precision(model: onnx.ModelProto) -> str:
    """'fp16' when the graph's convolution weights are half precision, else 'fp32'."""
    types = {init.data_type for init in model.graph.initializer if len(init.dims) == 4}
    return "fp16" if types == {onnx.TensorProto.FLOAT16} else "fp32"


def read_onnx_spec(model: onnx.ModelProto, path: Path) -> tuple[ModelSpec, str]:
    meta = {p.key: p.value for p in model.metadata_props}
    if ONNX_SPEC_KEY not in meta:
        raise ModelError(f"{path} has no ihp-rt metadata; export it with `ihp-rt export`")
    return ModelSpec.from_dict(json.loads(meta[ONNX_SPEC_KEY])), meta.get(ONNX_OUTPUT_KEY, "labels")


def gpu_identity() -> tuple[str, str]:
    """(GPU name, compute capability) of the current CUDA device, through CuPy."""
    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return name, f"{props['major']}.{props['minor']}"


def build_engine(onnx_path: str | Path, engine_path: str | Path | None = None, fp16: bool = True,
                 workspace_gib: float = 4.0, timing_cache: str | Path | None = None) -> Path:
    """Build (or find in the cache) the engine for ``onnx_path`` on this GPU and TensorRT."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendError(f"building an engine needs TensorRT (pip install 'ihp-rt[gpu]'): {e}") from None
    onnx_path = Path(onnx_path)
    model = onnx.load(str(onnx_path))
    spec, output = read_onnx_spec(model, onnx_path)
    precision = onnx_precision(model)
    weakly_typed_fp16 = fp16 and precision == "fp32"
    if weakly_typed_fp16 and not hasattr(trt.BuilderFlag, "FP16"):
        raise BackendError(f"TensorRT {trt.__version__} builds strongly typed networks only: export an FP16 graph "
                           "with `ihp-rt export --precision fp16` and build from that")
    gpu, capability = gpu_identity()
    info = EngineInfo(file_sha256(onnx_path), trt.__version__, gpu, capability,
                      "fp16" if fp16 or precision == "fp16" else "fp32", spec.to_dict(), output)
    engine_path = Path(engine_path) if engine_path else cache_dir() / f"{info.key()}.engine"
    if engine_path.is_file():
        return engine_path
    engine_path.parent.mkdir(parents=True, exist_ok=True)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if weakly_typed_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    shape = (1, spec.in_channels, spec.input_size, spec.input_size)
    profile = builder.create_optimization_profile()
    profile.set_shape("input", shape, shape, shape)
    config.add_optimization_profile(profile)
    cache_file = Path(timing_cache) if timing_cache else cache_dir() / "timing.cache"
    cache = config.create_timing_cache(cache_file.read_bytes() if cache_file.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"TensorRT failed to build an engine from {onnx_path} (see the log above)")
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    cache_file.write_bytes(memoryview(config.get_timing_cache().serialize()))
    tmp = engine_path.with_name(engine_path.name + ".tmp")
    tmp.write_bytes(memoryview(serialized))
    tmp.replace(engine_path)
    write_sidecar(engine_path, info)
    return engine_path
