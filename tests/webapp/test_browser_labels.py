"""A model of a person's own labels (three made-up ones), in a real headless Chromium: every label gets a row
of its own in the probability chart, drawn tall enough to read, and the legend names the model's labels."""

from __future__ import annotations

import io

import pytest
import soundfile as sf

from tests.app_models import THREE_LABELS, write_own_label_models
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, SKIP_REASON, running_app
from tests.conftest import chord

TIMEOUT_MS = 240_000

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed "
                               "(pip install playwright; no browser download is needed)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)

#: A row of a chart thinner than this cannot be read (before the fix, a three-label chart was squeezed to 0 px).
MIN_ROW_PX = 12


def test_a_three_label_models_charts_give_every_label_a_readable_row(tmp_path, monkeypatch):
    models = write_own_label_models(tmp_path / "models")
    monkeypatch.setenv("CODEFEATURE_MODELS", str(models))  # the server reads it at start
    song = tmp_path / "song.wav"
    buffer = io.BytesIO()
    sf.write(buffer, chord(10.0, 22050), 22050, format="WAV", subtype="PCM_16")
    song.write_bytes(buffer.getvalue())
    with running_app(tmp_path / "streamlit.log", "--server.fileWatcherType", "none") as url:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1300, "height": 1600})
                page.goto(url, wait_until="domcontentloaded")
                page.get_by_text("this model's 3 labels (zouk, drone, chiptune)").first.wait_for(timeout=TIMEOUT_MS)
                page.locator("input[type=file]").set_input_files(str(song))
                page.get_by_text("Segment timeline").first.wait_for(timeout=TIMEOUT_MS)
                chart = page.locator('[data-testid="stVegaLiteChart"][aria-label^="Mean probability"]').first
                chart.locator("svg g.mark-rect path").first.wait_for(timeout=TIMEOUT_MS)
                rows = chart.evaluate("e => Array.from(e.querySelectorAll('svg g.mark-rect path'))"
                                      ".map(p => p.getBBox().height)")
                page.screenshot(path=str(tmp_path / "three-labels.png"), full_page=True)
                assert len(rows) == len(THREE_LABELS) and min(rows) >= MIN_ROW_PX, rows
                drawn = [t.strip().lstrip("★ ") for t in chart.evaluate(
                    "e => Array.from(e.querySelectorAll('svg text')).map(t => t.textContent)")]
                assert set(THREE_LABELS) <= set(drawn), drawn
                legend = page.get_by_text("zouk").last.locator("xpath=ancestor::p[1]").inner_text()
                assert all(label in legend for label in THREE_LABELS) and "blues" not in legend, legend
                assert "Traceback" not in page.content()
            finally:
                browser.close()
