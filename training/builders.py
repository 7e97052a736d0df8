"""One builder per model of the original designs; every one returns an uncompiled Keras model.

Builders only use built-in layers, so the JSON architecture loads in Keras safe mode.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Callable

from codeFeature.config import GENRES, FeatureConfig


class _OnFirstUse:
    """A module imported when one of its names is first used: ``SPECS`` (the parser's choices, the data
    checks) is needed seconds before TensorFlow is, and a command that only says the data is missing
    should not wait for it."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self._name), attr)


keras = _OnFirstUse("keras")
layers = _OnFirstUse("keras.layers")


@dataclass(frozen=True)
class Spec:
    """What a model name means: its builder, its feature config, a one-line description, and how it trains.

    ``data`` names the default training data: ``"audio"`` (the shared full tracks and excerpts),
    ``"csv30"`` / ``"csv3"`` (the Kaggle feature tables) or ``"images"`` (the spectrogram images).
    """

    build: Callable[..., keras.Model]
    config: FeatureConfig
    description: str
    data: str = "audio"
    batch_size: int = 32
    epochs: int = 200
    patience: int = 30
    arch: str | None = None  # transfer learning: the keras.applications class


def _batch_norm():
    # Keras' default momentum (0.99) needs thousands of steps for the moving statistics to
    # settle; with GTZAN's few hundred segments they lag far behind and inference collapses.
    return layers.BatchNormalization(momentum=0.9)


def _inputs(shape, normalizer_data, axis=None, plain_rows=None):
    """The input and its standardisation, adapted on ``normalizer_data`` (the training inputs).

    With ``plain_rows`` (MFCC models with extra features: ``FeatureConfig.mfcc_rows``), the first
    ``plain_rows`` coefficients (the MFCC) keep the plain models' one mean and variance, and the rows
    after them (spectral contrast, tonnetz) get one mean and variance per row: their scales differ from
    the MFCC's by orders of magnitude (tonnetz varies by about 0.1, MFCC by about 100), so one shared
    scale would make them invisible. Built from Cropping2D / Concatenate, so it loads in safe mode.
    """
    inputs = keras.Input(shape=shape, name="features")
    norm = layers.Normalization(axis=axis, name="standardise")
    if plain_rows is not None and plain_rows < shape[1]:
        extra = shape[1] - plain_rows
        plain = layers.Cropping2D(((0, 0), (0, extra)), name="mfcc_rows")(inputs)
        rest = layers.Cropping2D(((0, 0), (plain_rows, 0)), name="extra_rows")(inputs)
        rest_norm = layers.Normalization(axis=2, name="standardise_extras")
        if normalizer_data is not None:
            norm.adapt(normalizer_data[:, :, :plain_rows])
            rest_norm.adapt(normalizer_data[:, :, plain_rows:])
        return inputs, layers.Concatenate(axis=2, name="features_standardised")([norm(plain), rest_norm(rest)])
    if normalizer_data is not None:
        # one mean and variance over all coefficients: keeps the coefficients' relative scale
        norm.adapt(normalizer_data)
    return inputs, norm(inputs)


def cnn_mfcc_small(shape, n_out, normalizer_data=None, plain_rows=None):
    """The original design's CNN on MFCC: Conv2D 64/32/32/16, MaxPool2D, BatchNorm, Dense 64 (about 33 k weights)."""
    inputs, x = _inputs(shape, normalizer_data, plain_rows=plain_rows)
    for filters, kernel, pool in ((64, 3, 3), (32, 3, 3), (32, 2, 2), (16, 1, 1)):
        x = layers.Conv2D(filters, kernel, activation="relu")(x)
        x = layers.MaxPooling2D(pool, strides=2, padding="same")(x)
        x = _batch_norm()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(n_out, activation="softmax", name="genre")(x)
    return keras.Model(inputs, outputs, name="cnn_mfcc_small")


def cnn_mfcc(shape, n_out, normalizer_data=None, plain_rows=None):
    """The tutorial CNN on MFCC: Conv2D 32/32/32, MaxPool2D, BatchNorm, Dense 64 (about 45 k weights)."""
    inputs, x = _inputs(shape, normalizer_data, plain_rows=plain_rows)
    for kernel, pool in ((3, 3), (3, 3), (2, 2)):
        x = layers.Conv2D(32, kernel, activation="relu")(x)
        x = layers.MaxPooling2D(pool, strides=2, padding="same")(x)
        x = _batch_norm()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(n_out, activation="softmax", name="genre")(x)
    return keras.Model(inputs, outputs, name="cnn_mfcc")


