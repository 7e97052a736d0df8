"""The Streamlit app, driven headlessly through ``streamlit.testing.v1.AppTest``."""

import io
import json
import re
import shutil

import pytest
import soundfile as sf

from codeFeature import GENRES, load_model, predict_file, settings
from codeFeature.model_io import default_model_name
from tests.app_models import THREE_LABELS, write_own_label_models
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
    # every figure as "label: **81.8 %** (n = 98)", with what it was measured on under it; no bare percentage
    figures = [m.value for m in app.sidebar.markdown if "%" in m.value]
    assert figures and all(re.fullmatch(r"[^:*]+: \*\*\d{1,3}\.\d %\*\* \(n = \d+\)", f) for f in figures), figures
    assert not app.sidebar.metric
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
    if expected.verdict.state == "outside":  # a test chord may be heard as not music: the nearest genre instead
        assert _metric(app, "Nearest genre") == f"{expected.genre} {expected.verdict.confidence:.0%}"
    else:
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
    assert "Valid accuracy, tracks: **50.0 %** (n = 12)" in [m.value for m in at.sidebar.markdown]


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
    # no "Confidence" under "Not music" (it would read as confidence in not being music): the nearest genre, named
    labels = [m.label for m in at.metric]
    assert "Confidence" not in labels and "Nearest genre" in labels
    nearest = next(m for m in at.metric if m.label == "Nearest genre").value
    assert nearest.split()[0] in GENRES and nearest.endswith("%")
    assert not any("Sounds like" in m.value for m in at.markdown)  # musicnn's music tags, named as tags


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


def _chart_table(chart):
    """The rows a chart draws (Streamlit sends them beside the spec, in Arrow's stream format)."""
    import pyarrow as pa

    (named,) = chart.proto.datasets
    return pa.ipc.open_stream(named.data.data).read_pandas()


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
    from webapp import charts

    assert [charts.end_label(d) for d in (29.7, 29.97, 300.0, 3.0, 61.25)] == ["0:29.7", "0:29.9", "5:00", "0:03", "1:01.2"]


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

    from codeFeature.errors import ModelError
    from webapp import models

    calls, release = [], threading.Event()

    def slow_then_flaky(name):
        calls.append(name)
        release.wait(30)
        if len(calls) == 1:
            raise ModelError("the first load fails")
        return f"model {name}"

    monkeypatch.setattr(models, "_load_and_warm", slow_then_flaky)
    models._model_future.clear()
    try:
        models.preload_model("some_model")  # returns at once, while the load is still going on
        assert not models._model_future("some_model").done()
        release.set()
        with pytest.raises(ModelError, match="first load fails"):
            models.get_model("some_model")
        assert models.get_model("some_model") == "model some_model"
        assert models.get_model("some_model") == "model some_model"  # loaded once, then shared
        assert calls == ["some_model", "some_model"]
    finally:
        models._model_future.clear()


def test_the_close_up_draws_its_words_and_chart_before_its_pictures(app, monkeypatch):
    """Under load the slider ran ahead of the close-up: its words and chart (cheap) must not wait behind its
    pictures (a moment's work on a busy server), so they are drawn first."""
    import codeFeature.plots
    from webapp import charts

    events = []
    real_chart, real_panels = charts.probability_chart, codeFeature.plots.song_panels

    def chart(*args, **kwargs):
        events.append(("chart", kwargs.get("measure")))
        return real_chart(*args, **kwargs)

    def panels(*args, **kwargs):
        events.append(("pictures", kwargs.get("width")))
        return real_panels(*args, **kwargs)

    monkeypatch.setattr(charts, "probability_chart", chart)
    monkeypatch.setattr(codeFeature.plots, "song_panels", panels)
    app.file_uploader[0].set_value(("song.wav", _wav_bytes(10.0), "audio/wav")).run()
    events.clear()
    app.slider(key="upload_segment").set_value(2).run()
    assert not app.exception
    close_up = [kind for kind, what in events if what == charts.ONE_SEGMENT or kind == "pictures"]
    assert close_up[:2] == ["chart", "pictures"], events


