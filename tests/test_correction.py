"""Corrections by the correction head: window geometry and relabelling against plain references,
the click-list rule, the pass cache, the head's maps, its ONNX graph, and replay across engines."""

from __future__ import annotations

import dataclasses
import gc

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ihp_rt.correction import (
    STRIDE,
    WINDOW,
    Boost,
    Pass,
    PassCache,
    bilinear_taps,
    cell_window,
    correct,
    network_clicks,
    upsampled_labels,
)
from ihp_rt.model.correction_head import CorrectionHead
from tests.conftest import random_clicks


def upsample_reference(coarse: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize (half-pixel centres, edge clamped) written out per pixel in float64."""
    channels, rows, cols = coarse.shape
    out = np.zeros((channels, size, size))
    for i in range(size):
        y = max((i + 0.5) * rows / size - 0.5, 0.0)
        y0 = int(y)
        y1, fy = min(y0 + 1, rows - 1), y - y0
        for j in range(size):
            x = max((j + 0.5) * cols / size - 0.5, 0.0)
            x0 = int(x)
            x1, fx = min(x0 + 1, cols - 1), x - x0
            out[:, i, j] = ((1 - fy) * ((1 - fx) * coarse[:, y0, x0] + fx * coarse[:, y0, x1])
                            + fy * ((1 - fx) * coarse[:, y1, x0] + fx * coarse[:, y1, x1]))
    return out


@pytest.mark.parametrize(("cells", "size"), [(30, 117), (24, 96), (25, 97)])
def test_upsampled_labels_cover_exactly_the_pixels_a_window_reaches(rng, cells: int, size: int) -> None:
    coarse = rng.normal(0, 3, (6, cells, cells)).astype(np.float32)
    torch_labels = F.interpolate(torch.from_numpy(coarse)[None], size=(size, size), mode="bilinear",
                                 align_corners=False)[0].argmax(0).numpy().astype(np.uint8)
    assert np.array_equal(torch_labels, upsample_reference(coarse, size).argmax(0))
    for rows, cols in [((0, 7), (3, 11)), ((cells - 5, cells), (cells - 9, cells)), ((10, 12), (0, cells))]:
        changed = coarse.copy()
        changed[:, rows[0]:rows[1], cols[0]:cols[1]] = rng.normal(0, 3, (6, rows[1] - rows[0], cols[1] - cols[0]))
        ys, xs, block = upsampled_labels(changed, (size, size), rows, cols)
        expected = upsample_reference(changed.astype(np.float64), size).argmax(0)
        assert np.array_equal(block, expected[ys, xs])
        # the pixels outside the block read no changed cell: their labels are the old ones
        r0, r1, _ = bilinear_taps(cells, size)
        c0, c1, _ = bilinear_taps(cells, size)
        touched_rows = (r1 >= rows[0]) & (r0 < rows[1])
        touched_cols = (c1 >= cols[0]) & (c0 < cols[1])
        assert (np.flatnonzero(touched_rows).tolist() == list(range(ys.start, ys.stop))
                and np.flatnonzero(touched_cols).tolist() == list(range(xs.start, xs.stop)))
        outside = np.ones((size, size), bool)
        outside[ys, xs] = False
        assert np.array_equal(expected[outside], torch_labels[outside])


def test_network_clicks_runs_the_network_up_to_the_last_new_part_and_the_first_correction() -> None:
    def rows(*labels: int) -> np.ndarray:
        return np.array([[i, i, label] for i, label in enumerate(labels)], np.int32).reshape(-1, 3)

    def parts(clicks: np.ndarray) -> int:
        return network_clicks(clicks, first_correction=False)

    assert network_clicks(rows()) == parts(rows()) == 0
    assert network_clicks(rows(0, 0)) == parts(rows(0, 0)) == 0  # background is no part: its clicks are corrections
    assert network_clicks(rows(2, 5, 7)) == parts(rows(2, 5, 7)) == 3  # the evaluation's initial clicks: one pass
    assert parts(rows(2, 5, 2, 0, 5)) == 2 and network_clicks(rows(2, 5, 2, 0, 5)) == 3  # then corrections
    assert parts(rows(2, 5, 2, 0, 9, 2)) == 5 and network_clicks(rows(2, 5, 2, 0, 9, 2)) == 6  # a new part
    assert parts(rows(2, 5, 5, 5, 0, 5)) == 4  # the components of the newest part, named in a row
    assert network_clicks(rows(2, 5, 5, 5, 0, 5)) == 5
    assert parts(rows(5, 2, 2)) == network_clicks(rows(5, 2, 2)) == 3


@pytest.mark.parametrize(("x", "y", "rows", "cols"), [(0, 0, 119, 119), (472, 472, 119, 119), (200, 10, 119, 80),
                                                     (50, 50, 20, 30)])
def test_cell_window_holds_the_click_and_stays_inside(x: int, y: int, rows: int, cols: int) -> None:
    row0, col0, height, width = cell_window(x, y, rows, cols)
    assert (height, width) == (min(WINDOW, rows), min(WINDOW, cols))
    assert 0 <= row0 <= rows - height and 0 <= col0 <= cols - width
    assert row0 <= min(y // STRIDE, rows - 1) < row0 + height and col0 <= min(x // STRIDE, cols - 1) < col0 + width


def make_pass(rng: np.random.Generator, features: np.ndarray | None = None) -> Pass:
    features = rng.normal(size=(4, 8, 8)).astype(np.float32) if features is None else features
    return Pass(np.zeros((32, 32), np.uint8), rng.normal(size=(3, 8, 8)).astype(np.float32), features)


def test_pass_cache_counts_shared_features_once_and_drops_the_oldest(rng) -> None:
    image, other = np.zeros(3, np.float32), np.zeros(3, np.float32)
    first = make_pass(rng)
    second = make_pass(rng, first.features)  # a correction after the first: same features
    own = first.labels.nbytes + first.coarse.nbytes
    cache = PassCache(max_bytes=10**6)
    cache.put(image, np.zeros((1, 3), np.int32), first)
    cache.put(image, np.zeros((2, 3), np.int32), second)
    assert cache.bytes == 2 * own + first.features.nbytes
    assert cache.get(image, np.zeros((2, 3), np.int32)) is second
    assert cache.get(other, np.zeros((2, 3), np.int32)) is None  # another image, same clicks
    cache.max_bytes = cache.bytes  # full: the next entry evicts the least recently used (the first)
    cache.put(image, np.ones((1, 3), np.int32), make_pass(rng))
    assert cache.get(image, np.zeros((1, 3), np.int32)) is None and cache.get(image, np.ones((1, 3), np.int32))
    assert cache.bytes <= cache.max_bytes


def test_pass_cache_neither_keeps_images_alive_nor_returns_a_pass_of_a_freed_one(rng) -> None:
    import weakref

    cache = PassCache(max_bytes=10**6)
    image = np.zeros(3, np.float32)
    clicks = np.zeros((1, 3), np.int32)
    cache.put(image, clicks, make_pass(rng))
    alive = weakref.ref(image)
    del image
    gc.collect()
    assert alive() is None  # a session's image is freed with the session, cache or not
    twins = [np.zeros(3, np.float32) for _ in range(4096)]  # new arrays, some perhaps at the freed id
    assert all(cache.get(twin, clicks) is None for twin in twins)


def cones_reference(clicks: np.ndarray, origin: tuple[int, int], height: int, width: int, reach: float) -> np.ndarray:
    out = np.zeros((len(clicks), height, width))
    for k, (x, y, _) in enumerate(clicks):
        for i in range(height):
            for j in range(width):
                cy, cx = (origin[0] + i) * STRIDE + 1.5, (origin[1] + j) * STRIDE + 1.5
                out[k, i, j] = max(0.0, 1 - np.hypot(cy - y, cx - x) / STRIDE / reach)
    return out


def test_head_cones_match_a_float64_reference(rng) -> None:
    head = CorrectionHead(16, 5).eval()
    clicks = np.array([[30, 40, 1], [100, 20, 3], [55, 77, 0]], np.float32)
    got = head.cones(torch.from_numpy(clicks)[None], torch.tensor([[3.0, 5.0]]), 12, 14)[0].numpy()
    assert np.allclose(got, cones_reference(clicks, (3, 5), 12, 14, head.reach), atol=1e-5)


def test_a_correction_gives_its_class_the_cells_it_claims_and_takes_none_away(rng) -> None:
    head = CorrectionHead(16, 5).eval()
    logits = torch.from_numpy(rng.normal(0, 4, (2, 5, 6, 7)).astype(np.float32))
    claim = torch.from_numpy(rng.normal(0, 2, (2, 1, 6, 7)).astype(np.float32))
    label = torch.tensor([3.0, 0.0])
    merged = head.merge(logits, claim, label).numpy()
    for n, c in enumerate((3, 0)):
        others = np.delete(logits[n].numpy(), c, axis=0)
        had = logits[n].numpy().argmax(0) == c
        assert np.allclose(np.delete(merged[n], c, axis=0), others)
        assert np.allclose(merged[n, c], np.maximum(logits[n, c].numpy(), others.max(0) + claim[n, 0].numpy()),
                           atol=1e-5)
        assert np.array_equal(merged[n].argmax(0) == c, had | (claim[n, 0].numpy() > 0))  # only ever adds c
    features, coarse = torch.randn(2, 32, 10, 10), torch.randn(2, 5, 10, 10)
    padded = torch.tensor([[[-1e4, -1e4, -1], [12, 9, 2]], [[3, 4, 0], [20, 30, 4]]], dtype=torch.float32)
    with torch.no_grad():
        assert not head.claim(features, coarse, padded, torch.zeros(2, 2)).any()  # untrained: claims nothing


def test_progressive_merge_keeps_only_the_changes_that_reach_the_click() -> None:
    from ihp_rt.correction import merged

    changed = np.zeros((8, 8), bool)
    changed[1:3, 1:3] = True  # touches the click at (2, 2)
    changed[6:8, 6:8] = True  # far from it
    keep = merged(changed, 2, 2)
    assert keep[1:3, 1:3].all() and not keep[6:8, 6:8].any() and keep.sum() == 4
    assert not merged(changed, 5, 1).any()  # nothing changed next to this click


def test_a_correction_writes_only_the_changed_pixels_connected_to_its_click(rng) -> None:
    """correct(): the logits take the head's whole window; the labels change only where the new
    logits' arg-max differs and the difference is connected to the click."""
    coarse = np.zeros((3, 20, 20), np.float32)
    coarse[0] = 1.0  # everything background
    previous = Pass(np.zeros((80, 80), np.uint8), coarse, np.zeros((2, 20, 20), np.float32))

    def head(features, window, clicks, origin):
        out = window.copy()
        out[0, 2, 2:6, 2:6] = 5.0  # class 2 around the click at cell (4, 4)
        out[0, 1, 15:18, 15:18] = 5.0  # class 1 far away: dropped from the labels
        return out

    done = correct(previous, np.array([[17, 17, 2]], np.int32), head)
    assert done.coarse[1, 15:18, 15:18].max() == 5.0  # the logits keep the whole answer
    assert set(np.unique(done.labels).tolist()) == {0, 2} and done.labels[17, 17] == 2
    assert not done.labels[40:, :].any() and not done.labels[:, 40:].any()


@pytest.fixture(scope="module")
def head_checkpoint():
    """A seeded, untrained MobileNetV3 model with a correction head (its last layer randomised so
    that corrections change something), at 256 px: 64 cells, wider than a window."""
    from ihp_rt.labels import get_label_set
    from ihp_rt.model import Checkpoint, build_model
    from ihp_rt.spec import ModelSpec

    spec = ModelSpec(labels=get_label_set("lip"), backbone="mobilenetv3_large", input_size=256, correction_head=True)
    model = build_model(spec, seed=0).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.correction.out.weight, std=0.05)
        model.correction.out.bias.fill_(3.0)  # a head only adds its class: it must claim cells
    return Checkpoint(model, spec, {"untrained": True})


