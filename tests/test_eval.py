"""Evaluation figures on toy sets where Add. and Avg. are known, and the `ihp-rt eval` command."""

import json

import numpy as np
import pytest
from PIL import Image

from ihp_rt.cli import main
from ihp_rt.correction import Pass
from ihp_rt.data import Sample
from ihp_rt.evaluation.runner import evaluate
from ihp_rt.labels import get_label_set
from ihp_rt.model import save_checkpoint
from ihp_rt.session import Session

from .test_data_layouts import CIHP_NAMES, LIP_NAMES, write_named_folder
from .test_protocol import SPEC, NearestClickBackend, OracleBackend, toy_truth


class ListData:
    label_set = SPEC.labels
    ignore_index = 255

    def __init__(self, truths: list[np.ndarray]) -> None:
        self.samples = [Sample(f"s{i}", np.zeros((*t.shape, 3), np.uint8), t) for i, t in enumerate(truths)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        return self.samples[i]


class SwitchingBackend(OracleBackend):
    """Wrong (all background) until it has seen ``need`` clicks, then perfect."""

    def __init__(self, truths: list[np.ndarray], need: int) -> None:
        super().__init__(truths[0])
        self.truths, self.need, self.image = truths, need, -1

    def set_image(self, image: np.ndarray) -> None:
        self.image += 1

    def predict(self, clicks: np.ndarray) -> Pass:
        truth = self.truths[self.image]
        return Pass(truth if len(clicks) >= self.need else np.zeros_like(truth))


def two_images() -> list[np.ndarray]:
    a = toy_truth()  # 3 parts, 3 components
    b = np.zeros((64, 64), np.uint8)
    b[10:20, 10:20] = 1
    b[40:50, 40:50] = 1  # 1 part, 2 components
    b[0:3, :] = 255
    return [a, b]


def test_perfect_predictor_add_zero_avg_is_initial_clicks_per_part() -> None:
    truths = two_images()
    backend = OracleBackend(truths[0])
    backend.predict = lambda clicks: Pass(truths[backend.calls - 1])  # one predict per image for a perfect run

    def counting_set_image(image, b=backend):
        b.calls += 1

    backend.set_image = counting_set_image
    result = evaluate(Session(backend, click_radius=0), ListData(truths), max_corrections=4, standards=85,
                      progress=False)
    assert result["add"] == 0 and result["failures"] == []
    assert result["avg"] == pytest.approx((3 + 2) / (3 + 1))
    assert result["miou"] == [1.0] * 5 and result["boundary_f"] == [1.0, 1.0]


def test_add_and_avg_by_hand_when_a_few_corrections_are_needed() -> None:
    truths = two_images()
    # image a: 3 initial clicks, perfect from 5 clicks -> 2 corrections; image b: 2 initial -> 3 corrections
    result = evaluate(Session(SwitchingBackend(truths, need=5), click_radius=0), ListData(truths), max_corrections=6,
                      standards=(85, 50), progress=False)
    assert result["add"] == pytest.approx((2 + 3) / 2)
    assert result["avg"] == pytest.approx((5 + 5) / (3 + 1))
    assert result["by_standard"]["50"] == result["by_standard"]["85"]  # all-or-nothing predictor
    # only the correction that makes the prediction perfect has its pixel right: 1 of 2 on a, 1 of 3 on b
    assert result["corrections"] == 5 and result["corrections_honoured"] == pytest.approx(2 / 5)
    painted = evaluate(Session(SwitchingBackend(truths, need=5)), ListData(truths), max_corrections=6, progress=False)
    assert painted["corrections_honoured"] == 1.0  # the click disks put every correction's label under it
    # never reaching the standard counts at the cap and is reported
    capped = evaluate(Session(SwitchingBackend(truths, need=99), click_radius=0), ListData(truths), max_corrections=3,
                      standards=85, progress=False)
    assert capped["add"] == 3 and capped["failures"] == ["s0", "s1"]
    assert capped["avg"] == pytest.approx((3 + 3 + 2 + 3) / 4)


def test_rgb_only_initialisation_starts_without_clicks() -> None:
    truths = two_images()
    result = evaluate(Session(NearestClickBackend(truths[0]), click_radius=0), ListData(truths[:1]), max_corrections=5,
                      initial="none", progress=False)
    assert result["initial"] == "none" and len(result["miou"]) == 6
    assert result["miou"][0] < result["miou"][-1]


@pytest.fixture
def lip_folder(tmp_path):
    """A tiny generic data folder (images/ + labels/ + manifest.json) in the LIP label set."""
    lip = get_label_set("lip")
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        labels = np.zeros((80, 60), np.uint8)
        labels[10:30, 15:45] = 2
        labels[30:70, 10:50] = 5
        Image.fromarray(rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)).save(tmp_path / "data/images" / f"p{i}.jpg")
        Image.fromarray(labels).save(tmp_path / "data/labels" / f"p{i}.png")
    manifest = {"classes": {str(i): n for i, n in enumerate(lip.names)}, "ignore_index": 255}
    (tmp_path / "data" / "manifest.json").write_text(json.dumps(manifest))
    return tmp_path / "data"


