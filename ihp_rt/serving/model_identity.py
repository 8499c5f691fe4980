"""Which model a worker serves, in one line that a session records.

During a rolling update old and new workers share one session store, and a session's clicks
may reach either. Masks from two models in one session would be a silent mix (the annotator
sees the mask jump between clicks), so a session records the identity of the model that made
it (with the click radius: :class:`~ihp_rt.serving.service.Sessions` adds it) and a worker
serving anything else refuses it (409). The identity is derived from what is being served, never
configured by hand: the model's version and label set, for people, and a digest of its weights,
so two trainings that share a version name still differ.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ihp_rt.backends.engine_cache import file_sha256, read_sidecar
from ihp_rt.spec import ModelSpec

if TYPE_CHECKING:  # torch only for a checkpoint: serving an .onnx needs none
    from ihp_rt.model import Checkpoint

DIGEST_CHARS = 12  # of a sha256: enough to tell models apart, short enough to read in an error


def model_identity(spec: ModelSpec, source: str | Path | Checkpoint | None = None) -> str:
    """``"<model version> (<label set>, <digest>)"`` of the model ``source`` holds: an .onnx file
    (its bytes), a TensorRT .engine (the bytes of the .onnx it was built from, which its sidecar
    records: one model on different GPUs is one model), or a loaded checkpoint (its tensors).
    Without a source, the digest is of the spec alone, which cannot tell apart two sets of
    weights with one spec; ``ihp-rt serve`` always passes the model it opened."""
    return f"{spec.model_version} ({spec.labels.name}, {_digest(spec, source)[:DIGEST_CHARS]})"


def _digest(spec: ModelSpec, source: str | Path | Checkpoint | None) -> str:
    if source is None:
        return hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()
    if isinstance(source, (str, Path)):
        path = Path(source)
        return read_sidecar(path).onnx_sha256 if path.suffix.lower() == ".engine" else file_sha256(path)
    import torch

    digest = hashlib.sha256()
    for name, tensor in source.model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()
