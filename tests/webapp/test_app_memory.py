"""Memory that comes back (issue 29): the app's bounded store, its queue of analyses, the sweep of closed
sessions and the upload limits. No wall-clock assertions: threads are ordered with events."""

import io
import os
import tempfile
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

from tests.conftest import REPO, chord

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from webapp import analysis_queue, memory, models, uploads  # noqa: E402
from webapp import settings as app_settings  # noqa: E402

TIMEOUT = 180


def _wav_bytes(seconds=4.0, rate=44100, seed_hz=0.0):
    buffer = io.BytesIO()
    signal = chord(seconds, rate, channels=2)
    if seed_hz:  # a different song: same length, other bytes
        t = np.arange(len(signal)) / rate
        signal = (0.8 * signal + 0.1 * np.sin(2 * np.pi * seed_hz * t)[:, None]).astype(np.float32)
    sf.write(buffer, signal, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


# ---------------------------------------------------------------- the bounded store

def test_the_store_keeps_within_its_budget_least_recently_used_first_out():
    store = memory.SessionStore(1000)
    for k in range(10):
        assert store.put(f"session-{k}", "upload_result", f"value {k}", 300)
        assert store.nbytes <= 1000 and len(store) <= 3
    assert store.get("session-9", "upload_result") == "value 9"
    assert store.get("session-0", "upload_result") is None
    # a use keeps an entry: session-7 is read, so session-8 goes first
    assert store.get("session-7", "upload_result") == "value 7"
    store.put("session-10", "upload_result", "value 10", 300)
    assert store.get("session-7", "upload_result") == "value 7"
    assert store.get("session-8", "upload_result") is None
    # one object beyond the whole budget is not kept, and evicts nothing
    assert not store.put("session-11", "upload_result", "huge", 1001)
    assert store.get("session-11", "upload_result") is None and len(store) == 3
    # the same name again replaces, never adds
    store.put("session-10", "upload_result", "again", 500)
    assert store.get("session-10", "upload_result") == "again" and store.nbytes <= 1000


def test_the_store_forgets_the_sessions_the_server_no_longer_knows():
    store = memory.SessionStore(10_000)
    for sid in ("a", "b", "c"):
        store.put(sid, "x", sid, 100)
        store.put(sid, "y", sid, 100)
    assert store.keep_only({"b"}) == 400
    assert store.sessions() == {"b"} and store.nbytes == 200


@pytest.fixture
def small_store(monkeypatch):
    """A store that holds one session's song and pictures but not two sessions' worth."""
    store = memory.SessionStore(int(2.5e6))
    monkeypatch.setattr(memory, "store", lambda: store)
    return store


def test_after_distinct_uploads_one_session_keeps_one_result(small_store):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.run()
    for k in range(3):
        at.file_uploader[0].set_value((f"song{k}.wav", _wav_bytes(4.0, seed_hz=200.0 + 50 * k), "audio/wav")).run()
        assert not at.exception and not at.error
        assert len(at.get("image")) == 6  # its pictures are shown
        # one result and one set of pictures, whatever the number of uploads
        assert len(small_store) <= 2 and small_store.nbytes <= small_store.budget
    assert small_store.sessions() == {"test session id"}


def test_a_session_whose_audio_was_let_go_still_shows_its_verdict(small_store, monkeypatch):
    """Two sessions (ids switched under AppTest, which gives every run the same one) with more audio than the
    budget: the first session's audio goes; its page then says so in words and keeps the verdict."""
    who = {"id": "first"}
    monkeypatch.setattr(memory, "session_id", lambda: who["id"])
    first = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    first.run()
    first.file_uploader[0].set_value(("one.wav", _wav_bytes(6.0), "audio/wav")).run()
    genre = next(m.value for m in first.metric if m.label == "Genre")
    who["id"] = "second"
    second = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    second.run()
    second.file_uploader[0].set_value(("two.wav", _wav_bytes(6.0, seed_hz=300.0), "audio/wav")).run()
    assert not second.exception
    assert small_store.get("first", "upload_result") is None  # the least recently used song went
    assert small_store.get("second", "upload_result") is not None and small_store.nbytes <= small_store.budget
    who["id"] = "first"
    first.switch_page("webapp/live.py").run()
    first._page_hash = next(h for h, page in first._registered_pages.items() if page["page_name"] == "Upload a song")
    first.run()
    assert not first.exception and not first.error
    assert next(m.value for m in first.metric if m.label == "Genre") == genre
    assert any("let go to keep the server's memory" in c.value for c in first.caption)
    assert not first.get("image")  # no pictures without the audio


# ---------------------------------------------------------------- the queue

def test_with_one_slot_two_analyses_run_one_after_the_other_and_the_second_is_told_why():
    released = []
    queue = analysis_queue.AnalysisQueue(1, max_waiting=4, max_wait=60, release=lambda: released.append(1))
    events, lock = [], threading.Lock()
    first_in, first_may_end, second_told = threading.Event(), threading.Event(), threading.Event()
    running = {"now": 0, "most": 0}

    def note(what):
        with lock:
            events.append(what)

    def analysis(name, started=None, may_end=None):
        def told(ahead):
            note(f"{name} waits: {analysis_queue.waiting_message(ahead)}")
            second_told.set()

        with queue.turn(on_wait=told):
            with lock:
                running["now"] += 1
                running["most"] = max(running["most"], running["now"])
            note(f"{name} starts")
            if started:
                started.set()
            if may_end:
                assert may_end.wait(30)
            with lock:
                running["now"] -= 1
            note(f"{name} ends")

    a = threading.Thread(target=analysis, args=("A", first_in, first_may_end))
    a.start()
    assert first_in.wait(30)
    b = threading.Thread(target=analysis, args=("B",))
    b.start()
    assert second_told.wait(30)
    assert queue.running == 1 and queue.waiting == 1
    first_may_end.set()
    a.join(30)
    b.join(30)
    assert events[:2] == ["A starts", "B waits: Waiting for 1 other analysis to finish: the server analyses 1 song "
                                      "at a time. Yours starts by itself; keep this page open."]
    assert events[2:] == ["A ends", "B starts", "B ends"]
    assert running["most"] == 1
    assert queue.running == 0 and queue.waiting == 0
    assert len(released) == 2  # memory given back after each analysis


def test_a_full_queue_refuses_at_once_in_words_and_a_long_wait_ends():
    queue = analysis_queue.AnalysisQueue(1, max_waiting=0, max_wait=60, release=lambda: None)
    with queue.turn():
        with pytest.raises(analysis_queue.ServerBusy, match="busy with 1 other analysis and cannot queue more; try again"):
            with queue.turn():
                pass
    patient = analysis_queue.AnalysisQueue(1, max_waiting=3, max_wait=0.05, release=lambda: None)
    with patient.turn():
        with pytest.raises(analysis_queue.ServerBusy, match="still busy with 1 other analysis after 0.05 s; try again"):
            with patient.turn():
                pass
        assert patient.waiting == 0  # the visitor who gave up is out of the line
    with patient.turn():  # and the slot is free again
        pass


def test_waiting_message_counts_in_words():
    assert analysis_queue.waiting_message(1).startswith("Waiting for 1 other analysis to finish")
    assert analysis_queue.waiting_message(3).startswith("Waiting for 3 other analyses to finish")


def test_a_visitor_who_cannot_get_a_turn_reads_that_the_server_is_busy(monkeypatch):
    queue = analysis_queue.AnalysisQueue(1, max_waiting=2, max_wait=0.05, release=lambda: None)
    monkeypatch.setattr(analysis_queue, "server_queue", lambda: queue)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.run()
    with queue.turn():  # another visitor's analysis holds the only slot
        at.file_uploader[0].set_value(("song.wav", _wav_bytes(4.0), "audio/wav")).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["The server was still busy with 1 other analysis after 0.05 s; "
                                           "try again in a few minutes."]
    assert not at.get("progress")
    at.file_uploader[0].set_value(("song.wav", _wav_bytes(4.0), "audio/wav")).run()  # the slot is free
    assert not at.exception and not at.error
    assert next(m.value for m in at.metric if m.label == "Genre")


# ---------------------------------------------------------------- closed sessions

class _FakeRuntime:
    """The parts of Streamlit's runtime the sweep uses: its session manager and its event loop."""

    def __init__(self):
        self.active, self.stored, self.closed, self.soon = set(), set(), [], []
        manager = SimpleNamespace(
            list_active_sessions=lambda: [SimpleNamespace(session=SimpleNamespace(id=s)) for s in self.active],
            list_sessions=lambda: [SimpleNamespace(session=SimpleNamespace(id=s)) for s in self.active | self.stored],
            get_active_session_info=lambda s: object() if s in self.active else None,
            get_session_info=lambda s: object() if s in self.active | self.stored else None,
            close_session=self._close)
        self._session_mgr = manager
        loop = SimpleNamespace(call_soon_threadsafe=lambda fn, *a: self.soon.append((fn, a)))
        self._get_async_objs = lambda: SimpleNamespace(eventloop=loop)

    def _close(self, sid):
        self.closed.append(sid)
        self.stored.discard(sid)

    def run_loop(self):
        while self.soon:
            fn, args = self.soon.pop(0)
            fn(*args)


def test_a_closed_tab_is_ended_after_its_grace_and_its_kept_objects_freed(monkeypatch):
    store = memory.SessionStore(10_000)
    monkeypatch.setattr(memory, "store", lambda: store)
    trims = []
    monkeypatch.setattr(memory, "release_memory", lambda: trims.append(1))
    runtime, sweeper = _FakeRuntime(), memory.Sweeper()

    def sweep(now):
        return memory.sweep_sessions(runtime, now=now, grace=30, sweeper=sweeper)

    runtime.active = {"open", "closing"}
    for sid in ("open", "closing", "forgotten"):  # "forgotten": Streamlit dropped it without a word
        store.put(sid, "upload_result", sid, 100)
    assert sweep(1000.0) == (0, 100)  # only the unknown session's objects go
    runtime.active.discard("closing")
    runtime.stored.add("closing")  # the tab closed: stored for a reconnect
    assert sweep(1001.0) == (0, 0)
    assert sweep(1020.0) == (0, 0)  # within its grace: the visitor may come back
    assert store.sessions() == {"open", "closing"}
    ended, freed = sweep(1031.5)
    assert (ended, freed) == (1, 100) and store.sessions() == {"open"}
    runtime.run_loop()  # the session manager ends it on the server's loop: uploads and media go with it
    assert runtime.closed == ["closing"]
    assert trims == [1, 1]


def test_a_visitor_who_comes_back_in_time_keeps_the_session(monkeypatch):
    store = memory.SessionStore(10_000)
    monkeypatch.setattr(memory, "store", lambda: store)
    monkeypatch.setattr(memory, "release_memory", lambda: None)
    runtime, sweeper = _FakeRuntime(), memory.Sweeper()
    runtime.stored = {"blip"}
    store.put("blip", "upload_result", "x", 100)
    memory.sweep_sessions(runtime, now=0.0, grace=30, sweeper=sweeper)
    memory.sweep_sessions(runtime, now=40.0, grace=30, sweeper=sweeper)  # past the grace: an end is scheduled...
    runtime.stored.discard("blip")
    runtime.active.add("blip")  # ...but the tab reconnected before the loop ran it
    runtime.run_loop()
    assert runtime.closed == []


def test_the_grace_comes_from_the_settings_and_never_outlives_half_the_ttl(monkeypatch):
    """With no grace given, the sweep takes CODEFEATURE_APP_SESSION_GRACE, capped at half of Streamlit's TTL."""
    from streamlit import config

    store = memory.SessionStore(10_000)
    monkeypatch.setattr(memory, "store", lambda: store)
    monkeypatch.setattr(memory, "release_memory", lambda: None)
    ttl = config.get_option("server.disconnectedSessionTTL")
    for grace, ended_at in ((5, 5.0), (10 * ttl, ttl / 2)):
        monkeypatch.setattr(app_settings, "current", lambda grace=grace: app_settings.AppSettings(
            session_grace_seconds=grace))
        runtime, sweeper = _FakeRuntime(), memory.Sweeper()
        runtime.stored = {"gone"}
        assert memory.sweep_sessions(runtime, now=0.0, sweeper=sweeper)[0] == 0
        assert memory.sweep_sessions(runtime, now=ended_at - 0.01, sweeper=sweeper)[0] == 0
        assert memory.sweep_sessions(runtime, now=ended_at, sweeper=sweeper)[0] == 1


# ---------------------------------------------------------------- upload limits

def test_an_upload_beyond_the_limit_is_refused_in_words_before_it_is_read():
    limit = 2 * 2**20
    uploads.check_upload(b"\0" * limit, "fits.wav", limit=limit)
    with pytest.raises(uploads.UploadRefused) as refused:
        uploads.check_upload(b"\0" * (limit + 2**20), "big.wav", limit=limit)
    assert str(refused.value) == ("big.wav is 3 MB; this server takes files up to 2 MB. A compressed copy "
                                  "(mp3, ogg or flac) is smaller")


def test_the_server_limit_is_streamlits_max_upload_size_and_the_page_refuses_beyond_it(monkeypatch):
    from streamlit import config

    assert uploads.max_upload_bytes() == config.get_option("server.maxUploadSize") * 2**20
    decoded = []
    monkeypatch.setattr(uploads, "decode_upload", lambda *a, **k: decoded.append(a) or pytest.fail("decoded"))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.run()
    monkeypatch.setattr(uploads, "max_upload_bytes", lambda: 2**19)
    at.file_uploader[0].set_value(("long.wav", _wav_bytes(4.0), "audio/wav")).run()
    assert not at.exception and not decoded
    assert len(at.error) == 1
    message = at.error[0].value
    assert message.startswith("long.wav is 0.673 MB; this server takes files up to 0.5 MB") and "Traceback" not in message


def test_the_repository_sets_the_upload_limit_and_a_session_ttl():
    import tomllib

    settings = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())["server"]
    assert 0 < settings["maxUploadSize"] <= 200
    assert app_settings.AppSettings().session_grace_seconds <= settings["disconnectedSessionTTL"] / 2


