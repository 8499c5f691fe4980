"""The contract between a Session and an inference engine.

A backend owns its input buffer and the click encoding for its device, so that e.g. a GPU
backend can encode straight into device memory: the session hands it the pre-processed image
once, then only the clicks (model frame) on each predict.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ihp_rt.spec import ModelSpec


class Backend(Protocol):
    """An engine that maps (image, clicks) to a label map in the model frame."""

    name: str  # engine and precision actually running, e.g. "onnxruntime-cpu", "tensorrt-fp16"
    spec: ModelSpec
    choice: str  # why this engine: "backend 'torch' as asked", or what `auto` found
    timings: dict[str, float]  # stage times of the last predict: encode_ms, network_ms, download_ms

    def set_image(self, image: np.ndarray) -> None:
        """Take a (3, S, S) float32 normalised image; called once per image."""

    def predict(self, clicks: np.ndarray) -> np.ndarray:
        """(K, 3) int32 (x, y, label) clicks in the model frame -> (S, S) uint8 labels."""
