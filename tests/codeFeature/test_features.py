import numpy as np
import pytest

from codeFeature.config import DEFAULT_CONFIG, FeatureConfig
from codeFeature.features import logmel, mfcc, segment_features
from codeFeature.segments import segment_array
from tests.conftest import assert_train_serve_parity, chord


def test_mfcc_shape_and_batch_equals_single():
    segments, _ = segment_array(chord(9.0), DEFAULT_CONFIG)
    batch = segment_features(segments, DEFAULT_CONFIG)
    assert batch.shape == (3, 130, 13, 1) and batch.dtype == np.float32
    single = segment_features(segments[1:2], DEFAULT_CONFIG)
    np.testing.assert_allclose(batch[1:2], single, rtol=1e-5, atol=1e-3)


def test_mfcc_matches_the_original_per_segment_librosa_call():
    import librosa

    segments, _ = segment_array(chord(3.0), DEFAULT_CONFIG)
    original = librosa.feature.mfcc(y=segments[0], sr=22050, n_mfcc=13, n_fft=2048, hop_length=512).T
    np.testing.assert_allclose(mfcc(segments, DEFAULT_CONFIG)[0], original, rtol=1e-4, atol=1e-3)


def test_python_speech_features_backend_gives_the_same_shape():
    config = FeatureConfig(mfcc_backend="python_speech_features", n_mels=26)
    segments, _ = segment_array(chord(6.0), config)
    out = segment_features(segments, config)
    assert out.shape == (2, 130, 13, 1)
    assert np.isfinite(out).all()
    librosa_out = segment_features(segments, FeatureConfig(n_mels=26))
    # different MFCC definitions, same signal: the coefficients' trajectories correlate
    assert np.corrcoef(out[0, 5:-5, 1, 0], librosa_out[0, 5:-5, 1, 0])[0, 1] > 0.5


def test_logmel_shape():
    config = FeatureConfig(feature="logmel", n_mels=64)
    segments, _ = segment_array(chord(3.0), config)
    assert segment_features(segments, config).shape == (1, 130, 64, 1)
    assert logmel(segments, config).shape == (1, 130, 64)


def test_wrong_segment_length_is_reported():
    with pytest.raises(ValueError, match="66150"):
        segment_features(np.zeros((2, 1000), np.float32), DEFAULT_CONFIG)


def test_train_serve_parity(audio_dir, tiny_model, tmp_path):
    """Training's dataset code and predict_file compute identical inputs and outputs for the same file."""
    assert_train_serve_parity(audio_dir / "chord.mp3", tiny_model, tmp_path)


def test_features_on_several_threads_at_once_are_a_lone_call_s_and_leave_blas_as_it_was(monkeypatch):
    """Features run BLAS on one thread, whichever thread computes them (predict_file computes them on a
    worker thread, where threadpoolctl 3.8 silently ignored the limit); threads computing them at once
    must neither run one another's products on more threads (the MFCCs then differed in the last bit,
    and a song scanned beside another got another probability than alone) nor leave the process's
    BLAS thread count changed."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_info, threadpool_limits

    from codeFeature import features

    def blas_threads():
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    seen = set()
    real = features._features
    monkeypatch.setattr(features, "_features", lambda *a: seen.update(blas_threads()) or real(*a))
    segments = [segment_array(chord(7.0, seed=i), DEFAULT_CONFIG)[0] for i in range(4)]
    alone = [segment_features(s, DEFAULT_CONFIG) for s in segments]
    start = threading.Barrier(4)

    def many(i):
        start.wait(timeout=30)
        return [segment_features(segments[i], DEFAULT_CONFIG) for _ in range(15)]

    with threadpool_limits(limits=2, user_api="blas"):
        with ThreadPoolExecutor(4) as pool:
            together = list(pool.map(many, range(4)))
        assert blas_threads() <= {2}
    assert seen == {1}
    for i, runs in enumerate(together):
        for out in runs:
            np.testing.assert_array_equal(out, alone[i])
