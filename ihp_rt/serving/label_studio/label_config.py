"""The parts of a Label Studio labelling config the backend needs."""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree import ElementTree

from ihp_rt.errors import InputError


@dataclass(frozen=True)
class Tags:
    """The parts of a labelling config the backend needs."""

    brush: str  # BrushLabels name: the from_name of the regions we return
    image: str  # Image name: their to_name
    data_key: str  # the task data field holding the image URL
    brush_labels: tuple[str, ...]


def parse_config(xml: str) -> Tags:
    """Find the BrushLabels tag and the Image it points at (tag names case-insensitive)."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as e:
        raise InputError(f"label_config is not valid XML: {e}") from None
    tags = list(root.iter())
    brush = next((t for t in tags if t.tag.lower() == "brushlabels"), None)
    if brush is None or not brush.get("name") or not brush.get("toName"):
        raise InputError("label_config needs a <BrushLabels name=.. toName=..> tag for the parsing mask")
    image = next((t for t in tags if t.tag.lower() == "image" and t.get("name") == brush.get("toName")), None)
    if image is None or not (image.get("value") or "").startswith("$"):
        raise InputError(f"label_config has no <Image name={brush.get('toName')!r} value=\"$...\"> for the BrushLabels")
    labels = tuple(t.get("value") for t in brush if t.tag.lower() == "label" and t.get("value"))
    return Tags(brush.get("name"), image.get("name"), image.get("value")[1:], labels)
