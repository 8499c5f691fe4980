"""The first convolution, computed once per image and patched per click.

The network's first layer is a convolution over [RGB; click maps]. A click map is ``cap``
everywhere except within ``reach(cap)`` pixels of its clicks, and convolution is linear, so

    stem(x) = stem([RGB; cap, ..., cap]) + conv_maps(maps - cap)

where the first term depends on the image only and the second is zero except in the output
windows the clicks reach. A backend computes the first term in ``set_image`` and, per click,
adds the second term in those windows: the 7x7 convolution over 3 + C channels at full
resolution (a quarter of the default model's per-click time on a CPU) shrinks to a few small
matrix products. The result equals the plain convolution up to float32 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ihp_rt.encoding.reference import reach


@dataclass(frozen=True)
class StemConv:
    """The click-map part of the first convolution: weights (O, C, k, k), stride, padding."""

    weight: np.ndarray
    stride: int
    pad: int

    @property
    def kernel(self) -> int:
        return self.weight.shape[-1]

    def out_size(self, size: int) -> int:
        return (size + 2 * self.pad - self.kernel) // self.stride + 1

    def span(self, centre: int, r: int, size: int) -> tuple[int, int]:
        """Output indices [lo, hi) whose receptive field meets input [centre - r, centre + r]."""
        k, s, p = self.kernel, self.stride, self.pad
        lo = max(0, -((-(centre - r + p - k + 1)) // s))  # ceil division
        hi = min(self.out_size(size), (centre + r + p) // s + 1)
        return lo, hi


def patch_stem(stem: StemConv, base: np.ndarray, maps: np.ndarray, clicks: np.ndarray, cap: int,
               out: np.ndarray) -> None:
    """``out = base + conv(maps - cap)``, evaluated only where clicks make the second term non-zero.

    ``base`` (O, H', W') is the stem output for cap-filled maps, ``maps`` (C, H, W) the current
    click maps, ``clicks`` (K, 3) their (x, y, label) rows. Overlapping windows are simply
    computed twice: each window is evaluated from the full maps, never accumulated.
    """
    np.copyto(out, base)
    if not len(clicks):
        return
    _, height, width = maps.shape
    k, s, p = stem.kernel, stem.stride, stem.pad
    r = reach(cap)
    flat_weight = stem.weight.reshape(stem.weight.shape[0], stem.weight.shape[1], k * k)
    for x, y, _ in clicks:
        (r0, r1), (c0, c1) = stem.span(int(y), r, height), stem.span(int(x), r, width)
        if r1 <= r0 or c1 <= c0:
            continue  # no output reads this click's pixels (a stride wider than the kernel)
        # input rows/cols the output window reads, zero outside the image (the convolution's padding)
        i0, i1 = r0 * s - p, (r1 - 1) * s - p + k
        j0, j1 = c0 * s - p, (c1 - 1) * s - p + k
        patch = np.zeros((maps.shape[0], i1 - i0, j1 - j0), dtype=np.float32)
        a0, a1, b0, b1 = max(i0, 0), min(i1, height), max(j0, 0), min(j1, width)
        np.subtract(maps[:, a0:a1, b0:b1], cap, out=patch[:, a0 - i0:a1 - i0, b0 - j0:b1 - j0])
        active = np.flatnonzero(patch.any(axis=(1, 2)))  # usually the click's own class alone
        windows = sliding_window_view(patch[active], (k, k), axis=(1, 2))[:, ::s, ::s]  # (A, h, w, k, k)
        h, w = windows.shape[1:3]
        columns = windows.transpose(1, 2, 0, 3, 4).reshape(h * w, len(active) * k * k)
        # einsum without `optimize` stays off BLAS on purpose: OpenBLAS threads spin after each call
        # and would take the cores from the network's threads (the network ran 1.7x slower beside them).
        delta = np.einsum("pq,oq->op", columns, flat_weight[:, active].reshape(flat_weight.shape[0], -1),
                          optimize=False)
        np.add(base[:, r0:r1, c0:c1], delta.reshape(-1, h, w), out=out[:, r0:r1, c0:c1])


@dataclass(frozen=True)
class SplitGraph:
    """An ONNX model cut after its first convolution: stem (input -> pre-activation) and body."""

    stem: StemConv
    stem_model: bytes  # input -> stem_output
    body_model: bytes  # (stem_output, input) -> the original outputs; input is read for its shape only
    stem_output: str


def split_after_stem(model, input_name: str) -> SplitGraph | None:
    """Cut ``model`` (an onnx ModelProto, modified in place into the body) after the Conv that
    reads ``input_name``, or return None when the graph does not start that way (an FP16
    graph starts with a Cast, for instance).

    The cut is safe only when every other reader of the input needs nothing but its shape.
    The body is the model itself minus that Conv, so a large model is never held twice over.
    """
    from onnx import TensorProto, helper, numpy_helper
    from onnx.helper import get_attribute_value

    graph = model.graph
    # positions, not objects: protobuf hands out a new wrapper on every access
    readers = [i for i, n in enumerate(graph.node) if input_name in n.input]
    convs = [i for i in readers if graph.node[i].op_type == "Conv" and graph.node[i].input[0] == input_name]
    if len(convs) != 1 or any(graph.node[i].op_type != "Shape" for i in readers if i != convs[0]):
        return None
    conv = graph.node[convs[0]]
    initializers = {t.name: t for t in graph.initializer}
    attributes = {a.name: get_attribute_value(a) for a in conv.attribute}
    used_elsewhere = {name for i, n in enumerate(graph.node) if i != convs[0] for name in n.input}
    if any(name not in initializers for name in conv.input[1:] if name) or attributes.get("group", 1) != 1:
        return None  # e.g. weights computed by DequantizeLinear nodes
    weight = numpy_helper.to_array(initializers[conv.input[1]]).astype(np.float32)
    strides, pads = attributes.get("strides", [1, 1]), attributes.get("pads", [0, 0, 0, 0])
    if (weight.ndim != 4 or weight.shape[1] <= 3 or weight.shape[2] != weight.shape[3]
            or len(set(strides)) != 1 or len(set(pads)) != 1 or set(attributes.get("dilations", [1])) != {1}
            or attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")):
        return None

    source = next(i for i in graph.input if i.name == input_name)
    stem_value = helper.make_tensor_value_info(conv.output[0], TensorProto.FLOAT,
                                               ["batch", weight.shape[0], "stem_height", "stem_width"])
    stem_graph = helper.make_graph([conv], "stem", [source], [stem_value],
                                   initializer=[initializers[name] for name in conv.input[1:] if name])
    only_stem = {name for name in conv.input[1:] if name not in used_elsewhere}  # exporters share equal tensors
    stem_model = helper.make_model(stem_graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    stem_bytes, stem_output = stem_model.SerializeToString(), conv.output[0]

    del graph.node[convs[0]]
    kept = [t for t in graph.initializer if t.name not in only_stem]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    graph.input.append(stem_value)
    return SplitGraph(StemConv(np.ascontiguousarray(weight[:, 3:]), strides[0], pads[0]), stem_bytes,
                      model.SerializeToString(), stem_output)
