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
from .feature_kinds import KINDS, feature_kind

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

#: Feature kinds a model can be trained on (registered in :mod:`codeFeature.feature_kinds`).
FEATURE_KINDS: tuple[str, ...] = tuple(KINDS)
MFCC_BACKENDS: tuple[str, ...] = ("librosa", "python_speech_features")
#: Extra per-frame features an ``mfcc`` model can see, in the order their rows follow the MFCC
#: (see :func:`codeFeature.features.mfcc_with_extras`). ``hpss`` has no rows of its own: it replaces
#: the MFCC with the MFCC of the harmonic part followed by that of the percussive part.
EXTRA_FEATURES: tuple[str, ...] = ("contrast", "tonnetz", "hpss")
#: Rows each extra adds to the MFCC's ``n_mfcc`` (``hpss`` adds another ``n_mfcc``).
EXTRA_ROWS: dict[str, int] = {"contrast": 7, "tonnetz": 6}
#: librosa's spectral contrast: 6 octave bands above 200 Hz; the top band's lower edge must lie below Nyquist.
CONTRAST_MIN_RATE = 2 * 200 * 2 ** 5

#: musicnn's signal (:mod:`codeFeature.musicnn`, after Pons & Serra's ``musicnn`` package): 16 kHz audio, a
#: 512-sample window, a 256-sample hop, 96 mel bands.
MUSICNN_SAMPLE_RATE = 16000
MUSICNN_N_FFT = 512
MUSICNN_HOP = 256
MUSICNN_N_MELS = 96
#: Frames per 3 s patch: the original's ``librosa.time_to_frames(3, ...) + 1``.
MUSICNN_FRAMES = 187


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
    extras : tuple of str
        Extra per-frame features for ``feature="mfcc"``, any of :data:`EXTRA_FEATURES`:
        ``"contrast"`` (librosa spectral contrast, 7 rows), ``"tonnetz"`` (6 rows, from an STFT
        chroma) and ``"hpss"`` (the MFCC of the harmonic and of the percussive part instead of one
        MFCC). Given in any order as a tuple or list; stored de-duplicated in that canonical order.
        Empty (the default) is the plain MFCC, and :meth:`to_dict` then leaves the key out, so a plain
        model's manifest and feature-cache key are what they were before this field existed.
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
    extras: tuple[str, ...] = ()

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
        self._check_extras()

    def _check_extras(self) -> None:
        extras = self.extras
        if isinstance(extras, str) or not isinstance(extras, (tuple, list)):
            raise ConfigError(f"extras={extras!r} must be a tuple of names such as ('contrast', 'tonnetz'), "
                              f"from {', '.join(EXTRA_FEATURES)}")
        unknown = [e for e in extras if e not in EXTRA_FEATURES]
        if unknown:
            raise ConfigError(f"extras={tuple(extras)!r}: {', '.join(map(repr, unknown))} unknown; "
                              f"use any of {', '.join(EXTRA_FEATURES)}")
        if len(set(extras)) != len(extras):
            raise ConfigError(f"extras={tuple(extras)!r} names a feature twice")
        if extras and self.feature != "mfcc":
            raise ConfigError(f"extras={tuple(extras)!r} apply to feature='mfcc' only, not feature={self.feature!r}")
        if "hpss" in extras and self.mfcc_backend != "librosa":
            raise ConfigError(f"extras 'hpss' computes the MFCC with librosa; mfcc_backend={self.mfcc_backend!r} "
                              "cannot be combined with it")
        if "contrast" in extras and self.sample_rate <= CONTRAST_MIN_RATE:
            raise ConfigError(f"extras 'contrast' needs sample_rate above {CONTRAST_MIN_RATE} Hz (its top octave "
                              f"band starts at 6400 Hz), got sample_rate={self.sample_rate}")
        # frozen: normalise through object.__setattr__ so that list and tuple, in any order, compare equal
        object.__setattr__(self, "extras", tuple(e for e in EXTRA_FEATURES if e in extras))

    @property
    def segment_samples(self) -> int:
        """Samples in one segment (66150 for 3 s at 22050 Hz)."""
        return int(round(self.segment_seconds * self.sample_rate))

    @property
    def musicnn_frames(self) -> int:
        """Frames in one musicnn patch (:data:`MUSICNN_FRAMES`: musicnn's signal, not this config's hop)."""
        return MUSICNN_FRAMES

    @property
    def frames_per_segment(self) -> int:
        """STFT frames in one segment (centred frames: 130 for the defaults)."""
        return 1 + self.segment_samples // self.hop_length

    @property
    def mfcc_rows(self) -> int:
        """MFCC coefficients per frame: ``n_mfcc``, twice that with ``hpss`` (harmonic, then percussive)."""
        return self.n_mfcc * (2 if "hpss" in self.extras else 1)

    @property
    def extra_rows(self) -> int:
        """Rows per frame that follow the MFCC's: 7 for ``contrast``, 6 for ``tonnetz``."""
        return sum(EXTRA_ROWS.get(e, 0) for e in self.extras)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one segment's features, without the batch axis (the feature kind's, see
        :mod:`codeFeature.feature_kinds`)."""
        return feature_kind(self.feature).input_shape(self)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON (the manifest's ``feature_config``); ``extras`` is a list, left out when empty."""
        data = dataclasses.asdict(self)
        if self.extras:
            data["extras"] = list(self.extras)
        else:
            del data["extras"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FeatureConfig":
        """Rebuild from :meth:`to_dict` output (a missing ``extras`` is empty); unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown feature_config keys {unknown}; known keys are {sorted(known)}")
        return cls(**dict(data))


DEFAULT_CONFIG = FeatureConfig()
