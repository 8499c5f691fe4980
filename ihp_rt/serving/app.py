"""The HTTP + WebSocket API and the annotation page, over one shared network.

Routes (the stable contract; README "Serving" documents them with examples):

- ``GET /health`` liveness, ``GET /ready`` readiness (503 when every session slot is taken or
  the session store cannot be reached), ``GET /info`` the model and its label set (id, name,
  colour), ``GET /`` the annotation page.
- ``POST /sessions`` (multipart field ``image``) -> id and size; the image is decoded and
  pre-processed once here, so every later click pays only the per-click step.
- ``POST /sessions/{id}/clicks`` ``{"x", "y", "label"}``, ``POST .../undo``, ``POST .../reset``
  -> the updated mask as run-length JSON (an ``Idempotency-Key`` header makes a resend of the
  same request apply once); ``GET .../mask.png`` the label-id PNG,
  ``GET .../clicks`` the click list (the ``--clicks`` file format), ``DELETE /sessions/{id}``.
- ``/label-studio/...``: a Label Studio ML backend (see :mod:`.label_studio`).
- ``WS /sessions/{id}/ws``: the same operations as JSON messages ``{"op": "click" | "undo" |
  "reset", ..., "op_id"?}``, one reply per message, errors as ``{"error": {"status", "detail"}}``
  without closing the socket.

Sessions live in a store (in this process, or in Redis shared by many workers: see
:mod:`.store`); this process keeps only caches it can rebuild from the store. Every error a
client can cause is a 4xx with a one-line ``detail``; server faults are 5xx and logged.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, Header, Request, Response, UploadFile, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from ihp_rt import __version__
from ihp_rt.clicks import clicks_to_json
from ihp_rt.errors import IhpError, InputError
from ihp_rt.serving.body_limit import BodyLimit
from ihp_rt.serving.config import ServeConfig
from ihp_rt.serving.errors import ERRORS, RETRY_AFTER_S, ErrorOut, is_server_fault, status_of
from ihp_rt.serving.label_studio import LabelStudioHost
from ihp_rt.serving.label_studio import router as label_studio_router
from ihp_rt.serving.masks import encode_label_rle, label_png_bytes
from ihp_rt.serving.model_identity import model_identity
from ihp_rt.serving.schemas import (
    MAX_KEY_LENGTH,
    ClickIn,
    ClickOut,
    InfoOut,
    LabelOut,
    MaskOut,
    MaskRle,
    Operation,
    SessionOut,
)
from ihp_rt.serving.service import Sessions
from ihp_rt.serving.store import MemoryStore, SessionStore, StoreFull
from ihp_rt.session import Prediction, Session, SharedBackend

STATIC = Path(__file__).parent / "static"
# A client that lost a reply resends the request with the same key; the session holds the
# operation once (among its last RECENT_OPS operations). Without one, a resend is a new click.
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=MAX_KEY_LENGTH,
                                              description="names this operation: resent with the same key "
                                                          "(and body), it is applied once")]
log = logging.getLogger("ihp_rt.serve")


def create_app(engine: SharedBackend, config: ServeConfig | None = None,
               clock: Callable[[], float] = time.monotonic, label_studio: LabelStudioHost | None = None,
               store: SessionStore | None = None, model_id: str | None = None) -> FastAPI:
    """The application; ``clock`` is injectable so tests can expire sessions without waiting.

    ``store`` holds the sessions: by default this process's own (:class:`MemoryStore`), or a
    :class:`~ihp_rt.serving.redis_store.RedisStore` shared by any number of workers.
    ``label_studio`` says where the Label Studio ML backend (``/label-studio``) fetches task
    images from; by default LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY. ``model_id`` names the model
    served, which every session records (a worker on another model refuses it): by default
    derived from the spec alone; ``ihp-rt serve`` passes one with the model file's hash.
    """
    config = config or ServeConfig()
    spec = engine.backend.spec
    if store is None:  # not `store or ...`: an empty store has len() 0, so it is falsy
        store = MemoryStore(config.max_sessions, config.session_ttl_s, config.max_session_clicks, clock)
    sessions = Sessions(engine, store, config, model_id or model_identity(spec))
    labels = [LabelOut(id=i, name=n, color=c) for i, (n, c) in enumerate(zip(spec.labels.names, spec.labels.palette,
                                                                             strict=True))]
    app = FastAPI(title="ihp-rt", version=__version__, docs_url=None, redoc_url=None,
                  description="Interactive human parsing: upload an image once, send labelled clicks, "
                              "get the parsing mask back.")
    app.state.store, app.state.config, app.state.sessions = store, config, sessions
    app.add_middleware(BodyLimit, limit=config.max_upload_bytes)

    @app.middleware("http")
    async def access_log(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        status = 500  # what the client gets when the route raises past every handler
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            log.info(json.dumps({"event": "request", "method": request.method, "path": request.url.path,
                                 "status": status, "ms": round((time.perf_counter() - start) * 1e3, 2)}))

    @app.exception_handler(IhpError)
    async def ihp_error(request: Request, error: IhpError) -> JSONResponse:
        status = status_of(error)
        headers = None
        if isinstance(error, StoreFull):
            headers = {"Retry-After": str(error.retry_after_s)}
        elif status == 503:
            headers = {"Retry-After": str(RETRY_AFTER_S)}
        if is_server_fault(status):
            log_fault(error, request.url.path)
        return JSONResponse({"detail": str(error)}, status_code=status, headers=headers)

    def mask_out(session_id: str, prediction: Prediction) -> MaskOut:
        names = spec.labels.names
        return MaskOut(session_id=session_id, latency_ms=round(prediction.latency_ms, 3),
                       clicks=[ClickOut(x=c.x, y=c.y, label=names[c.label]) for c in prediction.clicks],
                       mask=MaskRle(**encode_label_rle(prediction.labels)))

    def apply(session_id: str, op: Operation) -> MaskOut:
        return mask_out(session_id, sessions.apply(session_id, op.op, op.x, op.y, op.label, op.op_id))

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: {"model": ErrorOut}})
    def ready() -> JSONResponse:
        """Readiness: the model is loaded, the store answers, and a new session would be accepted."""
        count = len(store)
        body = {"ready": count < config.max_sessions, "sessions": count, "max_sessions": config.max_sessions,
                "backend": engine.backend.name}
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/info")
    def info() -> InfoOut:
        return InfoOut(version=__version__, backend=engine.backend.name, model=sessions.model,
                       label_set=spec.labels.name, labels=labels, input_size=spec.input_size,
                       limits={"max_sessions": config.max_sessions, "session_ttl_s": config.session_ttl_s,
                               "max_upload_bytes": config.max_upload_bytes,
                               "max_session_clicks": config.max_session_clicks})

    @app.post("/sessions", status_code=201, responses=ERRORS)
    def create_session(image: Annotated[UploadFile, File(description="the photo: PNG, JPEG, ...")]) -> SessionOut:
        state = sessions.create(image.file.read(), image.filename or "image")
        return SessionOut(session_id=state.id, width=state.width, height=state.height, label_set=spec.labels.name,
                          labels=labels)

    @app.post("/sessions/{session_id}/clicks", responses=ERRORS)
    def add_click(session_id: str, click: ClickIn, idempotency_key: IdempotencyKey = None) -> MaskOut:
        return apply(session_id, Operation(op="click", **click.model_dump(), op_id=idempotency_key))

    @app.post("/sessions/{session_id}/undo", responses=ERRORS)
    def undo(session_id: str, idempotency_key: IdempotencyKey = None) -> MaskOut:
        return apply(session_id, Operation(op="undo", op_id=idempotency_key))

    @app.post("/sessions/{session_id}/reset", responses=ERRORS)
    def reset(session_id: str, idempotency_key: IdempotencyKey = None) -> MaskOut:
        return apply(session_id, Operation(op="reset", op_id=idempotency_key))

    @app.get("/sessions/{session_id}/mask.png", response_class=Response, responses={
        200: {"content": {"image/png": {}}, "description": "8-bit label-id PNG"}, 404: {"model": ErrorOut},
        503: {"model": ErrorOut}})
    def mask_png(session_id: str) -> Response:
        return Response(label_png_bytes(sessions.mask(session_id).labels), media_type="image/png")

    @app.get("/sessions/{session_id}/clicks", responses=ERRORS)
    def clicks(session_id: str) -> dict[str, list[ClickOut]]:
        return clicks_to_json(sessions.clicks(session_id), spec.labels)

    @app.delete("/sessions/{session_id}", status_code=204, responses=ERRORS)
    def delete(session_id: str) -> Response:
        sessions.delete(session_id)
        return Response(status_code=204)

    @app.websocket("/sessions/{session_id}/ws")
    async def websocket(socket: WebSocket, session_id: str) -> None:
        await socket.accept()
        while True:
            message = await socket.receive()
            if message["type"] == "websocket.disconnect":
                return
            start = time.perf_counter()
            reply, status = await run_in_threadpool(handle, session_id, message.get("text"))
            await socket.send_json(reply)
            log.info(json.dumps({"event": "ws", "path": socket.url.path, "status": status,
                                 "ms": round((time.perf_counter() - start) * 1e3, 2)}))

    def handle(session_id: str, text: str | None) -> tuple[dict, int]:
        """One WebSocket message -> (reply, status); the session is looked up per message."""
        try:
            if text is None:
                raise InputError("send operations as JSON text messages, not binary")
            if len(text.encode()) > config.max_ws_message_bytes:  # the limit is in bytes, text is characters
                return error_reply(413, f"message is larger than {config.max_ws_message_bytes} bytes")
            return apply(session_id, Operation.model_validate_json(text)).model_dump(), 200
        except ValidationError as e:
            return error_reply(422, "; ".join(f"{'.'.join(map(str, d['loc'])) or 'message'}: {d['msg']}"
                                              for d in e.errors()))
        except IhpError as e:
            if is_server_fault(status_of(e)):
                log_fault(e, f"/sessions/{session_id}/ws")
            return error_reply(status_of(e), str(e))
        except Exception as e:  # a bug: answered like HTTP's 500, and the socket stays usable
            log_fault(e, f"/sessions/{session_id}/ws")
            return error_reply(500, "internal server error")

    app.include_router(label_studio_router(engine, config, label_studio or LabelStudioHost.from_environment()))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    warm_up(engine)
    return app


def error_reply(status: int, detail: str) -> tuple[dict, int]:
    return {"error": {"status": status, "detail": detail}}, status


def log_fault(error: BaseException, path: str) -> None:
    """A server fault, with its traceback: the one place an operator learns why a 5xx happened."""
    log.error(json.dumps({"event": "fault", "path": path, "error": f"{type(error).__name__}: {error}"}),
              exc_info=error)


def warm_up(engine: SharedBackend) -> None:
    """One throw-away predict, so the first user's first click does not pay for lazy initialisation."""
    session = Session(engine)
    session.set_image(np.full((64, 64, 3), 128, dtype=np.uint8))
    session.predict()
