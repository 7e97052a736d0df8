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


def test_opens_on_the_default_model_listed_first_and_marked(app):
    assert app.selectbox[0].value == default_model_name()
    # the shipped default is refit on train + valid: its valid figure is labelled as its recipe's
    assert [m.label for m in app.sidebar.metric] == ["Valid accuracy of its recipe (tracks)"]
    assert app.selectbox[0].options[0] == f"{default_model_name()} (default)"
    assert not any("../" in m.value for m in app.sidebar.markdown)  # no internal paths
    assert app.file_uploader[0].type == "file_uploader"
    assert any("Choose an audio file" in i.value for i in app.info)


def test_upload_shows_the_libraries_verdict_and_plots(app):
    data = _wav_bytes()
    app.file_uploader[0].set_value(("song.wav", data, "audio/wav")).run()
    assert not app.exception and not app.error
    expected = predict_file(data, model=load_model(), filename="song.wav")
    headline = expected.verdict.headline
    assert _metric(app, "Genre") == headline[:1].upper() + headline[1:]
    assert _metric(app, "Confidence") == f"{expected.verdict.confidence:.0%}"
    # votes and mean probability side by side, with the rule stated
    assert any(f"of {len(expected.probabilities)} segments** voted {expected.genre}" in c.value for c in app.caption)
    assert any(expected.rule.description in c.value for c in app.caption)
    assert len(app.get("download_button")) == 1
    # the probability chart, the segment timeline and the close-up's probabilities
    assert len(app.get("vega_lite_chart")) == 3
    # waveform, mel spectrogram and the model's input: whole song and close-up
    assert len(app.get("image")) == 6
    titles = [c.value for c in app.caption]
    assert any("What the model sees" in t for t in titles) and any("kHz" in t for t in titles)
    assert not app.get("progress")


def test_the_not_sure_rule_of_the_manifest_reaches_the_headline(tmp_path, monkeypatch):
    """A model whose manifest asks for certainty (100 % and a 100-point margin): never reached."""
    import json
    import shutil

    from codeFeature import model_io, settings

    source = model_io.resolve_model_dir("cnn_mfcc_small")
    models = tmp_path / "models"
    shutil.copytree(source, models / "unsure")
    manifest = json.loads((models / "unsure" / "manifest.json").read_text())
    manifest["name"] = "unsure"
    manifest["decision"] = {"aggregate": "mean", "min_confidence": 1.0, "min_margin": 1.0, "source": "a test's threshold"}
    manifest["metrics"] = {"valid": {"track_accuracy": 0.5, "tracks": 12}}
    (models / "unsure" / "manifest.json").write_text(json.dumps(manifest))
    (models / "default.txt").write_text("unsure\n")
    monkeypatch.setenv("CODEFEATURE_MODELS", str(models))
    settings.reload()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.run()
    at.file_uploader[0].set_value(("song.wav", _wav_bytes(4.0), "audio/wav")).run()
    assert not at.exception
    genre = next(m for m in at.metric if m.label == "Genre")
    assert genre.value == "Not sure" and " or " in genre.delta  # the two likeliest genres under it
    assert any("not sure" in w.value and "Top three" in w.value for w in at.warning)
    assert any("a test's threshold" in c.value for c in at.sidebar.caption)
    assert any("12 valid tracks" in c.value for c in at.sidebar.caption)


def test_the_outside_state_reaches_the_headline(tmp_path, monkeypatch):
    """A musicnn model whose manifest's outside rule always fires (no music tag can reach 100 %): the headline
    says "Not music", what it sounds like under it, and the explanation is the verdict's own words."""
    import json
    import shutil

    from codeFeature import model_io, settings

    source = model_io.resolve_model_dir("musicnn_genre")
    models = tmp_path / "models"
    shutil.copytree(source, models / "strict")
    manifest = json.loads((models / "strict" / "manifest.json").read_text())
    tags = list(manifest["extra_outputs"][0]["labels"])
    manifest["name"] = "strict"
    manifest["decision"]["outside"] = {"tags": tags, "mean": [0.0] * len(tags), "scale": [1.0] * len(tags),
                                       "centroids": [[0.0] * len(tags)], "music_tags": [tags[0]], "min_music": 1.0,
                                       "not_music": {"speech": [5.0] * len(tags)}, "source": "a test's rule"}
    (models / "strict" / "manifest.json").write_text(json.dumps(manifest))
    (models / "default.txt").write_text("strict\n")
    monkeypatch.setenv("CODEFEATURE_MODELS", str(models))
    settings.reload()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.run()
    at.file_uploader[0].set_value(("song.wav", _wav_bytes(4.0), "audio/wav")).run()
    assert not at.exception and not at.warning
    genre = next(m for m in at.metric if m.label == "Genre")
    assert genre.value == "Not music" and genre.delta == "sounds like speech"
    assert any(i.value.startswith("The model does not hear music: no music tag reaches 100%") for i in at.info)


def test_bad_upload_shows_a_message_and_the_app_keeps_serving(app):
    app.file_uploader[0].set_value(("fake.mp3", b"<html>not audio</html>" * 20, "audio/mpeg")).run()
    assert not app.exception
    assert app.error and "could not be decoded" in app.error[0].value
    assert app.error[0].value.count("fake.mp3") == 1  # named once
    assert not app.get("progress")  # no progress bar outlives its work
    app.file_uploader[0].set_value(("ok.wav", _wav_bytes(4.0), "audio/wav")).run()
    assert not app.exception and not app.error
    assert _metric(app, "Genre")


