"""Streamlit pieces shared by the app's pages: the model cache, the sidebar's model card, the
analysis view :func:`show_analysis` (the upload page, the live page's recorded clip and the Library
page all show a song's result with it), and what keeps the server's memory bounded: the queue of
analyses (:data:`QUEUE`), the one budget for what sessions keep (:data:`KEPT`), the upload checks
(:func:`check_upload`, :func:`decode_upload`) and the sweep that frees closed sessions (:func:`start_janitor`).

UI only; everything from bytes to a prediction is in :mod:`codeFeature`.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import ctypes.util
import gc
import hashlib
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator

import numpy as np
import streamlit as st

from codeFeature import GENRES, GenreError, load_model, predict_audio
from codeFeature.audio import DecodedAudio

log = logging.getLogger("app.ui")

#: One colour per genre, the same in every chart: Paul Tol's "muted" qualitative scheme (designed to
#: stay distinct under the common colour-vision deficiencies) and, for the tenth, Okabe and Ito's
#: orange. No grey: a grey genre looks disabled. Every chart also names the genre in text or on hover.
GENRE_COLOURS = {
    "blues": "#332288", "classical": "#88CCEE", "country": "#DDCC77", "disco": "#AA4499", "hiphop": "#117733",
    "jazz": "#44AA99", "metal": "#882255", "pop": "#CC6677", "reggae": "#999933", "rock": "#E69F00",
}
_SPARE_COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7"]


# altair and pandas are imported where they are used: at a page's first run the model starts loading
# before they are imported, and they import while it loads

def genre_colour_scale(labels=GENRES):
    """The genre -> colour scale (labels other than GTZAN's get spare colours)."""
    import altair as alt

    labels = list(labels)
    spare = iter(_SPARE_COLOURS * 4)
    return alt.Scale(domain=labels, range=[GENRE_COLOURS.get(g) or next(spare) for g in labels])


# ---------------------------------------------------------------- memory: settings

def _setting(name: str, default: float, *, minimum: float) -> float:
    """A number from the environment (read by the person who starts the server); a bad value is logged
    and the default used, so that a typo cannot stop the app."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum:  # also refuses nan
        log.warning("%s=%r is not a number >= %g; using %g", name, raw, minimum, default)
        return default
    return value


#: Analyses (decode and classify) run at once in the whole server; others wait their turn. Each holds
#: its decoded song and the model's working buffers, so this, not the number of visitors, sets the peak.
ANALYSES_AT_ONCE = int(_setting("CODEFEATURE_APP_ANALYSES", 1, minimum=1))
#: Visitors that may wait for a turn; one more is told at once that the server is busy.
MAX_WAITING = int(_setting("CODEFEATURE_APP_QUEUE", 8, minimum=0))
#: Longest wait for a turn, in seconds, before the visitor is told to try again later.
MAX_WAIT_SECONDS = _setting("CODEFEATURE_APP_WAIT_SECONDS", 300, minimum=1)
#: Longest audio the app analyses, in minutes: refused from the header before it is decoded (and, where
#: the header does not say, as soon as the decoder passes it). Ten minutes of decoded audio is ~53 MB.
MAX_MINUTES = _setting("CODEFEATURE_APP_MAX_MINUTES", 30, minimum=0.1)
#: What all sessions together keep between reruns (uploaded bytes, decoded audio, pictures), in MB;
#: the least recently used goes first.
KEEP_MB = _setting("CODEFEATURE_APP_KEEP_MB", 512, minimum=1)


# ---------------------------------------------------------------- memory: giving it back to the system

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


def tune_malloc() -> None:
    """Two arenas, and every block of 1 MiB or more in its own mapping, unless the operator chose otherwise
    (``MALLOC_ARENA_MAX``, ``MALLOC_MMAP_THRESHOLD_``).

    Each analysis runs on another script thread; glibc gives threads arenas of their own (up to eight per
    core) and raises its mmap threshold after each large free, so a song's mid-sized buffers end up spread
    over many heaps that are never handed back whole. ``bench/bench_load.py`` shows the difference (its
    figures are in the README); the operator's environment variables win, so it can be measured both ways.
    """
    if _LIBC is None:
        return
    if "MALLOC_ARENA_MAX" not in os.environ:
        _LIBC.mallopt(_M_ARENA_MAX, 2)
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, 1 << 20)


tune_malloc()


def release_memory() -> None:
    """Collect Python's cycles, then ask glibc to hand its free pages back to the system.

    glibc keeps freed memory in its arenas (one per thread that allocated, up to eight per core) and
    returns it only from the top of the main heap; ``malloc_trim(0)`` gives back the free pages of every
    arena. Without it the server's resident size stays at its peak after the visitors leave.
    """
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


# ---------------------------------------------------------------- memory: the analysis queue

class ServerBusy(GenreError):
    """The analysis queue is full, or the wait for a turn ran out."""


def waiting_message(ahead: int) -> str:
    """What a waiting visitor reads: how many analyses are before theirs."""
    others = f"{ahead} other analysis" if ahead == 1 else f"{ahead} other analyses"
    return (f"Waiting for {others} to finish: the server analyses {ANALYSES_AT_ONCE} song"
            f"{'' if ANALYSES_AT_ONCE == 1 else 's'} at a time. Yours starts by itself; keep this page open.")


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


#: The server's one queue of analyses (every page and session shares it).
QUEUE = AnalysisQueue(ANALYSES_AT_ONCE, max_waiting=MAX_WAITING, max_wait=MAX_WAIT_SECONDS)


# ---------------------------------------------------------------- memory: what sessions keep

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


#: The server's one store of what sessions keep (see :data:`KEEP_MB`).
KEPT = SessionStore(int(KEEP_MB * 1e6))


def session_id() -> str:
    """The current session's id (``"no-session"`` outside a Streamlit run)."""
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx(suppress_warning=True)
    return ctx.session_id if ctx is not None else "no-session"


def keep(name: str, value, nbytes: int) -> bool:
    """Keep ``value`` for this session under the server's budget (see :class:`SessionStore`)."""
    return KEPT.put(session_id(), name, value, nbytes)


def kept(name: str):
    """What this session kept under ``name``, or ``None`` (never kept, or let go for the budget)."""
    return KEPT.get(session_id(), name)


# ---------------------------------------------------------------- memory: sessions that ended

#: How long a closed tab's session may wait for its visitor to come back before it is ended and its
#: uploads, media and kept objects freed (at most half of Streamlit's ``server.disconnectedSessionTTL``,
#: so that it is ended before Streamlit drops it without freeing its files).
SESSION_GRACE_SECONDS = _setting("CODEFEATURE_APP_SESSION_GRACE", 30, minimum=0)
_SWEEP_SECONDS = 10.0


class _Sweeper:
    def __init__(self):
        self.gone_since: dict[str, float] = {}


_SWEEPER = _Sweeper()


def sweep_sessions(runtime=None, *, now: float | None = None) -> tuple[int, int]:
    """End the sessions whose tab closed more than the grace period ago, drop the kept objects of every
    session the server no longer knows, and give the memory back. Returns (sessions ended, bytes let go).

    Streamlit keeps a closed tab's session (its state, uploaded files and media) for
    ``server.disconnectedSessionTTL`` seconds in case the tab reconnects, then forgets it without
    freeing its uploaded files or media; ending it here, through the session manager on the server's
    event loop, frees them. Without a running server (``AppTest``) only the kept objects are swept.
    """
    from streamlit import config
    from streamlit.runtime import Runtime

    now = time.monotonic() if now is None else now
    if runtime is None:
        if not Runtime.exists():
            return 0, 0
        runtime = Runtime.instance()
    manager = getattr(runtime, "_session_mgr", None)  # no public accessor; the runtime ends sessions through it
    if manager is None:  # a test harness's stand-in runtime (AppTest): nothing to end, only what is kept
        return 0, 0
    active = {info.session.id for info in manager.list_active_sessions()}
    known = {info.session.id for info in manager.list_sessions()}
    grace = min(SESSION_GRACE_SECONDS, config.get_option("server.disconnectedSessionTTL") / 2)
    ended = 0
    for sid in known - active:
        since = _SWEEPER.gone_since.setdefault(sid, now)
        if now - since >= grace:
            ended += 1
            _end_session(runtime, sid)
    for sid in list(_SWEEPER.gone_since):
        if sid in active or sid not in known:
            _SWEEPER.gone_since.pop(sid)
    freed = KEPT.keep_only(active | (known - {s for s in _SWEEPER.gone_since
                                              if now - _SWEEPER.gone_since[s] >= grace}))
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


# ---------------------------------------------------------------- memory: uploads

def max_upload_bytes() -> int:
    """Streamlit's ``server.maxUploadSize`` (MB of 2^20 bytes, as Streamlit counts them) in bytes."""
    from streamlit import config

    return int(config.get_option("server.maxUploadSize")) * 1024 * 1024



class UploadRefused(GenreError):
    """An upload beyond what this server accepts (size or length)."""


def check_upload(data: bytes, name: str, *, limit: int | None = None) -> None:
    """Refuse an upload larger than the server's limit before anything reads it.

    Streamlit's upload handler already refuses a request body beyond ``server.maxUploadSize`` (from its
    Content-Length, then while it streams); this is the same limit checked again on the bytes the page
    actually got, so that a change of the upload path cannot bypass it.

    Raises
    ------
    UploadRefused
        When ``data`` is larger than ``limit`` bytes (default the server's).
    """
    limit = max_upload_bytes() if limit is None else limit
    if len(data) > limit:
        raise UploadRefused(f"{name} is {len(data) / 2**20:.3g} MB; this server takes files up to "
                            f"{limit / 2**20:.3g} MB. A compressed copy (mp3, ogg or flac) is smaller")


def decode_upload(data: bytes, name: str, *, sample_rate: int, max_seconds: float | None = None) -> DecodedAudio:
    """Decode an upload with :func:`codeFeature.load_audio`, refusing audio longer than ``max_seconds``
    (default :data:`MAX_MINUTES`) from its header before decoding, or, where the header does not say
    (formats ffmpeg decodes), as soon as the decoder passes the limit: a long file is never decoded whole.
    """
    import codeFeature

    check_upload(data, name)
    return codeFeature.load_audio(data, sample_rate=sample_rate, filename=name,
                                  max_seconds=MAX_MINUTES * 60 if max_seconds is None else max_seconds)


# ---------------------------------------------------------------- the model

def _load_and_warm(name: str):
    """Load a model and warm it up with one throw-away segment: librosa's numba kernels compile
    and TensorFlow traces the forward pass here, not during the user's first upload or live window.

    A child process tries the model first (:func:`codeFeature.model_probe.probe_model`, remembered once
    it passed): a model whose native code crashes is refused with a message instead of ending the server
    for every visitor."""
    from codeFeature.errors import ModelError
    from codeFeature.model_probe import probe_model

    verdict = probe_model(name)
    if not verdict.ok:
        log.error("model %s failed its trial run: %s", name, verdict.detail)
        raise ModelError(verdict.message)
    model = load_model(name)
    noise = np.random.default_rng(0).normal(0, 0.01, model.config.segment_samples).astype(np.float32)
    predict_audio(noise, model=model)
    # then one full batch per stream: the engine sizes each stream's working memory for the largest batch
    # it has run and keeps it; sized here, it is part of the loaded model, not a rise after some later
    # song (one of 24 s or more) that no closed session can give back
    streams = max(1, int(getattr(getattr(model, "_runner", None), "streams", 1) or 1))
    model.forward(np.zeros((streams * model.forward_batch, *model.config.input_shape), np.float32))
    return model


@st.cache_resource(show_spinner=False)
def _model_future(name: str) -> Future:
    """One background load per model and server process; every page and session shares it."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"load-{name}")
    future = pool.submit(_load_and_warm, name)
    pool.shutdown(wait=False)  # the load goes on; the thread ends with it
    return future


def preload_model(name: str) -> None:
    """Start loading ``name`` in the background (TensorFlow's import and the warm-up take seconds),
    so that it is ready by the time the visitor has chosen a file. Returns at once."""
    _model_future(name)


def get_model(name: str):
    """The loaded, warmed-up model ``name`` (inference is thread-safe), waiting for its load if needed.

    A failed load is not cached: the next call tries again.
    """
    future = _model_future(name)
    try:
        if future.done():
            return future.result()
        with st.spinner("Loading the model…"):
            return future.result()
    except BaseException:
        _model_future.clear(name)
        raise


@st.cache_data(show_spinner=False, max_entries=32)
def model_card(name: str) -> dict:
    """The model's manifest (cached: read on every rerun of every page)."""
    from codeFeature.model_io import read_manifest, resolve_model_dir

    return read_manifest(resolve_model_dir(name))


def model_config(name: str):
    """The model's :class:`FeatureConfig` from its manifest (no need to wait for the model)."""
    from codeFeature.config import FeatureConfig

    try:
        return FeatureConfig.from_dict(model_card(name)["feature_config"])
    except (KeyError, GenreError):
        return get_model(name).config  # a broken manifest: the loader says what is wrong


# ---------------------------------------------------------------- charts

def _segments_word(n: int) -> str:
    return f"{n} segment" if n == 1 else f"{n} segments"


def _time(seconds: float) -> str:
    """``83.4`` -> ``"1:23"``: times a listener can find in a player."""
    seconds = max(0.0, float(seconds))
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


#: What a probability chart's bars are: the song's mean over its segments, or one segment's own.
SONG_MEAN = "mean probability over the segments"
ONE_SEGMENT = "this segment's probability"


def probability_chart(labels, probabilities, *, votes=None, winner: str | None = None, title: str | None = None,
                      measure: str = SONG_MEAN):
    """Every label's probability as a horizontal bar, highest first, the winner starred.

    Parameters
    ----------
    labels : sequence of str
    probabilities : array, shape (n_labels,)
    votes : array of int, shape (n_labels,), optional
        Segments that voted for each label: printed beside its probability.
    winner : str, optional
        The label the verdict chose (marked ★ even when it is not the longest bar).
    measure : str
        What the bars are, the axis title: :data:`SONG_MEAN` or :data:`ONE_SEGMENT`.
    """
    import altair as alt
    import pandas as pd

    probabilities = np.asarray(probabilities, dtype=float)
    frame = pd.DataFrame({"genre": list(labels), "probability": probabilities})
    frame["name"] = [("★ " if g == winner else "") + g for g in frame["genre"]]
    frame["text"] = [f"{p:.0%}" + (f" · {int(v)} vote{'s' if v != 1 else ''}" if votes is not None else "")
                     for p, v in zip(probabilities, votes if votes is not None else probabilities)]
    frame = frame.sort_values("probability", ascending=False, kind="stable")
    # every label, always: no overlap culling, and 24 px a row so that none need it
    y = alt.Y("name:N", sort=list(frame["name"]), title=None,
              axis=alt.Axis(labelOverlap=False, labelLimit=160, labelFontSize=13, ticks=False))
    base = alt.Chart(frame)
    bars = base.mark_bar().encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1.35 if votes is not None else 1.15], nice=False),
                axis=alt.Axis(format="%", values=[0, 0.25, 0.5, 0.75, 1.0]),
                title=measure),
        y=y,
        color=alt.Color("genre:N", scale=genre_colour_scale(labels), legend=None),
        stroke=alt.condition(alt.datum.genre == (winner or ""), alt.value("black"), alt.value(None)),
        tooltip=[alt.Tooltip("genre:N"), alt.Tooltip("probability:Q", format=".1%"),
                 *([alt.Tooltip("text:N", title="mean · votes")] if votes is not None else [])],
    )
    # the figure beside its bar; the scale runs on past 100 % so that it is never cut off on a phone
    text = [base.mark_text(align="left", dx=4, fontSize=12).encode(x="probability:Q", y=y, text="text:N")]
    chart = alt.layer(bars, *text).properties(height=24 * len(frame))
    return chart.properties(title=title) if title else chart