@pytest.fixture(scope="module")
def head_onnx(head_checkpoint, tmp_path_factory):
    from ihp_rt.export.to_onnx import export_onnx

    return export_onnx(head_checkpoint, tmp_path_factory.mktemp("head") / "head.onnx")


def test_the_head_graph_computes_what_the_head_module_does(head_checkpoint, head_onnx, rng) -> None:
    from ihp_rt.backends.ort_backend import OrtBackend
    from ihp_rt.backends.torch_backend import TorchBackend

    ort_head, torch_head = OrtBackend(head_onnx).corrector, TorchBackend(head_checkpoint).corrector
    features = rng.normal(size=(1, 32, 48, 40)).astype(np.float32)
    coarse = rng.normal(0, 5, size=(1, 20, 48, 40)).astype(np.float32)
    clicks = np.concatenate([[[-1e4, -1e4, -1]], random_clicks(rng, 6, 20, 200, 160)]).astype(np.float32)[None]
    origin = np.array([[4, 9]], np.float32)
    expected = torch_head(features, coarse, clicks, origin)
    assert not np.allclose(expected, coarse, atol=1e-2)  # the randomised head changes the logits
    assert np.allclose(ort_head(features, coarse, clicks, origin), expected, atol=1e-3)


def test_engines_agree_and_a_fresh_worker_replays_to_the_same_mask(head_checkpoint, head_onnx, rng) -> None:
    """A mask is a function of the click list: ONNX Runtime and PyTorch give the same passes, a
    second engine that never saw the session replays its clicks to the identical mask, and undo
    gives back the previous mask exactly."""
    from ihp_rt.backends.ort_backend import OrtBackend
    from ihp_rt.backends.torch_backend import TorchBackend
    from ihp_rt.session import Session

    image = rng.integers(0, 256, (200, 150, 3), dtype=np.uint8)
    clicks = [(20, 30, 2), (100, 60, 5), (75, 150, 9), (30, 40, 2), (140, 190, 0), (101, 61, 5), (10, 10, 0)]
    sessions = {name: Session(backend, click_radius=0) for name, backend in
                [("torch", TorchBackend(head_checkpoint)), ("ort", OrtBackend(head_onnx))]}
    masks: dict[str, list[np.ndarray]] = {name: [] for name in sessions}
    for name, session in sessions.items():
        session.set_image(image)
        for x, y, label in clicks:
            session.add_click(x, y, label)
            masks[name].append(session.predict().labels)
    for a, b in zip(masks["torch"], masks["ort"], strict=True):
        assert (a == b).mean() >= 0.999
    assert any(not np.array_equal(a, b) for a, b in zip(masks["ort"][3:], masks["ort"][2:], strict=False))

    fresh = Session(OrtBackend(head_onnx), click_radius=0)
    fresh.set_image(image)
    for x, y, label in clicks:
        fresh.add_click(x, y, label)
    assert np.array_equal(fresh.predict().labels, masks["ort"][-1])  # replayed: 1 network pass + 4 corrections
    session = sessions["ort"]
    session.undo()
    assert np.array_equal(session.predict().labels, masks["ort"][-2])