# ---------------------------------------------------------------- honest figures in the sidebar

def _model_copy(tmp_path, monkeypatch, name: str, edit) -> None:
    """A models folder holding a copy of cnn_mfcc_small named ``name`` (the default), its manifest edited."""
    from codeFeature import model_io

    models = tmp_path / "models"
    shutil.copytree(model_io.resolve_model_dir("cnn_mfcc_small"), models / name)
    manifest = json.loads((models / name / "manifest.json").read_text())
    manifest["name"] = name
    edit(manifest)
    (models / name / "manifest.json").write_text(json.dumps(manifest))
    (models / "default.txt").write_text(f"{name}\n")
    monkeypatch.setenv("CODEFEATURE_MODELS", str(models))
    settings.reload()


def _sidebar_figures(at) -> list[str]:
    return [m.value for m in at.sidebar.markdown if "(n = " in m.value]


def test_the_sidebar_shows_the_manifests_figures_each_with_its_n_and_what_it_was_measured_on(tmp_path, monkeypatch):
    figures = [
        {"label": "Accuracy when sure, GTZAN valid", "value": 0.818, "n": 98, "measured_on": "the 98 GTZAN valid "
         "tracks, answers of the train-only twin", "command": "python -m training.evaluate --model sure_test"},
        {"label": "Accuracy when sure, real music", "value": 7 / 13, "n": 13,
         "measured_on": "13 labelled real recordings from outside GTZAN", "command": "python -m training.real_music"},
        {"label": "Not a proportion", "value": 81.8, "n": 98, "measured_on": "x", "command": "y"},  # left out
        {"label": "No n", "value": 0.5, "measured_on": "x", "command": "y"},  # left out
    ]

    def edit(manifest):
        manifest["figures"] = figures
        manifest["metrics"] = {"valid": {"track_accuracy": 0.3, "tracks": 98, "fit_on": "train"}}  # not shown

    _model_copy(tmp_path, monkeypatch, "sure_test", edit)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert _sidebar_figures(at) == ["Accuracy when sure, GTZAN valid: **81.8 %** (n = 98)",
                                    "Accuracy when sure, real music: **53.8 %** (n = 13)"]
    captions = [c.value for c in at.sidebar.caption]
    assert "the 98 GTZAN valid tracks, answers of the train-only twin" in captions
    assert "13 labelled real recordings from outside GTZAN" in captions
    helps = [m.proto.help for m in at.sidebar.markdown if "(n = " in m.value]
    assert helps == ["Reproduce: `python -m training.evaluate --model sure_test`",
                     "Reproduce: `python -m training.real_music`"]
    assert not any("30.0 %" in m.value or "Valid accuracy" in m.value for m in at.sidebar.markdown)


def test_a_refit_models_valid_figure_is_labelled_as_its_train_only_twins(tmp_path, monkeypatch):
    """Without "figures", the metrics are shown with what they measured: a model refit on train + valid was
    never scored on held-out valid, so its valid figure is its train-only twin's, and the CV comes first."""

    def edit(manifest):
        manifest.pop("figures", None)
        manifest["metrics"] = {
            "valid": {"track_accuracy": 0.6939, "tracks": 98, "segment_accuracy": 0.6324, "segments": 253,
                      "ece": {"track": 0.1345}, "fit_on": "train"},
            "valid_refit": {"track_accuracy": 0.8469, "tracks": 98},
            "cv_artist_5fold": {"track_accuracy": 0.6405, "tracks": 305}}
        manifest["training"].update(fit_on="train+valid", fit_tracks=333)

    _model_copy(tmp_path, monkeypatch, "refit_test", edit)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert _sidebar_figures(at) == ["Artist-grouped 5-fold CV, tracks: **64.0 %** (n = 305)",
                                    "Same recipe fitted on train only, valid tracks: **69.4 %** (n = 98)",
                                    "Same recipe fitted on train only, valid segments: **63.2 %** (n = 253)"]
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert "Not this model: it was refit on train + valid" in captions and "84.7" not in captions
    assert "Calibration error (ECE, tracks) 0.135 on the same 98 valid tracks." in captions
    assert any(m.value.startswith("**Trained on** 333 tracks (train + valid) from GTZAN") for m in at.sidebar.markdown)


