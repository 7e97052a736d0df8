"""The 57 GTZAN "Kaggle" features, recomputed from audio.

The Kaggle *GTZAN Dataset - Music Genre Classification* ships two tables,
``features_30_sec.csv`` (one row per 30 s track) and ``features_3_sec.csv``
(one row per 3 s segment).  Both hold the same 57 features, produced with
librosa defaults on a mono 22050 Hz signal:

* ``chroma_stft``, ``rms``, ``spectral_centroid``, ``spectral_bandwidth``,
  ``rolloff`` and ``zero_crossing_rate``: mean and (population) variance over
  frames;
* ``harmony`` / ``perceptr``: mean and variance of the *time-domain* harmonic
  and percussive signals returned by :func:`librosa.effects.hpss`;
* ``tempo``: the tempo estimate of :func:`librosa.beat.beat_track`;
* ``mfcc1`` ... ``mfcc20``: mean and variance of each of the 20 MFCCs.

:func:`gtzan_features` reproduces this recipe exactly (same librosa calls,
same defaults, same float32 arithmetic), but computes the shared
intermediate results once: one STFT feeds chroma, centroid, bandwidth,
rolloff, the mel spectrogram and HPSS; one log-mel spectrogram feeds the
MFCCs and the onset envelope of the tempo estimate.  This is numerically
identical to calling each librosa function on ``y`` separately (the test
suite checks it) and about twice as fast.

On the shared GTZAN full tracks it reproduces ``features_30_sec.csv`` to a
median relative error of a few 1e-4 (see ``training/measure_feature_parity.py``).

Nothing is read or computed at import time.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .blas import one_blas_thread
from .errors import ConfigError
from .resample import resample

__all__ = [
    "FEATURE_COLUMNS",
    "GTZAN_SAMPLE_RATE",
    "gtzan_features",
    "gtzan_features_batch",
]

#: Sample rate at which the GTZAN features are defined (``librosa.load`` default).
GTZAN_SAMPLE_RATE: int = 22050

#: The 57 feature columns of the Kaggle CSVs, in their order
#: (``filename``, ``length`` and ``label`` excluded).
FEATURE_COLUMNS: tuple[str, ...] = (
    "chroma_stft_mean",
    "chroma_stft_var",
    "rms_mean",
    "rms_var",
    "spectral_centroid_mean",
    "spectral_centroid_var",
    "spectral_bandwidth_mean",
    "spectral_bandwidth_var",
    "rolloff_mean",
    "rolloff_var",
    "zero_crossing_rate_mean",
    "zero_crossing_rate_var",
    "harmony_mean",
    "harmony_var",
    "perceptr_mean",
    "perceptr_var",
    "tempo",
    *(f"mfcc{i}_{stat}" for i in range(1, 21) for stat in ("mean", "var")),
)

_N_FEATURES = 57
assert len(FEATURE_COLUMNS) == _N_FEATURES

# librosa defaults used by the recipe.
_N_FFT = 2048
_HOP = 512
_N_MFCC = 20

#: Upper bound on the number of samples processed in one vectorised librosa
#: call by :func:`gtzan_features_batch` (bounds peak memory to a few hundred MB).
_BATCH_SAMPLES = 40 * 30 * GTZAN_SAMPLE_RATE


def _prepare(segments: Any, sample_rate: int) -> np.ndarray:
    """Validate, cast to float32 and resample to 22050 Hz a ``(n, samples)`` array."""
    y = np.asarray(segments)
    if y.ndim != 2:
        raise ConfigError(f"expected a 2-D (n, samples) array, got shape {y.shape}")
    if y.shape[-1] == 0:
        raise ConfigError("cannot compute features of an empty signal")
    if not np.issubdtype(y.dtype, np.number) or np.iscomplexobj(y):
        raise ConfigError(f"expected real-valued audio samples, got dtype {y.dtype}")
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ConfigError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    # librosa.load returns float32; the Kaggle table was computed in float32.
    y = np.ascontiguousarray(y, dtype=np.float32)
    if not np.all(np.isfinite(y)):
        raise ConfigError("audio contains NaN or infinite samples")
    if sample_rate != GTZAN_SAMPLE_RATE:
        # the samples librosa.load(sr=22050) gives, which the Kaggle table was computed from
        y = np.ascontiguousarray(
            resample(y, int(sample_rate), GTZAN_SAMPLE_RATE, axis=-1, librosa_length=True), dtype=np.float32
        )
    return y


def _mean_var(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population variance over all axes but the first (numpy, native dtype)."""
    axes = tuple(range(1, x.ndim))
    return np.mean(x, axis=axes), np.var(x, axis=axes)


