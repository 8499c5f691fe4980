"""Label sets of the human-parsing benchmarks, loaded from ``label_sets.json``.

Names, ids and palettes are data, not code, so adding a data set's label set means editing one
JSON file. Left/right mirror pairs are kept because a horizontal flip of a training image must
also swap e.g. left-arm and right-arm, or the flipped label map is wrong.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from ihp_rt.errors import InputError


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of class names (index = class id; id 0 is background)."""

    name: str
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    mirrors: tuple[tuple[int, int], ...] = ()
    title: str = ""

    def __post_init__(self) -> None:
        if len(self.names) < 2:
            raise InputError(f"label set {self.name!r} needs background plus at least one class")
        if len(set(self.names)) != len(self.names):
            raise InputError(f"label set {self.name!r} has duplicate class names")
        if len(self.palette) != len(self.names):
            raise InputError(f"label set {self.name!r}: palette and names differ in length")
        for a, b in self.mirrors:
            if not (0 < a < len(self.names) and 0 < b < len(self.names)) or a == b:
                raise InputError(f"label set {self.name!r}: bad mirror pair ({a}, {b})")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def num_classes(self) -> int:
        """Number of classes including background (the paper's C + 1)."""
        return len(self.names)

    def label_id(self, label: int | str) -> int:
        """Resolve a class id or a class name (case-insensitive) to a validated id."""
        if isinstance(label, bool):
            raise InputError(f"label must be a class id or name, got {label!r}")
        if isinstance(label, (int, np.integer)):
            if 0 <= int(label) < len(self.names):
                return int(label)
            raise InputError(
                f"label id {label} is outside label set {self.name!r} (0..{len(self.names) - 1})"
            )
        if isinstance(label, str):
            key = label.strip().lower()
            for i, n in enumerate(self.names):
                if n.lower() == key:
                    return i
            raise InputError(
                f"unknown label {label!r} for label set {self.name!r}; "
                f"known: {', '.join(self.names)}"
            )
        raise InputError(f"label must be a class id or name, got {type(label).__name__}")

    def flip_lut(self) -> np.ndarray:
        """Lookup table that maps each id to its mirror id (identity for unpaired classes)."""
        lut = np.arange(256, dtype=np.uint8)
        for a, b in self.mirrors:
            lut[a], lut[b] = b, a
        return lut

    def palette_array(self) -> np.ndarray:
        """(256, 3) uint8 colour table; ids beyond the set are black."""
        pal = np.zeros((256, 3), dtype=np.uint8)
        pal[: len(self.palette)] = np.asarray(self.palette, dtype=np.uint8)
        return pal

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "title": self.title,
            "names": list(self.names),
            "palette": [list(c) for c in self.palette],
            "mirrors": [list(m) for m in self.mirrors],
        }

    @classmethod
    def from_dict(cls, d: dict) -> LabelSet:
        return cls(
            name=str(d["name"]),
            title=str(d.get("title", "")),
            names=tuple(str(n) for n in d["names"]),
            palette=tuple(tuple(int(v) for v in c) for c in d["palette"]),
            mirrors=tuple((int(a), int(b)) for a, b in d.get("mirrors", ())),
        )


UNUSED_NAME = "unused-{}"  # the name of an id a data set's manifest leaves out (no pixel should carry it)


def class_key(name: str) -> str:
    """A class name as data sets spell it variously -- 'UpperClothes', 'upper-clothes',
    'Upper_Clothes' -- reduced to one key, so label sets are matched by name, not by id."""
    return "".join(c for c in name.lower() if c.isalnum())


