"""Spectrogram images as rendered by the GTZAN "img_data" tutorial, and as a Keras model reads them.

The widely copied tutorial (parulnith/Music-Genre-Classification-with-Python,
redistributed as ``spectrograms/`` in the shared data and as
``images_original/`` in the Kaggle download) renders each track with::

    y, sr = librosa.load(songname, mono=True, duration=5)
    plt.specgram(y, NFFT=2048, Fs=2, Fc=0, noverlap=128, cmap='inferno',
                 sides='default', mode='default', scale='dB')
    plt.axis('off')
    plt.savefig(...)          # figure 10x10 in, Jupyter inline backend

:func:`render_spectrogram_image` reproduces it with an explicit
:class:`~matplotlib.figure.Figure` on the Agg canvas (no pyplot state, safe
to call from several threads), pinning everything the result depends on
instead of reading it from ``rcParams``:

* **5 s, not 30 s.**  The tutorial notebook loads ``duration=5``; rendering
  30 s gives ~6x as many STFT columns and a visibly different image (mean
  absolute pixel error about 10/255 instead of about 1/255 on the shared
  images), so the default is ``seconds=5.0``.
* **Axes box** ``left=0.125, right=0.9, bottom=0.125, top=0.88``: the
  Jupyter inline backend sets ``figure.subplot.bottom = 0.125`` (and 72 dpi),
  which is why the plot area of the images ends at row 629, not 640.
* **Image resampling** ``interpolation='antialiased'`` with
  ``interpolation_stage='data'``, the matplotlib 3.2-3.9 default (3.10 moved
  to ``'auto'``, which resamples in RGBA here and is measurably further from
  the images).

:func:`spectrogram_image_for_model` and :func:`load_spectrogram_image` then
turn a render, or a stored PNG/WebP, into the array a Keras
``image_dataset_from_directory(image_size=(size, size))`` pipeline would feed
the model: alpha dropped (``decode_image(channels=3)``), then a bilinear
resize with half-pixel centres and no antialiasing (``tf.image.resize``).
Pillow's own ``BILINEAR`` filter widens its kernel when downscaling
(antialiasing) and so does not match; the resize is therefore done here in
numpy, exactly like TensorFlow's kernel, and rounded to uint8.

Nothing is computed at import time; matplotlib is imported lazily.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .errors import ConfigError
from .resample import resample

__all__ = [
    "IMAGE_SIZE",
    "PLOT_AREA",
    "TUTORIAL_SECONDS",
    "load_spectrogram_image",
    "render_spectrogram_image",
    "resize_like_keras",
    "spectrogram_image_for_model",
]

#: Side of the rendered image in pixels (10 in at 72 dpi).
IMAGE_SIZE: int = 720

#: Audio duration the tutorial renders (``librosa.load(..., duration=5)``).
TUTORIAL_SECONDS: float = 5.0

#: Rows and columns (inclusive start, exclusive stop) of the plot area of a
#: 720x720 render: ``(row_start, row_stop, col_start, col_stop)``.
PLOT_AREA: tuple[int, int, int, int] = (86, 630, 90, 648)

_SAMPLE_RATE = 22050
_DPI = 72
_FIG_INCHES = IMAGE_SIZE / _DPI
_SUBPLOT = {"left": 0.125, "right": 0.9, "bottom": 0.125, "top": 0.88}


def _prepare(y: Any, sample_rate: int, seconds: float | None) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ConfigError(f"expected a 1-D mono signal, got shape {arr.shape}")
    if arr.size == 0:
        raise ConfigError("cannot render an empty signal")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise ConfigError(f"expected real-valued audio samples, got dtype {arr.dtype}")
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ConfigError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    if seconds is not None and not seconds > 0:
        raise ConfigError(f"seconds must be positive or None, got {seconds!r}")
    # librosa.load returns float32 at 22050 Hz.
    arr = np.asarray(arr, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise ConfigError("audio contains NaN or infinite samples")
    if sample_rate != _SAMPLE_RATE:
        # the samples librosa.load(sr=22050) gives, which the tutorial's pictures were drawn from
        arr = resample(arr, int(sample_rate), _SAMPLE_RATE, librosa_length=True)
    if seconds is not None:
        arr = arr[: int(round(seconds * _SAMPLE_RATE))]
    return arr


def render_spectrogram_image(
    y: Any, *, sample_rate: int = _SAMPLE_RATE, seconds: float | None = TUTORIAL_SECONDS
) -> np.ndarray:
    """Render the tutorial's 720x720 spectrogram image of a signal.

    Parameters
    ----------
    y : array_like, shape (samples,)
        Mono audio signal; cast to float32 as ``librosa.load`` returns it.
        It must hold at least 2048 samples (one STFT frame).
    sample_rate : int, default 22050
        Sample rate of ``y``; other rates are resampled to 22050 Hz first
        (soxr HQ, :func:`codeFeature.resample.resample`, as ``librosa.load`` does).
    seconds : float or None, default 5.0
        Render only the first ``seconds`` of the signal (the tutorial used
        ``duration=5``); ``None`` renders all of it.

    Returns
    -------
    numpy.ndarray, shape (720, 720, 4), uint8
        The RGBA image, as the tutorial's ``savefig`` wrote it (opaque white
        background, plot area :data:`PLOT_AREA`).

    Raises
    ------
    ConfigError
        A :class:`~codeFeature.errors.GenreError` and a ``ValueError``.
        If ``y`` is not a non-empty 1-D real finite signal, is shorter than
        one 2048-sample frame after trimming, or an argument is invalid.

    Notes
    -----
    Uses its own :class:`~matplotlib.figure.Figure` and Agg canvas and never
    touches pyplot or ``rcParams``, so concurrent calls from several threads
    are safe and leave no figure behind.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    signal = _prepare(y, sample_rate, seconds)
    if signal.size < 2048:
        raise ConfigError(f"need at least 2048 samples (one STFT frame), got {signal.size}")

    fig = Figure(figsize=(_FIG_INCHES, _FIG_INCHES), dpi=_DPI, facecolor="white", layout=None)
    canvas = FigureCanvasAgg(fig)
    fig.subplots_adjust(**_SUBPLOT)
    ax = fig.add_subplot()
    ax.specgram(
        signal,
        NFFT=2048,
        Fs=2,
        Fc=0,
        noverlap=128,
        cmap="inferno",
        sides="default",
        mode="default",
        scale="dB",
        interpolation="antialiased",
        interpolation_stage="data",
    )
    ax.axis("off")
    canvas.draw()
    image = np.array(canvas.buffer_rgba(), dtype=np.uint8, copy=True)
    if image.shape != (IMAGE_SIZE, IMAGE_SIZE, 4):  # pragma: no cover - defensive
        raise RuntimeError(f"unexpected render shape {image.shape}")
    return image


