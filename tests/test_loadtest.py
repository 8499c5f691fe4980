"""The bounded load test: real server process, real sockets, concurrent sessions."""

from __future__ import annotations

import json

import pytest

from tests.conftest import EXAMPLES

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")


def test_loadtest_against_a_spawned_server_has_no_errors(tmp_path) -> None:
    from ihp_rt.cli import main

    assert main(["loadtest", "--sessions", "3", "--clicks", "4", "--max-duration", "300", "-o", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "load.json").read_text())
    s = report["summary"]
    assert (s["sessions"], s["clicks_planned"], s["clicks_done"], s["errors"]) == (3, 12, 12, 0)
    assert len(report["latencies_ms"]) == 12 and 0 < s["p50_ms"] <= s["p95_ms"] <= s["max_ms"]
    assert s["clicks_per_s"] > 0 and "cores" in report["machine"]
    assert "| 1 | 3 | ws | 12 / 12 | 0 |" in (tmp_path / "load.md").read_text()


def test_loadtest_counts_refusals_as_errors(tiny_checkpoint) -> None:
    import httpx

    from ihp_rt.backends import open_backend
    from ihp_rt.serving import ServeConfig
    from ihp_rt.serving.app import create_app
    from ihp_rt.serving.loadtest import run_load
    from ihp_rt.serving.runner import serve_in_thread
    from ihp_rt.session import SharedBackend

    app = create_app(SharedBackend(open_backend(tiny_checkpoint, "torch")), ServeConfig(max_sessions=1))
    image = (EXAMPLES / "astronaut.jpg").read_bytes()
    with serve_in_thread(app) as url:
        httpx.post(url + "/sessions", files={"image": ("a.jpg", image)}).raise_for_status()  # takes the only slot
        report = run_load(url, image, sessions=3, clicks_per_session=3, max_duration_s=120, transport="http")
        assert httpx.get(url + "/health").json() == {"status": "ok"}
    assert report.summary["errors"] == 3 and report.clicks_done == 0
    assert all("429" in e and "maximum of 1 sessions" in e for e in report.errors)


def test_loadtest_against_two_workers_sharing_one_redis(tmp_path) -> None:
    """`--workers 2` starts a throw-away redis-server and two servers on it; over HTTP each
    session's clicks alternate between them, and the report is the same table."""
    import shutil

    from ihp_rt.cli import main

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
    argv = ["loadtest", "--workers", "2", "--threads", "1", "--sessions", "2", "--clicks", "3", "--transport", "http",
            "--max-duration", "300", "-o", str(tmp_path)]
    assert main(argv) == 0
    report = json.loads((tmp_path / "load.json").read_text())
    s = report["summary"]
    assert (s["workers"], s["sessions"], s["clicks_done"], s["errors"]) == (2, 2, 6, 0)
    assert len(set(report["url"].split())) == 2
    assert "| 2 | 2 | http | 6 / 6 | 0 |" in (tmp_path / "load.md").read_text()


@pytest.mark.parametrize("extra", [["--workers", "2"], ["--redis", "redis://127.0.0.1:9/0"], ["--threads", "1"],
                                   ["--cache-images", "0"], ["--model", "m.onnx"]])
def test_loadtest_refuses_options_of_started_servers_with_url(tmp_path, capsys, extra) -> None:
    """--url runs the load against servers already running: --workers and the other options of
    the servers this command would start cannot apply, and are refused rather than ignored."""
    from ihp_rt.cli import main

    assert main(["loadtest", "--url", "http://127.0.0.1:9", *extra, "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ihp-rt: error: ") and extra[0] in err and "--url" in err
    assert not (tmp_path / "load.json").exists()  # refused before any load ran
