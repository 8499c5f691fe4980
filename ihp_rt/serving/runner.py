"""Running the app under uvicorn: in the foreground (``ihp-rt serve``), in a thread on a
free loopback port (the browser test), or as worker processes (the load and fault tests),
with a throw-away ``redis-server`` when workers share sessions."""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
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


class ServerProcess:
    """One ``ihp-rt serve`` child process on a loopback port, its stderr kept in a file (a pipe
    nobody reads would fill up and stall the server)."""

    def __init__(self, args: list[str], host: str = "127.0.0.1") -> None:
        self.port = free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.command = [sys.executable, "-m", "ihp_rt.cli", "serve", "--host", host, "--port", str(self.port), *args]
        self._log = tempfile.TemporaryFile("w+")
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=self._log, text=True)

    def log(self) -> str:
        """Everything the server wrote to stderr so far (its JSON access log among it)."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read()

    def wait_ready(self, deadline: float) -> None:
        """Return once /health answers; raise with the server's last words if it exits or the deadline passes."""
        import urllib.request

        while True:
            if self.process.poll() is not None:
                raise BackendError(f"`{' '.join(self.command)}` exited with {self.process.returncode}: "
                                   f"{self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise BackendError(f"the server at {self.url} did not answer in time") from None
                time.sleep(0.2)

    def stop(self) -> None:
        """Terminate (kill if it lingers); harmless on a process already dead."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait()
        self._log.close()


@contextmanager
def spawn_servers(args: list[str], count: int = 1, host: str = "127.0.0.1",
                  timeout_s: float = 120.0) -> Iterator[list[ServerProcess]]:
    """``count`` processes of ``ihp-rt serve ARGS``, started together (so load and server do not
    share a GIL); yields them once each answers /health, and stops them all on exit."""
    servers: list[ServerProcess] = []
    try:
        for _ in range(count):
            servers.append(ServerProcess(args, host))
        deadline = time.monotonic() + timeout_s
        for server in servers:
            server.wait_ready(deadline)
        yield servers
    finally:
        for server in servers:
            server.stop()


@contextmanager
def spawn_server(args: list[str], host: str = "127.0.0.1", timeout_s: float = 120.0) -> Iterator[str]:
    """One ``ihp-rt serve ARGS`` process on a free port; yields its base URL."""
    with spawn_servers(args, 1, host, timeout_s) as (server,):
        yield server.url


@contextmanager
def spawn_redis(port: int | None = None, host: str = "127.0.0.1", timeout_s: float = 30.0,
                options: Sequence[str] = ()) -> Iterator[str]:
    """A throw-away ``redis-server`` on a loopback port, persistence off, in a temporary folder;
    yields its URL and stops it on exit. ``port`` picks the port (to restart one in place);
    ``options`` go to redis-server after the defaults (``--maxmemory 2mb``, ...)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BackendError("redis-server is not installed (Debian: apt-get install redis-server)")
    port = port or free_port(host)
    with tempfile.TemporaryDirectory(prefix="ihp-rt-redis-") as folder:
        process = subprocess.Popen([binary, "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no",
                                    "--dir", folder, "--protected-mode", "yes", *options],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout_s
            while not _redis_answers(host, port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise BackendError(f"redis-server on {host}:{port} did not start")
                time.sleep(0.05)
            yield f"redis://{host}:{port}/0"
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _redis_answers(host: str, port: int) -> bool:
    """PING over a plain socket: no client library needed to know the server is up."""
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False
