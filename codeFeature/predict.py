"""From audio to a genre: the pipeline that cuts, featurises and classifies a song.

Two levels, as in librosa: :func:`predict_file` for people, and
:func:`predict_segments` for evaluation and charts, which returns arrays.
Load a model once with :func:`codeFeature.model_io.load_model` and pass it in.
The result type lives in :mod:`codeFeature.prediction`, how many files run at once in
:mod:`codeFeature.cores`, and where the time goes in :mod:`codeFeature.phases` (for benchmarks only).
"""

from __future__ import annotations

import contextvars
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

import numpy as np

from .audio import AudioStream, Source, open_audio
from .cores import default_jobs, usable_cores
from .decision import vote_index
from .errors import AudioDecodeError, ConfigError
from .features import segment_features
from .level import LevelMeter, scaling_warnings
from .model_io import LoadedModel, load_model
from .phases import Clock, current, timed_call
from .prediction import Prediction, extra_labels, padding_note
from .resample import resample
from .segments import plan_segments, segment_array, wrap_pad

__all__ = ["predict_file", "predict_audio", "predict_segments", "Prediction", "vote_index", "default_jobs",
           "usable_cores", "CHUNK_SEGMENTS", "ProgressCallback"]

#: Segments featurised at a time (the forward pass batches further, see
#: ``LoadedModel.forward_batch``): bounds memory on hour-long files and paces the progress callback.
#: :func:`predict_file` classifies a chunk while it decodes the next, so a small chunk starts the
#: forward pass early.
CHUNK_SEGMENTS = 32
#: Chunks :func:`predict_file` lets wait for the forward pass while it decodes on.
CHUNKS_AHEAD = 2
#: A song beyond full scale is classified in a second pass, scaled by its peak. A song whose header
#: says it lasts at most this many seconds is kept as the first pass decodes it (38 MB at 16 kHz),
#: and the second pass reads that copy instead of decoding the file again (most commercial masters
#: peak beyond full scale once resampled); a longer one is decoded twice, and held never, so memory
#: does not grow with its length.
REPLAY_SECONDS = 600

ProgressCallback = Callable[[float, str], None]


def predict_segments(segments: np.ndarray, *, model: LoadedModel, progress: Optional[ProgressCallback] = None,
                     extras: Optional[dict] = None) -> np.ndarray:
    """Probabilities for each segment.

    Parameters
    ----------
    segments : np.ndarray, shape (n_segments, model.config.segment_samples), float32
        Segments at ``model.config.sample_rate`` (see :func:`codeFeature.segments.segment_array`).
    model : LoadedModel
    progress : callable(fraction, message), optional
        Called after each chunk of segments.
    extras : dict, optional
        Filled with the model's further outputs (see the manifest's ``extra_outputs``), by name.

    Returns
    -------
    np.ndarray, shape (n_segments, n_labels), float32
    """
    segments = np.asarray(segments, dtype=np.float32)
    n = len(segments)
    out = np.empty((n, len(model.labels)), dtype=np.float32)
    extra_specs = model.manifest.get("extra_outputs", [])
    extra_parts: dict = {spec["name"]: [] for spec in extra_specs}
    clock = current()
    for lo in range(0, n, CHUNK_SEGMENTS):
        hi = min(n, lo + CHUNK_SEGMENTS)
        t0 = clock.now()
        x = segment_features(segments[lo:hi], model.config)
        t1 = clock.now()
        result, *rest = model.forward(x)
        for spec, value in zip(extra_specs, rest):
            extra_parts[spec["name"]].append(value)
        out[lo:hi] = result
        clock.add("features", t1 - t0)
        clock.add("predict", clock.now() - t1)
        if progress is not None:
            progress(hi / n, f"classified {hi} of {n} segments")
    if extras is not None:
        extras.update({name: np.concatenate(parts) for name, parts in extra_parts.items() if parts})
    return out


def predict_audio(samples: np.ndarray, *, model: LoadedModel, sample_rate: Optional[int] = None,
                  progress: Optional[ProgressCallback] = None, file: Optional[str] = None,
                  warnings: Optional[list] = None) -> Prediction:
    """Classify a mono signal.

    Parameters
    ----------
    samples : np.ndarray, shape (n_samples,)
        Mono audio.
    model : LoadedModel
    sample_rate : int, optional
        Rate of ``samples``; resampled to the model's rate if different. Default: the model's.

    Returns
    -------
    Prediction
    """
    if not isinstance(model, LoadedModel):
        raise ConfigError(f"model must be a LoadedModel from load_model(), not {type(model).__name__}")
    with timed_call() as clock:
        return _predict_audio(samples, model=model, sample_rate=sample_rate, progress=progress, file=file,
                              warnings=warnings, clock=clock)


