"""Build-time tools: PyTorch checkpoint -> ONNX (-> TensorRT engine).

Installed as ``ihp_rt.export`` (setuptools package-dir mapping), never as a top-level
``export`` package. The runtime (sessions, backends) never imports it.
"""

from ihp_rt.export.to_onnx import ExportWrapper, export_onnx

__all__ = ["ExportWrapper", "export_onnx"]
