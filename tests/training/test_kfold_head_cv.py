"""The repeated artist-grouped CV report of the musicnn genre head (training.head_cv_report), on a small
synthetic set: no artist on both sides of any fold, every track scored once a repeat, and per-genre recall,
its n and its Wilson interval computed as stated. No audio, no network, no /work/shared."""

import numpy as np
import pytest

from codeFeature.config import GENRES


def _synthetic_embedded(artists_per_genre=4, tracks_per_artist=3, segments=2, dim=12, seed=0):
    from training.musicnn_embeddings import Embedded

    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (len(GENRES), dim))
    rows, ys, ts, artists = [], [], [], {}
    for g, genre in enumerate(GENRES):
        for a in range(artists_per_genre):
            for k in range(tracks_per_artist):
                track = f"{genre}.{a * tracks_per_artist + k:05d}"
                artists[track] = f"{genre}-artist-{a}"
                for _ in range(segments):
                    rows.append(centres[g] + rng.normal(0, 2.5, dim))
                    ys.append(g)
                    ts.append(track)
    x = np.array(rows, np.float32)
    e = Embedded({"penultimate": x, "mean_pool": x, "max_pool": x, "taggram": x[:, :5]}, np.array(ys),
                 np.array(ts))
    return {"msd": e}, artists


RECIPE = {"spec": "msd:penultimate", "kind": "lr", "params": {"C": 0.1}, "weighting": "genre", "mixup": 0.0}


def test_no_artist_is_on_both_sides_of_a_fold_and_every_track_is_scored_once_a_repeat():
    from training.head_cv_report import grouped_cv

    embedded, artists = _synthetic_embedded()
    pool = sorted(artists)
    folds = grouped_cv(embedded, pool, artists, RECIPE, repeats=3, folds=4, seed=7, calibrate=False)
    assert len(folds) == 12
    for f in folds:
        assert f["test_artists"] and not set(f["train_artists"]) & set(f["test_artists"])
        assert {artists[t] for t in f["tracks"]} == set(f["test_artists"])
    for r in range(3):
        scored = [t for f in folds if f["repeat"] == r for t in f["tracks"]]
        assert sorted(scored) == pool  # each track held out exactly once per repeat
    # the repeats are different splits (different seeds), not the same split three times
    splits = {r: frozenset(frozenset(f["tracks"]) for f in folds if f["repeat"] == r) for r in range(3)}
    assert len(set(splits.values())) > 1
    # and the heads learned something: far above chance (0.1) on well-separated synthetic genres
    acc = np.mean([np.mean(f["true"] == f["pred"]) for f in folds])
    assert acc > 0.5


def test_calibrated_recipe_with_windows_and_mixup_runs_through_the_same_folds():
    from training.head_cv_report import grouped_cv, summarise

    embedded, artists = _synthetic_embedded(artists_per_genre=3, tracks_per_artist=3)
    pool = sorted(artists)
    recipe = dict(RECIPE, mixup=1.0)
    folds = grouped_cv(embedded, pool, artists, recipe, repeats=1, folds=3, seed=1, calibrate=True,
                       overlap=embedded)
    s = summarise(folds)
    assert s["tracks"] == len(pool) and s["repeats"] == 1
    assert all(v["n"] == 9 for v in s["per_genre"].values())