def _median_filter_last(x: np.ndarray, width: int) -> np.ndarray:
    """Median filter of odd ``width`` along the last axis, ``mode="reflect"``.

    Bit-identical to ``scipy.ndimage.median_filter(x, size=(1, ..., width),
    mode="reflect")`` (a median is a selection, no arithmetic), but about
    10x faster: all rows are reflect-padded (``np.pad(mode="symmetric")`` is
    scipy's ``"reflect"``), laid end to end and filtered in one call to
    scipy's fast 1-D rank filter; the padding keeps rows from mixing.
    """
    from scipy.ndimage import median_filter

    half = width // 2
    n = x.shape[-1]
    if n <= half:  # reflection would wrap more than once: let scipy handle it
        size = [1] * x.ndim
        size[-1] = width
        return median_filter(x, size=size, mode="reflect")
    rows = np.ascontiguousarray(x).reshape(-1, n)
    padded = np.pad(rows, ((0, 0), (half, half)), mode="symmetric")
    filtered = median_filter(padded.ravel(), size=width, mode="reflect")
    return filtered.reshape(padded.shape)[:, half : half + n].reshape(x.shape)


def _hpss(stft: np.ndarray, kernel_size: int = 31) -> tuple[np.ndarray, np.ndarray]:
    """``librosa.decompose.hpss(stft)`` with librosa defaults, with a faster median filter.

    Same steps and dtypes as librosa 0.11 (``kernel_size=31``, ``power=2``,
    ``margin=1``): identical output.
    """
    import librosa

    mag, phase = librosa.magphase(stft)
    # Harmonic: median along time; percussive: median along frequency.
    harm = np.empty_like(mag)
    harm[:] = _median_filter_last(mag, kernel_size)
    perc = np.empty_like(mag)
    perc[:] = np.swapaxes(
        _median_filter_last(np.ascontiguousarray(np.swapaxes(mag, -1, -2)), kernel_size), -1, -2
    )
    mask_harm = librosa.util.softmask(harm, perc * 1.0, power=2.0, split_zeros=True)
    mask_perc = librosa.util.softmask(perc, harm * 1.0, power=2.0, split_zeros=True)
    return (mag * mask_harm) * phase, (mag * mask_perc) * phase


def _features_block(y: np.ndarray) -> np.ndarray:
    """Features of a float32 ``(n, samples)`` block at 22050 Hz.

    Everything that librosa computes independently per row (STFT, HPSS,
    frame-wise spectral features, onset envelope, tempo) is vectorised over
    the rows.  Two steps normalise over the *whole* input in librosa and are
    therefore done per row to keep each row's result independent of the
    batch: ``power_to_db``'s ``top_db`` clipping (relative to the global
    maximum) and the tuning estimate of ``chroma_stft``.
    """
    import librosa

    sr = GTZAN_SAMPLE_RATE
    n = y.shape[0]
    out = np.empty((n, _N_FEATURES), dtype=np.float64)

    # One complex STFT (librosa defaults: n_fft=2048, hop=512, hann, centred,
    # constant padding) shared by every spectral feature and by HPSS.
    stft = librosa.stft(y, n_fft=_N_FFT, hop_length=_HOP)
    mag = np.abs(stft)  # what spectral_centroid(y=...) etc. compute (power=1)
    power = mag**2  # what chroma_stft / melspectrogram(y=...) compute (power=2)

    chroma = np.stack([librosa.feature.chroma_stft(S=p, sr=sr) for p in power])
    rms = librosa.feature.rms(y=y)  # time-domain framing, not from the STFT
    centroid = librosa.feature.spectral_centroid(S=mag, sr=sr)
    bandwidth = librosa.feature.spectral_bandwidth(S=mag, sr=sr, centroid=centroid)
    rolloff = librosa.feature.spectral_rolloff(S=mag, sr=sr)
    zcr = librosa.feature.zero_crossing_rate(y)

    # librosa.effects.hpss(y): decompose the STFT, invert each part.
    harm_stft, perc_stft = _hpss(stft)
    y_harm = librosa.istft(harm_stft, hop_length=_HOP, dtype=y.dtype, length=y.shape[-1])
    y_perc = librosa.istft(perc_stft, hop_length=_HOP, dtype=y.dtype, length=y.shape[-1])
    del harm_stft, perc_stft

    # mfcc(y=...) and onset_strength(y=...) both use power_to_db(melspectrogram(y)).
    # Row by row, as chroma: on a stack of rows the filter bank's product is one larger matrix product,
    # whose BLAS blocking sums in another order than a single row's, so a row's features would depend
    # on which rows it was batched with (by a few 1e-7, enough to move an MFCC mean's last digits).
    mel = np.stack([librosa.feature.melspectrogram(S=p, sr=sr) for p in power])
    log_mel = np.stack([librosa.power_to_db(m) for m in mel])
    mfcc = librosa.feature.mfcc(S=log_mel, sr=sr, n_mfcc=_N_MFCC)

    # beat_track(y=...) returns the tempo of this onset envelope (the beat
    # positions it also computes are not needed), and 0 for an envelope
    # without any onset.
    onset_env = librosa.onset.onset_strength(S=log_mel, sr=sr, aggregate=np.median)
    tempo = np.zeros(n, dtype=np.float64)
    has_onsets = onset_env.any(axis=-1)
    if has_onsets.any():
        est = librosa.feature.tempo(onset_envelope=onset_env[has_onsets], sr=sr, hop_length=_HOP)
        tempo[has_onsets] = np.asarray(est, dtype=np.float64).reshape(-1)

    col = 0
    for x in (chroma, rms, centroid, bandwidth, rolloff, zcr, y_harm, y_perc):
        m, v = _mean_var(x)
        out[:, col] = m
        out[:, col + 1] = v
        col += 2
    out[:, col] = tempo
    col += 1
    out[:, col : col + 2 * _N_MFCC : 2] = np.mean(mfcc, axis=-1)
    out[:, col + 1 : col + 2 * _N_MFCC : 2] = np.var(mfcc, axis=-1)
    return out


