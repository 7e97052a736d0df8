"""A Keras 3 port of musicnn (Pons & Serra, 2019), the pretrained music auto-tagger.

musicnn is a CNN for music audio tagging: a musically motivated front end
(vertical "timbral" filters and horizontal "temporal" filters over a log-mel
patch), a 1-D residual mid end and a pooled dense back end. The original
package (``musicnn`` 0.1.0, ISC licence, see ``models/LICENSE-musicnn.txt``)
ships TF1 checkpoints; ``training/convert_musicnn.py`` turns its ``MSD_musicnn``
and ``MTT_musicnn`` checkpoints into model folders (``models/musicnn_msd``,
``models/musicnn_mtt``) built by :func:`build_musicnn`.

This module does no I/O; it only defines the preprocessing, the architecture and
the tag vocabularies (a loaded model's embeddings: :func:`codeFeature.model_io.embedding_forward`).

References
----------
J. Pons and X. Serra, "musicnn: pre-trained convolutional neural networks for
music audio tagging", ISMIR late-breaking demo, 2019.
https://github.com/jordipons/musicnn
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

# musicnn's signal constants belong to the feature configuration (codeFeature.config); named here too
from .config import MUSICNN_FRAMES, MUSICNN_HOP, MUSICNN_N_FFT, MUSICNN_N_MELS, MUSICNN_SAMPLE_RATE  # noqa: F401
from .errors import ConfigError

#: Million Song Dataset tags, in the order of ``musicnn/configuration.py`` (``MSD_LABELS``).
MSD_TAGS: tuple[str, ...] = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists", "classic rock",
    "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s", "chill", "instrumental",
    "punk", "oldies", "blues", "hard rock", "ambient", "acoustic", "experimental", "female vocalist",
    "guitar", "Hip-Hop", "70s", "party", "country", "easy listening", "sexy", "catchy", "funk",
    "electro", "heavy metal", "Progressive rock", "60s", "rnb", "indie pop", "sad", "House", "happy",
)

#: MagnaTagATune tags, in the order of ``musicnn/configuration.py`` (``MTT_LABELS``).
MTT_TAGS: tuple[str, ...] = (
    "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock", "fast",
    "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian", "opera", "male",
    "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet", "flute", "woman", "male vocal",
    "no vocal", "pop", "soft", "sitar", "solo", "man", "classic", "choir", "voice", "new age", "dance",
    "male voice", "female vocal", "beats", "harp", "cello", "no voice", "weird", "country", "metal",
    "female voice", "choral",
)

#: The front end's blocks: convolution, max over frequency, sign, ReLU, batch norm (see :func:`build_musicnn`).
FRONTEND_BLOCKS: tuple[str, ...] = ("timbral_74", "timbral_77", "temporal_128", "temporal_64", "temporal_32")

#: Layers that may compute in bfloat16 (the manifest's ``bfloat16_layers``, see
#: :func:`codeFeature.model_io.load_model`): the two timbral convolutions, 1.14 G of musicnn's 1.40 G
#: multiply-adds a segment, and the max over frequency of their outputs. The temporal convolutions
#: stay in float32: their 128-, 64- and 32-tap kernels are slower in bfloat16 on oneDNN.
BFLOAT16_LAYERS: tuple[str, ...] = tuple(f"{block}_{part}" for block in FRONTEND_BLOCKS
                                         if block.startswith("timbral") for part in ("conv", "pool", "squeeze"))

#: Layers :func:`embedding_model` can expose (``"pooled"`` is mean_pool ++ max_pool).
EMBEDDING_LAYERS: tuple[str, ...] = ("penultimate", "mean_pool", "max_pool", "pooled")

#: One-line statement of :func:`musicnn_logmel`, written into model manifests.
PREPROCESSING = (
    "per 3 s segment at 16 kHz: librosa.feature.melspectrogram(sr=16000, n_fft=512, hop_length=256, "
    "n_mels=96, center=True, pad_mode='constant', power=2, slaney mel filters), then "
    "log10(10000 * mel + 1) in float32, first 187 frames, shape (187, 96). The original casts the mel "
    "to float16 first (so its log-mel is float16 too); the port does not: the cast only rounds "
    "(<= 2e-3 change in the log-mel, one float16 step) but overflows to inf where mel > 6.55, "
    "and inf patches drive the original network to a fixed taggram whatever the music"
)


def musicnn_logmel(segments: np.ndarray, *, sample_rate: int = MUSICNN_SAMPLE_RATE) -> np.ndarray:
    """musicnn's input patches: log-compressed mel spectrograms of 3 s segments.

    The same computation as ``musicnn.extractor.batch_data`` (librosa mel
    spectrogram, ``log10(10000 * mel + 1)``, 187-frame patches), done per segment
    and vectorised: one librosa call over the whole ``(n, samples)`` batch.

    Preprocessing decision: the original casts the mel spectrogram to float16
    before the log (and numpy then keeps the log-mel in float16); this port stays
    in float32. Where the original is finite the two differ only by that
    rounding, at most one float16 step of the log-mel (2**-10 relative, ~2e-3 at
    the typical maximum of 4-5), which moves tag scores by ~1e-4. But in
    float16 ``10000 * mel`` overflows to ``inf`` once a mel bin exceeds 6.55 (a
    sine of amplitude ~0.12 is enough), and patches holding ``inf`` saturate the
    network: in the original, a loud sine and loud noise get the very same
    taggram. Copying the cast would copy that failure on loud music. The centre padding is pinned to ``pad_mode="constant"`` (librosa >=
    0.10's default, which the original gets today; librosa 0.7 reflected) so the
    result does not depend on the librosa version; only frame 0 is affected. The
    Hann window is given in float32 (:func:`_hann_window`): librosa's own is
    float64, which turns the whole STFT into float64 for a float32 signal; in
    float32 it costs 30 % less and the log-mel moves by at most ~1e-5.

    Parameters
    ----------
    segments : np.ndarray, shape (n, samples) or (samples,)
        Mono audio at 16 kHz, float; 3 s segments are 48000 samples. A 1-D array
        is one segment.
    sample_rate : int
        Rate of ``segments``; must be 16000 (the rate the models were trained at;
        resample before calling).

    Returns
    -------
    np.ndarray, shape (n, 187, 96), float32
        Time-major patches; segments shorter than 187 frames are padded with 0
        (the log-mel of silence), longer ones are truncated.

    Raises
    ------
    ConfigError
        If ``sample_rate`` is not 16000 or ``segments`` is not 1-D or 2-D.
    """
    import librosa

    if sample_rate != MUSICNN_SAMPLE_RATE:
        raise ConfigError(f"musicnn needs audio at {MUSICNN_SAMPLE_RATE} Hz, got sample_rate={sample_rate}; "
                          "resample first")
    segments = np.asarray(segments, dtype=np.float32)
    if segments.ndim == 1:
        segments = segments[None, :]
    if segments.ndim != 2:
        raise ConfigError(f"segments must have shape (n, samples), got {segments.shape}")
    if segments.shape[0] == 0:
        return np.zeros((0, MUSICNN_FRAMES, MUSICNN_N_MELS), np.float32)
    mel = librosa.feature.melspectrogram(y=segments, sr=MUSICNN_SAMPLE_RATE, n_fft=MUSICNN_N_FFT,
                                         hop_length=MUSICNN_HOP, n_mels=MUSICNN_N_MELS,
                                         center=True, pad_mode="constant", window=_hann_window())
    logmel = np.log10(np.float32(10000) * mel + np.float32(1))  # (n, mels, frames)
    # a 3 s segment has 188 centred frames; the original keeps the first 187
    logmel = logmel[:, :, :MUSICNN_FRAMES]
    short = MUSICNN_FRAMES - logmel.shape[2]
    if short > 0:
        logmel = np.pad(logmel, ((0, 0), (0, 0), (0, short)))
    return np.ascontiguousarray(np.swapaxes(logmel, 1, 2), dtype=np.float32)


@functools.lru_cache(maxsize=1)
def _hann_window() -> np.ndarray:
    """librosa's default STFT window for musicnn (periodic Hann, ``n_fft`` points), in float32."""
    import librosa

    window = librosa.filters.get_window("hann", MUSICNN_N_FFT, fftbins=True).astype(np.float32)
    window.flags.writeable = False
    return window


def build_musicnn(num_tags: int = 50, *, n_frames: int = MUSICNN_FRAMES, n_mels: int = MUSICNN_N_MELS,
                  frontend_scale: float = 1.6, midend_filters: int = 64, backend_units: int = 200,
                  name: str = "musicnn") -> Any:
    """The musicnn tagger (``MSD_musicnn`` / ``MTT_musicnn``) with built-in Keras layers only.

    Mirrors ``build_musicnn`` in the original ``musicnn/models.py`` op for op,
    so the TF1 checkpoints map onto it weight for weight:

    * front end: batch norm of the input, then two timbral blocks (7 x 38 and
      7 x 67 filters, time-padded by 3, valid) and three temporal blocks (128,
      64 and 32 x 1 filters, ``same``), each conv + ReLU -> batch norm -> max
      over frequency; concatenated to 561 channels per frame. The port computes
      each block in an equivalent, cheaper order (:func:`fold_frontend_signs`):
      conv -> max over frequency -> per-channel sign (``<block>_sign``) and
      ReLU -> batch norm, so the batch norm runs on one value per frame and
      channel instead of on every frequency bin;
    * mid end: three 7-tap convolutions over time with 64 filters (zero-padded
      by 3, ReLU then batch norm), the 2nd and 3rd with residual additions; the
      front- and mid-end outputs are concatenated (753 channels);
    * back end: max and mean over time, interleaved per channel exactly as the
      original's ``flatten(concat([max, mean], 2))``, batch norm, dropout,
      200-unit ReLU dense, batch norm (``penultimate``), dropout and a sigmoid
      dense (``taggram``).

    The converter fills the ``<block>_sign`` layers and folds the signs into
    the convolutions with :func:`fold_frontend_signs`. Batch norms use the TF1
    defaults, which Keras shares (epsilon 1e-3, momentum 0.99). The original's 2-D convolutions whose kernel spans the whole
    feature axis are written here as ``Conv1D`` (the converter reshapes their
    kernels).

    Parameters
    ----------
    num_tags : int
        Sigmoid outputs (50 for both pretrained models).
    n_frames, n_mels : int
        Input patch shape; the pretrained models use (187, 96).
    frontend_scale : float
        Front-end width factor (the original's ``num_filt=1.6``: 204 timbral
        and 51 temporal filters per block).
    midend_filters : int
        Mid-end filters (64; 512 for the unreleased ``MSD_musicnn_big``).
    backend_units : int
        Penultimate dense units (200; 500 for ``MSD_musicnn_big``).
    name : str
        The model's name.

    Returns
    -------
    keras.Model
        Input ``(n_frames, n_mels)``, output the taggram ``(num_tags,)``. Named
        layers: ``mean_pool``, ``max_pool``, ``penultimate``, ``taggram``.
    """
    import keras
    from keras import layers

    def bn(layer_name: str):
        return layers.BatchNormalization(axis=-1, momentum=0.99, epsilon=1e-3, name=layer_name)

    def pooled_over_freq(x, block: str):
        # the original's conv + ReLU -> batch norm -> max over frequency, reordered exactly (see
        # fold_frontend_signs): max over frequency of the sign-folded conv, then sign, ReLU, batch norm
        width, channels = int(x.shape[2]), int(x.shape[3])
        x = layers.MaxPooling2D(pool_size=(1, width), name=f"{block}_pool")(x)
        x = layers.Reshape((n_frames, channels), name=f"{block}_squeeze")(x)
        x = layers.DepthwiseConv1D(1, use_bias=False, activation="relu", name=f"{block}_sign")(x)
        return bn(f"{block}_bn")(x)

    inputs = keras.Input(shape=(n_frames, n_mels), name="logmel")
    x = layers.Reshape((n_frames, n_mels, 1), name="expand")(inputs)
    x = bn("input_bn")(x)

    # timbral blocks: time padded by 3 so 7-frame filters keep 187 frames; frequency is valid
    padded = layers.ZeroPadding2D(padding=((3, 3), (0, 0)), name="timbral_pad")(x)
    timbral_filters = int(frontend_scale * 128)
    frontend = []
    for block, fraction in (("timbral_74", 0.4), ("timbral_77", 0.7)):
        conv = layers.Conv2D(timbral_filters, (7, int(fraction * n_mels)), padding="valid",
                             name=f"{block}_conv")(padded)
        frontend.append(pooled_over_freq(conv, block))

    # temporal blocks: 'same' padding, which for even kernels pads one more frame after than before, as TF1 did
    temporal_filters = int(frontend_scale * 32)
    for length in (128, 64, 32):
        block = f"temporal_{length}"
        conv = layers.Conv2D(temporal_filters, (length, 1), padding="same", name=f"{block}_conv")(x)
        frontend.append(pooled_over_freq(conv, block))
    frontend_features = layers.Concatenate(axis=-1, name="frontend")(frontend)

    # mid end: 1-D convolutions over time with residual connections
    midend = [frontend_features]
    h = frontend_features
    for i in (1, 2, 3):
        y = layers.ZeroPadding1D(padding=3, name=f"midend{i}_pad")(h)
        y = layers.Conv1D(midend_filters, 7, padding="valid", activation="relu", name=f"midend{i}_conv")(y)
        y = bn(f"midend{i}_bn")(y)
        h = y if i == 1 else layers.Add(name=f"midend{i}_res")([y, h])
        midend.append(h)
    midend_features = layers.Concatenate(axis=-1, name="midend")(midend)
    channels = int(midend_features.shape[-1])

    # back end: the original flattens concat([max, mean], axis=2) of shape (channels, 2),
    # so its dense input interleaves max_0, mean_0, max_1, mean_1, ...
    max_pool = layers.GlobalMaxPooling1D(name="max_pool")(midend_features)
    mean_pool = layers.GlobalAveragePooling1D(name="mean_pool")(midend_features)
    stacked = layers.Concatenate(axis=-1, name="pool_stack")([
        layers.Reshape((channels, 1), name="max_pool_column")(max_pool),
        layers.Reshape((channels, 1), name="mean_pool_column")(mean_pool),
    ])
    flat = layers.Flatten(name="pool_flat")(stacked)
    flat = bn("pool_bn")(flat)
    flat = layers.Dropout(0.5, name="pool_dropout")(flat)
    dense = layers.Dense(backend_units, activation="relu", name="dense")(flat)
    penultimate = bn("penultimate")(dense)
    dropped = layers.Dropout(0.5, name="penultimate_dropout")(penultimate)
    taggram = layers.Dense(num_tags, activation="sigmoid", name="taggram")(dropped)
    return keras.Model(inputs, taggram, name=name)


def fold_frontend_signs(kernel: np.ndarray, bias: np.ndarray, gamma: np.ndarray, moving_variance: np.ndarray,
                        epsilon: float = 1e-3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights for one front-end block of :func:`build_musicnn` from the original's.

    The original computes ``max_f BN(relu(z))`` over frequency bins ``f``, with ``z`` the
    convolution's output. Batch norm is an affine map per channel, increasing where its scale
    ``gamma / sqrt(moving_variance + epsilon)`` is positive and decreasing where it is negative, and
    ReLU is increasing, so ``max_f BN(relu(z)) = BN(relu(max_f z))`` for an increasing channel and
    ``BN(relu(min_f z))`` for a decreasing one. With ``s = +1`` or ``-1`` by the scale's sign,
    ``min_f z = s * max_f (s * z)``: the port convolves with ``s * kernel`` and ``s * bias``, takes
    the max over frequency, multiplies by ``s`` (``<block>_sign``), applies ReLU, then batch norm.
    Every step after the convolution is monotone, so it commutes with the max exactly in floating
    point too; only the convolution's own rounding can differ (oneDNN may sum the sign-folded kernel in
    another order): the shipped models differ from the original order by at most 1.2e-7, at a fraction
    of the cost (batch norm over 187 values a channel instead of 187 x 59).

    Parameters
    ----------
    kernel : np.ndarray, shape (..., channels)
        The block's convolution kernel.
    bias : np.ndarray, shape (channels,)
        Its bias.
    gamma, moving_variance : np.ndarray, shape (channels,)
        The block's batch-norm scale and moving variance.
    epsilon : float
        The batch norm's epsilon (TF1's default, 1e-3).

    Returns
    -------
    kernel, bias, signs : np.ndarray
        The sign-folded kernel and bias, and the ``<block>_sign`` layer's depthwise kernel,
        shape (1, channels, 1).
    """
    signs = np.where(np.asarray(gamma) / np.sqrt(np.asarray(moving_variance) + epsilon) < 0, -1.0, 1.0)
    signs = signs.astype(np.float32)
    return (np.asarray(kernel, np.float32) * signs, np.asarray(bias, np.float32) * signs,
            signs.reshape(1, -1, 1))


def embedding_model(tagger: Any, layer: str = "penultimate") -> Any:
    """A model giving one of the tagger's inner representations instead of tags.

    Parameters
    ----------
    tagger : keras.Model
        A model from :func:`build_musicnn` (or loaded from a musicnn model folder).
    layer : str
        ``"penultimate"`` (200 values, the original's ``penultimate`` feature),
        ``"mean_pool"`` or ``"max_pool"`` (753 each), or ``"pooled"`` (mean_pool
        followed by max_pool, 1506).

    Returns
    -------
    keras.Model
        Same input as ``tagger``; shares its weights.

    Raises
    ------
    ConfigError
        If ``layer`` is not one of :data:`EMBEDDING_LAYERS`.
    """
    import keras

    if layer not in EMBEDDING_LAYERS:
        raise ConfigError(f"layer={layer!r} is not a musicnn embedding; use one of {', '.join(EMBEDDING_LAYERS)}")
    if layer == "pooled":
        output = keras.layers.Concatenate(axis=-1, name="pooled")(
            [tagger.get_layer("mean_pool").output, tagger.get_layer("max_pool").output])
    else:
        output = tagger.get_layer(layer).output
    return keras.Model(tagger.inputs, output, name=f"{tagger.name}_{layer}")
