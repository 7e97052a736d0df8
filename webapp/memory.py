"""What keeps the server's memory bounded between reruns: the one store for what sessions keep
(:func:`keep`, :func:`kept`, under ``CODEFEATURE_APP_KEEP_MB``), the sweep that ends closed tabs' sessions
(:func:`sweep_sessions`, run by :func:`start_janitor`), and giving freed memory back to the system
(:func:`tune_malloc`, :func:`release_memory`).
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import functools
import gc
import logging
import os
import threading
import time

import streamlit as st

from webapp import settings

log = logging.getLogger("app.memory")


# ---------------------------------------------------------------- giving memory back to the system

def _load_libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
        return libc
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows): nothing to trim
        return None


_LIBC = _load_libc()
#: mallopt's option numbers (glibc's malloc.h)
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8


@functools.cache
def tune_malloc() -> None:
    """Two arenas, and every block of 1 MiB or more in its own mapping, unless the operator chose otherwise
    (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``). Once per process (the app calls it on every run).

    Each analysis runs on another script thread; glibc gives threads arenas of their own (up to eight per
    core) and raises its mmap threshold after each large free, so a song's mid-sized buffers end up spread
    over many heaps that are never handed back whole. ``bench/bench_load.py`` shows the difference (its
    figures are in docs/performance.md); the operator's environment variables win, so it can be measured
    both ways.
    """
    if _LIBC is None:
        return
    if "MALLOC_ARENA_MAX" not in os.environ:
        _LIBC.mallopt(_M_ARENA_MAX, 2)
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, 1 << 20)


def release_memory() -> None:
    """Collect Python's cycles, then ask glibc to hand its free pages back to the system.

    glibc keeps freed memory in its arenas (one per thread that allocated, up to eight per core) and
    returns it only from the top of the main heap; ``malloc_trim(0)`` gives back the free pages of every
    arena. Without it the server's resident size stays at its peak after the visitors leave.
    """
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


# ---------------------------------------------------------------- what sessions keep

class SessionStore:
    """Heavy objects of every session (uploaded bytes, decoded audio, pictures) under one byte budget.

    Streamlit's session state has no size limit and lives as long as the session (and two minutes
    more after the tab closes); these objects live here instead, keyed by session id, least recently
    used first out. A page whose object was let go redraws it or says so. Entries of sessions the
    server no longer knows go at the next sweep (:func:`sweep_sessions`).
    """

    def __init__(self, budget_bytes: int):
        self.budget = int(budget_bytes)
        self._lock = threading.Lock()
        self._items: collections.OrderedDict = collections.OrderedDict()
        self._bytes = 0

    def put(self, session: str, name: str, value, nbytes: int) -> bool:
        """Keep ``value`` (about ``nbytes``) for ``session``; ``False`` if it alone exceeds the budget."""
        with self._lock:
            self._pop((session, name))
            if nbytes > self.budget:
                return False
            self._items[(session, name)] = (value, int(nbytes))
            self._bytes += int(nbytes)
            while self._bytes > self.budget:
                self._pop(next(iter(self._items)))
            return True

    def get(self, session: str, name: str):
        with self._lock:
            item = self._items.get((session, name))
            if item is None:
                return None
            self._items.move_to_end((session, name))
            return item[0]

    def drop(self, session: str, name: str) -> None:
        with self._lock:
            self._pop((session, name))

    def keep_only(self, sessions) -> int:
        """Drop the entries of every session not in ``sessions``; returns the bytes let go."""
        sessions = set(sessions)
        with self._lock:
            before = self._bytes
            for key in [k for k in self._items if k[0] not in sessions]:
                self._pop(key)
            return before - self._bytes

    def _pop(self, key) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self._bytes -= item[1]

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def sessions(self) -> set:
        with self._lock:
            return {k[0] for k in self._items}


@functools.cache
def store() -> SessionStore:
    """The server's one store of what sessions keep, made at first use with ``CODEFEATURE_APP_KEEP_MB``."""
    return SessionStore(int(settings.current().keep_mb * 1e6))


