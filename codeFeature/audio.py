"""Decode a path or in-memory bytes to float32 mono at the configured rate.

soundfile (libsndfile, bundled with its wheel) reads wav, flac, ogg/opus and mp3
with no system package. Anything else (m4a, aac, wma, ...) goes through an
ffmpeg binary: the one on ``PATH`` or, failing that, the one the
``imageio-ffmpeg`` wheel ships. ffmpeg is called directly rather than through
pydub because pydub also needs ``ffprobe``, which that wheel does not ship.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import soundfile as sf
import soxr

from .errors import AudioDecodeError, ConfigError, UnsupportedFormatError

Source = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]

#: Extensions libsndfile decodes without ffmpeg.
NATIVE_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au")
#: Extensions that need ffmpeg.
FFMPEG_EXTENSIONS = (".m4a", ".mp4", ".aac", ".wma", ".webm", ".mka", ".amr", ".ac3", ".3gp")
SUPPORTED_EXTENSIONS = NATIVE_EXTENSIONS + FFMPEG_EXTENSIONS

#: Samples (frames x channels) read at a time: long files are downmixed and resampled block by block,
#: so a one-hour 44.1 kHz stereo file never sits in memory at full rate, and a header claiming
#: hundreds of channels cannot make one block huge.
_BLOCK_SAMPLES = 1 << 18
#: Longest audio analysed, in seconds; beyond it only the beginning is decoded, with a warning.
#: Bounds memory and time whatever a header claims (two hours: ~635 MB of float32 at 22050 Hz).
MAX_SECONDS = 2 * 3600
#: Source rates outside this range (Hz) are a corrupt or hostile header, not audio.
SOURCE_RATE_RANGE = (1000, 768000)
_FFMPEG_TIMEOUT_S = 600
_CLIP_LEVEL = 0.999


@dataclass
class DecodedAudio:
    """Decoded mono audio and what was noticed on the way.

    Attributes
    ----------
    samples : np.ndarray, shape (n_samples,), float32
        Mono signal at ``sample_rate``.
    sample_rate : int
        Rate of ``samples`` in Hz.
    source_rate : int
        Rate of the file before resampling.
    channels : int
        Channels in the file before the downmix.
    warnings : list of str
        Readable notes (silence, clipping, repaired samples); not errors.
    """

    samples: np.ndarray
    sample_rate: int
    source_rate: int
    channels: int
    warnings: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / float(self.sample_rate)


def find_ffmpeg() -> str | None:
    """Path of an ffmpeg binary: ``PATH`` first, then the ``imageio-ffmpeg`` wheel's; ``None`` if neither."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        return None