def probability_text(labels, probabilities, *, votes=None, measure: str = SONG_MEAN) -> str:
    """The chart in words, highest first (its ``alt`` text, for screen readers): "rock 41% (7 votes), ..."."""
    order = np.argsort(-np.asarray(probabilities, dtype=float), kind="stable")
    return measure[0].upper() + measure[1:] + ": " + ", ".join(
        f"{labels[i]} {probabilities[i]:.0%}" + (f" ({int(votes[i])} votes)" if votes is not None else "")
        for i in order)


def show_verdict(prediction) -> None:
    """The headline (a genre, or "Not sure: rock or metal"), its confidence, the rule that chose it and,
    beside it, every genre's mean probability and votes: the two ways of adding up the segments."""
    verdict = prediction.verdict
    n = len(prediction.probabilities)
    votes = prediction.votes
    left, right = st.columns([1, 2])
    with left:
        rule_help = "How the segments became one answer: " + prediction.rule.description + "."
        if verdict.state == "outside":
            # the third state: what it sounds like under it, as the two genres are under "Not sure"
            big = "Not music" if verdict.outside_kind == "not music" else f"Not one of the {verdict.genre_count_words}"
            st.metric("Genre", big, delta=("sounds like " + ", ".join(verdict.sounds_like)) if verdict.sounds_like
                      else None, delta_color="off", delta_arrow="off", help=rule_help)
        elif verdict.not_sure:
            # "Not sure" big, the two likeliest genres under it: a metric's value never wraps, and
            # "Not sure: classical or country" would be cut off in a half-width column
            st.metric("Genre", "Not sure", delta=verdict.headline.split(": ", 1)[1], delta_color="off",
                      delta_arrow="off", help=rule_help)
        else:
            st.metric("Genre", verdict.headline.capitalize(), help=rule_help)
        st.metric("Confidence", f"{verdict.confidence:.0%}",
                  help=f"{verdict.genre.capitalize()}'s probability averaged over the {_segments_word(n)}.")
        voted = int(votes[list(prediction.labels).index(verdict.genre)])
        st.caption(f"**{voted} of {_segments_word(n)}** voted {verdict.genre} · mean probability "
                   f"{verdict.confidence:.0%} · {prediction.duration:.1f} s analysed · model {prediction.model}")
        st.caption(f"Rule: {prediction.rule.description}.")
        if verdict.state == "outside":
            st.info(verdict.explanation)
        elif verdict.not_sure:
            st.warning(verdict.explanation)
        tags = prediction.top_tags(5)
        if tags:
            st.markdown("**Sounds like:** " + ", ".join(tag.lower() for tag, _ in tags),
                        help="The strongest of musicnn's 50 Million Song Dataset tags, averaged over the segments.")
    with right:
        st.markdown("**Mean probability and votes, every genre**")
        st.altair_chart(probability_chart(prediction.labels, prediction.mean_probabilities, votes=votes,
                                          winner=verdict.genre), width="stretch",
                        alt=probability_text(prediction.labels, prediction.mean_probabilities, votes=votes))


