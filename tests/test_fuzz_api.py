"""Schemathesis fuzzes every operation of the server's OpenAPI spec: no input may cause a 5xx,
and every response must match the documented status codes and schemas.

Half of the generated requests are pointed at a live session (with an image and clicks), and
their integer coordinates folded into that image, so the fuzzer reaches the label, click, undo,
reset and mask code rather than stopping at 404 or "outside the image".
"""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from PIL import Image

schemathesis = pytest.importorskip("schemathesis", reason="the dev extra (schemathesis) is not installed")
pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")

from fastapi.testclient import TestClient  # noqa: E402
from schemathesis import checks  # noqa: E402

from ihp_rt.labels import get_label_set  # noqa: E402
from ihp_rt.model import Checkpoint, build_model  # noqa: E402
from ihp_rt.serving import ServeConfig  # noqa: E402
from ihp_rt.serving.app import create_app  # noqa: E402
from ihp_rt.session import SharedBackend  # noqa: E402
from ihp_rt.spec import ModelSpec  # noqa: E402


def _app():
    from ihp_rt.backends import open_backend

    spec = ModelSpec(labels=get_label_set("lip"), backbone="mobilenetv3_large", input_size=64)
    engine = SharedBackend(open_backend(Checkpoint(build_model(spec, seed=0).eval(), spec, {}), "torch"))
    return create_app(engine, ServeConfig(max_sessions=8, max_session_clicks=20, max_upload_bytes=100_000))


SIDE = 64  # the live session's image is SIDE x SIDE
APP = _app()
CLIENT = TestClient(APP)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


def live_session() -> str:
    """A session with an image, re-created whenever the fuzzer has deleted it or filled it up."""
    store = APP.state.store  # the in-process MemoryStore
    if getattr(live_session, "id", None) in store._entries and len(store) < store.capacity:
        return live_session.id
    for sid in list(store._entries):  # free the slots the fuzzer's own uploads took
        store.remove(sid)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)).save(buffer, "PNG")
    live_session.id = CLIENT.post("/sessions", files={"image": ("a.png", buffer.getvalue(), "image/png")}).json()[
        "session_id"]
    return live_session.id


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_causes_a_server_error(case) -> None:
    sid = (case.path_parameters or {}).get("session_id")
    if sid is not None and zlib.crc32(str(sid).encode()) % 2 == 0:
        case.path_parameters["session_id"] = live_session()
        if isinstance(case.body, dict):
            for axis in ("x", "y"):
                if type(case.body.get(axis)) is int:
                    case.body[axis] %= SIDE
    case.call_and_validate(checks=[checks.not_a_server_error, checks.status_code_conformance,
                                   checks.response_schema_conformance, checks.content_type_conformance])