def test_a_model_fitted_on_train_says_valid_selected_it(tmp_path, monkeypatch):
    def edit(manifest):
        manifest.pop("figures", None)
        manifest["metrics"] = {"valid": {"track_accuracy": 0.3061, "tracks": 98, "segment_accuracy": 0.1858,
                                         "segments": 253}}

    _model_copy(tmp_path, monkeypatch, "plain_test", edit)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert _sidebar_figures(at) == ["Valid accuracy, tracks: **30.6 %** (n = 98)",
                                    "Valid accuracy, segments: **18.6 %** (n = 253)"]
    captions = [c.value for c in at.sidebar.caption]
    # the tracks and the segments were measured on the same split: said once, under both
    assert captions.count("GTZAN valid split (valid_filtered.txt), which also selected this model.") == 1


# ---------------------------------------------------------------- any number of labels

@pytest.fixture(scope="module")
def three_label_models(tmp_path_factory):
    """A models folder with one untrained (seeded) model answering with three made-up labels."""
    return write_own_label_models(tmp_path_factory.mktemp("models"))


def test_a_model_of_three_made_up_labels_gets_its_own_charts_legend_and_colours(three_label_models, monkeypatch):
    from webapp import charts

    monkeypatch.setenv("CODEFEATURE_MODELS", str(three_label_models))
    settings.reload()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception
    assert any("this model's 3 labels (zouk, drone, chiptune)" in m.value for m in at.markdown)
    at.file_uploader[0].set_value(("song.wav", _wav_bytes(10.0), "audio/wav")).run()
    assert not at.exception and not at.error
    assert _metric(at, "Genre").lower() in THREE_LABELS
    colours = charts.label_colours(THREE_LABELS)
    assert len(set(colours.values())) == 3
    specs = _chart_specs(at)
    assert len(specs) == 3  # the song's probabilities, the timeline and the close-up's probabilities
    for spec in specs:
        layer = spec.get("layer", [spec])[0]
        scale = layer["encoding"]["color"]["scale"]
        assert scale["domain"] == THREE_LABELS and scale["range"] == list(colours.values())
    tables = [_chart_table(chart) for chart in at.get("vega_lite_chart")]
    assert all(set(table["genre"]) <= set(THREE_LABELS) for table in tables)
    bars = [table for table, spec in zip(tables, specs) if "layer" in spec]
    assert [sorted(table["genre"]) for table in bars] == [sorted(THREE_LABELS)] * 2  # one bar a label, no more
    assert all(label in chart.proto.alt for chart in at.get("vega_lite_chart")[:1] for label in THREE_LABELS)
    (legend,) = [m.value for m in at.markdown if "■" in m.value]
    for label, colour in colours.items():
        assert f"color:{colour};" in legend and f"&nbsp;{label}</span>" in legend
    assert not any(genre in legend for genre in ("blues", "rock", "jazz"))


def test_label_colours_keep_gtzans_and_never_repeat_for_any_number_of_labels():
    from webapp import charts

    assert charts.label_colours() == charts.GENRE_COLOURS  # GTZAN's genres keep their colours
    mixed = charts.label_colours(["rock", "house", "techno"])
    assert mixed == {"rock": charts.GENRE_COLOURS["rock"], "house": charts.SPARE_COLOURS[0],
                     "techno": charts.SPARE_COLOURS[1]}
    many = [f"label {k}" for k in range(40)]
    colours = charts.label_colours(many)
    assert list(colours) == many and len(set(colours.values())) == 40
    assert all(re.fullmatch(r"#[0-9a-fA-F]{6}", c) for c in colours.values())
    assert "&lt;b&gt;" in charts.genre_legend(["<b>"])  # a folder's name is text, never markup
