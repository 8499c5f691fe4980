"""Deployment pieces that run without a GPU: backend choice, engine sidecars, FP16 graphs."""

import json

import numpy as np
import onnx
import pytest

from ihp_rt.backends import choose_onnx_backend, open_backend
from ihp_rt.backends.engine_cache import (
    EngineInfo,
    cache_dir,
    check_compatible,
    file_sha256,
    read_sidecar,
    write_sidecar,
)
from ihp_rt.errors import ModelError
from ihp_rt.export import export_onnx
from ihp_rt.export.to_tensorrt import onnx_precision
from ihp_rt.session import Session

from .conftest import random_clicks


def test_auto_prefers_tensorrt_then_ort_cuda_then_ort_cpu() -> None:
    assert choose_onnx_backend(None, ["cpu", "cuda"])[:2] == ("tensorrt", "cuda")
    backend, device, reason = choose_onnx_backend("tensorrt is not installed", ["cpu", "cuda"])
    assert (backend, device) == ("onnxruntime", "cuda") and "tensorrt is not installed" in reason
    assert choose_onnx_backend("no CUDA GPU", ["cpu"])[:2] == ("onnxruntime", "cpu")


def test_auto_on_this_machine_says_what_it_picked(tiny_checkpoint, tmp_path) -> None:
    path = export_onnx(tiny_checkpoint, tmp_path / "m.onnx")
    backend = open_backend(path)
    assert backend.name.startswith(("onnxruntime", "tensorrt"))
    assert backend.choice
    assert open_backend(tiny_checkpoint).choice == "a PyTorch checkpoint"


def info(**changes) -> EngineInfo:
    base = dict(onnx_sha256="ab" * 32, tensorrt="11.4.0", gpu="NVIDIA H100", compute_capability="9.0",
                precision="fp16", spec={"x": 1}, output="labels")
    return EngineInfo(**{**base, **changes})


def test_engine_cache_key_changes_with_onnx_tensorrt_and_gpu() -> None:
    keys = {info().key(), info(onnx_sha256="cd" * 32).key(), info(tensorrt="11.5.0").key(),
            info(gpu="NVIDIA H200").key(), info(compute_capability="8.0").key(), info(precision="fp32").key()}
    assert len(keys) == 6
    assert info().key() == info().key()


def test_sidecar_round_trip_and_mismatch_errors(tmp_path) -> None:
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"not really an engine")
    with pytest.raises(ModelError, match="no sidecar"):
        read_sidecar(engine)
    write_sidecar(engine, info())
    assert read_sidecar(engine) == info()
    check_compatible(info(), "11.4.0", "NVIDIA H100", "9.0", engine)
    with pytest.raises(ModelError, match=r"built with TensorRT 11\.4\.0, this is TensorRT 10\.13"):
        check_compatible(info(), "10.13", "NVIDIA H100", "9.0", engine)
    with pytest.raises(ModelError, match=r"built for NVIDIA H100 .* this GPU is NVIDIA A100"):
        check_compatible(info(), "11.4.0", "NVIDIA A100", "8.0", engine)
    (tmp_path / "m.engine.json").write_text("{broken")
    with pytest.raises(ModelError, match="not a valid engine sidecar"):
        read_sidecar(engine)


def test_file_hash_and_cache_dir(tmp_path, monkeypatch) -> None:
    (tmp_path / "a").write_bytes(b"abc")
    assert file_sha256(tmp_path / "a") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    monkeypatch.setenv("IHP_RT_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" / "engines"


def test_fp16_export_keeps_float32_input_and_matches_fp32(tiny_checkpoint, tmp_path, rng) -> None:
    fp32 = export_onnx(tiny_checkpoint, tmp_path / "m32.onnx")
    fp16 = export_onnx(tiny_checkpoint, tmp_path / "m16.onnx", precision="fp16")
    model = onnx.load(str(fp16))
    assert onnx_precision(model) == "fp16" and onnx_precision(onnx.load(str(fp32))) == "fp32"
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["ihp_rt.precision"] == "fp16" and json.loads(meta["ihp_rt.spec"])["input_size"] == 96
    assert Session.open(fp16).backend.name == "onnxruntime-cpu-fp16"
    # Compare scores, not arg-maxes: an untrained network's logits are near-ties everywhere.
    import onnxruntime as ort

    l32 = export_onnx(tiny_checkpoint, tmp_path / "l32.onnx", output="logits")
    l16 = export_onnx(tiny_checkpoint, tmp_path / "l16.onnx", output="logits", precision="fp16")
    x = rng.standard_normal((1, 23, 96, 96)).astype(np.float32)
    x[:, 3:] = 255.0
    x[:, 5, 40:50, 40:50] = 0.0
    a, b = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
            for p in (l32, l16))
    assert b.dtype == np.float32
    assert np.abs(a - b).max() <= 0.02 * np.abs(a).max()


def test_torch_half_precision_path(tiny_checkpoint, rng) -> None:
    full, half = Session.open(tiny_checkpoint, "torch", "cpu"), Session.open(tiny_checkpoint, "torch", "cpu", half=True)
    assert half.backend.name == "torch-cpu-fp16"
    image = rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)
    for s in (full, half):
        s.set_image(image)
        s.add_click(10, 10, 2)
    assert (full.predict().labels == half.predict().labels).mean() >= 0.97
    assert next(tiny_checkpoint.model.parameters()).dtype.is_floating_point  # shared model left as it was
    assert str(next(tiny_checkpoint.model.parameters()).dtype) == "torch.float32"


def test_shipped_onnx_matches_shipped_checkpoint_on_random_images_and_clicks(rng) -> None:
    from ihp_rt.zoo import default_model_path, default_onnx_path

    torch_s = Session.open(default_model_path(), "torch", "cpu")
    ort_s = Session.open(default_onnx_path(), "onnxruntime", "cpu")
    assert torch_s.spec == ort_s.spec and torch_s.spec.input_size == 473
    worst = 1.0
    for h, w in [(600, 400), (300, 517)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for s in (torch_s, ort_s):
            s.set_image(image)
        for x, y, label in random_clicks(rng, 4, torch_s.spec.num_classes, h, w):
            for s in (torch_s, ort_s):
                s.add_click(int(x), int(y), int(label))
            worst = min(worst, float((torch_s.predict().labels == ort_s.predict().labels).mean()))
    assert worst >= 0.999