def end_label(duration: float) -> str:
    """The last tick, the song's end, as a player shows it but never rounded up: 29.7 s is "0:29.7", not 30."""
    whole = int(duration)
    tenths = int((duration - whole) * 10 + 1e-9)
    return _time(whole) + (f".{tenths}" if tenths else "")


def tick_label_expr(duration: float) -> str:
    """A Vega expression labelling a timeline tick in m:ss (rounded down, as players count), the song's end
    with :func:`end_label`."""
    mmss = ("floor(datum.value / 60) + ':' + (floor(datum.value % 60) < 10 ? '0' : '') + "
            "floor(datum.value % 60)")
    return f"datum.value >= {duration - 1e-6!r} ? '{end_label(duration)}' : {mmss}"


def timeline_chart(prediction):
    """Every segment as a bar coloured by its genre, with a legend, ticks on segment boundaries, the
    axis ending with the song, and the segment's time, genre and top three on hover."""
    import altair as alt
    import pandas as pd

    probs = prediction.probabilities
    labels = list(prediction.labels)
    starts, ends = prediction.starts, prediction.ends
    top3 = np.argsort(-probs, axis=1)[:, :3]
    table = pd.DataFrame({
        "segment": np.arange(1, len(probs) + 1), "start": starts, "end": ends,
        "genre": prediction.segment_labels, "confidence": prediction.segment_confidences.astype(float),
        "time": [f"{_time(a)}–{_time(b)} ({a:.1f}–{b:.1f} s)" for a, b in zip(starts, ends)],
        "top": [", ".join(f"{labels[j]} {probs[i, j]:.0%}" for j in row) for i, row in enumerate(top3)],
    })
    table["bottom"], table["top_edge"] = 0.0, 1.0  # a one-row band on a fixed 0-1 scale
    seg = prediction.segment_seconds
    # ticks on segment boundaries, thinned to at most ~12 so that the labels fit on a phone
    every = max(1, int(np.ceil(len(table) / 12)))
    ticks = [float(s) for s in starts[::every]] + [float(prediction.duration)]
    x = alt.X("start:Q", title="time (m:ss)", scale=alt.Scale(domain=[0, float(prediction.duration)], nice=False),
              axis=alt.Axis(values=ticks, labelExpr=tick_label_expr(float(prediction.duration)), grid=False))
    chart = alt.Chart(table).mark_rect(stroke="white", strokeWidth=0.5 if len(table) < 60 else 0).encode(
        x=x, x2="end:Q",
        y=alt.Y("bottom:Q", scale=alt.Scale(domain=[0, 1]), axis=None), y2="top_edge:Q",
        # the legend is HTML under the chart (see show_timeline): Vega's legend squeezed the band to nothing
        color=alt.Color("genre:N", scale=genre_colour_scale(labels), legend=None),
        opacity=alt.Opacity("confidence:Q", scale=alt.Scale(domain=[0, 1], range=[0.45, 1]), legend=None),
        tooltip=[alt.Tooltip("segment:Q"), alt.Tooltip("time:N"), alt.Tooltip("genre:N"),
                 alt.Tooltip("top:N", title="top three")],
    )
    return chart.properties(height=TIMELINE_BAND)


