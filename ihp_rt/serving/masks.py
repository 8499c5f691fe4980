"""Label maps on the wire: a compact run-length encoding in JSON, and PNG bytes.

The RLE is what a browser can decode in a few lines: row-major runs, ``values[i]`` repeated
``counts[i]`` times. A parsing mask of a person has a few thousand runs, against the
width x height bytes of the raw map.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode_label_rle(labels: np.ndarray) -> dict:
    """``{"encoding": "rle", "width", "height", "values", "counts"}`` of a 2-D uint8 map."""
    flat = np.ascontiguousarray(labels).reshape(-1)
    starts = np.flatnonzero(np.concatenate(([True], flat[1:] != flat[:-1])))
    counts = np.diff(np.append(starts, flat.size))
    return {
        "encoding": "rle",
        "width": int(labels.shape[1]),
        "height": int(labels.shape[0]),
        "values": flat[starts].tolist(),
        "counts": counts.tolist(),
    }


def decode_label_rle(doc: dict) -> np.ndarray:
    """The (height, width) uint8 map of :func:`encode_label_rle`'s output."""
    values = np.asarray(doc["values"], dtype=np.uint8)
    labels = np.repeat(values, np.asarray(doc["counts"], dtype=np.int64))
    return labels.reshape(doc["height"], doc["width"])


def label_png_bytes(labels: np.ndarray) -> bytes:
    """8-bit label-id PNG (the LIP/CIHP annotation format) in memory."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
