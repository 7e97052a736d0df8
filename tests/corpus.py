"""A corpus of bad and odd inputs, generated in a temporary folder (no audio is committed).

Every :class:`Case` names a file the tests write, and what must happen to it:
``expect="ok"`` (classified, optionally with a warning containing ``fragment`` and a known number of
segments) or an exception class from :mod:`codeFeature.errors` whose message contains ``fragment``.
The same table drives the library, the CLI and the app tests (``tests/test_robustness.py``).

    python -m tests.corpus OUT_DIR        # write the corpus somewhere to look at it
"""

from __future__ import annotations

import io
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import soundfile as sf

from codeFeature.audio import find_ffmpeg
from codeFeature.errors import AudioDecodeError, AudioTooShortError, GenreError, UnsupportedFormatError
from tests.conftest import chord

SR = 22050  # the default model rate
#: The name of the 60-minute case, built lazily because it is ~159 MB.
LONG_CASE = "sixty_minutes"
LONG_SECONDS = 3600


@dataclass
class Case:
    """One input and its documented outcome.

    Attributes
    ----------
    name : str
        Identifier (pytest id).
    filename : str
        File name on disk, inside the corpus folder.
    make : callable(Path) -> None
        Writes the file.
    expect : "ok" or a GenreError subclass
    fragment : str
        For an error: a piece of its message. For "ok": a piece of one of its warnings ("" = none required).
    segments : int, optional
        For "ok": the number of segments the song is cut into (at the model's 22050 Hz, 3 s).
    upload_name : str, optional
        Name the app / in-memory library call sees, when it differs from ``filename``
        (names with ``/`` cannot exist on disk).
    app : bool
        Part of the representative subset uploaded to the app.
    """

    name: str
    filename: str
    make: Callable[[Path], None]
    expect: object = "ok"
    fragment: str = ""
    segments: Optional[int] = None
    upload_name: Optional[str] = None
    app: bool = False
    path: Optional[Path] = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.expect == "ok"

    @property
    def shown_name(self) -> str:
        return self.upload_name or self.filename


# ---------------------------------------------------------------- signals

def _write(y, sample_rate=SR, *, fmt="WAV", subtype="PCM_16"):
    def make(path: Path) -> None:
        sf.write(path, y() if callable(y) else y, sample_rate, format=fmt, subtype=subtype)
    return make


def _encoded(y: np.ndarray, sample_rate: int, fmt: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, y, sample_rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


def _bytes(data) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.write_bytes(data() if callable(data) else data)
    return make


def png_bytes(size: int = 64) -> bytes:
    """A real PNG image (random pixels), ``size`` x ``size``."""
    from PIL import Image

    pixels = np.random.default_rng(1).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def id3v2_tag(title: str = "Corpus song", cover: bytes | None = None) -> bytes:
    """An ID3v2.3 tag, written by hand: a TIT2 title frame and an APIC front cover."""
    def frame(frame_id: bytes, body: bytes) -> bytes:
        return frame_id + struct.pack(">I", len(body)) + b"\x00\x00" + body

    frames = frame(b"TIT2", b"\x00" + title.encode("latin-1"))
    if cover is not None:
        frames += frame(b"APIC", b"\x00" + b"image/png\x00" + b"\x03" + b"cover\x00" + cover)
    frames += b"\x00" * 256  # padding, as taggers leave
    size = len(frames)
    synchsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x03\x00\x00" + synchsafe + frames


def _wav_lying_about_size() -> bytes:
    """RIFF and data chunk sizes claim ~2 GB; the file holds 5 s."""
    data = bytearray(_encoded(chord(5.0), SR, "WAV", "PCM_16"))
    data[4:8] = struct.pack("<I", 0x7FFFFFF0)
    at = data.index(b"data")
    data[at + 4: at + 8] = struct.pack("<I", 0x7FFFFFD0)
    return bytes(data)


def _wav_claiming_zero_rate() -> bytes:
    """A wav header whose sample rate is 0 and byte rate is 0."""
    data = bytearray(_encoded(chord(2.0), SR, "WAV", "PCM_16"))
    at = data.index(b"fmt ")
    data[at + 12: at + 16] = struct.pack("<I", 0)   # sample rate
    data[at + 16: at + 20] = struct.pack("<I", 0)   # byte rate
    return bytes(data)


def _wav_data_cut() -> bytes:
    """A 7 s wav cut after 4.5 s, mid-sample (an odd byte count)."""
    data = _encoded(chord(7.0), SR, "WAV", "PCM_16")
    return data[: 44 + int(4.5 * SR) * 2 + 1]


def _mp3(seconds=7.0, sample_rate=44100, channels=2) -> bytes:
    return _encoded(chord(seconds, sample_rate, channels=channels), sample_rate, "MP3", "MPEG_LAYER_III")


def _nan_inf() -> np.ndarray:
    y = chord(4.0).copy()
    y[1000:1100] = np.nan
    y[5000:5010] = np.inf
    y[9000:9010] = -np.inf
    return y


def _noise(seconds, amplitude, seed=2) -> np.ndarray:
    return (amplitude * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def write_long_wav(path: Path, seconds: int = LONG_SECONDS) -> None:
    """Low-amplitude noise as 22050 Hz mono PCM16, written block by block (~159 MB for an hour)."""
    n = seconds * SR
    rng = np.random.default_rng(3)
    with sf.SoundFile(path, "w", samplerate=SR, channels=1, format="WAV", subtype="PCM_16") as out:
        block = 60 * SR
        for lo in range(0, n, block):
            out.write(rng.integers(-300, 300, min(block, n - lo), dtype=np.int16))


def _ffmpeg_encode(codec_args: list[str]) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        ffmpeg = find_ffmpeg()
        source = path.with_suffix(".src.wav")
        sf.write(source, chord(5.0, 44100, channels=2), 44100, subtype="PCM_16")
        try:
            if ffmpeg is None:
                # no encoder: write a plausible m4a header so the decoder is asked for it anyway
                path.write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A mp42isom" + b"\x00" * 400)
                return
            subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(source), *codec_args,
                            str(path)], check=True, timeout=60)
        finally:
            source.unlink()
    return make