def _temporary_files():
    return {n for n in os.listdir(tempfile.gettempdir()) if n.startswith("codefeature-")}


def test_audio_longer_than_allowed_is_refused_from_its_header_without_decoding(monkeypatch):
    import codeFeature.audio as audio
    from codeFeature.errors import AudioTooLongError

    data = _wav_bytes(70.0, rate=8000)
    before = _temporary_files()
    monkeypatch.setattr(audio, "_collect", lambda *a, **k: pytest.fail("decoded a file its header says is too long"))
    with pytest.raises(AudioTooLongError) as refused:
        uploads.decode_upload(data, "long.wav", sample_rate=8000, max_seconds=60)
    assert str(refused.value) == ("long.wav is 1 min 10 s long; up to 1 min of audio is analysed here. Cut the part you "
                                  "want classified")
    assert _temporary_files() <= before  # the spooled copy is gone


def test_audio_whose_header_does_not_say_is_cut_off_as_soon_as_it_passes_the_limit(monkeypatch):
    import codeFeature.audio as audio
    from codeFeature.errors import AudioTooLongError

    data = _wav_bytes(70.0, rate=8000)
    seen = []
    real_open = audio.open_audio

    depth = []

    def no_length(*args, **kwargs):  # as ffmpeg's formats: the length is unknown until decoded
        depth.append(1)  # bytes are spooled to a file that is opened again: count the outer stream only
        try:
            stream = real_open(*args, **kwargs)
        finally:
            depth.pop()
        stream.expected_samples = None
        if depth:
            return stream
        inner = stream._blocks

        def counted():
            for block in inner:
                seen.append(len(block))
                yield block

        stream._blocks = counted()
        return stream

    monkeypatch.setattr(audio, "open_audio", no_length)
    before = _temporary_files()
    with pytest.raises(AudioTooLongError, match="long.wav is longer than 1 min; up to 1 min of audio is analysed"):
        uploads.decode_upload(data, "long.wav", sample_rate=8000, max_seconds=60)
    assert sum(seen) < 70 * 8000  # stopped before the end of the file
    assert _temporary_files() <= before