def _predict_audio(samples: np.ndarray, *, model: LoadedModel, sample_rate: Optional[int],
                   progress: Optional[ProgressCallback], file: Optional[str], warnings: Optional[list],
                   clock: Clock) -> Prediction:
    config = model.config
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ConfigError(f"samples must be 1-D mono, got shape {samples.shape}; average the channels first")
    if sample_rate is not None and sample_rate != config.sample_rate:
        t0 = clock.now()
        samples = resample(samples, sample_rate, config.sample_rate)
        clock.add("resample", clock.now() - t0)
    notes = list(warnings or [])
    duration = len(samples) / config.sample_rate
    t0 = clock.now()
    segments, starts = segment_array(samples, config)
    clock.add("segment", clock.now() - t0)
    notes += padding_note(duration, config)
    extras: dict = {}
    probabilities = predict_segments(segments, model=model, progress=progress, extras=extras)
    t0 = clock.now()
    rms = float(np.sqrt(np.dot(samples, samples) / len(samples))) if len(samples) else 0.0
    clock.add("level", clock.now() - t0)
    return Prediction(model=model.name, labels=model.labels, probabilities=probabilities, starts=starts,
                      segment_seconds=config.segment_seconds, duration=duration, file=file,
                      warnings=notes, extras=extras, extra_labels=extra_labels(model),
                      rule=model.decision_rule, rms=rms)


def predict_file(source: Source, *, model: LoadedModel | str | None = None, filename: Optional[str] = None,
                 progress: Optional[ProgressCallback] = None) -> Prediction:
    """Classify an audio file or in-memory upload.

    The file is decoded block by block and classified :data:`CHUNK_SEGMENTS` segments at a
    time, so memory does not grow with its length; the result is exactly that of
    :func:`load_audio` followed by :func:`predict_audio`.

    Parameters
    ----------
    source : path-like, bytes or binary file object
        The song (wav, flac, ogg, mp3; more with ffmpeg).
    model : LoadedModel, str or None
        A loaded model (fastest: load it once), a shipped model's name, a model folder, or
        ``None`` for the default model.
    filename : str, optional
        Name to report, and to guess the format of in-memory input.
    progress : callable(fraction, message), optional
        The fraction is an estimate from the file's header (0 where the header gives no length).

    Returns
    -------
    Prediction

    Raises
    ------
    GenreError
        Or one of its children: :class:`AudioDecodeError`, :class:`AudioTooShortError`,
        :class:`ModelError`.
    """
    with timed_call() as clock:
        return _predict_file(source, model=model, filename=filename, progress=progress, clock=clock)


def _predict_file(source: Source, *, model: LoadedModel | str | None, filename: Optional[str],
                  progress: Optional[ProgressCallback], clock: Clock) -> Prediction:
    if not isinstance(model, LoadedModel):
        t0 = clock.now()
        model = load_model(model)
        clock.add("load", clock.now() - t0)
    name = filename or (str(source) if not hasattr(source, "read") and not isinstance(source, (bytes, bytearray, memoryview))
                        else getattr(source, "name", None))
    rate = model.config.sample_rate
    try:
        t0 = clock.now()
        with open_audio(source, sample_rate=rate, filename=filename) as stream:
            clock.add("decode", clock.now() - t0)
            if stream.expected_samples and stream.expected_samples <= REPLAY_SECONDS * rate:
                stream.keep(int(REPLAY_SECONDS * rate))  # a longer song is not held, even for a while
            return _predict_stream(stream, model=model, progress=progress, file=name, clock=clock)
    except _BeyondFullScale as beyond:
        # a song beyond full scale (a loud master once resampled, a hot float file) is scaled by its
        # peak, which only the whole song gives: the first pass read on to measure it, and this one
        # classifies the scaled blocks, from the first pass's copy where the song is short enough,
        # else decoded again, so memory stays that of a few chunks whatever the length
        clock.restart(keep=("load",))
        clock.add("peak", clock.now() - t0)  # the first pass: decoding and measuring
        replay = stream.replay()
        with replay or open_audio(source, sample_rate=rate, filename=filename) as again:
            return _predict_stream(again, model=model, progress=progress, file=name, clock=clock,
                                   peak=beyond.peak)


class _BeyondFullScale(Exception):
    """The stream holds samples beyond [-1, 1], up to ``peak``: classify it again, scaled by ``peak``."""

    def __init__(self, peak: float) -> None:
        super().__init__(f"peak {peak}")
        self.peak = peak


