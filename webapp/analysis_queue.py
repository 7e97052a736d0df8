"""The server's one queue of analyses: at most ``CODEFEATURE_APP_ANALYSES`` decode-and-classify runs at
once, whatever the number of visitors; the others wait their turn and are told how many are ahead."""

from __future__ import annotations

import collections
import contextlib
import functools
import threading
import time
from typing import Callable, Iterator

from codeFeature.errors import GenreError
from webapp import settings
from webapp.memory import release_memory


class ServerBusy(GenreError):
    """The analysis queue is full, or the wait for a turn ran out."""


def waiting_message(ahead: int, *, slots: int | None = None) -> str:
    """What a waiting visitor reads: how many analyses are before theirs (``slots``: analyses at once,
    default the server's)."""
    slots = settings.current().analyses_at_once if slots is None else slots
    others = f"{ahead} other analysis" if ahead == 1 else f"{ahead} other analyses"
    return (f"Waiting for {others} to finish: the server analyses {slots} song"
            f"{'' if slots == 1 else 's'} at a time. Yours starts by itself; keep this page open.")


class AnalysisQueue:
    """At most ``slots`` analyses at once in the process, first come first served.

    A visitor beyond ``max_waiting`` waiting ones, or one who waited ``max_wait`` seconds, gets
    :class:`ServerBusy` with a message in words. Each slot's end gives freed memory back (:func:`release_memory`).
    """

    def __init__(self, slots: int, *, max_waiting: int, max_wait: float,
                 release: Callable[[], None] = release_memory):
        self.slots, self.max_waiting, self.max_wait = slots, max_waiting, max_wait
        self._release = release
        self._cond = threading.Condition()
        self._running = 0
        self._waiting: collections.deque = collections.deque()

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def _wait_for_turn(self, ticket, on_wait) -> None:
        deadline = time.monotonic() + self.max_wait
        told = None
        try:
            while True:
                with self._cond:
                    if self._waiting[0] is ticket and self._running < self.slots:
                        self._waiting.popleft()
                        self._running += 1
                        self._cond.notify_all()
                        return
                    ahead = self._running + self._waiting.index(ticket)
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise ServerBusy(f"the server was still busy with {ahead} other "
                                         f"{'analysis' if ahead == 1 else 'analyses'} after {self.max_wait:g} s; "
                                         "try again in a few minutes")
                    if ahead == told:
                        self._cond.wait(min(left, 0.5))
                        continue
                    told = ahead
                if on_wait is not None:
                    on_wait(ahead)  # outside the lock: it draws on the page
        except BaseException:
            with self._cond:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                    self._cond.notify_all()
            raise

    @contextlib.contextmanager
    def turn(self, on_wait: Callable[[int], None] | None = None) -> Iterator[None]:
        """Hold one slot for the ``with`` block. ``on_wait(ahead)`` is called (outside the lock) while
        waiting, whenever the number of analyses ahead changes."""
        ticket = object()
        with self._cond:
            start_now = self._running < self.slots and not self._waiting
            if start_now:
                self._running += 1
            elif len(self._waiting) >= self.max_waiting:
                busy = self._running + len(self._waiting)
                raise ServerBusy(f"the server is busy with {busy} other "
                                 f"{'analysis' if busy == 1 else 'analyses'} and cannot queue more; "
                                 "try again in a few minutes")
            else:
                self._waiting.append(ticket)
        if not start_now:
            self._wait_for_turn(ticket, on_wait)
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()
            self._release()


@functools.cache
def server_queue() -> AnalysisQueue:
    """The server's one queue (every page and session shares it), made at first use from the settings."""
    s = settings.current()
    return AnalysisQueue(s.analyses_at_once, max_waiting=s.max_waiting, max_wait=s.max_wait_seconds)
