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
from codeFeature.model_io import embedding_forward, load_model
from codeFeature.musicnn import (
    BFLOAT16_LAYERS, MSD_TAGS, MTT_TAGS, MUSICNN_FRAMES, MUSICNN_N_MELS, build_musicnn, embedding_model,
    fold_frontend_signs, musicnn_logmel)

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "musicnn_reference.npz"
MODELS = {"msd": ("musicnn_msd", MSD_TAGS), "mtt": ("musicnn_mtt", MTT_TAGS)}

# How close two float32 computations of musicnn can be, whatever the kernels and summation order.
#
# A sum of n products computed in float32 in any order is off by at most about lambda * sqrt(n) * u
# times the sum of the terms' magnitudes, with u = 2**-24 the unit roundoff, except with probability
# below 2 n exp(-lambda**2 / 2) (Higham & Mary 2019, "A new approach to probabilistic rounding error
# analysis"); the worst case, n * u, needs every rounding to go the same way, which blocked and
# vectorised kernels never do. lambda = 6 makes that probability ~1e-4 for the longest sum here.
# The longest sum feeding any value is the first mid-end convolution's, 7 taps x 561 channels = 3927
# terms; a value passes through at most 6 such summing layers (a front-end convolution, three mid-end
# convolutions, the dense layers), and each layer's error adds to what it inherits (its batch norms
# keep the gain near 1). Both sides carry such an error: the reference was computed by the original
# TF1 package on another CPU, the port by whichever oneDNN or Eigen kernel this CPU gets. Hence
#     RTOL = 2 sides x 6 layers x 6 x sqrt(3927) x 2**-24 ~= 2.7e-4.
# The error of a sum scales with the magnitudes of its terms, not with its result, which can cancel to
# near zero; the terms' scale is stood in for by the layer's root mean square, so a value may be off
# by RTOL * (|expected| + rms(layer)): the absolute part follows each layer's own scale (taggram
# ~0.07, max pool ~6) instead of one fixed 1e-4. Measured on this CPU (Sapphire Rapids) the worst
# value uses 7 % of this budget (1.9e-5 of it, mtt max_pool with TF_ENABLE_ONEDNN_OPTS=0; 1e-5 with
# oneDNN, AVX2 or AVX512_CORE_BF16 kernels), while the port errors in
# test_a_port_error_fails_the_comparison are off by hundreds to millions of times the budget.
SUM_TERMS = 7 * 561
SUMMING_LAYERS = 6
LAMBDA = 6.0
RTOL = 2 * SUMMING_LAYERS * LAMBDA * np.sqrt(SUM_TERMS) * 2.0 ** -24


def assert_matches_original(actual, expected, *, what: str = "") -> None:
    """``actual`` equals the original's ``expected`` to float32 arithmetic's reach (see RTOL)."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = float(np.sqrt(np.mean(expected ** 2)))
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=RTOL * scale, err_msg=what)


def mismatch(actual, expected) -> float:
    """The worst error in units of the tolerance ``assert_matches_original`` allows (> 1 fails)."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    scale = float(np.sqrt(np.mean(expected ** 2)))
    return float(np.max(np.abs(actual - expected) / (RTOL * (np.abs(expected) + scale))))


@pytest.fixture(scope="module")
def reference():
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module", params=sorted(MODELS))
def tagger(request):
    folder, tags = MODELS[request.param]
    # float32: the parity is with the original's float32 network (bfloat16 has its own tests below)
    return request.param, load_model(REPO / "models" / folder, precision="float32"), tags


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
    assert_matches_original(taggram, reference[f"{key}_taggram"], what=f"{key} taggram")


@pytest.mark.parametrize("layer", ["penultimate", "mean_pool", "max_pool"])
def test_embeddings_match_original(tagger, reference, layer):
    key, loaded, _ = tagger
    features = embedding_model(loaded.keras_model, layer).predict(reference["patches"], verbose=0)
    assert_matches_original(features, reference[f"{key}_{layer}"], what=f"{key} {layer}")


def test_the_fast_embedding_path_matches_original(tagger, reference):
    """embedding_forward: one traced graph in memory-bounded batches, for songs and training."""
    key, loaded, _ = tagger
    fast = embedding_forward(loaded, "penultimate")
    patches = np.concatenate([reference["patches"]] * 3)
    assert fast.forward_batch < len(patches)  # several batches, stitched in order
    assert_matches_original(fast.forward(patches)[0], np.concatenate([reference[f"{key}_penultimate"]] * 3),
                            what=f"{key} penultimate, batched")
    assert loaded.forward(reference["patches"][:1])[0].shape == (1, 50)  # the tagger itself is untouched


