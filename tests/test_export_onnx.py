"""ONNX export and the ONNX Runtime backend: the .onnx file alone must reproduce PyTorch."""

import importlib.util
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from ihp_rt.backends import open_backend
from ihp_rt.cli import main
from ihp_rt.errors import BackendError, ModelError
from ihp_rt.export import export_onnx
from ihp_rt.model import Checkpoint, build_model, save_checkpoint
from ihp_rt.session import Session
from ihp_rt.spec import ONNX_SPEC_KEY, ModelSpec

from .conftest import random_clicks


@pytest.fixture(scope="module")
def onnx_path(tiny_checkpoint, tmp_path_factory):
    return export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("onnx") / "tiny.onnx")

def test_exported_file_is_checked_and_self_describing(onnx_path, tiny_checkpoint) -> None:
    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model, full_check=True)
    meta = {p.key: p.value for p in model.metadata_props}
    assert ModelSpec.from_dict(json.loads(meta[ONNX_SPEC_KEY])) == tiny_checkpoint.spec
    assert meta["ihp_rt.output"] == "labels"
    (inp,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert dims == ["batch", 23, "height", "width"]
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert {n.op_type for n in model.graph.node} >= {"ArgMax", "Conv", "Resize"}

def test_dynamic_batch_and_size(onnx_path, tiny_checkpoint, rng) -> None:
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = rng.standard_normal((2, 23, 75, 131)).astype(np.float32)
    labels = sess.run(["labels"], {"input": x})[0]
    assert labels.shape == (2, 75, 131) and labels.dtype == np.uint8
    import torch

    with torch.inference_mode():
        ref = tiny_checkpoint.model(torch.from_numpy(x)).argmax(1).numpy()
    assert (labels == ref).mean() >= 0.999

def _session_pair(ckpt_or_path, onnx_file):
    return Session.open(ckpt_or_path, backend="torch", device="cpu"), Session.open(onnx_file, backend="onnxruntime")

def test_onnxruntime_session_matches_torch_on_random_images_and_clicks(onnx_path, tiny_checkpoint, rng) -> None:
    torch_s, ort_s = _session_pair(tiny_checkpoint, onnx_path)
    assert ort_s.backend.name == "onnxruntime-cpu" and ort_s.spec == torch_s.spec
    worst = 1.0
    for h, w in [(120, 80), (96, 96), (50, 300)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for s in (torch_s, ort_s):
            s.set_image(image)
        for x, y, label in random_clicks(rng, 6, 20, h, w):
            masks = []
            for s in (torch_s, ort_s):
                s.add_click(int(x), int(y), int(label))
                masks.append(s.predict().labels)
            worst = min(worst, float((masks[0] == masks[1]).mean()))
        ort_s.undo()
        torch_s.undo()
        worst = min(worst, float((torch_s.predict().labels == ort_s.predict().labels).mean()))
    assert worst >= 0.999

def test_logits_head_and_full_size_default_architecture(tmp_path, rng) -> None:
    spec = ModelSpec()  # the default architecture at the paper's 473 px
    ckpt = Checkpoint(build_model(spec, seed=5).eval(), spec)
    path = export_onnx(ckpt, tmp_path / "logits.onnx", output="logits")
    torch_s, ort_s = _session_pair(ckpt, path)
    image = rng.integers(0, 256, (400, 300, 3), dtype=np.uint8)
    for s in (torch_s, ort_s):
        s.set_image(image)
        for x, y, label in random_clicks(np.random.default_rng(3), 8, 20, 400, 300):
            s.add_click(int(x), int(y), int(label))
    assert (torch_s.predict().labels == ort_s.predict().labels).mean() >= 0.999

def test_wrong_files_and_backends_are_clear_errors(onnx_path, tiny_checkpoint, tmp_path) -> None:
    with pytest.raises(BackendError, match="needs a PyTorch checkpoint"):
        open_backend(onnx_path, "torch")
    pt = save_checkpoint(tmp_path / "m.pt", tiny_checkpoint.model, tiny_checkpoint.spec)
    with pytest.raises(BackendError, match=r"needs an exported \.onnx model"):
        open_backend(pt, "onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(BackendError, match="no CUDAExecutionProvider"):
            open_backend(onnx_path, "onnxruntime", device="cuda")
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="not a loadable ONNX model"):
        open_backend(tmp_path / "bad.onnx")
    plain = onnx.load(str(onnx_path))
    del plain.metadata_props[:]
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    with pytest.raises(ModelError, match="no ihp-rt metadata"):
        open_backend(tmp_path / "plain.onnx")
    with pytest.raises(ModelError, match="unsupported model file"):
        open_backend(tmp_path / "model.bin")
    with pytest.raises(BackendError, match="only on backend 'tensorrt'"):
        open_backend(tmp_path / "model.engine", "onnxruntime")
    if importlib.util.find_spec("tensorrt") is None:
        with pytest.raises(BackendError, match="needs the tensorrt package"):
            open_backend(tmp_path / "model.engine")
        with pytest.raises(BackendError, match="needs the tensorrt package"):
            open_backend(onnx_path, "tensorrt")

def test_cli_export_reports_parity_and_predict_runs_on_onnx(tmp_path, tiny_checkpoint, lip_clicks, capsys) -> None:
    from .conftest import EXAMPLES

    pt = save_checkpoint(tmp_path / "m.pt", tiny_checkpoint.model, tiny_checkpoint.spec)
    onnx_file = tmp_path / "m.onnx"
    assert main(["export", "--model", str(pt), "-o", str(onnx_file), "--check", "2"]) == 0
    out = capsys.readouterr().out
    assert "100.000 % of pixels equal" in out
    args = ["predict", str(EXAMPLES / "astronaut.jpg"), "--clicks", str(lip_clicks)]
    assert main([*args, "-o", str(tmp_path / "a.png"), "--model", str(onnx_file)]) == 0
    assert "on onnxruntime-cpu" in capsys.readouterr().out
    assert main([*args, "-o", str(tmp_path / "b.png"), "--model", str(pt), "--backend", "torch"]) == 0
    from PIL import Image

    with Image.open(tmp_path / "a.png") as a, Image.open(tmp_path / "b.png") as b:
        assert (np.asarray(a) == np.asarray(b)).mean() >= 0.999

def test_cli_int8_export_is_quantised_self_describing_and_runs(tmp_path, tiny_checkpoint, capsys) -> None:

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    from PIL import Image

    from ihp_rt.labels import get_label_set

    rng = np.random.default_rng(0)
    for i in range(4):
        labels = np.zeros((80, 60), np.uint8)
        labels[10:40, 10:50], labels[40:75, 5:55] = 2, 5
        Image.fromarray(rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)).save(data / "images" / f"c{i}.png")
        Image.fromarray(labels).save(data / "labels" / f"c{i}.png")
    names = get_label_set("lip").names
    (data / "manifest.json").write_text(json.dumps({"classes": {str(i): n for i, n in enumerate(names)}}))
    pt = save_checkpoint(tmp_path / "m.pt", tiny_checkpoint.model, tiny_checkpoint.spec)
    out = tmp_path / "m_int8.onnx"
    # An untrained model's activations barely vary: percentiles cannot be histogrammed, and say so.
    assert main(["export", "--model", str(pt), "-o", str(out), "--precision", "int8", "--calibration", str(data),
                 "--check", "0"]) == 2
    assert "use --calibration-method minmax" in capsys.readouterr().err and not out.exists()
    assert not (tmp_path / "m_int8.fp32.onnx").exists()
    assert main(["export", "--model", str(pt), "-o", str(out), "--precision", "int8", "--calibration", str(data),
                 "--check", "0", "--calibration-method", "minmax"]) == 0
    model = onnx.load(str(out))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in model.graph.node}
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["ihp_rt.precision"] == "int8" and ONNX_SPEC_KEY in meta
    assert not (tmp_path / "m_int8.fp32.onnx").exists()
    assert Session.open(out).backend.name == "onnxruntime-cpu"
    capsys.readouterr()


