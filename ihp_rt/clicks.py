"""Labelled clicks and the click-list file format.

A click is ``(x, y, label)`` in pixels of the *original* image: x is the column, y the row.
The file format is ``{"clicks": [{"x": 120, "y": 64, "label": 2}, {"x": 80, "y": 300,
"label": "hair"}]}``, clicks in the order they were made (undo drops the last one).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ihp_rt.errors import InputError
from ihp_rt.labels import LabelSet


@dataclass(frozen=True)
class Click:
    """One labelled click: column ``x``, row ``y``, class id ``label``."""

    x: int
    y: int
    label: int


def _coordinate(value: object, axis: str, where: str) -> int:
    # JSON has no integer type of its own: accept 12 and 12.0, refuse 12.5, "12", true.
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{where}: {axis} must be an integer pixel coordinate, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)  # any size: the bounds check refuses what is off the image, float() would overflow
    if not float(value).is_integer():
        raise InputError(f"{where}: {axis} must be an integer pixel coordinate, got {value!r}")
    return int(value)


def make_click(
    x: object, y: object, label: int | str, labels: LabelSet, size: tuple[int, int], where: str = "click"
) -> Click:
    """Validate one click against a label set and an image ``size = (height, width)``."""
    cx, cy = _coordinate(x, "x", where), _coordinate(y, "y", where)
    height, width = size
    if not (0 <= cx < width and 0 <= cy < height):
        raise InputError(
            f"{where}: ({cx}, {cy}) is outside the {width}x{height} image "
            f"(x must be in 0..{width - 1}, y in 0..{height - 1})"
        )
    try:
        label_id = labels.label_id(label)
    except InputError as e:
        raise InputError(f"{where}: {e}") from None
    return Click(cx, cy, label_id)


def parse_clicks(doc: object, labels: LabelSet, size: tuple[int, int]) -> list[Click]:
    """Validate a decoded click-list document; labels may be ids or class names."""
    if not isinstance(doc, dict) or not isinstance(doc.get("clicks"), list):
        raise InputError('click list must be a JSON object {"clicks": [...]}')
    items = doc["clicks"]
    if not items:
        raise InputError("click list is empty: give at least one click")
    clicks = []
    for i, item in enumerate(items):
        where = f"click #{i}"
        if not isinstance(item, dict) or not {"x", "y", "label"} <= item.keys():
            raise InputError(f'{where}: expected {{"x": .., "y": .., "label": ..}}, got {item!r}')
        clicks.append(make_click(item["x"], item["y"], item["label"], labels, size, where))
    return clicks


def load_clicks(path: str | Path, labels: LabelSet, size: tuple[int, int]) -> list[Click]:
    """Read and validate a click-list JSON file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"click file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read click file {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise InputError(f"click file {path} is not valid JSON: {e}") from None
    try:
        return parse_clicks(doc, labels, size)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None


def clicks_to_json(clicks: Iterable[Click], labels: LabelSet | None = None) -> dict:
    """The file format of a click list; with ``labels``, labels are written as names."""
    return {
        "clicks": [
            {"x": c.x, "y": c.y, "label": labels.names[c.label] if labels else c.label}
            for c in clicks
        ]
    }


def clicks_array(clicks: Sequence[Click]) -> np.ndarray:
    """(K, 3) int32 rows of (x, y, label): the layout every click encoder takes."""
    if not clicks:
        return np.zeros((0, 3), dtype=np.int32)
    return np.asarray([(c.x, c.y, c.label) for c in clicks], dtype=np.int32)
