"""The generic layout: ``images/`` + ``labels/`` (same stem, 8-bit PNG of class ids) and an
optional ``manifest.json`` giving class names by id and an ignore index, as in ../shared/data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from ihp_rt.errors import InputError
from ihp_rt.images import read_image
from ihp_rt.labels import LabelMapping, LabelSet, voc_palette

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


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
    names = [classes.get(i, f"unused-{i}") for i in range(max(classes) + 1)]
    if names[0] in ("null", "bg", "background"):
        names[0] = "background"
    return LabelSet(name=name, names=tuple(names), palette=voc_palette(len(names)),
                    title=str(manifest.get("dataset", name)))


class FolderDataset:
    """Pairs ``images/NAME.*`` with ``labels/NAME.png``; optionally merged by a LabelMapping."""

    def __init__(self, root: str | Path, mapping: LabelMapping | None = None,
                 names: list[str] | None = None) -> None:
        self.root = Path(root)
        if not (self.root / "images").is_dir() or not (self.root / "labels").is_dir():
            raise InputError(f"{self.root} is not a parsing data folder (needs images/ and labels/)")
        manifest_path = self.root / "manifest.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        labels_dir = self.root / "labels"
        self.pairs = {
            p.stem: (p, labels_dir / f"{p.stem}.png")
            for p in sorted((self.root / "images").iterdir())
            if p.suffix.lower() in IMAGE_SUFFIXES and (labels_dir / f"{p.stem}.png").is_file()
        }
        if not self.pairs:
            raise InputError(f"{self.root}: no image has a matching labels/<name>.png")
        self.names = sorted(self.pairs) if names is None else list(names)
        missing = [n for n in self.names if n not in self.pairs]
        if missing:
            raise InputError(f"{self.root}: no pair named {missing[0]!r}")
        ignore = manifest.get("ignore_index")
        if mapping is not None:
            self.label_set, self.lut = mapping.target, mapping.lut.copy()
            if ignore is not None:
                self.lut[int(ignore)] = 255
            self.ignore_index: int | None = 255
        else:
            if "classes" not in manifest:
                raise InputError(f"{self.root}: manifest.json with 'classes' is needed to name the labels")
            self.label_set = label_set_from_manifest(manifest, self.root.name)
            self.lut = None
            self.ignore_index = None if ignore is None else int(ignore)

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, names: list[str]) -> FolderDataset:
        """The same folder restricted to ``names`` (a train/validation split)."""
        clone = object.__new__(FolderDataset)
        clone.__dict__.update(self.__dict__)
        clone.names = list(names)
        return clone

    def __getitem__(self, index: int) -> Sample:
        name = self.names[index]
        image_path, label_path = self.pairs[name]
        image, labels = read_image(image_path), read_label_png(label_path)
        if image.shape[:2] != labels.shape:
            raise InputError(f"{name}: image {image.shape[:2]} and label map {labels.shape} differ in size")
        if self.lut is not None:
            labels = self.lut[labels]
        return Sample(name, image, labels)


def folder_for_labels(root: str | Path, labels: LabelSet) -> FolderDataset:
    """The folder's pairs in ``labels`` (a model's label set), through a built-in mapping if needed."""
    from ihp_rt.labels import get_label_mapping, label_mapping_names

    data = FolderDataset(root)
    if data.label_set.names == labels.names:
        return data
    for mapping in map(get_label_mapping, label_mapping_names()):
        if mapping.source.names == data.label_set.names and mapping.target.names == labels.names:
            return FolderDataset(root, mapping)
    raise InputError(f"the data's {data.label_set.num_classes} classes differ from the model's "
                     f"{labels.num_classes} ({labels.name}) and no label mapping links them")
