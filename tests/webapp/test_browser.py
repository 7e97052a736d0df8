"""End to end in a real headless Chromium: ``streamlit run app.py``, driven by Playwright.

Uses the system Chromium (Debian: ``apt install chromium``) and the ``playwright`` Python package;
never ``playwright install``. Skips, saying why, when either is missing. One server for the module.
Every scenario saves a screenshot under its temporary folder (a CI artefact).

1. Upload an mp3: the headline, confidence and all ten probabilities the CLI gives for the same file,
   all ten labels in the chart with the winner marked, the pictures. Open the close-up, move the
   slider: the tab stays. Visit "Listen live" and come back: the result and the model are still there.
2. Upload a PNG renamed to .mp3: a plain message naming the file once, no progress bar left.
   Upload a good file again: a genre.
3. An upload over the size limit is refused by the uploader itself, with its message.
4. Four browser sessions at once, each classifying a different song, each get their own result.
5. At phone width (390 px) the page does not scroll sideways.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from codeFeature.audio import find_ffmpeg
from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, SKIP_REASON, running_app
from tests.conftest import REPO, SHARED_GTZAN, chord

RESULT_TIMEOUT_MS = 240_000
#: The server runs with a 1 MB upload limit so that the limit can be seen enforced cheaply;
#: every song here is a 12 s mp3 (~200 kB). The shipped limit is in .streamlit/config.toml.
TEST_UPLOAD_LIMIT_MB = 1

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed "
                               "(pip install playwright; no browser download is needed)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on a free localhost port; its log is printed if a test fails to see a result."""
    log_path = tmp_path_factory.mktemp("server") / "streamlit.log"
    with running_app(log_path, "--server.fileWatcherType", "none",
                     "--server.maxUploadSize", str(TEST_UPLOAD_LIMIT_MB)) as url:
        yield url + "/", log_path


def _to_mp3(source: Path | None, out: Path, *, seconds: float, seed: int) -> Path:
    """An mp3 of the first ``seconds`` of ``source`` (or a synthesised song when there is none)."""
    ffmpeg = find_ffmpeg()
    if source is not None and ffmpeg is not None:
        subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(source), "-t", str(seconds),
                        "-c:a", "libmp3lame", "-b:a", "128k", str(out)], check=True, timeout=120)
        return out
    import numpy as np

    y = chord(seconds, 44100, channels=2, seed=seed)
    # make the songs differ: a different pitch and a different noise level each
    t = np.arange(len(y)) / 44100
    y = 0.5 * y + 0.3 * np.sin(2 * np.pi * (110 * (seed + 1)) * t)[:, None] \
        + 0.05 * seed * np.random.default_rng(seed).standard_normal(y.shape)
    sf.write(out, np.clip(y, -1, 1).astype("float32"), 44100, format="MP3", subtype="MPEG_LAYER_III")
    return out


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> list[Path]:
    """Five mp3s: GTZAN tracks of different genres when ../shared/data/gtzan exists, else synthesised."""
    folder = tmp_path_factory.mktemp("songs")
    sources = []
    if (SHARED_GTZAN / "genres").is_dir():
        for genre in ("classical", "metal", "jazz", "country", "disco"):
            found = sorted((SHARED_GTZAN / "genres" / genre).glob("*.wav"))
            if found:
                sources.append(found[0])
    while len(sources) < 5:
        sources.append(None)
    return [_to_mp3(src, folder / f"song {i} – {src.stem if src else 'synth'}.mp3", seconds=12.0, seed=i)
            for i, src in enumerate(sources)]


@pytest.fixture(scope="module")
def expected(songs) -> dict[str, dict]:
    """What the CLI says about each song, with the app's (default) model."""
    done = subprocess.run([sys.executable, "-m", "codeFeature", *map(str, songs), "--json"],
                          capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return {Path(line["file"]).name: line for line in map(json.loads, done.stdout.splitlines())}


def _png(path: Path) -> Path:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


def _metric(page, label: str) -> str:
    name = page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(rf"^\s*{label}\s*$"))
    metric = page.locator('[data-testid="stMetric"]', has=name)
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def _genre(page) -> str:
    """The headline as a person reads it: "Jazz", or "Not sure" with the two likeliest genres under it,
    as "Not sure: jazz or classical"; fails if any of it is cut off."""
    name = page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(r"^\s*Genre\s*$"))
    metric = page.locator('[data-testid="stMetric"]', has=name)
    for part in (metric.locator('[data-testid="stMetricValue"]'), metric.locator('[data-testid="stMetricDelta"]')):
        if part.count():
            clipped = part.evaluate("e => [e, ...e.querySelectorAll('*')].some(x => x.scrollWidth > x.clientWidth + 1)")
            assert not clipped, f"the headline is cut off on the page: {part.inner_text()!r}"
    value = _metric(page, "Genre")
    delta = metric.locator('[data-testid="stMetricDelta"]')
    return f"{value}: {delta.inner_text().strip()}" if delta.count() else value


