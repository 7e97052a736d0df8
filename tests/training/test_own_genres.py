"""``python -m training.own_genres``: a model of one's own genres, trained on a generated folder of folders.

Three labels of clearly different sound (harmonic tones, a band of noise, clicks at a tempo), five or
six short songs each, are trained once (the real recipe: musicnn, nested grouped CV, calibration,
thresholds; the int8 check is left out for time). The model must then classify songs it never heard
through ``predict_file``, the CLI's ``--json`` and a collection scan. The refusals need no network.
Nothing here reads ../shared.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training import own_genres

SR = 22050
KINDS = ("tones", "noise", "clicks")


def song(kind: str, seconds: float, seed: int) -> np.ndarray:
    """A short song of one kind: tones (a harmonic note with tremolo), noise (a band of 2-5 kHz noise),
    clicks (a 1.5 kHz click at 110-140 beats a minute)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    if kind == "tones":
        f0 = rng.uniform(200, 400)
        y = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3)) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.5 * t))
    elif kind == "noise":
        from scipy.signal import butter, sosfilt

        lo = rng.uniform(2000, 3000)
        y = sosfilt(butter(4, [lo, lo * 1.8], btype="band", fs=SR, output="sos"), rng.normal(size=len(t)))
    else:
        y = np.zeros(len(t))
        click = np.exp(-np.arange(800) / 80) * np.sin(2 * np.pi * 1500 * np.arange(800) / SR)
        for start in range(0, len(t) - 800, int(SR * 60 / rng.uniform(110, 140))):
            y[start:start + 800] += click
    return (0.5 * y / np.abs(y).max()).astype(np.float32)


