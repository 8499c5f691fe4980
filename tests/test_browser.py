"""The annotation page in a real headless Chromium (Debian's), driven by Playwright, against the
real server on a loopback port with the shipped default model.

A person opens the bundled photo, picks two parts with the keyboard, clicks once on each, and
downloads the label PNG and the click list: the overlay must turn the part's colour where
they clicked, and the downloaded files must hold those labels and clicks.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ihp_rt.benchmarks.page_screenshot import CHROMIUM_ARGS, chromium_path, click_image, wait_updates
from tests.conftest import EXAMPLES

pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
playwright = pytest.importorskip("playwright.sync_api", reason="the dev extra (playwright) is not installed")

CHROMIUM = os.environ.get("IHP_CHROMIUM", chromium_path())
if not Path(CHROMIUM).is_file():
    pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium package (scripts/test.sh does, as root) "
                "or point IHP_CHROMIUM at a Chromium binary", allow_module_level=True)

@pytest.fixture(scope="module")
def server_url():
    from ihp_rt.backends import open_backend
    from ihp_rt.serving.app import create_app
    from ihp_rt.serving.runner import serve_in_thread
    from ihp_rt.session import SharedBackend
    from ihp_rt.zoo import default_onnx_path

    app = create_app(SharedBackend(open_backend(default_onnx_path(), "onnxruntime")))
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture
def page(server_url):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1200, "height": 900}, accept_downloads=True)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server_url)
        yield page
        browser.close()
        assert not errors, f"JavaScript errors on the page: {errors}"


def overlay_pixel(page, x: int, y: int) -> list[int]:
    return page.evaluate(
        "([x, y]) => Array.from(document.getElementById('overlay').getContext('2d').getImageData(x, y, 1, 1).data)",
        [x, y])


def test_parse_a_person_in_the_page(page, tmp_path) -> None:
    page.wait_for_selector("#legend li", timeout=30_000)
    names = page.locator("#legend li").all_inner_texts()
    assert names[2].startswith("hair") and names[4].startswith("upper-clothes")
    palette = {name: page.evaluate(f"document.querySelectorAll('#legend .swatch')[{i}].style.background")
               for i, name in ((2, "hair"), (4, "upper-clothes"))}

    page.set_input_files("#file", str(EXAMPLES / "astronaut.jpg"))
    page.wait_for_selector("#status:has-text('Ready')", timeout=30_000)
    assert overlay_pixel(page, 225, 40)[3] == 0  # nothing drawn before the first click

    page.keyboard.press("3")  # hair's shortcut
    assert page.locator("#legend li.selected").inner_text().startswith("hair")
    click_image(page, 225, 40)
    wait_updates(page, 1)
    hair = overlay_pixel(page, 225, 40)
    assert hair[3] == 255 and f"rgb({hair[0]}, {hair[1]}, {hair[2]})" == palette["hair"]

    page.keyboard.press("5")  # upper-clothes
    click_image(page, 90, 330)
    wait_updates(page, 2)
    clothes = overlay_pixel(page, 90, 330)
    assert f"rgb({clothes[0]}, {clothes[1]}, {clothes[2]})" == palette["upper-clothes"]
    assert overlay_pixel(page, 225, 40) == hair  # the first part kept its label
    assert "ms round trip" in page.locator("#latency").inner_text()

    with page.expect_download() as download:
        page.click("#download-png")
    labels = np.asarray(Image.open(download.value.path()))
    assert labels.shape == (512, 512) and labels.dtype == np.uint8
    assert labels[40, 225] == 2 and labels[330, 90] == 4
    assert set(np.unique(labels)) <= set(range(15)) and (labels == 4).sum() > 1000
    with page.expect_download() as download:
        page.click("#download-clicks")
    clicks = json.loads(Path(download.value.path()).read_text())
    assert clicks == {"clicks": [{"x": 225, "y": 40, "label": "hair"}, {"x": 90, "y": 330, "label": "upper-clothes"}]}

    page.keyboard.press("z")  # undo the upper-clothes click
    wait_updates(page, 3)
    assert "1 clicks" in page.locator("#latency").inner_text()
    assert page.evaluate("getComputedStyle(document.getElementById('overlay')).opacity") == "0.55"
    page.keyboard.press("]")
    assert page.evaluate("getComputedStyle(document.getElementById('overlay')).opacity") == "0.65"


def test_the_page_reports_a_refused_upload(page, tmp_path) -> None:
    page.wait_for_selector("#legend li", timeout=30_000)
    bogus = tmp_path / "notes.png"
    bogus.write_text("this is not a picture")
    page.set_input_files("#file", str(bogus))
    page.wait_for_selector("#status.error", timeout=30_000)
    assert "not a readable image" in page.locator("#status").inner_text()
