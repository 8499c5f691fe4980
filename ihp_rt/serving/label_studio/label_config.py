"""The parts of a Label Studio labelling config the backend needs, and its label names as the
model's classes.

A config names its labels as it likes: Label Studio's templates capitalise (``Hair``), a team
may call upper-clothes ``Shirt``. A label name is the model's class of that name, in any case,
or the class a label map gives it (``LABEL_STUDIO_LABEL_MAP``, or ``ihp-rt serve
--label-studio-label-map``: JSON, config name -> class name or id). Regions go back under the
config's own names: Label Studio shows a region only under a label of its config.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from xml.etree import ElementTree

from ihp_rt.errors import IhpError, InputError
from ihp_rt.labels import LabelSet


@dataclass(frozen=True)
class Tags:
    """The parts of a labelling config the backend needs."""

    brush: str  # BrushLabels name: the from_name of the regions we return
    image: str  # Image name: their to_name
    data_key: str  # the task data field holding the image URL
    brush_labels: tuple[str, ...]
    keypoint_labels: tuple[str, ...]  # of the smart KeyPointLabels on that image: the clicks


def parse_config(xml: str) -> Tags:
    """Find the BrushLabels tag, the Image it points at, and the smart keypoints on that image
    (tag names case-insensitive)."""
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
    keypoints = [t for t in tags if t.tag.lower() == "keypointlabels" and t.get("toName") == image.get("name")
                 and (t.get("smart") or "").lower() == "true"]
    return Tags(brush.get("name"), image.get("name"), image.get("value")[1:], _labels(brush),
                tuple(name for tag in keypoints for name in _labels(tag)))


def _labels(tag: ElementTree.Element) -> tuple[str, ...]:
    return tuple(t.get("value") for t in tag if t.tag.lower() == "label" and t.get("value"))


def parse_label_map(text: str) -> dict[str, str | int]:
    """A label map as given (JSON: ``{"config name": "model class" or class id, ...}``); whether
    it names classes of the model is :class:`LabelNames`' to check."""
    try:
        mapping = json.loads(text)
    except ValueError:
        mapping = None
    if not (isinstance(mapping, dict) and all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                              for v in mapping.values())):
        raise IhpError(f'the Label Studio label map (LABEL_STUDIO_LABEL_MAP, --label-studio-label-map) must be a JSON '
                       f'object, config label name -> the model\'s class name or id, as {{"Shirt": "upper-clothes"}}; '
                       f"got {text!r}")
    return mapping


class LabelNames:
    """A config's label names as the model's classes: the label map's entry for a name, else the
    class of that name in any case (as the web page takes clicks)."""

    def __init__(self, labels: LabelSet, label_map: Mapping[str, str | int]) -> None:
        self.labels = labels
        try:
            self.mapped = {name: labels.label_id(target) for name, target in label_map.items()}
        except InputError as e:  # found at start, not at the first click of every project
            raise IhpError(f"the Label Studio label map names no class of the model: {e}") from None

    def class_of(self, name: object) -> int:
        """The class a label names (a request's JSON may hold anything there: refused as unknown)."""
        return self.mapped[name] if isinstance(name, str) and name in self.mapped else self.labels.label_id(name)

    def _known(self, name: str) -> bool:
        try:
            self.class_of(name)
        except InputError:
            return False
        return True

    def brush_classes(self, tags: Tags) -> dict[int, str]:
        """The config's brush label for each class it names, in class order; with no brush labels,
        every class under the model's names. Refused, naming the names, unless every brush and
        smart keypoint label is a class and no class has two brush labels (which would its
        region be called?)."""
        unknown = [n for n in dict.fromkeys(tags.brush_labels + tags.keypoint_labels) if not self._known(n)]
        if unknown:
            raise InputError(f"label_config names labels that are no class of the model: "
                             f"{', '.join(map(repr, unknown))}. Its classes (label set {self.labels.name!r}): "
                             f"{', '.join(self.labels.names)}. Name each label as its class (in any case), or map "
                             f"the names with LABEL_STUDIO_LABEL_MAP or ihp-rt serve --label-studio-label-map, "
                             f"as '{json.dumps({unknown[0]: self.labels.names[1]})}'")
        if not tags.brush_labels:
            return dict(enumerate(self.labels.names))
        named: dict[int, str] = {}
        for name in tags.brush_labels:
            class_id = self.class_of(name)
            if class_id in named:
                raise InputError(f"label_config's brush labels {named[class_id]!r} and {name!r} both name the "
                                 f"class {self.labels.names[class_id]}: keep one")
            named[class_id] = name
        return dict(sorted(named.items()))
