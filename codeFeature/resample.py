"""The one resampler: every change of sample rate in the package goes through here.

Files, uploads, live streams and arrays are all resampled by soxr at its high quality ("HQ", the
quality ``librosa.load`` uses by default), so a song gives the same samples whichever way it came in.
Two shapes of the same resampler:

- :func:`resample` for a whole array at once;
- :func:`stream_resampler` for audio that arrives block by block (a file decoded in blocks, a live
  stream). Its output is not bit for bit the whole-array one, so each caller keeps the form it has
  always used: files (:mod:`codeFeature.audio`) and live streams (:mod:`codeFeature.stream`) stream,
  arrays (:func:`codeFeature.predict.predict_audio`, the GTZAN table's features, the pictures) do not.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import soxr

#: soxr's quality for every resampling in the package.
QUALITY = "HQ"


def resample(samples: np.ndarray, orig_sr: int, target_sr: int, *, axis: int = -1,
             librosa_length: bool = False) -> np.ndarray:
    """Resample ``samples`` from ``orig_sr`` to ``target_sr`` Hz with soxr HQ, in float32.

    Parameters
    ----------
    samples : np.ndarray, any shape, float
        Each 1-D slice along ``axis`` is resampled on its own (as ``librosa.resample`` does, so a
        batch of segments gives each segment's own samples).
    orig_sr, target_sr : int
        Rates in Hz. Equal rates return ``samples`` as float32, unchanged.
    axis : int
        The time axis.
    librosa_length : bool
        Make the result ``ceil(n * target_sr / orig_sr)`` samples long, zero-padded as
        ``librosa.resample(res_type="soxr_hq")`` and so ``librosa.load`` do (soxr alone often gives one
        sample fewer). The GTZAN feature table and the tutorial's pictures were
        computed after ``librosa.load``, so the features that reproduce them ask for it.

    Returns
    -------
    np.ndarray, float32
        ``samples``' shape but for the length of ``axis``.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if orig_sr == target_sr:
        return samples
    if samples.ndim == 1:
        out = soxr.resample(samples, orig_sr, target_sr, quality=QUALITY)
    else:
        # one row at a time: soxr's multi-channel call need not round as a lone row does
        out = np.apply_along_axis(soxr.resample, axis, samples, in_rate=orig_sr, out_rate=target_sr,
                                  quality=QUALITY)
    out = np.asarray(out, dtype=np.float32)
    if librosa_length:
        want = int(math.ceil(samples.shape[axis] * float(target_sr) / orig_sr))
        have = out.shape[axis]
        if have > want:
            out = np.take(out, np.arange(want), axis=axis)
        elif have < want:
            pad = [(0, 0)] * out.ndim
            pad[axis] = (0, want - have)
            out = np.pad(out, pad)
    return out


def stream_resampler(orig_sr: int, target_sr: int) -> Optional[soxr.ResampleStream]:
    """A block-by-block mono resampler from ``orig_sr`` to ``target_sr`` Hz (float32, soxr HQ), or
    ``None`` when the rates are equal and blocks pass as they are.

    Feed it with ``resample_chunk(block, last=False)`` and flush it with
    ``resample_chunk(np.zeros(0, np.float32), last=True)`` (or ``last=True`` on the final block).
    """
    if orig_sr == target_sr:
        return None
    return soxr.ResampleStream(orig_sr, target_sr, 1, dtype="float32", quality=QUALITY)
