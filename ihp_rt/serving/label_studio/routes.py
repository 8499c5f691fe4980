"""The ML backend's routes: ``/label-studio/health``, ``/setup``, ``/webhook`` and ``/predict``."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Body, Depends

from ihp_rt import __version__
from ihp_rt.errors import InputError
from ihp_rt.images import decode_image
from ihp_rt.serving.brush_rle import encode_brush_rle
from ihp_rt.serving.config import ServeConfig
from ihp_rt.serving.errors import ERRORS, ClickLimit, ErrorOut
from ihp_rt.serving.label_studio.basic_auth import basic_auth_check
from ihp_rt.serving.label_studio.fetch import fetch_image
from ihp_rt.serving.label_studio.host import LabelStudioHost
from ihp_rt.serving.label_studio.keypoints import keypoints_from_context, merge_groups
from ihp_rt.serving.label_studio.label_config import LabelNames, Tags, parse_config
from ihp_rt.serving.label_studio.tasks import TaskSessions, task_key
from ihp_rt.session import Session, SharedBackend

log = logging.getLogger("ihp_rt.serve")


def router(engine: SharedBackend, config: ServeConfig, host: LabelStudioHost) -> APIRouter:
    """The ML backend routes over the server's shared network."""
    guarded = host.ml_basic_auth is not None
    responses = {**ERRORS, 502: {"model": ErrorOut}}  # Label Studio or its storage failed
    api = APIRouter(prefix="/label-studio", tags=["Label Studio ML backend"],
                    responses={**responses, 401: {"model": ErrorOut}} if guarded else responses,
                    dependencies=[Depends(basic_auth_check(host.ml_basic_auth))] if guarded else [])
    labels = engine.backend.spec.labels
    names = LabelNames(labels, host.label_map)  # a map naming no class of the model is refused at start
    model_version = f"ihp-rt-{__version__}-{labels.name}"
    tasks_held = TaskSessions(config.max_sessions)

    @api.get("/health")
    def health() -> dict[str, str]:
        return {"status": "UP", "model_class": "ihp-rt"}

    @api.post("/setup")
    def setup(body: Annotated[dict | None, Body()] = None) -> dict[str, str]:
        if body and "schema" in body:  # a config the backend cannot serve is refused now, not at the first click
            try:
                names.brush_classes(parse_config(str(body["schema"])))
            except InputError as e:
                # Label Studio shows only "400 ... check the ML backend server console logs", not
                # the reply's detail: the log is where the user learns which labels to fix.
                log.warning(json.dumps({"event": "label-studio-setup-refused", "project": str(body.get("project")),
                                        "detail": str(e)}))
                raise
        return {"model_version": model_version}

    @api.post("/webhook")
    def webhook(body: Annotated[dict | None, Body()] = None) -> dict[str, str]:
        return {"status": "ignored: this backend does not train"}

    @api.post("/predict")
    def predict(body: Annotated[dict, Body()]) -> dict[str, list]:
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not tasks or not isinstance(tasks[0], dict):
            raise InputError('predict needs "tasks": [{"id": .., "data": {..}}]')
        params = body.get("params")
        context = params.get("context") if isinstance(params, dict) else None
        nothing = {"results": [{"result": [], "model_version": model_version}]}
        if not context or (isinstance(context, dict) and context.get("result") is None):
            return nothing  # batch pre-labelling (Label Studio sends no context): nothing to suggest
        tags = parse_config(str(body.get("label_config", "")))
        brush = names.brush_classes(tags)
        task = tasks[0]
        data = task.get("data")
        url = data.get(tags.data_key) if isinstance(data, dict) else None
        key = task_key(body.get("project"), task, url)
        if isinstance(context, dict) and context.get("result") == []:
            # The last keypoint of some label was deleted (or all regions were): which label,
            # the front end does not say, so every keypoint goes (see the package docstring).
            tasks_held.forget_keypoints(key)
            return nothing
        sent, (width, height) = keypoints_from_context(context, names.class_of, config.max_session_clicks)

        def create() -> Session:
            if not isinstance(url, str):
                raise InputError(f"task {task.get('id')} has no image URL in data.{tags.data_key}")
            # Label Studio sends a task's keypoints grouped by label, not in the order they were
            # placed: the mask comes from the network on all of them, which no order changes.
            session = Session(engine, config.click_radius, corrections=False)
            session.set_image(decode_image(fetch_image(url, host, config.max_upload_bytes, task.get("id")),
                                           f"task {task.get('id')} image"))
            return session

        with tasks_held.hold(key, create) as entry:
            session = entry.session
            if session.image_size != (height, width):
                raise InputError(f"keypoints are for a {width}x{height} image, the task image is "
                                 f"{session.image_size[1]}x{session.image_size[0]}")
            # Kept even when over the limit: the groups mirror the keypoints on the annotator's
            # screen, so deleting one brings the task back under the limit with the rest in place.
            entry.groups = merge_groups(entry.groups, sent)
            clicks = [k for group in entry.groups.values() for k in group]
            if len(clicks) > config.max_session_clicks:
                raise ClickLimit(f"{len(clicks)} keypoints on this task: this server takes at most "
                                 f"{config.max_session_clicks} clicks per image")
            session.reset()
            for k in clicks:
                session.add_click(k.x, k.y, k.label)
            mask = session.predict().labels
        regions = []
        for class_id, name in brush.items():  # under the config's names: Label Studio shows no other
            if not class_id:  # background is no region: not worth a full-resolution compare
                continue
            part = mask == class_id
            if part.any():
                regions.append(region(part, name, tags, width, height))
        return {"results": [{"result": regions, "model_version": model_version}]}

    return api


def region(mask: np.ndarray, name: str, tags: Tags, width: int, height: int) -> dict:
    """One BrushLabels result item in Label Studio's format."""
    return {
        "from_name": tags.brush, "to_name": tags.image, "type": "brushlabels",
        "original_width": width, "original_height": height, "image_rotation": 0,
        "value": {"format": "rle", "rle": encode_brush_rle(mask.astype(np.uint8) * 255), "brushlabels": [name]},
        "readonly": False,
    }