def resize_like_keras(image: Any, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize exactly like ``tf.image.resize(..., method="bilinear")``.

    Half-pixel centres, no antialiasing, computed in float32 like
    TensorFlow's ``ResizeBilinear`` kernel.

    Parameters
    ----------
    image : array_like, shape (height, width, channels)
        Input image (any numeric dtype).
    size : int or (int, int)
        Output ``(height, width)``; an int means a square.

    Returns
    -------
    numpy.ndarray, shape (out_height, out_width, channels), float32
        The resized image (not rounded), as Keras would feed it to a model.
    """
    img = np.asarray(image, dtype=np.float32)
    if img.ndim != 3:
        raise ConfigError(f"expected a (height, width, channels) image, got shape {img.shape}")
    out_h, out_w = (size, size) if isinstance(size, (int, np.integer)) else size
    if out_h <= 0 or out_w <= 0:
        raise ConfigError(f"size must be positive, got {size!r}")

    def axis_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        scale = np.float32(in_size / out_size)
        pos = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
        floor = np.floor(pos)
        lower = np.maximum(floor, 0).astype(np.intp)
        upper = np.minimum(np.ceil(pos), in_size - 1).astype(np.intp)
        return lower, upper, (pos - floor).astype(np.float32)

    y0, y1, wy = axis_weights(img.shape[0], out_h)
    x0, x1, wx = axis_weights(img.shape[1], out_w)
    wx = wx[np.newaxis, :, np.newaxis]
    wy = wy[:, np.newaxis, np.newaxis]
    top_left = img[y0][:, x0]
    top_right = img[y0][:, x1]
    bottom_left = img[y1][:, x0]
    bottom_right = img[y1][:, x1]
    top = top_left + (top_right - top_left) * wx
    bottom = bottom_left + (bottom_right - bottom_left) * wx
    return (top + (bottom - top) * wy).astype(np.float32)


def _to_model_input(rgb: np.ndarray, size: int) -> np.ndarray:
    if not isinstance(size, (int, np.integer)) or size <= 0:
        raise ConfigError(f"size must be a positive integer, got {size!r}")
    resized = resize_like_keras(rgb, (int(size), int(size)))
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


def spectrogram_image_for_model(
    y: Any,
    *,
    sample_rate: int = _SAMPLE_RATE,
    size: int = 224,
    seconds: float | None = TUTORIAL_SECONDS,
) -> np.ndarray:
    """Render a signal's spectrogram image and prepare it as a Keras pipeline would.

    Parameters
    ----------
    y : array_like, shape (samples,)
        Mono audio signal (see :func:`render_spectrogram_image`).
    sample_rate : int, default 22050
        Sample rate of ``y``.
    size : int, default 224
        Side of the square model input.
    seconds : float or None, default 5.0
        Passed to :func:`render_spectrogram_image`.

    Returns
    -------
    numpy.ndarray, shape (size, size, 3), uint8
        The render with its alpha channel dropped and resized like
        ``image_dataset_from_directory(image_size=(size, size))`` (bilinear,
        half-pixel centres, no antialiasing), rounded to uint8.  Identical to
        ``load_spectrogram_image`` on the PNG of the same render.
    """
    rgba = render_spectrogram_image(y, sample_rate=sample_rate, seconds=seconds)
    return _to_model_input(rgba[..., :3], size)


def load_spectrogram_image(path: str | os.PathLike[str], *, size: int = 224) -> np.ndarray:
    """Read a stored spectrogram image (PNG, WebP, ...) as a Keras pipeline would.

    Parameters
    ----------
    path : str or os.PathLike
        Image file, e.g. ``spectrograms/blues/blues00000.webp`` or the Kaggle
        ``images_original/blues/blues00000.png``.
    size : int, default 224
        Side of the square model input.

    Returns
    -------
    numpy.ndarray, shape (size, size, 3), uint8
        Decoded to RGB (alpha dropped, not composited, like
        ``tf.io.decode_image(channels=3)``; grey images are replicated to
        three channels), then resized like :func:`spectrogram_image_for_model`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    PIL.UnidentifiedImageError
        If the file is not an image Pillow can decode.
    """
    from PIL import Image

    with Image.open(path) as im:
        if im.mode not in ("RGB", "RGBA", "L", "LA", "P", "PA"):
            im = im.convert("RGBA")
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return _to_model_input(rgb, size)
