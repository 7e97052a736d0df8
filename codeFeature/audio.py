"""Decode a path or in-memory bytes to float32 mono at the configured rate.

soundfile (libsndfile, bundled with its wheel) reads wav, flac, ogg/opus and mp3
with no system package. Anything else (m4a, aac, wma, ...) goes through an
ffmpeg binary: the one on ``PATH`` or, failing that, the one the
``imageio-ffmpeg`` wheel ships. ffmpeg is called directly rather than through
pydub because pydub also needs ``ffprobe``, which that wheel does not ship.

Two ways in: :func:`load_audio` returns the whole signal; :func:`open_audio` yields
it block by block, so that :func:`codeFeature.predict.predict_file` classifies an
hour-long file without ever holding it (both decode the same samples).
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator, Optional, Union

import numpy as np
import soundfile as sf

from .errors import AudioDecodeError, AudioTooLongError, ConfigError, NotRegularFileError, UnsupportedFormatError
from .level import measure, scaling_warnings
from .regular_file import fd_path, open_regular
from .resample import stream_resampler

log = logging.getLogger(__name__)

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


def load_audio(source: Source, *, sample_rate: int = 22050, filename: str | None = None,
               max_seconds: float | None = None) -> DecodedAudio:
    """Decode ``source`` to float32 mono at ``sample_rate``.

    Parameters
    ----------
    source : path-like, bytes or binary file object
        The audio. A Streamlit ``UploadedFile`` is a binary file object.
    sample_rate : int
        Target rate in Hz; resampling uses soxr (high quality).
    filename : str, optional
        Name used in messages and to guess the format of in-memory input.
    max_seconds : float, optional
        Refuse audio longer than this: from its header before decoding where the header gives a length,
        else as soon as decoding passes it, so a long file is never decoded whole. Default: no limit but
        :data:`MAX_SECONDS`, past which the rest is cut with a warning.

    Returns
    -------
    DecodedAudio

    Raises
    ------
    AudioDecodeError
        If the input is not audio any decoder can read, or is empty.
    UnsupportedFormatError
        If the format needs ffmpeg and no ffmpeg binary is available.
    AudioTooLongError
        If the audio is longer than ``max_seconds``.

    Notes
    -----
    Only the first :data:`MAX_SECONDS` (two hours) are decoded, with a warning; a header claiming a
    rate outside :data:`SOURCE_RATE_RANGE` is refused, whatever the file's size.
    """
    with open_audio(source, sample_rate=sample_rate, filename=filename) as stream:
        limit = None if max_seconds is None else int(max_seconds * sample_rate)
        if limit is not None and stream.expected_samples is not None and stream.expected_samples > limit:
            raise _too_long(stream.name, max_seconds, stream.expected_samples / sample_rate)
        samples = _collect(stream, limit=limit)
        if samples is None:
            raise _too_long(stream.name, max_seconds, None)
        decoded = DecodedAudio(samples, sample_rate, stream.source_rate, stream.channels, list(stream.warnings))
    return _inspect(decoded, stream.name)


def _span(seconds: int) -> str:
    """``95`` -> ``"1 min 35 s"``, ``7500`` -> ``"2 h 5 min"``: a length a person reads at a glance."""
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    if minutes:
        return f"{minutes} min" + (f" {secs} s" if secs else "")
    return f"{secs} s"


def _too_long(name: str, max_seconds: float, seconds: float | None) -> AudioTooLongError:
    # the length rounded up and the limit down, so that the words never make a refused song look short enough
    limit = _span(math.floor(max_seconds))
    length = f"{_span(math.ceil(seconds))} long" if seconds else f"longer than {limit}"
    return AudioTooLongError(f"{name} is {length}; up to {limit} of audio is analysed here. "
                             "Cut the part you want classified")


class AudioStream:
    """An open audio source, decoded block by block: iterate it for float32 mono blocks.

    Made by :func:`open_audio`; use it as a context manager so that the file, the ffmpeg
    process and any temporary file are released even when iteration stops early.

    Attributes
    ----------
    name : str
        Name used in messages.
    sample_rate : int
        Rate of the blocks in Hz.
    source_rate : int
        Rate of the file before resampling (the target rate where ffmpeg decodes).
    channels : int
        Channels before the downmix (0 where ffmpeg decodes: it does not say).
    expected_samples : int or None
        The header's length at ``sample_rate``, for progress; ``None`` when unknown. Not a promise.
    warnings : list of str
        The decoder's notes (a damaged tail, a file beyond :data:`MAX_SECONDS`), complete once the
        blocks are exhausted. Level checks (silence, clipping) are the caller's: see :class:`codeFeature.level.LevelMeter`.
    resample_seconds : float
        Time spent so far in the resampler, within the time the blocks took to come (0 where ffmpeg
        resamples, inside its decode): lets :func:`codeFeature.predict.predict_file` report it apart.
    """

    def __init__(self, blocks: Iterator[np.ndarray], *, name: str, sample_rate: int, source_rate: int,
                 channels: int, expected_samples: Optional[int], warnings: list[str],
                 clock: Optional[list] = None):
        self._blocks = blocks
        self.name, self.sample_rate, self.source_rate, self.channels = name, sample_rate, source_rate, channels
        self.expected_samples = expected_samples
        self.warnings = warnings
        self._clock = clock if clock is not None else [0.0]
        self._kept: Optional[list[np.ndarray]] = None
        self._whole = False

    @property
    def resample_seconds(self) -> float:
        return self._clock[0]

    def keep(self, max_samples: int) -> None:
        """Keep a copy of each block iterated from now on, while they total at most ``max_samples``, so
        that :meth:`replay` can give them again without decoding the source twice. Call before iterating."""
        self._kept, self._whole = [], False
        inner = self._blocks

        def kept_blocks() -> Iterator[np.ndarray]:
            held = 0
            try:
                for block in inner:
                    if self._kept is not None:
                        held += len(block)
                        if held <= max_samples:
                            self._kept.append(np.array(block, dtype=np.float32))
                        else:
                            self._kept = None  # too long to hold: a second pass decodes again
                    yield block
                self._whole = True
            finally:
                inner.close()

        self._blocks = kept_blocks()

    def replay(self) -> Optional["AudioStream"]:
        """The same blocks again, with the same notes, from memory: ``None`` unless :meth:`keep` was
        called and this stream was then read to its end within the samples it may keep."""
        if self._kept is None or not self._whole:
            return None
        return AudioStream((block for block in self._kept), name=self.name, sample_rate=self.sample_rate,
                           source_rate=self.source_rate, channels=self.channels,
                           expected_samples=self.expected_samples, warnings=list(self.warnings))

    def __iter__(self) -> Iterator[np.ndarray]:
        return self._blocks

    def close(self) -> None:
        """Stop decoding and release the source."""
        self._blocks.close()

    def __enter__(self) -> "AudioStream":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_audio(source: Source, *, sample_rate: int = 22050, filename: str | None = None) -> AudioStream:
    """Open ``source`` for decoding block by block to float32 mono at ``sample_rate``.

    Takes the same arguments and raises the same errors as :func:`load_audio`; errors the decoder
    can only meet later (ffmpeg's verdict, a file damaged before any audio) come from iteration.
    The blocks are exactly the samples :func:`load_audio` returns before its level checks.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ConfigError(f"sample_rate={sample_rate!r} must be a positive integer number of Hz")
    path, data, name = _normalise_source(source, filename)
    if data is not None and len(data) == 0:
        raise AudioDecodeError(f"{name} is empty (0 bytes)")
    if data is not None:
        return _open_spooled(data, name, sample_rate)
    fd = _open_checked(path, name)
    try:
        if os.fstat(fd).st_size == 0:
            raise AudioDecodeError(f"{name} is empty (0 bytes)")
        return _open_descriptor(fd, path, name, sample_rate)
    except BaseException:
        os.close(fd)
        raise


def _open_checked(path: Path, name: str) -> int:
    """``path`` opened read-only, proven a regular file (see :mod:`codeFeature.regular_file`)."""
    try:
        return open_regular(path, name=name)
    except NotRegularFileError:
        raise
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise AudioDecodeError(f"{name} does not exist or is not a file") from exc
    except OSError as exc:
        raise AudioDecodeError(f"{name} cannot be read: {exc.strerror or exc}") from exc


def _open_descriptor(fd: int, path: Path, name: str, sample_rate: int) -> AudioStream:
    """Decode the checked file open as ``fd``: every decoder reads that open file, never ``path`` again,
    so a file swapped for a pipe or a device after the check is not what gets read. ``fd`` is closed
    once the decoder holds its own, or when the stream is closed."""
    checked = fd_path(fd)
    by_fd = checked is not None
    if not by_fd:  # no /dev/fd (not POSIX): no pipes to fear either, the name will do
        checked = str(path)
    try:
        stream = _open_soundfile(checked, name, sample_rate)
    except _NotForSoundfile as native_failure:
        suffix = path.suffix.lower()
        stream = None
        if by_fd and suffix in _SUFFIX_GUESSED:
            try:
                stream = _open_soundfile_named(checked, suffix, name, sample_rate)
            except _NotForSoundfile:
                pass
        if stream is None:
            stream = _open_ffmpeg(checked, fd if by_fd else None, name, sample_rate, native_failure.reason)
            stream._blocks = _CleanupAfter(stream._blocks, lambda: os.close(fd))
            return stream
    os.close(fd)  # libsndfile opened the checked file for itself
    return stream


#: Extensions libsndfile falls back on when the content does not tell it the format (an mp3 whose
#: ID3v2 tag is followed by padding or junk; a headerless .au read as mu-law). Opened as
#: ``/dev/fd/N``, the file has no extension, so such files are tried again under a name with it.
_SUFFIX_GUESSED = (".mp3", ".au")


def _open_soundfile_named(checked: str, suffix: str, name: str, sample_rate: int) -> AudioStream:
    """:func:`_open_soundfile` on ``checked`` through a symlink named ``audio<suffix>`` in a private
    temporary folder: libsndfile sees the extension and still opens the checked file. The link
    goes as soon as libsndfile has opened it."""
    folder = tempfile.mkdtemp(prefix="codefeature-")
    link = os.path.join(folder, "audio" + suffix)
    try:
        os.symlink(checked, link)
        return _open_soundfile(link, name, sample_rate)
    finally:
        if os.path.lexists(link):
            os.unlink(link)
        os.rmdir(folder)


def _open_spooled(data: bytes, name: str, sample_rate: int) -> AudioStream:
    """Bytes decode exactly as the same file from a path: written to a temporary file first.

    libsndfile opened from memory refuses some mp3s that it opens from a path (an ID3v2 tag
    followed by padding or junk before the first frame: "Format not recognised"), and those then
    went to ffmpeg's decoder and resampler, giving different samples and a different genre than
    the CLI. One temporary file (deleted when the stream closes) makes upload, bytes and path the
    same decode by construction.
    """
    suffix = Path(name).suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,8}", suffix):
        suffix = ""
    if suffix not in SUPPORTED_EXTENSIONS and data[:3] == b"ID3":
        # libsndfile falls back on the extension when a tag hides the first frame: bytes with no
        # name then decode as the same file named .mp3 would (an ID3v2 tag nearly always means mp3)
        suffix = ".mp3"
    handle, tmp = tempfile.mkstemp(prefix="codefeature-", suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        stream = open_audio(tmp, sample_rate=sample_rate, filename=name)
    except BaseException:
        os.unlink(tmp)
        raise
    stream._blocks = _CleanupAfter(stream._blocks, lambda: _unlink_quietly(tmp))
    return stream


def _unlink_quietly(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:  # someone cleaned the temporary folder first
        pass


class _CleanupAfter:
    """Iterates ``blocks``; ``cleanup`` (delete a temporary file, close a descriptor) runs once, when
    they end, fail or are closed (even unstarted)."""

    def __init__(self, blocks: Iterator[np.ndarray], cleanup):
        self._blocks, self._cleanup = blocks, cleanup

    def __iter__(self) -> "_CleanupAfter":
        return self

    def __next__(self) -> np.ndarray:
        try:
            return next(self._blocks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._blocks.close()
        if self._cleanup is not None:
            cleanup, self._cleanup = self._cleanup, None
            cleanup()

    def __del__(self) -> None:
        self.close()


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


def _open_soundfile(handle: Path | io.BytesIO, name: str, sample_rate: int) -> AudioStream:
    try:
        # the path as bytes: soundfile encodes a str strictly, which fails on names that are not UTF-8
        sound = sf.SoundFile(handle if isinstance(handle, io.BytesIO) else os.fsencode(handle))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise _NotForSoundfile(str(exc)) from exc
    try:
        source_rate, channels = int(sound.samplerate), int(sound.channels)
        if channels <= 0 or not SOURCE_RATE_RANGE[0] <= source_rate <= SOURCE_RATE_RANGE[1]:
            raise AudioDecodeError(f"the header claims {channels} channels at {source_rate} Hz, which is not "
                                   f"playable audio (rates from {SOURCE_RATE_RANGE[0]} to {SOURCE_RATE_RANGE[1]} Hz "
                                   "are accepted); the file is probably damaged")
        block_frames = max(1, _BLOCK_SAMPLES // channels)
        try:
            # the first block now: a file libsndfile opens but cannot read still goes to ffmpeg
            first = sound.read(min(block_frames, MAX_SECONDS * source_rate), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise _NotForSoundfile(str(exc)) from exc
    except BaseException:
        sound.close()
        raise
    frames = min(int(sound.frames), MAX_SECONDS * source_rate) if sound.frames > 0 else None
    expected = None if frames is None else int(np.ceil(frames * sample_rate / source_rate))
    notes: list[str] = []
    clock = [0.0]
    blocks = _soundfile_blocks(sound, first, block_frames, source_rate, sample_rate, notes, clock)
    return AudioStream(blocks, name=name, sample_rate=sample_rate, source_rate=source_rate, channels=channels,
                       expected_samples=expected, warnings=notes, clock=clock)


def _soundfile_blocks(sound: sf.SoundFile, block: np.ndarray, block_frames: int, source_rate: int,
                      sample_rate: int, notes: list[str], clock: list) -> Iterator[np.ndarray]:
    """Mono blocks at ``sample_rate``; ``clock[0]`` accumulates the seconds spent resampling."""
    resampler = stream_resampler(source_rate, sample_rate)
    frames_left = MAX_SECONDS * source_rate
    produced = 0
    with sound:
        try:
            while True:
                frames_left -= len(block)
                last = len(block) < block_frames or frames_left <= 0
                mono = downmix(block)
                if resampler is not None:
                    t0 = time.perf_counter()
                    out = resampler.resample_chunk(mono, last=last)
                    clock[0] += time.perf_counter() - t0
                else:
                    out = mono
                produced += len(out)
                yield out
                if last:
                    break
                block = sound.read(min(block_frames, frames_left), dtype="float32", always_2d=True)
            if frames_left <= 0 and sound.seekable() and sound.tell() < sound.frames:
                notes.append(f"the audio is longer than {MAX_SECONDS / 3600:g} hours; only the first "
                             f"{MAX_SECONDS / 3600:g} hours were analysed")
        except (sf.LibsndfileError, RuntimeError) as exc:
            # a truncated file: keep what decoded and say so
            if resampler is not None:
                out = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
                produced += len(out)
                yield out
            notes.append(f"the file is damaged after {produced / sample_rate:.1f} s; "
                         f"only that part was analysed ({exc})")


def _collect(stream: AudioStream, *, limit: int | None = None) -> np.ndarray | None:
    """Every block of ``stream`` in one array, filled in place (no list of pieces to join); ``None`` as soon
    as more than ``limit`` samples came (the decoder is left to the stream's close)."""
    out = np.empty(stream.expected_samples + 1024 if stream.expected_samples else 1 << 20, np.float32)
    n = 0
    for block in stream:
        if limit is not None and n + len(block) > limit:
            return None
        if n + len(block) > len(out):
            grown = np.empty(max(2 * len(out), n + len(block)), np.float32)
            grown[:n] = out[:n]
            out = grown
        out[n: n + len(block)] = block
        n += len(block)
    # a header that overstated the length (or growth) leaves slack: give it back
    return out[:n] if len(out) - n <= 1024 else out[:n].copy()


def downmix(block: np.ndarray) -> np.ndarray:
    """Mono float32 from a ``(frames, channels)`` block: the channels' mean, as files and live streams
    are downmixed alike."""
    if block.shape[1] == 1:
        return np.ascontiguousarray(block[:, 0])
    if block.shape[1] == 2:
        # bit-identical to mean(axis=1) for two channels, and 8x faster on interleaved data
        return (block[:, 0] + block[:, 1]) * np.float32(0.5)
    return block.mean(axis=1, dtype=np.float32)


def _open_ffmpeg(source: str, fd: Optional[int], name: str, sample_rate: int, native_reason: str) -> AudioStream:
    """ffmpeg decoding ``source``: the checked file's ``/dev/fd/N`` name, with ``fd`` handed to the child
    (``pass_fds``) so that the name opens the same file there."""
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
    notes: list[str] = []
    blocks = _ffmpeg_blocks(ffmpeg, source, fd, name, sample_rate, notes)
    # ffmpeg reports neither rate nor channels on this path; the target rate is what matters downstream
    return AudioStream(blocks, name=name, sample_rate=sample_rate, source_rate=sample_rate, channels=0,
                       expected_samples=None, warnings=notes)


def _ffmpeg_blocks(ffmpeg: str, source: str, fd: Optional[int], name: str, sample_rate: int,
                   notes: list[str]) -> Iterator[np.ndarray]:
    """ffmpeg's float32 output, read from its pipe a block at a time; the process is killed on early exit."""
    # a name of the checked file, not a pipe of its bytes: mp4/m4a keep their index at the end and
    # need seeking
    command = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", source,
               "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(sample_rate), "-t", str(MAX_SECONDS),
               "-f", "f32le", "-"]
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors,
                                       pass_fds=() if fd is None else (fd,))
        except OSError as exc:
            raise UnsupportedFormatError(f"ffmpeg at {ffmpeg} could not be run: {exc}") from exc
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            process.kill()

        timer = threading.Timer(_FFMPEG_TIMEOUT_S, expire)
        timer.daemon = True
        timer.start()
        produced, rest = 0, b""
        try:
            while True:
                chunk = process.stdout.read(_BLOCK_SAMPLES * 4)
                if not chunk:
                    break
                chunk = rest + chunk
                usable = len(chunk) // 4 * 4
                rest = chunk[usable:]
                if usable:
                    produced += usable // 4
                    yield np.frombuffer(chunk[:usable], dtype="<f4").astype(np.float32)
        finally:
            timer.cancel()
            if process.poll() is None:
                process.kill()
            process.stdout.close()
            returncode = process.wait()
        if expired.is_set():
            raise AudioDecodeError(f"ffmpeg took longer than {_FFMPEG_TIMEOUT_S} s to decode {name}")
        if returncode != 0 or produced == 0:
            errors.seek(0)
            stderr = errors.read().decode("utf-8", "replace")
            # ffmpeg's own words are for the operator's log; the person gets plain ones
            log.info("ffmpeg could not decode %s (exit code %s): %s", name, returncode, stderr.strip()[-2000:])
            reason = "it is not a sound file that can be read here, or it is damaged"
            if "matches no streams" in stderr or "does not contain any stream" in stderr:
                reason = "it contains no audio stream"
            elif returncode == 0:
                reason = "it contains no audio samples"
            raise AudioDecodeError(f"{name} could not be decoded as audio: {reason}")
        if produced >= MAX_SECONDS * sample_rate:
            notes.append(f"the audio is longer than {MAX_SECONDS / 3600:g} hours; only the first "
                         f"{MAX_SECONDS / 3600:g} hours were analysed")


def _inspect(decoded: DecodedAudio, name: str) -> DecodedAudio:
    samples = decoded.samples
    if samples.size == 0:
        raise AudioDecodeError(f"{name} holds no audio samples")
    if not samples.flags.writeable:
        samples = samples.copy()
    meter = measure(samples)
    decoded.warnings.extend(meter.repair_warnings())
    if meter.peak > 1.0:
        # features assume [-1, 1]: scale down whatever exceeds it
        decoded.warnings.extend(scaling_warnings(meter.peak))
        samples /= np.float32(meter.peak)
        meter = measure(samples)
    decoded.warnings.extend(meter.level_warnings())
    decoded.samples = samples
    return decoded
