"""Take docs/collection.md's Library page screenshot: start the app, open a scanned database and one file, save PNGs.

    python -m codeFeature scan SOME_FOLDER --db /tmp/library.sqlite
    python -m docs.make_library_screenshot /tmp/library.sqlite --open jazz.00000 [--out docs/library.png]

Needs Chromium (Debian: ``apt install chromium``) and ``pip install playwright`` (no browser download).
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from docs.make_screenshot import CHROMIUM_ARGS, free_port, start_app

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("db", type=Path)
    parser.add_argument("--open", default=None, help="part of a file name to open (its analysis is a second PNG)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "library.png")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    os.environ["CODEFEATURE_LIBRARY"] = str(args.db.resolve())  # the page's default database
    port = free_port()
    app = start_app(port)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or shutil.which("chromium-browser"),
                                        args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"http://127.0.0.1:{port}/Library", wait_until="networkidle")
            page.get_by_text("Files per genre").first.wait_for(timeout=120_000)
            page.wait_for_timeout(3000)
            page.screenshot(path=str(args.out))
            print(args.out)
            if args.open:
                page.locator('[data-testid="stSelectbox"]').filter(has_text="Open a file").click()
                page.keyboard.type(args.open)
                page.wait_for_timeout(1000)
                page.keyboard.press("Enter")
                page.get_by_text("Segment timeline").first.wait_for(timeout=180_000)
                page.wait_for_timeout(4000)
                page.get_by_text("Segment timeline").first.scroll_into_view_if_needed()
                page.wait_for_timeout(1500)
                second = args.out.with_name(args.out.stem + "-analysis" + args.out.suffix)
                page.screenshot(path=str(second))
                print(second)
            browser.close()
    finally:
        app.terminate()
        app.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