def gtzan_features_batch(segments: Any, *, sample_rate: int = GTZAN_SAMPLE_RATE) -> np.ndarray:
    """Compute the 57 GTZAN features of each row of a 2-D array of signals.

    Parameters
    ----------
    segments : array_like, shape (n, samples)
        ``n`` mono signals of equal length (e.g. the 3 s segments of a song,
        as in the Kaggle ``features_3_sec.csv``).  Any real dtype; samples are
        cast to float32, as ``librosa.load`` returns them.
    sample_rate : int, default 22050
        Sample rate of ``segments``.  The features are defined at 22050 Hz:
        other rates are resampled to it first (soxr HQ, :func:`codeFeature.resample.resample`, as
        ``librosa.load(sr=22050)`` would).

    Returns
    -------
    numpy.ndarray, shape (n, 57), float64
        One row per signal, columns in :data:`FEATURE_COLUMNS` order.

    Raises
    ------
    ConfigError
        A :class:`~codeFeature.errors.GenreError` and a ``ValueError``.
        If ``segments`` is not 2-D, is empty along the time axis, is not real
        or contains non-finite samples, or ``sample_rate`` is not a positive
        integer.

    Notes
    -----
    Every step is vectorised over the rows with librosa's multichannel
    support (the rows are processed in chunks to bound memory); the result
    equals calling :func:`gtzan_features` on each row.
    """
    y = _prepare(segments, sample_rate)
    n, length = y.shape
    if n == 0:
        return np.empty((0, _N_FEATURES), dtype=np.float64)
    rows_per_block = max(1, _BATCH_SAMPLES // length)
    # OpenBLAS sums a matrix product in another order on one thread than on two: on one always, so that
    # the features do not depend on the thread count an earlier caller left set
    with one_blas_thread():
        blocks = [_features_block(y[i : i + rows_per_block]) for i in range(0, n, rows_per_block)]
    return np.concatenate(blocks, axis=0)


def gtzan_features(y: Any, *, sample_rate: int = GTZAN_SAMPLE_RATE) -> np.ndarray:
    """Compute the 57 GTZAN (Kaggle ``features_30_sec.csv``) features of one signal.

    Parameters
    ----------
    y : array_like, shape (samples,)
        A mono signal: a whole 30 s track for the ``features_30_sec.csv``
        recipe, or a 3 s segment for the ``features_3_sec.csv`` one.  Any real
        dtype; samples are cast to float32, as ``librosa.load`` returns them.
    sample_rate : int, default 22050
        Sample rate of ``y``.  The features are defined at 22050 Hz: other
        rates are resampled to it first (soxr HQ, :func:`codeFeature.resample.resample`, as
        ``librosa.load(sr=22050)`` would).

    Returns
    -------
    numpy.ndarray, shape (57,), float64
        The features in :data:`FEATURE_COLUMNS` order.

    Raises
    ------
    ConfigError
        A :class:`~codeFeature.errors.GenreError` and a ``ValueError``.
        If ``y`` is not 1-D, is empty, is not real or contains non-finite
        samples, or ``sample_rate`` is not a positive integer.

    Notes
    -----
    Equivalent to the Kaggle recipe::

        chroma = librosa.feature.chroma_stft(y=y, sr=sr)
        rms = librosa.feature.rms(y=y)
        centroid = librosa.feature.spectral_centroid(y=y, sr=sr)
        bandwidth = librosa.feature.spectral_bandwidth(y=y, sr=sr)
        rolloff = librosa.feature.spectral_rolloff(y=y, sr=sr)
        zcr = librosa.feature.zero_crossing_rate(y)
        harmony, perceptr = librosa.effects.hpss(y)
        tempo, _ = librosa.beat.beat_track(y=y, sr=sr)
        mfcc = librosa.feature.mfcc(y=y, sr=sr)  # 20 coefficients

    followed by ``np.mean`` / ``np.var`` of each (per coefficient for the
    MFCCs), with the shared STFT and log-mel spectrogram computed once.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.arange(3 * 22050) / 22050
    >>> f = gtzan_features(np.sin(2 * np.pi * 440 * t))
    >>> f.shape
    (57,)
    """
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ConfigError(f"expected a 1-D mono signal, got shape {arr.shape}")
    return gtzan_features_batch(arr[np.newaxis, :], sample_rate=sample_rate)[0]
