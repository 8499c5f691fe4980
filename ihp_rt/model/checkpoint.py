"""Self-describing checkpoints: weights + ModelSpec + training metadata in one file.

Loaded with ``torch.load(weights_only=True)``: a checkpoint is data, never code, so opening
one from the internet cannot execute anything.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ihp_rt.errors import ModelError
from ihp_rt.model.deeplab import DeepLabV3Plus, build_model
from ihp_rt.spec import ModelSpec

FORMAT = "ihp-rt/checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint: the network (eval mode), its spec and what training recorded."""

    model: DeepLabV3Plus
    spec: ModelSpec
    training: dict = field(default_factory=dict)


def save_checkpoint(path: str | Path, model: torch.nn.Module, spec: ModelSpec, training: dict | None = None,
                    half_weights: bool = False) -> Path:
    """Write atomically (temp file + rename) so an interrupted save never leaves a torn file.

    ``half_weights`` stores floating-point tensors as float16 (half the size); loading casts them
    back to the model's float32.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": spec.to_dict(),
        "training": dict(training or {}),
        "state_dict": {k: _stored(v, half_weights) for k, v in model.state_dict().items()},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def _stored(tensor: torch.Tensor, half: bool) -> torch.Tensor:
    tensor = tensor.detach().cpu()
    return tensor.half() if half and tensor.is_floating_point() else tensor


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, OSError) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ModelError(f"{path} is not a readable ihp-rt checkpoint: {reason}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path} is not an ihp-rt checkpoint (no {FORMAT!r} header)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{path}: checkpoint format version {payload.get('format_version')} is not supported")
    spec = ModelSpec.from_dict(payload["spec"])
    model = build_model(spec)
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise ModelError(f"{path}: weights do not match the {spec.backbone} architecture: {e}") from None
    return Checkpoint(model.to(device).eval(), spec, payload.get("training", {}))