def session_id() -> str:
    """The current session's id (``"no-session"`` outside a Streamlit run)."""
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else "no-session"


def keep(name: str, value, nbytes: int) -> bool:
    """Keep ``value`` for this session under the server's budget (see :class:`SessionStore`)."""
    return store().put(session_id(), name, value, nbytes)


def kept(name: str):
    """What this session kept under ``name``, or ``None`` (never kept, or let go for the budget)."""
    return store().get(session_id(), name)


# ---------------------------------------------------------------- sessions that ended

_SWEEP_SECONDS = 10.0


class Sweeper:
    """When each closed session was first seen closed (its grace period runs from then)."""

    def __init__(self):
        self.gone_since: dict[str, float] = {}


_SWEEPER = Sweeper()


def sweep_sessions(runtime=None, *, now: float | None = None, grace: float | None = None,
                   sweeper: Sweeper | None = None) -> tuple[int, int]:
    """End the sessions whose tab closed more than the grace period ago, drop the kept objects of every
    session the server no longer knows, and give the memory back. Returns (sessions ended, bytes let go).

    Streamlit keeps a closed tab's session (its state, uploaded files and media) for
    ``server.disconnectedSessionTTL`` seconds in case the tab reconnects, then forgets it without
    freeing its uploaded files or media; ending it here, through the session manager on the server's
    event loop, frees them. Without a running server (``AppTest``) only the kept objects are swept.

    ``grace`` defaults to ``CODEFEATURE_APP_SESSION_GRACE``, capped at half the TTL; ``sweeper`` to the
    server's own record of closed sessions.
    """
    from streamlit import config
    from streamlit.runtime import Runtime

    now = time.monotonic() if now is None else now
    sweeper = _SWEEPER if sweeper is None else sweeper
    if runtime is None:
        if not Runtime.exists():
            return 0, 0
        runtime = Runtime.instance()
    manager = getattr(runtime, "_session_mgr", None)  # no public accessor; the runtime ends sessions through it
    if manager is None:  # a test harness's stand-in runtime (AppTest): nothing to end, only what is kept
        return 0, 0
    active = {info.session.id for info in manager.list_active_sessions()}
    known = {info.session.id for info in manager.list_sessions()}
    if grace is None:
        grace = settings.current().session_grace_seconds
    grace = min(grace, config.get_option("server.disconnectedSessionTTL") / 2)
    ended = 0
    for sid in known - active:
        since = sweeper.gone_since.setdefault(sid, now)
        if now - since >= grace:
            ended += 1
            _end_session(runtime, sid)
    for sid in list(sweeper.gone_since):
        if sid in active or sid not in known:
            sweeper.gone_since.pop(sid)
    freed = store().keep_only(active | (known - {s for s in sweeper.gone_since
                                                 if now - sweeper.gone_since[s] >= grace}))
    if ended or freed:
        log.info("ended %d closed sessions; let go %.0f MB they kept", ended, freed / 1e6)
        release_memory()
    return ended, freed


def _end_session(runtime, sid: str) -> None:
    manager = runtime._session_mgr

    def end_if_still_closed() -> None:
        # the visitor may have come back since: only a session still stored (not active) is ended
        if manager.get_active_session_info(sid) is None and manager.get_session_info(sid) is not None:
            manager.close_session(sid)

    loop = runtime._get_async_objs().eventloop  # session storage is only touched on the server's loop
    try:
        loop.call_soon_threadsafe(end_if_still_closed)
    except RuntimeError:  # the server is stopping: it ends every session itself
        pass


@st.cache_resource(show_spinner=False)
def start_janitor() -> threading.Thread:
    """Start, once per server process, the thread that calls :func:`sweep_sessions` every few seconds."""

    def loop() -> None:
        while True:
            time.sleep(_SWEEP_SECONDS)
            try:
                sweep_sessions()
            except Exception:  # a sweep that fails must not end the sweeping; the operator reads the log
                log.exception("session sweep failed")

    thread = threading.Thread(target=loop, name="session-janitor", daemon=True)
    thread.start()
    return thread
