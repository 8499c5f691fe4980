"""A stand-in `tensorrt` module for the contract tests of ihp-rt's TensorRT code.

This is NOT a test of TensorRT, which cannot be installed on any machine here. It implements
only the documented calls ihp_rt.backends.trt_backend makes, records them, and mimics the
behaviour our code depends on, so the tests can check what our builder and runner ask of
TensorRT. Signatures follow the TensorRT Python API reference (docs.nvidia.com/deeplearning/
tensorrt/latest/_static/python-api and the 11.x pages: infer/Core/Builder, NetworkConfig
(IBuilderConfig, BuilderFlag, MemoryPoolType), OptimizationProfile, TimingCache, Runtime, Engine,
ExecutionContext, parsers/Onnx) and the parameter names of its pybind11 bindings; DOCUMENTED
below lists them with the source each was checked against (DOCUMENTED_DEFAULTS and
DOCUMENTED_PROPERTIES add defaults and read-only properties), and the contract test checks every
stand-in method against those lists.

Mimicked behaviour:
* TensorRT 10: BuilderFlag.FP16 exists; NetworkDefinitionCreationFlag.STRONGLY_TYPED makes a
  strongly typed network, and the FP16 flag on a strongly typed network fails the build.
* TensorRT 11: BuilderFlag.FP16 is gone; every network is strongly typed (the STRONGLY_TYPED
  flag is deprecated and ignored), so an FP32 graph makes an FP32 engine.
* OnnxParser.parse returns False, with errors to read through get_error, for a graph the parser
  does not support (``fail_parse``: every graph, as for an operator TensorRT has no importer for).
* build_serialized_network takes ``build_seconds`` (as a real build takes minutes, so that
  processes starting together can interleave) and, like TensorRT's timed tactic choice, does not
  give the same bytes twice.
* set_timing_cache returns False for a cache serialised by another TensorRT version (unless
  ignore_mismatch); build_serialized_network returns None on failure.
* deserialize_cuda_engine returns None for an engine of another TensorRT version.
* execute_async_v3 reads the input from the address given to set_tensor_address, runs the
  ONNX graph with ONNX Runtime on the CPU, and writes the mask to the output's address: with
  the CuPy stand-in, "device" memory is host memory, so the addresses are real.
"""

from __future__ import annotations

import ctypes
import enum
import importlib.machinery
import json
import time
import types
import uuid

import numpy as np
import onnx

