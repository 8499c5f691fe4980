"""Image frame <-> model frame, in one place every backend shares.

The image is letterboxed into the model's ``input_size`` square: scaled so its longer side
fits, normalised, padded at the bottom/right with zeros (the mean colour after
normalisation). One fixed input shape per model keeps engine profiles and buffers static.
The label map comes back by cropping the padding and nearest-neighbour resizing at pixel
centres; a click maps to the model pixel its image pixel takes its label from.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from ihp_rt.clicks import Click
from ihp_rt.spec import ModelSpec


@dataclass(frozen=True)
class Letterbox:
    """Where an ``height`` x ``width`` image sits inside the ``size`` x ``size`` model input."""

    height: int
    width: int
    size: int

    @property
    def scale(self) -> float:
        return self.size / max(self.height, self.width)

    @property
    def inner(self) -> tuple[int, int]:
        """(rows, cols) the image covers in the model frame; the rest is padding."""
        return (
            min(self.size, max(1, round(self.height * self.scale))),
            min(self.size, max(1, round(self.width * self.scale))),
        )

    @cached_property
    def source_pixels(self) -> tuple[np.ndarray, np.ndarray]:
        """For each image row and each image column, the model row / column its label comes from.

        Read off the resize ``labels_to_image`` does rather than computed beside it: OpenCV's
        INTER_NEAREST_EXACT is fixed-point and rounds some exact ties of
        floor((x + 0.5) * cols / width) down (image column 80 of 115 reads model column 34 of
        50, where the formula says 35). A click must land on the model pixel its image pixel
        shows, or a clicked pixel can show another pixel's label.
        """
        rows, cols = self.inner

        def along(model: int, image: int) -> np.ndarray:
            ids = np.arange(model, dtype=np.int32)[None]
            source = cv2.resize(ids, (image, 1), interpolation=cv2.INTER_NEAREST_EXACT)[0]
            source.setflags(write=False)  # cached and shared by every caller
            return source

        return along(rows, self.height), along(cols, self.width)

    def clicks_to_model(self, clicks: list[Click]) -> np.ndarray:
        """(K, 3) int32 rows of (x, y, label) in the model frame."""
        ys, xs = self.source_pixels
        out = np.zeros((len(clicks), 3), dtype=np.int32)
        for i, c in enumerate(clicks):
            out[i] = (xs[min(max(c.x, 0), self.width - 1)], ys[min(max(c.y, 0), self.height - 1)], c.label)
        return out

    def labels_to_image(self, labels: np.ndarray) -> np.ndarray:
        """Crop the padding off a (size, size) label map and resize it to the image."""
        rows, cols = self.inner
        inner = np.ascontiguousarray(labels[:rows, :cols])
        if (rows, cols) == (self.height, self.width):
            return inner
        return cv2.resize(inner, (self.width, self.height), interpolation=cv2.INTER_NEAREST_EXACT)


def prepare_image(image: np.ndarray, spec: ModelSpec) -> tuple[Letterbox, np.ndarray]:
    """(3, size, size) float32 normalised network input for an RGB uint8 image. Once per image."""
    box = Letterbox(image.shape[0], image.shape[1], spec.input_size)
    rows, cols = box.inner
    shrink = rows < box.height
    resized = cv2.resize(image, (cols, rows), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    out = np.zeros((3, spec.input_size, spec.input_size), dtype=np.float32)
    out[:, :rows, :cols] = normalize(resized, spec)
    return box, out


def normalize(image: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """(3, H, W) float32 network channels of an RGB uint8 (H, W, 3) image."""
    mean = np.asarray(spec.mean, dtype=np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(spec.std, dtype=np.float32) * 255.0)
    return ((image.astype(np.float32) - mean) * inv_std).transpose(2, 0, 1)


def mean_colour(spec: ModelSpec) -> tuple[int, int, int]:
    """The RGB colour that normalises to ~0: what letterbox padding looks like to the network."""
    return tuple(round(m * 255) for m in spec.mean)