def test_eval_command_writes_json_markdown_plot_and_examples(lip_folder, tiny_checkpoint, tmp_path, capsys) -> None:
    model = save_checkpoint(tmp_path / "m.pt", tiny_checkpoint.model, tiny_checkpoint.spec)
    out = tmp_path / "eval"
    argv = ["eval", "--data", str(lip_folder), "--model", str(model), "--max-clicks", "3", "--out", str(out),
            "--baselines", "--save-examples", "1", "--standard", "80", "60"]
    assert main(argv) == 0
    report = json.loads((out / "eval.json").read_text())
    assert report["images"] == 3 and report["standards"] == [80, 60] and "accumulated" in report["convention"]
    central, baseline = report["runs"]
    assert central["initial"] == "central" and baseline["initial"] == "none"
    for run in report["runs"]:
        assert len(run["miou"]) == 4 and all(0 <= v <= 1 for v in run["miou"])
        assert 0 <= run["add"] <= 3 and run["avg"] > 0
        assert set(run["per_class_iou"]) == set(get_label_set("lip").names)
    assert "| run | mIoU@0 | mIoU@1 | mIoU@3 | Add.@80 | Avg.@80 | not reached @80 | Add.@60 |" in (
        out / "eval.md").read_text()
    assert set(central["by_standard"]) == {"80", "60"}
    assert central["by_standard"]["60"]["add"] <= central["by_standard"]["80"]["add"]
    with Image.open(out / "miou_vs_clicks.png") as im:
        assert im.size[0] > 400
    assert len(list((out / "examples").glob("*.png"))) == 2
    names = tmp_path / "names.txt"
    names.write_text("p1\n")
    assert main(["eval", "--data", str(lip_folder), "--model", str(model), "--max-clicks", "3", "--names", str(names),
                 "--out", str(tmp_path / "e2"), "--click-radius", "0", "4", "12"]) == 0
    report = json.loads((tmp_path / "e2" / "eval.json").read_text())
    assert report["images"] == 1
    alone, default, wide = report["runs"]
    assert [r["click_radius"] for r in report["runs"]] == [0, 4, 12]
    assert alone["label"].endswith("network alone") and default["label"] == "m [torch-cpu]"
    assert wide["label"].endswith("click radius 12")
    assert alone["miou"] != wide["miou"]  # disks of 12 px over a 96 px frame change the masks
    capsys.readouterr()


def test_eval_refuses_negative_click_radius_before_opening_a_model(lip_folder, tmp_path, capsys) -> None:
    out = tmp_path / "never"
    # The model path does not exist: the radius must be refused first, and nothing written.
    assert main(["eval", "--data", str(lip_folder), "--model", str(tmp_path / "missing.onnx"), "--out", str(out),
                 "--click-radius", "4", "-1"]) == 2
    assert "--click-radius must be 0 or more model pixels, got -1" in capsys.readouterr().err
    assert not out.exists()


def test_boundary_f_and_near_edge_band_by_hand() -> None:
    from ihp_rt.evaluation.metrics import boundary_counts, boundary_f, near_edge_band

    truth = np.zeros((40, 40), np.uint8)
    truth[:, 20:] = 1
    near = np.zeros_like(truth)
    near[:, 23:] = 1  # boundary 3 px off: within the 5 px tolerance
    far = np.zeros_like(truth)
    far[:, 30:] = 1  # 10 px off
    assert boundary_f(boundary_counts(near, truth)) == 1.0
    assert boundary_f(boundary_counts(far, truth)) == 0.0
    assert boundary_f(boundary_counts(np.zeros_like(truth), truth)) == 0.0
    band = near_edge_band(truth)
    assert band[:, 15:25].all() and not band[:, :14].any() and not band[:, 26:].any()


def test_eval_reads_cihp_labelled_data_with_a_ccp_coarse_model(tmp_path, capsys) -> None:
    """A folder whose manifest names CIHP's classes (torso-skin included, spelt as CIHP does)
    evaluates a CCP coarse model through cihp_to_ccp_coarse, found by name; --label-map names the
    mapping, and one that does not read the data's classes is refused in one line."""
    from ihp_rt.model import build_model
    from ihp_rt.spec import ModelSpec

    coarse = get_label_set("ccp_coarse")
    spec = ModelSpec(labels=coarse, backbone="mobilenetv3_large", input_size=96)
    model = save_checkpoint(tmp_path / "coarse.pt", build_model(spec, seed=0).eval(), spec)
    data = write_named_folder(tmp_path / "cihp", CIHP_NAMES, count=2)
    common = ["eval", "--data", str(data), "--model", str(model), "--max-clicks", "1"]
    assert main([*common, "--out", str(tmp_path / "found")]) == 0
    found = json.loads((tmp_path / "found" / "eval.json").read_text())
    assert found["images"] == 2 and set(found["runs"][0]["per_class_iou"]) <= set(coarse.names)
    assert main([*common, "--label-map", "cihp_to_ccp_coarse", "--out", str(tmp_path / "named")]) == 0
    named = json.loads((tmp_path / "named" / "eval.json").read_text())
    assert named["runs"][0]["miou"] == found["runs"][0]["miou"]  # the same mapping, named or found
    capsys.readouterr()
    assert main([*common, "--label-map", "lip_to_ccp_coarse", "--out", str(tmp_path / "wrong")]) == 2
    assert "'lip' has no Torso-skin" in capsys.readouterr().err
    lip = write_named_folder(tmp_path / "lip", LIP_NAMES, count=1)
    assert main(["eval", "--data", str(lip), "--model", str(model), "--max-clicks", "1",
                 "--out", str(tmp_path / "lip_eval")]) == 0
    capsys.readouterr()