def make_folder(root: Path, per_label: int = 6, seconds: float = 4.0, seed: int = 0) -> Path:
    for k, kind in enumerate(KINDS):
        (root / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            ext, fmt = (".flac", "FLAC") if i % 2 else (".wav", "WAV")
            sf.write(root / kind / f"{kind}{i}{ext}", song(kind, seconds, seed + 100 * k + i), SR, format=fmt)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One model trained on 3 labels x 6 songs, with an unreadable file among them; and songs it never heard."""
    root = tmp_path_factory.mktemp("own")
    data = make_folder(root / "data")
    (data / "noise" / "broken.mp3").write_bytes(b"this is not audio" * 100)
    (data / "notes.txt").write_text("not audio, not a label")
    held = root / "held"
    held.mkdir()
    for k, kind in enumerate(KINDS):
        sf.write(held / f"new_{kind}.wav", song(kind, 5.0, 9000 + k), SR)
    dest = root / "models" / "my_genres"
    argv = [str(data), "--out", str(dest), "--cache", str(root / "cache"), "--skip-int8"]
    summary = own_genres.run(argv)
    return {"root": root, "data": data, "held": held, "dest": dest, "summary": summary, "argv": argv}


def test_training_writes_a_model_folder_with_its_labels_figures_and_rule(trained):
    from codeFeature.model_io import read_manifest

    dest = trained["dest"]
    assert sorted(p.name for p in dest.iterdir()) == ["manifest.json", "model.json", "model.weights.h5"]
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    m = read_manifest(dest)
    assert m["labels"] == ["clicks", "noise", "tones"]  # the sub-folders, sorted
    assert len(set(m["colours"].values())) == 3 and set(m["colours"]) == set(m["labels"])
    assert m["training"]["songs_per_label"] == {"clicks": 6, "noise": 6, "tones": 6}
    assert [s["file"] for s in m["training"]["skipped"]] == ["noise/broken.mp3"]
    cv = m["metrics"]["cv_grouped"]
    assert cv["songs"] == 18 and sum(v["songs"] for v in cv["per_label"].values()) == 18
    assert np.asarray(cv["confusion"]).sum() == 18
    # clearly different sounds: the held-out answers of the nested cross-validation are right
    assert cv["song_accuracy"] >= 0.9, cv
    assert all(lo <= v["recall"] <= hi for v in cv["per_label"].values() for lo, hi in [v["interval_95"]])
    rule = m["decision"]
    assert rule["aggregate"] == "vote" and 0 <= rule["min_margin"] <= 1 and 0 < rule["min_tag"] < 1
    assert m["reproduce"].startswith("python -m training.own_genres ") and "--skip-int8" in m["reproduce"]
    assert m["training"]["head"]["classes"] == m["labels"]
    assert m["export_max_abs_diff"] < 1e-4


def test_the_model_classifies_songs_it_never_heard_through_predict_file(trained):
    from codeFeature.model_io import load_model
    from codeFeature.predict import predict_file

    model = load_model(trained["dest"])
    assert model.labels == ("clicks", "noise", "tones")
    for kind in KINDS:
        prediction = predict_file(trained["held"] / f"new_{kind}.wav", model=model)
        assert prediction.verdict.genre == kind
        assert prediction.probabilities.shape[1] == 3
        assert set(prediction.extras) == {"tags"}


def test_the_cli_answers_with_the_models_labels(trained, capsys):
    from codeFeature.__main__ import main

    songs = [str(trained["held"] / f"new_{kind}.wav") for kind in KINDS]
    assert main(["--model", str(trained["dest"]), *songs, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [r["genre"] for r in rows] == list(KINDS)
    assert all(set(r["probabilities"]) == {"clicks", "noise", "tones"} for r in rows)


def test_a_collection_scan_stores_the_models_labels(trained, tmp_path):
    from codeFeature.__main__ import main

    db = tmp_path / "library.sqlite"
    assert main(["scan", str(trained["held"]), "--db", str(db), "--model", str(trained["dest"]), "--quiet"]) == 0
    table = tmp_path / "library.csv"
    assert main(["export", "--db", str(db), str(table)]) == 0
    with open(table, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {Path(r["path"]).name: r["genre"] for r in rows} == {f"new_{k}.wav": k for k in KINDS}
    assert all({"p_clicks", "p_noise", "p_tones"} <= set(r) for r in rows)


def test_the_model_is_found_by_name_on_the_model_path(trained, monkeypatch):
    from codeFeature.model_io import MODEL_PATH_ENV, list_models, resolve_model_dir

    monkeypatch.setenv(MODEL_PATH_ENV, str(trained["dest"].parent))
    assert "my_genres" in list_models(task="genre")
    assert resolve_model_dir("my_genres") == trained["dest"]


def test_dest_that_exists_is_refused_without_force(trained, capsys):
    before = (trained["dest"] / "manifest.json").read_bytes()
    assert own_genres.main(trained["argv"]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and "--force" in err and "Traceback" not in err
    assert (trained["dest"] / "manifest.json").read_bytes() == before


# ------------------------------------------------------------------ refusals (no network runs)

def _refused(argv, capsys) -> str:
    assert own_genres.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_fewer_than_two_labels_is_refused(tmp_path, capsys):
    (tmp_path / "only").mkdir()
    sf.write(tmp_path / "only" / "a.wav", song("tones", 1.0, 0), SR)
    assert "at least 2 labels" in _refused([tmp_path, "--out", tmp_path.parent / "x1"], capsys)
    assert "at least 2 labels" in _refused([tmp_path / "only", "--out", tmp_path.parent / "x2"], capsys)


def test_a_label_with_too_few_songs_is_refused_with_the_minimum(tmp_path, capsys):
    data = make_folder(tmp_path / "data", per_label=own_genres.MIN_SONGS, seconds=1.0)
    for extra in (data / "tones").iterdir():
        extra.unlink()
        break
    err = _refused([data, "--out", tmp_path / "out"], capsys)
    assert f"at least {own_genres.MIN_SONGS}" in err and "'tones' has 4" in err
    assert not (tmp_path / "out").exists()


def test_a_missing_folder_and_a_folder_of_no_audio_are_refused(tmp_path, capsys):
    assert "is not a folder" in _refused([tmp_path / "nowhere", "--out", tmp_path / "out"], capsys)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "cover.jpg").write_bytes(b"\xff\xd8")
    assert "has none" in _refused([tmp_path, "--out", tmp_path / "out"], capsys)


def test_dest_inside_the_folder_and_force_on_a_non_model_folder_are_refused(tmp_path, capsys):
    data = make_folder(tmp_path / "data", per_label=own_genres.MIN_SONGS, seconds=1.0)
    assert "inside" in _refused([data, "--out", data / "model"], capsys)
    assert "inside" in _refused([data, "--out", tmp_path], capsys)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    assert "not a model folder" in _refused([data, "--out", precious, "--force"], capsys)
    assert (precious / "keep.txt").read_text() == "mine"


def test_artist_csv_groups_songs_and_bad_rows_are_refused(tmp_path, capsys):
    data = make_folder(tmp_path / "data", per_label=own_genres.MIN_SONGS, seconds=1.0)
    labels, songs, _ = own_genres.find_songs(data)
    csv_path = tmp_path / "artists.csv"
    csv_path.write_text("file,artist\n" + "".join(f"{s.rel},band{i % 2}\n" for i, s in enumerate(songs))
                        + "tones0.wav,band0\nnot/there.wav,x\n")
    artists, notes = own_genres.read_artists(csv_path, songs)
    assert len(artists) == len(songs) and artists["tones/tones0.wav"] == "band0"
    assert notes == ["--artists: 1 rows name no song of the folder and were ignored: line 18 (not/there.wav)"]
    csv_path.write_text("file,artist\ntones/tones0.wav\n")
    assert "line 2" in _refused([data, "--out", tmp_path / "out", "--artists", csv_path], capsys)
    # every song of a label by one artist: the label cannot be held out by artist
    csv_path.write_text("".join(f"{s.rel},{s.path.parent.name}\n" for s in songs))
    assert "at least 2 artists" in _refused([data, "--out", tmp_path / "out", "--artists", csv_path], capsys)


def test_too_few_readable_songs_is_refused_after_skipping(tmp_path):
    data = make_folder(tmp_path, per_label=own_genres.MIN_SONGS, seconds=1.0)
    labels, songs, _ = own_genres.find_songs(data)
    readable = [s for s in songs if s.rel != "clicks/clicks0.wav"]
    with pytest.raises(own_genres.Refusal, match=r"at least 5 readable \(after skipping 1 unreadable files\)"):
        own_genres.check_counts(labels, readable, {s.rel: s.rel for s in readable}, False, skipped=1)


# ------------------------------------------------------------------ the pieces

def test_balanced_weights_give_every_label_and_song_the_same_total():
    y = np.array([0, 0, 0, 0, 1, 1])
    tracks = np.array(["a", "a", "a", "b", "c", "d"])
    w = own_genres.balanced_weights(y, tracks)
    assert w[y == 0].sum() == pytest.approx(w[y == 1].sum())
    assert w[tracks == "a"].sum() == pytest.approx(w[tracks == "b"].sum())
    assert w.mean() == pytest.approx(1.0)


def test_grouped_folds_never_split_a_group():
    rng = np.random.default_rng(0)
    groups = np.repeat([f"g{i}" for i in range(12)], 3)
    y = np.repeat(np.arange(12) % 3, 3)
    rng.shuffle(groups)  # groups need not be contiguous
    for train, test in own_genres.grouped_folds(y, groups, own_genres.n_folds(y, groups, 5), seed=1):
        assert not set(groups[train]) & set(groups[test])


def test_install_replaces_a_model_folder_whole_and_an_interrupted_build_leaves_nothing(tmp_path, monkeypatch):
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "manifest.json").write_text("old")
    new = tmp_path / ".model.building-1"
    new.mkdir()
    (new / "manifest.json").write_text("new")
    own_genres.install(new, dest)
    assert (dest / "manifest.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    # a failure while renaming puts the old model back
    again = tmp_path / ".model.building-2"
    again.mkdir()
    real_rename = own_genres.os.rename

    def failing(src, dst):
        if Path(src) == again:
            raise OSError("disk gone")
        return real_rename(src, dst)

    monkeypatch.setattr(own_genres.os, "rename", failing)
    with pytest.raises(OSError):
        own_genres.install(again, dest)
    assert (dest / "manifest.json").read_text() == "new"


def test_an_interrupted_run_leaves_no_model_and_no_temporary_folder(tmp_path, monkeypatch):
    """The whole command with fake embeddings (no musicnn forward), interrupted while writing the model."""
    from training.musicnn_embeddings import LAYERS, Embedded

    data = make_folder(tmp_path / "data", per_label=own_genres.MIN_SONGS, seconds=1.0)

    def fake_embed(base, songs, cache_dir):
        rng = np.random.default_rng(0)
        dims = {"penultimate": 200, "mean_pool": 753, "max_pool": 753, "taggram": 50}
        centres = {k: rng.normal(0, 3, (3, d)) for k, d in dims.items()}
        layers = {k: np.concatenate([centres[k][s.label] + rng.normal(size=(2, dims[k])) for s in songs])
                  for k in LAYERS}
        layers["taggram"] = 1 / (1 + np.exp(-layers["taggram"]))
        return Embedded(layers, np.repeat([s.label for s in songs], 2),
                        np.repeat([s.rel for s in songs], 2).astype(str)), []

    def interrupted(*args, **kwargs):
        folder = Path(args[1])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.json").write_text("{")  # half written
        raise KeyboardInterrupt

    monkeypatch.setattr(own_genres, "embed_songs", fake_embed)
    monkeypatch.setattr(own_genres, "export_check", lambda *a, **k: 0.0)
    monkeypatch.setattr("codeFeature.model_io.save_model", interrupted)
    out = tmp_path / "models" / "mine"
    with pytest.raises(KeyboardInterrupt):
        own_genres.run([str(data), "--out", str(out), "--cache", str(tmp_path / "cache"), "--skip-int8"])
    assert list((tmp_path / "models").iterdir()) == []


@pytest.mark.parametrize("kind,params", [("lr", {"C": 0.01}), ("svm", {"C": 1.0, "gamma_scale": 0.1}),
                                         ("mlp", {"hidden": 8, "alpha": 1.0})])
def test_a_two_label_head_tells_them_apart_and_exports_the_same(kind, params):
    """scikit-learn keeps one logit for two classes; the head and its Keras export must still tell them apart."""
    import keras

    from training.musicnn_heads import fit_head, head_layers

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (40, 6)), rng.normal(1.5, 1, (40, 6))])
    y = np.repeat([0, 1], 40)
    head = fit_head(kind, x, y, labels=("calm", "loud"), seed=0, **params)
    head.temperature = 0.7
    probs = head.probabilities(x)
    assert probs.shape == (80, 2) and (probs.argmax(1) == y).mean() > 0.85
    inp = keras.Input((6,))
    exported = np.asarray(keras.Model(inp, head_layers(inp, head))(x.astype(np.float32)))
    np.testing.assert_allclose(exported, probs, atol=2e-5)