# Parameter names (after self) of every documented call the stand-in implements, each checked
# against TensorRT's own Python bindings, where the pybind11 argument names ("name"_a) are the
# Python parameter names, and the Python API reference. Sources, per entry below:
#   [core]  NVIDIA/TensorRT python/src/infer/pyCore.cpp, 2025 revision (TensorRT 10.x bindings)
#   [graph] NVIDIA/TensorRT python/src/infer/pyGraph.cpp
#   [onnx]  TensorRT's ONNX parser bindings (pyOnnx.cpp, bindOnnx) and docs.nvidia.com/deeplearning/
#           tensorrt/archives/tensorrt-843/api/python_api/parsers/Onnx/pyOnnx.html
#   [docs]  the Python API page named in the entry, under docs.nvidia.com/deeplearning/tensorrt/
# TensorRT 11.x: the 11.0.0 Builder page and the "Removed Python APIs" list of the 10.x -> 11.x
# migration guide (the part of it readable here) name none of these calls as changed or removed;
# what 11.x removes that we use is BuilderFlag.FP16 (listed there; the contract test checks it).
DOCUMENTED = {
    # [core] py::init<ILogger::Severity>(), "min_severity"_a = kWARNING; [docs] archives/tensorrt-803
    # .../infer/Core/Logger.html: "Logger(self, min_severity: Logger.Severity = Severity.WARNING)"
    "Logger.__init__": ("min_severity",),
    # [core] py::init(... createInferBuilder(logger)), "logger"_a; [docs] 11.0.0/_static/python-api/
    # infer/Core/Builder.html: "class tensorrt.Builder(self, logger: tensorrt.tensorrt.ILogger)"
    "Builder.__init__": ("logger",),
    "Builder.create_network": ("flags",),  # [core] &IBuilder::createNetworkV2, "flags"_a = 0U
    "Builder.create_builder_config": (),  # [core] &IBuilder::createBuilderConfig, no arguments
    "Builder.create_optimization_profile": (),  # [core] &IBuilder::createOptimizationProfile, no arguments
    "Builder.build_serialized_network": ("network", "config"),  # [core] "network"_a, "config"_a
    "OnnxParser.__init__": ("network", "logger"),  # [onnx] createParser, "network"_a, "logger"_a
    "OnnxParser.parse": ("model", "path"),  # [onnx] "model"_a, "path"_a = nullptr; docs: path: str = None
    "OnnxParser.get_error": ("index",),  # [onnx] &IParser::getError, "index"_a
    "INetworkDefinition.get_input": ("index",),  # [graph] &INetworkDefinition::getInput, "index"_a
    "IBuilderConfig.set_memory_pool_limit": ("pool", "pool_size"),  # [core] "pool"_a, "pool_size"_a
    "IBuilderConfig.set_flag": ("flag",),  # [core] &IBuilderConfig::setFlag, "flag"_a
    "IBuilderConfig.add_optimization_profile": ("profile",),  # [core] "profile"_a
    "IBuilderConfig.create_timing_cache": ("serialized_timing_cache",),  # [core] "serialized_timing_cache"_a
    "IBuilderConfig.set_timing_cache": ("cache", "ignore_mismatch"),  # [core] "cache"_a, "ignore_mismatch"_a
    "IBuilderConfig.get_timing_cache": (),  # [core] &IBuilderConfig::getTimingCache, no arguments
    # [core] &ITimingCache::serialize; [docs] _static/python-api/infer/Core/TimingCache.html:
    # "serialize(self: tensorrt.tensorrt.ITimingCache) -> tensorrt.tensorrt.IHostMemory"
    "ITimingCache.serialize": (),
    "IOptimizationProfile.set_shape": ("input", "min", "opt", "max"),  # [core] "input"_a, "min"_a, "opt"_a, "max"_a
    "Runtime.__init__": ("logger",),  # [core] py::init(... createInferRuntime(logger)), "logger"_a
    "Runtime.deserialize_cuda_engine": ("serialized_engine",),  # [core] "serialized_engine"_a
    "ICudaEngine.get_tensor_dtype": ("name",),  # [core] &ICudaEngine::getTensorDataType, "name"_a
    # [core] py::arg("strategy") = ExecutionContextAllocationStrategy::kSTATIC
    "ICudaEngine.create_execution_context": ("strategy",),
    "IExecutionContext.set_input_shape": ("name", "shape"),  # [core] "name"_a, "shape"_a
    "IExecutionContext.set_tensor_address": ("name", "memory"),  # [core] "name"_a, "memory"_a
    "IExecutionContext.execute_async_v3": ("stream_handle",),  # [core] "stream_handle"_a
    # [core] .def("get_tensor_shape", &IExecutionContext::getTensorShape, "name"_a); [docs] latest/_static/
    # python-api/infer/Core/ExecutionContext.html: "get_tensor_shape(self, name: str) -> tensorrt.Dims"
    "IExecutionContext.get_tensor_shape": ("name",),
}

# The parameters above that have a default, with it ([core]/[onnx]: the `= ...` of the entries):
# every other parameter is required, so the stand-in must not let our code leave one out.
DOCUMENTED_DEFAULTS = {
    "Logger.__init__": {"min_severity": "WARNING"},  # Logger.Severity.WARNING
    "Builder.create_network": {"flags": 0},
    "OnnxParser.parse": {"path": None},
    "ICudaEngine.create_execution_context": {"strategy": 0},  # ExecutionContextAllocationStrategy.STATIC
}

