"""Contract tests of ihp-rt's TensorRT builder and runner, on the CPU.

These test OUR code, not TensorRT: TensorRT cannot be installed on any machine here, so the
builder (ihp_rt.backends.trt_backend.build_engine) and the runner (TensorRTBackend) talk to
tests/tensorrt_standin.py and tests/cupy_standin.py, stand-ins that implement the documented
calls we use and record them. What a real GPU adds (kernels, timings) is left to
scripts/gpu_check.sh; what is checked here is what we ask TensorRT to do: network flags and
precision on TensorRT 10 vs 11, the optimisation profile, the timing cache, the engine cache
and its sidecars, refusals, tensor addresses, the stream, and which bytes cross the bus.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import multiprocessing
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import onnxruntime
import pytest

import ihp_rt.encoding
from ihp_rt.backends import open_backend
from ihp_rt.backends.engine_cache import EngineInfo, read_sidecar, sidecar_path, timing_cache_path
from ihp_rt.correction import Boost
from ihp_rt.encoding import encode_reference
from ihp_rt.errors import BackendError, ModelError
from ihp_rt.export import export_onnx

from .conftest import random_clicks
from .cupy_standin import make_cupy
from .tensorrt_standin import DOCUMENTED, DOCUMENTED_DEFAULTS, DOCUMENTED_PROPERTIES, make_tensorrt

TRT11, TRT10 = "11.4.0.106", "10.13.3.9"


@pytest.fixture(scope="module")
def exports(tiny_checkpoint, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    return {"fp32": export_onnx(tiny_checkpoint, root / "m32.onnx"),
            "fp16": export_onnx(tiny_checkpoint, root / "m16.onnx", precision="fp16"),
            "logits": export_onnx(tiny_checkpoint, root / "logits.onnx", output="logits")}


def install(monkeypatch, tmp_path: Path, version: str = TRT11, gpu: str = "NVIDIA H200",
            capability: tuple[int, int] = (9, 0), fail_build: bool = False, device_count: int = 1):
    """Put fresh stand-ins in sys.modules (undone after the test) and an empty engine cache."""
    trt = make_tensorrt(version, fail_build)
    cp = make_cupy(device_count=device_count, gpu=gpu, capability=capability)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "cupy", cp)
    # ihp_rt.encoding.cuda binds `cupy` when imported: import it afresh against the stand-in,
    # and let monkeypatch put back whatever was there before.
    monkeypatch.setitem(sys.modules, "ihp_rt.encoding.cuda", None)
    del sys.modules["ihp_rt.encoding.cuda"]
    monkeypatch.setattr(ihp_rt.encoding, "cuda", None, raising=False)
    monkeypatch.setenv("IHP_RT_CACHE", str(tmp_path / "cache"))
    return trt, cp


def calls(trt, name: str) -> list[tuple]:
    return [c for c in trt.calls if c[0] == name]


def reference_mask(onnx_path: Path, image: np.ndarray, clicks: np.ndarray, spec) -> np.ndarray:
    """The mask ONNX Runtime computes for the same input, built with the reference encoder."""
    x = np.concatenate([image, encode_reference(clicks, spec.num_classes, spec.input_size, spec.input_size,
                                                spec.cap)])[None]
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.astype(np.float32)})[0][0]


def test_standin_signatures_match_the_documented_api() -> None:
    """Every stand-in method our code can call has the documented parameter names and defaults
    (DOCUMENTED records where each was checked: TensorRT's Python bindings and API pages), and
    the stand-in has nothing undocumented that our code could come to depend on unnoticed. A
    default the real call lacks would let our code omit an argument TensorRT requires."""
    trt = make_tensorrt(TRT11)
    implemented = set()
    for owner in ("Logger", "Builder", "OnnxParser", "INetworkDefinition", "IBuilderConfig", "ITimingCache",
                  "IOptimizationProfile", "Runtime", "ICudaEngine", "IExecutionContext"):
        cls = getattr(trt, owner)
        for name, member in vars(cls).items():
            # TensorRT makes the I* objects itself (builder.create_..., engine.create_...): only
            # Logger, Builder, OnnxParser and Runtime are constructed by our code.
            constructed = name == "__init__" and not owner.startswith("I")
            if inspect.isfunction(member) and (not name.startswith("_") or constructed):
                implemented.add(f"{owner}.{name}")
                if f"{owner}.{name}" in DOCUMENTED:
                    params = list(inspect.signature(member).parameters.values())[1:]
                    assert tuple(p.name for p in params) == DOCUMENTED[f"{owner}.{name}"], f"{owner}.{name}{params}"
                    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
                    documented = {k: getattr(trt.Logger, v) if isinstance(v, str) else v
                                  for k, v in DOCUMENTED_DEFAULTS.get(f"{owner}.{name}", {}).items()}
                    assert defaults == documented, f"{owner}.{name}: defaults {defaults}, documented {documented}"
    assert implemented == set(DOCUMENTED), implemented ^ set(DOCUMENTED)
    assert set(DOCUMENTED_DEFAULTS) <= set(DOCUMENTED)
    for prop in DOCUMENTED_PROPERTIES:
        owner, name = prop.split(".")
        member = vars(getattr(trt, owner))[name]
        assert isinstance(member, property) and member.fset is None, f"{prop} is a read-only property on TensorRT"
    assert not hasattr(trt.BuilderFlag, "FP16") and hasattr(make_tensorrt(TRT10).BuilderFlag, "FP16")


def test_trt11_builds_an_fp32_graph_strongly_typed_in_fp32(monkeypatch, tmp_path, exports) -> None:
    """The shipped FP32 graph on TensorRT 11: built (not refused) as an FP32 engine, no FP16 flag,
    one static profile, the workspace limit, the engine in the cache under its key."""
    trt, _ = install(monkeypatch, tmp_path)
    from ihp_rt.backends.trt_backend import build_engine

    engine = build_engine(exports["fp32"])
    assert calls(trt, "Builder.create_network") == [("Builder.create_network", 0)]  # STRONGLY_TYPED: ignored on 11
    assert calls(trt, "IBuilderConfig.set_flag") == []
    shape = (1, 23, 96, 96)
    assert calls(trt, "IOptimizationProfile.set_shape") == [("IOptimizationProfile.set_shape", "input", shape, shape,
                                                             shape)]
    assert calls(trt, "IBuilderConfig.set_memory_pool_limit") == [
        ("IBuilderConfig.set_memory_pool_limit", trt.MemoryPoolType.WORKSPACE, 4 << 30)]
    info = read_sidecar(engine)
    assert (info.precision, info.tensorrt, info.gpu, info.compute_capability) == ("fp32", TRT11, "NVIDIA H200", "9.0")
    assert engine == tmp_path / "cache" / "engines" / f"{info.key()}.engine"
    header = json.loads(engine.read_bytes().split(b"\n")[1])
    assert header["strongly_typed"] and not header["fp16_flag"]


def test_trt11_refuses_fp16_asked_of_an_fp32_graph_and_builds_fp16_graphs(monkeypatch, tmp_path, exports) -> None:
    trt, _ = install(monkeypatch, tmp_path)
    from ihp_rt.backends.trt_backend import build_engine

    with pytest.raises(BackendError, match=r"--precision fp16"):
        build_engine(exports["fp32"], fp16=True)
    assert calls(trt, "Builder") == []  # refused before building anything
    engine = build_engine(exports["fp16"], fp16=True)
    assert read_sidecar(engine).precision == "fp16"
    assert calls(trt, "IBuilderConfig.set_flag") == []


def test_trt10_uses_the_fp16_flag_on_weakly_typed_fp32_graphs(monkeypatch, tmp_path, exports) -> None:
    trt, _ = install(monkeypatch, tmp_path, version=TRT10)
    from ihp_rt.backends.trt_backend import build_engine

    fp16 = build_engine(exports["fp32"])  # opening an .onnx: FP16 where TensorRT can make it
    assert calls(trt, "Builder.create_network")[-1] == ("Builder.create_network", 0)
    assert calls(trt, "IBuilderConfig.set_flag") == [("IBuilderConfig.set_flag", trt.BuilderFlag.FP16)]
    assert read_sidecar(fp16).precision == "fp16"
    fp32 = build_engine(exports["fp32"], fp16=False)  # `build-engine --no-fp16`
    strongly_typed = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert calls(trt, "Builder.create_network")[-1] == ("Builder.create_network", strongly_typed)
    assert len(calls(trt, "IBuilderConfig.set_flag")) == 1 and read_sidecar(fp32).precision == "fp32"
    assert fp16 != fp32  # the precision is part of the cache key
    build_engine(exports["fp16"])  # an FP16 graph: strongly typed, never the flag on top
    assert calls(trt, "Builder.create_network")[-1] == ("Builder.create_network", strongly_typed)
    assert len(calls(trt, "IBuilderConfig.set_flag")) == 1


def test_timing_cache_per_tensorrt_and_gpu_checked_and_replaced_atomically(monkeypatch, tmp_path, exports) -> None:
    trt, _ = install(monkeypatch, tmp_path)
    from ihp_rt.backends.trt_backend import build_engine

    build_engine(exports["fp32"])
    h200 = timing_cache_path(TRT11, "NVIDIA H200", "9.0")
    assert calls(trt, "IBuilderConfig.create_timing_cache") == [("IBuilderConfig.create_timing_cache", b"")]
    assert calls(trt, "IBuilderConfig.set_timing_cache") == [("IBuilderConfig.set_timing_cache", False, True)]
    assert h200.read_bytes() == f"TIMING CACHE|{TRT11}|1".encode()
    build_engine(exports["fp16"])  # the next build on this GPU starts from what the first one timed
    assert calls(trt, "IBuilderConfig.create_timing_cache")[-1] == ("IBuilderConfig.create_timing_cache",
                                                                    h200.read_bytes().replace(b"|2", b"|1"))
    assert h200.read_bytes().endswith(b"|2")

    trt, _ = install(monkeypatch, tmp_path, gpu="NVIDIA A100-SXM4-80GB", capability=(8, 0))
    build_engine(exports["fp32"])
    a100 = timing_cache_path(TRT11, "NVIDIA A100-SXM4-80GB", "8.0")
    assert a100 != h200 and a100.name == f"timing-trt{TRT11}-NVIDIA-A100-SXM4-80GB-sm8.0.cache"
    assert calls(trt, "IBuilderConfig.create_timing_cache") == [("IBuilderConfig.create_timing_cache", b"")]
    assert h200.read_bytes().endswith(b"|2")  # another GPU never overwrites this one's timings

    # A cache TensorRT refuses (another build of TensorRT wrote it): not ignored, not fatal.
    a100.write_bytes(b"TIMING CACHE|11.3.0.99|7")
    trt, _ = install(monkeypatch, tmp_path, gpu="NVIDIA A100-SXM4-80GB", capability=(8, 0))
    build_engine(exports["fp16"])
    assert [c[2] for c in calls(trt, "IBuilderConfig.set_timing_cache")] == [False, True]
    assert calls(trt, "IBuilderConfig.create_timing_cache")[-1] == ("IBuilderConfig.create_timing_cache", b"")
    assert a100.read_bytes() == f"TIMING CACHE|{TRT11}|1".encode()
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_engine_and_sidecar_are_written_as_a_pair(monkeypatch, tmp_path, exports) -> None:
    """A crash between the two renames must not leave an engine that is refused forever: the
    next open rebuilds it."""
    trt, _ = install(monkeypatch, tmp_path)
    from ihp_rt.backends import engine_cache
    from ihp_rt.backends.trt_backend import build_engine

    real_replace, renamed = os.replace, []

    engine = tmp_path / "out" / "m.engine"

    def crash_before_the_engine_rename(src, dst):
        if Path(dst) == engine:
            raise OSError("power cut")
        renamed.append(Path(dst))
        real_replace(src, dst)

    monkeypatch.setattr(engine_cache.os, "replace", crash_before_the_engine_rename)
    with pytest.raises(OSError, match="power cut"):
        build_engine(exports["fp32"], engine)
    # the timing cache, then the sidecar; the engine (the commit) never appeared, no temporary left
    assert renamed[-1] == sidecar_path(engine) and not engine.exists()
    assert sorted(p.name for p in engine.parent.iterdir()) == ["m.engine.json", "m.engine.lock"]
    monkeypatch.setattr(engine_cache.os, "replace", real_replace)
    renamed.clear()

    # An older engine beside a newer sidecar (crash between the renames of a rebuild): rebuilt.
    engine.write_bytes(b"an engine from an earlier build")
    builds = len(calls(trt, "Builder.build_serialized_network"))
    assert build_engine(exports["fp32"], engine) == engine
    assert len(calls(trt, "Builder.build_serialized_network")) == builds + 1
    info = read_sidecar(engine)
    assert info.engine_sha256 == hashlib.sha256(engine.read_bytes()).hexdigest()
    open_backend(engine, "tensorrt")  # and it opens


def test_an_explicit_engine_path_is_reused_only_for_the_same_build(monkeypatch, tmp_path, exports) -> None:
    trt, _ = install(monkeypatch, tmp_path)
    from ihp_rt.backends.trt_backend import build_engine

    engine = tmp_path / "m.engine"

    def builds() -> int:
        return len(calls(trt, "Builder.build_serialized_network"))

    build_engine(exports["fp32"], engine)
    build_engine(exports["fp32"], engine)
    assert builds() == 1  # same ONNX, TensorRT, GPU and precision: reused
    build_engine(exports["fp16"], engine)
    assert builds() == 2 and read_sidecar(engine).precision == "fp16"  # another graph: rebuilt, not returned
    engine.write_bytes(engine.read_bytes() + b"garbage")
    build_engine(exports["fp16"], engine)
    assert builds() == 3  # bytes the sidecar does not describe: rebuilt
    sidecar_path(engine).unlink()
    build_engine(exports["fp16"], engine)
    assert builds() == 4 and read_sidecar(engine).precision == "fp16"  # no sidecar: rebuilt, not refused


def test_engines_from_another_tensorrt_or_gpu_are_refused(monkeypatch, tmp_path, exports) -> None:
    install(monkeypatch, tmp_path)
    from ihp_rt.backends.trt_backend import build_engine

    engine = build_engine(exports["fp32"], tmp_path / "m.engine")
    install(monkeypatch, tmp_path, version="11.5.0.1")
    with pytest.raises(ModelError, match=r"built with TensorRT 11\.4\.0\.106, this is TensorRT 11\.5\.0\.1"):
        open_backend(engine, "tensorrt")
    install(monkeypatch, tmp_path, gpu="NVIDIA A100-SXM4-80GB", capability=(8, 0))
    with pytest.raises(ModelError, match=r"built for NVIDIA H200 \(sm 9\.0\), this GPU is NVIDIA A100"):
        open_backend(engine, "tensorrt")
    install(monkeypatch, tmp_path)
    engine.write_bytes(engine.read_bytes()[:-10])
    with pytest.raises(ModelError, match="does not match its sidecar"):
        open_backend(engine, "tensorrt")
    logits = build_engine(exports["logits"], tmp_path / "logits.engine")
    with pytest.raises(ModelError, match="--head labels"):
        open_backend(logits, "tensorrt")


def test_runner_binds_our_buffers_runs_on_our_stream_and_copies_back_only_the_mask_and_logits(
        monkeypatch, tmp_path, exports, tiny_checkpoint, rng) -> None:
    trt, cp = install(monkeypatch, tmp_path)
    backend = open_backend(exports["fp32"], "tensorrt")
    spec, size = backend.spec, backend.spec.input_size
    assert backend.name == "tensorrt-fp32"
    assert "FP32 engine" in backend.choice and "--precision fp16" in backend.choice
    addresses = {c[1]: c[2] for c in calls(trt, "IExecutionContext.set_tensor_address")}
    assert addresses == {"input": backend._input.data.ptr, "labels": backend._outputs["labels"].data.ptr,
                         "coarse": backend._outputs["coarse"].data.ptr}
    assert isinstance(backend.corrector, Boost)  # no correction head: corrections edit the stride-4 logits
    assert calls(trt, "IExecutionContext.set_input_shape") == [("IExecutionContext.set_input_shape", "input",
                                                                (1, 23, size, size))]
    cp.transfers.clear()
    cp.kernels.clear()  # the kernel's one trial run when the backend opened
    image = rng.standard_normal((3, size, size)).astype(np.float32)
    backend.set_image(image)
    assert cp.transfers == [("to_device", image.nbytes, backend._stream.ptr)]  # RGB: once per image
    for k in (1, 5, 12):
        cp.transfers.clear()
        clicks = random_clicks(rng, k, spec.num_classes, size, size)
        done = backend.predict(clicks)
        assert np.array_equal(done.labels, reference_mask(exports["fp32"], image, clicks, spec))
        # per click: the clicks go up, the uint8 mask and the stride-4 logits come down, nothing else crosses
        assert cp.transfers == [("to_device", clicks.nbytes, backend._stream.ptr),
                                ("to_host", size * size, backend._stream.ptr),
                                ("to_host", done.coarse.nbytes, backend._stream.ptr)]
        assert done.coarse.shape == (spec.num_classes, size // 4, size // 4)
        run = trt.executions[-1]
        assert run["stream"] == backend._stream.ptr != 0  # our stream, never the legacy default one
        assert np.array_equal(run["inputs"]["input"][0, :3], image)  # the RGB stayed on the "device"
        assert set(backend.timings) == {"encode_ms", "network_ms", "download_ms"}
    assert [s for s, _ in cp.kernels] == [backend._stream.ptr] * 3  # the maps were encoded on our stream


def test_runner_works_on_its_own_device_from_any_thread(monkeypatch, tmp_path, exports, rng) -> None:
    """Buffers, engine and kernel live on the device that was current when the backend opened;
    CUDA's current device is per thread, and a server predicts from threads of its own whose
    current device is 0, so every call makes the backend's device current (and restores the
    caller's)."""
    _, cp = install(monkeypatch, tmp_path, device_count=2)
    cp.cuda.Device(1).use()
    backend = open_backend(exports["fp32"], "tensorrt")
    assert backend._input.device.id == backend._outputs["labels"].device.id == 1
    cp.cuda.Device(0).use()  # as in another thread of a server
    spec, size = backend.spec, backend.spec.input_size
    image = rng.standard_normal((3, size, size)).astype(np.float32)
    backend.set_image(image)
    clicks = random_clicks(rng, 6, spec.num_classes, size, size)
    assert np.array_equal(backend.predict(clicks).labels, reference_mask(exports["fp32"], image, clicks, spec))
    assert cp.cuda.Device().id == 0  # the caller's current device is left as it was


def test_a_failed_execution_is_a_broken_engine_and_the_server_answers_500(monkeypatch, tmp_path, exports) -> None:
    """execute_async_v3 returning False is the engine's fault (bad bindings, a corrupt or
    mismatched plan), which a retry of the same request on the same engine does not fix: the
    server answers 500, logged as its own fault, not 503 with a Retry-After that invites clients
    to hammer a broken engine."""
    import io

    from fastapi.testclient import TestClient
    from PIL import Image

    from ihp_rt.serving import ServeConfig
    from ihp_rt.serving.app import create_app
    from ihp_rt.session import SharedBackend

    install(monkeypatch, tmp_path)
    backend = open_backend(exports["fp32"], "tensorrt")
    client = TestClient(create_app(SharedBackend(backend), ServeConfig(max_sessions=2)), raise_server_exceptions=False)
    photo = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(photo, "PNG")
    created = client.post("/sessions", files={"image": ("photo.png", photo.getvalue(), "image/png")})
    assert created.status_code == 201, created.text
    sid = created.json()["session_id"]
    assert client.post(f"/sessions/{sid}/clicks", json={"x": 5, "y": 5, "label": 1}).status_code == 200
    monkeypatch.setattr(backend._context, "execute_async_v3", lambda stream_handle: False)
    failed = client.post(f"/sessions/{sid}/clicks", json={"x": 9, "y": 9, "label": 2})
    assert failed.status_code == 500 and "retry-after" not in failed.headers
    assert "TensorRT failed to execute" in failed.json()["detail"]


def test_auto_opens_tensorrt_and_builds_fp16_from_an_fp16_export(monkeypatch, tmp_path, exports, rng) -> None:
    install(monkeypatch, tmp_path)
    backend = open_backend(exports["fp16"])
    assert backend.name == "tensorrt-fp16" and backend.choice == "TensorRT and a GPU are available"
    size = backend.spec.input_size
    image = rng.standard_normal((3, size, size)).astype(np.float32)
    backend.set_image(image)
    clicks = random_clicks(rng, 4, backend.spec.num_classes, size, size)
    assert np.array_equal(backend.predict(clicks).labels, reference_mask(exports["fp16"], image, clicks, backend.spec))
    assert isinstance(read_sidecar(next((tmp_path / "cache" / "engines").glob("*.engine"))), EngineInfo)


def test_a_sidecar_that_is_not_utf8_is_rebuilt_or_refused_like_corrupt_json(monkeypatch, tmp_path, exports) -> None:
    """Bytes that do not decode (a truncated copy, a disk error) are one more unreadable sidecar:
    the cache rebuilds the engine, and an engine given by path is refused in one line."""
    trt, _ = install(monkeypatch, tmp_path)
    from ihp_rt.backends.trt_backend import build_engine

    engine = build_engine(exports["fp32"], tmp_path / "m.engine")
    sidecar_path(engine).write_bytes(b"\xff\xfe not UTF-8")
    with pytest.raises(ModelError, match="not a valid engine sidecar"):
        open_backend(engine, "tensorrt")
    assert build_engine(exports["fp32"], engine) == engine
    assert len(calls(trt, "Builder.build_serialized_network")) == 2  # rebuilt, not refused
    assert read_sidecar(engine).engine_sha256 == hashlib.sha256(engine.read_bytes()).hexdigest()


def test_build_engine_cli_builds_the_engine_opening_the_onnx_reuses(monkeypatch, tmp_path, exports, capsys) -> None:
    """`ihp-rt build-engine` ahead of deployment must fill the cache entry that opening the .onnx
    looks up: same precision choice, so on TensorRT 10 (where FP32 graphs get the FP16 flag) the
    server reuses the engine instead of building another."""
    from ihp_rt.cli import main
    from ihp_rt.session import Session

    trt, _ = install(monkeypatch, tmp_path, version=TRT10)
    assert main(["build-engine", str(exports["fp32"])]) == 0
    session = Session.open(exports["fp32"], backend="tensorrt")
    assert session.backend.name == "tensorrt-fp16"
    assert len(calls(trt, "Builder.build_serialized_network")) == 1  # built once, by the CLI
    assert main(["build-engine", str(exports["fp32"]), "--no-fp16"]) == 0  # the graph's own precision
    assert "fp32" in {read_sidecar(p).precision for p in (tmp_path / "cache" / "engines").glob("*.engine")}


def test_building_without_cupy_is_a_clear_error_not_a_traceback(monkeypatch, tmp_path, exports, capsys) -> None:
    """The engine cache is keyed by the GPU, which the builder asks CuPy for: without CuPy,
    `ihp-rt build-engine` says so in one line (BackendError) instead of an ImportError traceback."""
    from ihp_rt.backends.trt_backend import build_engine
    from ihp_rt.cli import main

    trt, _ = install(monkeypatch, tmp_path)
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` raises ImportError
    with pytest.raises(BackendError, match="needs CuPy and a CUDA GPU: CuPy is not installed"):
        build_engine(exports["fp32"])
    assert main(["build-engine", str(exports["fp32"])]) == 2
    assert "ihp-rt: error: " in capsys.readouterr().err
    assert calls(trt, "Builder") == []


def _start_a_worker(onnx_path: str, cache: str, started, results) -> None:
    """One of several `serve` workers starting together on one GPU host, in its own process:
    stand-ins installed, the two renames of an engine write spread apart (a slow disk, a busy
    host), then the .onnx opened on TensorRT once every worker is ready."""
    trt = make_tensorrt(TRT11, build_seconds=1.5)
    sys.modules["tensorrt"], sys.modules["cupy"] = trt, make_cupy()
    os.environ["IHP_RT_CACHE"] = cache
    real_replace = os.replace

    def slow_replace(src, dst) -> None:
        real_replace(src, dst)
        if str(dst).endswith(".engine.json"):
            time.sleep(1.0)  # between the sidecar's rename and the engine's

    os.replace = slow_replace  # this process only
    started.wait()
    try:
        backend = open_backend(onnx_path, "tensorrt")
        results.put(("opened", backend.name, len(calls(trt, "Builder.build_serialized_network"))))
    except Exception:
        results.put(("failed", traceback.format_exc(), 0))


@pytest.mark.slow  # two fresh processes and a 1.5 s stand-in build
def test_workers_starting_together_share_one_build_and_a_matching_pair(tmp_path, exports) -> None:
    """Without a lock each worker built and wrote its own engine/sidecar pair, and the renames of
    two writers could interleave (A's sidecar, B's sidecar, B's engine, A's engine), so a worker
    re-reading the pair found a sidecar of another build and failed to start. Under the cache's
    lock one builds, the other waits and reuses that engine, and the pair on disk matches."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter, as a real worker is
    started, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_start_a_worker, args=(str(exports["fp32"]), str(tmp_path / "cache"),
                                                             started, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert [o[:2] for o in outcomes] == [("opened", "tensorrt-fp32")] * 2, outcomes
    assert sum(o[2] for o in outcomes) == 1  # one build; the other worker reused it
    [engine] = (tmp_path / "cache" / "engines").glob("*.engine")
    assert read_sidecar(engine).engine_sha256 == hashlib.sha256(engine.read_bytes()).hexdigest()


def test_a_model_with_a_correction_head_brings_its_head_and_logits_back(monkeypatch, tmp_path, rng) -> None:
    """The engine binds and copies back the stride-4 logits and features besides the mask; the
    head's graph travels in the sidecar, so a .engine opened alone corrects like ONNX Runtime."""
    import dataclasses

    import torch

    from ihp_rt.correction import correct
    from ihp_rt.labels import get_label_set
    from ihp_rt.model import Checkpoint, build_model
    from ihp_rt.spec import ModelSpec

    spec = ModelSpec(labels=get_label_set("lip"), backbone="mobilenetv3_large", input_size=96, correction_head=True)
    model = build_model(spec, seed=0).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.correction.out.weight, std=0.05)  # so that a correction changes the mask:
        model.correction.out.bias.fill_(3.0)  # it only adds its class, so it must claim cells
    onnx_path = export_onnx(Checkpoint(model, spec), tmp_path / "head.onnx")
    trt, cp = install(monkeypatch, tmp_path)
    engine, reference = open_backend(onnx_path, "tensorrt"), open_backend(onnx_path, "onnxruntime")
    size = spec.input_size
    assert {c[1] for c in calls(trt, "IExecutionContext.set_tensor_address")} == {"input", "labels", "coarse",
                                                                                  "features"}
    image = rng.standard_normal((3, size, size)).astype(np.float32)
    for backend in (engine, reference):
        backend.set_image(image)
    clicks = random_clicks(rng, 4, spec.num_classes, size, size)
    cp.transfers.clear()
    ours, theirs = engine.predict(clicks[:3]), reference.predict(clicks[:3])
    assert [t[1] for t in cp.transfers[1:]] == [size * size, ours.coarse.nbytes, ours.features.nbytes]
    assert np.array_equal(ours.labels, theirs.labels)
    assert np.allclose(ours.coarse, theirs.coarse, atol=1e-4) and np.allclose(ours.features, theirs.features,
                                                                              atol=1e-4)
    corrected = correct(ours, clicks, engine.corrector)
    assert not np.array_equal(corrected.labels, ours.labels)
    assert np.array_equal(corrected.labels, correct(theirs, clicks, reference.corrector).labels)
    sidecar = read_sidecar(engine._path)
    assert sidecar.head is not None
    headless = tmp_path / "headless.engine"
    headless.write_bytes(engine._path.read_bytes())
    sidecar_path(headless).write_text(json.dumps({**dataclasses.asdict(sidecar), "head": None}))
    with pytest.raises(ModelError, match="sidecar does not carry it"):
        open_backend(headless, "tensorrt")
