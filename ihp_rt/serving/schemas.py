"""The API's request and reply bodies: the contract clients embed (OpenAPI at /openapi.json)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ClickIn(BaseModel):
    """One labelled click in pixels of the uploaded image; ``label`` is a class id or name."""

    model_config = ConfigDict(extra="forbid")
    x: int = Field(ge=0, description="column, 0 .. width - 1")
    y: int = Field(ge=0, description="row, 0 .. height - 1")
    label: int | str = Field(description="class id or class name (case-insensitive)")


MAX_KEY_LENGTH = 200  # an idempotency key: a UUID is 36 characters


class Operation(BaseModel):
    """A WebSocket message: ``click`` needs x, y and label; ``undo`` and ``reset`` nothing."""

    model_config = ConfigDict(extra="forbid")
    op: Literal["click", "undo", "reset"]
    x: int | None = None
    y: int | None = None
    label: int | str | None = None
    op_id: str | None = Field(None, min_length=1, max_length=MAX_KEY_LENGTH,
                              description="idempotency key: the same operation resent with it is applied once")


class LabelOut(BaseModel):
    id: int
    name: str
    color: tuple[int, int, int]


class InfoOut(BaseModel):
    version: str
    backend: str
    model: str = Field(description="what every session made here records: the model's version, label set, a "
                                   "digest of its weights, and the click radius")
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