def voc_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC colour map (bit-interleaved ids), used for label sets read from manifests."""
    out = []
    for i in range(n):
        r = g = b = 0
        for bit in range(8):
            r |= ((i >> (3 * bit)) & 1) << (7 - bit)
            g |= ((i >> (3 * bit + 1)) & 1) << (7 - bit)
            b |= ((i >> (3 * bit + 2)) & 1) << (7 - bit)
        out.append((r, g, b))
    return tuple(out)


@cache
def _builtin() -> dict[str, LabelSet]:
    raw = json.loads(resources.files("ihp_rt").joinpath("label_sets.json").read_text())
    sets = {}
    for key, entry in raw.items():
        if key.startswith("_"):
            continue
        names = entry["names"]
        index = {n: i for i, n in enumerate(names)}
        sets[key] = LabelSet(
            name=key,
            title=entry.get("title", ""),
            names=tuple(names),
            palette=tuple(tuple(c) for c in entry["palette"]),
            mirrors=tuple((index[a], index[b]) for a, b in entry["mirrors"]),
        )
    return sets


def label_set_names() -> list[str]:
    """Names of the built-in label sets."""
    return sorted(_builtin())


def get_label_set(name: str) -> LabelSet:
    """A built-in label set by (case-insensitive) name: lip, cihp, ppp, helen, atr, ccp, ..."""
    try:
        return _builtin()[name.lower()]
    except KeyError:
        raise InputError(
            f"unknown label set {name!r}; built-in: {', '.join(label_set_names())}"
        ) from None


@dataclass(frozen=True)
class LabelMapping:
    """A merge of one label set into another as a 256-entry lookup table.

    Source classes the merge does not list map to ``ignore`` (and so does ``ignore`` itself).
    Data need not number its classes as ``source`` does: :meth:`lut_for` reads the merge by the
    data's class names.
    """

    name: str
    source: LabelSet
    target: LabelSet
    lut: np.ndarray
    ignore: int = 255

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        return self.lut[labels]

    @classmethod
    def identity(cls, labels: LabelSet) -> LabelMapping:
        """``labels`` onto itself: with :meth:`lut_for`, data that names the same classes in
        another spelling or id order."""
        lut = np.full(256, 255, dtype=np.uint8)
        lut[: len(labels)] = np.arange(len(labels))
        return cls(labels.name, labels, labels, lut)

    def unknown(self, data: LabelSet) -> list[str]:
        """The classes of ``data`` that are not source classes of this merge (by :func:`class_key`);
        ids the data's manifest leaves out do not count."""
        known = {class_key(n) for n in self.source.names}
        return [n for i, n in enumerate(data.names) if class_key(n) not in known and n != UNUSED_NAME.format(i)]

    def lut_for(self, data: LabelSet) -> np.ndarray:
        """The lookup table for label maps numbered as ``data``: each of its ids goes where the
        source class of the same name goes; an id :meth:`unknown` lists goes to ``ignore``."""
        source = {class_key(n): i for i, n in enumerate(self.source.names)}
        lut = np.full(256, self.ignore, dtype=np.uint8)
        for i, name in enumerate(data.names):
            if class_key(name) in source:
                lut[i] = self.lut[source[class_key(name)]]
        return lut


@cache
def _builtin_mappings() -> dict:
    raw = json.loads(resources.files("ihp_rt").joinpath("label_maps.json").read_text())
    return {k: v for k, v in raw.items() if not k.startswith("_")}


def label_mapping_names() -> list[str]:
    return sorted(_builtin_mappings())


def get_label_mapping(name: str, ignore: int = 255) -> LabelMapping:
    """A built-in merge by name (e.g. ``ccp_coarse``: CCP's 59 classes into 15)."""
    entry = _builtin_mappings().get(name.lower())
    if entry is None:
        raise InputError(f"unknown label mapping {name!r}; built-in: {', '.join(label_mapping_names())}")
    source, target = get_label_set(entry["source"]), get_label_set(entry["target"])
    lut = np.full(256, ignore, dtype=np.uint8)
    for target_name, source_names in entry["merge"].items():
        for source_name in source_names:
            lut[source.label_id(source_name)] = target.label_id(target_name)
    return LabelMapping(name.lower(), source, target, lut, ignore)
