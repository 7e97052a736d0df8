"""The streaming classifier: windowing, resampling, the ring buffer, votes and bad input.

Frames are synthesised; the model is the untrained test model (22050 Hz, 3 s segments), except
where a shipped model at another rate is the point.
"""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codeFeature import GenreError, load_audio, predict_audio
from codeFeature.errors import AudioTooShortError, ConfigError
from codeFeature.predict import predict_segments, vote_index
from codeFeature.segments import segment_array
from codeFeature.stream import (StreamClassifier, StreamClosedError, StreamFormatError, frame_to_array)
from tests.conftest import chord

SEG = 66150  # 3 s at 22050 Hz: the test model's segment


def feed_in_frames(live, audio, rate, sizes):
    """Feed ``audio`` in frames whose sizes cycle through ``sizes``; returns the number of frames."""
    lo, i = 0, 0
    while lo < len(audio):
        n = sizes[i % len(sizes)]
        live.feed(audio[lo:lo + n], sample_rate=rate)
        lo += n
        i += 1
    return i


def to_int16(y):
    return (np.clip(y, -1, 1) * 32767).astype(np.int16)


def test_a_window_completes_exactly_at_the_segment_boundary(tiny_model):
    live = StreamClassifier(tiny_model)
    y = chord(4.0)
    assert live.feed(y[:SEG - 1], sample_rate=22050) == 0
    assert live.process() == [] and live.snapshot().genre is None
    assert live.feed(y[SEG - 1:SEG], sample_rate=22050) == 1
    assert live.snapshot().pending == 1
    (window,) = live.process()
    assert (window.index, window.start, window.end) == (0, 0.0, 3.0)
    assert window.latency >= 0
    expected = predict_segments(y[None, :SEG], model=tiny_model)[0]
    np.testing.assert_allclose(window.probabilities, expected, atol=1e-6)
    assert window.genre == tiny_model.labels[int(np.argmax(expected))]
    assert live.feed(y[SEG:], sample_rate=22050) == 0  # 1 s more: no second window yet


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 9000), min_size=1, max_size=6))
def test_any_frame_sizes_give_the_same_windows_as_the_whole_signal(tiny_model, sizes):
    y = chord(7.0, seed=3)
    live = StreamClassifier(tiny_model)
    feed_in_frames(live, y, 22050, sizes)
    live.process()
    state = live.snapshot()
    segments, starts = segment_array(y, tiny_model.config)  # 7 s: two full segments, the 1 s tail dropped
    np.testing.assert_allclose(state.probabilities, predict_segments(segments, model=tiny_model), atol=1e-6)
    assert [w.start for w in state.windows] == list(starts)
    assert state.seconds == pytest.approx(7.0, abs=1e-4)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_browser_rates_in_stereo_int16_match_files_and_predict_audio(tiny_model, rate):
    stereo = to_int16(chord(10.0, rate, channels=2, seed=1))
    live = StreamClassifier(tiny_model)
    frames = feed_in_frames(live, stereo, rate, [rate // 50, 441, 1001, 7])  # 20 ms browser frames and odd ones
    assert frames > 100
    prediction = live.finish(file="mic")

    mono = stereo.astype(np.float32).mean(axis=1) / 32768
    direct = predict_audio(mono, model=tiny_model, sample_rate=rate)
    wav = io.BytesIO()
    sf.write(wav, stereo, rate, format="WAV", subtype="PCM_16")
    decoded = load_audio(wav.getvalue(), sample_rate=22050, filename="same.wav")
    from_file = predict_audio(decoded.samples, model=tiny_model)

    for reference in (direct, from_file):
        assert prediction.probabilities.shape == reference.probabilities.shape == (3, 10)
        np.testing.assert_allclose(prediction.probabilities, reference.probabilities, atol=2e-3)
        assert prediction.segment_labels == reference.segment_labels
        assert prediction.genre == reference.genre
        assert prediction.confidence == pytest.approx(reference.confidence, abs=2e-3)
        assert prediction.duration == pytest.approx(reference.duration, abs=2e-3)
    # the stream's resampling is the file's: block-by-block soxr on the same downmix
    np.testing.assert_allclose(live.recent_audio(), decoded.samples[-len(live.recent_audio()):], atol=1e-4)
    assert prediction.file == "mic"


def test_a_shipped_model_at_16_khz(tiny_model):
    from codeFeature import load_model

    model = load_model("musicnn_genre")
    stereo = to_int16(chord(6.5, 48000, channels=2))
    live = StreamClassifier(model)
    feed_in_frames(live, stereo, 48000, [960])
    prediction = live.finish()
    reference = predict_audio(stereo.astype(np.float32).mean(axis=1) / 32768, model=model, sample_rate=48000)
    assert len(prediction.probabilities) == 2 == len(reference.probabilities)
    np.testing.assert_allclose(prediction.probabilities, reference.probabilities, atol=2e-3)
    assert prediction.genre == reference.genre
    assert "tags" in prediction.extras and prediction.extras["tags"].shape == (2, 50)


def test_running_vote_and_confidence_follow_the_windows(tiny_model):
    live = StreamClassifier(tiny_model)
    y = chord(12.0, seed=5) * np.linspace(0.2, 1.0, 12 * 22050, dtype=np.float32)
    feed_in_frames(live, y, 22050, [2048])
    live.process()
    state = live.snapshot()
    probs = state.probabilities
    assert len(state.windows) == 4
    assert state.genre == tiny_model.labels[vote_index(probs)]
    assert state.confidence == pytest.approx(float(probs[:, vote_index(probs)].mean()), abs=1e-6)
    np.testing.assert_allclose(state.mean_probabilities, probs.mean(axis=0), atol=1e-6)
    prediction = live.finish()
    assert (prediction.genre, prediction.confidence) == (state.genre, pytest.approx(state.confidence, abs=1e-6))


def test_ring_buffer_keeps_the_last_ten_seconds(tiny_model):
    live = StreamClassifier(tiny_model)
    y = chord(14.0, seed=2)
    live.feed(y[:4 * 22050], sample_rate=22050)
    assert len(live.recent_audio()) == 4 * 22050
    np.testing.assert_array_equal(live.recent_audio(), y[:4 * 22050])
    feed_in_frames(live, y[4 * 22050:], 22050, [5003])
    recent = live.snapshot().recent
    assert len(recent) == 10 * 22050
    np.testing.assert_array_equal(recent, y[-10 * 22050:])
    live.feed(y[:30 * 22050], sample_rate=22050)  # a frame longer than the buffer
    assert len(live.recent_audio()) == 10 * 22050
    short = StreamClassifier(tiny_model, history_seconds=0.5)
    short.feed(y, sample_rate=22050)
    np.testing.assert_array_equal(short.recent_audio(), y[-11025:])


@pytest.mark.parametrize("seconds, n_segments", [(7.0, 2), (7.6, 3), (1.0, 1), (9.0, 3)])
def test_finish_cuts_the_tail_like_files(tiny_model, seconds, n_segments):
    y = chord(seconds, seed=4)
    live = StreamClassifier(tiny_model)
    feed_in_frames(live, y, 22050, [1500])
    prediction = live.finish()
    reference = predict_audio(y, model=tiny_model)
    assert len(prediction.probabilities) == n_segments == len(reference.probabilities)
    np.testing.assert_allclose(prediction.probabilities, reference.probabilities, atol=1e-6)
    np.testing.assert_allclose(prediction.starts, reference.starts)
    assert any("padded" in w for w in prediction.warnings) == (seconds < 3)
    csv = prediction.to_csv().splitlines()
    assert csv[0].startswith("start,end,genre,confidence,blues") and len(csv) == n_segments + 1
    assert live.finish() is prediction  # idempotent


def test_finish_refuses_less_than_half_a_second(tiny_model):
    live = StreamClassifier(tiny_model)
    live.feed(chord(0.3), sample_rate=22050)
    with pytest.raises(AudioTooShortError, match="at least 0.5 s"):
        live.finish()


def test_silence_gets_the_files_warning(tiny_model):
    live = StreamClassifier(tiny_model)
    live.feed(np.zeros((4 * 48000, 2), np.int16), sample_rate=48000)
    assert any("silent" in w for w in live.finish().warnings)


def test_interleaved_frames_and_a_rate_change(tiny_model):
    stereo = to_int16(chord(4.0, 44100, channels=2))
    live = StreamClassifier(tiny_model)
    for lo in range(0, len(stereo), 441):
        live.feed(stereo[lo:lo + 441].reshape(-1), sample_rate=44100, channels=2)  # packed s16, as WebRTC sends
    live.feed(chord(2.0), sample_rate=np.int64(22050))  # the source switched rate: no error, no gap
    prediction = live.finish()
    assert prediction.duration == pytest.approx(6.0, abs=2e-3)
    assert len(prediction.probabilities) == 2


def test_a_producer_and_a_worker_in_threads_agree_with_one_thread(tiny_model):
    y = to_int16(chord(13.0, 48000, channels=2, seed=7))
    live = StreamClassifier(tiny_model)
    live.start_worker()
    seen = []

    def produce():
        feed_in_frames(live, y, 48000, [960, 480, 1111])

    producer = threading.Thread(target=produce)
    producer.start()
    while producer.is_alive():
        seen.append(len(live.snapshot().windows))  # a third thread reading while both work
    producer.join()
    threaded = live.finish()
    sequential = StreamClassifier(tiny_model)
    feed_in_frames(sequential, y, 48000, [960])
    reference = sequential.finish()
    assert seen == sorted(seen)
    np.testing.assert_allclose(threaded.probabilities, reference.probabilities, atol=1e-5)
    assert len(threaded.probabilities) == 4


@pytest.mark.parametrize("frames, kwargs, match", [
    ("not audio", {"sample_rate": 48000}, "dtype"),
    (np.zeros(10, np.uint8), {"sample_rate": 48000}, "dtype"),
    (np.zeros((2, 3, 4), np.float32), {"sample_rate": 48000}, "shape"),
    (np.zeros((2, 960), np.float32), {"sample_rate": 48000}, "frames.T"),
    (np.zeros(10, np.float32), {"sample_rate": 0}, "sample_rate=0"),
    (np.zeros(10, np.float32), {"sample_rate": 44100.0}, "sample_rate=44100.0"),
    (np.zeros(10, np.float32), {"sample_rate": True}, "sample_rate=True"),
    (np.zeros(9, np.int16), {"sample_rate": 48000, "channels": 2}, "do not divide"),
    (np.zeros(10, np.int16), {"sample_rate": 48000, "channels": 0}, "channels=0"),
    (np.zeros((10, 2), np.int16), {"sample_rate": 48000, "channels": 2}, "1-D interleaved"),
])
def test_bad_frames_raise_a_readable_genre_error(tiny_model, frames, kwargs, match):
    live = StreamClassifier(tiny_model)
    with pytest.raises(StreamFormatError, match=match) as info:
        live.feed(frames, **kwargs)
    assert isinstance(info.value, GenreError) and isinstance(info.value, ConfigError)
    assert live.seconds == 0


def test_bad_construction_and_use_after_finish(tiny_model):
    with pytest.raises(ConfigError, match="LoadedModel"):
        StreamClassifier("musicnn_genre")
    for bad in (0, -1.0, float("nan"), "10", True):
        with pytest.raises(ConfigError, match="history_seconds"):
            StreamClassifier(tiny_model, history_seconds=bad)
    live = StreamClassifier(tiny_model)
    with pytest.raises(ConfigError, match="timeout"):
        live.process(timeout=-1)
    live.feed(chord(1.0), sample_rate=22050)
    live.finish()
    with pytest.raises(StreamClosedError):
        live.feed(chord(1.0), sample_rate=22050)


def test_nan_samples_are_repaired_with_a_warning(tiny_model):
    y = chord(4.0)
    y[100:200] = np.nan
    live = StreamClassifier(tiny_model)
    live.feed(y, sample_rate=22050)
    prediction = live.finish()
    assert np.isfinite(prediction.probabilities).all()
    assert any("100 samples were NaN" in w for w in prediction.warnings)


def test_pyav_frames_packed_and_planar():
    av = pytest.importorskip("av", reason="PyAV (a streamlit-webrtc dependency) is not installed")
    stereo = to_int16(chord(0.02, 48000, channels=2))  # 960 frames, 20 ms
    packed = av.AudioFrame.from_ndarray(stereo.reshape(1, -1), format="s16", layout="stereo")
    packed.sample_rate = 48000
    samples, rate = frame_to_array(packed)
    assert rate == 48000 and samples.shape == (960, 2)
    np.testing.assert_array_equal(samples, stereo)
    planar = av.AudioFrame.from_ndarray(np.ascontiguousarray(stereo.T.astype(np.float32) / 32768), format="fltp",
                                        layout="stereo")
    planar.sample_rate = 44100
    samples, rate = frame_to_array(planar)
    assert rate == 44100 and samples.shape == (960, 2)
    np.testing.assert_allclose(samples, stereo / 32768, atol=1e-6)
    with pytest.raises(StreamFormatError, match="AudioFrame"):
        frame_to_array(np.zeros(4))
