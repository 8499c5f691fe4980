import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ihp_rt.cli import main
from ihp_rt.model import save_checkpoint

from .conftest import EXAMPLES

ASTRONAUT = EXAMPLES / "astronaut.jpg"
CLICKS = EXAMPLES / "astronaut_clicks.json"


def test_predict_the_bundled_example_with_the_shipped_model(tmp_path, capsys) -> None:
    from ihp_rt.clicks import load_clicks
    from ihp_rt.labels import get_label_set
    from ihp_rt.zoo import default_model_path, default_onnx_path

    assert default_model_path() is not None and default_onnx_path() is not None, "the default model must ship"
    out, ov = tmp_path / "mask.png", tmp_path / "ov.png"
    assert main(["predict", str(ASTRONAUT), "--clicks", str(CLICKS), "-o", str(out), "--overlay", str(ov)]) == 0
    captured = capsys.readouterr()
    assert "RANDOMLY" not in captured.err
    assert "backend: onnxruntime-cpu" in captured.out and "ccp_coarse label set" in captured.out
    with Image.open(out) as mask_file, Image.open(ov) as overlay:
        mask = np.asarray(mask_file)
        assert mask_file.mode == "L" and mask_file.size == (512, 512)
        assert overlay.mode == "RGB" and overlay.size == (512, 512)
    assert mask.max() < 15
    clicks = load_clicks(CLICKS, get_label_set("ccp_coarse"), (512, 512))
    followed = sum(mask[c.y, c.x] == c.label for c in clicks)
    assert followed >= len(clicks) - 2  # a trained model labels most clicked pixels as clicked
    # The PyTorch reference on the shipped checkpoint gives the same mask.
    assert main(["predict", str(ASTRONAUT), "--clicks", str(CLICKS), "-o", str(tmp_path / "t.png"),
                 "--backend", "torch"]) == 0
    with Image.open(tmp_path / "t.png") as torch_mask:
        assert (np.asarray(torch_mask) == mask).mean() >= 0.999


def test_untrained_stand_in_is_announced_loudly(tmp_path, capsys, monkeypatch) -> None:
    import ihp_rt.zoo

    monkeypatch.setattr(ihp_rt.zoo, "default_model_path", lambda: None)
    monkeypatch.setattr(ihp_rt.zoo, "default_onnx_path", lambda: None)
    out = tmp_path / "mask.png"
    assert main(["predict", str(ASTRONAUT), "--clicks", str(CLICKS), "-o", str(out), "--label-set", "ccp_coarse"]) == 0
    assert "RANDOMLY INITIALISED" in capsys.readouterr().err
    assert out.is_file()


def test_predict_with_a_checkpoint(tmp_path, tiny_checkpoint, lip_clicks, capsys) -> None:
    model = save_checkpoint(tmp_path / "m.pt", tiny_checkpoint.model, tiny_checkpoint.spec)
    out = tmp_path / "mask.png"
    assert main(["predict", str(ASTRONAUT), "--clicks", str(lip_clicks), "-o", str(out), "--model", str(model)]) == 0
    assert "RANDOMLY" not in capsys.readouterr().err
    assert out.is_file()


def _bad_run(tmp_path, capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ihp-rt: error: ")
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_bad_inputs_give_one_line_errors(tmp_path, capsys) -> None:
    out = str(tmp_path / "o.png")
    (tmp_path / "fake.jpg").write_text("not an image")
    msg = _bad_run(tmp_path, capsys, ["predict", str(tmp_path / "fake.jpg"), "--clicks", str(CLICKS), "-o", out])
    assert "not a readable image" in msg
    msg = _bad_run(tmp_path, capsys, ["predict", str(ASTRONAUT), "--clicks", str(tmp_path / "no.json"), "-o", out])
    assert "click file not found" in msg
    (tmp_path / "far.json").write_text(json.dumps({"clicks": [{"x": 600, "y": 3, "label": "hair"}]}))
    msg = _bad_run(tmp_path, capsys, ["predict", str(ASTRONAUT), "--clicks", str(tmp_path / "far.json"), "-o", out])
    assert "outside the 512x512 image" in msg
    msg = _bad_run(tmp_path, capsys, ["predict", str(ASTRONAUT), "--clicks", str(CLICKS), "-o", out,
                                      "--model", str(tmp_path / "fake.jpg")])
    assert "not a readable ihp-rt checkpoint" in msg
    (tmp_path / "lip.json").write_text(json.dumps({"clicks": [{"x": 3, "y": 3, "label": "left-arm"}]}))
    msg = _bad_run(tmp_path, capsys, ["predict", str(ASTRONAUT), "--clicks", str(tmp_path / "lip.json"), "-o", out])
    assert "unknown label 'left-arm'" in msg and "ccp_coarse" in msg  # clicks of another label set
    assert not Path(out).exists()


def test_labels_command(capsys) -> None:
    assert main(["labels", "lip"]) == 0
    text = capsys.readouterr().out
    assert "lip: LIP" in text and "14  left-arm  <-> right-arm" in text


def test_console_script_is_installed(tmp_path) -> None:
    exe = Path(sys.executable).with_name("ihp-rt")
    if not exe.exists():
        pytest.skip("ihp-rt console script not installed in this environment")
    result = subprocess.run([str(exe), "labels", "ppp"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "lower-legs" in result.stdout
    result = subprocess.run([str(exe), "predict", "missing.jpg", "--clicks", str(CLICKS), "-o", "x.png"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "ihp-rt: error: image not found: missing.jpg"


def test_synth_command_and_lip_to_ccp_coarse_mapping(tmp_path, capsys) -> None:
    from ihp_rt.data import dataset_for_labels
    from ihp_rt.labels import get_label_set

    assert main(["synth", "--out", str(tmp_path / "s"), "--count", "2", "--height", "128", "--width", "96"]) == 0
    assert "SYNTHETIC" in capsys.readouterr().out
    lip_view = dataset_for_labels(tmp_path / "s", get_label_set("lip"))
    coarse = get_label_set("ccp_coarse")
    ccp_view = dataset_for_labels(tmp_path / "s", coarse)
    lip_labels, ccp_labels = lip_view[0].labels, ccp_view[0].labels
    assert lip_labels.shape == ccp_labels.shape == (128, 96)
    lip = get_label_set("lip")
    limbs = np.isin(lip_labels, [lip.label_id(n) for n in ("face", "left-arm", "right-arm", "left-leg", "right-leg")])
    assert limbs.any() and (ccp_labels[limbs] == coarse.label_id("skin")).all()
    shoes = np.isin(lip_labels, [lip.label_id("left-shoe"), lip.label_id("right-shoe")])
    assert (ccp_labels[shoes] == coarse.label_id("shoes")).all()
    assert main(["synth", "--out", str(tmp_path / "l"), "--count", "2", "--val-count", "1", "--layout", "lip",
                 "--height", "64", "--width", "48"]) == 0
    assert len(dataset_for_labels(tmp_path / "l", lip, split="val")) == 1
