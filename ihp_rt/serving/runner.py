"""Running the app under uvicorn: in the foreground (``ihp-rt serve``) or in a thread on a
free loopback port (the load test and the browser test, which need a real socket)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ihp_rt.errors import BackendError


def _uvicorn():
    try:
        import uvicorn
    except ImportError as e:
        raise BackendError(f"serving needs the serve extra: pip install 'ihp-rt[serve]' ({e})") from None
    return uvicorn


def configure_logging(level: int = logging.INFO) -> None:
    """One JSON object per line on stderr (the app's own access log; uvicorn's is turned off)."""
    logging.basicConfig(level=level, format="%(message)s")


def serve_forever(app, host: str, port: int) -> None:
    configure_logging()
    _uvicorn().run(app, host=host, port=port, access_log=False, ws_max_size=1 << 16)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int | None = None, timeout_s: float = 30.0) -> Iterator[str]:
    """Serve ``app`` in a daemon thread; yields its base URL and stops it on exit."""
    uvicorn = _uvicorn()
    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning",
                                           ws_max_size=1 << 16))
    thread = threading.Thread(target=server.run, name="ihp-rt-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(timeout_s)
            raise BackendError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout_s)


@contextmanager
def spawn_server(args: list[str], host: str = "127.0.0.1", timeout_s: float = 120.0) -> Iterator[str]:
    """``ihp-rt serve ARGS`` in a child process on a free port (so load and server do not share
    a GIL); yields its base URL once /health answers, and stops it on exit."""
    import subprocess
    import sys
    import tempfile
    import urllib.request

    port = free_port(host)
    command = [sys.executable, "-m", "ihp_rt.cli", "serve", "--host", host, "--port", str(port), *args]
    log = tempfile.TemporaryFile("w+")  # a pipe nobody reads would fill up and stall the server
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, text=True)
    url = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise BackendError(f"`{' '.join(command)}` exited with {process.returncode}: {log.read()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise BackendError(f"the server at {url} did not answer within {timeout_s:g} s") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