def ann_mfcc(shape, n_out, normalizer_data=None, plain_rows=None):
    """Dense 512-256-64 with Dropout on the flattened MFCC (1690 values)."""
    inputs, x = _inputs(shape, normalizer_data, plain_rows=plain_rows)
    x = layers.Flatten()(x)
    for units in (512, 256, 64):
        x = layers.Dense(units, activation="relu")(x)
        x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(n_out, activation="softmax", name="genre")(x)
    return keras.Model(inputs, outputs, name="ann_mfcc")


def lstm_mfcc(shape, n_out, normalizer_data=None, plain_rows=None):
    """LSTM 64 (sequences) -> LSTM 64 -> Dense 64 -> Dropout -> softmax, over MFCC frames."""
    inputs, x = _inputs(shape, normalizer_data, plain_rows=plain_rows)
    x = layers.Reshape(shape[:2])(x)
    x = layers.LSTM(64, return_sequences=True)(x)
    x = layers.LSTM(64)(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(n_out, activation="softmax", name="genre")(x)
    return keras.Model(inputs, outputs, name="lstm_mfcc")


def ann_features(shape, n_out, normalizer_data=None):
    """The original feature ANN: per-feature standardisation (inside the model), Dense 512-256-128-64 with
    Dropout(0.2), ReLU, softmax."""
    # axis=-1: one mean and variance per feature, as sklearn's StandardScaler in the original notebooks
    inputs, x = _inputs(shape, normalizer_data, axis=-1)
    for units in (512, 256, 128, 64):
        x = layers.Dense(units, activation="relu")(x)
        x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(n_out, activation="softmax", name="genre")(x)
    return keras.Model(inputs, outputs, name="ann_features")


def cnn_spectrogram(shape, n_out, normalizer_data=None):
    """The image CNN of the original design: Rescaling(1/255), Conv2D 16/32/64 (kernel 3) + MaxPool2D, Dense 128."""
    inputs = keras.Input(shape=shape, name="image")
    x = layers.Rescaling(1.0 / 255)(inputs)
    for filters in (16, 32, 64):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.2)(x)
    x = layers.Dense(128, activation="relu")(x)
    outputs = layers.Dense(n_out, activation="softmax", name="genre")(x)
    return keras.Model(inputs, outputs, name="cnn_spectrogram")


# ----------------------------------------------------------------------------------- transfer learning