def _confidence(page) -> str:
    return _metric(page, "Confidence")


def _probability_chart(page):
    """The mean-probability chart (its SVG text is what a person reads; its aria-label says it in words)."""
    return page.locator('[data-testid="stVegaLiteChart"][aria-label^="Mean probability"]').first


def _shot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


def _upload(page, path: Path) -> None:
    page.locator("input[type=file]").set_input_files(str(path))


def _wait_for_result(page, name: str) -> None:
    page.get_by_text("Segment timeline").first.wait_for(timeout=RESULT_TIMEOUT_MS)
    page.locator('[data-testid="stMetric"]').filter(has_text="Genre").first.wait_for(timeout=RESULT_TIMEOUT_MS)
    # the player's file name and the CSV's change with each upload: wait for this song's
    page.get_by_role("button", name=re.compile("Download per-segment predictions")).first.wait_for(
        timeout=RESULT_TIMEOUT_MS)


def _open(browser, url, width=1300, height=1000):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.goto(url, wait_until="domcontentloaded")
    page.locator("input[type=file]").wait_for(state="attached", timeout=120_000)
    return context, page


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _assert_matches(page, song: Path, expected: dict) -> None:
    cli = expected[song.name]
    headline = cli["verdict"][:1].upper() + cli["verdict"][1:]
    assert _genre(page) == headline, f"{song.name}: app {_genre(page)!r}, CLI {cli['verdict']!r}"
    if cli.get("state") == "outside":  # under "Not music", the nearest genre instead of a confidence
        assert _metric(page, "Nearest genre") == f"{cli['genre']} {cli['confidence']:.0%}", song.name
    else:
        assert _confidence(page) == f"{cli['confidence']:.0%}", song.name


def _wait_idle(page) -> None:
    """Until the page's script has finished its run (Streamlit's running icon gone): a navigation click made
    while the page still runs on a busy machine is then not the test's race with the server."""
    page.locator('[data-testid="stStatusWidgetRunningIcon"]').wait_for(state="detached", timeout=RESULT_TIMEOUT_MS)


def _wait_for_pictures(page) -> None:
    image = page.locator('[data-testid="stImage"] img').first
    image.wait_for(timeout=RESULT_TIMEOUT_MS)
    page.wait_for_function("img => img.complete && img.naturalWidth > 200", arg=image.element_handle(),
                           timeout=60_000)


def test_upload_shows_the_clis_answer_a_close_up_that_stays_and_state_across_pages(server, browser, songs,
                                                                                   expected, tmp_path):
    url, log = server
    context, page = _open(browser, url, height=2400)
    song = songs[0]
    try:
        _upload(page, song)
        _wait_for_result(page, song.name)
        _assert_matches(page, song, expected)
        cli = expected[song.name]
        # every genre's probability, as the CLI gives it, and every label drawn in the chart
        chart = _probability_chart(page)
        words = chart.get_attribute("aria-label")
        for genre, p in cli["probabilities"].items():
            assert f"{genre} {p:.0%}" in words, (genre, p, words)
        drawn = [t.strip() for t in chart.evaluate(
            "e => Array.from(e.querySelectorAll('svg text')).map(t => t.textContent)")]
        for genre in cli["probabilities"]:
            assert genre in drawn or f"★ {genre}" in drawn, (genre, drawn)
        assert f"★ {cli['genre']}" in drawn, drawn  # the winner marked
        _wait_for_pictures(page)
        assert "Traceback" not in page.content()
        _shot(page, tmp_path, "1-result")

        # the close-up: a slider move keeps its tab selected and shows the next segment
        tab = page.get_by_role("tab", name="One segment close up")
        tab.click()
        slider = page.get_by_role("slider").first
        slider.focus()
        slider.press("ArrowRight")
        page.get_by_text(re.compile(r"Segment 2 of \d+")).first.wait_for(timeout=RESULT_TIMEOUT_MS)
        page.wait_for_timeout(1000)
        assert tab.get_attribute("aria-selected") == "true"
        assert page.get_by_role("tab", name="Whole song").get_attribute("aria-selected") == "false"
        _shot(page, tmp_path, "2-close-up")

        # another page and back: the result and the model are still there
        _wait_idle(page)
        page.get_by_role("link", name="Listen live").first.click()
        page.get_by_role("heading", name="Listen live").first.wait_for(timeout=RESULT_TIMEOUT_MS)
        # the page's text comes a moment after its heading: wait for it rather than count at once
        page.get_by_text(re.compile(rf"microphone hears with\s+{cli['model']}")).first.wait_for(
            timeout=RESULT_TIMEOUT_MS)
        _shot(page, tmp_path, "3-live")
        _wait_idle(page)
        page.get_by_role("link", name="Upload a song").first.click()
        page.get_by_text(re.compile(rf"Showing\s+{re.escape(song.name)};")).wait_for(
            timeout=RESULT_TIMEOUT_MS)
        page.locator('[data-testid="stMetric"]').filter(has_text="Genre").first.wait_for(timeout=RESULT_TIMEOUT_MS)
        _assert_matches(page, song, expected)
        _shot(page, tmp_path, "4-back")
    except Exception:
        print(log.read_text(errors="replace")[-3000:])
        raise
    finally:
        context.close()


