"""The offline training suite: every model family trains in --quick mode on tiny generated data, the
evaluation CLI keeps its JSON contract for audio, Kaggle CSVs and image folders, splits are by track,
broken inputs are skipped and listed, transfer learning fails clearly offline, and the comparison
table is built from manifests. Tests on the shared GTZAN data skip when it is absent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codeFeature.config import GENRES
from tests.conftest import SHARED_GTZAN

REPO = Path(__file__).resolve().parents[2]

CONTRACT_KEYS = {"model", "data", "tracks", "track_accuracy", "segment_accuracy", "genres", "per_genre", "confusion"}
NO_SHARED = pytest.mark.skipif(not (SHARED_GTZAN / "splits" / "valid_filtered.txt").is_file(),
                               reason="../shared/data/gtzan is absent (no real GTZAN material here)")


#: one feature cache and one set of generated data for the whole module (extraction is the slow part)
_CACHE: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def _shared_cache(tmp_path_factory):
    _CACHE[:] = [tmp_path_factory.mktemp("training-cache")]
    yield
    _CACHE.clear()


def _train(tmp_path: Path, name: str, *extra: str) -> Path:
    from training.train import main

    out = tmp_path / "models" / name
    assert main(["--model", name, "--quick", "--out", str(out), "--reports", str(tmp_path / "reports"),
                 "--cache", str(_CACHE[0]), *extra]) == 0
    return out


def _evaluate_json(capsys, tmp_path: Path, model_dir, data, split, cache=True) -> dict:
    from training.evaluate import main

    capsys.readouterr()
    args = ["--model", str(model_dir), "--data", *[str(d) for d in data], "--json",
            "--reports", str(tmp_path / "reports")] + (["--cache", str(_CACHE[0])] if cache else [])
    if split is not None:
        args += ["--split", str(split)]
    assert main(args) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _check_contract(result: dict, n_tracks: int) -> None:
    assert CONTRACT_KEYS <= set(result)
    assert result["tracks"] == n_tracks and result["genres"] == list(GENRES)
    assert set(result["per_genre"]) == set(GENRES)
    assert all(set(v) == {"precision", "recall", "f1", "support"} for v in result["per_genre"].values())
    confusion = np.array(result["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == n_tracks
    # rows are the true genre: each row sums to that genre's support
    assert [int(s) for s in confusion.sum(axis=1)] == [result["per_genre"][g]["support"] for g in GENRES]
    assert 0.0 <= result["track_accuracy"] <= 1.0
    assert result["segment_accuracy"] is None or 0.0 <= result["segment_accuracy"] <= 1.0


@pytest.fixture(scope="module")
def quick_cnn_mfcc(tmp_path_factory, _shared_cache) -> Path:
    return _train(tmp_path_factory.mktemp("quick-cnn"), "cnn_mfcc")


def test_audio_model_trains_quick_and_evaluates_through_the_serving_path(tmp_path, capsys, quick_cnn_mfcc):
    from codeFeature.model_io import load_model, read_manifest
    from codeFeature.predict import predict_file
    from training.synthetic import make_synthetic_gtzan

    out = quick_cnn_mfcc
    manifest = read_manifest(out)
    assert manifest["training"]["splits"]["valid"]["sha256"] and manifest["depth"] > 0
    data, _, valid = make_synthetic_gtzan(_CACHE[0] / "quick-data")
    result = _evaluate_json(capsys, tmp_path, out, data, valid)
    _check_contract(result, 10)
    assert (tmp_path / "reports" / "cnn_mfcc" / "confusion_valid_audio.png").is_file()
    assert (tmp_path / "reports" / "cnn_mfcc" / "evaluate_valid_audio.json").is_file()
    # the evaluation's vote is the app's vote
    model = load_model(out)
    track = data[0] / "blues" / "blues.00002.wav"
    assert predict_file(track, model=model).genre in GENRES


def test_ann_features_trains_on_a_kaggle_csv_with_normalisation_inside_the_model(tmp_path, capsys):
    from codeFeature.model_io import load_model
    from training.data import load_csv_set
    from training.tabular import make_synthetic_csv

    out = _train(tmp_path, "ann_features")
    model = load_model(out)
    assert model.config.feature == "gtzan57" and model.config.segment_seconds == 30.0
    assert any(type(layer).__name__ == "Normalization" for layer in model.keras_model.layers)
    (csv,), _, valid = make_synthetic_csv(_CACHE[0] / "quick-data" / "csv30")
    result = _evaluate_json(capsys, tmp_path, out, [csv], valid)
    _check_contract(result, 10)
    assert result["segments"] == 10
    # a row with a missing value is skipped and listed, not fatal
    lines = csv.read_text().splitlines()
    lines[1] = lines[1].replace(lines[1].split(",")[3], "", 1)
    broken = tmp_path / "broken.csv"
    broken.write_text("\n".join(lines) + "\n")
    rows = load_csv_set(broken, None)
    assert len(rows.y) == 29 and len(rows.skipped) == 1


def test_ann_features_3s_votes_over_the_rows_of_each_track(tmp_path, capsys):
    from training.tabular import make_synthetic_csv

    out = _train(tmp_path, "ann_features_3s")
    (csv,), _, valid = make_synthetic_csv(_CACHE[0] / "quick-data" / "csv3", rows_per_track=10)
    assert csv.name == "features_3_sec.csv"
    result = _evaluate_json(capsys, tmp_path, out, [csv], valid)
    _check_contract(result, 10)
    assert result["segments"] == 100


def test_image_cnn_trains_and_an_unreadable_image_is_skipped_and_listed(tmp_path, capsys):
    from training.images import make_synthetic_images

    (images,), _, valid = make_synthetic_images(_CACHE[0] / "quick-data" / "images")
    broken = images / "jazz" / "jazz00002.png"
    good = broken.read_bytes()
    broken.write_bytes(b"not an image")
    out = _train(tmp_path, "cnn_spectrogram")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["feature_config"]["segment_seconds"] == 5.0
    assert [s["file"].endswith("jazz00002.png") for s in manifest["training"]["skipped_files"]] == [True]
    result = _evaluate_json(capsys, tmp_path, out, [images], valid)
    _check_contract(result, 9)
    assert len(result["skipped_files"]) == 1
    broken.write_bytes(good)


def test_evaluate_refuses_data_the_model_cannot_read(tmp_path, capsys):
    from training.evaluate import main
    from training.tabular import make_synthetic_csv

    (csv,), _, _ = make_synthetic_csv(tmp_path / "csv")
    code = main(["--model", "cnn_mfcc_small", "--data", str(csv), "--reports", str(tmp_path)])
    assert code == 2
    assert "gtzan57" in capsys.readouterr().err


@pytest.mark.parametrize("arch", ["vgg16", "vgg19", "resnet50", "densenet121", "inceptionv3", "mobilenetv2",
                                  "efficientnetb0"])
def test_transfer_learning_builders_from_scratch_serialise_safely(arch):
    import keras

    from codeFeature.config import FeatureConfig
    from training.builders import SPECS, build

    spec = SPECS[f"tl_{arch}"]
    side = 75 if arch == "inceptionv3" else 32
    assert spec.config.image_size == (299 if arch == "inceptionv3" else 224)
    model = build(f"tl_{arch}", config=FeatureConfig(feature="spectrogram_image", segment_seconds=5.0,
                                                       image_size=side), weights=None)
    x = np.random.default_rng(0).integers(0, 255, (2, side, side, 3)).astype(np.float32)
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (2, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    restored = keras.saving.deserialize_keras_object(json.loads(model.to_json()), safe_mode=True)
    assert restored.count_params() == model.count_params()


def test_transfer_learning_quick_from_scratch(tmp_path):
    out = _train(tmp_path, "tl_vgg16", "--weights", "none")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["weights"] == "none" and "--weights none" in manifest["reproduce"]


def test_offline_imagenet_weights_fail_with_the_missing_file_named(monkeypatch, tmp_path, capsys):
    from keras.src.utils import file_utils

    from training.builders import WeightsUnavailableError, tl_base

    def offline(fname, *args, **kwargs):
        raise Exception(f"URL fetch failure on https://storage.googleapis.com/{fname}: None -- "
                        "[Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(WeightsUnavailableError, match="vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5") as info:
        tl_base("vgg19", (32, 32, 3), "imagenet")
    assert "--weights none" in str(info.value)
    from training.train import main

    code = main(["--model", "tl_efficientnetb0", "--quick", "--out", str(tmp_path / "m"),
                 "--reports", str(tmp_path / "r"), "--cache", str(_CACHE[0])])
    assert code == 2
    assert "efficientnetb0_notop.h5" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_frozen_base_embeddings_are_extracted_once_and_cached(monkeypatch, tmp_path):
    """With 'ImageNet' weights (simulated by a seeded random base), the head trains on cached embeddings."""
    import keras

    real = keras.applications.MobileNetV2

    def pretend_pretrained(*args, weights=None, **kwargs):
        keras.utils.set_random_seed(1)
        return real(*args, weights=None, **kwargs)

    monkeypatch.setattr(keras.applications, "MobileNetV2", pretend_pretrained)
    _train(tmp_path, "tl_mobilenetv2")
    cached = sorted(_CACHE[0].glob("tl-mobilenetv2-32-*.npy"))
    assert len(cached) == 2  # train and valid
    from training.data import load_image_set
    from training.train import _cached_embeddings

    images = load_image_set([_CACHE[0] / "quick-data" / "images" / "images"], None, size=32, cache_dir=_CACHE[0])
    never = type("Base", (), {"__call__": lambda *a, **k: pytest.fail("the base ran again instead of the cache")})()
    stamps = [p.stat().st_mtime_ns for p in cached]
    train_x = images.subset(np.array([not t.endswith("2") for t in images.tracks])).x
    z = _cached_embeddings(never, train_x, "mobilenetv2", _CACHE[0])  # served from the cache
    assert z.shape == (20, 1280) and [p.stat().st_mtime_ns for p in cached] == stamps
    assert json.loads((tmp_path / "models" / "tl_mobilenetv2" / "manifest.json").read_text())["training"]["weights"] \
        == "imagenet"


def test_splits_that_share_a_track_are_refused(tmp_path):
    from training.synthetic import make_synthetic_gtzan
    from training.train import main

    data, train, valid = make_synthetic_gtzan(tmp_path / "d")
    valid.write_text(valid.read_text() + train.read_text().splitlines()[0] + "\n")
    with pytest.raises(SystemExit, match="share 1 tracks"):
        main(["--model", "cnn_mfcc", "--data", str(data[0]), "--train-split", str(train), "--valid-split", str(valid),
              "--out", str(tmp_path / "m"), "--cache", str(tmp_path / "c")])


def test_excerpts_and_full_tracks_of_one_track_share_its_id(tmp_path):
    from training.data import data_kind, track_id_of

    assert track_id_of("x/blues.00029.wav") == track_id_of("blues00029.webp") == track_id_of("blues.00029.3.wav")
    (tmp_path / "img" / "blues").mkdir(parents=True)
    (tmp_path / "img" / "blues" / "blues00000.png").write_bytes(b"")
    assert data_kind([tmp_path / "img"]) == "images"
    assert data_kind([tmp_path / "f.csv"]) == "csv"


def test_compare_table_has_trained_and_not_trained_rows(tmp_path, quick_cnn_mfcc):
    import shutil

    from training.compare import collect_rows, demo_text, leakage_demo, table
    from training.synthetic import make_synthetic_gtzan

    shutil.copytree(quick_cnn_mfcc, tmp_path / "models" / "cnn_mfcc")
    manifest_path = tmp_path / "models" / "cnn_mfcc" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["training"]["quick"] = False  # quick models are left out of the table; pretend it is real
    manifest_path.write_text(json.dumps(manifest))
    rows = collect_rows(tmp_path / "models")
    text = table(rows)
    assert "| cnn_mfcc | mfcc (130, 13, 1) |" in text
    assert "tl_vgg19" in text and "ImageNet weights" in text
    assert "features_3_sec.csv" in text
    data, train, valid = make_synthetic_gtzan(_CACHE[0] / "quick-data")
    demo = leakage_demo(data, [train, valid], cache_dir=_CACHE[0], epochs=1)
    assert demo["segment_split"]["segments"] == int(0.3 * demo["segments"])
    assert demo["track_split"]["tracks"] == int(0.3 * demo["tracks"])
    assert demo["tracks_on_both_sides_of_the_segment_split"] > 0
    assert "random by segment" in demo_text([demo])


@NO_SHARED
def test_evaluate_reproduces_the_shipped_cnn_valid_figures(tmp_path, capsys):
    result = _evaluate_json(capsys, tmp_path, "cnn_mfcc_small",
                            [SHARED_GTZAN / "genres", SHARED_GTZAN / "excerpts"],
                            SHARED_GTZAN / "splits" / "valid_filtered.txt", cache=False)  # the project's cache
    _check_contract(result, 98)
    manifest = json.loads((Path(__file__).resolve().parents[2] / "models" / "cnn_mfcc_small" / "manifest.json").read_text())
    assert result["track_accuracy"] == manifest["metrics"]["valid"]["track_accuracy"]
    assert result["segment_accuracy"] == manifest["metrics"]["valid"]["segment_accuracy"]


@NO_SHARED
@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / "models" / "ann_features").is_dir(),
                    reason="models/ann_features is not shipped")
def test_shipped_ann_features_reproduces_its_valid_figure_on_the_csv(tmp_path, capsys):
    result = _evaluate_json(capsys, tmp_path, "ann_features", [SHARED_GTZAN / "features_30_sec.csv"],
                            SHARED_GTZAN / "splits" / "valid_filtered.txt")
    _check_contract(result, 197)
    manifest = json.loads((Path(__file__).resolve().parents[2] / "models" / "ann_features" / "manifest.json").read_text())
    assert result["track_accuracy"] == manifest["metrics"]["valid"]["track_accuracy"]


def test_feature_ann_trains_from_audio_alone(tmp_path, capsys):
    """A user with only genres_original/ gets the 57 features computed from audio (3 s rows here, for speed)."""
    from codeFeature.model_io import load_model
    from training.synthetic import make_synthetic_gtzan
    from training.train import main

    data, train, valid = make_synthetic_gtzan(tmp_path / "audio", tracks_per_genre=2, seconds=3.5)
    out = tmp_path / "m"
    assert main(["--model", "ann_features_3s", "--data", str(data[0]), "--train-split", str(train),
                 "--valid-split", str(valid), "--epochs", "2", "--out", str(out), "--reports", str(tmp_path / "r"),
                 "--cache", str(_CACHE[0])]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["data_kind"] == "audio" and "--data" in manifest["reproduce"]
    assert load_model(out).config.feature == "gtzan57"


def test_ensemble_of_models_with_different_segments_votes_per_track(tmp_path, capsys, quick_cnn_mfcc):
    from training.synthetic import make_synthetic_gtzan

    image_model = _train(tmp_path, "cnn_spectrogram")  # trained on images, served on audio renders
    data, _, valid = make_synthetic_gtzan(_CACHE[0] / "quick-data")
    same = _evaluate_json(capsys, tmp_path, quick_cnn_mfcc, data, valid)
    from training.evaluate import main

    capsys.readouterr()
    assert main(["--model", str(quick_cnn_mfcc), str(quick_cnn_mfcc), "--data", str(data[0]), "--split", str(valid),
                 "--json", "--reports", str(tmp_path / "reports"), "--cache", str(_CACHE[0])]) == 0
    twice = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # an ensemble of a model with itself is the model
    assert twice["track_accuracy"] == same["track_accuracy"] and twice["segment_accuracy"] == same["segment_accuracy"]
    assert main(["--model", str(quick_cnn_mfcc), str(image_model), "--data", str(data[0]), "--split", str(valid),
                 "--json", "--reports", str(tmp_path / "reports"), "--cache", str(_CACHE[0])]) == 0
    mixed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    _check_contract(mixed, 10)
    assert mixed["segment_accuracy"] is None and mixed["members"] == ["cnn_mfcc", "cnn_spectrogram"]


def test_seeded_stratified_split_is_by_track_and_reproducible(tmp_path):
    from training.data import make_track_split, read_split

    ids = [f"{g}.{k:05d}" for g in GENRES for k in range(10)]
    train, valid = make_track_split(ids, tmp_path / "a", seed=3)
    t, v = read_split(train), read_split(valid)
    assert not set(t) & set(v) and sorted(t + v) == sorted(ids)
    assert all(sum(x.startswith(g) for x in v) == 3 for g in GENRES)
    again = make_track_split(ids, tmp_path / "b", seed=3)
    assert [p.read_text() for p in again] == [train.read_text(), valid.read_text()]


def _artist_file(path: Path, tracks_per_genre: int) -> Path:
    """Two tracks per artist within a genre, and one artist with a blues and a rock track."""
    lines = ["track,artist"] + [f"{g}/{g}.{k:05d}.wav,{g} artist {k // 2}" for g in GENRES
                                for k in range(tracks_per_genre)]
    lines = [line for line in lines if not line.startswith(("blues/blues.00000", "rock/rock.00005"))]
    lines += ["blues.00000,Shared Artist", "rock.00005,Shared Artist"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_artist_free_kfold_keeps_every_artist_on_one_side(tmp_path, capsys):
    from training.data import read_split
    from training.kfold import QUICK_TRACKS_PER_GENRE, main, read_artists

    artists_csv = _artist_file(tmp_path / "artists.csv", QUICK_TRACKS_PER_GENRE)
    artists = read_artists(artists_csv)
    assert artists["blues.00000"] == artists["rock.00005"] == "Shared Artist" and len(artists) == 60
    reports = tmp_path / "reports"
    capsys.readouterr()
    assert main(["--model", "ann_features", "--quick", "--artists", str(artists_csv), "--folds", "3",
                 "--cache", str(_CACHE[0]), "--reports", str(reports)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    result = json.loads((reports / "ann_features" / "kfold.json").read_text())
    assert summary["track_accuracy"] == result["track_accuracy"]
    assert {"model", "folds", "tracks", "track_accuracy", "segment_accuracy", "per_fold", "protocol"} <= set(result)
    assert set(result["track_accuracy"]) == set(result["segment_accuracy"]) == {"mean", "std"}
    assert result["folds"] == len(result["per_fold"]) == 3 and result["tracks"] == 60
    assert result["track_accuracy"]["mean"] == pytest.approx(np.mean([f["track_accuracy"] for f in result["per_fold"]]),
                                                             abs=1e-4)
    held_out = []
    for fold in result["per_fold"]:
        assert {"fold", "track_accuracy", "segment_accuracy", "tracks", "segments"} <= set(fold)
        lists = {part: read_split(reports / "ann_features" / "kfold" / f"fold{fold['fold']}_{part}.txt")
                 for part in ("train", "valid", "test")}
        sides = {part: {artists[t] for t in ids} for part, ids in lists.items()}
        # no artist (so no track) on both sides of the fold, nor across the inner train / valid pair
        assert not sides["test"] & (sides["train"] | sides["valid"]) and not sides["train"] & sides["valid"]
        assert fold["tracks"] == len(lists["test"]) and fold["train_tracks"] == len(lists["train"])
        held_out += lists["test"]
    assert sorted(held_out) == sorted(artists)  # every track is held out exactly once


def test_kfold_refuses_to_run_without_artists(capsys):
    from training.kfold import main

    assert main(["--model", "ann_features", "--quick"]) == 2
    assert "--artists" in capsys.readouterr().err


def test_missing_data_is_said_before_tensorflow_loads(tmp_path):
    """``python -m training.train`` without the data says so at once: no TensorFlow or Keras import first."""
    run = subprocess.run([sys.executable, "-X", "importtime", "-m", "training.train", "--model", "ann_features",
                          "--gtzan", str(tmp_path / "nowhere")], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode != 0 and "GTZAN not found" in run.stderr
    imported = {line.split("|")[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert "training.builders" in imported  # importtime really listed the imports
    assert not {name for name in imported if name.split(".")[0] in ("tensorflow", "keras")}