def test_audio_within_the_limit_decodes_as_the_library_does():
    from codeFeature import load_audio

    data = _wav_bytes(5.0)
    ours = uploads.decode_upload(data, "ok.wav", sample_rate=22050, max_seconds=60)
    theirs = load_audio(data, sample_rate=22050, filename="ok.wav")
    np.testing.assert_array_equal(ours.samples, theirs.samples)
    assert ours.warnings == theirs.warnings and ours.source_rate == theirs.source_rate


# ---------------------------------------------------------------- the model's working memory

def test_the_warm_up_runs_a_full_batch_on_every_stream(monkeypatch):
    """The engine keeps each stream's working memory at the largest batch it ran: the warm-up runs that
    batch on every stream, so a later long song does not raise the server's memory for good."""
    import codeFeature.model_probe as model_probe

    calls = []
    runner = SimpleNamespace(streams=3)
    model = SimpleNamespace(config=SimpleNamespace(segment_samples=64, input_shape=(5, 7)), forward_batch=4,
                            _runner=runner, forward=lambda x: calls.append(x.shape) or [])
    monkeypatch.setattr(model_probe, "probe_model", lambda name: SimpleNamespace(ok=True))
    monkeypatch.setattr(models, "load_model", lambda name: model)
    monkeypatch.setattr(models, "predict_audio", lambda samples, model: calls.append(("song", len(samples))))
    assert models._load_and_warm("any") is model
    assert calls == [("song", 64), (12, 5, 7)]
    # the traced TensorFlow forward has no streams: one full batch
    model._runner = None
    calls.clear()
    models._load_and_warm("any")
    assert calls[-1] == (4, 5, 7)