def test_pooled_embedding_is_mean_then_max(tagger, reference):
    key, loaded, _ = tagger
    pooled = embedding_model(loaded.keras_model, "pooled").predict(reference["patches"], verbose=0)
    width = reference[f"{key}_mean_pool"].shape[1]
    assert pooled.shape[1] == 2 * width
    # each half against its own layer's scale, as in test_embeddings_match_original
    assert_matches_original(pooled[:, :width], reference[f"{key}_mean_pool"], what=f"{key} pooled, mean half")
    assert_matches_original(pooled[:, width:], reference[f"{key}_max_pool"], what=f"{key} pooled, max half")


def _identity_batch_norm(weights):
    gamma, beta, mean, variance = weights
    return [np.ones_like(gamma), np.zeros_like(beta), np.zeros_like(mean), np.ones_like(variance) - 1e-3]


def _tf1_epsilon_missed(weights):
    # batch norm computed with Keras' 1e-3 where the checkpoint had been trained with 1e-5 (or the reverse)
    gamma, beta, mean, variance = weights
    return [gamma, beta, mean, variance - (1e-3 - 1e-5)]


#: Mistakes a port can make, each as (layer, change to its weights); all keep the shapes, so only the
#: numbers can tell them from the right port.
PORT_ERRORS = {
    "mid-end kernel transposed (in/out channels)": ("midend2_conv", lambda w: [w[0].transpose(0, 2, 1), w[1]]),
    "timbral kernel time-reversed (convolution vs correlation)": ("timbral_74_conv", lambda w: [w[0][::-1], w[1]]),
    "missing batch norm (mid end)": ("midend1_bn", _identity_batch_norm),
    "missing batch norm (input)": ("input_bn", _identity_batch_norm),
    "one wrong weight (the dense layer's largest set to 0)":
        ("dense", lambda w: [np.where(np.abs(w[0]) == np.abs(w[0]).max(), 0, w[0]), w[1]]),
    "batch-norm epsilon 1e-5 instead of TF1's 1e-3 (mid end)": ("midend1_bn", _tf1_epsilon_missed),
    "two checkpoint tensors swapped (mid-end 2 and 3)": ("midend2_conv", "midend3_conv"),
}


@pytest.fixture(scope="module")
def msd_probe():
    """The float32 msd tagger answering with every output the reference holds."""
    import keras

    tagger = load_model(REPO / "models" / "musicnn_msd", precision="float32").keras_model
    outputs = ("taggram", "penultimate", "mean_pool", "max_pool")
    return tagger, outputs, keras.Model(tagger.inputs, [tagger.get_layer(n).output for n in outputs])


def _worst_mismatch(probe, reference) -> float:
    tagger, outputs, model = probe
    results = model.predict(reference["patches"], verbose=0)
    return max(mismatch(result, reference[f"msd_{name}"]) for result, name in zip(results, outputs))


@pytest.mark.parametrize("error", sorted(PORT_ERRORS))
def test_a_port_error_fails_the_comparison(msd_probe, reference, error):
    """The float32 tolerance is wide enough for any kernel's rounding, and still far too narrow for a real
    mistake: each of these is off by more than the budget (the subtlest, a batch norm's epsilon, by ~5x;
    the others by 1e3-1e6x), while the right port uses a few percent of it."""
    tagger = msd_probe[0]
    layer, change = PORT_ERRORS[error]
    assert _worst_mismatch(msd_probe, reference) <= 1  # the right port passes on this very probe
    if isinstance(change, str):
        first, second = tagger.get_layer(layer), tagger.get_layer(change)
        saved = [first.get_weights(), second.get_weights()]
        first.set_weights(saved[1])
        second.set_weights(saved[0])
        restore = lambda: (first.set_weights(saved[0]), second.set_weights(saved[1]))  # noqa: E731
    else:
        target = tagger.get_layer(layer)
        saved = target.get_weights()
        target.set_weights(change([w.copy() for w in saved]))
        restore = lambda: target.set_weights(saved)  # noqa: E731
    try:
        assert _worst_mismatch(msd_probe, reference) > 1, f"{error} passed the parity comparison"
    finally:
        restore()


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


