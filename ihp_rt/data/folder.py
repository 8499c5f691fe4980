"""The generic layout: ``images/`` + ``labels/`` (same stem, 8-bit PNG of class ids) and an
optional ``manifest.json`` giving class names by id, an ignore index and, for photos with an EXIF
orientation, ``labels_drawn_on``: "stored" (default; the maps turn with the photo) or "shown".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from ihp_rt.errors import InputError
from ihp_rt.images import exif_orientation, read_image, turn_like_photo
from ihp_rt.labels import UNUSED_NAME, LabelMapping, LabelSet, voc_palette

IGNORE = 255  # what a LabelMapping turns unmapped classes (and the data's own ignore id) into
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
LABELS_DRAWN_ON = ("stored", "shown")  # which pixels a data set's label maps were drawn on (EXIF)


@dataclass(frozen=True)
class Sample:
    """One annotated photo: RGB uint8 (H, W, 3) and class ids uint8 (H, W)."""

    name: str
    image: np.ndarray
    labels: np.ndarray


class ParsingDataset(Protocol):
    """What training and evaluation need from any reader."""

    label_set: LabelSet
    ignore_index: int | None

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...


def read_label_png(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P"):
                raise InputError(f"label map {path} must be an 8-bit single-channel PNG, got mode {im.mode}")
            return np.asarray(im).astype(np.uint8)  # for mode P the palette indices are the ids
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read label map {path}: {e}") from None


def label_set_from_manifest(manifest: dict, name: str) -> LabelSet:
    """Class names by id (ids need not be contiguous: gaps become 'unused-K')."""
    classes = {int(k): str(v) for k, v in manifest["classes"].items()}
    names = [classes.get(i, UNUSED_NAME.format(i)) for i in range(max(classes) + 1)]
    if names[0] in ("null", "bg", "background"):
        names[0] = "background"
    return LabelSet(name=name, names=tuple(names), palette=voc_palette(len(names)),
                    title=str(manifest.get("dataset", name)))


class PairDataset:
    """Named (image, label map) file pairs in a fixed order, optionally merged by a LabelMapping.

    Every reader is this class plus the knowledge of where its files are: the generic folder
    below and the benchmark layouts in :mod:`ihp_rt.data.layouts`.
    """

    def __init__(self, description: str, pairs: dict[str, tuple[Path, Path]], label_set: LabelSet,
                 ignore_index: int | None, mapping: LabelMapping | None = None,
                 labels_drawn_on: str = "stored") -> None:
        if not pairs:
            raise InputError(f"{description}: no samples")
        if labels_drawn_on not in LABELS_DRAWN_ON:
            raise InputError(f"{description}: labels_drawn_on must be one of {', '.join(LABELS_DRAWN_ON)}, "
                             f"got {labels_drawn_on!r}")
        self.labels_drawn_on = labels_drawn_on
        self.description, self.pairs, self.names = description, pairs, list(pairs)
        self.label_set, self.ignore_index = label_set, ignore_index
        self.lut: np.ndarray | None = None
        if mapping is not None:
            unknown = mapping.unknown(label_set)  # matched by class name: another id order or spelling is fine
            if unknown:
                raise InputError(f"label mapping {mapping.name!r} reads {mapping.source.name!r} classes, "
                                 f"but {description} is labelled in {label_set.name!r}: {mapping.source.name!r} "
                                 f"has no {', '.join(unknown[:8])}{', ...' if len(unknown) > 8 else ''}")
            self.lut = mapping.lut_for(label_set)
            if ignore_index is not None:
                self.lut[ignore_index] = IGNORE
            self.label_set, self.ignore_index = mapping.target, IGNORE

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r}, n={len(self)})"

    def subset(self, names: list[str]) -> PairDataset:
        """The same reader restricted to ``names`` (a train/validation split, a quick evaluation)."""
        missing = [n for n in names if n not in self.pairs]
        if missing:
            raise InputError(f"{self.description}: no sample named {missing[0]!r}")
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.names = list(names)
        return clone

    def __getitem__(self, index: int) -> Sample:
        name = self.names[index]
        image_path, label_path = self.pairs[name]
        image, labels = read_image(image_path), read_label_png(label_path)
        # read_image turns a photo by its EXIF orientation; label maps drawn on the stored pixels
        # (labels_drawn_on "stored", the default) must turn with it, maps drawn on the photo as
        # viewers show it ("shown") already have. The data set says which: no guessing by shape.
        if self.labels_drawn_on == "stored" and (orientation := exif_orientation(image_path)) != 1:
            labels = turn_like_photo(labels, orientation)
        if image.shape[:2] != labels.shape:
            raise InputError(f"{name}: image {image.shape[:2]} and label map {labels.shape} differ in size")
        if self.lut is not None:
            labels = self.lut[labels]
        return Sample(name, image, labels)


class FolderDataset(PairDataset):
    """Pairs ``images/NAME.*`` with ``labels/NAME.png``; class names from ``manifest.json``."""

    def __init__(self, root: str | Path, mapping: LabelMapping | None = None) -> None:
        self.root = Path(root)
        if not (self.root / "images").is_dir() or not (self.root / "labels").is_dir():
            raise InputError(f"{self.root} is not a parsing data folder (needs images/ and labels/)")
        manifest_path = self.root / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        labels_dir = self.root / "labels"
        pairs = {
            p.stem: (p, labels_dir / f"{p.stem}.png")
            for p in sorted((self.root / "images").iterdir())
            if p.suffix.lower() in IMAGE_SUFFIXES and (labels_dir / f"{p.stem}.png").is_file()
        }
        if not pairs:
            raise InputError(f"{self.root}: no image has a matching labels/<name>.png")
        if "classes" in manifest:
            label_set = label_set_from_manifest(manifest, self.root.name)
        elif mapping is not None:  # no manifest: the mapping says what the ids mean
            label_set = mapping.source
        else:
            raise InputError(f"{self.root}: manifest.json with 'classes' is needed to name the labels")
        ignore = manifest.get("ignore_index")
        super().__init__(str(self.root), pairs, label_set, None if ignore is None else int(ignore), mapping,
                         str(manifest.get("labels_drawn_on", "stored")))
