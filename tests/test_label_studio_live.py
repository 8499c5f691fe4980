"""``ihp-rt serve`` as the ML backend of a real Label Studio, not a stand-in.

Label Studio (pinned in scripts/label_studio_env.sh, in a cached venv of its own: it pins far
too much to share ours) runs on loopback with SQLite in a temporary folder. The test creates
a project with the README's labelling config, uploads the bundled photo as a task, connects
``ihp-rt serve`` (another process on loopback) as the project's interactive ML backend, and
then clicks the way Label Studio's front end does: each smart keypoint is posted to Label
Studio's own ``/api/ml/{id}/interactive-annotating``, which forwards it to our ``/predict``.
The brush regions Label Studio hands back must decode to exactly the mask a ``Session`` gives
for the same clicks; the expected masks are computed here, with whatever model is shipped.

What the front end sends was read from Label Studio's editor bundle: on each new, moved or
deleted smart region it posts ``{"task": id, "context": {"result": [...]}}`` holding the
keypoints *of that region's label* (``getConnectedDynamicRegions``; a deleted one left out),
serialised as in an annotation, so the backend must keep the other labels' keypoints itself.
Deleting a label's last keypoint posts an empty list. The backend is given a personal access
token (a JWT, the kind Label Studio shows its users by default), so each task image it fetches
goes through the token exchange; the test's own client uses the legacy token. The backend
requires basic auth (LABEL_STUDIO_ML_BASIC_AUTH), which Label Studio sends from the ML
backend's Basic Auth settings: every request below passes through it.

Cloud storage: an https stand-in for an S3 bucket on another loopback port (its CA made by
tests/tls_loopback.py, trusted by Label Studio's boto3 through AWS_CA_BUNDLE and by the backend
through SSL_CERT_FILE) is the project's S3 import storage with presigned URLs, Label Studio's
default. A task holding ``s3://ihp-bucket/astronaut.jpg`` is clicked: the backend asks Label
Studio's ``/tasks/<id>/resolve/``, which redirects to a URL it presigned with boto3, and the
bucket must see that request without the token. Label names: a second project spells its
labels its own way (``Hair``, and ``Shirt`` mapped to upper-clothes by the backend's
``--label-studio-label-map``) and gets its regions under those names; a third, with a label the
model lacks, cannot connect the backend.

Slow (a Label Studio start is ~1 min, its first install a few more), so it is marked
``label_studio``, left out of scripts/test.sh and run by scripts/test_label_studio.sh from
.ci/run after the main suite. Without network for the first install it skips, except on CI
(``CI=true``), where it fails: a CI run must not silently lose this test.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import EXAMPLES, REPO
from tests.tls_loopback import Certificates, loopback_server, make_certificates, reply

httpx = pytest.importorskip("httpx", reason="the dev extra (httpx) is not installed")
pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")

pytestmark = [pytest.mark.label_studio, pytest.mark.timeout(1800)]

PHOTO = EXAMPLES / "astronaut.jpg"
USER, PASSWORD, TOKEN = "ihp-rt@example.com", "ihp-rt-test-password", "ihp0rt0test0token0123456789"
BACKEND_AUTH = ("label-studio", "ihp-rt:backend-password")  # LABEL_STUDIO_ML_BASIC_AUTH, a colon in the password
INSTALL_TIMEOUT_S = 1500  # a first install downloads ~250 MB of wheels
START_TIMEOUT_S = 300  # Label Studio migrates a fresh SQLite database before it answers

# Clicks on the bundled photo (pixels), in the order an annotator places them, with the label
# selected in Label Studio at the time. The last is a negative keypoint (Alt+click) placed
# while upper-clothes is selected: Label Studio gives it that label, with is_positive false.
CLICKS = [(225, 40, "hair", True), (225, 125, "skin", True), (90, 330, "upper-clothes", True),
          (40, 150, "upper-clothes", False)]
BUCKET = "ihp-bucket"  # the stand-in S3 bucket's name
LABEL_MAP = {"Shirt": "upper-clothes"}  # the backend's --label-studio-label-map


def free_port() -> int:
    """A port nobody listens on now (loopback); the server started next binds it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def readme_label_config() -> str:
    """The labelling config the README tells people to paste into Label Studio."""
    section = (REPO / "README.md").read_text().split("### Label Studio", 1)[1]
    match = re.search(r"```xml\n(.*?)```", section, re.S)
    assert match, "README's Label Studio section has no ```xml labelling config"
    return match.group(1).strip()


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def tail(path: Path, lines: int = 40) -> str:
    """The end of a server's log, for failure messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def process(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A server process in its own process group, stopped (group and all) on the way out."""
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            yield proc
        finally:
            for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue


