"""ONNX -> TensorRT engine (+ JSON sidecar), the build-time entry point of `ihp-rt build-engine`.

The builder itself is part of the runtime (:mod:`ihp_rt.backends.trt_backend`): opening an .onnx
on TensorRT builds and caches an engine there, and the runtime never imports ``ihp_rt.export``.
This module re-exports it so build tools have one import for every export step. Precision rules
(TensorRT 11 keeps the graph's precision; FP16 comes from ``ihp-rt export --precision fp16``)
and the engine cache are described there and in :mod:`ihp_rt.backends.engine_cache`.
"""

from ihp_rt.backends.trt_backend import (
    BuildPlan,
    build_engine,
    gpu_identity,
    onnx_precision,
    plan_build,
    read_onnx_spec,
)

__all__ = ["BuildPlan", "build_engine", "gpu_identity", "onnx_precision", "plan_build", "read_onnx_spec"]
