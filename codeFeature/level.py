"""The level meter: RMS, peak, clipped and repaired samples of a signal seen block by block, and the
plain-words warnings they call for (silence, clipping, a signal scaled down from beyond full scale).

Files (:mod:`codeFeature.audio`, :mod:`codeFeature.predict`), arrays and live streams
(:mod:`codeFeature.stream`) are all measured by the same :class:`LevelMeter`, so they warn alike.
"""

from __future__ import annotations

import numpy as np

from .decision import SILENT_RMS

#: A sample at or beyond this magnitude counts as clipped.
CLIP_LEVEL = 0.999
#: Peak (full scale 1.0) beyond which scaling a signal down is worth a warning. A master limited
#: at 0 dBFS overshoots after mp3 decoding and after resampling (inter-sample peaks, the codec's
#: and the filter's ringing): GTZAN's excerpts, normalised to exactly 1.0, peak at up to 1.28
#: (+2.1 dB) once resampled to 16 kHz, and ordinary commercial mp3s around 1.1-1.2. Twice full
#: scale (+6 dB) is well beyond that, so only a genuinely hot floating-point file is reported.
OVERSHOOT_PEAK = 2.0


class LevelMeter:
    """Level statistics of a signal seen block by block, and the warnings they call for.

    :meth:`add` returns each block with NaN and infinite samples set to 0, so every caller
    (files, streams, the live page) treats odd samples and quiet or clipped audio alike.
    """

    def __init__(self) -> None:
        self.count = 0
        self.repaired = 0
        self.clipped = 0
        self.sum_squares = 0.0
        self.peak = 0.0

    def add(self, block: np.ndarray) -> np.ndarray:
        """Count ``block`` (float32, 1-D); returns it, or a repaired copy if it held NaN or inf."""
        if block.size == 0:
            return block
        finite = np.isfinite(block)
        if not finite.all():
            self.repaired += int(block.size - np.count_nonzero(finite))
            block = np.where(finite, block, np.float32(0.0)).astype(np.float32)
        magnitude = np.abs(block)
        self.peak = max(self.peak, float(magnitude.max()))
        self.clipped += int(np.count_nonzero(magnitude >= CLIP_LEVEL))
        # a dot product, not mean(square(...)): no block-sized temporary
        self.sum_squares += float(np.dot(block, block))
        self.count += block.size
        return block

    @property
    def rms(self) -> float:
        """RMS level of the samples seen so far (full scale 1.0; 0 before any)."""
        return float(np.sqrt(self.sum_squares / self.count)) if self.count else 0.0

    def warnings(self) -> list[str]:
        """Notes on repaired samples, silence and clipping (call after the last block)."""
        return self.repair_warnings() + self.level_warnings()

    def repair_warnings(self) -> list[str]:
        """The note on NaN and infinite samples, if any were repaired."""
        return [f"{self.repaired} samples were NaN or infinite and were set to 0"] if self.repaired else []

    def level_warnings(self) -> list[str]:
        """The note on silence or clipping, if either applies."""
        if not self.count:
            return []
        if self.peak == 0.0 or self.rms < SILENT_RMS:
            return ["the audio is silent or nearly so; the genre is a guess"]
        if self.clipped / self.count > 0.01:
            return ["more than 1% of the samples are clipped; the prediction may suffer"]
        return []


def scaling_warnings(peak: float) -> list[str]:
    """The note on a signal scaled down by its ``peak`` (beyond full scale), if it is worth one: only beyond
    what decoding and resampling normally add (see ``OVERSHOOT_PEAK``), which is not worth a listener's
    worry."""
    if peak > OVERSHOOT_PEAK:
        return [f"the signal peaks at {peak:.3g} times full scale (a floating-point file?); it was scaled down "
                "to full scale"]
    return []


#: Samples measured at a time by :func:`measure` (bounds its temporaries).
_INSPECT_BLOCK = 1 << 20


def measure(samples: np.ndarray) -> LevelMeter:
    """A :class:`LevelMeter` of a whole signal, measured in blocks; NaN and infinite samples are set to 0
    in ``samples`` itself (which must be writable)."""
    meter = LevelMeter()
    for lo in range(0, len(samples), _INSPECT_BLOCK):
        block = samples[lo: lo + _INSPECT_BLOCK]
        checked = meter.add(block)
        if checked is not block:
            block[:] = checked  # repaired: write it back
    return meter
