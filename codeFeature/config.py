"""The one source of truth for what a model sees.

:class:`FeatureConfig` holds every parameter that decides the input of a model.
Training writes it into the model's ``manifest.json``; the app and the CLI
rebuild it from there, never from these defaults.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from .errors import ConfigError

#: GTZAN's ten genres, in the order every shipped model's outputs use.
GENRES: tuple[str, ...] = (
    "blues",
    "classical",
    "country",
    "disco",
    "hiphop",
    "jazz",
    "metal",
    "pop",
    "reggae",
    "rock",
)

#: Feature kinds a model can be trained on (see :mod:`codeFeature.features`).
FEATURE_KINDS: tuple[str, ...] = ("mfcc", "logmel", "musicnn_logmel", "gtzan57", "spectrogram_image")
MFCC_BACKENDS: tuple[str, ...] = ("librosa", "python_speech_features")


@dataclass(frozen=True)
class FeatureConfig:
    """Parameters of the features a model sees.

    Parameters
    ----------
    feature : str
        One of :data:`FEATURE_KINDS`.
    sample_rate : int
        Rate, in Hz, every input is resampled to before anything else.
    segment_seconds : float
        Length of one segment; a song is classified segment by segment.
    n_mfcc : int
        Number of MFCC coefficients (``feature="mfcc"``).
    n_fft : int
        FFT window length in samples.
    hop_length : int
        Hop between frames in samples.
    n_mels : int
        Mel bands (for ``logmel`` and as the MFCC's filter bank size).
    mfcc_backend : str
        ``"librosa"`` or ``"python_speech_features"``.
    image_size : int
        Side, in pixels, of the spectrogram picture (``feature="spectrogram_image"``).
    """

    feature: str = "mfcc"
    sample_rate: int = 22050
    segment_seconds: float = 3.0
    n_mfcc: int = 13
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    mfcc_backend: str = "librosa"
    image_size: int = 224

    def __post_init__(self) -> None:
        if self.feature not in FEATURE_KINDS:
            raise ConfigError(
                f"feature={self.feature!r} is not supported; use one of {', '.join(FEATURE_KINDS)}"
            )
        if self.mfcc_backend not in MFCC_BACKENDS:
            raise ConfigError(
                f"mfcc_backend={self.mfcc_backend!r} is not supported; use one of {', '.join(MFCC_BACKENDS)}"
            )
        for name in ("sample_rate", "n_mfcc", "n_fft", "hop_length", "n_mels", "image_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name}={value!r} must be a positive integer")
        if not isinstance(self.segment_seconds, (int, float)) or not self.segment_seconds > 0:
            raise ConfigError(f"segment_seconds={self.segment_seconds!r} must be a positive number")
        if self.hop_length > self.n_fft:
            raise ConfigError(
                f"hop_length={self.hop_length} is larger than n_fft={self.n_fft}; frames would skip samples"
            )
        if self.n_fft > self.segment_samples:
            raise ConfigError(
                f"n_fft={self.n_fft} is longer than one segment ({self.segment_samples} samples)"
            )
        if self.feature == "mfcc" and self.n_mfcc > self.n_mels:
            raise ConfigError(f"n_mfcc={self.n_mfcc} cannot exceed n_mels={self.n_mels}")

    @property
    def segment_samples(self) -> int:
        """Samples in one segment (66150 for 3 s at 22050 Hz)."""
        return int(round(self.segment_seconds * self.sample_rate))

    @property
    def frames_per_segment(self) -> int:
        """STFT frames in one segment (centred frames: 130 for the defaults)."""
        return 1 + self.segment_samples // self.hop_length

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one segment's features, without the batch axis."""
        if self.feature == "mfcc":
            return (self.frames_per_segment, self.n_mfcc, 1)
        if self.feature == "logmel":
            return (self.frames_per_segment, self.n_mels, 1)
        if self.feature == "gtzan57":
            return (57,)
        if self.feature == "spectrogram_image":
            return (self.image_size, self.image_size, 3)
        # musicnn patches: the original cuts 3 s at 16 kHz into 187 frames
        from .musicnn import MUSICNN_FRAMES

        return (MUSICNN_FRAMES, self.n_mels)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON (the manifest's ``feature_config``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeatureConfig":
        """Rebuild from :meth:`to_dict` output; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown feature_config keys {unknown}; known keys are {sorted(known)}")
        return cls(**dict(data))


DEFAULT_CONFIG = FeatureConfig()
