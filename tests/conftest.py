"""Shared fixtures: synthesised audio in every native format, and a small untrained model.

Nothing here needs the network or the GTZAN data.
"""

from __future__ import annotations

import os
from pathlib import Path

from codeFeature.runtime import prepare_process  # noqa: E402  (before TensorFlow and librosa)

prepare_process()

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
SHARED_GTZAN = REPO.parent / "shared" / "data" / "gtzan"
SR = 22050


@pytest.fixture(autouse=True)
def fresh_settings():
    """Every test reads the environment afresh (codeFeature.settings reads it once per process otherwise): a
    ``monkeypatch.setenv`` before the library's first use in a test is seen; one made after it needs
    ``settings.reload()``. Forgotten again afterwards, once monkeypatch has put the environment back."""
    from codeFeature import settings

    settings.forget()
    yield
    settings.forget()


def chord(seconds: float, sample_rate: int = SR, *, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A-major chord with a little noise and a slow tremolo; shape (n,) or (n, channels)."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    y = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63)) / 3
    y = 0.6 * y * (0.8 + 0.2 * np.sin(2 * np.pi * 2 * t))
    y = y + 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    y = y.astype(np.float32)
    if channels > 1:
        y = np.stack([y * (1 - 0.1 * c) for c in range(channels)], axis=1)
    return y


#: format -> (extension, soundfile format, subtype)
NATIVE_FORMATS = {
    "wav": (".wav", "WAV", "PCM_16"),
    "flac": (".flac", "FLAC", "PCM_16"),
    "ogg": (".ogg", "OGG", "VORBIS"),
    "mp3": (".mp3", "MP3", "MPEG_LAYER_III"),
}


def write_audio(path: Path, y: np.ndarray, sample_rate: int = SR) -> Path:
    ext = path.suffix.lstrip(".")
    _, fmt, subtype = NATIVE_FORMATS[ext]
    sf.write(path, y, sample_rate, format=fmt, subtype=subtype)
    return path


def assert_train_serve_parity(song: Path, model, tmp_path: Path) -> np.ndarray:
    """Training's dataset code (fresh and from its cache) and ``predict_file`` see identical inputs for
    ``song`` and give the same outputs; returns the served probabilities."""
    import shutil

    from codeFeature.audio import decode
    from codeFeature.features import segment_features
    from codeFeature.predict import predict_file
    from codeFeature.segments import segment_array
    from training.data import build_segment_set, find_audio

    genre_dir = tmp_path / "genres" / "rock"
    genre_dir.mkdir(parents=True)
    copy = genre_dir / ("rock.00001" + song.suffix)
    shutil.copy(song, copy)
    tracks = find_audio([tmp_path / "genres"])
    train_side = build_segment_set(tracks, ["rock.00001"], model.config, cache_dir=tmp_path / "cache")
    cached = build_segment_set(tracks, ["rock.00001"], model.config, cache_dir=tmp_path / "cache")
    serve_segments, _ = segment_array(decode(copy), model.config)
    np.testing.assert_array_equal(train_side.x, segment_features(serve_segments, model.config))
    np.testing.assert_array_equal(cached.x, train_side.x)
    served = predict_file(copy, model=model).probabilities
    trained = np.asarray(model.keras_model(train_side.x, training=False))
    np.testing.assert_allclose(served, trained, atol=1e-6)
    return served


@pytest.fixture(scope="session")
def audio_dir(tmp_path_factory) -> Path:
    """A folder with a 7 s chord in wav / flac / ogg / mp3 (44.1 kHz stereo) and a few odd files."""
    folder = tmp_path_factory.mktemp("audio")
    for name in NATIVE_FORMATS:
        write_audio(folder / f"chord.{name}", chord(7.0, 44100, channels=2), 44100)
    write_audio(folder / "mono22k.wav", chord(7.0))
    (folder / "not_audio.mp3").write_bytes(b"this is text, not an mp3\n" * 10)
    (folder / "empty.wav").write_bytes(b"")
    write_audio(folder / "short.wav", chord(0.2))
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """An untrained (seeded) model of the shipped CNN architecture, saved as a model folder."""
    import keras

    from codeFeature.config import GENRES, DEFAULT_CONFIG
    from codeFeature.model_io import save_model
    from training.builders import build

    keras.utils.set_random_seed(0)
    model = build("cnn_mfcc_small", normalizer_data=np.random.default_rng(0).normal(-5, 40, (8, 130, 13, 1)))
    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_model(model, folder, {"name": "tiny", "labels": list(GENRES), "feature_config": DEFAULT_CONFIG.to_dict(),
                               "description": "untrained test model"})
    return folder


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from codeFeature.model_io import load_model

    return load_model(tiny_model_dir)
