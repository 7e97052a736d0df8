"""Genre heads on musicnn outputs: fitted with scikit-learn, exported as built-in Keras layers.

The export must give the fitted head's probabilities to float32 round-off, load from JSON in safe
mode (no Lambda, no pickle), and the shipped models must be what their manifests say.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from codeFeature.config import GENRES
from codeFeature.model_io import list_models, load_model
from codeFeature.predict import predict_audio
from tests.conftest import chord

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "gtzan"


def _synthetic(n=160, dim=24, classes=(0, 2, 3, 5, 7), seed=0):
    rng = np.random.default_rng(seed)
    y = np.array([classes[i % len(classes)] for i in range(n)])
    centres = rng.normal(0, 2, (len(GENRES), dim))
    x = centres[y] + rng.normal(size=(n, dim)) * rng.uniform(0.5, 3, dim) + rng.normal(0, 20, dim)
    return x, y


def _exported(head, dim):
    import keras

    from training.musicnn_heads import head_layers

    inp = keras.Input((dim,), name="features")
    model = keras.Model(inp, head_layers(inp, head))
    # the same model through its JSON in safe mode: only built-in layers may appear
    restored = keras.models.model_from_json(model.to_json())  # safe_mode is on by default
    restored.set_weights(model.get_weights())
    return model, restored


@pytest.mark.parametrize("kind,params", [("svm", {"C": 1.0, "gamma_scale": 0.3}), ("lr", {"C": 0.1}),
                                         ("mlp", {"hidden": 16, "alpha": 1.0})])
def test_exported_head_agrees_with_the_fitted_head_on_synthetic_embeddings(kind, params):
    from training.musicnn_heads import fit_head, fit_temperature, track_weights

    x, y = _synthetic()
    tracks = np.array([f"t{i // 3}" for i in range(len(y))])
    head = fit_head(kind, x, y, sample_weight=track_weights(tracks), seed=0, **params)
    head.temperature = fit_temperature(head.scores(x), y)
    assert head.temperature != 1.0
    model, restored = _exported(head, x.shape[1])
    test = _synthetic(n=60, seed=1)[0]
    expected = head.probabilities(test)
    for m in (model, restored):
        got = np.asarray(m.predict(test.astype(np.float32), verbose=0))
        np.testing.assert_allclose(got, expected, atol=2e-5)
    assert expected[:, [1, 4, 6, 8, 9]].max() < 1e-6  # genres absent from training never win
    # the temperature keeps the winner: calibration cannot change a vote
    np.testing.assert_array_equal(head.probabilities(test, 1.0).argmax(1), expected.argmax(1))
    if kind == "svm":  # the one-vs-rest decision values are sklearn's
        from training.musicnn_heads import svm_arrays

        vectors, dual, _ = svm_arrays(head)
        assert vectors.dtype == np.float32 and dual.shape == (len(vectors), len(head.classes))
        z = head.standardise(test)
        np.testing.assert_allclose(head.scores(test)[:, head.classes],
                                   np.stack([m.decision_function(z) for m in head.model], 1))


def test_ece_and_temperature_mean_what_they_say():
    from training.musicnn_heads import expected_calibration_error, fit_temperature

    rng = np.random.default_rng(0)
    conf = rng.uniform(0.1, 1, 5000)
    assert expected_calibration_error(conf, rng.uniform(size=5000) < conf) < 0.03  # calibrated by construction
    assert expected_calibration_error(np.full(100, 0.9), np.arange(100) < 50) == pytest.approx(0.4)
    # scores that are 3x too confident get a temperature of about 3
    logits = rng.normal(size=(4000, 10)) * 2
    y = np.array([rng.choice(10, p=np.exp(l) / np.exp(l).sum()) for l in logits])
    assert fit_temperature(3 * logits, y) == pytest.approx(3, rel=0.1)


def test_sturm_artist_index_is_read():
    from training.kfold import read_artists

    path = Path(__file__).resolve().parents[2] / "training" / "splits" / "artists_train_valid.txt"
    artists = read_artists(path)
    assert artists["blues.00000"] == "John Lee Hooker"
    assert len(artists) > 500 and "classical.00059" not in artists  # an unidentified artist is left out


@pytest.mark.skipif(not (SHARED / "splits" / "valid_filtered.txt").is_file(), reason="shared GTZAN data absent")
def test_exported_head_agrees_on_real_valid_segment_embeddings(tmp_path):
    """On real musicnn embeddings of valid segments, through the whole folded model from log-mel input."""
    import dataclasses

    from training.data import load_set, read_split
    from training.musicnn_heads import fit_head, fit_temperature, input_matrix
    from training.musicnn_embeddings import embed_files
    from training.train_musicnn_head import build_model

    data = [SHARED / "genres", SHARED / "excerpts"]
    ids = read_split(SHARED / "splits" / "valid_filtered.txt")[::3]  # a third of valid keeps the test quick
    base = load_model("musicnn_msd", precision="float32")
    embedded = {"msd": embed_files("musicnn_msd", data, track_ids=ids, cache_dir=tmp_path)}
    spec = "msd:penultimate+msd:taggram"
    x = input_matrix(spec, embedded)
    head = fit_head("svm", x, embedded["msd"].y, C=1.0, gamma_scale=0.1)
    head.temperature = fit_temperature(head.scores(x), embedded["msd"].y)
    model = build_model(base, spec, head, "test_head")
    segments = load_set(data, ids, base.config, cache_dir=tmp_path)
    got = dataclasses.replace(base, keras_model=model, _graph=None).forward(segments.x)
    np.testing.assert_allclose(got[0], head.probabilities(x), atol=1e-4)
    np.testing.assert_allclose(got[1], embedded["msd"].layers["taggram"], atol=1e-5)  # tags untouched


@pytest.mark.parametrize("name", ["musicnn_genre", "musicnn_genre_lr"])
def test_shipped_musicnn_genre_models(name):
    if name not in list_models():
        pytest.skip(f"models/{name} is not shipped")
    model = load_model(name)
    architecture = (model.path / "model.json").read_text()
    assert "Lambda" not in architecture and "lambda" not in architecture
    # small enough to clone quickly: the trunk (3.2 MB) and the head's support vectors (the default: two heads)
    assert (model.path / "model.weights.h5").stat().st_size < 8e6
    assert model.config.sample_rate == 16000 and model.labels == GENRES
    prediction = predict_audio(chord(7.0, 16000), model=model)
    assert prediction.probabilities.shape == (2, 10)
    np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1, atol=1e-5)
    assert prediction.extras["tags"].shape == (2, 50)
    tags = prediction.top_tags(3)
    assert len(tags) == 3 and all(t in model.manifest["extra_outputs"][0]["labels"] for t, _ in tags)
    assert tags[0][1] >= tags[1][1] >= tags[2][1]
    # the tag output is the pretrained tagger's, untouched by the head (both in float32: auto may run the
    # two folders on different paths, as valid judged each folder's int8)
    exact = predict_audio(chord(7.0, 16000), model=load_model(name, precision="float32"))
    tagger = load_model(model.manifest["base_model"]["name"], precision="float32")
    direct = predict_audio(chord(7.0, 16000), model=tagger)
    np.testing.assert_allclose(exact.extras["tags"], direct.probabilities, atol=1e-5)
    metrics = model.manifest["metrics"]
    for key in ("track_accuracy", "tracks", "segment_accuracy", "segments"):
        assert key in metrics["valid"]
    assert metrics["valid"]["tracks"] == 98
    decision = model.manifest.get("decision")
    if decision is not None:
        assert decision["source"].startswith("python -m training.")
        assert model.decision_rule.aggregate in ("vote", "mean")
    json.dumps(model.manifest)


@pytest.mark.skipif(not (SHARED / "splits" / "valid_filtered.txt").is_file(), reason="shared GTZAN data absent")
def test_evaluate_reproduces_the_lr_heads_valid_figure_and_flags_a_refit():
    from training.evaluate import evaluate, seen_note

    if "musicnn_genre_lr" not in list_models():
        pytest.skip("models/musicnn_genre_lr is not shipped")
    split = SHARED / "splits" / "valid_filtered.txt"
    model = load_model("musicnn_genre_lr", precision="float32")
    result = evaluate(model, [SHARED / "genres", SHARED / "excerpts"], split=split)
    valid = model.manifest["metrics"]["valid"]
    assert (result["track_accuracy"], result["tracks"]) == (valid["track_accuracy"], valid["tracks"])
    assert result["segment_accuracy"] == valid["segment_accuracy"]
    assert result["ece"]["track"] == pytest.approx(valid["ece"]["track"], abs=2e-3)
    assert result["note"] is None  # fitted on train only
    refit = load_model("musicnn_genre").manifest
    if refit["training"]["fit_on"] == "train+valid":
        assert "not an estimate" in seen_note(refit, split)
        assert seen_note(refit, SHARED / "splits" / "train_filtered.txt") is not None
