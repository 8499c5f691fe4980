"""Engine files and their sidecars: what makes a TensorRT engine usable on this machine.

An engine only runs on the TensorRT version and GPU it was built for. Every engine gets a JSON
sidecar recording both (plus the ONNX hash, the ModelSpec and the hash of the engine bytes);
cached engines are keyed by all of them, so a stale engine is never picked up -- it is rebuilt --
and a stale engine given by path is refused with both versions named.

Engine and sidecar are two files, so they cannot be replaced in one step. Both are written to
temporary files first, then the sidecar is renamed into place and the engine last: the engine's
rename commits the pair. Whatever a crash leaves behind -- a new sidecar beside an old engine or
none -- is caught by the engine hash the sidecar records, and treated as "no usable engine here"
(the cache rebuilds it) instead of an engine that is refused forever. Pure Python, so it is
tested without a GPU.

Renames are atomic one at a time, not as a pair: two processes writing one engine at once (N
`serve` workers starting together) can interleave as A-sidecar, B-sidecar, B-engine, A-engine
and leave B's sidecar beside A's engine. So whoever checks, builds or writes an engine holds an
exclusive lock on it (:func:`engine_lock`) throughout, and hands on the bytes and sidecar it
checked or wrote (:class:`EngineFile`) rather than reading the pair again from disk, where
another process may have changed it since.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from ihp_rt.errors import ModelError

SIDECAR_SUFFIX = ".json"


@dataclass(frozen=True)
class EngineInfo:
    """What an engine was built from and for (``engine_sha256``: the bytes it was written with)."""

    onnx_sha256: str
    tensorrt: str
    gpu: str
    compute_capability: str
    precision: str
    spec: dict
    output: str
    engine_sha256: str | None = None
    head: str | None = None  # the correction head's graph (base64), carried from the ONNX metadata
    passes: list[str] = field(default_factory=list)  # the graph's outputs after the mask (spec.ONNX_PASS_OUTPUTS)

    def key(self) -> str:
        """Cache key: ONNX content + TensorRT version + GPU model and architecture + precision."""
        text = f"{self.onnx_sha256}|{self.tensorrt}|{self.gpu}|{self.compute_capability}|{self.precision}"
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    def same_build(self, other: EngineInfo) -> bool:
        """True when both describe the same build inputs (the engine hash aside)."""
        return replace(self, engine_sha256=None) == replace(other, engine_sha256=None)


@dataclass(frozen=True)
class EngineFile:
    """An engine's bytes and its sidecar as checked (or written) together under its lock."""

    path: Path
    info: EngineInfo
    data: bytes


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


def timing_cache_path(tensorrt: str, gpu: str, compute_capability: str) -> Path:
    """The default timing cache of one TensorRT version on one GPU model. Timings measured on
    one GPU mean nothing on another, and TensorRT refuses a cache from another version, so one
    shared file would be refused or overwritten whenever two GPUs (or versions) take turns."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", gpu).strip("-") or "gpu"
    return cache_dir() / f"timing-trt{tensorrt}-{slug}-sm{compute_capability}.cache"


def sidecar_path(engine: Path) -> Path:
    return engine.with_suffix(engine.suffix + SIDECAR_SUFFIX)


@contextmanager
def engine_lock(engine: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``engine`` (flock on ``<engine>.lock``) for check + build + write.

    The first process builds; the others wait, then find its complete engine and reuse it. flock
    is released by the kernel when the holder exits, so a crashed build never blocks the next.
    The lock file is left in place: deleting it would let two processes lock different files."""
    path = engine.with_name(engine.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)  # flock needs no write access
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _temporary(path: Path) -> Path:
    """A new, unique file beside ``path`` (same file system, so os.replace is atomic)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(name)


def atomic_write_bytes(path: Path, data: bytes | memoryview) -> Path:
    """Write ``path`` so readers see the old file or the whole new one, never a part: two
    builders finishing at once each rename a complete file of their own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_sidecar(engine: Path, info: EngineInfo) -> Path:
    return atomic_write_bytes(sidecar_path(engine), json.dumps(asdict(info), indent=1).encode())