def test_per_genre_recall_n_wilson_and_worst_genre_arithmetic():
    from training.head_cv_report import criterion, summarise, wilson

    labels = ("a", "b", "c")
    # repeat 0: genre a 4 tracks (3 right), b 2 tracks (2 right), c 4 tracks (1 right), over two folds
    f0 = {"repeat": 0, "true": np.array([0, 0, 1, 2, 2]), "pred": np.array([0, 1, 1, 2, 0]),
          "tracks": ["a1", "a2", "b1", "c1", "c2"]}
    f1 = {"repeat": 0, "true": np.array([0, 0, 1, 2, 2]), "pred": np.array([0, 0, 1, 0, 1]),
          "tracks": ["a3", "a4", "b2", "c3", "c4"]}
    # repeat 1: the same ten tracks in other folds; a 4/4, b 1/2, c 2/4
    f2 = {"repeat": 1, "true": np.array([0, 0, 0, 0, 1]), "pred": np.array([0, 0, 0, 0, 1]),
          "tracks": ["a1", "a2", "a3", "a4", "b1"]}
    f3 = {"repeat": 1, "true": np.array([1, 2, 2, 2, 2]), "pred": np.array([0, 2, 2, 1, 1]),
          "tracks": ["b2", "c1", "c2", "c3", "c4"]}
    s = summarise([f0, f1, f2, f3], labels)
    g = s["per_genre"]
    assert g["a"]["recall"] == pytest.approx(7 / 8) and g["a"]["n"] == 4
    assert g["b"]["recall"] == pytest.approx(3 / 4) and g["b"]["n"] == 2
    assert g["c"]["recall"] == pytest.approx(3 / 8) and g["c"]["n"] == 4
    assert (g["c"]["correct_over_repeats"], g["c"]["scored_over_repeats"]) == (3, 8)
    # the interval is on the genre's distinct tracks (4), not the 8 scorings of two repeats
    lo, hi = wilson(3 / 8 * 4, 4)
    assert g["c"]["wilson95"] == [round(lo, 4), round(hi, 4)]
    assert s["worst_genre"]["genre"] == "c" and s["genres_under_0.40"] == ["c"]
    fold_acc = [3 / 5, 3 / 5, 1.0, 2 / 5]
    assert s["track_accuracy"]["mean"] == pytest.approx(np.mean(fold_acc), abs=1e-4)
    assert s["track_accuracy"]["std"] == pytest.approx(np.std(fold_acc), abs=1e-4)
    assert s["track_accuracy"]["pooled_per_repeat"] == [0.6, 0.7]
    assert s["tracks"] == 10
    assert criterion(s) == pytest.approx(np.mean(fold_acc) + 3 / 8, abs=1e-4)


def test_wilson_interval_matches_the_textbook_values():
    from training.head_cv_report import wilson

    lo, hi = wilson(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)
    lo, hi = wilson(0, 5)
    assert lo == 0.0 and hi == pytest.approx(0.4345, abs=1e-4)
    assert wilson(0, 0) == (0.0, 1.0)


def test_genre_weights_give_every_genre_the_same_total_and_its_tracks_equal_shares():
    from training.musicnn_heads import genre_weights

    y = np.array([0] * 6 + [1] * 2 + [2] * 3)
    tracks = np.array(["a1"] * 4 + ["a2"] * 2 + ["b1", "b2"] + ["c1"] * 3)
    w = genre_weights(tracks, y)
    totals = [w[y == g].sum() for g in range(3)]
    np.testing.assert_allclose(totals, totals[0])
    assert w[:4].sum() == pytest.approx(w[4:6].sum())  # two tracks of genre 0 share its weight equally
    assert w.mean() == pytest.approx(1.0)


def test_mixup_mixes_two_different_tracks_of_the_same_genre():
    from training.musicnn_heads import mixup_rows

    x = np.array([[0.0, 0.0], [0.0, 0.0], [10.0, 10.0], [100.0, 0.0], [100.0, 10.0], [50.0, 50.0]])
    y = np.array([0, 0, 0, 1, 1, 2])
    tracks = np.array(["a", "a", "b", "c", "d", "e"])
    mx, my, mt = mixup_rows(x, y, tracks, 2.0, seed=3)
    assert (my == 0).sum() == 6 and (my == 1).sum() == 4 and not (my == 2).any()  # a one-track genre gets none
    zero = mx[my == 0]
    assert np.allclose(zero[:, 0], zero[:, 1]) and (zero >= 0).all() and (zero <= 10).all()
    np.testing.assert_allclose(mx[my == 1][:, 0], 100.0)
    assert all(t.startswith("mix:") for t in mt)


def test_bad_repeats_is_a_plain_message():
    from training.head_cv_report import parse_args

    with pytest.raises(SystemExit, match="at least 1"):
        parse_args(["--repeats", "0"])