@pytest.mark.parametrize(("backbone", "entry", "scale"), [
    ("mobilenetv3_large", "concat", 1.0), ("resnet18", "concat", 1.0),
    ("efficientnet_lite0", "concat", 1 / 255), ("efficientnet_lite0", "branch", 1.0),
    ("efficientnet_lite0", "branch", 1 / 16),
])
def test_cached_stem_equals_the_whole_graph(backbone, entry, scale, tmp_path, rng) -> None:
    """The CPU backend runs the first convolution once per image and patches it per click; its
    logits equal the unsplit graph's on the same clicks, for every click count. The unsplit
    graph equals PyTorch's unfused network (map scale and map branch folded in by the export)."""
    import torch

    from ihp_rt.encoding import encode_reference
    from ihp_rt.labels import get_label_set
    from ihp_rt.model import default_spec

    spec = default_spec(get_label_set("ppp"), backbone, input_size=96, map_entry=entry, map_scale=scale)
    model = build_model(spec, seed=1).eval()
    stem = model.encoder.stem if backbone != "resnet18" else model.encoder.stem[0]
    with torch.no_grad():  # the maps must matter: give them weights of the size the RGB weights have
        weight = stem.maps.weight if entry == "branch" else stem.conv.weight[:, 3:]
        weight.normal_(0, float(stem.conv.weight[:, :3].std()) / scale / 255)
        if entry == "branch":
            stem.maps_gain.fill_(0.7)
    path = export_onnx(Checkpoint(model, spec, {}), tmp_path / "m.onnx", output="logits")
    backend = open_backend(str(path), "onnxruntime")
    (stem_input,) = [i.name for i in backend.session.get_inputs() if i.name != "input"]  # the graph was cut
    whole = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    image = rng.standard_normal((3, 96, 96)).astype(np.float32)
    backend.set_image(image)
    clicks = random_clicks(rng, 12, spec.num_classes, 96, 96)
    for k in (0, 1, 5, 12):
        maps = encode_reference(clicks[:k], spec.num_classes, 96, 96).astype(np.float32)
        logits = whole.run(["logits"], {"input": np.concatenate([image, maps])[None]})[0]
        with torch.inference_mode():
            reference = model(torch.from_numpy(np.concatenate([image, maps])[None])).numpy()
        assert np.abs(reference - logits).max() <= 1e-3 * np.abs(reference).max()
        ours = backend.session.run(None, {stem_input: _patched(backend, clicks[:k]),
                                          "input": backend._input})[0]
        assert np.abs(ours - logits).max() <= 1e-3 * np.abs(logits).max()
        assert (backend.predict(clicks[:k]).labels == logits[0].argmax(0)).mean() >= 0.999


