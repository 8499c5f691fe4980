"""PyTorch checkpoint -> checked, simplified ONNX file that carries its own ModelSpec.

The graph takes one input, ``input`` (N, 3 + C, H, W) float32 = normalised RGB followed by the
C click maps, laid out exactly like the buffer a backend fills (RGB once per image, maps per
click). With ``output="labels"`` the arg-max is inside the graph and only a uint8 mask
(N, H, W) leaves the engine; ``output="logits"`` keeps the float32 (N, C, H, W) logits.

Every graph has a second output, ``coarse`` (the stride-4 logits, float32), which corrections
edit instead of running the network again (ihp_rt/correction.py). A model with a correction head
has a third, ``features`` (the head's projection of the decoder features, float32), and carries
the head itself as a second, small ONNX graph in its metadata (``ONNX_HEAD_KEY``, base64): the
network's graph keeps its one input, so the first-layer split, INT8 calibration and TensorRT
builds treat it as before, and corrections run the head graph alone.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from ihp_rt import __version__
from ihp_rt.model.checkpoint import Checkpoint
from ihp_rt.model.correction_head import CorrectionHead
from ihp_rt.spec import (
    ONNX_HEAD_INPUTS,
    ONNX_HEAD_KEY,
    ONNX_OUTPUT_KEY,
    ONNX_PASS_OUTPUTS,
    ONNX_PRECISION_KEY,
    ONNX_SPEC_KEY,
    ONNX_VERSION_KEY,
)

OPSET = 18
OUTPUTS = ("labels", "logits")
PRECISIONS = ("fp32", "fp16")


class ExportWrapper(nn.Module):
    """The network plus (optionally) the arg-max, as the exported graph computes it.

    With ``half`` the graph computes in FP16 but keeps float32 input (and float32 logits), so
    callers fill the same buffer whatever the precision. TensorRT 11 takes precision from the
    graph (strong typing), so this is how an FP16 engine is made.
    """

    def __init__(self, model: nn.Module, output: str = "labels", half: bool = False) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.model = copy.deepcopy(model).half() if half else model
        self.output, self.half = output, half

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = x.half() if self.half else x
        logits, *rest = self.model.full_pass(x)
        return self._first(logits), *(tensor.float() for tensor in rest)

    def _first(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(1).to(torch.uint8) if self.output == "labels" else logits.float()


def head_onnx(head: CorrectionHead, opset: int = OPSET) -> bytes:
    """The correction head alone as a float32 ONNX graph (window size and click count dynamic)."""
    head = copy.deepcopy(head).float().eval()
    window = 8
    example = (torch.zeros(1, head.project.out_channels, window, window),
               torch.zeros(1, head.num_classes, window, window), torch.zeros(1, 2, 3), torch.zeros(1, 2))
    axes = {"features": {2: "rows", 3: "cols"}, "coarse": {2: "rows", 3: "cols"}, "clicks": {1: "clicks"},
            "window": {2: "rows", 3: "cols"}}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation, as in export_onnx
        torch.onnx.export(head, example, buffer, dynamo=False, opset_version=opset, input_names=list(ONNX_HEAD_INPUTS),
                          output_names=["window"], dynamic_axes=axes)
    model = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def export_onnx(checkpoint: Checkpoint, path: str | Path, output: str = "labels", simplify: bool = True,
                opset: int = OPSET, precision: str = "fp32") -> Path:
    """Export, check (checker + strict shape inference), simplify with onnxslim, stamp metadata."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = checkpoint.spec
    # The first layer as one plain convolution over RGB + maps (map scale and branch folded in):
    # the form ONNX Runtime's first-layer split, INT8 calibration and TensorRT all expect.
    wrapper = ExportWrapper(checkpoint.model.fused(), output, half=precision == "fp16").eval()
    example = torch.zeros(1, spec.in_channels, spec.input_size, spec.input_size)
    out_axes = {0: "batch", 1: "height", 2: "width"} if output == "labels" else {0: "batch", 2: "height", 3: "width"}
    outputs = [output, *ONNX_PASS_OUTPUTS[: 2 if spec.correction_head else 1]]
    axes = {"input": {0: "batch", 2: "height", 3: "width"}, output: out_axes,
            **{name: {0: "batch", 2: "rows", 3: "cols"} for name in outputs[1:]}}
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo, which needs onnxscript;
        # this graph (convolutions, resize, arg-max) exports exactly with the former.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (example,), str(tmp), dynamo=False, opset_version=opset,
            input_names=["input"], output_names=outputs, dynamic_axes=axes,
        )
    checkpoint.model.eval()  # export restores the wrapper's mode, which was never trained: be explicit
    model = onnx.load(str(tmp))
    tmp.unlink()
    if simplify:
        import onnxslim

        model = onnxslim.slim(model)
    onnx.checker.check_model(model, full_check=True)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    meta = {ONNX_SPEC_KEY: json.dumps(spec.to_dict()), ONNX_OUTPUT_KEY: output, ONNX_VERSION_KEY: __version__,
            ONNX_PRECISION_KEY: precision}
    if spec.correction_head:
        meta[ONNX_HEAD_KEY] = base64.b64encode(head_onnx(checkpoint.model.correction, opset)).decode()
    del model.metadata_props[:]
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    model.producer_name, model.producer_version = "ihp-rt", __version__
    model.doc_string = f"ihp-rt IHP model: DeepLabV3+ {spec.backbone}, {spec.labels.name} labels, {precision}"
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return path