def test_a_bad_upload_gets_a_plain_message_and_no_progress_bar(server, browser, songs, expected, tmp_path):
    url, log = server
    context, page = _open(browser, url)
    try:
        _upload(page, _png(tmp_path / "holiday photo.mp3"))
        alert = page.locator('[data-testid="stAlert"]', has_text="could not be decoded")
        alert.wait_for(timeout=RESULT_TIMEOUT_MS)
        text = alert.inner_text()
        assert text.count("holiday photo.mp3") == 1 and "Try another file" in text, text
        assert "Invalid data" not in text and "Error opening" not in text  # ffmpeg's words stay in the log
        page.wait_for_timeout(500)
        assert page.locator('[data-testid="stProgress"]').count() == 0
        assert "Traceback" not in page.content()
        _shot(page, tmp_path, "bad-upload")

        _upload(page, songs[1])
        alert.wait_for(state="detached", timeout=RESULT_TIMEOUT_MS)
        _wait_for_result(page, songs[1].name)
        _assert_matches(page, songs[1], expected)
        assert page.locator('[data-testid="stProgress"]').count() == 0
    except Exception:
        print(log.read_text(errors="replace")[-3000:])
        raise
    finally:
        context.close()


def test_at_phone_width_the_page_fits(server, browser, songs, tmp_path):
    url, log = server
    context, page = _open(browser, url, width=390, height=3000)
    try:
        _upload(page, songs[3])
        _wait_for_result(page, songs[3].name)
        _wait_for_pictures(page)
        main = page.locator('[data-testid="stMain"]').first
        assert main.evaluate("e => e.scrollWidth <= e.clientWidth + 1"), "the page scrolls sideways at 390 px"
        assert _probability_chart(page).bounding_box()["width"] <= 390
        _shot(page, tmp_path, "phone")
    except Exception:
        print(log.read_text(errors="replace")[-3000:])
        raise
    finally:
        context.close()


def test_four_sessions_at_once_get_their_own_results(server, browser, songs, expected, tmp_path):
    url, log = server
    sessions = [_open(browser, url) for _ in range(4)]
    chosen = songs[1:5]
    try:
        for (_, page), song in zip(sessions, chosen):
            _upload(page, song)  # all four are sent before any result is awaited
        for (_, page), song in zip(sessions, chosen):
            _wait_for_result(page, song.name)
            _assert_matches(page, song, expected)
        for i, (_, page) in enumerate(sessions):
            _shot(page, tmp_path, f"session-{i + 1}")
    except Exception:
        print(log.read_text(errors="replace")[-3000:])
        raise
    finally:
        for context, _ in sessions:
            context.close()


def test_an_upload_over_the_limit_is_refused_and_the_app_keeps_serving(server, browser, songs, expected, tmp_path):
    url, log = server
    big = tmp_path / "too big.wav"
    sf.write(big, chord(30.0, 44100, channels=2), 44100, subtype="PCM_16")  # ~5 MB
    assert big.stat().st_size > TEST_UPLOAD_LIMIT_MB * 2**20
    context, page = _open(browser, url)
    try:
        _upload(page, big)
        page.get_by_text(re.compile(r"must be .*MB or smaller", re.I)).first.wait_for(timeout=60_000)
        assert page.get_by_text("Segment timeline").count() == 0
        _shot(page, tmp_path, "over-the-limit")
        _upload(page, songs[2])
        _wait_for_result(page, songs[2].name)
        _assert_matches(page, songs[2], expected)
    except Exception:
        print(log.read_text(errors="replace")[-3000:])
        raise
    finally:
        context.close()
