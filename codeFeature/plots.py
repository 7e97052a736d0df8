"""Matplotlib pictures of a song and of one segment, for the app and for notebooks.

Three panels, each its own figure so that a page can lay them out (and a phone can show them
one under another): the waveform, a mel spectrogram with its frequency axis in Hz, and what
the model actually sees (its input features, computed by the very function that feeds it).

Figures are built with ``matplotlib.figure.Figure`` (never pyplot's global state), so several
app sessions can draw at once. Whole-song pictures are drawn at screen resolution (about
:data:`DISPLAY_COLUMNS` time columns), not one column per STFT frame: a 5-minute song takes
a few hundred milliseconds (``python -m bench.bench_plots``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from .config import FeatureConfig
from .feature_kinds import feature_kind

#: Longest stretch drawn in the whole-song plots; longer songs show their beginning.
MAX_PLOT_SECONDS = 600.0
#: Time columns a whole-song picture needs (it is about 650 px wide); more are averaged together.
DISPLAY_COLUMNS = 1000
#: Widths in inches (at 100 dpi) of the app's whole-song and close-up pictures: sharp enough stretched
#: on a wide screen, legible shrunk to a phone's 390 px.
SONG_WIDTH = 6.5
CLOSEUP_WIDTH = 6.0
#: Segment boundaries are drawn only up to this many segments: beyond, the lines are clutter
#: (the segment timeline shows the segments).
MAX_BOUNDARIES = 20
#: Mel bands of the display spectrogram.
DISPLAY_MELS = 128

FONT_SIZE = 12


@dataclass
class Panel:
    """One picture: a title for the page to print above it (HTML text stays sharp on a phone)."""

    title: str
    figure: Figure

    def png(self) -> bytes:
        """The figure as PNG bytes."""
        buffer = io.BytesIO()
        self.figure.savefig(buffer, format="png")
        return buffer.getvalue()


def _figure(width: float, height: float) -> tuple[Figure, object]:
    # fixed margins, not a layout engine: constrained layout doubled the drawing time
    fig = Figure(figsize=(width, height), dpi=100)
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.9 / width, bottom=0.55 / height, top=1 - 0.12 / height)
    ax = fig.subplots()
    ax.tick_params(labelsize=FONT_SIZE)
    return fig, ax


def _pool_columns(image: np.ndarray, columns: int) -> np.ndarray:
    """Average groups of time columns of ``image`` (rows, frames) down to about ``columns``."""
    step = int(np.ceil(image.shape[1] / columns))
    if step <= 1:
        return image
    n = image.shape[1] // step * step
    pooled = image[:, :n].reshape(image.shape[0], -1, step).mean(axis=2)
    if n < image.shape[1]:
        pooled = np.concatenate([pooled, image[:, n:].mean(axis=1, keepdims=True)], axis=1)
    return pooled


def _time_axis(ax, offset: float, duration: float, boundaries) -> None:
    ax.set_xlim(offset, offset + duration)
    ax.set_xlabel("time (s)", fontsize=FONT_SIZE)
    if boundaries is not None and 0 < len(boundaries) <= MAX_BOUNDARIES:
        for b in boundaries:
            ax.axvline(b, color="white", linewidth=0.6, alpha=0.5)


def waveform_panel(samples: np.ndarray, sample_rate: int, *, offset: float = 0.0, width: float = 9.0,
                   boundaries: np.ndarray | None = None) -> Panel:
    """The waveform (its min-max envelope at screen resolution)."""
    samples = np.asarray(samples, np.float32)
    duration = len(samples) / sample_rate
    fig, ax = _figure(width, 1.9)
    step = max(1, len(samples) // (2 * DISPLAY_COLUMNS))
    if step > 1:
        n = len(samples) // step * step
        blocks = samples[:n].reshape(-1, step)
        t = offset + np.arange(len(blocks)) * step / sample_rate
        ax.fill_between(t, blocks.min(axis=1), blocks.max(axis=1), color="#4c72b0", linewidth=0)
    else:
        ax.plot(offset + np.arange(len(samples)) / sample_rate, samples, color="#4c72b0", linewidth=0.6)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("amplitude", fontsize=FONT_SIZE)
    if boundaries is not None and 0 < len(boundaries) <= MAX_BOUNDARIES:
        for b in boundaries:
            ax.axvline(b, color="0.6", linewidth=0.6, alpha=0.6)
    ax.set_xlim(offset, offset + duration)
    ax.set_xlabel("time (s)", fontsize=FONT_SIZE)
    return Panel("Waveform", fig)


def mel_panel(samples: np.ndarray, sample_rate: int, *, offset: float = 0.0, width: float = 9.0,
              boundaries: np.ndarray | None = None) -> Panel:
    """Mel spectrogram (dB re its peak) up to the Nyquist frequency of ``sample_rate``, axis in Hz.

    The audio is the model's (decoded at its rate): the picture shows exactly the band the model
    hears, and the title says where that band ends.
    """
    import librosa

    samples = np.asarray(samples, np.float32)
    duration = len(samples) / sample_rate
    n_fft = 2048 if sample_rate >= 22050 else 1024
    # one STFT frame per display column is enough: a larger hop on long songs, not a finer one
    hop = max(n_fft // 4, int(np.ceil(len(samples) / DISPLAY_COLUMNS)))
    mel = librosa.feature.melspectrogram(y=samples, sr=sample_rate, n_fft=n_fft, hop_length=hop,
                                         n_mels=DISPLAY_MELS, fmax=sample_rate / 2)
    db = librosa.power_to_db(mel, ref=np.max, top_db=80.0)
    fig, ax = _figure(width, 2.6)
    image = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", extent=[offset, offset + duration, 0,
                                                                               DISPLAY_MELS])
    nyquist = sample_rate / 2
    ticks = [f for f in (0, 250, 500, 1000, 2000, 4000, 8000, 16000) if f <= nyquist]
    # band edges on the mel scale: a Hz value's position is its mel value over the top band's
    top = librosa.hz_to_mel(nyquist)
    ax.set_yticks([DISPLAY_MELS * librosa.hz_to_mel(f) / top for f in ticks],
                  [f"{f / 1000:g}k" if f >= 1000 else f"{f}" for f in ticks])
    ax.set_ylabel("Hz", fontsize=FONT_SIZE)
    cbar = fig.colorbar(image, ax=ax, pad=0.01, fraction=0.025)
    cbar.ax.tick_params(labelsize=FONT_SIZE - 2)
    _time_axis(ax, offset, duration, boundaries)
    return Panel(f"Mel spectrogram, dB (up to {nyquist / 1000:g} kHz: the model hears audio at "
                 f"{sample_rate / 1000:g} kHz)", fig)


def model_input(samples: np.ndarray, config: FeatureConfig) -> tuple[np.ndarray, str, str, int] | None:
    """What the model sees for ``samples``, as a picture: (rows, frames) array, title, row label, segments.

    The model's own feature function on its own segments (:func:`codeFeature.segments.segment_array`),
    the segments' frames placed one after another; ``None`` for inputs that are not a
    time-frequency picture (the feature kind has no ``picture``: the 57 summary features of ``gtzan57``,
    the RGB pictures of ``spectrogram_image``).
    """
    from .features import segment_features
    from .segments import segment_array

    picture = feature_kind(config.feature).picture
    if picture is None:
        return None
    segments, _ = segment_array(np.asarray(samples, np.float32), config)
    features = segment_features(segments, config)
    features = features.reshape(features.shape[0], features.shape[1], -1)  # drop a channel axis
    image = np.concatenate(list(features), axis=0).T  # (rows, frames)
    drawn = picture(config, image.shape[0])
    return image, drawn.title, drawn.rows, len(segments)


def model_input_panel(samples: np.ndarray, config: FeatureConfig, *, offset: float = 0.0, width: float = 9.0,
                      boundaries: np.ndarray | None = None) -> Panel | None:
    """:func:`model_input` drawn on the song's time axis; ``None`` when it is not a picture."""
    found = model_input(samples, config)
    if found is None:
        return None
    image, title, ylabel, n_segments = found
    # the frames cover whole segments (a short last one padded by repetition): draw them on that
    # span and cut the axis at the end of the audio
    covered = n_segments * config.segment_seconds
    fig, ax = _figure(width, 2.4)
    shown = _pool_columns(image, DISPLAY_COLUMNS)
    picture = ax.imshow(shown, origin="lower", aspect="auto", cmap=feature_kind(config.feature).picture(config, image.shape[0]).cmap,
                        extent=[offset, offset + covered, 0, image.shape[0]], interpolation="nearest")
    ax.set_ylabel(ylabel, fontsize=FONT_SIZE)
    cbar = fig.colorbar(picture, ax=ax, pad=0.01, fraction=0.025)
    cbar.ax.tick_params(labelsize=FONT_SIZE - 2)
    _time_axis(ax, offset, min(covered, len(samples) / config.sample_rate), boundaries)
    if shown.shape[1] < image.shape[1]:
        title += f" (every {int(np.ceil(image.shape[1] / DISPLAY_COLUMNS))} frames averaged to fit the screen)"
    return Panel(title, fig)


def song_panels(samples: np.ndarray, config: FeatureConfig, *, offset: float = 0.0, width: float = 9.0,
                boundaries: np.ndarray | None = None) -> list[Panel]:
    """Waveform, mel spectrogram and the model's input for ``samples`` (at ``config.sample_rate``)."""
    panels = [waveform_panel(samples, config.sample_rate, offset=offset, width=width, boundaries=boundaries),
              mel_panel(samples, config.sample_rate, offset=offset, width=width, boundaries=boundaries)]
    seen = model_input_panel(samples, config, offset=offset, width=width, boundaries=boundaries)
    if seen is not None:
        panels.append(seen)
    return panels
