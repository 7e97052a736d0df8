"""Cut a signal into fixed-length segments (~3 s), the unit every model classifies.

The rule, shared by training and serving:

* a song is cut into consecutive, non-overlapping segments of
  ``config.segment_samples`` samples (66150 = 3 s at 22050 Hz);
* a final partial segment shorter than half a segment is **dropped**; a longer
  one is **padded** to full length by repeating its own beginning (wrap
  padding), so its features still look like music rather than silence;
* a song shorter than one segment but at least :data:`MIN_SECONDS` long becomes
  one segment, padded the same way, with a warning; a shorter one is an error.

:func:`segment_array` does it with NumPy views; its test proves it agrees with
the original design's pydub ``AudioSegment`` slicing. Not to be confused with
``training/splits/``, which lists which tracks train and which validate.
"""

from __future__ import annotations

import numpy as np

from .config import FeatureConfig
from .errors import AudioTooShortError, ConfigError

#: Shortest audio classified at all, in seconds.
MIN_SECONDS = 0.5


def plan_segments(n_samples: int, config: FeatureConfig) -> tuple[int, int]:
    """How a signal of ``n_samples`` is cut.

    Returns
    -------
    n_full : int
        Whole segments.
    tail : int
        Samples of a final partial segment that is kept and padded (0 if none).

    Raises
    ------
    AudioTooShortError
        If the signal is shorter than :data:`MIN_SECONDS`.
    """
    seg = config.segment_samples
    if n_samples < MIN_SECONDS * config.sample_rate:
        raise AudioTooShortError(
            f"the audio lasts {n_samples / config.sample_rate:.2f} s; at least {MIN_SECONDS} s is needed "
            f"(one segment is {config.segment_seconds:g} s)")
    n_full, tail = divmod(n_samples, seg)
    if n_full == 0:
        return 0, tail
    return n_full, tail if tail * 2 >= seg else 0


def segment_array(samples: np.ndarray, config: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    """Cut a mono signal into segments.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono signal at ``config.sample_rate``.
    config : FeatureConfig

    Returns
    -------
    segments : np.ndarray, shape (n_segments, config.segment_samples), float32
        A view of ``samples`` for the whole segments, plus a padded copy of the tail.
    starts : np.ndarray, shape (n_segments,), float64
        Start time of each segment in seconds.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ConfigError(f"samples must be 1-D mono, got shape {samples.shape}")
    seg = config.segment_samples
    n_full, tail = plan_segments(len(samples), config)
    segments = samples[: n_full * seg].reshape(n_full, seg)
    if tail:
        padded = wrap_pad(samples[n_full * seg: n_full * seg + tail], seg)
        segments = np.concatenate([segments, padded[None, :]], axis=0)
    starts = np.arange(len(segments), dtype=np.float64) * config.segment_seconds
    return segments, starts


def segment_count(n_samples: int, config: FeatureConfig) -> int:
    """Number of segments :func:`segment_array` makes from ``n_samples``."""
    n_full, tail = plan_segments(n_samples, config)
    return n_full + (1 if tail else 0)


def wrap_pad(part: np.ndarray, length: int) -> np.ndarray:
    """``part`` repeated from its own beginning up to ``length`` samples, float32: a short tail padded
    so that its features still look like music rather than silence."""
    reps = -(-length // len(part))
    return np.tile(part, reps)[:length].astype(np.float32, copy=False)
