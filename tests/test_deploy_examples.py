"""The deployment examples work as shipped: examples/deploy/nginx.conf, run by Debian's nginx
on loopback in front of two ``ihp-rt serve --redis`` workers (one killed half-way), and
examples/deploy/kubernetes.yaml, checked against the real command line and routes."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
pytest.importorskip("redis", reason="the serve extra (redis client) is not installed")
import httpx

from ihp_rt.serving.runner import free_port, spawn_redis, spawn_servers
from tests.conftest import EXAMPLES, REPO

DEPLOY = REPO / "examples" / "deploy"


def nginx_config(tmp: Path, workers: list[str], port: int) -> Path:
    """The example, its loopback ports swapped for the test's, inside a main config that keeps
    every file nginx writes in ``tmp``."""
    example = (DEPLOY / "nginx.conf").read_text()
    for placeholder, url in zip(("127.0.0.1:8001", "127.0.0.1:8002"), workers, strict=True):
        assert placeholder in example
        example = example.replace(placeholder, url.removeprefix("http://"))
    assert "listen 127.0.0.1:8080;" in example
    (tmp / "ihp-rt.conf").write_text(example.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{port};"))
    temp = " ".join(f"{kind}_temp_path {tmp / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = tmp / "nginx.conf"
    main.write_text(f"pid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'};\nevents {{ worker_connections 64; }}\n"
                    f"http {{ access_log {tmp / 'access.log'}; {temp} include {tmp / 'ihp-rt.conf'}; }}\n")
    return main


@pytest.fixture
def nginx(tmp_path) -> Iterator[tuple[str, list]]:
    """nginx from Debian's packages with the example config, before two workers and one Redis."""
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx; scripts/test.sh does this as root)")
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    with spawn_redis() as redis_url, spawn_servers(["--threads", "1", "--redis", redis_url], 2) as workers:
        port = free_port()
        config = nginx_config(tmp_path, [w.url for w in workers], port)
        base = [binary, "-p", str(tmp_path), "-c", str(config), "-e", str(tmp_path / "error.log")]
        checked = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr  # the example parses
        # one process, in the foreground: no daemon or workers to leave behind, no user switch
        process = subprocess.Popen([*base, "-g", "daemon off; master_process off;"], stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "error.log").read_text()
                time.sleep(0.1)
            yield url, workers
        finally:
            process.terminate()
            process.wait(10)


def clicked_paths(log: str) -> list[str]:
    return [json.loads(line)["path"] for line in log.splitlines()
            if line.startswith('{"event": "request"') and json.loads(line)["path"].endswith("/clicks")]


def label_studio_paths(log: str) -> list[str]:
    return [json.loads(line)["path"] for line in log.splitlines()
            if line.startswith('{"event": "request"') and json.loads(line)["path"].startswith("/label-studio")]


def test_the_nginx_example_spreads_one_session_over_both_workers_and_survives_one(nginx) -> None:
    from websockets.sync.client import connect

    url, (a, b) = nginx
    created = httpx.post(url + "/sessions", files={"image": ("a.jpg", (EXAMPLES / "astronaut.jpg").read_bytes())},
                         timeout=60)
    assert created.status_code == 201, created.text
    sid = created.json()["session_id"]
    rng = np.random.default_rng(1)
    clicks = [{"x": int(rng.integers(512)), "y": int(rng.integers(512)), "label": int(rng.integers(15))}
              for _ in range(8)]
    for click in clicks[:4]:
        reply = httpx.post(f"{url}/sessions/{sid}/clicks", json=click, timeout=60)
        assert reply.status_code == 200, reply.text
    assert clicked_paths(a.log()) and clicked_paths(b.log())  # round robin: both workers served this session
    for _ in range(4):  # the Label Studio backend keeps keypoints per worker: all of it goes to one
        assert httpx.get(url + "/label-studio/health", timeout=30).status_code == 200
    assert [len(label_studio_paths(w.log())) for w in (a, b)] == [4, 0]

    with connect(url.replace("http", "ws", 1) + f"/sessions/{sid}/ws", open_timeout=30) as socket:  # upgrade passes
        socket.send(json.dumps({"op": "undo"}))
        assert len(json.loads(socket.recv(timeout=60))["clicks"]) == 3

    b.process.send_signal(signal.SIGKILL)
    b.process.wait(30)
    for click in clicks[4:]:  # nginx passes each request on to the worker still alive
        reply = httpx.post(f"{url}/sessions/{sid}/clicks", json=click, timeout=60)
        assert reply.status_code == 200, reply.text
    final = httpx.get(f"{url}/sessions/{sid}/clicks", timeout=60).json()["clicks"]
    assert [(c["x"], c["y"]) for c in final] == [(c["x"], c["y"]) for c in clicks[:3] + clicks[4:]]


def redis_bytes(size: str) -> int:
    """A Redis memory size: 1k is 1000 bytes, 1kb 1024 (redis.conf's units)."""
    number, unit = re.fullmatch(r"(\d+)([a-z]*)", size.lower()).groups()
    return int(number) * {"": 1, "k": 10**3, "kb": 2**10, "m": 10**6, "mb": 2**20, "g": 10**9, "gb": 2**30}[unit]


