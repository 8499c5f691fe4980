"""The HTTP + WebSocket API and the annotation page, over one shared network.

Routes (the stable contract; README "Serving" documents them with examples):

- ``GET /health`` liveness, ``GET /ready`` readiness (503 when every session slot is taken),
  ``GET /info`` the model and its label set (id, name, colour), ``GET /`` the annotation page.
- ``POST /sessions`` (multipart field ``image``) -> id and size; the image is decoded and
  pre-processed once here, so every later click pays only the per-click step.
- ``POST /sessions/{id}/clicks`` ``{"x", "y", "label"}``, ``POST .../undo``, ``POST .../reset``
  -> the updated mask as run-length JSON; ``GET .../mask.png`` the label-id PNG,
  ``GET .../clicks`` the click list (the ``--clicks`` file format), ``DELETE /sessions/{id}``.
- ``/label-studio/...``: a Label Studio ML backend (see :mod:`.label_studio`).
- ``WS /sessions/{id}/ws``: the same operations as JSON messages ``{"op": "click" | "undo" |
  "reset", ...}``, one reply per message, errors as ``{"error": {"status", "detail"}}``
  without closing the socket.

Every error a client can cause is a 4xx with a one-line ``detail``; requests for one session
are serialised by its lock, and the network itself by the shared backend's lock.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from fastapi import FastAPI, File, Request, Response, UploadFile, WebSocket
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ihp_rt import __version__
from ihp_rt.clicks import clicks_to_json
from ihp_rt.errors import IhpError, InputError
from ihp_rt.images import decode_image
from ihp_rt.serving.config import ServeConfig
from ihp_rt.serving.errors import ERRORS, RETRY_AFTER_S, ClickLimit, ErrorOut, is_server_fault, status_of
from ihp_rt.serving.label_studio import LabelStudioHost
from ihp_rt.serving.label_studio import router as label_studio_router
from ihp_rt.serving.masks import encode_label_rle, label_png_bytes
from ihp_rt.serving.store import Entry, SessionStore, StoreFull
from ihp_rt.session import Session, SharedBackend

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("ihp_rt.serve")


class ClickIn(BaseModel):
    """One labelled click in pixels of the uploaded image; ``label`` is a class id or name."""

    model_config = ConfigDict(extra="forbid")
    x: int = Field(ge=0, description="column, 0 .. width - 1")
    y: int = Field(ge=0, description="row, 0 .. height - 1")
    label: int | str = Field(description="class id or class name (case-insensitive)")


class Operation(BaseModel):
    """A WebSocket message: ``click`` needs x, y and label; ``undo`` and ``reset`` nothing."""

    model_config = ConfigDict(extra="forbid")
    op: Literal["click", "undo", "reset"]
    x: int | None = None
    y: int | None = None
    label: int | str | None = None


class LabelOut(BaseModel):
    id: int
    name: str
    color: tuple[int, int, int]


class InfoOut(BaseModel):
    version: str
    backend: str
    label_set: str
    labels: list[LabelOut]
    input_size: int
    limits: dict[str, float]


class SessionOut(BaseModel):
    session_id: str
    width: int
    height: int
    label_set: str
    labels: list[LabelOut]


class ClickOut(BaseModel):
    x: int
    y: int
    label: str


class MaskRle(BaseModel):
    encoding: Literal["rle"]
    width: int
    height: int
    values: list[int] = Field(description="class id of each run, row-major")
    counts: list[int] = Field(description="length of each run; sums to width * height")


class MaskOut(BaseModel):
    session_id: str
    clicks: list[ClickOut]
    latency_ms: float = Field(description="network + mapping back to image pixels, server side")
    mask: MaskRle


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413, announced or streamed, before parsing."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = f"request body is larger than the server's limit of {self.limit:,} bytes"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            response = JSONResponse({"detail": too_large}, status_code=413)
            return await response(scope, receive, send)
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise HTTPException(413, too_large)
            return message

        return await self.app(scope, limited, send)


def create_app(engine: SharedBackend, config: ServeConfig | None = None,
               clock: Callable[[], float] = time.monotonic, label_studio: LabelStudioHost | None = None) -> FastAPI:
    """The application; ``clock`` is injectable so tests can expire sessions without waiting.

    ``label_studio`` says where the Label Studio ML backend (``/label-studio``) fetches task
    images from; by default LABEL_STUDIO_URL / LABEL_STUDIO_API_KEY.
    """
    config = config or ServeConfig()
    spec = engine.backend.spec
    store = SessionStore(config.max_sessions, config.session_ttl_s, clock)
    labels = [LabelOut(id=i, name=n, color=c) for i, (n, c) in enumerate(zip(spec.labels.names, spec.labels.palette,
                                                                             strict=True))]
    app = FastAPI(title="ihp-rt", version=__version__, docs_url=None, redoc_url=None,
                  description="Interactive human parsing: upload an image once, send labelled clicks, "
                              "get the parsing mask back.")
    app.state.store, app.state.config = store, config
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

    def apply(entry: Entry, op: Operation) -> MaskOut:
        """One click / undo / reset and the mask it gives, under the session's lock."""
        with entry.lock:
            session = entry.session
            if op.op == "click":
                if op.x is None or op.y is None or op.label is None:
                    raise InputError('a click needs "x", "y" and "label"')
                if len(session.clicks) >= config.max_session_clicks:
                    raise ClickLimit(f"this session already has the maximum of {config.max_session_clicks} "
                                     "clicks; undo or reset first")
            before = session.clicks
            if op.op == "click":
                session.add_click(op.x, op.y, op.label)
            elif op.op == "undo":
                session.undo()
            else:
                session.reset()
            try:
                entry.prediction = prediction = session.predict()
            except BaseException:  # no mask, no change: a retry must not find the click already there
                session.reset()
                for click in before:
                    session.add_click(click.x, click.y, click.label)
                raise
        names = spec.labels.names
        return MaskOut(session_id=entry.id, latency_ms=round(prediction.latency_ms, 3),
                       clicks=[ClickOut(x=c.x, y=c.y, label=names[c.label]) for c in prediction.clicks],
                       mask=MaskRle(**encode_label_rle(prediction.labels)))

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: {"model": ErrorOut}})
    def ready() -> JSONResponse:
        """Readiness: the model is loaded and a new session would be accepted."""
        sessions = len(store)
        body = {"ready": sessions < config.max_sessions, "sessions": sessions, "max_sessions": config.max_sessions,
                "backend": engine.backend.name}
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/info")
    def info() -> InfoOut:
        return InfoOut(version=__version__, backend=engine.backend.name, label_set=spec.labels.name, labels=labels,
                       input_size=spec.input_size,
                       limits={"max_sessions": config.max_sessions, "session_ttl_s": config.session_ttl_s,
                               "max_upload_bytes": config.max_upload_bytes,
                               "max_session_clicks": config.max_session_clicks})

    @app.post("/sessions", status_code=201, responses=ERRORS)
    def create_session(image: Annotated[UploadFile, File(description="the photo: PNG, JPEG, ...")]) -> SessionOut:
        store.check_room()  # a full server refuses before decoding and pre-processing
        rgb = decode_image(image.file.read(), f"upload {image.filename or 'image'!r}")
        session = Session(engine)
        session.set_image(rgb)
        entry = store.add(session)
        return SessionOut(session_id=entry.id, width=rgb.shape[1], height=rgb.shape[0], label_set=spec.labels.name,
                          labels=labels)

    @app.post("/sessions/{session_id}/clicks", responses=ERRORS)
    def add_click(session_id: str, click: ClickIn) -> MaskOut:
        return apply(store.get(session_id), Operation(op="click", **click.model_dump()))

    @app.post("/sessions/{session_id}/undo", responses=ERRORS)
    def undo(session_id: str) -> MaskOut:
        return apply(store.get(session_id), Operation(op="undo"))

    @app.post("/sessions/{session_id}/reset", responses=ERRORS)
    def reset(session_id: str) -> MaskOut:
        return apply(store.get(session_id), Operation(op="reset"))

    @app.get("/sessions/{session_id}/mask.png", response_class=Response, responses={
        200: {"content": {"image/png": {}}, "description": "8-bit label-id PNG"}, 404: {"model": ErrorOut}})
    def mask_png(session_id: str) -> Response:
        entry = store.get(session_id)
        with entry.lock:
            if entry.prediction is None:
                entry.prediction = entry.session.predict()
            labels = entry.prediction.labels
        return Response(label_png_bytes(labels), media_type="image/png")

    @app.get("/sessions/{session_id}/clicks", responses=ERRORS)
    def clicks(session_id: str) -> dict[str, list[ClickOut]]:
        entry = store.get(session_id)
        with entry.lock:
            return clicks_to_json(entry.session.clicks, spec.labels)

    @app.delete("/sessions/{session_id}", status_code=204, responses=ERRORS)
    def delete(session_id: str) -> Response:
        store.remove(session_id)
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
            return apply(store.get(session_id), Operation.model_validate_json(text)).model_dump(), 200
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

