"""Parity of the Keras 3 musicnn port with the original TF1 musicnn 0.1.0.

The reference numbers in ``tests/fixtures/musicnn_reference.npz`` come from the
original package's own code (``training/make_musicnn_reference.py``); the model
folders from ``training/convert_musicnn.py``. Everything here is offline.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from codeFeature.config import FeatureConfig
from codeFeature.errors import ConfigError
from codeFeature.model_io import load_model
from codeFeature.musicnn import (
    MSD_TAGS, MTT_TAGS, MUSICNN_FRAMES, MUSICNN_N_MELS, build_musicnn, embedding_forward, embedding_model,
    musicnn_logmel)

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "musicnn_reference.npz"
MODELS = {"msd": ("musicnn_msd", MSD_TAGS), "mtt": ("musicnn_mtt", MTT_TAGS)}
ATOL = 1e-4


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module", params=sorted(MODELS))
def tagger(request):
    folder, tags = MODELS[request.param]
    return request.param, load_model(REPO / "models" / folder), tags


def test_manifest(tagger):
    _, loaded, tags = tagger
    assert loaded.task == "tags"
    assert loaded.labels == tags
    assert loaded.config == FeatureConfig(feature="musicnn_logmel", sample_rate=16000, n_fft=512,
                                          hop_length=256, n_mels=96, segment_seconds=3.0)
    assert loaded.config.input_shape == (MUSICNN_FRAMES, MUSICNN_N_MELS)
    for key in ("preprocessing", "description", "source", "license", "reproduce"):
        assert loaded.manifest[key]
    assert len(loaded.manifest["source"]["wheel_sha256"]) == 64


def test_taggram_matches_original(tagger, reference):
    key, loaded, _ = tagger
    taggram = loaded.keras_model.predict(reference["patches"], verbose=0)
    np.testing.assert_allclose(taggram, reference[f"{key}_taggram"], rtol=0, atol=ATOL)


@pytest.mark.parametrize("layer", ["penultimate", "mean_pool", "max_pool"])
def test_embeddings_match_original(tagger, reference, layer):
    key, loaded, _ = tagger
    features = embedding_model(loaded.keras_model, layer).predict(reference["patches"], verbose=0)
    np.testing.assert_allclose(features, reference[f"{key}_{layer}"], rtol=0, atol=ATOL)


def test_the_fast_embedding_path_matches_original(tagger, reference):
    """embedding_forward: one traced graph in memory-bounded batches, for songs and training."""
    key, loaded, _ = tagger
    fast = embedding_forward(loaded, "penultimate")
    assert fast.forward_batch < len(reference["patches"])  # several batches, stitched in order
    np.testing.assert_allclose(fast.forward(reference["patches"])[0], reference[f"{key}_penultimate"],
                               rtol=0, atol=ATOL)
    assert loaded.forward(reference["patches"][:1])[0].shape == (1, 50)  # the tagger itself is untouched


def test_pooled_embedding_is_mean_then_max(tagger, reference):
    key, loaded, _ = tagger
    pooled = embedding_model(loaded.keras_model, "pooled").predict(reference["patches"], verbose=0)
    expected = np.concatenate([reference[f"{key}_mean_pool"], reference[f"{key}_max_pool"]], axis=1)
    np.testing.assert_allclose(pooled, expected, rtol=0, atol=ATOL)


def test_unknown_embedding_layer():
    with pytest.raises(ConfigError):
        embedding_model(build_musicnn(), "timbral")


def test_preprocessing_matches_original(reference):
    # the original rounds the mel, and then the log-mel itself, to float16; the port stays in
    # float32, so they differ by up to one float16 step of the log-mel (2**-10 relative) plus
    # the mel's rounding (<= 2.2e-4 after the log); 5e-4 leaves room for the float16 rounding of
    # 10000 * mel + 1 near 1
    audio = reference["audio_int16"].astype(np.float32) / 32768
    patches = musicnn_logmel(audio)
    np.testing.assert_allclose(patches, reference["patches"], rtol=2 ** -10, atol=5e-4)


def test_logmel_shape_and_dtype():
    rng = np.random.default_rng(0)
    segments = (0.1 * rng.standard_normal((3, 48000))).astype(np.float32)
    out = musicnn_logmel(segments)
    assert out.shape == (3, MUSICNN_FRAMES, MUSICNN_N_MELS)
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out)) and out.min() >= 0
    # segments are independent: the batch equals the segments one by one
    np.testing.assert_allclose(out[1], musicnn_logmel(segments[1])[0], rtol=1e-6, atol=1e-6)
    # loud input stays finite (the original's float16 cast overflows here)
    loud = np.sin(2 * np.pi * 440 * np.arange(48000) / 16000).astype(np.float32)
    assert np.all(np.isfinite(musicnn_logmel(loud[None])))


def test_logmel_pads_short_segments_and_checks_rate():
    out = musicnn_logmel(np.zeros((2, 16000), np.float32))
    assert out.shape == (2, MUSICNN_FRAMES, MUSICNN_N_MELS)
    assert not out.any()
    with pytest.raises(ConfigError):
        musicnn_logmel(np.zeros((1, 48000), np.float32), sample_rate=22050)


def test_build_musicnn_round_trips_through_json_in_safe_mode():
    import keras

    model = build_musicnn()
    assert model.input_shape == (None, MUSICNN_FRAMES, MUSICNN_N_MELS)
    assert model.output_shape == (None, 50)
    for name in ("mean_pool", "max_pool", "penultimate", "taggram"):
        model.get_layer(name)
    rebuilt = keras.saving.deserialize_keras_object(json.loads(model.to_json()), safe_mode=True)
    rebuilt.set_weights(model.get_weights())
    x = np.random.default_rng(1).uniform(0, 3, (2, MUSICNN_FRAMES, MUSICNN_N_MELS)).astype(np.float32)
    np.testing.assert_array_equal(rebuilt.predict(x, verbose=0), model.predict(x, verbose=0))