def kubernetes_bytes(size: str) -> int:
    """A Kubernetes memory quantity (the binary suffixes used here)."""
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", size).groups()
    return int(number) * {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}[unit]


WORKER_PROCESS_BYTES = 512 * 2**20  # Python, the runtime and the model: a started `serve` held 483 MiB
UPLOAD_PEAK_BYTES = 600 * 2**20  # decoding a 40-megapixel upload raised that process's peak by 540 MiB


def worker_memory_bytes(config) -> int:
    """What a worker may hold: the process, its pre-processed images (3 float32 channels at the
    shipped model's input size), its cached masks (--cache-mb) and one upload being decoded."""
    from ihp_rt.backends import open_backend
    from ihp_rt.zoo import default_onnx_path

    size = open_backend(default_onnx_path(), "onnxruntime", threads=1).spec.input_size
    return WORKER_PROCESS_BYTES + config.cached_images * 3 * size * size * 4 + config.mask_cache_bytes + \
        UPLOAD_PEAK_BYTES


def test_the_kubernetes_example_matches_the_command_line_and_routes() -> None:
    yaml = pytest.importorskip("yaml")
    from ihp_rt.cli import _serve_config, build_parser

    manifest = yaml.safe_load_all((DEPLOY / "kubernetes.yaml").read_text())
    documents = {(d["kind"], d["metadata"]["name"]): d for d in manifest}
    redis_service = documents[("Service", "ihp-rt-redis")]
    (worker,) = documents[("Deployment", "ihp-rt")]["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(worker["args"])
    assert args.func.__name__ == "cmd_serve" and _serve_config(args).max_sessions > 0
    assert args.redis == f"redis://{redis_service['metadata']['name']}:{redis_service['spec']['ports'][0]['port']}/0"
    assert args.port == worker["ports"][0]["containerPort"] == documents[("Service", "ihp-rt")]["spec"]["ports"][0][
        "targetPort"]
    assert args.host == "0.0.0.0"  # reachable from the Service, not loopback only
    for probe in ("readinessProbe", "livenessProbe"):
        assert worker[probe]["httpGet"] == {"path": "/health", "port": args.port}
    (redis,) = documents[("Deployment", "ihp-rt-redis")]["spec"]["template"]["spec"]["containers"]
    assert redis["args"][:4] == ["--save", "", "--appendonly", "no"]
    # Redis holds every session's upload: room for all of them at their largest, or a full
    # Redis refuses (503) sessions the limits promised; and the container's limit above that
    options = dict(zip(redis["args"][::2], redis["args"][1::2], strict=True))
    config = _serve_config(args)
    assert options["--maxmemory-policy"] == "noeviction"
    assert redis_bytes(options["--maxmemory"]) >= config.max_sessions * config.max_upload_bytes * 1.05
    assert kubernetes_bytes(redis["resources"]["limits"]["memory"]) > redis_bytes(options["--maxmemory"]) * 1.2
    # and each worker's limit holds its caches at their fullest on top of the process and one upload
    assert kubernetes_bytes(worker["resources"]["limits"]["memory"]) >= worker_memory_bytes(config)
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    command = json.loads(dockerfile.split("CMD ", 1)[1].splitlines()[0])
    assert build_parser().parse_args(command).func.__name__ == "cmd_serve"
    assert all((REPO / shlex.split(line)[1]).exists() for line in dockerfile.splitlines()
               if line.startswith("COPY ") and not line.startswith("COPY pyproject"))


def test_the_kubernetes_example_sends_label_studio_to_one_pod() -> None:
    """The Label Studio backend keeps each task's keypoints in its pod's memory, so Label Studio
    must reach one pod, never the round-robin Service: a single-replica Deployment (replaced
    with Recreate, never two at once) behind a Service of its own that selects only that pod."""
    yaml = pytest.importorskip("yaml")
    from ihp_rt.cli import build_parser

    text = (DEPLOY / "kubernetes.yaml").read_text()
    documents = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(text)}
    deployment = documents[("Deployment", "ihp-rt-label-studio")]
    service = documents[("Service", "ihp-rt-label-studio")]
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == pod_labels
    assert service["spec"]["selector"].items() <= pod_labels.items()
    others = documents[("Deployment", "ihp-rt")]["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= others.items()  # the workers are not behind it
    assert not documents[("Service", "ihp-rt")]["spec"]["selector"].items() <= pod_labels.items()  # nor it theirs
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.func.__name__ == "cmd_serve" and args.host == "0.0.0.0"
    assert args.port == container["ports"][0]["containerPort"] == service["spec"]["ports"][0]["targetPort"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": args.port}
    env = {e["name"]: e for e in container["env"]}
    assert env.keys() == {"LABEL_STUDIO_URL", "LABEL_STUDIO_API_KEY", "LABEL_STUDIO_ML_BASIC_AUTH"}
    # Basic auth is optional: a Secret without that key must not keep the pod from starting
    assert env["LABEL_STUDIO_ML_BASIC_AUTH"]["valueFrom"]["secretKeyRef"]["optional"] is True
    assert "secretKeyRef" in env["LABEL_STUDIO_API_KEY"]["valueFrom"]
    assert f"http://{service['metadata']['name']}/label-studio" in text  # what to give Label Studio
