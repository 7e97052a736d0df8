"""Take the screenshots of the README and docs/usage.md: start the app, upload a song in headless Chromium,
save two PNGs: the result (``--out``) and the segment close-up after moving its slider (``--closeup``).

    python -m docs.make_screenshot SONG [--out docs/screenshot.png] [--closeup docs/closeup.png]

Needs Chromium (Debian: ``apt install chromium``) and ``pip install playwright``
(no browser download: the system Chromium is used).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(port: int) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"),
                                "--server.port", str(port), "--server.address", "127.0.0.1",
                                "--server.headless", "true"], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
            return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError("the app did not start within 60 s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("song", type=Path)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshot.png")
    parser.add_argument("--closeup", type=Path, default=REPO / "docs" / "closeup.png")
    parser.add_argument("--segment", type=int, default=4, help="the close-up's segment (1 is the first)")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    port = free_port()
    app = start_app(port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1250})
            page.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
            page.locator("input[type=file]").set_input_files(str(args.song))
            page.get_by_text("Segment timeline").wait_for(timeout=240_000)
            page.locator('[data-testid="stImage"] img').first.wait_for(timeout=240_000)
            page.wait_for_timeout(3000)
            page.screenshot(path=str(args.out), full_page=False)
            page.get_by_role("tab", name="One segment close up").click()
            slider = page.get_by_role("slider").first
            slider.focus()
            for _ in range(args.segment - 1):
                slider.press("ArrowRight")
            page.get_by_text(f"Segment {args.segment} of").first.wait_for(timeout=120_000)
            page.wait_for_timeout(4000)  # the close-up's pictures
            page.get_by_role("tab", name="One segment close up").evaluate("e => e.scrollIntoView({block: 'start'})")
            page.screenshot(path=str(args.closeup), full_page=False)
            browser.close()
    finally:
        app.terminate()
        app.wait(10)
    print(args.out, args.closeup)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
