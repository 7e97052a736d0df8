"""Matplotlib figures of a song and of one segment, for the app and for notebooks.

Figures are built with ``matplotlib.figure.Figure`` (never pyplot's global
state), so several app sessions can draw at once.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from .config import FeatureConfig
from .features import song_mel_db, song_mfcc

#: Longest stretch drawn in the whole-song plots; longer songs show their beginning.
MAX_PLOT_SECONDS = 600.0


def song_figure(samples: np.ndarray, config: FeatureConfig, *, offset: float = 0.0,
                boundaries: np.ndarray | None = None, width: float = 11.0) -> Figure:
    """Waveform, mel spectrogram and MFCC of ``samples`` stacked on one time axis.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono audio at ``config.sample_rate``.
    config : FeatureConfig
        The model's config: the MFCC panel shows exactly the coefficients the model sees.
    offset : float
        Time, in seconds, of the first sample (for a segment's close-up).
    boundaries : np.ndarray, optional
        Segment start times to mark with thin lines.
    """
    samples = np.asarray(samples, np.float32)
    sr = config.sample_rate
    duration = len(samples) / sr
    fig = Figure(figsize=(width, 7.2), dpi=100, layout="constrained")
    ax_wave, ax_mel, ax_mfcc = fig.subplots(3, 1, sharex=True, height_ratios=[1, 1.5, 1])
    times = offset + np.arange(len(samples)) / sr
    step = max(1, len(samples) // 20000)  # an envelope is enough at screen resolution
    if step > 1:
        n = len(samples) // step * step
        blocks = samples[:n].reshape(-1, step)
        t = times[:n:step]
        ax_wave.fill_between(t, blocks.min(axis=1), blocks.max(axis=1), color="#4c72b0", linewidth=0)
    else:
        ax_wave.plot(times, samples, color="#4c72b0", linewidth=0.6)
    ax_wave.set_ylabel("amplitude")
    ax_wave.set_ylim(-1.05, 1.05)
    ax_wave.set_title("waveform")
    extent = [offset, offset + duration]
    mel = song_mel_db(samples, config)
    image = ax_mel.imshow(mel, origin="lower", aspect="auto", cmap="magma", extent=[*extent, 0, mel.shape[0]])
    ax_mel.set_ylabel("mel band")
    ax_mel.set_title("mel spectrogram (dB re peak)")
    fig.colorbar(image, ax=ax_mel, pad=0.01, fraction=0.03)
    coeffs = song_mfcc(samples, config)
    image = ax_mfcc.imshow(coeffs, origin="lower", aspect="auto", cmap="coolwarm",
                           extent=[*extent, 0, coeffs.shape[0]], interpolation="nearest")
    ax_mfcc.set_ylabel("coefficient")
    ax_mfcc.set_title(f"{config.n_mfcc}-coefficient MFCC ({config.mfcc_backend})")
    fig.colorbar(image, ax=ax_mfcc, pad=0.01, fraction=0.03)
    ax_mfcc.set_xlabel("time (s)")
    if boundaries is not None and len(boundaries) <= 200:
        for ax in (ax_wave, ax_mel, ax_mfcc):
            for b in boundaries:
                ax.axvline(b, color="white" if ax is not ax_wave else "0.6", linewidth=0.4, alpha=0.6)
    ax_mfcc.set_xlim(*extent)
    return fig
