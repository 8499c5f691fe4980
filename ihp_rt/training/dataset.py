"""Training samples: augmented crop + simulated clicks + encoded maps, as tensors.

Augmentation follows the paper (random scale 0.5-1.5, crop, horizontal flip) in the frame
the model sees at inference: the scale is relative to the letterbox scale that fits the photo
into ``spec.input_size``, so a person is as large in training as when parsed. A flip also
swaps left/right classes. Crops that overhang the photo are padded like the letterbox (mean
colour, labels ignored).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ihp_rt.clicks import clicks_array
from ihp_rt.data.folder import IGNORE, ParsingDataset, Sample
from ihp_rt.encoding import encode_cpu
from ihp_rt.geometry import mean_colour, normalize
from ihp_rt.simulation import D_MARGIN, training_clicks
from ihp_rt.spec import ModelSpec

MAX_CLICKS = 160  # padding length of the per-sample click arrays (far above 1 + parts + 15 extras)


@dataclass(frozen=True)
class Augment:
    crop: tuple[int, int] = (384, 256)  # (height, width)
    scale: tuple[float, float] = (0.5, 1.5)
    flip: bool = True


def augment(sample: Sample, spec: ModelSpec, aug: Augment, rng: np.random.Generator,
            ignore_index: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Scaled, flipped, cropped (image uint8, labels uint8 with IGNORE for unlabelled)."""
    image, labels = sample.image, sample.labels
    if ignore_index is not None and ignore_index != IGNORE:
        labels = np.where(labels == ignore_index, IGNORE, labels).astype(np.uint8)
    h, w = labels.shape
    scale = spec.input_size / max(h, w) * rng.uniform(*aug.scale)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST_EXACT)
    if aug.flip and rng.random() < 0.5:
        image = image[:, ::-1]
        labels = spec.labels.flip_lut()[labels[:, ::-1]]
    ch, cw = aug.crop
    out_image = np.empty((ch, cw, 3), np.uint8)
    out_image[:] = mean_colour(spec)
    out_labels = np.full((ch, cw), IGNORE, np.uint8)
    y0 = int(rng.integers(0, max(labels.shape[0] - ch, 0) + 1))
    x0 = int(rng.integers(0, max(labels.shape[1] - cw, 0) + 1))
    part_img, part_lab = image[y0 : y0 + ch, x0 : x0 + cw], labels[y0 : y0 + ch, x0 : x0 + cw]
    out_image[: part_img.shape[0], : part_img.shape[1]] = part_img
    out_labels[: part_lab.shape[0], : part_lab.shape[1]] = part_lab
    return out_image, out_labels


class ClickTrainingSet(torch.utils.data.Dataset):
    """Yields (input (3 + C, H, W) float32, labels (H, W) int64, clicks (MAX_CLICKS, 3) int64)."""

    def __init__(self, dataset: ParsingDataset, spec: ModelSpec, aug: Augment, strategy: str = "random",
                 extra_range: tuple[int, int] = (1, 15), d_margin: int = D_MARGIN, seed: int = 0) -> None:
        self.dataset, self.spec, self.aug = dataset, spec, aug
        self.strategy, self.extra_range, self.d_margin, self.seed = strategy, extra_range, d_margin, seed
        self._draws = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        # Seeded by (seed, worker seed, index, draw count): reproducible for a fixed loader seed.
        self._draws += 1
        rng = np.random.default_rng([self.seed, torch.initial_seed() % 2**32, index, self._draws])
        image, labels = augment(self.dataset[index], self.spec, self.aug, rng, self.dataset.ignore_index)
        clicks = training_clicks(labels, rng, self.strategy, self.extra_range, IGNORE, self.d_margin)
        clicks = clicks[:MAX_CLICKS]
        h, w = labels.shape
        x = np.empty((self.spec.in_channels, h, w), np.float32)
        x[:3] = normalize(image, self.spec)
        encode_cpu(clicks_array(clicks), self.spec.num_classes, h, w, self.spec.cap, out=x[3:])
        padded = np.full((MAX_CLICKS, 3), -1, np.int64)
        padded[: len(clicks)] = clicks_array(clicks)
        return torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(padded)
