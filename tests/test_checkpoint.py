import pytest
import torch

from ihp_rt.errors import ModelError
from ihp_rt.labels import get_label_set
from ihp_rt.model import build_model, load_checkpoint, save_checkpoint
from ihp_rt.spec import ModelSpec


def test_round_trip_is_self_describing(tmp_path) -> None:
    spec = ModelSpec(labels=get_label_set("helen"), backbone="resnet18", input_size=64, model_version="t1")
    model = build_model(spec, seed=1).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, spec, {"steps": 12, "data": "synthetic"})
    ckpt = load_checkpoint(path)
    assert ckpt.spec == spec
    assert ckpt.training == {"steps": 12, "data": "synthetic"}
    x = torch.randn(1, spec.in_channels, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), ckpt.model(x))
    assert not ckpt.model.training
    assert not list(tmp_path.glob("*.tmp"))


def test_unusable_files_raise_model_error(tmp_path) -> None:
    with pytest.raises(ModelError, match="not found"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="not a readable"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not an ihp-rt checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_truncated_and_mismatched_checkpoints(tmp_path) -> None:
    spec = ModelSpec(input_size=64)
    path = save_checkpoint(tmp_path / "m.pt", build_model(spec), spec)
    (tmp_path / "cut.pt").write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelError):
        load_checkpoint(tmp_path / "cut.pt")
    payload = torch.load(path, weights_only=True)
    payload["spec"]["backbone"] = "resnet18"
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(ModelError, match="do not match the resnet18"):
        load_checkpoint(tmp_path / "mismatch.pt")
    payload["spec"]["spec_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(ModelError, match="spec version 99"):
        load_checkpoint(tmp_path / "future.pt")


def test_half_weights_halve_the_file_and_load_as_float32(tmp_path) -> None:
    spec = ModelSpec(input_size=64)
    model = build_model(spec, seed=2).eval()
    full = save_checkpoint(tmp_path / "full.pt", model, spec)
    half = save_checkpoint(tmp_path / "half.pt", model, spec, half_weights=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_checkpoint(half).model
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = torch.randn(1, spec.in_channels, 64, 64)
    with torch.inference_mode():
        a, b = model(x), loaded(x)
    assert torch.allclose(a, b, rtol=1e-2, atol=1e-2 * a.abs().max().item())


def test_ship_writes_agreeing_checkpoint_and_onnx(tmp_path) -> None:
    import numpy as np

    from ihp_rt.session import Session
    from ihp_rt.zoo import ship

    spec = ModelSpec(input_size=64)
    trained = save_checkpoint(tmp_path / "run.pt", build_model(spec, seed=4), spec, {"step": 3})
    pt, onnx_file = ship(trained, tmp_path)
    assert load_checkpoint(pt).training["weights_stored_as"] == "float16"
    image = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    masks = []
    for model in (pt, onnx_file):
        session = Session.open(model)
        session.set_image(image)
        session.add_click(10, 10, 2)
        masks.append(session.predict().labels)
    assert (masks[0] == masks[1]).mean() >= 0.999


def test_spec_version_1_files_keep_their_behaviour_and_unknown_versions_are_refused(tmp_path) -> None:
    """Files written before map_entry / map_scale existed load as the concatenated raw maps they
    were trained with; a newer version or a malformed v1 is a clear error, never other masks."""
    spec = ModelSpec(labels=get_label_set("ppp"), input_size=64)
    model = build_model(spec, seed=2).eval()
    path = save_checkpoint(tmp_path / "v2.pt", model, spec)
    payload = torch.load(path, weights_only=True)
    old = {k: v for k, v in payload["spec"].items() if k not in ("map_entry", "map_scale", "correction_head")}
    torch.save({**payload, "spec": {**old, "spec_version": 1}}, tmp_path / "v1.pt")
    loaded = load_checkpoint(tmp_path / "v1.pt")
    assert (loaded.spec.map_entry, loaded.spec.map_scale) == ("concat", 1.0) and loaded.spec == spec
    x = torch.randn(1, spec.in_channels, 64, 64)
    x[:, 3:] *= 255
    with torch.inference_mode():
        assert torch.equal(loaded.model(x), model(x))
    torch.save({**payload, "spec": {**payload["spec"], "spec_version": 4}}, tmp_path / "v4.pt")
    with pytest.raises(ModelError, match="spec version 4 is not supported"):
        load_checkpoint(tmp_path / "v4.pt")
    v1bad = {k: v for k, v in payload["spec"].items() if k != "correction_head"}
    torch.save({**payload, "spec": {**v1bad, "spec_version": 1}}, tmp_path / "v1bad.pt")
    with pytest.raises(ModelError, match="version 1 has no map_entry"):
        load_checkpoint(tmp_path / "v1bad.pt")


@pytest.mark.parametrize(("entry", "scale"), [("concat", 1 / 255), ("branch", 1.0)])
def test_map_entry_round_trips(tmp_path, entry: str, scale: float) -> None:
    from ihp_rt.model import default_spec

    spec = default_spec(get_label_set("ppp"), "efficientnet_lite0", input_size=64, map_entry=entry, map_scale=scale)
    model = build_model(spec, seed=1).eval()
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "m.pt", model, spec))
    assert ckpt.spec == spec and ckpt.spec.first_kernel == 3 and ckpt.spec.mean[0] == pytest.approx(127 / 255)
    x = torch.randn(1, spec.in_channels, 64, 64)
    with torch.inference_mode():
        assert torch.equal(ckpt.model(x), model(x))
