"""The "Listen live" page end to end in headless Chromium with a fake microphone.

Chromium's ``--use-fake-device-for-media-stream --use-file-for-fake-audio-capture=<wav>`` turns a
synthesised wav into the microphone, and ``--use-fake-ui-for-media-stream`` grants the permission.
``streamlit run app.py`` serves the page; WebRTC runs over localhost with no ICE servers (offline).

1. Listen continuously: press Start, see a genre appear for the first 3 s window and the running vote,
   press Stop and keep the result with its CSV download.
2. Record a clip with ``st.audio_input``: record ~4 s, see the genre.
3. No microphone: the page explains what to do, the player names the browser's error, and the
   upload page still works.

Uses the system Chromium and the ``playwright`` Python package (never ``playwright install``); skips,
saying why, when either or ``streamlit-webrtc`` is missing.
"""

from __future__ import annotations

import re

import pytest
import soundfile as sf

from codeFeature import GENRES
from tests.browser_support import CHROMIUM, SKIP_REASON, running_app
from tests.browser_support import CHROMIUM_ARGS as BROWSER_ARGS
from tests.conftest import chord

CHROMIUM_ARGS = [*BROWSER_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
#: Generous: the 2-core CI machine may be busy with other work.
TIMEOUT_MS = 180_000
GENRE_PATTERN = "|".join(GENRES)
#: What the Genre metric shows in each of the verdict's states: a genre, "Not sure", "Not music", "Not one of ..."
VERDICT_PATTERN = GENRE_PATTERN + "|Not sure|Not music|Not one of"

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed "
                               "(pip install playwright; no browser download is needed)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("live_server") / "streamlit.log", start_timeout=90) as url:
        yield url


@pytest.fixture(scope="module")
def microphone(tmp_path_factory):
    """What the fake microphone plays: 30 s of a chord at 48 kHz stereo (Chromium loops it)."""
    path = tmp_path_factory.mktemp("mic") / "mic.wav"
    sf.write(path, chord(30.0, 48000, channels=2), 48000, subtype="PCM_16")
    return path


@pytest.fixture
def live_page(server, microphone, tmp_path):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={microphone}"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1400})
            # an upload first, as a visitor would: the model (and TensorFlow) is loaded before WebRTC
            song = tmp_path / "song.wav"
            sf.write(song, chord(4.0), 22050, subtype="PCM_16")
            page.goto(server, wait_until="networkidle")
            page.locator("input[type=file]").set_input_files(str(song))
            page.get_by_text("Segment timeline").first.wait_for(timeout=TIMEOUT_MS)
            page.goto(f"{server}/Listen_live", wait_until="networkidle")
            page.get_by_role("heading", name="Listen live").first.wait_for(timeout=TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def test_listening_live_shows_each_window_and_keeps_the_result(live_page):
    page = live_page
    page.get_by_role("tab", name="Listen continuously").click()
    player = page.frame_locator("iframe[title*='streamlit_webrtc']")
    player.get_by_role("button", name="Start").click(timeout=TIMEOUT_MS)
    genre = re.compile(GENRE_PATTERN, re.I)
    # each window's genre, as it completes (the first one is 0–3 s)
    latest = page.get_by_text(re.compile(r"Latest window \d+–\d+ s")).first
    sync_api.expect(latest).to_contain_text(genre, timeout=TIMEOUT_MS)
    sync_api.expect(page.locator("[data-testid='stMetric']", has_text="Running vote")).to_contain_text(
        genre, timeout=TIMEOUT_MS)
    page.locator("[data-testid='stImage'] img").first.wait_for(timeout=TIMEOUT_MS)  # the scrolling spectrogram
    player.get_by_role("button", name="Stop").click()
    page.get_by_text("Last listening session").wait_for(timeout=TIMEOUT_MS)
    result = page.locator("[data-testid='stMetric']").filter(has_text=re.compile("^Genre"))
    sync_api.expect(result.first).to_contain_text(genre, timeout=TIMEOUT_MS)
    page.get_by_role("button", name=re.compile("Download per-segment predictions")).wait_for(timeout=TIMEOUT_MS)


def test_recording_a_clip_shows_its_genre(live_page):
    page = live_page
    page.get_by_role("button", name=re.compile("^Record", re.I)).first.click(timeout=TIMEOUT_MS)
    page.wait_for_timeout(4500)
    page.get_by_role("button", name=re.compile("^Stop", re.I)).first.click()
    result = page.locator("[data-testid='stMetric']").filter(has_text=re.compile("^Genre"))
    # the fake microphone's test tone: any of the verdict's three states is an answer ("Not music" included)
    sync_api.expect(result.first).to_contain_text(re.compile(VERDICT_PATTERN, re.I), timeout=TIMEOUT_MS)


def test_without_a_microphone_the_page_says_so_and_uploads_still_work(server):
    no_device = [a for a in CHROMIUM_ARGS if "fake" not in a] + ["--deny-permission-prompts"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=no_device)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            page.goto(f"{server}/Listen_live", wait_until="networkidle")
            page.get_by_role("tab", name="Listen continuously").click(timeout=TIMEOUT_MS)
            # both tabs carry the help; wait for the one on the visible tab (the script may still be running)
            page.locator("p:visible", has_text="No microphone?").first.wait_for(
                timeout=TIMEOUT_MS)
            player = page.frame_locator("iframe[title*='streamlit_webrtc']")
            player.get_by_role("button", name="Start").click(timeout=TIMEOUT_MS)
            player.get_by_text(re.compile("NotFoundError|NotAllowedError")).wait_for(timeout=TIMEOUT_MS)
            page.goto(server, wait_until="networkidle")
            page.locator("input[type=file]").wait_for(state="attached", timeout=TIMEOUT_MS)
        finally:
            browser.close()
