import io

import numpy as np
import pytest

from codeFeature import audio
from codeFeature.audio import decode, find_ffmpeg, load_audio
from codeFeature.errors import AudioDecodeError, UnsupportedFormatError
from tests.conftest import NATIVE_FORMATS, chord, write_audio


@pytest.mark.parametrize("fmt", sorted(NATIVE_FORMATS))
def test_each_native_format_decodes_from_path_bytes_and_file(audio_dir, fmt):
    path = audio_dir / f"chord.{fmt}"
    from_path = load_audio(path, sample_rate=22050)
    assert from_path.samples.dtype == np.float32 and from_path.samples.ndim == 1
    assert from_path.source_rate == 44100 and from_path.channels == 2
    # mp3 and ogg encoders add a little padding; the length must still be about 7 s
    assert abs(from_path.duration - 7.0) < 0.1
    from_bytes = decode(path.read_bytes(), sample_rate=22050, filename=path.name)
    from_file = decode(io.BytesIO(path.read_bytes()), sample_rate=22050)
    np.testing.assert_array_equal(from_path.samples, from_bytes)
    np.testing.assert_array_equal(from_path.samples, from_file)


def test_resampling_and_downmix_preserve_the_tone(audio_dir):
    y = decode(audio_dir / "chord.wav", sample_rate=16000)
    assert abs(len(y) - 7 * 16000) <= 2
    spectrum = np.abs(np.fft.rfft(y[:16000]))
    peak_hz = np.argmax(spectrum) * 16000 / 16000
    assert min(abs(peak_hz - f) for f in (220.0, 277.18, 329.63)) < 2


def test_same_file_any_rate_gives_close_signals(tmp_path):
    write_audio(tmp_path / "a.wav", chord(3.0, 48000), 48000)
    write_audio(tmp_path / "b.wav", chord(3.0, 22050), 22050)
    a, b = decode(tmp_path / "a.wav"), decode(tmp_path / "b.wav")
    n = min(len(a), len(b))
    assert np.corrcoef(a[1000:n - 1000], b[1000:n - 1000])[0, 1] > 0.95


@pytest.mark.parametrize("name, match", [
    ("empty.wav", "empty"), ("not_audio.mp3", "could not be decoded"),
])
def test_bad_files_raise_readable_errors(audio_dir, name, match):
    with pytest.raises(AudioDecodeError, match=match):
        load_audio(audio_dir / name)


def test_missing_file(tmp_path):
    with pytest.raises(AudioDecodeError, match="does not exist"):
        load_audio(tmp_path / "nope.wav")


def test_empty_bytes():
    with pytest.raises(AudioDecodeError, match="empty"):
        load_audio(b"", filename="x.mp3")


def test_ffmpeg_format_without_ffmpeg_names_the_missing_piece(monkeypatch):
    monkeypatch.setattr(audio, "find_ffmpeg", lambda: None)
    with pytest.raises(UnsupportedFormatError, match="ffmpeg") as info:
        load_audio(b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 200, filename="song.m4a")
    assert "pip install imageio-ffmpeg" in str(info.value)


@pytest.mark.skipif(find_ffmpeg() is None, reason="no ffmpeg binary (system or imageio-ffmpeg)")
def test_m4a_decodes_through_ffmpeg(tmp_path):
    import subprocess

    wav = write_audio(tmp_path / "c.wav", chord(4.0, 44100), 44100)
    m4a = tmp_path / "c.m4a"
    subprocess.run([find_ffmpeg(), "-loglevel", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    decoded = load_audio(m4a.read_bytes(), filename="c.m4a")
    assert abs(decoded.duration - 4.0) < 0.1
    reference = decode(wav)
    n = min(len(reference), len(decoded.samples)) - 4000
    # aac delays the signal by its priming samples; compare spectra, not samples
    spec_a = np.abs(np.fft.rfft(reference[2000:n]))
    spec_b = np.abs(np.fft.rfft(decoded.samples[2000:n]))
    assert np.corrcoef(spec_a, spec_b)[0, 1] > 0.9


def test_nan_samples_are_repaired_with_a_warning(tmp_path):
    import soundfile as sf

    y = chord(2.0)
    y[100:200] = np.nan
    y[300] = np.inf
    sf.write(tmp_path / "nan.wav", y, 22050, subtype="FLOAT")
    decoded = load_audio(tmp_path / "nan.wav")
    assert np.isfinite(decoded.samples).all()
    assert any("NaN" in w for w in decoded.warnings)


def test_silence_is_a_warning_not_an_error(tmp_path):
    write_audio(tmp_path / "silence.wav", np.zeros(22050 * 4, np.float32))
    decoded = load_audio(tmp_path / "silence.wav")
    assert any("silent" in w for w in decoded.warnings)


def test_max_seconds_refuses_long_audio_from_its_header_and_keeps_short_audio_identical(tmp_path):
    import soundfile as sf

    from codeFeature import load_audio
    from codeFeature.errors import AudioTooLongError, GenreError

    long_song, short_song = tmp_path / "long.wav", tmp_path / "short.wav"
    sf.write(long_song, np.zeros(8000 * 95, np.float32), 8000)
    sf.write(short_song, np.full(8000 * 5, 0.1, np.float32), 8000)
    with pytest.raises(AudioTooLongError, match="long.wav is 1 min 35 s long; up to 1 min 30 s of audio") as refused:
        load_audio(long_song, sample_rate=8000, max_seconds=90)
    assert isinstance(refused.value, GenreError)
    limited = load_audio(short_song, sample_rate=8000, max_seconds=90)
    np.testing.assert_array_equal(limited.samples, load_audio(short_song, sample_rate=8000).samples)
