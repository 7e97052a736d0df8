"""The feature kinds a model can see, each registered once: how its input is computed, its shape, its
picture and the GTZAN material it trains from.

Everything that depends on the kind asks :func:`feature_kind` instead of testing
``config.feature`` itself: :attr:`FeatureConfig.input_shape <codeFeature.config.FeatureConfig.input_shape>`,
:func:`codeFeature.features.segment_features`, the "what the model sees" picture
(:func:`codeFeature.plots.model_input`) and training's choice of data. A new kind is one more entry
in :data:`KINDS` and its compute function in :mod:`codeFeature.features`.

This module imports nothing heavy, so that :mod:`codeFeature.config` can validate and shape a
configuration without librosa: a kind names its compute function, found in :mod:`codeFeature.features`
on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional

from .errors import ConfigError

if TYPE_CHECKING:  # annotations only: config imports this module
    import numpy as np

    from .config import FeatureConfig


@dataclass(frozen=True)
class Picture:
    """How "what the model sees" is drawn: a title, the label of the rows and a colour map."""

    title: str
    rows: str
    cmap: str


@dataclass(frozen=True)
class FeatureKind:
    """One feature kind.

    Attributes
    ----------
    name : str
        The ``FeatureConfig.feature`` value.
    input_shape : callable(FeatureConfig) -> tuple of int
        One segment's input, without the batch axis.
    compute_name : str
        The function of :mod:`codeFeature.features` that turns ``(n_segments, segment_samples)``
        float32 segments into ``(n_segments, *input_shape)`` float32 inputs (see :meth:`compute`).
    picture : callable(FeatureConfig, int) -> Picture, or None
        How the input is drawn, given the config and the number of rows per frame; ``None`` for
        inputs that are not a time-frequency picture.
    training_data : str
        The GTZAN material a model of this kind trains from: ``"audio"`` (the tracks), ``"table"``
        (the Kaggle feature CSVs) or ``"images"`` (the Kaggle spectrogram pictures).
    normalization : callable(FeatureConfig) -> str
        How the model normalises its input, as training writes it into the manifest.
    """

    name: str
    input_shape: Callable[["FeatureConfig"], tuple[int, ...]]
    compute_name: str
    picture: Optional[Callable[["FeatureConfig", int], Picture]]
    training_data: str
    normalization: Callable[["FeatureConfig"], str]

    def compute(self, segments: "np.ndarray", config: "FeatureConfig") -> "np.ndarray":
        """The model input of ``segments`` (``(n, segment_samples)`` float32) as ``(n, *input_shape)``
        float32; prefer :func:`codeFeature.features.segment_features`, which checks the shape and
        runs BLAS on one thread."""
        compute = getattr(importlib.import_module("codeFeature.features"), self.compute_name)
        return compute(segments, config)


def _mfcc_picture(config: "FeatureConfig", rows: int) -> Picture:
    extras = (f" and {rows - config.n_mfcc} extra rows ({', '.join(config.extras)})" if config.extras else "")
    return Picture(f"What the model sees: {config.n_mfcc}-coefficient MFCC{extras}, "
                   f"{config.hop_length / config.sample_rate * 1000:.0f} ms frames", "coefficient", "coolwarm")


def _mfcc_normalization(config: "FeatureConfig") -> str:
    if config.extra_rows:
        return ("in the model: Normalization layers adapted on the training segments, one mean and variance for "
                "the MFCC rows and one per row for the extra rows")
    return _PLAIN_NORMALIZATION


_PLAIN_NORMALIZATION = "in the model: a Normalization layer adapted on the training segments"

#: Every feature kind, by name, in the order :data:`codeFeature.config.FEATURE_KINDS` lists them.
KINDS: dict[str, FeatureKind] = {kind.name: kind for kind in (
    FeatureKind(
        name="mfcc",
        input_shape=lambda c: (c.frames_per_segment, c.mfcc_rows + c.extra_rows, 1),
        compute_name="mfcc_input",
        picture=_mfcc_picture,
        training_data="audio",
        normalization=_mfcc_normalization,
    ),
    FeatureKind(
        name="logmel",
        input_shape=lambda c: (c.frames_per_segment, c.n_mels, 1),
        compute_name="logmel_input",
        picture=lambda c, rows: Picture(f"What the model sees: {rows}-band log-mel (dB)", "mel band", "viridis"),
        training_data="audio",
        normalization=lambda c: _PLAIN_NORMALIZATION,
    ),
    FeatureKind(
        name="musicnn_logmel",
        # musicnn's patches: the original cuts 3 s at 16 kHz into 187 frames
        input_shape=lambda c: (c.musicnn_frames, c.n_mels),
        compute_name="musicnn_input",
        picture=lambda c, rows: Picture(f"What the model sees: musicnn's {rows}-band log-mel, log10(1 + 10000·mel)",
                                        "mel band", "viridis"),
        training_data="audio",
        normalization=lambda c: _PLAIN_NORMALIZATION,
    ),
    FeatureKind(
        name="gtzan57",
        input_shape=lambda c: (57,),
        compute_name="gtzan57_input",
        picture=None,  # 57 summary numbers per segment, not a time-frequency picture
        training_data="table",
        normalization=lambda c: "in the model: a per-feature Normalization layer adapted on the training rows",
    ),
    FeatureKind(
        name="spectrogram_image",
        input_shape=lambda c: (c.image_size, c.image_size, 3),
        compute_name="spectrogram_image_input",
        picture=None,  # an RGB picture already, drawn by the tutorial's own recipe
        training_data="images",
        normalization=lambda c: "in the model: Rescaling / the architecture's own preprocessing, on 0-255 RGB pixels",
    ),
)}


def feature_kind(name: str) -> FeatureKind:
    """The registered kind called ``name``.

    Raises
    ------
    ConfigError
        If no kind has that name.
    """
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(f"feature={name!r} is not supported; use one of {', '.join(KINDS)}") from None