#: Height in pixels of the timeline's band, and of the whole chart with its axis
#: (Streamlit does not size it from the spec).
TIMELINE_BAND = 56
TIMELINE_HEIGHT = TIMELINE_BAND + 60


def genre_legend(labels=GENRES) -> str:
    """The genre colours as an HTML line (it wraps on a phone, and stays sharp)."""
    spare = iter(_SPARE_COLOURS * 4)
    return " ".join(f'<span style="white-space:nowrap"><span style="color:{GENRE_COLOURS.get(g) or next(spare)};'
                    f'font-size:1.2em">■</span>&nbsp;{g}</span>&ensp;' for g in labels)


def show_timeline(prediction) -> None:
    st.markdown("**Segment timeline** (colour: each segment's genre; paler: less sure; hover for details)")
    st.altair_chart(timeline_chart(prediction), width="stretch", height=TIMELINE_HEIGHT)
    st.markdown(genre_legend(prediction.labels), unsafe_allow_html=True)


def segment_table(prediction):
    """One row a segment: times in seconds to 0.1, probabilities as whole percentages."""
    import pandas as pd

    table = pd.DataFrame(prediction.segments())
    table.insert(0, "segment", np.arange(1, len(table) + 1))
    table["confidence"] = (table["confidence"] * 100).round().astype(int)
    return table