def test_segment_slider_changes_the_close_up(app):
    app.file_uploader[0].set_value(("song.wav", _wav_bytes(10.0), "audio/wav")).run()
    slider = app.slider(key="upload_segment")
    assert slider.max == 3
    slider.set_value(3).run()
    assert not app.exception
    assert any("Segment 3 of 3" in m.value for m in app.markdown)


def _chart_specs(at) -> list[dict]:
    import json

    return [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]


def _axis_titles(spec: dict) -> list[str]:
    """Every x-axis title in a (layered) Vega-Lite spec."""
    layers = spec.get("layer", [spec])
    return [layer["encoding"]["x"].get("title") for layer in layers if "x" in layer.get("encoding", {})]


def test_each_chart_says_what_its_bars_are_and_the_timeline_counts_in_minutes(app):
    """The close-up's bars are one segment's probabilities, not the song's mean; the timeline's ticks are m:ss
    and its last tick is the song's real end (a 29.7 s song ends at 0:29.7, not 30)."""
    app.file_uploader[0].set_value(("song.wav", _wav_bytes(29.7), "audio/wav")).run()
    assert not app.exception
    titles = [title for spec in _chart_specs(app) for title in _axis_titles(spec) if title]
    assert titles.count("mean probability over the segments") == 1
    assert titles.count("this segment's probability") == 1
    (timeline,) = [spec for spec in _chart_specs(app) if "time (m:ss)" in _axis_titles(spec)]
    expression = timeline["encoding"]["x"]["axis"]["labelExpr"]
    assert "'0:29.7'" in expression and "floor(datum.value / 60)" in expression


def test_the_end_of_a_song_is_never_rounded_up():
    import ui

    assert [ui.end_label(d) for d in (29.7, 29.97, 300.0, 3.0, 61.25)] == ["0:29.7", "0:29.9", "5:00", "0:03", "1:01.2"]


def test_a_one_segment_song_does_not_say_1_of_1(app):
    app.file_uploader[0].set_value(("short.wav", _wav_bytes(3.5), "audio/wav")).run()
    assert not app.exception
    text = " ".join(m.value for m in app.markdown) + " ".join(c.value for c in app.caption)
    assert "1 of 1 segments" not in text and "1 of 1 segment**" in text
    assert "The only segment" in text


def _back_to_the_upload_page(at):
    """AppTest.switch_page takes a file, and the upload page is a function (the navigation's default page):
    select it by its registered page hash, as a browser's click on it does."""
    at._page_hash = next(h for h, page in at._registered_pages.items() if page["page_name"] == "Upload a song")
    return at


def test_the_result_and_model_survive_a_visit_to_the_live_page(app):
    app.selectbox(key="model_picker").set_value("cnn_mfcc_small").run()
    app.file_uploader[0].set_value(("song.wav", _wav_bytes(4.0), "audio/wav")).run()
    genre = _metric(app, "Genre")
    app.switch_page("webapp/live.py").run()
    assert not app.exception
    assert any("cnn_mfcc_small" in m.value for m in app.markdown)  # the live page uses the same model
    _back_to_the_upload_page(app).run()
    assert not app.exception
    assert app.selectbox(key="model_picker").value == "cnn_mfcc_small"
    assert _metric(app, "Genre") == genre
    assert any("Showing **song.wav**" in c.value for c in app.caption)


def test_the_uploader_is_fresh_after_each_file_and_a_new_model_analyses_the_same_file(app):
    """Each file received is taken out of the uploader, which is drawn afresh (a refused type's chip and the
    previous file do not linger); choosing another model then analyses the same file again."""
    app.file_uploader[0].set_value(("song.wav", _wav_bytes(4.0), "audio/wav")).run()
    assert not app.exception and _metric(app, "Genre")
    assert app.file_uploader[0].value is None  # a new, empty uploader
    assert any("Showing **song.wav**" in c.value for c in app.caption)
    app.file_uploader[0].set_value(("fake.mp3", b"<html>not audio</html>" * 20, "audio/mpeg")).run()
    assert app.error and "fake.mp3" in app.error[0].value and app.file_uploader[0].value is None
    app.file_uploader[0].set_value(("song.wav", _wav_bytes(4.0), "audio/wav")).run()
    assert not app.error  # the previous file's message is gone with it
    app.selectbox(key="model_picker").set_value("cnn_mfcc_small").run()
    assert not app.exception
    assert any("model cnn_mfcc_small" in c.value for c in app.caption)


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


def test_the_close_up_draws_its_words_and_chart_before_its_pictures(app, monkeypatch):
    """Under load the slider ran ahead of the close-up: its words and chart (cheap) must not wait behind its
    pictures (a moment's work on a busy server), so they are drawn first."""
    import codeFeature.plots
    import ui

    events = []
    real_chart, real_panels = ui.probability_chart, codeFeature.plots.song_panels

    def chart(*args, **kwargs):
        events.append(("chart", kwargs.get("measure")))
        return real_chart(*args, **kwargs)

    def panels(*args, **kwargs):
        events.append(("pictures", kwargs.get("width")))
        return real_panels(*args, **kwargs)

    monkeypatch.setattr(ui, "probability_chart", chart)
    monkeypatch.setattr(codeFeature.plots, "song_panels", panels)
    app.file_uploader[0].set_value(("song.wav", _wav_bytes(10.0), "audio/wav")).run()
    events.clear()
    app.slider(key="upload_segment").set_value(2).run()
    assert not app.exception
    close_up = [kind for kind, what in events if what == ui.ONE_SEGMENT or kind == "pictures"]
    assert close_up[:2] == ["chart", "pictures"], events