#: name -> (keras.applications class, input side, preprocessing mode, ImageNet "notop" weight file)
TL_ARCHS = {
    "vgg16": ("VGG16", 224, "caffe", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "vgg19": ("VGG19", 224, "caffe", "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "resnet50": ("ResNet50", 224, "caffe", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "densenet121": ("DenseNet121", 224, "torch", "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "inceptionv3": ("InceptionV3", 299, "tf", "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "mobilenetv2": ("MobileNetV2", 224, "tf", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"),
    "efficientnetb0": ("EfficientNetB0", 224, "none", "efficientnetb0_notop.h5"),
}


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights could not be loaded (offline, and not in the Keras cache)."""


def _preprocess(mode: str) -> layers.Layer:
    """The architecture's ``preprocess_input`` as a frozen per-pixel affine map (a built-in Dense layer).

    ``caffe``: RGB -> BGR and ImageNet mean subtraction; ``tf``: scale to [-1, 1]; ``torch``: scale to
    [0, 1] and standardise with the ImageNet mean and std; ``none``: the model rescales itself (EfficientNet).
    """
    import numpy as np

    if mode == "caffe":
        kernel, bias = np.eye(3)[:, ::-1], -np.array([103.939, 116.779, 123.68])
    elif mode == "tf":
        kernel, bias = np.eye(3) / 127.5, -np.ones(3)
    elif mode == "torch":
        mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
        kernel, bias = np.diag(1 / (255 * std)), -mean / std
    else:
        kernel, bias = np.eye(3), np.zeros(3)
    layer = layers.Dense(3, name="preprocess", trainable=False)
    layer.build((None, 3))
    layer.set_weights([kernel.astype("float32"), bias.astype("float32")])
    return layer


def tl_base(arch: str, shape, weights: str | None = "imagenet") -> keras.Model:
    """Preprocessing + the convolutional base of ``arch`` with global average pooling: image -> embedding.

    Raises
    ------
    WeightsUnavailableError
        If ``weights="imagenet"`` and the weight file can be neither found in the Keras cache nor downloaded.
    """
    cls_name, _, mode, weight_file = TL_ARCHS[arch]
    cls = getattr(keras.applications, cls_name)
    try:
        base = cls(include_top=False, weights=weights, input_shape=tuple(shape), pooling="avg")
    except Exception as exc:  # get_file raises URLError / HTTPError / OSError / Exception when offline
        if weights is None:
            raise
        raise WeightsUnavailableError(
            f"could not load the ImageNet weights of {cls_name}: the file {weight_file} is not in the Keras cache "
            f"(~/.keras/models/) and downloading it failed ({type(exc).__name__}: {exc}). Connect to the internet "
            f"once, or copy {weight_file} into ~/.keras/models/, or train from scratch with --weights none"
        ) from exc
    base.trainable = False
    inputs = keras.Input(shape=tuple(shape), name="image")
    embedding = base(_preprocess(mode)(inputs))
    return keras.Model(inputs, embedding, name=f"{arch}_base")


def tl_head(dim: int, n_out: int) -> keras.Model:
    """The new head trained on the base's pooled embedding: Dropout(0.2) + Dense softmax."""
    inputs = keras.Input(shape=(dim,), name="embedding")
    x = layers.Dropout(0.2)(inputs)
    outputs = layers.Dense(n_out, activation="softmax", name="genre")(x)
    return keras.Model(inputs, outputs, name="head")


def tl_join(base: keras.Model, head: keras.Model, name: str) -> keras.Model:
    """One servable model: image -> base -> head."""
    inputs = keras.Input(shape=base.input_shape[1:], name="image")
    return keras.Model(inputs, head(base(inputs)), name=name)


def _tl_builder(arch: str):
    def build_tl(shape, n_out, normalizer_data=None, weights: str | None = "imagenet"):
        base = tl_base(arch, shape, weights)
        return tl_join(base, tl_head(int(base.output.shape[-1]), n_out), f"tl_{arch}")

    build_tl.__doc__ = f"{TL_ARCHS[arch][0]} base (ImageNet or from scratch) + Dense softmax head."
    return build_tl


MFCC = FeatureConfig()
#: the Kaggle 30 s features, served on 30 s windows
GTZAN57_30S = FeatureConfig(feature="gtzan57", segment_seconds=30.0)
#: the Kaggle 3 s features, served on 3 s segments with a vote
GTZAN57_3S = FeatureConfig(feature="gtzan57", segment_seconds=3.0)
#: the tutorial images are renders of the first 5 s of each track
IMAGE = FeatureConfig(feature="spectrogram_image", segment_seconds=5.0)

SPECS: dict[str, Spec] = {
    "cnn_mfcc_small": Spec(cnn_mfcc_small, MFCC, "CNN on 13-coefficient MFCC, Conv2D 64/32/32/16 (original design)"),
    "cnn_mfcc": Spec(cnn_mfcc, MFCC, "CNN on 13-coefficient MFCC, Conv2D 32/32/32"),
    "ann_mfcc": Spec(ann_mfcc, MFCC, "Dense 512-256-64 on flattened 13-coefficient MFCC"),
    "lstm_mfcc": Spec(lstm_mfcc, MFCC, "Two-layer LSTM on 13-coefficient MFCC frames"),
    "ann_features": Spec(ann_features, GTZAN57_30S, "Dense 512-256-128-64 on the 57 standardised GTZAN features of "
                         "a 30 s window (Kaggle features_30_sec.csv)", data="csv30", batch_size=128, epochs=600,
                         patience=60),
    "ann_features_3s": Spec(ann_features, GTZAN57_3S, "Dense 512-256-128-64 on the 57 standardised GTZAN features of "
                            "each 3 s segment (Kaggle features_3_sec.csv), voted per track", data="csv3",
                            batch_size=128, epochs=600, patience=60),
    "cnn_spectrogram": Spec(cnn_spectrogram, IMAGE, "CNN on 224x224 spectrogram images (tutorial rendering of 5 s), "
                            "Conv2D 16/32/64", data="images", epochs=60, patience=10),
}
for _arch, (_cls, _side, _mode, _file) in TL_ARCHS.items():
    SPECS[f"tl_{_arch}"] = Spec(_tl_builder(_arch), dataclasses.replace(IMAGE, image_size=_side),
                                f"{_cls} (ImageNet, frozen) + Dense head on {_side}x{_side} spectrogram images",
                                data="images", epochs=100, patience=15, arch=_arch)


def build(name: str, normalizer_data=None, *, config: FeatureConfig | None = None, **kwargs) -> keras.Model:
    """Build model ``name`` for its spec's (or ``config``'s) input shape and the ten GTZAN genres."""
    spec = SPECS[name]
    config = config or spec.config
    if config.feature == "mfcc" and config.extra_rows:
        kwargs.setdefault("plain_rows", config.mfcc_rows)
    return spec.build(config.input_shape, len(GENRES), normalizer_data, **kwargs)