def csv_download(prediction, *, file_name: str, key: str | None = None) -> None:
    st.download_button("Download per-segment predictions (CSV)", prediction.to_csv(), file_name=file_name,
                       mime="text/csv", key=key)


# ---------------------------------------------------------------- plots

def _fingerprint(prediction, samples) -> str:
    digest = hashlib.sha1(np.ascontiguousarray(prediction.probabilities).tobytes())
    digest.update(f"{prediction.model}|{len(samples)}".encode())
    digest.update(np.ascontiguousarray(samples[:: max(1, len(samples) // 4096)]).tobytes())
    return digest.hexdigest()


def _song_pictures(prediction, samples, config, key: str) -> list[tuple[str, bytes]]:
    """The whole-song panels as PNGs, drawn once per result and kept for the session in the server's
    bounded store: reruns (a slider, a download, another page and back) reuse them while it keeps them."""
    from codeFeature.plots import MAX_PLOT_SECONDS, SONG_WIDTH, song_panels

    store = f"{key}__pictures"
    fingerprint = _fingerprint(prediction, samples)
    got = kept(store)
    if got is not None and got[0] == fingerprint:
        return got[1]
    shown = samples[: int(MAX_PLOT_SECONDS * config.sample_rate)]
    panels = song_panels(shown, config, width=SONG_WIDTH,
                         boundaries=prediction.starts[prediction.starts < MAX_PLOT_SECONDS])
    pictures = [(panel.title, panel.png()) for panel in panels]
    keep(store, (fingerprint, pictures), sum(len(png) for _, png in pictures))
    return pictures


def _show_pictures(pictures) -> None:
    for title, png in pictures:
        st.caption(title)
        st.image(png, width="stretch")


@st.fragment
def _closeup(prediction, samples, config, key: str) -> None:
    """One segment: its sound, its panels and its ten probabilities. A fragment: moving the slider
    reruns only this, so the page stays on this tab and nothing else is redrawn."""
    from codeFeature.plots import CLOSEUP_WIDTH, song_panels

    n = len(prediction.starts)
    index = 0
    if n > 1:
        index = st.slider("Segment", 1, n, 1, key=f"{key}_segment",
                          help="Drag, or click the slider and use the arrow keys.") - 1
    start, end = float(prediction.starts[index]), float(prediction.ends[index])
    lo = int(round(start * config.sample_rate))
    piece = samples[lo: lo + config.segment_samples]
    probs = prediction.probabilities[index]
    label = prediction.segment_labels[index]
    where = f"Segment {index + 1} of {n}" if n > 1 else "The only segment"
    st.markdown(f"**{where}**, {_time(start)}–{_time(end)} ({start:.1f}–{end:.1f} s): **{label}** "
                f"({probs.max():.0%})")
    st.audio(piece, sample_rate=config.sample_rate)
    left, right = st.columns([3, 2])
    # the chart first: it is cheap, so the words and the chart follow the slider at once, and the pictures,
    # which take a moment on a busy server, come after them instead of holding them back
    with right:
        st.altair_chart(probability_chart(prediction.labels, probs, winner=label, measure=ONE_SEGMENT),
                        width="stretch", alt=probability_text(prediction.labels, probs, measure=ONE_SEGMENT))
    with left:
        _show_pictures([(p.title, p.png()) for p in song_panels(piece, config, offset=start, width=CLOSEUP_WIDTH)])


def show_plots(prediction, samples, config, *, key: str) -> None:
    """The whole song's panels and the segment close-up, on two tabs."""
    from codeFeature.plots import MAX_PLOT_SECONDS

    whole, closeup = st.tabs(["Whole song", "One segment close up"], key=f"{key}_tabs")
    with whole:
        if len(samples) > MAX_PLOT_SECONDS * config.sample_rate:
            st.info(f"The pictures show the first {MAX_PLOT_SECONDS / 60:.0f} minutes; every segment was classified.")
        _show_pictures(_song_pictures(prediction, samples, config, key))
    with closeup:
        _closeup(prediction, samples, config, key)


# ---------------------------------------------------------------- the whole view

def show_analysis(prediction, *, samples=None, sample_rate: int | None = None, audio_bytes: bytes | None = None,
                  key: str = "analysis", csv_name: str | None = None, config=None) -> None:
    """A song's whole analysis: notes, player, headline and confidence, votes beside mean probabilities,
    the segment timeline and table, the CSV download, and (given the audio) the pictures and close-up.

    Parameters
    ----------
    prediction : codeFeature.Prediction
        The result to show; its ``verdict`` gives the headline.
    samples : np.ndarray, shape (n_samples,), optional
        The decoded mono audio. Without it (a stored result) the pictures and close-up are left out.
    sample_rate : int, optional
        Rate of ``samples``; default the model's. Other rates are resampled to the model's.
    audio_bytes : bytes, optional
        The original file, for the player (else the decoded ``samples`` are played, if given).
    key : str
        Unique per place on a page (e.g. ``"upload"``, ``"clip"``, ``"library"``): the widgets' keys and
        the kept pictures derive from it, so two views never share state.
    csv_name : str, optional
        File name of the CSV download; default from ``prediction.file``.
    config : FeatureConfig, optional
        The model's feature config; default read from the manifest of ``prediction.model`` (a model
        that cannot be found leaves the pictures out).
    """
    import os

    for note in prediction.warnings:
        st.warning(note[:1].upper() + note[1:] + ("" if note.endswith(".") else "."))
    if config is None and samples is not None:
        try:
            config = model_config(prediction.model)
        except GenreError as exc:  # e.g. a stored result whose model is gone: no pictures, the rest stands
            log.info("no pictures for %s: %s", prediction.file, exc)
            samples = None
    if samples is not None:
        samples = np.asarray(samples, dtype=np.float32)
        if sample_rate is not None and sample_rate != config.sample_rate:
            import soxr

            samples = soxr.resample(samples, sample_rate, config.sample_rate, quality="HQ").astype(np.float32)
    if audio_bytes is not None:
        st.audio(audio_bytes)
    elif samples is not None:
        st.audio(samples, sample_rate=config.sample_rate)
    show_verdict(prediction)
    show_timeline(prediction)
    with st.expander(f"Every segment ({_segments_word(len(prediction.probabilities))})"):
        st.dataframe(segment_table(prediction), hide_index=True, width="stretch",
                     column_config={"start": st.column_config.NumberColumn("start (s)", format="%.1f"),
                                    "end": st.column_config.NumberColumn("end (s)", format="%.1f"),
                                    "confidence": st.column_config.NumberColumn("confidence", format="%d%%")})
    stem = os.path.splitext(os.path.basename(prediction.file or "song"))[0]
    csv_download(prediction, file_name=csv_name or f"{stem}-segments.csv", key=f"{key}_csv")
    if samples is not None and len(samples):
        show_plots(prediction, samples, config, key=key)
