"""Classify audio as it arrives: a microphone, a WebRTC track, any source of frames.

A :class:`StreamClassifier` is fed frames of any size at any rate (a browser
delivers 44.1 or 48 kHz, mono or stereo, int16 or float). Each frame is
downmixed and resampled to the model's rate by the same code as files
(:func:`codeFeature.audio.downmix` and :func:`codeFeature.resample.stream_resampler`),
so a song heard live and the same song uploaded give the same segments.

Every completed segment (``model.config.segment_samples`` at the model's rate,
3 s) is classified by :func:`codeFeature.predict.predict_segments`, the call
uploads use, giving per-window probabilities, the running vote and its
confidence. A ring buffer keeps the last ~10 s for a live spectrogram.
:meth:`StreamClassifier.finish` returns a :class:`~codeFeature.predict.Prediction`
with the whole timeline, cut by the same rule as files (a final partial segment
of at least half a segment is padded and kept), so ``Prediction.to_csv()`` works.

Threads: one producer calls :meth:`~StreamClassifier.feed` (cheap: downmix,
resample, copy) while one consumer calls :meth:`~StreamClassifier.process`
(the model), or lets :meth:`~StreamClassifier.start_worker` do it; any thread
may read :meth:`~StreamClassifier.snapshot` at any time.

>>> from codeFeature import load_model
>>> from codeFeature.stream import StreamClassifier
>>> live = StreamClassifier(load_model())                  # doctest: +SKIP
>>> live.feed(frame, sample_rate=48000)                    # doctest: +SKIP
>>> windows = live.process()                               # doctest: +SKIP
>>> prediction = live.finish()                             # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .audio import downmix
from .decision import vote_index
from .errors import ConfigError, GenreError
from .level import LevelMeter
from .model_io import LoadedModel
from .predict import predict_segments
from .prediction import Prediction, extra_labels, padding_note
from .resample import stream_resampler
from .segments import plan_segments, wrap_pad

#: Seconds of recent audio kept for the live spectrogram.
DEFAULT_HISTORY_SECONDS = 10.0


class StreamError(GenreError):
    """The stream cannot take this input or this call."""


class StreamFormatError(StreamError, ConfigError):
    """A frame has a shape, type or rate the stream cannot read."""


class StreamClosedError(StreamError):
    """The stream was finished; start a new :class:`StreamClassifier`."""


@dataclass(frozen=True)
class LiveWindow:
    """One classified segment of the stream.

    Attributes
    ----------
    index : int
        0 for the first segment.
    start, end : float
        Seconds from the start of the stream.
    genre : str
        The segment's most probable label.
    confidence : float
        Its probability.
    probabilities : np.ndarray, shape (n_labels,), float32
    latency : float
        Seconds from the feed call that completed the segment to its probabilities being available.
    """

    index: int
    start: float
    end: float
    genre: str
    confidence: float
    probabilities: np.ndarray
    latency: float


@dataclass(frozen=True)
class LiveState:
    """A consistent picture of the stream at one moment (see :meth:`StreamClassifier.snapshot`).

    Attributes
    ----------
    seconds : float
        Audio received so far, at the model's rate.
    recent : np.ndarray, shape (n,), float32
        The last ``history_seconds`` (or less, at the start), oldest first, at ``sample_rate``.
    sample_rate : int
    windows : tuple of LiveWindow
        Every classified segment, in order.
    pending : int
        Completed segments waiting for the model.
    genre : str or None
        The running vote (ties go to the higher mean probability); ``None`` before the first window.
    confidence : float or None
        Mean probability of ``genre`` over the windows.
    labels : tuple of str
    finished : bool
    """

    seconds: float
    recent: np.ndarray
    sample_rate: int
    windows: tuple
    pending: int
    genre: Optional[str]
    confidence: Optional[float]
    labels: tuple
    finished: bool

    @property
    def probabilities(self) -> np.ndarray:
        """Per-window probabilities, shape (n_windows, n_labels)."""
        if not self.windows:
            return np.zeros((0, len(self.labels)), np.float32)
        return np.stack([w.probabilities for w in self.windows])

    @property
    def mean_probabilities(self) -> np.ndarray:
        """Probabilities averaged over windows, shape (n_labels,); zeros before the first window."""
        probs = self.probabilities
        return probs.mean(axis=0) if len(probs) else np.zeros(len(self.labels), np.float32)


@dataclass
class _Pending:
    segment: np.ndarray
    fed_at: float


class StreamClassifier:
    """Classify a stream of audio frames segment by segment.

    Parameters
    ----------
    model : LoadedModel
        From :func:`codeFeature.model_io.load_model`; its config decides the rate and segment length.
    history_seconds : float
        Seconds of recent audio kept for display (default 10).

    Raises
    ------
    ConfigError
        If ``model`` is not a :class:`LoadedModel` or ``history_seconds`` is not a positive number.
    """

    def __init__(self, model: LoadedModel, *, history_seconds: float = DEFAULT_HISTORY_SECONDS):
        if not isinstance(model, LoadedModel):
            raise ConfigError(f"model must be a LoadedModel from load_model(), not {type(model).__name__}")
        if isinstance(history_seconds, bool) or not isinstance(history_seconds, (int, float)) \
                or not np.isfinite(history_seconds) or history_seconds <= 0:
            raise ConfigError(f"history_seconds={history_seconds!r} must be a positive number of seconds")
        self.model = model
        self.config = model.config
        self.sample_rate = model.config.sample_rate
        self.history_seconds = float(history_seconds)
        seg = self.config.segment_samples
        self._lock = threading.Lock()              # guards every field below
        self._ready = threading.Condition(self._lock)
        self._model_lock = threading.Lock()        # one classification at a time
        self._resampler: Optional[Any] = None
        self._input_rate: Optional[int] = None
        self._partial = np.zeros(seg, np.float32)
        self._partial_fill = 0
        self._total = 0
        self._history = np.zeros(max(1, int(round(self.history_seconds * self.sample_rate))), np.float32)
        self._history_fill = 0
        self._history_pos = 0
        self._pending: list[_Pending] = []
        self._windows: list[LiveWindow] = []
        self._probabilities: list[np.ndarray] = []
        self._level = LevelMeter()
        self._extras: dict = {}
        self._finished = False
        self._worker: Optional[threading.Thread] = None
        self._stop_worker = threading.Event()
        self.worker_error: Optional[BaseException] = None
        self._result: Optional[Prediction] = None

    # ------------------------------------------------------------------ producer

    def feed(self, frames: Any, *, sample_rate: int, channels: Optional[int] = None) -> int:
        """Add audio. Cheap: downmix, resample and copy; the model runs in :meth:`process`.

        Parameters
        ----------
        frames : np.ndarray, shape (n_samples,) or (n_samples, n_channels)
            int16 (full scale 32768), int32 (2**31) or float (full scale 1.0). Any length, even 0.
        sample_rate : int
            Rate of ``frames`` in Hz. It may change between calls (the resampler is flushed and rebuilt).
        channels : int, optional
            With 1-D ``frames``: how many channels are interleaved in it (packed browser frames).

        Returns
        -------
        int
            Segments completed by this call (now waiting for :meth:`process`).

        Raises
        ------
        StreamFormatError
            If ``frames`` or ``sample_rate`` cannot be read.
        StreamClosedError
            After :meth:`finish`.
        """
        fed_at = time.perf_counter()
        mono = self._to_mono(frames, channels)
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
            raise StreamFormatError(f"sample_rate={sample_rate!r} must be a positive integer number of Hz")
        sample_rate = int(sample_rate)
        with self._lock:
            if self._finished:
                raise StreamClosedError("the stream was finished; start a new StreamClassifier")
            pieces = []
            if sample_rate != self._input_rate:
                if self._resampler is not None:
                    pieces.append(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
                self._input_rate = sample_rate
                self._resampler = stream_resampler(sample_rate, self.sample_rate)
            if self._resampler is not None:
                pieces.append(self._resampler.resample_chunk(mono, last=False))
            else:
                pieces.append(mono)
            done = 0
            for piece in pieces:
                done += self._append(np.asarray(piece, np.float32).reshape(-1), fed_at)
            if done:
                self._ready.notify_all()
            return done

    def _to_mono(self, frames: Any, channels: Optional[int]) -> np.ndarray:
        try:
            array = np.asarray(frames)
        except (TypeError, ValueError) as exc:
            raise StreamFormatError(f"frames must be a NumPy array of samples, not {type(frames).__name__}") from exc
        if array.dtype == np.int16:
            array = array.astype(np.float32) / np.float32(32768.0)
        elif array.dtype == np.int32:
            array = (array.astype(np.float64) / 2.0 ** 31).astype(np.float32)
        elif array.dtype.kind == "f":
            array = array.astype(np.float32, copy=False)
        else:
            raise StreamFormatError(f"frames have dtype {array.dtype}; use int16, int32 or float samples")
        if channels is not None:
            if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels <= 0:
                raise StreamFormatError(f"channels={channels!r} must be a positive integer")
            if array.ndim != 1:
                raise StreamFormatError(f"channels= is for 1-D interleaved frames, but frames have shape {array.shape}")
            if array.size % channels:
                raise StreamFormatError(f"{array.size} interleaved samples do not divide into {channels} channels")
            array = array.reshape(-1, int(channels))
        if array.ndim == 1:
            return np.ascontiguousarray(array)
        if array.ndim != 2 or array.shape[1] == 0:
            raise StreamFormatError(
                f"frames must have shape (n_samples,) or (n_samples, n_channels), got {array.shape}")
        if array.shape[1] > 8 and array.shape[0] <= 8:
            raise StreamFormatError(f"frames have shape {array.shape}: channels look like the first axis; "
                                    "pass them as (n_samples, n_channels), e.g. frames.T")
        return downmix(array)

    def _append(self, chunk: np.ndarray, fed_at: float) -> int:
        if not chunk.size:
            return 0
        chunk = self._level.add(chunk)
        self._total += chunk.size
        self._remember(chunk)
        seg = self.config.segment_samples
        done = 0
        while chunk.size:
            take = min(seg - self._partial_fill, chunk.size)
            self._partial[self._partial_fill:self._partial_fill + take] = chunk[:take]
            self._partial_fill += take
            chunk = chunk[take:]
            if self._partial_fill == seg:
                self._pending.append(_Pending(self._partial.copy(), fed_at))
                self._partial_fill = 0
                done += 1
        return done

    def _remember(self, chunk: np.ndarray) -> None:
        size = len(self._history)
        if chunk.size >= size:
            self._history[:] = chunk[-size:]
            self._history_pos, self._history_fill = 0, size
            return
        end = self._history_pos + chunk.size
        if end <= size:
            self._history[self._history_pos:end] = chunk
        else:
            first = size - self._history_pos
            self._history[self._history_pos:] = chunk[:first]
            self._history[:end - size] = chunk[first:]
        self._history_pos = end % size
        self._history_fill = min(size, self._history_fill + chunk.size)

    # ------------------------------------------------------------------ consumer

    def process(self, *, timeout: Optional[float] = None) -> list[LiveWindow]:
        """Classify every completed segment waiting for the model.

        Parameters
        ----------
        timeout : float, optional
            Wait up to this many seconds for a segment when none is waiting. Default: do not wait.

        Returns
        -------
        list of LiveWindow
            The windows classified by this call (possibly empty).
        """
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0):
            raise ConfigError(f"timeout={timeout!r} must be a non-negative number of seconds or None")
        with self._model_lock:
            with self._lock:
                if not self._pending and timeout:
                    self._ready.wait(timeout)
                batch, self._pending = self._pending, []
                first = len(self._windows)
            if not batch:
                return []
            return self._classify(batch, first)

    def _classify(self, batch: list[_Pending], first: int) -> list[LiveWindow]:
        extras: dict = {}
        probs = predict_segments(np.stack([p.segment for p in batch]), model=self.model, extras=extras)
        done = time.perf_counter()
        seconds = self.config.segment_seconds
        windows = []
        for i, (pending, row) in enumerate(zip(batch, probs)):
            best = int(np.argmax(row))
            index = first + i
            windows.append(LiveWindow(index=index, start=index * seconds, end=(index + 1) * seconds,
                                      genre=self.model.labels[best], confidence=float(row[best]),
                                      probabilities=row.copy(), latency=done - pending.fed_at))
        with self._lock:
            self._windows.extend(windows)
            self._probabilities.extend(w.probabilities for w in windows)
            for name, values in extras.items():
                self._extras.setdefault(name, []).append(values)
        return windows

    def warm_up(self) -> None:
        """Run the model once on a silent segment (recorded nowhere), so the first real window is fast.

        The first call of a model in a thread pays one-off set-up costs (hundreds of ms on 2 cores).
        """
        with self._model_lock:
            predict_segments(np.zeros((1, self.config.segment_samples), np.float32), model=self.model)

    def start_worker(self, *, idle_timeout: float = 300.0, warm: bool = True) -> threading.Thread:
        """Run :meth:`process` in a daemon thread, so windows are classified as soon as they complete.

        Parameters
        ----------
        idle_timeout : float
            The thread ends by itself after this many seconds without a new segment (an abandoned page).
        warm : bool
            Call :meth:`warm_up` in the thread first (default True).

        Returns
        -------
        threading.Thread
            Already started; :meth:`stop_worker` or :meth:`finish` ends it.
        """
        if isinstance(idle_timeout, bool) or not isinstance(idle_timeout, (int, float)) or idle_timeout <= 0:
            raise ConfigError(f"idle_timeout={idle_timeout!r} must be a positive number of seconds")
        if self._worker is not None and self._worker.is_alive():
            return self._worker
        self._stop_worker.clear()

        def run() -> None:
            if warm:
                try:
                    self.warm_up()
                except Exception as exc:  # shown by the page through worker_error
                    self.worker_error = exc
                    return
            idle_since = time.monotonic()
            while not self._stop_worker.is_set() and not self._finished:
                try:
                    if self.process(timeout=0.2):
                        idle_since = time.monotonic()
                except Exception as exc:  # keep it for the page to show; the thread cannot raise anywhere
                    self.worker_error = exc
                    return
                if time.monotonic() - idle_since > idle_timeout:
                    return

        self._worker = threading.Thread(target=run, name="codeFeature-stream", daemon=True)
        self._worker.start()
        return self._worker

    def stop_worker(self, *, timeout: float = 10.0) -> None:
        """End the :meth:`start_worker` thread, waiting up to ``timeout`` seconds for its current batch."""
        self._stop_worker.set()
        with self._lock:
            self._ready.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)
            self._worker = None

    # ------------------------------------------------------------------ readers

    @property
    def seconds(self) -> float:
        """Audio received so far, in seconds."""
        with self._lock:
            return self._total / self.sample_rate

    def recent_audio(self) -> np.ndarray:
        """The last ``history_seconds`` of audio at the model's rate, oldest first, shape (n,)."""
        with self._lock:
            return self._recent_locked()

    def _recent_locked(self) -> np.ndarray:
        if self._history_fill < len(self._history):
            return self._history[:self._history_fill].copy()
        return np.concatenate([self._history[self._history_pos:], self._history[:self._history_pos]])

    def snapshot(self) -> LiveState:
        """Everything a live view shows, read at one instant."""
        with self._lock:
            windows = tuple(self._windows)
            genre = confidence = None
            if windows:
                probs = np.stack(self._probabilities)
                best = vote_index(probs)
                genre, confidence = self.model.labels[best], float(probs[:, best].mean())
            return LiveState(seconds=self._total / self.sample_rate, recent=self._recent_locked(),
                             sample_rate=self.sample_rate, windows=windows, pending=len(self._pending),
                             genre=genre, confidence=confidence, labels=tuple(self.model.labels),
                             finished=self._finished)

    # ------------------------------------------------------------------ the end

    def finish(self, *, file: Optional[str] = None) -> Prediction:
        """Stop taking audio, classify what is left and return the whole stream's prediction.

        The tail is cut by the same rule as files (:func:`codeFeature.segments.plan_segments`): a final
        partial segment of at least half a segment is padded by repeating its beginning and kept.
        Calling it again returns the same prediction.

        Parameters
        ----------
        file : str, optional
            Name to put in the prediction (for example ``"microphone"``).

        Returns
        -------
        Prediction
            One row per segment; ``to_csv()`` gives the same export as uploads.

        Raises
        ------
        AudioTooShortError
            If less than :data:`codeFeature.segments.MIN_SECONDS` of audio arrived.
        """
        if self._worker is not None:
            self.stop_worker()
        with self._model_lock:
            with self._lock:
                if self._result is not None:
                    return self._result
                fed_at = time.perf_counter()
                if self._resampler is not None:
                    self._append(np.asarray(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True),
                                            np.float32).reshape(-1), fed_at)
                    self._resampler = None
                self._finished = True
                total, seg = self._total, self.config.segment_samples
                notes = []
                n_full, tail = plan_segments(total, self.config)  # AudioTooShortError under MIN_SECONDS
                if tail:
                    self._pending.append(_Pending(wrap_pad(self._partial[:tail].copy(), seg), fed_at))
                    if n_full == 0:
                        notes += padding_note(total / self.sample_rate, self.config)
                self._partial_fill = 0
                batch, self._pending = self._pending, []
                first = len(self._windows)
            if batch:
                self._classify(batch, first)
            with self._lock:
                notes = self._level.warnings() + notes
                probs = np.stack(self._probabilities).astype(np.float32)
                starts = np.arange(len(probs), dtype=np.float64) * self.config.segment_seconds
                extras = {name: np.concatenate(parts) for name, parts in self._extras.items()}
                self._result = Prediction(model=self.model.name, labels=self.model.labels, probabilities=probs,
                                          starts=starts, segment_seconds=self.config.segment_seconds,
                                          duration=total / self.sample_rate, file=file,
                                          warnings=notes, extras=extras, extra_labels=extra_labels(self.model))
                return self._result


def frame_to_array(frame: Any) -> tuple[np.ndarray, int]:
    """Samples and rate of a PyAV ``AudioFrame`` (what ``streamlit-webrtc`` and ``aiortc`` deliver).

    Parameters
    ----------
    frame : av.AudioFrame
        Packed (``s16``: one row of interleaved samples) or planar (``fltp``: one row per channel).

    Returns
    -------
    samples : np.ndarray, shape (n_samples, n_channels)
        In the frame's dtype (int16 or float32), ready for :meth:`StreamClassifier.feed`.
    sample_rate : int
    """
    try:
        array = frame.to_ndarray()
        channels = len(frame.layout.channels)
        planar = bool(frame.format.is_planar)
        rate = int(frame.sample_rate)
    except AttributeError as exc:
        raise StreamFormatError(f"expected a PyAV AudioFrame, got {type(frame).__name__}") from exc
    if planar:
        return np.ascontiguousarray(array.T), rate
    return array.reshape(-1, channels), rate
