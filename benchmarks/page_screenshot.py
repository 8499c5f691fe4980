"""The README's picture of the annotation page: the bundled photo parsed from five clicks,
made in headless Chromium by Playwright (the dev extra) against a real server.

    python -m ihp_rt.benchmarks.page_screenshot -o benchmarks/results/serve_page.png

The browser helpers here are also what tests/test_browser.py drives the page with.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

# As root there is no sandbox to use; the rest keeps Chromium off the network this machine closes.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"
# (class shortcut key, x, y): hair, skin, upper-clothes twice, background
CLICKS = [("3", 225, 40), ("t", 225, 125), ("5", 90, 330), ("5", 320, 300), ("1", 40, 150)]


def chromium_path() -> str:
    return shutil.which("chromium") or "/usr/bin/chromium"


def click_image(page, x: int, y: int, button: str = "left") -> None:
    """Click image pixel (x, y) wherever the page has scaled the canvas to."""
    box = page.locator("#marks").bounding_box()
    scale = box["width"] / page.evaluate("document.getElementById('marks').width")
    page.mouse.click(box["x"] + (x + 0.5) * scale, box["y"] + (y + 0.5) * scale, button=button)


def wait_updates(page, count: int) -> None:
    """Wait until the page has drawn its ``count``-th mask."""
    page.wait_for_selector(f"body[data-updates='{count}']", timeout=30_000)


def main(argv: list[str] | None = None) -> int:
    from playwright.sync_api import sync_playwright

    from ihp_rt.backends import open_backend
    from ihp_rt.serving.app import create_app
    from ihp_rt.serving.runner import serve_in_thread
    from ihp_rt.session import SharedBackend
    from ihp_rt.zoo import default_onnx_path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--out", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    app = create_app(SharedBackend(open_backend(default_onnx_path(), "onnxruntime")))
    with serve_in_thread(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 640})
        page.goto(url)
        page.wait_for_selector("#legend li")
        page.set_input_files("#file", str(EXAMPLE))
        page.wait_for_selector("#status:has-text('Ready')")
        for count, (key, x, y) in enumerate(CLICKS, 1):
            page.keyboard.press(key)
            click_image(page, x, y)
            wait_updates(page, count)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=args.out)
        browser.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