def _predict_stream(stream: AudioStream, *, model: LoadedModel, progress: Optional[ProgressCallback],
                    file: Optional[str], clock: Clock, peak: Optional[float] = None) -> Prediction:
    """Classify ``stream`` chunk by chunk, cutting segments by the rule of :func:`segment_array`;
    adds each phase's seconds to ``clock`` (see :mod:`codeFeature.phases`).

    Each block is divided by ``peak`` where given, as :func:`load_audio` divides a whole song beyond
    full scale. Without it, a block beyond full scale stops the classification: the rest of the
    stream is read only to measure the song's peak, and :class:`_BeyondFullScale` carries it.

    One worker thread classifies a chunk while this thread decodes the next (decoding takes one
    core; the forward pass spreads over all of them, see :class:`codeFeature.engines.OpenVINORunner`).
    Results are gathered in order, with at most :data:`CHUNKS_AHEAD` chunks waiting.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="codeFeature-classify") as worker:
        pending: deque = deque()
        try:
            return _predict_chunks(stream, model=model, progress=progress, file=file, clock=clock,
                                   worker=worker, pending=pending, peak=peak)
        finally:
            for future in pending:
                future.cancel()  # an error or an interrupt: do not classify what is left


def _predict_chunks(stream: AudioStream, *, model: LoadedModel, progress: Optional[ProgressCallback],
                    file: Optional[str], clock: Clock, worker: ThreadPoolExecutor, pending: deque,
                    peak: Optional[float]) -> Prediction:
    config = model.config
    seg = config.segment_samples
    chunk = np.empty(CHUNK_SEGMENTS * seg, np.float32)
    filled = total = 0
    meter = LevelMeter()  # of the samples classified (scaled where peak is given)
    raw = LevelMeter() if peak is not None else meter  # of the samples decoded: NaN repairs and the peak
    scale = np.float32(peak) if peak is not None else None
    parts: list[np.ndarray] = []
    for key in ("decode", "resample", "level", "segment"):
        clock.add(key, 0.0)
    resampled_before = stream.resample_seconds
    extras: dict = {}
    extra_parts: dict = {}
    expected_segments = stream.expected_samples // seg if stream.expected_samples else 0

    def run(segments: np.ndarray) -> tuple[np.ndarray, dict]:
        found: dict = {}
        return predict_segments(segments, model=model, extras=found), found

    def collect(waiting: int) -> None:
        """Take finished results in order until at most ``waiting`` chunks are pending."""
        while pending and (len(pending) > waiting or pending[0].done()):
            probabilities, found = pending.popleft().result()
            parts.append(probabilities)
            for key, value in found.items():
                extra_parts.setdefault(key, []).append(value)
            if progress is not None:
                done = sum(map(len, parts))
                progress(min(1.0, done / expected_segments) if expected_segments else 0.0,
                         f"classified {done} segments")

    def classify(segments: np.ndarray) -> None:
        collect(CHUNKS_AHEAD - 1)
        # the chunk buffer is refilled meanwhile; the worker counts its phases on this call's clock
        pending.append(worker.submit(contextvars.copy_context().run, run, segments.copy()))

    blocks = iter(stream)
    fetching = 0.0  # seconds in next(): decoding, downmix and resampling (told apart below)
    while True:
        t0 = clock.now()
        block = next(blocks, None)
        t1 = clock.now()
        fetching += t1 - t0
        if block is None:
            break
        block = raw.add(block)
        if scale is not None:
            block = meter.add(block / scale)  # as load_audio scales the whole song
        t2 = clock.now()
        clock.add("level", t2 - t1)
        if scale is None and meter.peak > 1.0:
            for _ in map(meter.add, blocks):  # read on for the song's peak; nothing more is classified
                pass
            raise _BeyondFullScale(meter.peak)
        total += len(block)
        pos = 0
        while pos < len(block):
            take = min(len(chunk) - filled, len(block) - pos)
            chunk[filled: filled + take] = block[pos: pos + take]
            filled += take
            pos += take
            if filled == len(chunk):
                clock.add("segment", clock.now() - t2)
                classify(chunk.reshape(CHUNK_SEGMENTS, seg))
                filled = 0
                t2 = clock.now()
        clock.add("segment", clock.now() - t2)
    resampled = stream.resample_seconds - resampled_before
    clock.add("resample", resampled)
    clock.add("decode", fetching - resampled)
    if total == 0:
        raise AudioDecodeError(f"{stream.name} holds no audio samples")
    t0 = clock.now()
    n_full, tail = plan_segments(total, config)
    # the segments not yet classified: whole ones still in the chunk, then the kept tail, padded
    whole = n_full - (total - filled) // seg
    rest = [chunk[: whole * seg].reshape(whole, seg)]
    if tail:
        rest.append(wrap_pad(chunk[whole * seg: whole * seg + tail], seg)[None, :])
    clock.add("segment", clock.now() - t0)
    if whole or tail:
        t0 = clock.now()
        rest = np.concatenate(rest)
        clock.add("segment", clock.now() - t0)
        classify(rest)
    collect(0)
    notes = list(stream.warnings) + raw.repair_warnings() + (scaling_warnings(peak) if peak else [])
    notes += meter.level_warnings()
    duration = total / config.sample_rate
    notes += padding_note(duration, config)
    extras.update({key: np.concatenate(value) for key, value in extra_parts.items()})
    return Prediction(model=model.name, labels=model.labels, probabilities=np.concatenate(parts),
                      starts=np.arange(n_full + (1 if tail else 0), dtype=np.float64) * config.segment_seconds,
                      segment_seconds=config.segment_seconds, duration=duration, file=file,
                      warnings=notes, extras=extras, extra_labels=extra_labels(model),
                      rule=model.decision_rule, rms=meter.rms)
