"""``predict_file`` decodes and classifies block by block: same answer, bounded memory.

The whole-song path (``load_audio`` then ``predict_audio``) is the reference: streaming must give
bit-identical probabilities, segment starts, duration and warnings on every kind of input, and
must not hold the song in memory.
"""

from __future__ import annotations

import subprocess
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from codeFeature import audio, phases, predict
from codeFeature.audio import find_ffmpeg, load_audio, open_audio
from codeFeature.errors import AudioDecodeError, AudioTooShortError
from codeFeature.predict import CHUNK_SEGMENTS, predict_audio, predict_file
from tests.conftest import chord


def whole_song(path, model):
    decoded = load_audio(path, sample_rate=model.config.sample_rate)
    return predict_audio(decoded.samples, model=model, file=str(path), warnings=decoded.warnings)


def assert_same(a, b):
    np.testing.assert_array_equal(a.probabilities, b.probabilities)
    np.testing.assert_array_equal(a.starts, b.starts)
    assert a.duration == b.duration
    assert a.warnings == b.warnings
    assert a.file == b.file


def _float_with_faults(seconds, rate):
    y = chord(seconds, rate)
    y[1000:1100] = np.nan
    y[5000] = np.inf
    return y


def _loud_late(seconds, rate):
    y = chord(seconds, rate) * 0.5
    y[-rate:] *= 4.0  # beyond full scale only in the last second: after chunks were classified
    return y


def _square(seconds, rate):
    return np.sign(np.sin(2 * np.pi * 220.0 * np.arange(int(seconds * rate)) / rate)).astype(np.float32)


@pytest.mark.parametrize("name, make, rate, subtype", [
    # more than one chunk of segments, and a final partial segment that is kept (> half a segment)
    ("long_kept_tail", lambda: chord(CHUNK_SEGMENTS * 3.0 + 7.0, 44100, channels=2), 44100, "PCM_16"),
    # exactly one chunk, then a short tail that is dropped
    ("one_chunk_dropped_tail", lambda: chord(CHUNK_SEGMENTS * 3.0 + 0.5, 22050), 22050, "PCM_16"),
    ("shorter_than_a_segment", lambda: chord(1.3, 48000), 48000, "PCM_24"),
    ("nan_and_inf", lambda: _float_with_faults(8.0, 22050), 22050, "FLOAT"),
    # beyond full scale: the whole song's peak is needed, so predict_file reads on to measure it, then
    # classifies a second pass scaled by it
    ("louder_than_full_scale", lambda: chord(8.0, 22050) * 3.0, 22050, "FLOAT"),
    ("loud_only_late_in_a_long_song", lambda: _loud_late(CHUNK_SEGMENTS * 3.0 * 2 + 5.0, 22050), 22050, "FLOAT"),
    ("loud_with_nan", lambda: _float_with_faults(8.0, 22050) * 1.5, 22050, "FLOAT"),
    # a master at full scale overshoots once resampled (44.1 to 22.05 kHz): a whole-song scale, no warning
    ("full_scale_square_resampled", lambda: _square(CHUNK_SEGMENTS * 3.0 + 4.0, 44100), 44100, "PCM_16"),
    ("silence", lambda: np.zeros(22050 * 4, np.float32), 22050, "PCM_16"),
])
def test_streaming_gives_exactly_the_whole_song_result(tmp_path, tiny_model, name, make, rate, subtype):
    path = tmp_path / f"{name}.wav"
    sf.write(path, make(), rate, subtype=subtype)
    with phases.record_phases() as runs:
        streamed = predict_file(path, model=tiny_model)
    assert_same(whole_song(path, tiny_model), streamed)
    assert len(runs) == 1 and set(runs[0]) >= {"features", "predict", "other", "total"}
    if name.startswith(("loud", "full_scale")):
        with open_audio(path, sample_rate=tiny_model.config.sample_rate) as stream:
            assert max(np.nanmax(np.abs(block)) for block in stream) > 1.0  # the case is really beyond full scale