# ---------------------------------------------------------------- the app's settings

def test_the_app_settings_are_read_from_the_environment_and_a_bad_value_keeps_its_default(caplog):
    read = app_settings.AppSettings.from_environ({
        "CODEFEATURE_APP_ANALYSES": "2", "CODEFEATURE_APP_QUEUE": "0", "CODEFEATURE_APP_WAIT_SECONDS": "12.5",
        "CODEFEATURE_APP_MAX_MINUTES": "nan", "CODEFEATURE_APP_KEEP_MB": "lots", "CODEFEATURE_APP_SESSION_GRACE": " "})
    assert (read.analyses_at_once, read.max_waiting, read.max_wait_seconds) == (2, 0, 12.5)
    default = app_settings.AppSettings()
    assert (read.max_minutes, read.keep_mb, read.session_grace_seconds) == (
        default.max_minutes, default.keep_mb, default.session_grace_seconds)
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "CODEFEATURE_APP_MAX_MINUTES='nan'" in warned and "CODEFEATURE_APP_KEEP_MB='lots'" in warned
    assert app_settings.AppSettings.from_environ({"CODEFEATURE_APP_ANALYSES": "0"}).analyses_at_once == 1


def test_the_app_reads_its_settings_at_first_use_not_at_import():
    """Importing every module of the app reads no setting and builds no queue or store: an operator's
    variable set after the import (or a test's) is the one used."""
    import subprocess
    import sys

    script = ("import webapp.upload, webapp.sidebar, webapp.components, webapp.memory, webapp.analysis_queue\n"
              "from webapp import settings, analysis_queue, memory\n"
              "assert settings._current is None, 'read at import'\n"
              "import os; os.environ['CODEFEATURE_APP_ANALYSES'] = '3'; os.environ['CODEFEATURE_APP_KEEP_MB'] = '7'\n"
              "assert analysis_queue.server_queue().slots == 3\n"
              "assert memory.store().budget == 7_000_000\n"
              "print('ok')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEFEATURE_APP_")}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