def _reports(tmp_path, recipe_params, weighting="genre"):
    import json

    folder = tmp_path / "musicnn_genre"
    folder.mkdir()
    manifest = {"format_version": 1, "name": "musicnn_genre", "labels": list(GENRES), "other": {"kept": True},
                "training": {"head": {"inputs": "msd:penultimate", "kind": "svm", "C": 1.0, "gamma_scale": 0.03,
                                      "balanced": True, "temperature": 0.5, "weighting": "genre"}},
                "metrics": {"valid": {"track_accuracy": 0.7041, "tracks": 98, "fit_on": "train"}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    summary = {"repeats": 5, "tracks": 305, "track_accuracy": {"mean": 0.6922}, "worst_genre":
               {"genre": "blues", "recall": 0.4765, "n": 34}}
    other = {"repeats": 5, "tracks": 305, "track_accuracy": {"mean": 0.9}, "worst_genre":
             {"genre": "rock", "recall": 0.9, "n": 24}}
    cv = {"reproduce": "python -m training.head_cv_report --write-report", "results": [
        {"recipe": {"spec": "msd:penultimate", "kind": "svm", "params": {"C": 1.0, "gamma_scale": 0.1},
                    "weighting": "track", "train_hop": None, "mixup": 0.0}, "summary": other},
        {"recipe": {"spec": "msd:penultimate", "kind": "svm", "params": recipe_params, "weighting": weighting,
                    "train_hop": None, "mixup": 0.0}, "summary": summary}]}
    (tmp_path / "cv.json").write_text(json.dumps(cv))
    (tmp_path / "decision.json").write_text(json.dumps(
        {"valid": {"tracks": 98, "flagged": 20, "accuracy_when_sure": 0.8205},
         "cross_validation": {"tracks": 1525, "flagged": 231, "tracks_distinct": 305, "accuracy_when_sure": 0.7342},
         "criterion": "python -m training.decision_thresholds --model models/musicnn_genre: on the 98 tracks"}))
    (tmp_path / "labelled.json").write_text(json.dumps(
        {"in_genre": {"files": 8, "sure": 6, "right_when_sure": 4, "accuracy_when_sure": 0.6667},
         "reproduce": "python -m training.decision_thresholds --model models/musicnn_genre --labelled DIR"}))
    return folder, {"cv_report": tmp_path / "cv.json", "decision_report": tmp_path / "decision.json",
                    "labelled_report": tmp_path / "labelled.json"}


def test_figures_are_copied_from_the_reports_of_the_manifests_own_recipe(tmp_path):
    import json

    from training.head_cv_report import write_figures

    folder, reports = _reports(tmp_path, {"C": 1.0, "gamma_scale": 0.03, "balanced": True})
    figures = write_figures(folder, **reports)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["figures"] == figures and manifest["other"] == {"kept": True}
    by_value = {(f["value"], f["n"]) for f in figures}
    # the matching row's CV (not the other row's 0.9), the twin's valid figure, the three "when sure" figures
    assert by_value == {(0.7041, 98), (0.6922, 305), (0.4765, 34), (0.8205, 78), (0.7342, 1294), (0.6667, 6)}
    for f in figures:
        assert set(f) == {"label", "value", "n", "measured_on", "command"}
        assert 0 <= f["value"] <= 1 and f["command"].startswith("python -m training.")


def test_figures_refuse_a_cv_report_of_another_recipe(tmp_path):
    from training.head_cv_report import write_figures

    folder, reports = _reports(tmp_path, {"C": 1.0, "gamma_scale": 0.03}, weighting="track")
    before = (folder / "manifest.json").read_text()
    with pytest.raises(ValueError, match="no row of musicnn_genre's recipe"):
        write_figures(folder, **reports)
    assert (folder / "manifest.json").read_text() == before  # untouched


def test_labels_file_without_its_columns_is_a_plain_error(tmp_path, capsys):
    from training.decision_thresholds import main

    (tmp_path / "labels.csv").write_text("name,genre\na.wav,jazz\n")
    assert main(["--model", "musicnn_genre", "--labelled", str(tmp_path)]) == 2
    assert "no 'file' and 'label' columns" in capsys.readouterr().err


def test_held_out_answers_carry_the_verdicts_confidence_and_margin():
    from codeFeature.decision import winner_index
    from training.head_cv_report import grouped_cv, held_out_answers, track_confidence

    # track_confidence is the verdict's arithmetic: the winner's mean probability and its lead over the runner-up
    probs = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    tracks = np.array(["a", "a", "a", "b"])
    confidence, margin = track_confidence(probs, tracks, ["a", "b"], [winner_index(probs[:3]), 2])
    assert confidence == pytest.approx([0.5, 0.8], abs=1e-5) and margin == pytest.approx([0.5 - 1 / 3, 0.7], abs=1e-5)

    embedded, artists = _synthetic_embedded(artists_per_genre=3, tracks_per_artist=2)
    pool = sorted(artists)
    folds = grouped_cv(embedded, pool, artists, RECIPE, repeats=2, folds=3, seed=3, calibrate=False)
    rows = held_out_answers(folds)
    assert len(rows) == 2 * len(pool)  # every track once a repeat
    assert {r["track"] for r in rows if r["repeat"] == 1} == set(pool)
    for r in rows:
        assert r["right"] == (r["true"] == r["pred"]) and r["true"] == r["track"].split(".")[0]
        assert 0 < r["confidence"] <= 1 and 0 <= r["margin"] <= r["confidence"]


def test_thresholds_from_cross_validation_answers_keep_the_outside_rule(tmp_path, monkeypatch):
    """--from-cv fits min_confidence and min_margin on the CV's held-out answers with valid's criterion, and
    writing the manifest replaces the rule's keys only: the "outside" rule (fitted by its own command) stays."""
    import json

    from training import decision_thresholds as dt

    rng = np.random.default_rng(0)
    answers = []
    for i in range(400):  # right answers confident, wrong ones not: a threshold separates most of them
        right = i % 4 != 0
        conf = float(rng.uniform(0.45, 0.95) if right else rng.uniform(0.2, 0.5))
        answers.append({"repeat": i // 200, "track": f"blues.{i % 200:05d}", "true": "blues",
                        "pred": "blues" if right else "rock", "right": right, "confidence": conf,
                        "margin": conf / 2})
    cv_file = tmp_path / "held_out_answers.json"
    cv_file.write_text(json.dumps({"reproduce": "python -m training.head_cv_report", "answers": answers}))
    rows, info = dt.read_cv_answers(cv_file)
    rule = dt.choose_thresholds(rows, 0.10)
    fired = dt.firing(rows, rule)
    assert fired["right_flagged"] <= 0.10 * fired["right"]  # the criterion holds on the answers it was fitted on
    assert fired["wrong_flagged"] > 0.8 * fired["wrong"]
    assert info == {"reproduce": "python -m training.head_cv_report"}

    (tmp_path / "broken.json").write_text(json.dumps({"answers": [{"track": "x"}]}))
    with pytest.raises(ValueError, match="not a held_out_answers.json"):
        dt.read_cv_answers(tmp_path / "broken.json")

    # the manifest write keeps keys the rule does not own
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps(
        {"format_version": 1, "name": "m", "decision": {"min_confidence": 0.9, "outside": {"tags": ["x"]}}}))
    monkeypatch.setattr(dt, "test_time", lambda model, args: {
        "aggregate": "vote", "table": {}, "overlap_note": "",
        "answers": (np.array([[0.8, 0.2]]), np.array([[0.5]]), np.array(["blues.00000"]), np.array([0]))})
    monkeypatch.setattr(dt, "odd_firing", lambda model, rule, outside=None: {})

    class FakeModel:
        name = "m"

    import codeFeature.model_io as model_io

    monkeypatch.setattr(model_io, "load_model", lambda ref, precision=None: FakeModel())
    monkeypatch.setattr(model_io, "read_manifest", lambda f: json.loads((f / "manifest.json").read_text()))
    args = dt.parse_args(["--model", str(folder), "--from-cv", str(cv_file), "--write-manifest",
                          "--out", str(tmp_path / "out")])
    result = dt.run_one(str(folder), None, args)
    decision = json.loads((folder / "manifest.json").read_text())["decision"]
    assert decision["outside"] == {"tags": ["x"]}
    assert decision["min_confidence"] == rule["min_confidence"] != 0.9
    assert "held-out answers of the recipe's artist-grouped cross-validation" in decision["source"]
    assert result["cross_validation"]["tracks"] == 400 and result["cross_validation"]["tracks_distinct"] == 200
