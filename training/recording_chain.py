"""Other recording chains for GTZAN audio: the same music as an old, band-limited or noisy transfer gives it.

GTZAN's excerpts come from one era of CD and radio rips; real recordings people bring differ in their
chain (a 1920s shellac disc, a phone, a lossy stream). :func:`degrade` renders a signal as such a chain
would, seeded so that the same file always gets the same version. Two commands use it: the outside rule
(``training.outside_rule``: music should stay music through any chain) and the genre head's optional training
augmentation (``training.train_musicnn_head --augment band,shellac``: a genre should stay itself; measured by
``training.chain_robustness``).
"""

from __future__ import annotations

import numpy as np

#: The versions :func:`degrade` knows, besides ``clean``.
VERSIONS = ("band", "shellac", "noise10")


def _pink(rng, n):
    spectrum = np.fft.rfft(rng.normal(size=n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    return np.fft.irfft(spectrum, n)


def _mix(x, noise, snr_db):
    gain = np.sqrt(np.mean(x ** 2) / max(np.mean(noise ** 2), 1e-12) / 10 ** (snr_db / 10))
    return x + gain * noise


def degrade(x: np.ndarray, version: str, sample_rate: int, seed: int) -> np.ndarray:
    """``x`` as another recording chain would give it.

    ``clean``: unchanged. ``band``: low-passed at 3-6 kHz (an old or band-limited transfer) with pink noise at
    15-25 dB SNR. ``shellac``: a 78-rpm-like transfer, band-passed to about 200-400 Hz .. 3-4.5 kHz with crackle
    and hiss at 12-20 dB SNR. ``noise10``: pink noise at 10 dB SNR.
    """
    from scipy import signal as sps

    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float64)
    nyquist = sample_rate / 2
    if version == "clean":
        return x.astype(np.float32)
    if version == "band":
        b, a = sps.butter(4, rng.uniform(3000, 6000) / nyquist)
        y = _mix(sps.lfilter(b, a, x), _pink(rng, len(x)), rng.uniform(15, 25))
    elif version == "shellac":
        b, a = sps.butter(2, [rng.uniform(200, 400) / nyquist, rng.uniform(3000, 4500) / nyquist], btype="band")
        crackle = (rng.random(len(x)) < 0.002) * rng.normal(size=len(x)) * 5
        y = _mix(sps.lfilter(b, a, x), _pink(rng, len(x)) + crackle, rng.uniform(12, 20))
    elif version == "noise10":
        y = _mix(x, _pink(rng, len(x)), 10.0)
    else:
        raise ValueError(f"unknown version {version!r}")
    return y.astype(np.float32)