def test_folded_front_end_equals_the_original_order():
    """fold_frontend_signs: conv -> max over frequency -> sign, ReLU -> batch norm gives the
    original's conv + ReLU -> batch norm -> max, whatever the signs of the batch-norm scales."""
    import keras
    from keras import layers

    rng = np.random.default_rng(3)
    x = rng.normal(size=(3, 20, 16, 1)).astype(np.float32)
    kernel = rng.normal(size=(5, 6, 1, 8)).astype(np.float32)
    bias = rng.normal(size=8).astype(np.float32)
    gamma = rng.normal(size=8).astype(np.float32)  # about half negative
    gamma[0] = 0.0
    beta, mean = rng.normal(size=(2, 8)).astype(np.float32)
    variance = rng.uniform(0.1, 3, 8).astype(np.float32)
    assert (gamma < 0).any() and (gamma > 0).any()

    # the original's order, straight from musicnn/models.py
    conv = layers.Conv2D(8, (5, 6), padding="same", activation="relu")
    norm = layers.BatchNormalization(epsilon=1e-3)
    original = keras.Sequential([keras.Input((20, 16, 1)), conv, norm, layers.MaxPooling2D((1, 16)),
                                 layers.Reshape((20, 8))])
    conv.set_weights([kernel, bias])
    norm.set_weights([gamma, beta, mean, variance])

    folded_kernel, folded_bias, signs = fold_frontend_signs(kernel, bias, gamma, variance, 1e-3)
    conv2 = layers.Conv2D(8, (5, 6), padding="same")
    sign = layers.DepthwiseConv1D(1, use_bias=False, activation="relu")
    norm2 = layers.BatchNormalization(epsilon=1e-3)
    port = keras.Sequential([keras.Input((20, 16, 1)), conv2, layers.MaxPooling2D((1, 16)),
                             layers.Reshape((20, 8)), sign, norm2])
    conv2.set_weights([folded_kernel, folded_bias])
    sign.set_weights([signs])
    norm2.set_weights([gamma, beta, mean, variance])
    np.testing.assert_allclose(port.predict(x, verbose=0), original.predict(x, verbose=0), rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def msd_bfloat16(reference):
    model = load_model(REPO / "models" / "musicnn_msd", precision="bfloat16")
    try:
        model.forward(reference["patches"][:1])
    except Exception as exc:  # tensorflow.errors.AbortedError, from oneDNN
        if "primitive descriptor" not in str(exc):
            raise
        # oneDNN has no bfloat16 convolution below AVX512-BF16 (a real AVX2 CPU, or ONEDNN_MAX_CPU_ISA=AVX2);
        # precision "auto" never picks bfloat16 there (codeFeature.inference_path.plan)
        pytest.skip("this CPU's oneDNN kernels cannot compute bfloat16 convolutions")
    return model


def test_bfloat16_runs_only_the_listed_layers_in_bfloat16(msd_bfloat16):
    assert msd_bfloat16.precision == "bfloat16"
    listed = set(msd_bfloat16.manifest["bfloat16_layers"])
    assert listed == set(BFLOAT16_LAYERS)
    for layer in msd_bfloat16.keras_model.layers:
        assert layer.compute_dtype == ("bfloat16" if layer.name in listed else "float32"), layer.name
    # the weights stay float32, exactly the file's
    assert all(w.dtype == "float32" for w in msd_bfloat16.keras_model.weights)


def test_bfloat16_stays_close_to_the_original(msd_bfloat16, reference):
    # bfloat16 keeps 8 significant bits: the tags move by about 1e-2, far below what separates tags
    taggram = msd_bfloat16.forward(reference["patches"])[0]
    np.testing.assert_allclose(taggram, reference["msd_taggram"], rtol=0, atol=0.03)
    assert np.abs(taggram - reference["msd_taggram"]).max() > 0  # really a different precision
    top = np.argsort(-reference["msd_taggram"], axis=1)[:, :3]
    assert (np.argsort(-taggram, axis=1)[:, :3] == top).mean() >= 0.8


def test_precision_auto_follows_the_cpu_and_the_environment(monkeypatch):
    from codeFeature import settings
    from codeFeature.cpu import CpuFacts
    from codeFeature.inference_path import plan

    listed = {"bfloat16_layers": list(BFLOAT16_LAYERS)}
    native, emulated = CpuFacts("avx512_bf16", openvino=False), CpuFacts("avx2", openvino=False)
    monkeypatch.delenv("CODEFEATURE_PRECISION", raising=False)
    settings.reload()
    assert plan(listed, facts=native).precision == "bfloat16"
    assert plan(listed, precision="auto", facts=native).precision == "bfloat16"
    assert plan({}, facts=native).precision == "float32"  # nothing listed, nothing to change
    assert plan({}, precision="bfloat16", facts=native).precision == "float32"
    monkeypatch.setenv("CODEFEATURE_PRECISION", "float32")
    settings.reload()
    assert plan(listed, facts=native).precision == "float32"
    monkeypatch.setenv("CODEFEATURE_PRECISION", "auto")
    settings.reload()
    assert plan(listed, facts=emulated).precision == "float32"
    assert plan(listed, precision="bfloat16", facts=emulated).precision == "bfloat16"  # asked for, even if emulated
    with pytest.raises(ConfigError, match="float16"):
        plan(listed, precision="float16", facts=emulated)


def test_a_manifest_listing_a_missing_layer_is_refused(tmp_path):
    import shutil

    from codeFeature.errors import ModelError

    folder = tmp_path / "musicnn_msd"
    shutil.copytree(REPO / "models" / "musicnn_msd", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["bfloat16_layers"] = ["timbral_74_conv", "no_such_layer"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="no_such_layer"):
        load_model(folder, precision="bfloat16")
    assert load_model(folder, precision="float32").precision == "float32"