@pytest.mark.parametrize("replay_seconds, decodes", [(600, 1), (5, 2)])
@pytest.mark.parametrize("source", ["path", "bytes"])
def test_a_loud_song_is_decoded_once_when_short_and_twice_when_long(tmp_path, tiny_model, monkeypatch,
                                                                    replay_seconds, decodes, source):
    """A master beyond full scale once resampled needs two passes; a short one is replayed from the first
    pass's copy, a long one decoded again, and both give the whole-song answer, notes included (the
    file is cut short, so the decoder's note on its damaged tail must survive the replay)."""
    path = tmp_path / "loud.mp3"
    sf.write(path, np.clip(chord(14.0, 44100, channels=2) * 4.0, -1.0, 1.0), 44100, format="MP3")
    opened = []
    real_open = predict.open_audio
    monkeypatch.setattr(predict, "open_audio", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    monkeypatch.setattr(predict, "REPLAY_SECONDS", replay_seconds)
    with phases.record_phases() as runs:
        streamed = predict_file(path if source == "path" else path.read_bytes(), model=tiny_model,
                                filename=str(path))
    assert len(opened) == decodes
    assert_same(whole_song(path, tiny_model), streamed)
    # the first pass, which only measured the peak, is booked as such, not as the level meter's time
    assert len(runs) == 1 and runs[0]["peak"] > 0 and list(runs[0])[0] in ("load", "peak")
    with open_audio(path, sample_rate=tiny_model.config.sample_rate) as stream:
        assert max(np.abs(block).max() for block in stream) > 1.0  # the case is really beyond full scale


@pytest.mark.parametrize("source", ["path", "bytes", "whole_song"])
def test_timings_add_up_to_the_wall_time(tmp_path, tiny_model, source, monkeypatch):
    """Every phase of predict_file is timed: with ``other``, less ``overlap`` (a chunk decoded while the one
    before is classified), they sum to ``total``, which is the call's wall time, and
    what no phase covers (``other``) stays small. Not a speed target: shares of the same call."""
    import time

    monkeypatch.setattr(predict, "CHUNK_SEGMENTS", 2)  # several chunks of a short song
    path = tmp_path / "song.mp3"
    sf.write(path, chord(20.0, 44100, channels=2), 44100, format="MP3")
    predict_file(path, model=tiny_model)  # warm
    arg = {"path": path, "bytes": path.read_bytes()}.get(source, path)
    for _ in range(3):  # a loaded machine may stall between two phases once; not three times
        if source == "whole_song":
            decoded = load_audio(path, sample_rate=44100)
        with phases.record_phases() as runs:
            t0 = time.perf_counter()
            if source == "whole_song":
                predict_audio(decoded.samples, model=tiny_model, sample_rate=44100)
            else:
                predict_file(arg, model=tiny_model, filename="song.mp3")
            wall = time.perf_counter() - t0
        (timings,) = runs
        assert list(timings)[-3:] == ["other", "overlap", "total"]
        assert [k for k in timings if k != "total"] == [k for k in phases.PHASES if k in timings]
        timed = sum(v for k, v in timings.items() if k not in ("overlap", "total"))
        assert timed - timings["overlap"] == pytest.approx(timings["total"], abs=1e-9)
        assert timings["other"] == 0 or timings["overlap"] == 0
        assert all(v >= 0 for v in timings.values())
        assert timings["resample"] > 0 and timings["features"] > 0 and timings["predict"] > 0
        if source != "whole_song":
            assert timings["decode"] > 0 and timings["level"] > 0
        assert timings["total"] <= wall
        if wall - timings["total"] < 0.02 and timings["other"] < max(0.02, 0.05 * wall):
            break
    else:
        pytest.fail(f"timings miss part of the call: wall {wall:.4f} s, {timings}")


def test_streaming_mp3_and_bytes_match(tmp_path, tiny_model):
    path = tmp_path / "song.mp3"
    sf.write(path, chord(20.0, 44100, channels=2), 44100, format="MP3")
    reference = whole_song(path, tiny_model)
    assert_same(reference, predict_file(path, model=tiny_model))
    from_bytes = predict_file(path.read_bytes(), model=tiny_model, filename=str(path))
    np.testing.assert_array_equal(reference.probabilities, from_bytes.probabilities)


@pytest.mark.skipif(find_ffmpeg() is None, reason="no ffmpeg binary (system or imageio-ffmpeg)")
def test_streaming_through_ffmpeg_matches(tmp_path, tiny_model):
    wav = tmp_path / "c.wav"
    sf.write(wav, chord(10.0, 44100), 44100)
    m4a = tmp_path / "c.m4a"
    subprocess.run([find_ffmpeg(), "-loglevel", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    assert_same(whole_song(m4a, tiny_model), predict_file(m4a, model=tiny_model))


def test_streaming_errors_are_the_whole_song_errors(tmp_path, tiny_model):
    short = tmp_path / "short.wav"
    sf.write(short, chord(0.3), 22050)
    with pytest.raises(AudioTooShortError, match="0.30 s"):
        predict_file(short, model=tiny_model)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 22050)
    with pytest.raises(AudioDecodeError, match="holds no audio samples"):
        predict_file(empty, model=tiny_model)


def test_progress_is_reported_per_chunk_and_ends_at_one(tmp_path, tiny_model):
    path = tmp_path / "long.wav"
    sf.write(path, chord(CHUNK_SEGMENTS * 3.0 * 2 + 4.0, 22050), 22050)
    seen = []
    prediction = predict_file(path, model=tiny_model, progress=lambda f, msg: seen.append((f, msg)))
    assert len(seen) == 3  # two full chunks, then the rest
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)
    assert seen[-1] == (1.0, f"classified {len(prediction.starts)} segments")


def _traced_peak(path, model) -> tuple[int, int]:
    tracemalloc.start()
    try:
        prediction = predict_file(path, model=model)
        return tracemalloc.get_traced_memory()[1], len(prediction.starts)
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("gain, subtype", [(1.0, "PCM_16"), (3.0, "FLOAT")])  # within and beyond full scale
def test_memory_does_not_grow_with_the_length_of_the_file(tmp_path, tiny_model, gain, subtype):
    """5 and 20 minutes: the longer file's 79 MB more of float32 at 22050 Hz must not show in the peak,
    not even when the song must be scaled by its peak (two passes, never the whole song at once)."""
    rate = 8000  # small files on disk; decoded at the model's 22050 Hz
    piece = chord(60.0, rate) * gain
    paths = {}
    for minutes in (5, 20):
        paths[minutes] = tmp_path / f"{minutes}min.wav"
        with sf.SoundFile(paths[minutes], "w", rate, 1, subtype=subtype) as out:
            for _ in range(minutes):
                out.write(piece)
    predict_file(paths[5], model=tiny_model)  # warm: first-call allocations are not the song's
    short_peak, short_segments = _traced_peak(paths[5], tiny_model)
    long_peak, long_segments = _traced_peak(paths[20], tiny_model)
    assert (short_segments, long_segments) == (100, 400)
    extra_song_bytes = 15 * 60 * tiny_model.config.sample_rate * 4
    assert long_peak - short_peak < extra_song_bytes / 10, (short_peak, long_peak, extra_song_bytes)


@pytest.mark.skipif(find_ffmpeg() is None, reason="no ffmpeg binary (system or imageio-ffmpeg)")
def test_closing_a_stream_early_stops_ffmpeg_and_removes_its_file(tmp_path, monkeypatch):
    import tempfile

    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    wav = tmp_path / "c.wav"
    sf.write(wav, chord(60.0, 44100), 44100)
    m4a = tmp_path / "c.m4a"
    subprocess.run([find_ffmpeg(), "-loglevel", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    processes = []
    real_popen = subprocess.Popen

    def recording_popen(*args, **kwargs):
        processes.append(real_popen(*args, **kwargs))
        return processes[-1]

    monkeypatch.setattr(audio.subprocess, "Popen", recording_popen)
    with open_audio(m4a.read_bytes(), filename="c.m4a") as stream:
        first = next(iter(stream))
        assert len(first) > 0 and list(private.iterdir())  # ffmpeg reads a private temporary copy
    assert processes and processes[0].poll() is not None
    assert list(private.iterdir()) == []


def test_stream_knows_its_length_for_progress(tmp_path):
    path = tmp_path / "c.flac"
    sf.write(path, chord(5.0, 44100), 44100)
    with open_audio(path, sample_rate=22050) as stream:
        assert stream.expected_samples == 5 * 22050
        assert (stream.source_rate, stream.channels) == (44100, 1)
        assert sum(len(block) for block in stream) == len(load_audio(path).samples)


@pytest.mark.parametrize("gain", [1.0, 3.0])  # within and beyond full scale
def test_streaming_never_collects_the_whole_song(tmp_path, tiny_model, monkeypatch, gain):
    path = tmp_path / "c.wav"
    sf.write(path, chord(10.0) * gain, 22050, subtype="FLOAT")

    def refuse(*args, **kwargs):
        raise AssertionError("predict_file decoded the whole song")

    monkeypatch.setattr(audio, "_collect", refuse)
    assert len(predict_file(path, model=tiny_model).starts) == 3


def test_nothing_is_timed_unless_someone_listens(tmp_path, tiny_model):
    """The timing record is the listener's: outside ``record_phases`` the pipeline keeps none, the clock it
    sees reads 0, and a failed call appends nothing to a listener's list."""
    path = tmp_path / "song.wav"
    sf.write(path, chord(7.0, 22050), 22050)
    assert phases.current() is phases.OFF and phases.current().now() == 0.0
    prediction = predict_file(path, model=tiny_model)
    assert not hasattr(prediction, "timings")
    with phases.record_phases() as runs:
        predict_file(path, model=tiny_model)
        with pytest.raises(AudioDecodeError):
            predict_file(b"not audio at all", model=tiny_model, filename="x.wav")
    assert len(runs) == 1 and runs[0]["total"] > 0
    with phases.record_phases() as outer:
        with phases.record_phases() as inner:
            predict_file(path, model=tiny_model)
    assert len(inner) == 1 and outer == []