FUNNY_NAME = "my song – ünïcødé 日本語 $(touch pwned); `id` & rm -rf ~ 'q' \"dq\" #1 %s.wav"


def cases() -> list[Case]:
    """The whole corpus, in a fixed order."""
    has_ffmpeg = find_ffmpeg() is not None
    m4a = (Case("m4a_aac", "aac.m4a", _ffmpeg_encode(["-c:a", "aac", "-b:a", "96k"]), "ok", segments=2, app=True)
           if has_ffmpeg else
           Case("m4a_aac", "aac.m4a", _ffmpeg_encode([]), UnsupportedFormatError, "ffmpeg", app=True))
    return [
        # not audio at all
        Case("empty", "empty.wav", _bytes(b""), AudioDecodeError, "empty (0 bytes)", app=True),
        Case("one_byte", "one_byte.mp3", _bytes(b"\xff"), AudioDecodeError, "could not be decoded"),
        Case("text_as_wav", "text.wav", _bytes(b"Hello, this is a text file, not a song.\n" * 40),
             AudioDecodeError, "could not be decoded"),
        Case("png_as_mp3", "cover.mp3", _bytes(png_bytes), AudioDecodeError, "could not be decoded", app=True),
        Case("png_as_m4a", "cover.m4a", _bytes(png_bytes), AudioDecodeError, "could not be decoded"),
        Case("directory_named_wav", "folder.wav", lambda p: p.mkdir(), AudioDecodeError, "not a file"),
        # damaged audio
        Case("truncated_mp3", "truncated.mp3", _bytes(lambda: _mp3()[: len(_mp3()) * 6 // 10]), "ok", app=True),
        Case("mp3_header_only", "header_only.mp3", _bytes(lambda: _mp3()[:200]), AudioDecodeError,
             "could not be decoded"),
        Case("wav_lying_header", "lying_header.wav", _bytes(_wav_lying_about_size), "ok", segments=2),
        Case("wav_zero_rate", "zero_rate.wav", _bytes(_wav_claiming_zero_rate), AudioDecodeError,
             "could not be decoded"),
        Case("wav_data_cut", "data_cut.wav", _bytes(_wav_data_cut), "ok", segments=2),
        Case("mp3_id3_cover", "tagged.mp3", _bytes(lambda: id3v2_tag(cover=png_bytes(160)) + _mp3()), "ok",
             segments=2, app=True),
        # durations (0.5 s is the shortest classified; shorter than 3 s is padded, with a warning when the
        # repeat is more than a tenth of the segment)
        Case("clip_0.2s", "clip_0.2s.wav", _write(chord(0.2)), AudioTooShortError, "at least 0.5 s", app=True),
        Case("clip_1s", "clip_1s.wav", _write(chord(1.0)), "ok", "padded", segments=1),
        Case("clip_2.5s", "clip_2.5s.wav", _write(chord(2.5)), "ok", "padded", segments=1),
        Case("clip_2.9s", "clip_2.9s.wav", _write(chord(2.9)), "ok", segments=1),
        Case("clip_3.1s", "clip_3.1s.wav", _write(chord(3.1)), "ok", segments=1),
        # odd content
        Case("silence", "silence.wav", _write(np.zeros(5 * SR, np.float32)), "ok", "silent", segments=2, app=True),
        Case("dc", "dc.wav", _write(np.full(5 * SR, 0.5, np.float32)), "ok", segments=2),
        Case("full_scale_clipping", "clipping.wav", _write(np.clip(chord(5.0) * 20, -1, 1)), "ok", "clipped",
             segments=2),
        Case("white_noise", "noise.wav", _write(np.clip(_noise(5.0, 0.3), -1, 1)), "ok", segments=2),
        Case("nan_inf_float", "nan_inf.wav", _write(_nan_inf, subtype="FLOAT"), "ok", "NaN", segments=1,
             app=True),
        Case("all_nan_float", "all_nan.wav", _write(np.full(4 * SR, np.nan, np.float32), subtype="FLOAT"), "ok",
             "silent", segments=1),
        Case("float_over_full_scale", "loud_float.wav", _write(chord(4.0) * 8, subtype="FLOAT"), "ok",
             "full scale", segments=1),
        # sample formats
        *[Case(f"wav_{sub.lower()}", f"{sub.lower()}.wav", _write(chord(4.0), subtype=sub), "ok", segments=1)
          for sub in ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")],
        # rates
        *[Case(f"rate_{rate}", f"rate_{rate}.wav", _write(chord(4.0, rate), rate), "ok", segments=1)
          for rate in (8000, 44100, 48000, 96000)],
        # channels
        Case("mono", "mono.wav", _write(chord(4.0)), "ok", segments=1),
        Case("stereo", "stereo.wav", _write(chord(4.0, channels=2)), "ok", segments=1),
        Case("six_channels", "six_channels.wav", _write(chord(4.0, channels=6)), "ok", segments=1, app=True),
        # containers
        Case("ogg_vorbis", "vorbis.ogg", _write(chord(7.0, 44100, channels=2), 44100, fmt="OGG", subtype="VORBIS"), "ok",
             segments=2),
        Case("flac", "lossless.flac", _write(chord(7.0, 44100, channels=2), 44100, fmt="FLAC", subtype="PCM_24"), "ok",
             segments=2),
        Case("mp3", "plain.mp3", _write(chord(7.0, 44100, channels=2), 44100, fmt="MP3", subtype="MPEG_LAYER_III"), "ok",
             segments=2, app=True),
        m4a,
        Case("wav_named_flac", "really_wav.flac", _write(chord(4.0)), "ok", segments=1),
        # names
        Case("funny_name", FUNNY_NAME, _write(chord(4.0)), "ok", segments=1,
             upload_name="../../" + FUNNY_NAME, app=True),
        Case("traversal_name_ffmpeg", "traversal.m4a", _ffmpeg_encode(["-c:a", "aac"]) if has_ffmpeg else
             _ffmpeg_encode([]), "ok" if has_ffmpeg else UnsupportedFormatError, "" if has_ffmpeg else "ffmpeg",
             segments=2 if has_ffmpeg else None, upload_name="../../../tmp/evil/..%2f$(id).m4a"),
        # a DJ set
        Case(LONG_CASE, "sixty_minutes.wav", write_long_wav, "ok", segments=LONG_SECONDS // 3),
    ]


def build(folder: Path, *, include_long: bool = True) -> list[Case]:
    """Write every case into ``folder`` and return the cases, with ``path`` set."""
    folder.mkdir(parents=True, exist_ok=True)
    built = []
    for case in cases():
        if case.name == LONG_CASE and not include_long:
            continue
        case.path = folder / case.filename
        case.make(case.path)
        built.append(case)
    return built


def describe(case: Case) -> str:
    if case.ok:
        return "classified" + (f" (warning: {case.fragment})" if case.fragment else "")
    assert issubclass(case.expect, GenreError)
    return f"{case.expect.__name__}" + (f": {case.fragment}" if case.fragment else "")


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")
    for c in build(out):
        print(f"{c.name:24s} {describe(c)}")
