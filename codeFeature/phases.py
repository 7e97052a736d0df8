"""Where a classification spends its time, for whoever asks: benchmarks and profilers.

Nothing is timed unless a caller listens. Wrap the calls in :func:`record_phases`; every
:func:`~codeFeature.predict.predict_file` and :func:`~codeFeature.predict.predict_audio` that finishes
inside it, on this thread or in this context, appends its phases to the list it yields::

    with record_phases() as runs:
        prediction = predict_file("song.mp3", model=model)
    runs[-1]   # {"decode": ..., "features": ..., "predict": ..., "other": ..., "overlap": ..., "total": ...}

The pipeline asks :func:`current` for the clock of the call in progress. Without a listener it is
:data:`OFF`, whose clock reads 0 and which keeps nothing: the only cost is a context-variable look-up.
The record lives in a :class:`contextvars.ContextVar`, so concurrent calls in other threads are not
mixed in, and a worker thread sees it only when the caller hands its context over
(``contextvars.copy_context().run``), as :func:`~codeFeature.predict.predict_file` does for the thread
that classifies a chunk while the next one decodes.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from typing import Iterator, Optional, Union

#: The phases a record holds, in pipeline order, then ``total``: ``load`` (only when
#: :func:`~codeFeature.predict.predict_file` loaded the model itself), ``peak`` (only for a song beyond
#: full scale: the whole first pass, decoding and resampling included, that read on to find its peak
#: before the scaled song was classified), ``decode`` (opening and decoding the file, downmix included),
#: ``resample`` (to the model's rate), ``level`` (NaN repair, RMS, peak and clipping counts),
#: ``segment`` (cutting and padding segments), ``features``, ``predict`` (the forward pass), ``other``
#: (what no phase timed: Python between them, building the result) and ``overlap`` (seconds when two
#: phases ran at once: a chunk decodes while the one before is classified). The phases and ``other``
#: less ``overlap`` add up to ``total``, the call's wall time.
PHASES = ("load", "peak", "decode", "resample", "level", "segment", "features", "predict", "other", "overlap")


class PhaseClock:
    """The seconds of one call, phase by phase (see :data:`PHASES`)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @staticmethod
    def now() -> float:
        return time.perf_counter()

    def add(self, phase: str, seconds: float) -> None:
        """Add ``seconds`` to ``phase``."""
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    def restart(self, *, keep: tuple[str, ...] = ()) -> None:
        """Forget every phase but ``keep`` (a second pass replaces the first one's phases)."""
        self.seconds = {key: value for key, value in self.seconds.items() if key in keep}

    def result(self) -> dict[str, float]:
        """The phases in :data:`PHASES` order, then ``other``, ``overlap`` and ``total`` (wall seconds
        since the call started), so that the phases plus ``other`` minus ``overlap`` are ``total``."""
        total = time.perf_counter() - self.started
        out = {key: self.seconds[key] for key in PHASES[:-2] if key in self.seconds}
        timed = sum(out.values())
        out["other"] = max(0.0, total - timed)
        out["overlap"] = max(0.0, timed - total)
        out["total"] = total
        return out


class _Off:
    """The clock when nobody listens: it reads 0 and keeps nothing."""

    @staticmethod
    def now() -> float:
        return 0.0

    def add(self, phase: str, seconds: float) -> None:
        pass

    def restart(self, *, keep: tuple[str, ...] = ()) -> None:
        pass


OFF = _Off()
Clock = Union[PhaseClock, _Off]

_records: contextvars.ContextVar[Optional[list]] = contextvars.ContextVar("codeFeature_phase_records", default=None)
_clock: contextvars.ContextVar[Optional[PhaseClock]] = contextvars.ContextVar("codeFeature_phase_clock", default=None)


@contextlib.contextmanager
def record_phases() -> Iterator[list[dict[str, float]]]:
    """Time every classification finished inside the ``with`` block; yields the list their records
    (dicts as :meth:`PhaseClock.result` gives) are appended to, in the order the calls finish."""
    records: list[dict[str, float]] = []
    token = _records.set(records)
    try:
        yield records
    finally:
        _records.reset(token)


@contextlib.contextmanager
def timed_call() -> Iterator[Clock]:
    """The clock of one classification: a new one when a :func:`record_phases` listens and no call is in
    progress (its record is appended when the call succeeds), the call in progress's when one is
    (a call made by another counts in the outer one), else :data:`OFF`."""
    outer = _clock.get()
    records = _records.get()
    if outer is not None or records is None:
        yield outer if outer is not None else OFF
        return
    clock = PhaseClock()
    token = _clock.set(clock)
    try:
        yield clock
    finally:
        _clock.reset(token)
    records.append(clock.result())


def current() -> Clock:
    """The clock of the call in progress in this context, or :data:`OFF`."""
    clock = _clock.get()
    return OFF if clock is None else clock
