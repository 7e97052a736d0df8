"""The signal path gives the answers it gave before its rooms were rearranged, bit for bit.

Before the redesign, resampling was written five times (``soxr.resample`` for arrays,
``soxr.ResampleStream`` for files and live streams, ``librosa.resample(res_type="soxr_hq")`` for the
GTZAN table's features and the tutorial's pictures) and the features were picked by an if-chain over the
feature kind. Each check below puts the one resampler and the feature registry beside the very library
calls they replaced, so a change in rounding, length or order fails here, on any machine. The last check
runs the command line on real recordings, when the shared data is there, against the library's own calls.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soxr

from codeFeature.config import FeatureConfig
from codeFeature.feature_kinds import KINDS, feature_kind
from codeFeature.resample import resample, stream_resampler
from tests.conftest import REPO, SHARED_GTZAN, chord

RATES = [(44100, 22050), (48000, 22050), (16000, 22050), (22050, 16000), (44100, 16000), (8000, 22050),
         (12345, 22050)]
LENGTHS = [1, 7, 1001, 66150, 123457]


@pytest.mark.parametrize("orig, target", RATES)
def test_whole_arrays_resample_as_soxr_and_librosa_did(orig, target):
    librosa = pytest.importorskip("librosa")
    rng = np.random.default_rng(orig + target)
    for n in LENGTHS:
        y = (0.3 * rng.standard_normal(n)).astype(np.float32)
        # predict_audio's former call
        expected = soxr.resample(y, orig, target, quality="HQ").astype(np.float32)
        got = resample(y, orig, target)
        assert got.dtype == np.float32 and np.array_equal(got, expected), n
        # gtzan_features' and spectrogram_image's former call, on one signal and on rows of segments
        for x in (y, np.stack([y, y[::-1] * 0.5])):
            expected = librosa.resample(x, orig_sr=orig, target_sr=target, res_type="soxr_hq", axis=-1)
            got = resample(x, orig, target, librosa_length=True)
            assert got.shape == expected.shape and got.dtype == expected.dtype and np.array_equal(got, expected), n


def test_equal_rates_pass_through_as_float32():
    y = np.arange(10, dtype=np.float64)
    out = resample(y, 22050, 22050, librosa_length=True)
    assert out.dtype == np.float32 and np.array_equal(out, y.astype(np.float32))
    assert stream_resampler(22050, 22050) is None


@pytest.mark.parametrize("orig, target", [(44100, 22050), (48000, 16000), (16000, 22050)])
def test_streams_resample_as_soxr_resample_stream_did(orig, target):
    """Files and live streams fed their former ``soxr.ResampleStream(orig, target, 1, dtype="float32",
    quality="HQ")`` block by block; the one resampler's stream gives the same blocks."""
    y = chord(5.0, orig)
    old = soxr.ResampleStream(orig, target, 1, dtype="float32", quality="HQ")
    new = stream_resampler(orig, target)
    for lo in range(0, len(y), 7000):
        block = y[lo: lo + 7000]
        last = lo + 7000 >= len(y)
        assert np.array_equal(new.resample_chunk(block, last=last), old.resample_chunk(block, last=last))


def _configs():
    yield FeatureConfig()
    yield FeatureConfig(extras=("contrast", "tonnetz"))
    yield FeatureConfig(extras=("hpss",))
    yield FeatureConfig(feature="logmel", n_mels=64)
    yield FeatureConfig(feature="musicnn_logmel", sample_rate=16000, n_mels=96, n_fft=512, hop_length=256)
    yield FeatureConfig(feature="gtzan57")
    yield FeatureConfig(feature="spectrogram_image", segment_seconds=5.0, image_size=32)


def _former_if_chain(segments: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """``features._features`` as it was: the calls each kind made, spelled out."""
    from codeFeature.features import logmel, mfcc, mfcc_with_extras
    from codeFeature.gtzan_features import gtzan_features_batch
    from codeFeature.musicnn import musicnn_logmel
    from codeFeature.spectrogram_image import spectrogram_image_for_model

    if config.feature == "mfcc":
        return (mfcc_with_extras(segments, config) if config.extras else mfcc(segments, config))[..., None]
    if config.feature == "logmel":
        return logmel(segments, config)[..., None]
    if config.feature == "gtzan57":
        return gtzan_features_batch(segments, sample_rate=config.sample_rate).astype(np.float32)
    if config.feature == "spectrogram_image":
        return np.stack([spectrogram_image_for_model(s, sample_rate=config.sample_rate, size=config.image_size,
                                                     seconds=None) for s in segments]).astype(np.float32)
    return musicnn_logmel(segments, sample_rate=config.sample_rate)


def test_the_registry_covers_every_kind_the_configuration_accepts():
    from codeFeature.config import FEATURE_KINDS

    assert tuple(KINDS) == FEATURE_KINDS
    assert {c.feature for c in _configs()} == set(KINDS)
    with pytest.raises(ValueError, match="not supported"):
        feature_kind("chroma")


@pytest.mark.parametrize("config", list(_configs()), ids=lambda c: c.feature + "+".join(("",) + c.extras))
def test_every_kind_computes_what_the_former_if_chain_computed(config):
    from codeFeature.blas import one_blas_thread
    from codeFeature.features import segment_features

    y = np.stack([chord(config.segment_seconds, config.sample_rate, seed=s) for s in (1, 2)])
    got = segment_features(y, config)
    with one_blas_thread():  # as segment_features runs every kind
        expected = _former_if_chain(y, config)
    assert got.shape == (2, *config.input_shape) and got.dtype == np.float32
    assert np.array_equal(got, expected)


def test_predict_audio_resamples_as_before(tiny_model):
    from codeFeature.predict import predict_audio

    y = chord(7.0, 44100)
    via_rate = predict_audio(y, model=tiny_model, sample_rate=44100)
    by_hand = predict_audio(soxr.resample(y, 44100, 22050, quality="HQ").astype(np.float32), model=tiny_model)
    assert np.array_equal(via_rate.probabilities, by_hand.probabilities)


REAL_SONGS = [SHARED_GTZAN / "genres" / "blues" / "blues.00000.wav",
              SHARED_GTZAN.parent / "real_music" / "emegeme_country.mp3"]


@pytest.mark.skipif(not all(p.is_file() for p in REAL_SONGS), reason="needs ../shared/data (GTZAN and real_music)")
def test_the_command_line_file_and_array_paths_agree_on_real_songs():
    """A 22.05 kHz GTZAN track and a 44.1 kHz mp3 (resampled to the model's 16 kHz), through the shipped
    default model: the CLI's JSON is the library's, and the file path is the whole-array path."""
    import codeFeature as cf

    out = subprocess.run([sys.executable, "-m", "codeFeature", "--json", *map(str, REAL_SONGS)], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    printed = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    model = cf.load_model()
    for song, shown in zip(REAL_SONGS, printed, strict=True):
        by_file = cf.predict_file(song, model=model)
        assert shown == json.loads(json.dumps(by_file.to_dict()))
        decoded = cf.load_audio(song, sample_rate=model.config.sample_rate)
        by_array = cf.predict_audio(decoded.samples, model=model, file=str(song), warnings=decoded.warnings)
        assert np.array_equal(by_file.probabilities, by_array.probabilities)
        assert by_file.warnings == by_array.warnings