def _patched(backend, clicks) -> np.ndarray:
    backend.predict(clicks)  # fills the backend's stem buffer for these clicks
    return backend._stem.copy()


def test_first_layer_is_computed_once_per_image_even_when_sessions_take_turns(onnx_path, rng) -> None:
    from ihp_rt.session import SharedBackend

    backend = open_backend(str(onnx_path), "onnxruntime")
    runs = []

    class Counting:
        def __init__(self, session) -> None:
            self.session = session

        def run(self, *args):
            runs.append(1)
            return self.session.run(*args)

    backend._stem_session = Counting(backend._stem_session)
    shared = SharedBackend(backend)
    sessions = [Session(shared) for _ in range(3)]
    photos = [rng.integers(0, 256, (90, 70, 3), dtype=np.uint8) for _ in sessions]
    for s, photo in zip(sessions, photos, strict=True):
        s.set_image(photo)
    first = []
    for s in sessions:
        s.add_click(5, 5, 1)
        first.append(s.predict().labels)
    for _ in range(3):  # turns pass round and round: no new first-layer runs
        for s, labels in zip(sessions, first, strict=True):
            assert np.array_equal(s.predict().labels, labels)
    assert len(runs) == 3
    sessions[0].set_image(photos[0].copy())  # a new image (another array) is computed afresh
    assert len(runs) == 4
