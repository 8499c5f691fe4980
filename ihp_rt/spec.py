"""ModelSpec: everything needed to run a model besides its weights (the model card).

It travels inside every artefact -- checkpoint, ONNX metadata, engine sidecar -- so any one
file is enough to open a session: label set, input size, normalisation, click-map cap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ihp_rt.errors import ModelError
from ihp_rt.labels import LabelSet, get_label_set

# 2 added map_entry and map_scale; a version-1 spec means ("concat", 1.0), as those models ran.
# 3 added correction_head; versions 1 and 2 have none.
SPEC_VERSION = 3
SUPPORTED_SPEC_VERSIONS = (1, 2, 3)
MAP_ENTRIES = ("concat", "branch")
# Keys of the ONNX metadata_props an exported model carries (see export/to_onnx.py).
ONNX_SPEC_KEY = "ihp_rt.spec"
ONNX_OUTPUT_KEY = "ihp_rt.output"
ONNX_VERSION_KEY = "ihp_rt.version"
ONNX_PRECISION_KEY = "ihp_rt.precision"
ONNX_HEAD_KEY = "ihp_rt.correction_head"  # the correction head's own ONNX graph, base64 (export/to_onnx.py)
# What the network's graph outputs after its mask, in this order: the stride-4 logits every correction
# reads (every export since spec version 3), and for a model with a correction head the head's
# projection of the stride-4 features.
ONNX_PASS_OUTPUTS = ("coarse", "features")
ONNX_HEAD_INPUTS = ("features", "coarse", "clicks", "origin")  # the head graph's inputs, in CorrectionHead's order
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """Architecture and I/O contract of an IHP network.

    ``input_size`` is the side of the square the image is letterboxed into (the paper uses
    473); clicks are encoded in that frame, so ``cap`` keeps its paper meaning there.
    """

    labels: LabelSet = field(default_factory=lambda: get_label_set("lip"))
    backbone: str = "mobilenetv3_large"
    input_size: int = 473
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    cap: int = 255
    first_kernel: int = 7
    model_version: str = "untrained"
    map_entry: str = "concat"  # how the click maps enter the first layer (ihp_rt/model/input_stem.py)
    map_scale: float = 1.0  # units the maps are learned in: the network sees maps * map_scale
    correction_head: bool = False  # corrections run the head on a window (ihp_rt/model/correction_head.py)

    def __post_init__(self) -> None:
        if not 32 <= self.input_size <= 2048:
            raise ModelError(f"input_size must be in 32..2048, got {self.input_size}")
        if self.first_kernel % 2 != 1:
            raise ModelError(f"first_kernel must be odd, got {self.first_kernel}")
        if self.map_entry not in MAP_ENTRIES:
            raise ModelError(f"map_entry must be one of {MAP_ENTRIES}, got {self.map_entry!r}")
        if not 0 < self.map_scale <= 1:
            raise ModelError(f"map_scale must be in (0, 1], got {self.map_scale}")

    @property
    def num_classes(self) -> int:
        """Classes including background: the number of click maps and of output logits."""
        return self.labels.num_classes

    @property
    def in_channels(self) -> int:
        """RGB plus one click map per class (the paper's C + 4)."""
        return 3 + self.num_classes

    def to_dict(self) -> dict:
        return {
            "spec_version": SPEC_VERSION,
            "labels": self.labels.to_dict(),
            "backbone": self.backbone,
            "input_size": self.input_size,
            "mean": list(self.mean),
            "std": list(self.std),
            "cap": self.cap,
            "first_kernel": self.first_kernel,
            "model_version": self.model_version,
            "map_entry": self.map_entry,
            "map_scale": self.map_scale,
            "correction_head": self.correction_head,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        version = d.get("spec_version")
        if version not in SUPPORTED_SPEC_VERSIONS:
            raise ModelError(f"model spec version {version!r} is not supported (this ihp-rt reads "
                             f"{', '.join(map(str, SUPPORTED_SPEC_VERSIONS))}); upgrade ihp-rt")
        if version == 1 and ("map_entry" in d or "map_scale" in d):
            raise ModelError("malformed model spec: version 1 has no map_entry / map_scale")
        if version < 3 and "correction_head" in d:
            raise ModelError(f"malformed model spec: version {version} has no correction_head")
        try:
            return cls(
                labels=LabelSet.from_dict(d["labels"]),
                backbone=str(d["backbone"]),
                input_size=int(d["input_size"]),
                mean=tuple(float(v) for v in d["mean"]),
                std=tuple(float(v) for v in d["std"]),
                cap=int(d["cap"]),
                first_kernel=int(d["first_kernel"]),
                model_version=str(d["model_version"]),
                map_entry=str(d.get("map_entry", "concat")) if version == 1 else str(d["map_entry"]),
                map_scale=float(d.get("map_scale", 1.0)) if version == 1 else float(d["map_scale"]),
                correction_head=_flag(d["correction_head"]) if version >= 3 else False,
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(f"malformed model spec: {e!r}") from None


def _flag(value: object) -> bool:
    """A JSON boolean, refused otherwise: bool("false") would read as True."""
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value
