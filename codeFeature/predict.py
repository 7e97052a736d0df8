"""From audio to a genre: per-segment probabilities, the vote and the timings.

Two levels, as in librosa: :func:`predict_file` for people, and
:func:`predict_segments` for evaluation and charts, which returns arrays.
Load a model once with :func:`codeFeature.model_io.load_model` and pass it in.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .audio import AudioStream, Source, open_audio
from .level import LevelMeter, scaling_warnings
from .decision import DecisionRule, Verdict, decide, vote_index
from .errors import AudioDecodeError, ConfigError
from .features import segment_features
from .model_io import LoadedModel, load_model
from .resample import resample
from .segments import plan_segments, segment_array, wrap_pad

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

#: The phases ``Prediction.timings`` reports, in pipeline order, then ``total`` (see :class:`Prediction`).
PHASES = ("load", "peak", "decode", "resample", "level", "segment", "features", "predict", "other", "overlap")


def _finish_timings(timings: dict, started: float) -> dict:
    """``timings`` in :data:`PHASES` order with ``other`` (whatever no phase timed: Python between the
    phases, building the result), ``overlap`` (the seconds two phases ran at once: decoding a chunk
    while the previous one was classified) and ``total`` (wall seconds since ``started``), so that
    the phases plus ``other`` minus ``overlap`` are ``total``."""
    total = time.perf_counter() - started
    out = {key: timings[key] for key in PHASES[:-2] if key in timings}
    timed = sum(out.values())
    out["other"] = max(0.0, total - timed)
    out["overlap"] = max(0.0, timed - total)
    out["total"] = total
    return out


@dataclass
class Prediction:
    """A song's classification.

    Attributes
    ----------
    model : str
        Name of the model that classified it.
    labels : tuple of str
        Output labels, in the columns' order.
    probabilities : np.ndarray, shape (n_segments, n_labels), float32
        Each segment's softmax output.
    starts : np.ndarray, shape (n_segments,), float64
        Segment start times in seconds.
    segment_seconds : float
        Length of one segment.
    duration : float
        Length of the decoded audio in seconds.
    file : str or None
        Name of the input, when it had one.
    timings : dict of str to float
        Wall seconds per phase, in pipeline order (:data:`PHASES`): ``load`` (only when
        :func:`predict_file` loaded the model itself), ``peak`` (only for a song beyond full scale: the
        whole first pass, decoding and resampling included, that read on to find its peak before the
        scaled song was classified), ``decode`` (opening and decoding the file, downmix included),
        ``resample`` (to the model's rate), ``level`` (NaN repair, RMS, peak and clipping counts),
        ``segment`` (cutting and padding segments), ``features``, ``predict`` (the
        forward pass), ``other`` (what no phase timed: Python between them, building the result),
        ``overlap`` (seconds when two phases ran at once: :func:`predict_file` decodes a chunk while
        it classifies the one before) then ``total``, the call's wall time: the phases and ``other``
        less ``overlap`` add up to it. A live stream's
        (:class:`codeFeature.stream.StreamClassifier`) holds only ``features`` and ``predict``.
    warnings : list of str
        Readable notes about the input (silence, clipping, padding).
    extras : dict of str to np.ndarray
        Per-segment values of a model's further outputs, such as musicnn's 50 tags,
        each shape (n_segments, n_values); labelled by ``extra_labels``.
    rule : DecisionRule
        How the segments become one answer (from the model's manifest; see :mod:`codeFeature.decision`).
    rms : float or None
        The decoded audio's RMS level (full scale 1.0), when known; silence makes the answer "not sure".
    """

    model: str
    labels: tuple[str, ...]
    probabilities: np.ndarray
    starts: np.ndarray
    segment_seconds: float
    duration: float
    file: Optional[str] = None
    timings: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    extras: dict = field(default_factory=dict)
    extra_labels: dict = field(default_factory=dict)
    rule: DecisionRule = field(default_factory=DecisionRule)
    rms: Optional[float] = None

    @property
    def ends(self) -> np.ndarray:
        """Segment end times in seconds, clipped to the song's duration."""
        return np.minimum(self.starts + self.segment_seconds, self.duration)

    @property
    def segment_labels(self) -> list[str]:
        """Each segment's most probable label."""
        return [self.labels[i] for i in self.probabilities.argmax(axis=1)]

    @property
    def segment_confidences(self) -> np.ndarray:
        """Each segment's top probability, shape (n_segments,)."""
        return self.probabilities.max(axis=1)

    @property
    def mean_probabilities(self) -> np.ndarray:
        """Probabilities averaged over segments, shape (n_labels,)."""
        return self.probabilities.mean(axis=0)

    @property
    def votes(self) -> np.ndarray:
        """How many segments voted for each label, shape (n_labels,)."""
        return np.bincount(self.probabilities.argmax(axis=1), minlength=len(self.labels))

    @property
    def verdict(self) -> Verdict:
        """The answer by the model's :attr:`rule`: genre, confidence, top three, and whether it is not sure."""
        return decide(self.probabilities, self.labels, rule=self.rule, rms=self.rms, tags=self.extras.get("tags"))

    @property
    def genre(self) -> str:
        """The winning genre by the model's rule (default: the majority vote over segments, a tie going
        to the higher mean probability); the best guess even when :attr:`not_sure`."""
        return self.verdict.genre

    @property
    def confidence(self) -> float:
        """Mean probability of :attr:`genre` over the segments, in [0, 1]."""
        return self.verdict.confidence

    @property
    def vote_share(self) -> float:
        """Fraction of segments that voted for :attr:`genre`."""
        return self.verdict.vote_share

    @property
    def not_sure(self) -> bool:
        """Whether the evidence is too weak to name one genre (see :attr:`verdict`'s reasons)."""
        return self.verdict.not_sure

    def top_tags(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` strongest tags averaged over segments, when the model outputs tags."""
        if "tags" not in self.extras:
            return []
        mean = self.extras["tags"].mean(axis=0)
        order = np.argsort(mean)[::-1][:k]
        return [(self.extra_labels["tags"][i], float(mean[i])) for i in order]

    def segments(self) -> list[dict]:
        """One dict per segment: start, end, genre, confidence and every label's probability."""
        rows = []
        for start, end, probs in zip(self.starts, self.ends, self.probabilities):
            best = int(np.argmax(probs))
            row = {"start": round(float(start), 3), "end": round(float(end), 3),
                   "genre": self.labels[best], "confidence": round(float(probs[best]), 4)}
            rows.append(row)
        return rows

    def to_dict(self) -> dict:
        """The CLI's JSON object (see ``python -m codeFeature --help``): the original keys, then the
        verdict's (``not_sure``, ``state``, ``outside_kind``, ``sounds_like``, ``verdict``, ``reasons``, ``top``,
        ``vote_share``, ``rule``)."""
        verdict = self.verdict
        return {
            "file": self.file,
            "model": self.model,
            "genre": verdict.genre,
            "confidence": round(verdict.confidence, 4),
            "probabilities": {label: round(float(p), 4) for label, p in zip(self.labels, self.mean_probabilities)},
            "segments": self.segments(),
            "seconds": round(float(self.duration), 3),
            **verdict.to_dict(),
        }

    def to_csv(self) -> str:
        """Per-segment predictions as CSV: start, end, genre, confidence, then one column per label."""
        lines = [",".join(["start", "end", "genre", "confidence", *self.labels])]
        for start, end, probs in zip(self.starts, self.ends, self.probabilities):
            best = int(np.argmax(probs))
            cells = [f"{start:.3f}", f"{end:.3f}", self.labels[best], f"{probs[best]:.4f}"]
            lines.append(",".join(cells + [f"{p:.4f}" for p in probs]))
        return "\n".join(lines) + "\n"


def predict_segments(segments: np.ndarray, *, model: LoadedModel, progress: Optional[ProgressCallback] = None,
                     timings: Optional[dict] = None, extras: Optional[dict] = None) -> np.ndarray:
    """Probabilities for each segment.

    Parameters
    ----------
    segments : np.ndarray, shape (n_segments, model.config.segment_samples), float32
        Segments at ``model.config.sample_rate`` (see :func:`codeFeature.segments.segment_array`).
    model : LoadedModel
    progress : callable(fraction, message), optional
        Called after each chunk of segments.
    timings : dict, optional
        ``features`` and ``predict`` seconds are added to it.
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
    t_feat = t_pred = 0.0
    for lo in range(0, n, CHUNK_SEGMENTS):
        hi = min(n, lo + CHUNK_SEGMENTS)
        t0 = time.perf_counter()
        x = segment_features(segments[lo:hi], model.config)
        t1 = time.perf_counter()
        result, *rest = model.forward(x)
        for spec, value in zip(extra_specs, rest):
            extra_parts[spec["name"]].append(value)
        out[lo:hi] = result
        t2 = time.perf_counter()
        t_feat += t1 - t0
        t_pred += t2 - t1
        if progress is not None:
            progress(hi / n, f"classified {hi} of {n} segments")
    if extras is not None:
        extras.update({name: np.concatenate(parts) for name, parts in extra_parts.items() if parts})
    if timings is not None:
        timings["features"] = timings.get("features", 0.0) + t_feat
        timings["predict"] = timings.get("predict", 0.0) + t_pred
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
    started = time.perf_counter()
    if not isinstance(model, LoadedModel):
        raise ConfigError(f"model must be a LoadedModel from load_model(), not {type(model).__name__}")
    config = model.config
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim != 1:
        raise ConfigError(f"samples must be 1-D mono, got shape {samples.shape}; average the channels first")
    timings: dict = {}
    if sample_rate is not None and sample_rate != config.sample_rate:
        t0 = time.perf_counter()
        samples = resample(samples, sample_rate, config.sample_rate)
        timings["resample"] = time.perf_counter() - t0
    notes = list(warnings or [])
    duration = len(samples) / config.sample_rate
    t0 = time.perf_counter()
    segments, starts = segment_array(samples, config)
    timings["segment"] = time.perf_counter() - t0
    notes += _padding_note(duration, config)
    extras: dict = {}
    probabilities = predict_segments(segments, model=model, progress=progress, timings=timings, extras=extras)
    extra_labels = _extra_labels(model)
    t0 = time.perf_counter()
    rms = float(np.sqrt(np.dot(samples, samples) / len(samples))) if len(samples) else 0.0
    timings["level"] = time.perf_counter() - t0
    return Prediction(model=model.name, labels=model.labels, probabilities=probabilities, starts=starts,
                      segment_seconds=config.segment_seconds, duration=duration, file=file,
                      timings=_finish_timings(timings, started), warnings=notes, extras=extras,
                      extra_labels=extra_labels, rule=model.decision_rule, rms=rms)


#: A song shorter than one segment is padded by repeating it; the note says so only when the repeat
#: is more than this share of the segment (a 29.7 s GTZAN track in a 30 s segment is not worth a warning).
PADDING_NOTE_SHARE = 0.1


def _padding_note(duration: float, config) -> list[str]:
    """The padding warning for a song of ``duration`` seconds, as a list of zero or one note."""
    if duration >= config.segment_seconds * (1 - PADDING_NOTE_SHARE):
        return []
    return [f"the audio lasts {duration:.1f} s, less than one {config.segment_seconds:g} s segment; "
            "it was padded by repeating it"]


def _extra_labels(model: LoadedModel) -> dict:
    return {spec["name"]: tuple(spec["labels"]) for spec in model.manifest.get("extra_outputs", [])}


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity: a container's or ``taskset``'s share, not the
    machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_jobs() -> int:
    """Files the CLI and a threaded library scan classify at once by default: two more than
    :func:`usable_cores`, at most 8.

    Each file is decoded on its own thread while the network runs on the engine's streams; with only one
    file per core, every file can be waiting on the network at the same moment and a core then idles.
    On 2 cores, the batch CLI kept 95 % of the CPU busy with 2 files at once and 99 % with 3, 4 or 6
    (``python -m bench.bench_speed --only batch`` prints the share beside its figure).
    """
    return min(8, usable_cores() + 2)


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
    started = time.perf_counter()
    timings: dict = {}
    if not isinstance(model, LoadedModel):
        model = load_model(model)
        timings["load"] = time.perf_counter() - started
    name = filename or (str(source) if not hasattr(source, "read") and not isinstance(source, (bytes, bytearray, memoryview))
                        else getattr(source, "name", None))
    rate = model.config.sample_rate
    try:
        t0 = time.perf_counter()
        with open_audio(source, sample_rate=rate, filename=filename) as stream:
            timings["decode"] = time.perf_counter() - t0
            if stream.expected_samples and stream.expected_samples <= REPLAY_SECONDS * rate:
                stream.keep(int(REPLAY_SECONDS * rate))  # a longer song is not held, even for a while
            prediction = _predict_stream(stream, model=model, progress=progress, file=name, timings=timings)
    except _BeyondFullScale as beyond:
        # a song beyond full scale (a loud master once resampled, a hot float file) is scaled by its
        # peak, which only the whole song gives: the first pass read on to measure it, and this one
        # classifies the scaled blocks, from the first pass's copy where the song is short enough,
        # else decoded again, so memory stays that of a few chunks whatever the length
        timings = {key: timings[key] for key in ("load",) if key in timings}
        timings["peak"] = time.perf_counter() - t0  # the first pass: decoding and measuring
        replay = stream.replay()
        with replay or open_audio(source, sample_rate=rate, filename=filename) as again:
            prediction = _predict_stream(again, model=model, progress=progress, file=name, timings=timings,
                                         peak=beyond.peak)
    prediction.timings = _finish_timings(timings, started)
    return prediction


class _BeyondFullScale(Exception):
    """The stream holds samples beyond [-1, 1], up to ``peak``: classify it again, scaled by ``peak``."""

    def __init__(self, peak: float) -> None:
        super().__init__(f"peak {peak}")
        self.peak = peak


def _predict_stream(stream: AudioStream, *, model: LoadedModel, progress: Optional[ProgressCallback],
                    file: Optional[str], timings: dict, peak: Optional[float] = None) -> Prediction:
    """Classify ``stream`` chunk by chunk, cutting segments by the rule of :func:`segment_array`;
    adds each phase's seconds to ``timings``.

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
            return _predict_chunks(stream, model=model, progress=progress, file=file, timings=timings,
                                   worker=worker, pending=pending, peak=peak)
        finally:
            for future in pending:
                future.cancel()  # an error or an interrupt: do not classify what is left


def _predict_chunks(stream: AudioStream, *, model: LoadedModel, progress: Optional[ProgressCallback],
                    file: Optional[str], timings: dict, worker: ThreadPoolExecutor, pending: deque,
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
        timings.setdefault(key, 0.0)
    resampled_before = stream.resample_seconds
    extras: dict = {}
    extra_parts: dict = {}
    expected_segments = stream.expected_samples // seg if stream.expected_samples else 0

    def run(segments: np.ndarray) -> tuple[np.ndarray, dict]:
        found: dict = {}
        return predict_segments(segments, model=model, timings=timings, extras=found), found

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
        pending.append(worker.submit(run, segments.copy()))  # the chunk buffer is refilled meanwhile

    blocks = iter(stream)
    fetching = 0.0  # seconds in next(): decoding, downmix and resampling (told apart below)
    while True:
        t0 = time.perf_counter()
        block = next(blocks, None)
        t1 = time.perf_counter()
        fetching += t1 - t0
        if block is None:
            break
        block = raw.add(block)
        if scale is not None:
            block = meter.add(block / scale)  # as load_audio scales the whole song
        t2 = time.perf_counter()
        timings["level"] += t2 - t1
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
                t3 = time.perf_counter()
                timings["segment"] += t3 - t2
                classify(chunk.reshape(CHUNK_SEGMENTS, seg))
                filled = 0
                t2 = time.perf_counter()
        timings["segment"] += time.perf_counter() - t2
    resampled = stream.resample_seconds - resampled_before
    timings["resample"] += resampled
    timings["decode"] += fetching - resampled
    if total == 0:
        raise AudioDecodeError(f"{stream.name} holds no audio samples")
    t0 = time.perf_counter()
    n_full, tail = plan_segments(total, config)
    # the segments not yet classified: whole ones still in the chunk, then the kept tail, padded
    whole = n_full - (total - filled) // seg
    rest = [chunk[: whole * seg].reshape(whole, seg)]
    if tail:
        rest.append(wrap_pad(chunk[whole * seg: whole * seg + tail], seg)[None, :])
    timings["segment"] += time.perf_counter() - t0
    if whole or tail:
        t0 = time.perf_counter()
        rest = np.concatenate(rest)
        timings["segment"] += time.perf_counter() - t0
        classify(rest)
    collect(0)
    notes = list(stream.warnings) + raw.repair_warnings() + (scaling_warnings(peak) if peak else [])
    notes += meter.level_warnings()
    duration = total / config.sample_rate
    notes += _padding_note(duration, config)
    extras.update({key: np.concatenate(value) for key, value in extra_parts.items()})
    return Prediction(model=model.name, labels=model.labels, probabilities=np.concatenate(parts),
                      starts=np.arange(n_full + (1 if tail else 0), dtype=np.float64) * config.segment_seconds,
                      segment_seconds=config.segment_seconds, duration=duration, file=file, timings=timings,
                      warnings=notes, extras=extras, extra_labels=_extra_labels(model),
                      rule=model.decision_rule, rms=meter.rms)
