"""The Streamlit app, driven headlessly through ``streamlit.testing.v1.AppTest``."""

import io

import pytest
import soundfile as sf

from codeFeature import load_model, predict_file
from codeFeature.model_io import default_model_name
from tests.conftest import REPO, chord

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

TIMEOUT = 180


def _wav_bytes(seconds=7.0):
    buffer = io.BytesIO()
    sf.write(buffer, chord(seconds, 44100, channels=2), 44100, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@pytest.fixture
def app():
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    return at


def _metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def test_opens_on_the_default_model(app):
    assert app.selectbox[0].value == default_model_name()
    assert app.file_uploader[0].type == "file_uploader"
    assert any("Choose an audio file" in i.value for i in app.info)


def test_upload_shows_the_libraries_genre_and_plots(app):
    data = _wav_bytes()
    app.file_uploader[0].set_value(("song.wav", data, "audio/wav")).run()
    assert not app.exception and not app.error
    expected = predict_file(data, model=load_model(), filename="song.wav")
    assert _metric(app, "Genre") == expected.genre.capitalize()
    assert _metric(app, "Confidence") == f"{expected.confidence:.0%}"
    assert len(app.get("download_button")) == 1
    # the probability chart, the segment timeline and the close-up's probabilities
    assert len(app.get("vega_lite_chart")) == 3
    # the whole-song and the close-up waveform / mel / MFCC figures
    assert len(app.get("image")) == 2


def test_bad_upload_shows_a_message_and_the_app_keeps_serving(app):
    app.file_uploader[0].set_value(("fake.mp3", b"<html>not audio</html>" * 20, "audio/mpeg")).run()
    assert not app.exception
    assert app.error and "could not be decoded" in app.error[0].value
    app.file_uploader[0].set_value(("ok.wav", _wav_bytes(4.0), "audio/wav")).run()
    assert not app.exception and not app.error
    assert _metric(app, "Genre")


def test_segment_slider_changes_the_close_up(app):
    app.file_uploader[0].set_value(("song.wav", _wav_bytes(10.0), "audio/wav")).run()
    slider = app.slider(key="segment_index")
    assert slider.max == 3
    slider.set_value(3).run()
    assert not app.exception
    assert any("Segment 3 of 3" in m.value for m in app.markdown)


def test_the_model_loads_in_the_background_and_a_failed_load_is_retried(monkeypatch):
    import threading

    import ui
    from codeFeature.errors import ModelError

    calls, release = [], threading.Event()

    def slow_then_flaky(name):
        calls.append(name)
        release.wait(30)
        if len(calls) == 1:
            raise ModelError("the first load fails")
        return f"model {name}"

    monkeypatch.setattr(ui, "_load_and_warm", slow_then_flaky)
    ui._model_future.clear()
    try:
        ui.preload_model("some_model")  # returns at once, while the load is still going on
        assert not ui._model_future("some_model").done()
        release.set()
        with pytest.raises(ModelError, match="first load fails"):
            ui.get_model("some_model")
        assert ui.get_model("some_model") == "model some_model"
        assert ui.get_model("some_model") == "model some_model"  # loaded once, then shared
        assert calls == ["some_model", "some_model"]
    finally:
        ui._model_future.clear()
