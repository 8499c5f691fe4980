"""Shared fixtures: small models and images so the suite stays fast on 2 CPU cores."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def tiny_checkpoint():
    """A seeded, untrained MobileNetV3 model at a 96 px input: real code path, fast."""
    from ihp_rt.labels import get_label_set
    from ihp_rt.model import Checkpoint, build_model
    from ihp_rt.spec import ModelSpec

    spec = ModelSpec(labels=get_label_set("lip"), backbone="mobilenetv3_large", input_size=96)
    return Checkpoint(build_model(spec, seed=0).eval(), spec, {"untrained": True})


@pytest.fixture
def lip_clicks(tmp_path) -> Path:
    """A click list for the example photo in the LIP label set (the tiny test models' labels)."""
    path = tmp_path / "lip_clicks.json"
    path.write_text(json.dumps({"clicks": [{"x": 225, "y": 40, "label": "hair"}, {"x": 225, "y": 125, "label": "face"},
                                           {"x": 90, "y": 330, "label": "upper-clothes"},
                                           {"x": 40, "y": 150, "label": "background"}]}))
    return path


class Clock:
    """A clock the test moves by hand (``clock.now += 60``), so expiry needs no sleeping."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A throw-away redis-server on a loopback port, persistence off, one per test module."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server; scripts/test.sh does "
                    "this as root)")
    from ihp_rt.serving.runner import spawn_redis

    with spawn_redis() as url:
        yield url


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def random_clicks(rng: np.random.Generator, k: int, num_classes: int, height: int, width: int) -> np.ndarray:
    """(k, 3) int32 random clicks (x, y, label) inside a height x width frame."""
    return np.stack(
        [rng.integers(0, width, k), rng.integers(0, height, k), rng.integers(0, num_classes, k)], axis=1
    ).astype(np.int32)
