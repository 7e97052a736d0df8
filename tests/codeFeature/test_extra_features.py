"""Extra per-frame features beside the MFCC (spectral contrast, tonnetz, harmonic / percussive separation).

``FeatureConfig.extras`` decides them; ``segment_features`` computes them for training and serving alike;
``python -m training.train --extras`` trains with them under a name that never overwrites the plain model;
manifests written before the field existed load unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import librosa
import numpy as np
import pytest

from codeFeature.config import DEFAULT_CONFIG, FeatureConfig
from codeFeature.errors import ConfigError
from codeFeature.features import mfcc, mfcc_with_extras, segment_features
from codeFeature.segments import segment_array
from tests.conftest import REPO, assert_train_serve_parity, chord

SR = 22050
ALL = FeatureConfig(extras=("contrast", "tonnetz", "hpss"))


def _segments(n: int = 2, seconds: float = 3.0) -> np.ndarray:
    segments, _ = segment_array(chord(n * seconds), DEFAULT_CONFIG)
    return segments


def _clicks(seconds: float = 3.0) -> np.ndarray:
    """A click every 0.25 s on near silence: all percussive (denser clicks would fill every 93 ms frame)."""
    y = 1e-3 * np.random.default_rng(1).standard_normal(int(seconds * SR)).astype(np.float32)
    y[:: SR // 4] = 0.9
    return y


# ------------------------------------------------------------------------------------------- config

@pytest.mark.parametrize("extras, rows", [((), 13), (("contrast",), 20), (("tonnetz",), 19), (("hpss",), 26),
                                          (("contrast", "tonnetz"), 26), (("contrast", "tonnetz", "hpss"), 39)])
def test_input_shape_grows_by_the_rows_of_each_extra(extras, rows):
    config = FeatureConfig(extras=extras)
    assert config.input_shape == (130, rows, 1)
    assert FeatureConfig(extras=extras, n_mfcc=20).input_shape[1] == rows + (20 - 13) * (2 if "hpss" in extras else 1)


def test_extras_are_stored_in_one_canonical_order_whatever_the_order_given():
    a = FeatureConfig(extras=["tonnetz", "hpss", "contrast"])
    assert a.extras == ("contrast", "tonnetz", "hpss")
    assert a == FeatureConfig(extras=("contrast", "tonnetz", "hpss")) and hash(a) == hash(ALL)


@pytest.mark.parametrize("kwargs, message", [
    ({"extras": ("chroma",)}, "'chroma' unknown; use any of contrast, tonnetz, hpss"),
    ({"extras": ("contrast", "contrast")}, "names a feature twice"),
    ({"extras": "contrast"}, "must be a tuple of names"),
    ({"extras": ("contrast",), "feature": "logmel"}, "apply to feature='mfcc' only, not feature='logmel'"),
    ({"extras": ("tonnetz",), "feature": "gtzan57", "segment_seconds": 30.0}, "feature='mfcc' only"),
    ({"extras": ("hpss",), "mfcc_backend": "python_speech_features", "n_mels": 26}, "mfcc_backend"),
    ({"extras": ("contrast",), "sample_rate": 8000, "n_fft": 512, "hop_length": 256}, "sample_rate above 12800"),
])
def test_bad_extras_are_refused_with_a_clear_message(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        FeatureConfig(**kwargs)


def test_extras_round_trip_through_json_as_a_list():
    text = json.dumps(ALL.to_dict())
    assert json.loads(text)["extras"] == ["contrast", "tonnetz", "hpss"]
    back = FeatureConfig.from_dict(json.loads(text))
    assert back == ALL and isinstance(back.extras, tuple)


def test_a_plain_config_writes_no_extras_key_so_old_manifests_and_cache_keys_stay_the_same():
    assert "extras" not in DEFAULT_CONFIG.to_dict()
    old_keys = {"feature", "sample_rate", "segment_seconds", "n_mfcc", "n_fft", "hop_length", "n_mels",
                "mfcc_backend", "image_size"}
    assert set(DEFAULT_CONFIG.to_dict()) == old_keys
    assert FeatureConfig.from_dict({k: DEFAULT_CONFIG.to_dict()[k] for k in old_keys}).extras == ()


def test_the_feature_cache_key_includes_the_extras(tmp_path):
    from training.data import _cache_key

    path = tmp_path / "blues.00001.wav"
    path.write_bytes(b"x")
    keys = {_cache_key(path, FeatureConfig(extras=e), "") for e in [(), ("contrast",), ("tonnetz",), ("hpss",)]}
    assert len(keys) == 4


@pytest.mark.parametrize("name", ["cnn_mfcc", "cnn_mfcc_small", "musicnn_genre"])
def test_shipped_manifests_without_extras_load_unchanged(name):
    from codeFeature.model_io import load_model, read_manifest

    folder = REPO / "models" / name
    if not folder.is_dir():
        pytest.skip(f"models/{name} is not shipped")
    manifest = read_manifest(folder)
    assert "extras" not in manifest["feature_config"]
    model = load_model(folder)
    assert model.config.extras == ()
    # what the manifest holds comes back as it was (older manifests may lack later keys, such as image_size)
    assert model.config.to_dict().items() >= manifest["feature_config"].items()
    assert list(model.config.input_shape) == manifest["input_shape"]


def test_a_shipped_mfcc_model_sees_exactly_the_plain_mfcc():
    from codeFeature.model_io import load_model
    from codeFeature.predict import predict_audio

    folder = REPO / "models" / "cnn_mfcc"
    if not folder.is_dir():
        pytest.skip("models/cnn_mfcc is not shipped")
    model = load_model(folder)
    y = chord(6.0)
    direct = librosa.feature.mfcc(y=_segments(2), sr=SR, n_mfcc=13, n_fft=2048, hop_length=512)
    x = np.swapaxes(direct, 1, 2)[..., None].astype(np.float32)
    served = predict_audio(y, model=model, sample_rate=SR).probabilities
    np.testing.assert_allclose(served, np.asarray(model.keras_model(x, training=False)), atol=1e-5)


# ------------------------------------------------------------------------------------------- features

def test_shapes_and_the_plain_mfcc_rows_are_untouched():
    segments = _segments(2)
    plain = segment_features(segments, DEFAULT_CONFIG)
    for extras in (("contrast",), ("tonnetz",), ("contrast", "tonnetz")):
        config = FeatureConfig(extras=extras)
        out = segment_features(segments, config)
        assert out.shape == (2, *config.input_shape) and out.dtype == np.float32
        # the extras only ever add rows: the first 13 are the plain model's input, bit for bit
        np.testing.assert_array_equal(out[:, :, :13], plain)
        assert np.isfinite(out).all()


def test_contrast_and_tonnetz_rows_are_librosas_per_segment():
    segments = _segments(2)
    out = segment_features(segments, FeatureConfig(extras=("contrast", "tonnetz")))[..., 0]
    for i, seg in enumerate(segments):
        contrast = librosa.feature.spectral_contrast(y=seg, sr=SR, n_fft=2048, hop_length=512)
        chroma = librosa.feature.chroma_stft(y=seg, sr=SR, n_fft=2048, hop_length=512, tuning=0.0)
        tonnetz = librosa.feature.tonnetz(chroma=chroma, sr=SR)
        np.testing.assert_allclose(out[i, :, 13:20], contrast.T, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out[i, :, 20:26], tonnetz.T, rtol=1e-4, atol=1e-5)
    # an A-major chord: the tonnetz is far from zero, and stable over the sustained chord
    assert np.abs(out[0, 10:-10, 20:26]).max() > 0.05


def test_hpss_gives_the_harmonic_then_the_percussive_mfcc():
    config = FeatureConfig(extras=("hpss",))
    out = segment_features(np.stack([chord(3.0), _clicks()]), config)[..., 0]
    harmonic, percussive = out[:, :, 0], out[:, :, 13]  # c0: the overall level of each part
    assert harmonic[0].mean() > percussive[0].mean() + 10  # a sustained chord is harmonic
    assert percussive[1].mean() > harmonic[1].mean() + 10  # clicks are percussive
    # both parts' MFCC is computed as librosa computes the MFCC of audio: the full spectrum gives mfcc()
    magnitude = np.abs(librosa.stft(chord(3.0)[None], n_fft=2048, hop_length=512))
    mel = librosa.feature.melspectrogram(S=magnitude ** 2, sr=SR, n_fft=2048, n_mels=128)
    via_s = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=13)
    np.testing.assert_allclose(np.swapaxes(via_s, 1, 2), mfcc(chord(3.0)[None], DEFAULT_CONFIG), rtol=1e-4, atol=1e-3)


def test_a_segments_features_do_not_depend_on_its_batch():
    # a detuned chord beside an in-tune one: a tuning estimated over the batch would shift the chroma
    detuned = chord(3.0) + 0.6 * np.sin(2 * np.pi * 226.0 * np.arange(3 * SR) / SR).astype(np.float32)
    batch = np.stack([chord(3.0), detuned, _clicks()])
    together = mfcc_with_extras(batch, ALL)
    for i in range(3):
        alone = mfcc_with_extras(batch[i:i + 1], ALL)
        np.testing.assert_allclose(together[i:i + 1], alone, rtol=1e-5, atol=1e-4)


def test_silence_gives_finite_features():
    out = segment_features(np.zeros((1, 66150), np.float32), ALL)
    assert out.shape == (1, 130, 39, 1) and np.isfinite(out).all()


# ------------------------------------------------------------------------------------------- models

def test_extra_rows_are_standardised_per_row_and_the_mfcc_as_the_plain_models_do():
    import keras

    from training.builders import build

    config = FeatureConfig(extras=("contrast", "tonnetz"))
    x = segment_features(np.stack([chord(3.0, seed=s) * (0.2 + 0.2 * s) for s in range(4)] + [_clicks()]), config)
    model = build("cnn_mfcc", normalizer_data=x, config=config)
    standardised = keras.Model(model.input, model.get_layer("features_standardised").output)
    z = np.asarray(standardised(x))[..., 0]
    # every extra row on its own unit scale, though tonnetz varies about 1000 times less than MFCC
    np.testing.assert_allclose(z[:, :, 13:].std(axis=(0, 1)), 1.0, atol=0.02)
    np.testing.assert_allclose(z[:, :, 13:].mean(axis=(0, 1)), 0.0, atol=0.02)
    # the MFCC block shares one mean and variance, so its rows keep their relative scale
    assert np.isclose(z[:, :, :13].std(), 1.0, atol=0.02) and np.ptp(z[:, :, :13].std(axis=(0, 1))) > 0.1
    plain = build("cnn_mfcc", normalizer_data=x[:, :, :13], config=DEFAULT_CONFIG)
    assert "features_standardised" not in [layer.name for layer in plain.layers]  # plain models are unchanged


def test_train_serve_parity_with_extras(audio_dir, tmp_path):
    """The training dataset code and predict_file compute the same inputs and outputs for an extras model."""
    import keras

    from codeFeature.config import GENRES
    from codeFeature.model_io import load_model, save_model
    from training.builders import build

    keras.utils.set_random_seed(0)
    x = segment_features(np.stack([chord(3.0), _clicks()]), ALL)
    save_model(build("cnn_mfcc_small", normalizer_data=x, config=ALL), tmp_path / "m",
               {"name": "tiny_extras", "labels": list(GENRES), "feature_config": ALL.to_dict()})
    model = load_model(tmp_path / "m")  # safe mode: the split standardisation is built-in layers only
    assert model.config == ALL and model.config.input_shape == (130, 39, 1)
    served = assert_train_serve_parity(audio_dir / "chord.mp3", model, tmp_path)
    assert not np.allclose(served, served.mean(axis=1, keepdims=True))  # a real, non-uniform output


# ------------------------------------------------------------------------------------------- the CLI

def test_quick_training_with_extras_names_the_model_after_them_and_evaluates(tmp_path, monkeypatch, capsys):
    import training.train as train
    from codeFeature.model_io import read_manifest
    from training.compare import collect_rows, table
    from training.evaluate import main as evaluate
    from training.synthetic import make_synthetic_gtzan

    monkeypatch.setattr(train, "RUNS_DIR", tmp_path / "runs")  # the default --out is runs/<name>-quick under it
    cache = tmp_path / "cache"
    assert train.main(["--model", "cnn_mfcc", "--quick", "--extras", "tonnetz,contrast",
                       "--reports", str(tmp_path / "reports"), "--cache", str(cache)]) == 0
    name = "cnn_mfcc+contrast+tonnetz-quick"  # a quick run is marked as such in its name
    out = tmp_path / "runs" / name
    manifest = read_manifest(out)
    assert manifest["name"] == name and manifest["input_shape"] == [130, 26, 1]
    assert manifest["feature_config"]["extras"] == ["contrast", "tonnetz"]
    assert "--extras contrast,tonnetz" in manifest["reproduce"]
    assert (tmp_path / "reports" / name / "manifest.json").is_file()
    assert not (tmp_path / "runs" / "cnn_mfcc-quick").exists()  # the plain model's folder is not touched

    data, _, valid = make_synthetic_gtzan(cache / "quick-data")
    capsys.readouterr()
    assert evaluate(["--model", str(out), "--data", *map(str, data), "--split", str(valid), "--json",
                     "--reports", str(tmp_path / "reports"), "--cache", str(cache)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["model"] == name and result["tracks"] == 10
    assert (tmp_path / "reports" / name / "evaluate_valid_audio.json").is_file()

    # the comparison lists a trained, unshipped extras model from its report copy of the manifest
    report_manifest = tmp_path / "reports" / name / "manifest.json"
    saved = json.loads(report_manifest.read_text())
    saved["training"]["quick"] = False  # quick models are left out of the table; pretend it is real
    report_manifest.write_text(json.dumps(saved))
    (tmp_path / "empty_models").mkdir()
    text = table(collect_rows(tmp_path / "empty_models", reports_dir=tmp_path / "reports"))
    assert f"| {name} (not shipped) | mfcc+contrast+tonnetz (130, 26, 1) |" in text


@pytest.mark.parametrize("argv, message", [
    (["--model", "ann_features", "--extras", "contrast"], "feature='mfcc' only"),
    (["--model", "cnn_mfcc", "--extras", "contrast,chroma"], "'chroma' unknown"),
])
def test_training_refuses_extras_it_cannot_use(argv, message, tmp_path):
    from training.train import main

    with pytest.raises(SystemExit, match=message):
        main([*argv, "--quick", "--out", str(tmp_path / "m"), "--cache", str(tmp_path / "cache")])
    assert not (tmp_path / "m").exists()


def test_the_reproduce_command_of_an_extras_model_spells_its_extras():
    from training.builders import SPECS
    from training.train import _reproduce_command, model_name, parse_args

    args = parse_args(["--model", "lstm_mfcc", "--extras", "hpss,contrast", "--augment"])
    args.train_split = args.valid_split = Path("x.txt")
    assert args.extras == ("hpss", "contrast")
    assert "--extras contrast,hpss" in _reproduce_command(args, [Path("audio")], SPECS["lstm_mfcc"])
    assert model_name("lstm_mfcc", ("contrast", "hpss")) == "lstm_mfcc+contrast+hpss"
    assert model_name("lstm_mfcc") == "lstm_mfcc"


def test_kfold_with_extras_reports_under_the_extras_models_name(tmp_path, capsys):
    from tests.training.test_training import _artist_file
    from training.kfold import QUICK_TRACKS_PER_GENRE, main

    artists_csv = _artist_file(tmp_path / "artists.csv", QUICK_TRACKS_PER_GENRE)
    reports = tmp_path / "reports"
    assert main(["--model", "cnn_mfcc", "--quick", "--extras", "tonnetz", "--artists", str(artists_csv),
                 "--folds", "2", "--cache", str(tmp_path / "cache"), "--reports", str(reports)]) == 0
    result = json.loads((reports / "cnn_mfcc+tonnetz" / "kfold.json").read_text())
    assert result["model"] == "cnn_mfcc+tonnetz" and "--extras tonnetz" in result["reproduce"]
    assert not (reports / "cnn_mfcc").exists()
