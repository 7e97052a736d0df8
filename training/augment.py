"""Honest augmentation: new versions of *training* segments only, never of valid or test ones."""

from __future__ import annotations

import librosa
import numpy as np


def pitch_time_noise(segments: np.ndarray, rng: np.random.Generator, *, sample_rate: int = 22050,
                     copies: int = 2) -> list[np.ndarray]:
    """``copies`` altered versions of each segment: pitch shift of +-1 or 2 semitones,
    time stretch of 0.9-1.1 (cropped or wrap-padded back to length) and noise at 30-40 dB SNR.

    Returns
    -------
    list of np.ndarray, each shape (n_segments, n_samples), float32
    """
    n = segments.shape[1]
    out = []
    for _ in range(copies):
        batch = np.empty_like(segments)
        for i, seg in enumerate(segments):
            steps = float(rng.choice([-2, -1, 1, 2]))
            y = librosa.effects.pitch_shift(seg, sr=sample_rate, n_steps=steps)
            y = librosa.effects.time_stretch(y, rate=float(rng.uniform(0.9, 1.1)))
            y = np.resize(y, n) if len(y) < n else y[:n]
            power = float(np.mean(y ** 2)) or 1e-8
            snr_db = rng.uniform(30, 40)
            y = y + rng.normal(0, np.sqrt(power / 10 ** (snr_db / 10)), n)
            batch[i] = np.clip(y, -1, 1)
        out.append(batch.astype(np.float32))
    return out
