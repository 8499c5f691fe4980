"""Engine files and their sidecars: what makes a TensorRT engine usable on this machine.

An engine only runs on the TensorRT version and GPU it was built for. Every engine gets a JSON
sidecar recording both (plus the ONNX hash and the ModelSpec); cached engines are keyed by all
three, so a stale engine is never picked up -- it is rebuilt -- and a stale engine given by path
is refused with both versions named. Pure Python, so it is tested without a GPU.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ihp_rt.errors import ModelError

SIDECAR_SUFFIX = ".json"


@dataclass(frozen=True)
class EngineInfo:
    """What an engine was built from and for."""

    onnx_sha256: str
    tensorrt: str
    gpu: str
    compute_capability: str
    precision: str
    spec: dict
    output: str

    def key(self) -> str:
        """Cache key: ONNX content + TensorRT version + GPU model and architecture."""
        text = f"{self.onnx_sha256}|{self.tensorrt}|{self.gpu}|{self.compute_capability}|{self.precision}"
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where built engines are kept: $IHP_RT_CACHE or ~/.cache/ihp-rt/engines."""
    root = os.environ.get("IHP_RT_CACHE") or Path.home() / ".cache" / "ihp-rt"
    return Path(root) / "engines"


def sidecar_path(engine: Path) -> Path:
    return engine.with_suffix(engine.suffix + SIDECAR_SUFFIX)


def write_sidecar(engine: Path, info: EngineInfo) -> Path:
    path = sidecar_path(engine)
    path.write_text(json.dumps(asdict(info), indent=1))
    return path


def read_sidecar(engine: Path) -> EngineInfo:
    path = sidecar_path(engine)
    if not path.is_file():
        raise ModelError(f"{engine} has no sidecar {path.name}: build engines with `ihp-rt build-engine`")
    try:
        return EngineInfo(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as e:
        raise ModelError(f"{path} is not a valid engine sidecar: {e}") from None


def check_compatible(info: EngineInfo, tensorrt: str, gpu: str, compute_capability: str, engine: Path) -> None:
    """Refuse an engine built for another TensorRT version or GPU, naming both."""
    if info.tensorrt != tensorrt:
        raise ModelError(f"{engine} was built with TensorRT {info.tensorrt}, this is TensorRT {tensorrt}: "
                         f"rebuild it with `ihp-rt build-engine` (or open the .onnx to build and cache one)")
    if (info.gpu, info.compute_capability) != (gpu, compute_capability):
        raise ModelError(f"{engine} was built for {info.gpu} (sm {info.compute_capability}), this GPU is {gpu} "
                         f"(sm {compute_capability}): rebuild it with `ihp-rt build-engine`")