def wait_until_up(url: str, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; fail early (with the log) if the process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited with {proc.returncode} before answering:\n{tail(log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        time.sleep(1)
    pytest.fail(f"{url} did not answer within {timeout_s:.0f} s:\n{tail(log)}")


@pytest.fixture(scope="module")
def label_studio_venv() -> Path:
    """Label Studio's cached venv: IHP_LABEL_STUDIO_VENV, or built by scripts/label_studio_env.sh."""
    if given := os.environ.get("IHP_LABEL_STUDIO_VENV"):
        return Path(given)
    try:
        done = subprocess.run(["bash", str(REPO / "scripts" / "label_studio_env.sh")], capture_output=True,
                              text=True, timeout=INSTALL_TIMEOUT_S, check=False)
        failure = None if done.returncode == 0 else f"exit {done.returncode}:\n{done.stderr[-3000:]}"
    except subprocess.TimeoutExpired:
        failure = f"no result within {INSTALL_TIMEOUT_S} s"
    if failure:
        message = f"cannot install Label Studio (scripts/label_studio_env.sh): {failure}"
        if on_ci():
            pytest.fail(message)
        pytest.skip(message)
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@dataclass(frozen=True)
class Bucket:
    url: str  # https://127.0.0.1:PORT, Label Studio's S3_ENDPOINT
    gets: list[tuple[str, str | None]]  # each GET's path and Authorization header


@pytest.fixture(scope="module")
def bucket(certificates) -> Iterator[Bucket]:
    """An https stand-in for an S3 bucket, on its own loopback port: HeadBucket (Label Studio's
    check when a storage is added) answers 200, and the photo is served to a GET whose URL is
    presigned (X-Amz-Signature: the URL is the credential; nothing here checks the signature)."""
    gets: list[tuple[str, str | None]] = []
    photo = PHOTO.read_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(200 if self.path.split("?")[0].rstrip("/") == f"/{BUCKET}" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            gets.append((self.path, self.headers.get("Authorization")))
            path, _, query = self.path.partition("?")
            if path == f"/{BUCKET}/{PHOTO.name}" and "X-Amz-Signature=" in query:
                reply(self, 200, photo, "image/jpeg")
            else:
                self.send_error(403)

        def log_message(self, *args) -> None:
            pass

    with loopback_server(Handler, certificates) as url:
        yield Bucket(url, gets)


@dataclass(frozen=True)
class LabelStudio:
    url: str
    api: httpx.Client  # authenticated with the user's legacy API token


@pytest.fixture(scope="module")
def label_studio(label_studio_venv, tmp_path_factory, bucket, certificates) -> Iterator[LabelStudio]:
    """A fresh Label Studio on a loopback port: SQLite in a temporary folder, nothing calling home,
    its S3 storages on the stand-in bucket."""
    data = tmp_path_factory.mktemp("label-studio-data")
    port = free_port()
    # A minimal environment: nothing of ours (or of a Label Studio configured on this machine)
    # leaks in. Label Studio reads each setting from NAME or LABEL_STUDIO_NAME.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    env.update({
        "LABEL_STUDIO_BASE_DATA_DIR": str(data), "DJANGO_DB": "sqlite",
        # no PyPI version check, analytics, Sentry reports or converter downloads: CI is offline
        "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "", "CONVERTER_DOWNLOAD_RESOURCES": "false", "FEATURE_FLAGS_OFFLINE": "true",
        "LOCAL_FILES_SERVING_ENABLED": "false",
        # Label Studio refuses ML backends on loopback/private addresses: ML_BLOCK_LOCAL_IP for
        # the backend itself, USE_DEFAULT_BANNED_SUBNETS for the webhook it adds along with it
        "ML_BLOCK_LOCAL_IP": "false", "USE_DEFAULT_BANNED_SUBNETS": "false",
        # room for a loaded 2-core CI machine (defaults: 1 s connect, 1 s health, 3 s setup)
        "ML_CONNECTION_TIMEOUT": "10", "ML_TIMEOUT_HEALTH": "30", "ML_TIMEOUT_SETUP": "30",
        "ML_TIMEOUT_PREDICT": "120",
        # S3 storages go to the stand-in bucket; an operator's S3_ENDPOINT may be on a private
        # address (a storage's own s3_endpoint may not), and boto3 trusts the test CA
        "S3_ENDPOINT": bucket.url, "AWS_CA_BUNDLE": str(certificates.ca),
    })
    command = [str(label_studio_venv / "bin" / "label-studio"), "start", "--no-browser",
               "--internal-host", "127.0.0.1", "--port", str(port), "--data-dir", str(data),
               "--username", USER, "--password", PASSWORD, "--user-token", TOKEN,
               # the legacy token (--user-token) authenticates this test's own client; the
               # backend gets a personal access token (see personal_access_token)
               "--enable-legacy-api-token"]
    log = data / "label-studio.log"
    url = f"http://127.0.0.1:{port}"
    with process(command, env, log) as proc:
        wait_until_up(url + "/health", proc, log, START_TIMEOUT_S)
        with httpx.Client(base_url=url, headers={"Authorization": f"Token {TOKEN}"}, timeout=120) as api:
            assert api.get("/api/current-user/whoami").status_code == 200, tail(log)
            yield LabelStudio(url, api)


@pytest.fixture(scope="module")
def personal_access_token(label_studio) -> str:
    """A JWT personal access token: the kind Label Studio >= 1.18 shows its users by default."""
    made = label_studio.api.post("/api/token/")
    assert made.status_code == 201, made.text
    return made.json()["token"]


@pytest.fixture(scope="module")
def backend_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ihp-rt-serve") / "serve.log"


@pytest.fixture(scope="module")
def backend_url(label_studio, personal_access_token, certificates, backend_log) -> Iterator[str]:
    """``ihp-rt serve`` with the shipped model, told where Label Studio is and given a personal
    access token, as a user would copy it from Label Studio's Account & Settings, requiring
    basic auth of Label Studio, with a label map, and trusting the bucket's CA as an operator
    trusts a private one (SSL_CERT_FILE)."""
    from ihp_rt.zoo import default_onnx_path

    port = free_port()
    log = backend_log
    env = {**os.environ, "LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": personal_access_token,
           "LABEL_STUDIO_ML_BASIC_AUTH": ":".join(BACKEND_AUTH), "SSL_CERT_FILE": str(certificates.ca)}
    command = [str(Path(sys.executable).parent / "ihp-rt"), "serve", "--host", "127.0.0.1", "--port", str(port),
               "--model", str(default_onnx_path()), "--backend", "onnxruntime", "--device", "cpu", "--threads", "1",
               "--label-studio-label-map", json.dumps(LABEL_MAP)]
    with process(command, env, log) as proc:
        wait_until_up(f"http://127.0.0.1:{port}/health", proc, log, 120)
        yield f"http://127.0.0.1:{port}/label-studio"


@pytest.fixture(scope="module")
def session():
    """The reference: a Session over the same model, backend and thread count as the server, with
    the network on every keypoint as the backend runs it for Label Studio."""
    from ihp_rt.backends import open_backend
    from ihp_rt.images import read_image
    from ihp_rt.session import Session
    from ihp_rt.zoo import default_onnx_path

    s = Session(open_backend(default_onnx_path(), "onnxruntime", device="cpu", threads=1), corrections=False)
    s.set_image(read_image(PHOTO))
    return s


@dataclass(frozen=True)
class Project:
    id: int
    task: int
    ml_backend: int
    image_url: str  # the task's data.image: an upload on the Label Studio host


def connect_backend(label_studio: LabelStudio, backend_url: str, pid: int) -> httpx.Response:
    """Connect our backend to a project as a user does; Label Studio calls our /health and
    /setup (with the project's config) before it answers."""
    return label_studio.api.post("/api/ml", json={
        "url": backend_url, "project": pid, "is_interactive": True, "title": "ihp-rt", "auth_method": "BASIC_AUTH",
        "basic_auth_user": BACKEND_AUTH[0], "basic_auth_pass": BACKEND_AUTH[1]})


def task_list(label_studio: LabelStudio, pid: int) -> list[dict]:
    tasks = label_studio.api.get("/api/tasks", params={"project": pid}).json()
    return tasks["tasks"] if isinstance(tasks, dict) else tasks


def make_project(label_studio: LabelStudio, backend_url: str, title: str, config: str) -> Project:
    """A project with this config, the photo uploaded as its task, our backend connected."""
    api = label_studio.api
    created = api.post("/api/projects", json={"title": title, "label_config": config})
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    imported = api.post(f"/api/projects/{pid}/import", files={"file": (PHOTO.name, PHOTO.read_bytes(), "image/jpeg")})
    assert imported.status_code == 201, imported.text
    tasks = task_list(label_studio, pid)
    assert len(tasks) == 1, tasks
    ml = connect_backend(label_studio, backend_url, pid)
    assert ml.status_code == 201, ml.text
    return Project(pid, tasks[0]["id"], ml.json()["id"], tasks[0]["data"]["image"])


@pytest.fixture(scope="module")
def project(label_studio, backend_url) -> Project:
    """A project with the README's config."""
    return make_project(label_studio, backend_url, "ihp-rt live test", readme_label_config())


def keypoint(index: int, x: int, y: int, label: str, positive: bool, size: tuple[int, int]) -> dict:
    """A smart keypoint as the front end serialises it: percent of the natural image size."""
    return {"id": f"kp{index}", "from_name": "click", "to_name": "image", "type": "keypointlabels",
            "origin": "manual", "original_width": size[0], "original_height": size[1], "image_rotation": 0,
            "value": {"x": (x + 0.5) * 100 / size[0], "y": (y + 0.5) * 100 / size[1], "width": 0.5,
                      "keypointlabels": [label], "labels": [label]},
            "is_positive": positive}


def ask(label_studio: LabelStudio, project: Project, points: list[dict], task: int | None = None) -> list[dict]:
    """Label Studio's interactive-annotating call, as the front end makes it, on the project's
    task (or another); the regions it returns."""
    reply = label_studio.api.post(f"/api/ml/{project.ml_backend}/interactive-annotating",
                                  json={"task": task or project.task, "context": {"result": points}})
    # pytest.fail, not assert: a broken request must not pass for the expected failures below
    if reply.status_code != 200 or "errors" in reply.json():  # backend failures come as 200 + errors
        pytest.fail(f"interactive-annotating answered {reply.status_code}: {reply.text[:2000]}")
    return reply.json()["data"]["result"]


def forget_keypoints(label_studio: LabelStudio, project: Project) -> None:
    """What the front end sends when the last keypoint of a label is deleted: no keypoints. The
    backend then forgets all of the task's keypoints, so each test starts from none."""
    assert ask(label_studio, project, []) == []


def expected_mask(session, clicks: list[tuple[int, int, str, bool]]) -> np.ndarray:
    """The Session's label map for clicks; a negative keypoint is a background click."""
    session.reset()
    for x, y, label, positive in clicks:
        session.add_click(x, y, label if positive else 0)
    return session.predict().labels


def assert_regions_match(regions: list[dict], mask: np.ndarray, config_labels: set[str], names: tuple[str, ...]
                         ) -> None:
    """One brush region per config label present in the mask, each decoding to exactly that part."""
    from ihp_rt.serving.brush_rle import decode_brush_rle

    height, width = mask.shape
    present = {names[c] for c in np.unique(mask) if c} & config_labels
    by_label = {r["value"]["brushlabels"][0]: r for r in regions}
    assert len(by_label) == len(regions), "two regions for one label"
    assert set(by_label) == present
    for name, r in by_label.items():
        assert (r["from_name"], r["to_name"], r["type"]) == ("parts", "image", "brushlabels")
        assert (r["original_width"], r["original_height"], r["value"]["format"]) == (width, height, "rle")
        painted = decode_brush_rle(r["value"]["rle"], height, width) == 255
        assert np.array_equal(painted, mask == names.index(name)), f"{name}: differs from the Session's mask"


def config_labels() -> set[str]:
    from ihp_rt.serving.label_studio.label_config import parse_config

    return set(parse_config(readme_label_config()).brush_labels)


def test_label_studio_connects_the_backend(label_studio, project) -> None:
    """Connecting ran our /health and /setup: Label Studio calls the backend connected."""
    ml = label_studio.api.get(f"/api/ml/{project.ml_backend}").json()
    assert ml["state"] == "CO", ml  # "Connected"; "ER" carries our /setup's refusal in error_message
    assert ml["is_interactive"] is True
    assert project.image_url.startswith("/data/upload/"), project.image_url  # fetched from Label Studio


def test_the_backend_takes_only_label_studio_with_its_basic_auth(label_studio, project, backend_url) -> None:
    """Without the basic auth (or with another password) the backend refuses, and Label Studio
    reports that as wrong authentication parameters; with it (the project's backend) it connected."""
    assert httpx.get(backend_url + "/health", timeout=60).status_code == 401
    assert httpx.get(backend_url + "/health", auth=BACKEND_AUTH, timeout=60).status_code == 200
    wrong = label_studio.api.post("/api/ml", json={"url": backend_url, "project": project.id, "title": "wrong",
                                                   "auth_method": "BASIC_AUTH", "basic_auth_user": BACKEND_AUTH[0],
                                                   "basic_auth_pass": "guess"})
    assert wrong.status_code == 400 and "authentication parameters" in wrong.text, wrong.text


def test_front_end_clicks_give_the_sessions_masks(label_studio, project, session) -> None:
    """Each click, sent as the front end sends it (its label's keypoints only), comes back as the
    Session's mask for every keypoint placed so far."""
    forget_keypoints(label_studio, project)
    size = session.image_size[::-1]
    names = session.labels.names
    placed: list[tuple[int, int, str, bool]] = []
    for click in CLICKS:
        placed.append(click)
        sent = [(j, c) for j, c in enumerate(placed) if c[2] == click[2]]  # the new keypoint's label group
        points = [keypoint(j, *c, size) for j, c in sent]
        assert_regions_match(ask(label_studio, project, points), expected_mask(session, placed), config_labels(),
                             names)


def test_all_keypoints_in_one_request(label_studio, project, session) -> None:
    """Every keypoint in one context (an API client may send them so): the Session's mask for all."""
    forget_keypoints(label_studio, project)
    size = session.image_size[::-1]
    points = [keypoint(i, *c, size) for i, c in enumerate(CLICKS)]
    regions = ask(label_studio, project, points)
    assert_regions_match(regions, expected_mask(session, CLICKS), config_labels(), session.labels.names)
    assert {r["value"]["brushlabels"][0] for r in regions} == config_labels()  # the photo shows all three parts


def test_front_end_clicks_on_other_parts_are_kept(label_studio, project, session) -> None:
    """After clicking every part in turn, the mask uses all the clicks, as the web page's does
    (it once used only the last label's: the regression this pins)."""
    forget_keypoints(label_studio, project)
    size = session.image_size[::-1]
    placed: list[tuple[int, int, str, bool]] = []
    regions: list[dict] = []
    for click in CLICKS:
        placed.append(click)
        regions = ask(label_studio, project, [keypoint(j, *c, size) for j, c in enumerate(placed)
                                              if c[2] == click[2]])
    last_group = [c for c in CLICKS if c[2] == CLICKS[-1][2]]
    if np.array_equal(expected_mask(session, CLICKS), expected_mask(session, last_group)):
        pytest.skip("with this model these clicks cannot tell the two behaviours apart")
    assert_regions_match(regions, expected_mask(session, CLICKS), config_labels(), session.labels.names)


def test_front_end_deletions(label_studio, project, session) -> None:
    """Deleting a keypoint that is not its label's last sends the rest of that label: the group is
    replaced, the others kept. Deleting a label's last sends nothing, through Label Studio as
    well: every keypoint is forgotten, and the next click starts afresh."""
    forget_keypoints(label_studio, project)
    size = session.image_size[::-1]
    names = session.labels.names
    for i, click in enumerate(CLICKS):
        ask(label_studio, project, [keypoint(j, *c, size) for j, c in enumerate(CLICKS[:i + 1]) if c[2] == click[2]])
    # the negative keypoint deleted: upper-clothes now has its positive one only
    regions = ask(label_studio, project, [keypoint(2, *CLICKS[2], size)])
    assert_regions_match(regions, expected_mask(session, CLICKS[:3]), config_labels(), names)
    forget_keypoints(label_studio, project)  # hair's only keypoint deleted: Label Studio forwards []
    regions = ask(label_studio, project, [keypoint(1, *CLICKS[1], size)])  # skin's keypoint moved
    assert_regions_match(regions, expected_mask(session, CLICKS[1:2]), config_labels(), names)


def test_personal_access_tokens_fetch_images_as_bearer(label_studio, project, personal_access_token) -> None:
    """How a client fetches a task image with a personal access token: exchange it, send Bearer."""
    access = httpx.post(label_studio.url + "/api/token/refresh/", json={"refresh": personal_access_token},
                        timeout=60)
    assert access.status_code == 200, access.text
    image = httpx.get(label_studio.url + project.image_url, timeout=60,
                      headers={"Authorization": f"Bearer {access.json()['access']}"})
    assert image.status_code == 200 and image.content == PHOTO.read_bytes()
    as_legacy = httpx.get(label_studio.url + project.image_url, timeout=60,
                          headers={"Authorization": f"Token {personal_access_token}"})
    assert as_legacy.status_code == 401  # what the backend once sent, and what it must not


def test_backend_fetches_task_images_with_either_kind_of_token(label_studio, project,
                                                               personal_access_token) -> None:
    """A personal access token (exchanged, sent as Bearer, the access token kept) and a legacy
    token (sent as Token) both fetch the uploaded image; an unknown PAT is a clear error."""
    from ihp_rt.serving.errors import Misconfigured
    from ihp_rt.serving.label_studio import LabelStudioHost
    from ihp_rt.serving.label_studio.fetch import fetch_image
    from ihp_rt.serving.label_studio.tokens import jwt_claims

    assert jwt_claims(personal_access_token)["token_type"] == "refresh"  # what the backend goes by
    host = LabelStudioHost(label_studio.url, personal_access_token)
    for _ in range(2):
        assert fetch_image(project.image_url, host, 10 << 20) == PHOTO.read_bytes()
    assert fetch_image(project.image_url, LabelStudioHost(label_studio.url, TOKEN), 10 << 20) == PHOTO.read_bytes()
    head, claims, signature = personal_access_token.split(".")
    forged = ".".join([head, claims, signature[::-1]])  # same claims, bad signature: Label Studio refuses it
    with pytest.raises(Misconfigured, match="revoked, expired"):
        fetch_image(project.image_url, LabelStudioHost(label_studio.url, forged), 10 << 20)


def import_task(label_studio: LabelStudio, project: Project, image: str) -> int:
    """Import a task (as JSON) whose data.image is ``image``; its id."""
    imported = label_studio.api.post(f"/api/projects/{project.id}/import", params={"return_task_ids": True},
                                     json=[{"image": image}])
    assert imported.status_code == 201, imported.text
    return imported.json()["task_ids"][0]


def test_data_uri_task_needs_no_token(label_studio, project, session) -> None:
    """A task whose image is a data: URI (imported as JSON) is clicked like an uploaded one."""
    task = import_task(label_studio, project, "data:image/jpeg;base64," + base64.b64encode(PHOTO.read_bytes()).decode())
    size = session.image_size[::-1]  # a new task: it starts without keypoints
    assert_regions_match(ask(label_studio, project, [keypoint(0, *CLICKS[0], size)], task),
                         expected_mask(session, CLICKS[:1]), config_labels(), session.labels.names)


def test_a_cloud_storage_task_comes_through_a_presigned_redirect(label_studio, project, bucket, session) -> None:
    """The project's S3 storage serves presigned URLs (Label Studio's default); its task holds
    the s3:// URI. Label Studio's resolve/ redirects the backend to the URL it presigned, on the
    bucket's host, which the backend asks without the token."""
    api = label_studio.api
    storage = api.post("/api/storages/s3", json={
        "project": project.id, "title": "stand-in bucket", "bucket": BUCKET, "presign": True, "use_blob_urls": True,
        "region_name": "us-east-1", "aws_access_key_id": "ihp-rt-test", "aws_secret_access_key": "ihp-rt-test-key"})
    assert storage.status_code == 201, storage.text
    task = import_task(label_studio, project, f"s3://{BUCKET}/{PHOTO.name}")
    bucket.gets.clear()
    size = session.image_size[::-1]
    for clicks in (CLICKS[:1], CLICKS[:2]):  # the second click finds the image kept
        regions = ask(label_studio, project, [keypoint(i, *c, size) for i, c in enumerate(clicks)], task)
        assert_regions_match(regions, expected_mask(session, clicks), config_labels(), session.labels.names)
    assert len(bucket.gets) == 1, bucket.gets
    path, authorization = bucket.gets[0]
    assert path.startswith(f"/{BUCKET}/{PHOTO.name}?") and "X-Amz-Signature=" in path and authorization is None


def test_regions_come_back_under_the_projects_own_label_names(label_studio, backend_url, backend_log,
                                                              session) -> None:
    """A project that spells its labels its own way -- Hair, Skin, and Shirt, which the backend's
    label map makes upper-clothes -- connects and gets its regions under those names; a project
    with a label the model lacks cannot connect the backend (Label Studio says its /setup
    refused, and the backend's log says which label)."""
    spelled = {"hair": "Hair", "skin": "Skin", **{name: spelling for spelling, name in LABEL_MAP.items()}}
    config = readme_label_config()
    for name, spelling in spelled.items():
        assert f'value="{name}"' in config, name
        config = config.replace(f'value="{name}"', f'value="{spelling}"')
    project = make_project(label_studio, backend_url, "ihp-rt label names", config)
    size = session.image_size[::-1]
    points = [keypoint(i, x, y, spelled[label], positive, size) for i, (x, y, label, positive) in enumerate(CLICKS)]
    names = tuple(spelled.get(name, name) for name in session.labels.names)
    assert_regions_match(ask(label_studio, project, points), expected_mask(session, CLICKS), set(spelled.values()),
                         names)

    created = label_studio.api.post("/api/projects", json={"title": "ihp-rt unknown label",
                                                           "label_config": config.replace('"Skin"', '"Tail"')})
    assert created.status_code == 201, created.text
    refused = connect_backend(label_studio, backend_url, created.json()["id"])
    assert refused.status_code == 400 and "label-studio/setup" in refused.text, refused.text
    refusals = [json.loads(line) for line in backend_log.read_text().splitlines()
                if line.startswith('{"event": "label-studio-setup-refused"')]
    assert len(refusals) == 1 and "'Tail'" in refusals[0]["detail"], refusals
