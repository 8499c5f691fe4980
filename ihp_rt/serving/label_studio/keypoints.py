"""Label Studio's smart keypoints as clicks, and each task's keypoints grouped by label.

Each smart keypoint (in percent of the image size) becomes a labelled click; a negative
keypoint is a background click. Label Studio's front end does not send all of a task's
keypoints: on each new, moved or deleted keypoint it sends the keypoints *of that keypoint's
label* (the positive and negative ones), nothing else. So the backend keeps each task's
keypoints grouped by label; a request replaces the groups it carries, and the mask is
predicted from every group, in the order the labels were first clicked.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

from ihp_rt.errors import InputError
from ihp_rt.serving.errors import ClickLimit


class Keypoint(NamedTuple):
    """One smart keypoint: its region id, its Label Studio label (its group), the pixel, and the
    class it asks for (0, background, for a negative keypoint)."""

    region: str | None
    group: str
    x: int
    y: int
    label: int


def keypoints_from_context(context: object, class_of: Callable[[str], int], max_clicks: int
                           ) -> tuple[list[Keypoint], tuple[int, int]]:
    """The keypoints in a request and the image (width, height) from Label Studio's smart
    keypoints; ``class_of`` gives the class a keypoint's label names."""
    results = context.get("result") if isinstance(context, dict) else None
    if not isinstance(results, list):
        raise InputError('params.context must be {"result": [...keypoint regions...]}')
    items = [r for r in results if isinstance(r, dict) and str(r.get("type", "")).lower() == "keypointlabels"]
    if len(items) > max_clicks:
        raise ClickLimit(f"{len(items)} keypoints: this server takes at most {max_clicks} clicks per image")
    clicks = []
    size = None
    for i, item in enumerate(items):
        value = item.get("value")
        try:
            width, height = int(item["original_width"]), int(item["original_height"])
            px, py = float(value["x"]), float(value["y"])
            if not (0 < width <= 100_000 and 0 < height <= 100_000 and math.isfinite(px) and math.isfinite(py)):
                raise ValueError
            x = min(width - 1, max(0, int(px * width / 100)))
            y = min(height - 1, max(0, int(py * height / 100)))
            name = value["keypointlabels"][0]
        except (KeyError, IndexError, TypeError, ValueError, OverflowError):
            raise InputError(f"context result #{i} is not a keypointlabels region with x, y (percent), "
                             "original_width, original_height and a label") from None
        size = (width, height)
        label = class_of(name) if item.get("is_positive", True) else 0
        region = item.get("id")
        clicks.append(Keypoint(region if isinstance(region, str) else None, str(name), x, y, label))
    if size is None:
        raise InputError("no smart keypoints in params.context: place a keypoint on a part")
    return clicks, size


def merge_groups(held: dict[str, list[Keypoint]], sent: list[Keypoint]) -> dict[str, list[Keypoint]]:
    """A task's keypoint groups (by label, first clicked first) after a request.

    Each label the request carries replaces that label's group, in its place (a new label goes
    last): the front end sends a label's keypoints whole, so what it leaves out was deleted.
    Groups it does not carry are kept, less any keypoint whose region id it now sends under
    another label (a relabelled keypoint must not count twice); a group left empty so is dropped.
    """
    carried: dict[str, list[Keypoint]] = {}
    for keypoint in sent:
        carried.setdefault(keypoint.group, []).append(keypoint)
    moved = {k.region for k in sent if k.region is not None}
    merged: dict[str, list[Keypoint]] = {}
    for name, group in held.items():
        kept = carried[name] if name in carried else [k for k in group if k.region is None or k.region not in moved]
        if kept:
            merged[name] = kept
    for name, group in carried.items():
        merged.setdefault(name, group)
    return merged
