"""The "Listen live" page, driven headlessly through ``streamlit.testing.v1.AppTest``.

``st.audio_input`` recordings can be staged in AppTest, so the record path runs as in a browser.
The continuous (WebRTC) path needs a real browser session: see ``tests/webapp/test_browser_live.py``.
"""

import io
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from codeFeature import load_audio, load_model, predict_audio
from codeFeature.model_io import default_model_name
from tests.conftest import REPO, chord

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

TIMEOUT = 180
PAGE = str(REPO / "webapp" / "live.py")


def _recording(seconds=7.0, rate=48000):
    """What a browser's recorder sends: 16-bit wav at its own rate (here stereo, to be strict)."""
    buffer = io.BytesIO()
    sf.write(buffer, chord(seconds, rate, channels=2), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


@pytest.fixture
def page():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    return at


def test_opens_with_a_recorder_and_the_default_model(page):
    assert page.title[0].value == "Listen live"
    assert len(page.audio_input) == 1 and page.audio_input[0].sample_rate is None  # the browser's own rate
    assert any(default_model_name() in m.value for m in page.markdown)
    # no browser session here: the continuous path says so instead of failing
    assert any("Continuous listening" in i.value for i in page.info)
    assert not page.error


def _no_microphone_help(at) -> int:
    return sum(e.label == "No microphone?" for e in at.expander)


def test_a_recording_goes_through_the_upload_pipeline(page):
    # folded, while nothing has been heard (here on the recorder's tab only: with no browser session, the
    # continuous tab says it is unavailable instead)
    assert _no_microphone_help(page) == 1
    data = _recording()
    page.audio_input[0].set_value(("recording.wav", data, "audio/wav")).run()
    assert not page.exception and not page.error
    assert _no_microphone_help(page) == 0  # a result on screen: the help is gone
    model = load_model(default_model_name())
    decoded = load_audio(data, sample_rate=model.config.sample_rate, filename="recording.wav")
    expected = predict_audio(decoded.samples, model=model)
    verdict = expected.verdict
    if verdict.state == "outside":  # e.g. the test chord, which the default model may hear as not music
        assert _metric(page, "Genre") == ("Not music" if verdict.outside_kind == "not music"
                                          else f"Not one of the {verdict.genre_count_words}")
        assert _metric(page, "Nearest genre") == f"{verdict.genre} {verdict.confidence:.0%}"
    else:
        assert _metric(page, "Genre") == ("Not sure" if verdict.not_sure else verdict.genre.capitalize())
        assert _metric(page, "Confidence") == f"{verdict.confidence:.0%}"
    (button,) = page.get("download_button")
    assert "CSV" in button.proto.label
    segments = page.dataframe[0].value
    assert list(segments["genre"]) == expected.segment_labels
    assert np.allclose(segments["start"], expected.starts)
    # the mean probabilities, the segment timeline and the close-up of a segment (the same view as uploads)
    assert len(page.get("vega_lite_chart")) == 3


def test_the_model_chosen_on_the_main_page_is_used():
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state["model_name"] = "cnn_mfcc_small"
    at.run()
    assert any("cnn_mfcc_small" in m.value for m in at.markdown)
    at.audio_input[0].set_value(("recording.wav", _recording(4.0, 44100), "audio/wav")).run()
    assert not at.exception and not at.error
    assert any("model cnn_mfcc_small" in c.value for c in at.caption)


@pytest.mark.parametrize("content, message", [
    (b"RIFF\x00\x00\x00\x00WAVEnot really" * 4, "could not be decoded"),
    (None, "at least 0.5 s"),
])
def test_a_bad_or_too_short_recording_gets_a_message_and_the_page_carries_on(page, content, message):
    content = content if content is not None else _recording(0.2)
    page.audio_input[0].set_value(("recording.wav", content, "audio/wav")).run()
    assert not page.exception
    assert page.error and message in page.error[0].value
    page.audio_input[0].set_value(("recording.wav", _recording(4.0), "audio/wav")).run()
    assert not page.exception and not page.error
    assert _metric(page, "Genre")


def test_clearing_the_recording_clears_the_result(page):
    page.audio_input[0].set_value(("recording.wav", _recording(4.0), "audio/wav")).run()
    assert page.metric
    page.audio_input[0].set_value(None).run()
    assert not page.exception and not page.metric


def test_the_page_loads_webrtc_after_tensorflow_without_crashing():
    """TensorFlow first (as after an upload on the main page), then the page: no segmentation fault.

    In a subprocess, because the crash (pylibsrtp's OpenSSL shadowed by TensorFlow's) kills the process.
    """
    pytest.importorskip("streamlit_webrtc", reason="streamlit-webrtc is not installed")
    script = ("import tensorflow\n"
              "from streamlit.testing.v1 import AppTest\n"
              f"at = AppTest.from_file({PAGE!r}, default_timeout={TIMEOUT})\n"
              "at.run()\n"
              "assert not at.exception, at.exception\n"
              "print('page ok')\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                            timeout=TIMEOUT)
    assert result.returncode == 0 and "page ok" in result.stdout, (result.returncode, result.stderr[-2000:])


def test_the_live_view_says_why_it_looks_stuck():
    import importlib.util

    spec = importlib.util.spec_from_file_location("live_page", PAGE)
    live = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(live)  # the helpers only: the page itself runs as __main__
    assert live.live_notes(0.5, 0, 3.0) == []
    stalled, = live.live_notes(20.0, 0, 3.0)
    assert "No audio has reached the server for 20 s" in stalled
    busy, = live.live_notes(0.0, 4, 3.0)
    assert "4 windows (12 s of audio)" in busy
    assert len(live.live_notes(live.STALL_SECONDS, 2, 3.0)) == 2