# Read-only properties, not methods ([onnx] def_property_readonly("num_errors", ...); [graph]
# def_property_readonly("num_inputs", ...)): calling them would fail on TensorRT.
DOCUMENTED_PROPERTIES = ("OnnxParser.num_errors", "INetworkDefinition.num_inputs")

ENGINE_MAGIC = b"STAND-IN TENSORRT ENGINE\n"


class IHostMemory(bytes):
    """Serialized engine or timing cache: a buffer (memoryview() works on it, as on TensorRT's)."""

    @property
    def nbytes(self) -> int:
        return len(self)


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5


ONNX_TO_TRT = {onnx.TensorProto.FLOAT: DataType.FLOAT, onnx.TensorProto.FLOAT16: DataType.HALF,
               onnx.TensorProto.UINT8: DataType.UINT8, onnx.TensorProto.INT32: DataType.INT32}


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class Logger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = Severity

    def __init__(self, min_severity: Logger.Severity = Severity.WARNING) -> None:
        self.min_severity = min_severity


def make_tensorrt(version: str = "11.4.0.106", fail_build: bool = False, fail_parse: bool = False,
                  build_seconds: float = 0.0):
    """A fresh stand-in module of TensorRT ``version``; ``module.calls`` records every call.
    ``fail_build``: build_serialized_network returns None; ``fail_parse``: the ONNX parser
    rejects every graph, as TensorRT does a graph with an operator it has no importer for;
    ``build_seconds``: how long each build takes."""
    major = int(version.split(".")[0])
    calls: list[tuple] = []
    module = types.ModuleType("tensorrt")
    module.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    module.__version__ = version
    module.calls = calls
    module.executions = []
    module.fail_build = fail_build
    module.fail_parse = fail_parse

    if major >= 11:
        NetworkDefinitionCreationFlag = enum.IntEnum(
            "NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 0, "PREFER_AOT_PYTHON_PLUGINS": 1,
                                              "PREFER_JIT_PYTHON_PLUGINS": 2})
        BuilderFlag = enum.IntEnum("BuilderFlag", {"DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4,
                                                   "DISABLE_TIMING_CACHE": 5, "TF32": 6})
    else:
        NetworkDefinitionCreationFlag = enum.IntEnum(
            "NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
        BuilderFlag = enum.IntEnum("BuilderFlag", {"FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3,
                                                   "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6})

    class ITensor:
        def __init__(self, name: str, dtype: DataType, shape: tuple) -> None:
            self.name, self.dtype, self.shape = name, dtype, shape

    class INetworkDefinition:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.strongly_typed = major >= 11 or bool(flags & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)))
            self.model: onnx.ModelProto | None = None
            self.onnx_bytes = b""
            self._inputs: list[ITensor] = []

        @property
        def num_inputs(self) -> int:
            return len(self._inputs)

        def get_input(self, index: int) -> ITensor:
            return self._inputs[index]

    class OnnxParser:
        def __init__(self, network: INetworkDefinition, logger: Logger) -> None:
            self.network, self.errors = network, []

        def parse(self, model: bytes, path: str | None = None) -> bool:
            calls.append(("OnnxParser.parse", len(model)))
            if module.fail_parse:
                self.errors.append("In node 0 (importFallbackPluginImporter): UNSUPPORTED_NODE: Assertion failed: "
                                   "creator && \"Plugin not found, are the plugin name, version, and namespace "
                                   "correct?\"")
                return False
            try:
                parsed = onnx.load_from_string(bytes(model))
            except Exception as e:
                self.errors.append(str(e))
                return False
            self.network.model, self.network.onnx_bytes = parsed, bytes(model)
            self.network._inputs = [
                ITensor(i.name, ONNX_TO_TRT[i.type.tensor_type.elem_type],
                        tuple(d.dim_value or -1 for d in i.type.tensor_type.shape.dim)) for i in parsed.graph.input]
            return True

        @property
        def num_errors(self) -> int:
            return len(self.errors)

        def get_error(self, index: int) -> str:
            return self.errors[index]

    class IOptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}

        def set_shape(self, input: str, min: tuple, opt: tuple, max: tuple) -> None:  # the documented names
            calls.append(("IOptimizationProfile.set_shape", input, tuple(min), tuple(opt), tuple(max)))
            if not all(a <= b <= c for a, b, c in zip(min, opt, max, strict=True)):
                raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
            self.shapes[input] = (tuple(min), tuple(opt), tuple(max))

    class ITimingCache:
        def __init__(self, made_by: str, entries: int) -> None:
            self.made_by, self.entries = made_by, entries

        def serialize(self) -> IHostMemory:
            return IHostMemory(f"TIMING CACHE|{self.made_by}|{self.entries}".encode())

    class IBuilderConfig:
        def __init__(self) -> None:
            self.flags: set = set()
            self.pools: dict = {}
            self.profiles: list[IOptimizationProfile] = []
            self.timing_cache: ITimingCache | None = None

        def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
            calls.append(("IBuilderConfig.set_memory_pool_limit", pool, pool_size))
            self.pools[pool] = pool_size

        def set_flag(self, flag) -> None:
            calls.append(("IBuilderConfig.set_flag", flag))
            self.flags.add(flag)

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            calls.append(("IBuilderConfig.add_optimization_profile",))
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
            blob = bytes(serialized_timing_cache)
            calls.append(("IBuilderConfig.create_timing_cache", blob))
            if not blob:
                return ITimingCache(version, 0)
            parts = blob.decode(errors="replace").split("|")
            if len(parts) != 3 or parts[0] != "TIMING CACHE":
                return ITimingCache("unknown", 0)
            return ITimingCache(parts[1], int(parts[2]))

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            accepted = cache.made_by == version or ignore_mismatch
            calls.append(("IBuilderConfig.set_timing_cache", ignore_mismatch, accepted))
            if accepted:
                self.timing_cache = cache
            return accepted

        def get_timing_cache(self) -> ITimingCache | None:
            return self.timing_cache

    class Builder:
        def __init__(self, logger: Logger) -> None:
            calls.append(("Builder",))

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            calls.append(("Builder.create_network", flags))
            return INetworkDefinition(flags)

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> IHostMemory | None:
            calls.append(("Builder.build_serialized_network",))
            if module.fail_build or network.model is None:
                return None
            if network.strongly_typed and "FP16" in BuilderFlag.__members__ and BuilderFlag.FP16 in config.flags:
                return None  # TensorRT 10: precision flags are not allowed on a strongly typed network
            if len(config.profiles) != 1 or set(config.profiles[0].shapes) != {t.name for t in network._inputs}:
                return None  # every input needs a shape in the profile
            time.sleep(build_seconds)
            if config.timing_cache is not None:
                config.timing_cache.entries += 1  # the build adds what it timed
            header = {"tensorrt": version, "build": uuid.uuid4().hex, "strongly_typed": network.strongly_typed,
                      "fp16_flag": "FP16" in BuilderFlag.__members__ and BuilderFlag.FP16 in config.flags,
                      "profile": {k: v[1] for k, v in config.profiles[0].shapes.items()}}
            return IHostMemory(ENGINE_MAGIC + json.dumps(header).encode() + b"\n" + network.onnx_bytes)

    class IExecutionContext:
        def __init__(self, engine: ICudaEngine) -> None:
            self.engine = engine
            self.addresses: dict[str, int] = {}
            self.shapes: dict[str, tuple] = {}

        def set_input_shape(self, name: str, shape: tuple) -> bool:
            calls.append(("IExecutionContext.set_input_shape", name, tuple(shape)))
            ok = name in self.engine.inputs and tuple(shape) == tuple(self.engine.header["profile"][name])
            if ok:
                self.shapes[name] = tuple(shape)
            return ok

        def set_tensor_address(self, name: str, memory: int) -> bool:
            calls.append(("IExecutionContext.set_tensor_address", name, memory))
            if name not in self.engine.inputs and name not in self.engine.outputs:
                return False
            self.addresses[name] = int(memory)
            return True

        def get_tensor_shape(self, name: str) -> tuple:
            """An input's shape as set; an output's as the graph gives it for the inputs set (found by
            running the graph once on zeros: the stand-in has no shape inference of its own)."""
            calls.append(("IExecutionContext.get_tensor_shape", name))
            if name in self.shapes:
                return self.shapes[name]
            feeds = {n: np.zeros(self.shapes[n], np.float32) for n in self.engine.inputs}
            results = dict(zip(self.engine.outputs, self.engine.session.run(None, feeds), strict=True))
            return tuple(results[name].shape)

        def execute_async_v3(self, stream_handle: int) -> bool:
            calls.append(("IExecutionContext.execute_async_v3", stream_handle))
            if set(self.addresses) != set(self.engine.inputs) | set(self.engine.outputs):
                return False
            feeds = {}
            for name in self.engine.inputs:
                shape = self.shapes[name]
                pointer = ctypes.cast(self.addresses[name], ctypes.POINTER(ctypes.c_float))
                feeds[name] = np.ctypeslib.as_array(pointer, shape=shape).copy()
            results = self.engine.session.run(None, feeds)
            for name, value in zip(self.engine.outputs, results, strict=True):  # byte for byte, any dtype
                pointer = ctypes.cast(self.addresses[name], ctypes.POINTER(ctypes.c_uint8))
                np.ctypeslib.as_array(pointer, shape=(value.nbytes,))[...] = np.frombuffer(value.tobytes(), np.uint8)
            module.executions.append({"stream": stream_handle, "inputs": feeds})
            return True

    class ICudaEngine:
        def __init__(self, header: dict, model_bytes: bytes) -> None:
            import onnxruntime

            self.header = header
            self.model = onnx.load_from_string(model_bytes)
            self.inputs = [i.name for i in self.model.graph.input]
            self.outputs = [o.name for o in self.model.graph.output]
            self.session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])

        def get_tensor_dtype(self, name: str) -> DataType:
            for value in (*self.model.graph.input, *self.model.graph.output):
                if value.name == name:
                    return ONNX_TO_TRT[value.type.tensor_type.elem_type]
            raise RuntimeError(f"no tensor {name}")

        def create_execution_context(self, strategy: int = 0) -> IExecutionContext:
            calls.append(("ICudaEngine.create_execution_context",))
            return IExecutionContext(self)

    class Runtime:
        def __init__(self, logger: Logger) -> None:
            calls.append(("Runtime",))

        def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
            data = bytes(serialized_engine)
            calls.append(("Runtime.deserialize_cuda_engine", len(data)))
            if not data.startswith(ENGINE_MAGIC):
                return None
            header_line, _, model_bytes = data[len(ENGINE_MAGIC):].partition(b"\n")
            header = json.loads(header_line)
            if header["tensorrt"] != version:
                return None  # TensorRT refuses engines serialised by another version
            return ICudaEngine(header, model_bytes)

    for name, value in {"Logger": Logger, "Builder": Builder, "OnnxParser": OnnxParser, "Runtime": Runtime,
                        "DataType": DataType, "MemoryPoolType": MemoryPoolType, "BuilderFlag": BuilderFlag,
                        "NetworkDefinitionCreationFlag": NetworkDefinitionCreationFlag,
                        "INetworkDefinition": INetworkDefinition, "IBuilderConfig": IBuilderConfig,
                        "ITimingCache": ITimingCache, "IOptimizationProfile": IOptimizationProfile,
                        "ICudaEngine": ICudaEngine, "IExecutionContext": IExecutionContext,
                        "IHostMemory": IHostMemory}.items():
        setattr(module, name, value)
    return module