def load_audio(source: Source, *, sample_rate: int = 22050, filename: str | None = None) -> DecodedAudio:
    """Decode ``source`` to float32 mono at ``sample_rate``.

    Parameters
    ----------
    source : path-like, bytes or binary file object
        The audio. A Streamlit ``UploadedFile`` is a binary file object.
    sample_rate : int
        Target rate in Hz; resampling uses soxr (high quality).
    filename : str, optional
        Name used in messages and to guess the format of in-memory input.

    Returns
    -------
    DecodedAudio

    Raises
    ------
    AudioDecodeError
        If the input is not audio any decoder can read, or is empty.
    UnsupportedFormatError
        If the format needs ffmpeg and no ffmpeg binary is available.

    Notes
    -----
    Only the first :data:`MAX_SECONDS` (two hours) are decoded, with a warning; a header claiming a
    rate outside :data:`SOURCE_RATE_RANGE` is refused, whatever the file's size.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ConfigError(f"sample_rate={sample_rate!r} must be a positive integer number of Hz")
    path, data, name = _normalise_source(source, filename)
    if data is not None and len(data) == 0:
        raise AudioDecodeError(f"{name} is empty (0 bytes)")
    if path is not None:
        if not path.is_file():
            raise AudioDecodeError(f"{name} does not exist or is not a file")
        if path.stat().st_size == 0:
            raise AudioDecodeError(f"{name} is empty (0 bytes)")
    try:
        decoded = _decode_soundfile(path if path is not None else io.BytesIO(data), sample_rate)
    except _NotForSoundfile as native_failure:
        decoded = _decode_ffmpeg(path, data, name, sample_rate, native_failure.reason)
    return _inspect(decoded, name)


def decode(source: Source, *, sample_rate: int = 22050, filename: str | None = None) -> np.ndarray:
    """Shortcut for ``load_audio(...).samples``: float32 mono, shape (n_samples,)."""
    return load_audio(source, sample_rate=sample_rate, filename=filename).samples


class _NotForSoundfile(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _normalise_source(source: Source, filename: str | None) -> tuple[Path | None, bytes | None, str]:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        return path, None, filename or path.name
    if isinstance(source, (bytes, bytearray, memoryview)):
        return None, bytes(source), filename or "the uploaded audio"
    if hasattr(source, "read"):
        name = filename or getattr(source, "name", None) or "the uploaded audio"
        if hasattr(source, "getvalue"):
            data = source.getvalue()
        else:
            if hasattr(source, "seek"):
                source.seek(0)
            data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise ConfigError(f"source={source!r} must be opened in binary mode")
        return None, bytes(data), os.path.basename(str(name))
    raise ConfigError(f"source must be a path, bytes or a binary file object, not {type(source).__name__}")


def _decode_soundfile(handle: Path | io.BytesIO, sample_rate: int) -> DecodedAudio:
    try:
        sound = sf.SoundFile(handle if isinstance(handle, io.BytesIO) else str(handle))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise _NotForSoundfile(str(exc)) from exc
    with sound:
        source_rate, channels = int(sound.samplerate), int(sound.channels)
        if channels <= 0 or not SOURCE_RATE_RANGE[0] <= source_rate <= SOURCE_RATE_RANGE[1]:
            raise AudioDecodeError(f"the header claims {channels} channels at {source_rate} Hz, which is not "
                                   f"playable audio (rates from {SOURCE_RATE_RANGE[0]} to {SOURCE_RATE_RANGE[1]} Hz "
                                   "are accepted); the file is probably damaged")
        block_frames = max(1, _BLOCK_SAMPLES // channels)
        frames_left = MAX_SECONDS * source_rate
        resampler = None if source_rate == sample_rate else soxr.ResampleStream(
            source_rate, sample_rate, 1, dtype="float32", quality="HQ")
        pieces, notes = [], []
        try:
            while True:
                block = sound.read(min(block_frames, frames_left), dtype="float32", always_2d=True)
                frames_left -= len(block)
                last = len(block) < block_frames or frames_left <= 0
                mono = _downmix(block)
                pieces.append(resampler.resample_chunk(mono, last=last) if resampler else mono)
                if last:
                    break
            if frames_left <= 0 and sound.seekable() and sound.tell() < sound.frames:
                notes.append(f"the audio is longer than {MAX_SECONDS / 3600:g} hours; only the first "
                             f"{MAX_SECONDS / 3600:g} hours were analysed")
        except (sf.LibsndfileError, RuntimeError) as exc:
            if not pieces:
                raise _NotForSoundfile(str(exc)) from exc
            # a truncated file: keep what decoded and say so
            if resampler is not None:
                pieces.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
            notes.append(f"the file is damaged after {sum(map(len, pieces)) / sample_rate:.1f} s; "
                         f"only that part was analysed ({exc})")
    samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return DecodedAudio(samples.astype(np.float32, copy=False), sample_rate, source_rate, channels, notes)


def _downmix(block: np.ndarray) -> np.ndarray:
    if block.shape[1] == 1:
        return np.ascontiguousarray(block[:, 0])
    if block.shape[1] == 2:
        # bit-identical to mean(axis=1) for two channels, and 8x faster on interleaved data
        return (block[:, 0] + block[:, 1]) * np.float32(0.5)
    return block.mean(axis=1, dtype=np.float32)


def _decode_ffmpeg(path: Path | None, data: bytes | None, name: str, sample_rate: int, native_reason: str) -> DecodedAudio:
    suffix = Path(name).suffix.lower()
    ffmpeg = find_ffmpeg()
    if ffmpeg is None:
        if suffix in NATIVE_EXTENSIONS or suffix not in FFMPEG_EXTENSIONS:
            raise AudioDecodeError(f"{name} could not be decoded as audio ({native_reason}); "
                                   f"supported formats are {', '.join(e[1:] for e in NATIVE_EXTENSIONS)}"
                                   " (and m4a, aac, wma and more with ffmpeg)")
        raise UnsupportedFormatError(
            f"{name} needs ffmpeg to decode {suffix or 'this format'}, and no ffmpeg binary was found: "
            "install ffmpeg (for example `apt install ffmpeg` or `brew install ffmpeg`) or `pip install imageio-ffmpeg`, "
            "or convert the file to wav, flac, ogg or mp3")
    tmp = None
    try:
        if path is None:
            # a real file, not a pipe: mp4/m4a keep their index at the end and need seeking
            safe_suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""
            handle, tmp = tempfile.mkstemp(prefix="codefeature-", suffix=safe_suffix)
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            input_path = tmp
        else:
            input_path = str(path)
        command = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", input_path,
                   "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(sample_rate), "-t", str(MAX_SECONDS),
                   "-f", "f32le", "-"]
        try:
            result = subprocess.run(command, capture_output=True, timeout=_FFMPEG_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as exc:
            raise AudioDecodeError(f"ffmpeg took longer than {_FFMPEG_TIMEOUT_S} s to decode {name}") from exc
        except OSError as exc:
            raise UnsupportedFormatError(f"ffmpeg at {ffmpeg} could not be run: {exc}") from exc
    finally:
        if tmp is not None:
            os.unlink(tmp)
    if result.returncode != 0 or not result.stdout:
        stderr = result.stderr.decode("utf-8", "replace")
        detail = stderr.strip().splitlines()
        reason = detail[-1] if detail else f"exit code {result.returncode}"
        if "matches no streams" in stderr or "does not contain any stream" in stderr:
            reason = "it contains no audio stream"
        elif result.returncode == 0:
            reason = "it contains no audio samples"
        raise AudioDecodeError(f"{name} could not be decoded as audio: {reason}")
    samples = np.frombuffer(result.stdout[: len(result.stdout) // 4 * 4], dtype="<f4").astype(np.float32)
    notes = []
    if len(samples) >= MAX_SECONDS * sample_rate:
        notes.append(f"the audio is longer than {MAX_SECONDS / 3600:g} hours; only the first "
                     f"{MAX_SECONDS / 3600:g} hours were analysed")
    # ffmpeg reports neither rate nor channels on this path; the target rate is what matters downstream
    return DecodedAudio(samples, sample_rate, sample_rate, 0, notes)


def _inspect(decoded: DecodedAudio, name: str) -> DecodedAudio:
    samples = decoded.samples
    if samples.size == 0:
        raise AudioDecodeError(f"{name} holds no audio samples")
    finite = np.isfinite(samples)
    if not finite.all():
        bad = int(samples.size - finite.sum())
        samples = np.where(finite, samples, np.float32(0.0)).astype(np.float32)
        decoded.warnings.append(f"{bad} samples were NaN or infinite and were set to 0")
    peak = float(np.max(np.abs(samples)))
    if peak > 1.0:
        # float files may exceed full scale; features assume [-1, 1]
        samples = samples / np.float32(peak)
        decoded.warnings.append(f"the signal exceeded full scale (peak {peak:.3g}) and was normalised")
    # a dot product, not mean(square(...)): no song-sized temporary
    rms = float(np.sqrt(np.dot(samples, samples) / samples.size))
    if peak == 0.0 or rms < 1e-4:
        decoded.warnings.append("the audio is silent or nearly so; the genre is a guess")
    elif np.mean(np.abs(samples) >= _CLIP_LEVEL) > 0.01:
        decoded.warnings.append("more than 1% of the samples are clipped; the prediction may suffer")
    decoded.samples = np.ascontiguousarray(samples, dtype=np.float32)
    return decoded
