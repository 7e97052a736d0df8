"""Shared fixtures: synthesised audio in every native format, and a small untrained model.

Nothing here needs the network or the GTZAN data.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
SHARED_GTZAN = REPO.parent / "shared" / "data" / "gtzan"
SR = 22050


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
