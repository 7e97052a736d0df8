"""Features computed from segments: MFCC, log-mel, every feature kind's compute function, and the
dispatch every model uses (:func:`segment_features`, by :mod:`codeFeature.feature_kinds`).

:func:`segment_features` is the one function training and serving both call to
turn segments into a model's input, so the two cannot drift apart.
"""

from __future__ import annotations

import librosa
import numpy as np

from .blas import one_blas_thread
from .config import FeatureConfig
from .errors import ConfigError
from .feature_kinds import feature_kind
from .gtzan_features import gtzan_features_batch
from .musicnn import musicnn_logmel
from .spectrogram_image import spectrogram_image_for_model

#: Raised whenever a feature's values change, even in the last bit, so that features cached before
#: (``training.data``'s cache) are computed again instead of being mixed with new ones.
#: 2: musicnn's log-mel STFT in float32 (:func:`codeFeature.musicnn._hann_window`).
FEATURES_REVISION = 2


def mfcc(segments: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """MFCC of each segment.

    Parameters
    ----------
    segments : np.ndarray, shape (n_segments, n_samples), float32
    config : FeatureConfig
        ``n_mfcc``, ``n_fft``, ``hop_length``, ``n_mels`` and ``mfcc_backend`` apply.

    Returns
    -------
    np.ndarray, shape (n_segments, frames, n_mfcc), float32
        ``frames`` is ``config.frames_per_segment`` for full segments (130 by default).
    """
    segments = _as_batch(segments)
    if config.mfcc_backend == "python_speech_features":
        return _mfcc_psf(segments, config)
    # one call over the whole batch: librosa vectorises over leading axes
    coeffs = librosa.feature.mfcc(y=segments, sr=config.sample_rate, n_mfcc=config.n_mfcc,
                                  n_fft=config.n_fft, hop_length=config.hop_length, n_mels=config.n_mels)
    return np.ascontiguousarray(np.swapaxes(coeffs, 1, 2), dtype=np.float32)


def mfcc_with_extras(segments: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """MFCC and the extra per-frame features of ``config.extras``, stacked along the coefficient axis.

    Rows per frame, in this order: the MFCC (``n_mfcc`` rows, exactly :func:`mfcc`'s), or with
    ``"hpss"`` the MFCC of the harmonic part then of the percussive part (``2 * n_mfcc`` rows);
    then, if asked, spectral contrast (7 rows: librosa's 6 octave bands above 200 Hz plus the rest)
    and tonnetz (6 rows). All come from one STFT of each segment (``n_fft``, ``hop_length``):

    - ``hpss``: :func:`librosa.decompose.hpss` (median filters of 31 frames / 31 bins, soft masks)
      splits the STFT magnitude; each part's MFCC is then computed as :func:`librosa.feature.mfcc`
      computes it from audio (mel power spectrogram, dB floored 80 dB below the segment's peak, DCT),
      without a round trip to audio.
    - ``tonnetz``: :func:`librosa.feature.tonnetz` of a chroma from the STFT power
      (:func:`librosa.feature.chroma_stft`), not librosa's default constant-Q chroma, which is
      about ten times slower. Tuning is fixed at A440 (``tuning=0``): librosa would otherwise
      estimate one tuning over the whole batch, so a segment's features would depend on its neighbours.

    Every extra works on each segment alone, so a batch gives each segment's own extra rows (training
    featurises a file at a time, serving 64 segments at a time). The plain MFCC rows are :func:`mfcc`'s,
    whose dB floor librosa takes over the whole batch, exactly as for the plain models.

    Parameters
    ----------
    segments : np.ndarray, shape (n_segments, n_samples), float32
    config : FeatureConfig
        ``feature="mfcc"``; ``extras``, ``n_mfcc``, ``n_fft``, ``hop_length``, ``n_mels`` and
        ``sample_rate`` apply.

    Returns
    -------
    np.ndarray, shape (n_segments, frames, config.mfcc_rows + config.extra_rows), float32
    """
    segments = _as_batch(segments)
    sr = config.sample_rate
    magnitude = np.abs(librosa.stft(segments, n_fft=config.n_fft, hop_length=config.hop_length))
    blocks = []  # each (n_segments, rows, frames)
    if "hpss" in config.extras:
        for part in librosa.decompose.hpss(magnitude):
            mel = librosa.feature.melspectrogram(S=part ** 2, sr=sr, n_fft=config.n_fft, n_mels=config.n_mels)
            db = librosa.power_to_db(mel, top_db=None)
            # librosa's 80 dB floor below the peak, taken per segment: over the batch it would tie a
            # segment's features to the loudest segment beside it
            db = np.maximum(db, db.max(axis=(-2, -1), keepdims=True) - 80.0)
            blocks.append(librosa.feature.mfcc(S=db, n_mfcc=config.n_mfcc))
    else:
        # the plain model's very rows, so that the extras only ever add information
        blocks.append(np.swapaxes(mfcc(segments, config), 1, 2))
    if "contrast" in config.extras:
        blocks.append(librosa.feature.spectral_contrast(S=magnitude, sr=sr, n_fft=config.n_fft))
    if "tonnetz" in config.extras:
        chroma = librosa.feature.chroma_stft(S=magnitude ** 2, sr=sr, n_fft=config.n_fft, tuning=0.0)
        blocks.append(librosa.feature.tonnetz(chroma=chroma, sr=sr))
    out = np.concatenate([np.asarray(b, dtype=np.float32) for b in blocks], axis=1)
    return np.ascontiguousarray(np.swapaxes(out, 1, 2))


def logmel(segments: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Log-mel spectrogram (dB, relative to 1.0) of each segment.

    Returns
    -------
    np.ndarray, shape (n_segments, frames, n_mels), float32
    """
    segments = _as_batch(segments)
    mel = librosa.feature.melspectrogram(y=segments, sr=config.sample_rate, n_fft=config.n_fft,
                                         hop_length=config.hop_length, n_mels=config.n_mels)
    # ref=1.0 (not max) so that a segment's level does not depend on its neighbours
    db = librosa.power_to_db(mel, ref=1.0, top_db=None)
    return np.ascontiguousarray(np.swapaxes(db, 1, 2), dtype=np.float32)


def segment_features(segments: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The model input for each segment, whatever the feature kind.

    BLAS runs on one thread here. The features' matrix products are small, and OpenBLAS's idle threads
    keep spinning for a while after each call: the forward pass that follows then shares the cores
    with them. On two cores, the forward pass of a 30 s clip's ten musicnn segments took 0.18 s after
    multi-threaded features and 0.13 s after single-threaded ones, which cost ~8 % more. The thread count is also the
    same for training and serving, and for threads that compute features at the same time.

    Parameters
    ----------
    segments : np.ndarray, shape (n_segments, config.segment_samples), float32
    config : FeatureConfig

    Returns
    -------
    np.ndarray, shape (n_segments, *config.input_shape), float32
        For ``mfcc`` with ``config.extras``, the coefficient axis holds :func:`mfcc_with_extras`'s rows.
    """
    segments = _as_batch(segments)
    with one_blas_thread():
        out = _features(segments, config)
    expected = (len(segments), *config.input_shape)
    if out.shape != expected:
        raise ConfigError(f"features have shape {out.shape}, expected {expected}; are the segments "
                         f"{config.segment_samples} samples long?")
    return out


def _features(segments: np.ndarray, config: FeatureConfig) -> np.ndarray:
    return feature_kind(config.feature).compute(segments, config)


# The compute functions of the feature kinds (:mod:`codeFeature.feature_kinds` names them): each turns
# (n_segments, segment_samples) float32 segments into (n_segments, *config.input_shape) float32 inputs.

def mfcc_input(segments: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """``mfcc``: :func:`mfcc`, or :func:`mfcc_with_extras` when ``config.extras``, with a channel axis."""
    return (mfcc_with_extras(segments, config) if config.extras else mfcc(segments, config))[..., None]


def logmel_input(segments: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """``logmel``: :func:`logmel` with a channel axis."""
    return logmel(segments, config)[..., None]


def musicnn_input(segments: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """``musicnn_logmel``: :func:`codeFeature.musicnn.musicnn_logmel`."""
    return musicnn_logmel(segments, sample_rate=config.sample_rate)


def gtzan57_input(segments: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """``gtzan57``: the Kaggle table's 57 features of each segment (:mod:`codeFeature.gtzan_features`)."""
    return gtzan_features_batch(segments, sample_rate=config.sample_rate).astype(np.float32)


def spectrogram_image_input(segments: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """``spectrogram_image``: the tutorial's picture of each segment (:mod:`codeFeature.spectrogram_image`)."""
    # the whole segment is drawn: its length is the picture's time span
    return np.stack([spectrogram_image_for_model(s, sample_rate=config.sample_rate, size=config.image_size,
                                                 seconds=None) for s in segments]).astype(np.float32)


def _as_batch(segments: np.ndarray) -> np.ndarray:
    segments = np.asarray(segments, dtype=np.float32)
    if segments.ndim != 2:
        raise ConfigError(f"segments must have shape (n_segments, n_samples), got {segments.shape}")
    return segments


def _mfcc_psf(segments: np.ndarray, config: FeatureConfig) -> np.ndarray:
    import python_speech_features as psf

    pad = config.n_fft // 2
    frames = 1 + segments.shape[1] // config.hop_length
    out = np.empty((len(segments), frames, config.n_mfcc), dtype=np.float32)
    for i, seg in enumerate(segments):
        # centre the frames as librosa does, so both backends give the same frame count
        centred = np.pad(seg, pad, mode="constant")
        coeffs = psf.mfcc(centred, samplerate=config.sample_rate, winlen=config.n_fft / config.sample_rate,
                          winstep=config.hop_length / config.sample_rate, numcep=config.n_mfcc,
                          nfilt=config.n_mels, nfft=config.n_fft, winfunc=np.hanning)
        out[i] = coeffs[:frames]
    return out
