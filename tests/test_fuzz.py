"""Fuzzing the decoder and the whole prediction path with mutated audio bytes (hypothesis).

Seeds are real wav / flac / ogg / mp3 (and m4a, with ffmpeg) files; hypothesis flips bits, overwrites
bytes, truncates, and splices two seeds together. Whatever comes out, the library may only
raise a :class:`GenreError` (or return audio), and each case must finish within a time bound.

The decoder runs thousands of cases: libsndfile-only (ffmpeg hidden) for speed, then a few hundred
with the ffmpeg fallback. The whole path (decode, segment, features, model) runs fewer.
``FUZZ_SCALE`` multiplies every count (e.g. ``FUZZ_SCALE=10`` for a long local run); the cases are
the same on every run (derandomised) unless ``FUZZ_RANDOM=1``.
"""

from __future__ import annotations

import io
import os
import time

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codeFeature import audio
from codeFeature.audio import find_ffmpeg, load_audio
from codeFeature.errors import GenreError
from codeFeature.predict import predict_file
from tests.conftest import chord

SCALE = float(os.environ.get("FUZZ_SCALE", "1"))
#: Seconds one decode may take: a guard against hangs, not a speed figure. The slowest of the 250 ffmpeg
#: cases took 0.26 s on an idle 2-core EPYC and 6 s while other jobs loaded both cores.
DECODE_BOUND_S = 30.0
PREDICT_BOUND_S = 15.0


def _n(count: int) -> int:
    return max(1, int(count * SCALE))


def _encode(fmt: str, subtype: str, seconds: float = 1.2, rate: int = 22050, channels: int = 1) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, chord(seconds, rate, channels=channels), rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def _seeds() -> dict[str, bytes]:
    seeds = {
        ".wav": _encode("WAV", "PCM_16"),
        ".flac": _encode("FLAC", "PCM_16", channels=2),
        ".ogg": _encode("OGG", "VORBIS", rate=44100),
        ".mp3": _encode("MP3", "MPEG_LAYER_III", rate=44100, channels=2),
        ".aiff": _encode("AIFF", "PCM_24"),
    }
    ffmpeg = find_ffmpeg()
    if ffmpeg is not None:
        import subprocess

        done = subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-f", "wav", "-i", "-", "-c:a", "aac",
                               "-f", "ipod", "-"], input=seeds[".wav"], capture_output=True, timeout=60)
        if done.returncode == 0 and done.stdout:
            seeds[".m4a"] = done.stdout
    return seeds


SEEDS = _seeds()
EXTENSIONS = sorted(SEEDS)


@st.composite
def mutated(draw, extensions=EXTENSIONS):
    """(file name, bytes): a seed with a few mutations; header bytes are mutated more often."""
    ext = draw(st.sampled_from(extensions))
    data = bytearray(SEEDS[ext])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "flip_header", "overwrite", "int_field", "truncate", "splice",
                                     "insert", "delete"]))
        if not data:
            break
        n = len(data)
        if kind == "flip":
            at = draw(st.integers(0, n - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "flip_header":
            at = draw(st.integers(0, min(n, 128) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            at = draw(st.integers(0, min(n, 256) - 1))
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at: at + len(chunk)] = chunk
        elif kind == "int_field":
            # a header field (rate, channels, sizes) set to an extreme: the values hostile files use
            at = 4 * draw(st.integers(0, max(0, min(n, 64) // 4 - 1)))  # header fields are aligned
            value = draw(st.sampled_from([0, 1, 2, 7, 1000, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF])
                         | st.integers(0, 2**32 - 1))
            data[at: at + 4] = value.to_bytes(4, "little")
        elif kind == "truncate":
            data = data[: draw(st.integers(0, n))]
        elif kind == "splice":
            other = SEEDS[draw(st.sampled_from(EXTENSIONS))]
            cut, cut_other = draw(st.integers(0, n)), draw(st.integers(0, len(other)))
            data = data[:cut] + other[cut_other:]
        elif kind == "insert":
            at = draw(st.integers(0, n))
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:
            at = draw(st.integers(0, n - 1))
            del data[at: at + draw(st.integers(1, 64))]
    name_ext = draw(st.sampled_from([ext, ext, ".wav", ".mp3", ".m4a", ".bin"]))
    return "fuzz" + name_ext, bytes(data)


def _decode_checked(name: str, data: bytes) -> None:
    started = time.perf_counter()
    try:
        decoded = load_audio(data, sample_rate=22050, filename=name)
    except GenreError as exc:
        assert str(exc), "a GenreError must carry a message"
    else:
        assert decoded.samples.dtype == np.float32 and decoded.samples.ndim == 1
        assert decoded.samples.size > 0
        assert np.isfinite(decoded.samples).all()
        assert np.abs(decoded.samples).max() <= 1.0 + 1e-6
    elapsed = time.perf_counter() - started
    assert elapsed < DECODE_BOUND_S, f"decoding {len(data)} mutated bytes of {name} took {elapsed:.1f} s"


FAST = dict(deadline=None, derandomize=os.environ.get("FUZZ_RANDOM") != "1", database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@settings(max_examples=_n(2500), **FAST)
@given(mutated())
def test_decoder_without_ffmpeg_raises_only_genre_errors(sample):
    name, data = sample
    real = audio.find_ffmpeg
    audio.find_ffmpeg = lambda: None  # libsndfile only: thousands of cases in seconds
    try:
        _decode_checked(name, data)
    finally:
        audio.find_ffmpeg = real


@pytest.mark.skipif(find_ffmpeg() is None, reason="no ffmpeg binary (system or imageio-ffmpeg)")
@settings(max_examples=_n(250), **FAST)
@given(mutated())
def test_decoder_with_ffmpeg_fallback_raises_only_genre_errors(sample):
    _decode_checked(*sample)


@settings(max_examples=_n(1000), **FAST)
@given(st.binary(max_size=2048), st.sampled_from([".wav", ".flac", ".ogg", ".mp3", ".aiff", ".au"]))
def test_random_bytes_never_crash_the_decoder(data, ext):
    real = audio.find_ffmpeg
    audio.find_ffmpeg = lambda: None
    try:
        if data:
            _decode_checked("random" + ext, data)
    finally:
        audio.find_ffmpeg = real


@settings(max_examples=_n(60), **FAST)
@given(mutated())
def test_whole_prediction_path_raises_only_genre_errors(tiny_model, sample):
    name, data = sample
    started = time.perf_counter()
    try:
        prediction = predict_file(data, model=tiny_model, filename=name)
    except GenreError as exc:
        assert str(exc)
    else:
        assert prediction.genre in prediction.labels
        assert np.isfinite(prediction.probabilities).all()
        np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1, atol=1e-4)
    elapsed = time.perf_counter() - started
    assert elapsed < PREDICT_BOUND_S, f"classifying {len(data)} mutated bytes of {name} took {elapsed:.1f} s"
