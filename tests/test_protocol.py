"""Metrics and the paper's simulated user, with backends whose answers are known."""

import numpy as np
import pytest

from ihp_rt.correction import Pass
from ihp_rt.data import Sample
from ihp_rt.evaluation import confusion_matrix, interactive_run, iou_per_class, mean_iou
from ihp_rt.labels import get_label_set
from ihp_rt.session import Session
from ihp_rt.spec import ModelSpec

SPEC = ModelSpec(labels=get_label_set("ppp"), input_size=64)


class OracleBackend:
    """Always answers the ground truth (a perfect predictor)."""

    name = "oracle"
    spec = SPEC
    corrector = None  # every click runs the "network"

    def __init__(self, truth: np.ndarray) -> None:
        self.truth = truth
        self.calls = 0

    def set_image(self, image: np.ndarray) -> None:
        pass

    def predict(self, clicks: np.ndarray) -> Pass:
        self.calls += 1
        return Pass(self.truth)


class NearestClickBackend(OracleBackend):
    """Labels every pixel with the label of its nearest click (background without clicks)."""

    def predict(self, clicks: np.ndarray) -> Pass:
        self.calls += 1
        if not len(clicks):
            return Pass(np.zeros_like(self.truth))
        yy, xx = np.mgrid[: self.truth.shape[0], : self.truth.shape[1]]
        d = (yy[None] - clicks[:, 1, None, None]) ** 2 + (xx[None] - clicks[:, 0, None, None]) ** 2
        return Pass(clicks[np.argmin(d, axis=0), 2].astype(np.uint8))


def toy_truth() -> np.ndarray:
    truth = np.zeros((64, 64), np.uint8)
    truth[5:30, 5:30] = 1
    truth[35:60, 10:50] = 2
    truth[8:20, 40:60] = 3
    return truth


def test_confusion_and_iou_by_hand() -> None:
    truth = np.array([[0, 0, 1, 1], [2, 2, 255, 1]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 1]], np.uint8)
    conf = confusion_matrix(pred, truth, 3, ignore=255)
    assert conf.tolist() == [[1, 1, 0], [0, 3, 0], [1, 0, 1]]
    ious = iou_per_class(conf)
    assert ious.tolist() == pytest.approx([1 / 3, 3 / 4, 1 / 2])
    assert mean_iou(conf) == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)
    assert np.isnan(iou_per_class(confusion_matrix(pred, truth, 4, ignore=255))[3])


def test_perfect_predictor_needs_no_correction_clicks() -> None:
    truth = toy_truth()
    backend = OracleBackend(truth)
    run = interactive_run(Session(backend), Sample("t", np.zeros((64, 64, 3), np.uint8), truth), 5,
                          np.random.default_rng(0))
    assert len(run.predictions) == 6 and all(np.array_equal(p, truth) for p in run.predictions)
    assert sorted(c.label for c in run.clicks) == [1, 2, 3]  # initial central clicks only, no background
    assert run.initial_clicks == 3
    assert backend.calls == 1


def test_correction_clicks_improve_a_click_follower() -> None:
    truth = toy_truth()
    backend = NearestClickBackend(truth)
    sample = Sample("t", np.zeros((64, 64, 3), np.uint8), truth)
    run = interactive_run(Session(backend), sample, 8, np.random.default_rng(0))
    mious = [mean_iou(confusion_matrix(p, truth, 4)) for p in run.predictions]
    assert len(run.clicks) == 3 + 8
    assert all(truth[c.y, c.x] == c.label for c in run.clicks)
    assert mious[-1] > mious[0] + 0.1
    again = interactive_run(Session(NearestClickBackend(truth)), sample, 8, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(run.predictions, again.predictions, strict=True))