def write_engine(engine: Path, serialized: bytes | memoryview, info: EngineInfo) -> EngineInfo:
    """Write an engine and its sidecar as a pair (see the module docstring); returns the info
    recorded, which includes the engine's hash."""
    data = bytes(serialized)
    info = replace(info, engine_sha256=hashlib.sha256(data).hexdigest())
    engine.parent.mkdir(parents=True, exist_ok=True)
    tmp_engine, tmp_sidecar = _temporary(engine), _temporary(sidecar_path(engine))
    try:
        tmp_engine.write_bytes(data)
        tmp_sidecar.write_text(json.dumps(asdict(info), indent=1))
        os.replace(tmp_sidecar, sidecar_path(engine))
        os.replace(tmp_engine, engine)  # the commit point: only now is the new engine visible
    finally:
        for tmp in (tmp_engine, tmp_sidecar):
            tmp.unlink(missing_ok=True)
    return info


def read_sidecar(engine: Path) -> EngineInfo:
    """The sidecar of ``engine``, or ModelError for any sidecar that cannot be read as one.

    Every kind of unreadable content -- malformed JSON, bytes that are not UTF-8 (a truncated
    copy, a disk error), the wrong shape -- must end up as ModelError, since that is what
    :func:`reusable_engine` treats as "rebuild" and what the CLI prints as one line."""
    path = sidecar_path(engine)
    if not path.is_file():
        raise ModelError(f"{engine} has no sidecar {path.name}: build engines with `ihp-rt build-engine`")
    try:
        doc = json.loads(path.read_text())
        known = {f.name for f in fields(EngineInfo)}
        return EngineInfo(**{k: v for k, v in doc.items() if k in known})
    except (ValueError, TypeError, AttributeError) as e:  # ValueError: JSONDecodeError, UnicodeDecodeError
        raise ModelError(f"{path} is not a valid engine sidecar: {e}") from None


def check_engine_bytes(info: EngineInfo, data: bytes, engine: Path) -> None:
    """Refuse engine bytes the sidecar does not describe (an interrupted or foreign write)."""
    if info.engine_sha256 != hashlib.sha256(data).hexdigest():
        raise ModelError(f"{engine} does not match its sidecar {sidecar_path(engine).name} (an interrupted build, "
                         "or files from two builds): rebuild it with `ihp-rt build-engine`, or open the .onnx")


def reusable_engine(engine: Path, wanted: EngineInfo) -> EngineFile | None:
    """The engine and its sidecar when the file is a complete build of exactly ``wanted`` (same
    ONNX, TensorRT, GPU, precision); None when it must be (re)built. Call it under
    :func:`engine_lock`, and use the bytes returned, not the file read again."""
    if not engine.is_file():
        return None
    try:
        info = read_sidecar(engine)
        data = engine.read_bytes()
        check_engine_bytes(info, data, engine)
    except ModelError:
        return None
    return EngineFile(engine, info, data) if info.same_build(wanted) else None


def check_compatible(info: EngineInfo, tensorrt: str, gpu: str, compute_capability: str, engine: Path) -> None:
    """Refuse an engine built for another TensorRT version or GPU, naming both."""
    if info.tensorrt != tensorrt:
        raise ModelError(f"{engine} was built with TensorRT {info.tensorrt}, this is TensorRT {tensorrt}: "
                         f"rebuild it with `ihp-rt build-engine` (or open the .onnx to build and cache one)")
    if (info.gpu, info.compute_capability) != (gpu, compute_capability):
        raise ModelError(f"{engine} was built for {info.gpu} (sm {info.compute_capability}), this GPU is {gpu} "
                         f"(sm {compute_capability}): rebuild it with `ihp-rt build-engine`")


__all__ = ["EngineFile", "EngineInfo", "atomic_write_bytes", "cache_dir", "check_compatible", "check_engine_bytes",
           "engine_lock", "file_sha256", "read_sidecar", "reusable_engine", "sidecar_path", "timing_cache_path",
           "write_engine", "write_sidecar"]