def test_a_correction_after_a_cached_list_costs_one_head_run(head_onnx, rng) -> None:
    from ihp_rt.backends.ort_backend import OrtBackend
    from ihp_rt.session import Session

    backend = OrtBackend(head_onnx)
    calls = {"network": 0, "head": 0}
    network, head = backend.predict, backend.corrector

    def counted_network(clicks):
        calls["network"] += 1
        return network(clicks)

    def counted_head(*args):
        calls["head"] += 1
        return head(*args)

    def correction(session: Session, label: int) -> None:
        shown = session.predict().labels
        x, y = next((x, y) for x, y in zip(rng.integers(160, size=99), rng.integers(120, size=99), strict=True)
                    if shown[y, x] != label)  # a pixel that shows another label: a real correction
        session.add_click(int(x), int(y), label)

    backend.predict, backend.corrector = counted_network, counted_head
    session = Session(backend, click_radius=0)
    session.set_image(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    for label in (2, 5, 9):
        session.add_click(int(rng.integers(160)), int(rng.integers(120)), label)
    session.predict()
    assert calls == {"network": 1, "head": 0}
    for i, label in enumerate((2, 0, 5, 0)):
        correction(session, label)
        done = session.predict()
        # the first correction after the parts runs the network; every later one the head alone
        assert (done.network_passes, done.corrections_run) == ((1, 0) if i == 0 else (0, 1))
    assert calls == {"network": 2, "head": 3}
    session.undo()
    session.predict()
    assert calls == {"network": 2, "head": 3}  # undo: the shorter list's pass is cached
    session.add_click(10, 10, 13)  # a new part: the network runs on all clicks, and on the next one
    correction(session, 2)
    done = session.predict()
    assert calls == {"network": 4, "head": 3} and (done.network_passes, done.corrections_run) == (1, 0)
    clicked = {c.label for c in session.clicks}
    y, x = next(zip(*np.nonzero(np.isin(done.labels, list(clicked))), strict=True))
    session.add_click(int(x), int(y), int(done.labels[y, x]))  # the pixel already shows that label: nothing to run
    same = session.predict()
    assert calls == {"network": 4, "head": 3} and (same.network_passes, same.corrections_run) == (0, 0)
    assert np.array_equal(same.labels, done.labels)


def test_correct_refuses_a_pass_without_stride_4_logits(rng) -> None:
    with pytest.raises(ValueError, match="stride-4 logits"):
        correct(Pass(np.zeros((8, 8), np.uint8)), np.zeros((1, 3), np.int32), lambda *a: a[1])


def upsampled_reference(coarse: np.ndarray, size: int) -> np.ndarray:
    """(C, size, size) float64: PyTorch's bilinear resize (align_corners=False) of ``coarse``."""
    return F.interpolate(torch.from_numpy(coarse.astype(np.float64))[None], size=(size, size), mode="bilinear",
                         align_corners=False)[0].numpy()


def test_a_boost_is_a_gaussian_on_the_clicked_class_that_wins_the_clicked_pixel_by_the_margin(rng) -> None:
    """Against a float64 reference (PyTorch's bilinear resize): only the clicked class's logits
    change, by one Gaussian of sigma model pixels centred on the click, and after the upsampling the
    class wins the clicked pixel by exactly the margin where it had not already."""
    size, cells, classes = 190, 48, 6  # 190 px read a grid of ceil(190 / 4) = 48 cells
    for _ in range(40):
        coarse = rng.normal(0, 4, size=(classes, cells, cells)).astype(np.float32)
        x, y, label = int(rng.integers(size)), int(rng.integers(size)), int(rng.integers(classes))
        row0, col0, height, width = cell_window(x, y, cells, cells, window=24)
        window = coarse[:, row0:row0 + height, col0:col0 + width][None]
        clicks = np.array([[[3, 3, 1], [x, y, label]]], np.float32)
        new = Boost(size, margin=1.5, sigma=12.0)(None, window, clicks, np.array([[row0, col0]], np.float32))[0]
        change = new.astype(np.float64) - window[0]
        assert not np.delete(change, label, axis=0).any()
        scale = cells / size  # cell i's centre is model pixel (i + 0.5) / scale - 0.5
        rows = (np.arange(row0, row0 + height)[:, None] + 0.5) / scale - 0.5
        cols = (np.arange(col0, col0 + width)[None, :] + 0.5) / scale - 0.5
        gauss = np.exp(-((rows - y) ** 2 + (cols - x) ** 2) / (2 * 12.0 ** 2))
        peak = change[label].max()
        assert peak >= 0 and np.allclose(change[label], peak / gauss.max() * gauss, atol=1e-4 * max(peak, 1))
        edited = coarse.copy()
        edited[:, row0:row0 + height, col0:col0 + width] = new
        before, after = upsampled_reference(coarse, size)[:, y, x], upsampled_reference(edited, size)[:, y, x]
        lead = before[label] - np.delete(before, label).max()
        won = after[label] - np.delete(after, label).max()
        assert np.isclose(won, max(lead, 1.5), atol=1e-3)


def test_a_boost_correction_is_honoured_and_touches_only_what_connects_to_the_click(rng) -> None:
    size, cells, classes = 160, 40, 5
    coarse = rng.normal(0, 3, size=(classes, cells, cells)).astype(np.float32)
    labels = upsampled_reference(coarse, size).argmax(0).astype(np.uint8)
    previous = Pass(labels, coarse)
    for _ in range(10):
        x, y = (int(v) for v in rng.integers(size, size=2))
        label = int((labels[y, x] + 1) % classes)
        corrected = correct(previous, np.array([[x, y, label]], np.int32), Boost(size))
        assert corrected.labels[y, x] == label and corrected.features is None
        changed = corrected.labels != labels
        _, regions = cv2.connectedComponents(changed.astype(np.uint8), connectivity=8)
        assert set(np.unique(regions[changed])) == {regions[y, x]}  # one region, the click's
        assert set(np.unique(corrected.labels[changed])) == {label}  # and it only gains the clicked class


def test_spec_version_3_records_the_head_and_older_specs_have_none(head_checkpoint) -> None:
    from ihp_rt.errors import ModelError
    from ihp_rt.spec import ModelSpec

    d = head_checkpoint.spec.to_dict()
    assert ModelSpec.from_dict(d).correction_head is True
    assert ModelSpec.from_dict({**d, "correction_head": False}) == dataclasses.replace(head_checkpoint.spec,
                                                                                       correction_head=False)
    old = {k: v for k, v in d.items() if k != "correction_head"}
    assert ModelSpec.from_dict({**old, "spec_version": 2}).correction_head is False
    with pytest.raises(ModelError, match="version 2 has no correction_head"):
        ModelSpec.from_dict({**d, "spec_version": 2})
    with pytest.raises(ModelError, match="malformed"):
        ModelSpec.from_dict({**d, "correction_head": "false"})
    with pytest.raises(ModelError, match="malformed"):
        ModelSpec.from_dict(old)


def test_training_corrections_follow_the_evaluation_rule(rng) -> None:
    """With one choice, the head is trained on exactly the click the evaluation's user makes next."""
    from ihp_rt.data.folder import IGNORE
    from ihp_rt.simulation import correction_click
    from ihp_rt.training.correction_steps import correction_at, padded_clicks

    truth = np.zeros((60, 80), np.uint8)
    truth[10:40, 10:30], truth[45:55, 50:75], truth[0:3, 0:80] = 3, 5, IGNORE
    prediction = np.zeros_like(truth)
    prediction[12:20, 12:28] = 3  # most of the 3-region and all of the 5-region are missed
    click, mask = correction_at(prediction, truth, np.random.default_rng(7), choices=1)
    assert click == correction_click(prediction, truth, np.random.default_rng(7), IGNORE)
    assert mask[click.y, click.x] and click.label == 3 and mask.sum() == 30 * 20 - 8 * 16
    assert correction_at(truth, truth, rng, 3) is None
    padded = padded_clicks([[click], []])
    assert padded.shape == (2, 1, 3) and padded[0, 0].tolist() == [click.x, click.y, 3] and padded[1, 0, 2] == -1


def test_fp16_and_int8_exports_carry_the_head_and_correct(head_checkpoint, head_onnx, tmp_path, rng) -> None:
    """The reduced-precision graphs keep the two extra outputs and the head's graph (which stays
    float32): corrections run on them as on the float32 export."""
    from ihp_rt.backends.ort_backend import OrtBackend
    from ihp_rt.correction import correct
    from ihp_rt.data import Sample
    from ihp_rt.export import export_onnx
    from ihp_rt.export.quantize import calibration_inputs, quantize_int8

    labels = np.zeros((120, 90), np.uint8)
    labels[10:60, 10:80], labels[60:115, 5:85] = 2, 5
    samples = [Sample(f"c{i}", rng.integers(0, 256, (120, 90, 3), dtype=np.uint8), labels) for i in range(3)]
    files = {"fp16": export_onnx(head_checkpoint, tmp_path / "h16.onnx", precision="fp16"),
             "int8": quantize_int8(head_onnx, tmp_path / "h8.onnx", calibration_inputs(samples, head_checkpoint.spec),
                                   "minmax")}
    reference = OrtBackend(head_onnx)
    size = head_checkpoint.spec.input_size
    image = rng.standard_normal((3, size, size)).astype(np.float32)
    clicks = random_clicks(rng, 4, head_checkpoint.spec.num_classes, size, size)
    reference.set_image(image)
    expected = correct(reference.predict(clicks[:3]), clicks, reference.corrector)
    for precision, path in files.items():
        backend = OrtBackend(path)
        assert backend.corrector is not None, precision
        backend.set_image(image)
        done = correct(backend.predict(clicks[:3]), clicks, backend.corrector)
        assert done.coarse.dtype == np.float32 and done.coarse.shape == expected.coarse.shape
        assert (done.labels == expected.labels).mean() >= (0.99 if precision == "fp16" else 0.5), precision
