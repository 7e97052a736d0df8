"""One builder per model of the original designs; every one returns an uncompiled Keras model.

Builders only use built-in layers, so the JSON architecture loads in Keras safe mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
from keras import layers

from codeFeature.config import GENRES, FeatureConfig


@dataclass(frozen=True)
class Spec:
    """What a model name means: its builder, its feature config and a one-line description."""

    build: Callable[[tuple, int, object], keras.Model]
    config: FeatureConfig
    description: str


def _batch_norm():
    # Keras' default momentum (0.99) needs thousands of steps for the moving statistics to
    # settle; with GTZAN's few hundred segments they lag far behind and inference collapses.
    return layers.BatchNormalization(momentum=0.9)


def _inputs(shape, normalizer_data):
    inputs = keras.Input(shape=shape, name="features")
    norm = layers.Normalization(axis=None, name="standardise")
    if normalizer_data is not None:
        # one mean and variance over all coefficients: keeps the coefficients' relative scale
        norm.adapt(normalizer_data)
    return inputs, norm(inputs)


def cnn_mfcc_small(shape, n_out, normalizer_data=None):
    """The original design's CNN on MFCC: Conv2D 64/32/32/16, MaxPool2D, BatchNorm, Dense 64 (about 33 k weights)."""
    inputs, x = _inputs(shape, normalizer_data)
    for filters, kernel, pool in ((64, 3, 3), (32, 3, 3), (32, 2, 2), (16, 1, 1)):
        x = layers.Conv2D(filters, kernel, activation="relu")(x)
        x = layers.MaxPooling2D(pool, strides=2, padding="same")(x)
        x = _batch_norm()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(n_out, activation="softmax", name="genre")(x)
    return keras.Model(inputs, outputs, name="cnn_mfcc_small")


def cnn_mfcc(shape, n_out, normalizer_data=None):
    """The tutorial CNN on MFCC: Conv2D 32/32/32, MaxPool2D, BatchNorm, Dense 64 (about 45 k weights)."""
    inputs, x = _inputs(shape, normalizer_data)
    for kernel, pool in ((3, 3), (3, 3), (2, 2)):
        x = layers.Conv2D(32, kernel, activation="relu")(x)
        x = layers.MaxPooling2D(pool, strides=2, padding="same")(x)
        x = _batch_norm()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(n_out, activation="softmax", name="genre")(x)
    return keras.Model(inputs, outputs, name="cnn_mfcc")


def ann_mfcc(shape, n_out, normalizer_data=None):
    """Dense 512-256-64 with Dropout on the flattened MFCC (1690 values)."""
    inputs, x = _inputs(shape, normalizer_data)
    x = layers.Flatten()(x)
    for units in (512, 256, 64):
        x = layers.Dense(units, activation="relu")(x)
        x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(n_out, activation="softmax", name="genre")(x)
    return keras.Model(inputs, outputs, name="ann_mfcc")


def lstm_mfcc(shape, n_out, normalizer_data=None):
    """LSTM 64 (sequences) -> LSTM 64 -> Dense 64 -> Dropout -> softmax, over MFCC frames."""
    inputs, x = _inputs(shape, normalizer_data)
    x = layers.Reshape(shape[:2])(x)
    x = layers.LSTM(64, return_sequences=True)(x)
    x = layers.LSTM(64)(x)
    x = layers.Dense(64, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(n_out, activation="softmax", name="genre")(x)
    return keras.Model(inputs, outputs, name="lstm_mfcc")


MFCC = FeatureConfig()

SPECS: dict[str, Spec] = {
    "cnn_mfcc_small": Spec(cnn_mfcc_small, MFCC, "CNN on 13-coefficient MFCC, Conv2D 64/32/32/16 (original design)"),
    "cnn_mfcc": Spec(cnn_mfcc, MFCC, "CNN on 13-coefficient MFCC, Conv2D 32/32/32"),
    "ann_mfcc": Spec(ann_mfcc, MFCC, "Dense 512-256-64 on flattened 13-coefficient MFCC"),
    "lstm_mfcc": Spec(lstm_mfcc, MFCC, "Two-layer LSTM on 13-coefficient MFCC frames"),
}


def build(name: str, normalizer_data=None) -> keras.Model:
    """Build model ``name`` for its spec's input shape and the ten GTZAN genres."""
    spec = SPECS[name]
    return spec.build(spec.config.input_shape, len(GENRES), normalizer_data)
