"""A hostile visitor against the Library page, and the safe-open function under it (issue 29, finding 1).

The page (driven with ``streamlit.testing.v1.AppTest``) must send no byte of a file outside the scanned
roots: not for rows that point at ``/etc/passwd`` or ``/proc/self/environ``, not for a scanned song swapped
for a symbolic link to a file outside (even one with the very same bytes and mtime), not through a
symlinked folder, not for a same-size file with other bytes; and it must open no database the server
was not started with, whatever is put in the session state or the query string. Every media payload the
page hands Streamlit is recorded (:func:`served`), so "nothing was sent" is checked on what a browser
could fetch, and a control test shows the recorder sees the payload when the file is fine.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import threading

import numpy as np
import pytest

from codeFeature import settings
from codeFeature.collection import serve
from codeFeature.collection.classify import ModelSpec
from codeFeature.collection.scan import scan
from codeFeature.collection.serve import CHANGED_OR_MOVED, NO_ROOTS, NotServable, configured_libraries, open_inside, \
    read_scanned
from codeFeature.collection.store import LibraryStore, fingerprint
from tests.conftest import REPO

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

PAGE = str(REPO / "webapp" / "library.py")
SECRET_MARK = b"SECRET-BYTES-THAT-MUST-NOT-LEAVE-THE-SERVER"


# ------------------------------------------------------------------ fixtures

@pytest.fixture
def music(tmp_path, audio_dir, tiny_model_dir, tiny_model):
    """A scanned folder (``music/album/song.wav``, ``music/top.flac``), its database, and an outside folder
    with ``secret.wav``: a real song (it would play) ending in :data:`SECRET_MARK`."""
    root = tmp_path / "music"
    (root / "album").mkdir(parents=True)
    shutil.copy2(audio_dir / "chord.wav", root / "album" / "song.wav")
    shutil.copy2(audio_dir / "chord.flac", root / "top.flac")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.wav").write_bytes((audio_dir / "mono22k.wav").read_bytes() + SECRET_MARK)
    db = tmp_path / "lib.sqlite"
    with LibraryStore(db) as store:
        scan(root, store, ModelSpec.resolve(str(tiny_model_dir), "float32"), jobs=1, model=tiny_model,
             progress=False)
    return root, db, outside


@pytest.fixture
def served(monkeypatch):
    """Every payload the page hands Streamlit's media store (audio, images, downloads): what a browser could fetch."""
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    sent: list[tuple[object, str]] = []
    real = MemoryMediaFileStorage.load_and_get_id

    def recording(self, path_or_data, mimetype, kind, filename=None):
        sent.append((path_or_data, mimetype))
        return real(self, path_or_data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
    return sent


def start_page(monkeypatch, *dbs) -> AppTest:
    monkeypatch.setattr(sys, "argv", ["app.py"])
    monkeypatch.setenv("CODEFEATURE_LIBRARY", os.pathsep.join(str(d) for d in dbs))
    settings.reload()  # the server's environment, read again after the test changed it
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception
    return at


def open_row(at: AppTest, path_text: str) -> None:
    box = at.selectbox(key="lib_open")
    box.set_value(box.options.index(path_text)).run()
    assert not at.exception


def add_row(db, like: bytes, path: bytes, *, of: str | None = None) -> str:
    """Store a copy of ``like``'s row under ``path``; with ``of``, give it that file's real size, mtime and
    fingerprint (the most a forger could do). Returns the row's readable path."""
    with LibraryStore(db) as store:
        row = next(r for r in store.rows() if r["path"] == like)
        row.update(path=path, path_text=path.decode("utf-8", "backslashreplace"))
        if of is not None and os.path.exists(of):
            info = os.stat(of)
            row.update(size=info.st_size, mtime_ns=info.st_mtime_ns, fingerprint=fingerprint(of, info.st_size))
        store.put(row)
    return row["path_text"]


def audio_payloads(sent) -> list:
    return [data for data, mimetype in sent if str(mimetype).startswith("audio")]


def assert_nothing_of(sent, *secrets: bytes) -> None:
    assert not audio_payloads(sent), "an audio payload was sent"
    for data, _ in sent:
        assert isinstance(data, bytes), f"the page handed Streamlit a path: {data!r}"
        for secret in secrets:
            assert secret not in data


def page_text(at: AppTest) -> list:
    """What a visitor reads on the page (every text element and widget's options), for comparisons."""
    out = []
    for kind in ("title", "markdown", "caption", "info", "warning", "error", "subheader"):
        out += [(kind, e.value) for e in getattr(at, kind)]
    out += [("metric", m.label, m.value) for m in at.metric]
    out += [("selectbox", s.label, tuple(s.options)) for s in at.selectbox]
    return out


# ------------------------------------------------------------------ the page

def test_control_an_unchanged_file_inside_the_root_is_played_from_its_checked_bytes(music, served, monkeypatch):
    root, db, _ = music
    with LibraryStore(db, readonly=True) as store:
        assert store.roots() == [os.fsencode(root)]  # recorded by the scan
    at = start_page(monkeypatch, db)
    served.clear()
    open_row(at, str(root / "album" / "song.wav"))
    assert not at.warning
    assert audio_payloads(served) == [(root / "album" / "song.wav").read_bytes()]


def test_rows_pointing_outside_every_scanned_root_send_nothing(music, served, monkeypatch, tmp_path):
    root, db, outside = music
    song = os.fsencode(root / "album" / "song.wav")
    secret = outside / "secret.wav"
    forged = {
        "/etc/passwd": (b"/etc/passwd", "/etc/passwd"),
        "/proc/self/environ": (b"/proc/self/environ", "/proc/self/environ"),
        "outside file": (os.fsencode(secret), str(secret)),
        "dot-dot out of the root": (os.fsencode(root) + b"/album/../../outside/secret.wav", str(secret)),
        "missing": (b"/nonexistent-folder/song.wav", None),
        "missing inside the root": (os.fsencode(root) + b"/album/gone.wav", None),
    }
    shown = {name: add_row(db, song, path, of=of) for name, (path, of) in forged.items()}
    secrets = [SECRET_MARK, open("/etc/passwd", "rb").read()]
    at = start_page(monkeypatch, db)
    warnings = {}
    for name, text in shown.items():
        served.clear()
        open_row(at, text)
        assert_nothing_of(served, *secrets)
        warnings[name] = [w.value for w in at.warning]
    # one message, whether the path exists, exists but is not allowed, or is missing
    assert all(w == [CHANGED_OR_MOVED] for w in warnings.values()), warnings


@pytest.mark.parametrize("swap", ["file", "folder"])
def test_a_scanned_file_swapped_for_a_symlink_to_an_identical_file_outside_sends_nothing(music, served, monkeypatch,
                                                                                        swap):
    root, db, outside = music
    song = root / "album" / "song.wav"
    original = song.read_bytes()
    info = song.stat()
    if swap == "file":
        # the outside file has the scanned song's exact bytes and mtime: only the symlink rule can refuse it
        target = outside / "copy.wav"
        shutil.copy2(song, target)
        song.unlink()
        song.symlink_to(target)
    else:
        shutil.move(str(root / "album"), str(outside / "album"))
        (root / "album").symlink_to(outside / "album")
    assert song.read_bytes() == original and song.stat().st_mtime_ns == info.st_mtime_ns
    at = start_page(monkeypatch, db)
    served.clear()
    open_row(at, str(song))
    assert_nothing_of(served, original)
    assert [w.value for w in at.warning] == [CHANGED_OR_MOVED]


def test_a_file_replaced_by_other_bytes_of_the_same_size_and_mtime_sends_nothing(music, served, monkeypatch):
    root, db, _ = music
    song = root / "album" / "song.wav"
    info = song.stat()
    data = bytearray(song.read_bytes())
    data[100:100 + len(SECRET_MARK)] = SECRET_MARK
    song.write_bytes(bytes(data))
    os.utime(song, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert song.stat().st_size == info.st_size and song.stat().st_mtime_ns == info.st_mtime_ns
    at = start_page(monkeypatch, db)
    served.clear()
    open_row(at, str(song))
    assert_nothing_of(served, SECRET_MARK)
    assert [w.value for w in at.warning] == [CHANGED_OR_MOVED]


@pytest.fixture
def private_db(tmp_path, audio_dir, tiny_model_dir, tiny_model):
    """A real library (with its root) the server was NOT started with; opening it would play its secret."""
    folder = tmp_path / "private"
    folder.mkdir()
    (folder / "secret.wav").write_bytes((audio_dir / "mono22k.wav").read_bytes() + SECRET_MARK)
    db = tmp_path / "private.sqlite"
    with LibraryStore(db) as store:
        scan(folder, store, ModelSpec.resolve(str(tiny_model_dir), "float32"), jobs=1, model=tiny_model,
             progress=False)
    return db


def test_a_database_the_server_was_not_started_with_cannot_be_chosen(music, private_db, served, monkeypatch,
                                                                       tmp_path):
    root, db, _ = music
    with LibraryStore(db, readonly=True) as store:
        files = store.count()
    at = start_page(monkeypatch, db)
    expected = page_text(at)
    seen = {}
    for attempt in (str(private_db), "/etc/passwd", str(tmp_path / "does-not-exist.sqlite")):
        at = AppTest.from_file(PAGE, default_timeout=120)
        at.session_state["lib_db"] = attempt
        at.query_params["lib_db"] = attempt
        at.query_params["db"] = attempt
        at.query_params["library"] = attempt
        served.clear()
        at.run()
        assert not at.exception
        assert next(m.value for m in at.metric if m.label == "Files") == str(files)
        assert str(private_db) not in str(page_text(at)) and "private" not in str(page_text(at))
        assert "secret.wav" not in at.selectbox(key="lib_open").options
        assert_nothing_of(served, SECRET_MARK)
        seen[attempt] = page_text(at)
    # the same page whether the path exists, is a library, or is missing: nothing is revealed about it
    assert all(text == expected for text in seen.values())


def test_with_several_libraries_a_forged_choice_falls_back_to_an_offered_one(music, private_db, served, monkeypatch,
                                                                            tmp_path):
    root, db, _ = music
    second = tmp_path / "second.sqlite"
    with LibraryStore(second):
        pass
    offered = start_page(monkeypatch, db, second).selectbox(key="lib_db").options
    for forged in (str(private_db), str(tmp_path / "private" / ".." / "private.sqlite"), "lib.sqlite"):
        # set before the page's first run, as a forged session would arrive (AppTest itself refuses to put a
        # value that is not an option into a select box it has already drawn)
        at = AppTest.from_file(PAGE, default_timeout=120)
        at.session_state["lib_db"] = forged
        served.clear()
        at.run()
        assert not at.exception
        assert at.selectbox(key="lib_db").value in (str(db), str(second))
        assert at.selectbox(key="lib_db").options == offered
        assert "secret.wav" not in str(page_text(at))
        assert_nothing_of(served, SECRET_MARK)


def test_a_database_scanned_before_roots_were_recorded_plays_nothing_and_says_to_rescan(music, served, monkeypatch):
    import sqlite3

    root, db, _ = music
    with sqlite3.connect(db) as raw:
        raw.execute("DROP TABLE roots")
    at = start_page(monkeypatch, db)
    served.clear()
    open_row(at, str(root / "album" / "song.wav"))
    assert not audio_payloads(served)
    assert [w.value for w in at.warning] == [NO_ROOTS]
    assert any(m.label == "Genre" or m.value for m in at.metric)  # the stored results are still shown


# ------------------------------------------------------------------ the safe-open function

def _read(fd: int) -> bytes:
    try:
        return os.pread(fd, 1 << 20, 0)
    finally:
        os.close(fd)


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "song.wav").write_bytes(b"inside")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "secret.wav").write_bytes(SECRET_MARK)
    return root, tmp_path / "out"


def test_safe_open_reads_a_plain_file_inside_the_root(tree):
    root, _ = tree
    assert _read(open_inside(root / "a" / "song.wav", [root])) == b"inside"
    assert _read(open_inside(os.fsencode(root / "a" / "song.wav"), [os.fsencode(root) + b"/"])) == b"inside"


def test_safe_open_refuses_paths_that_are_not_plainly_inside(tree, tmp_path):
    root, out = tree
    (tmp_path / "root2").mkdir()
    (tmp_path / "root2" / "x.wav").write_bytes(b"sibling")
    refused = [
        os.fsencode(root) + b"/a/../../out/secret.wav",  # `..` out of the root
        os.fsencode(root) + b"/a/./song.wav",
        os.fsencode(root) + b"//a/song.wav",
        os.fsencode(tmp_path / "root2" / "x.wav"),  # a sibling folder whose name starts with the root's
        b"a/song.wav",  # relative
        os.fsencode(out / "secret.wav"),
        os.fsencode(root / "a"),  # a folder
        os.fsencode(root / "a" / "missing.wav"),
    ]
    for path in refused:
        with pytest.raises(NotServable) as caught:
            open_inside(path, [root])
        assert str(caught.value) == CHANGED_OR_MOVED, path


def test_safe_open_never_follows_a_symlink_below_the_root(tree):
    root, out = tree
    (root / "a" / "link.wav").symlink_to(out / "secret.wav")
    (root / "a" / "inside-link.wav").symlink_to(root / "a" / "song.wav")  # strict: even one that stays inside
    (root / "b").symlink_to(out)  # a symlink in the middle of the path
    (root / "c").symlink_to(root / "a")
    for path in (root / "a" / "link.wav", root / "a" / "inside-link.wav", root / "b" / "secret.wav",
                 root / "c" / "song.wav"):
        with pytest.raises(NotServable):
            open_inside(path, [root])


def test_safe_open_follows_symlinks_in_the_roots_own_path(tree, tmp_path):
    """The root is the folder the scan was given; a symlink in it was chosen by whoever scanned."""
    root, _ = tree
    (tmp_path / "music-link").symlink_to(root)
    assert _read(open_inside(tmp_path / "music-link" / "a" / "song.wav", [tmp_path / "music-link"])) == b"inside"


def test_safe_open_of_a_single_scanned_file(tree):
    root, _ = tree
    song = root / "a" / "song.wav"
    assert _read(open_inside(song, [song])) == b"inside"
    link = root / "a" / "link.wav"
    link.symlink_to(song)
    with pytest.raises(NotServable):
        open_inside(link, [link])


def _without_hanging(call):
    """Run ``call`` in a thread; a guard so that a regression fails the test instead of hanging the suite."""
    result: dict = {}

    def run():
        try:
            result["value"] = call()
        except BaseException as exc:  # noqa: BLE001 (handed back to the test)
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(60)
    return thread.is_alive(), result


def test_safe_open_never_opens_a_fifo_even_one_swapped_in_after_the_check(tree, monkeypatch):
    root, _ = tree
    fifo = root / "a" / "pipe.wav"
    os.mkfifo(fifo)
    hung, result = _without_hanging(lambda: open_inside(fifo, [root]))
    assert not hung and isinstance(result.get("error"), NotServable)

    # the file is a regular file when checked and a FIFO when opened: O_NONBLOCK and fstat refuse it
    song = root / "a" / "song.wav"
    real_stat = os.stat

    def stat_then_swap(path, *args, **kwargs):
        info = real_stat(path, *args, **kwargs)
        if path == b"song.wav" and kwargs.get("dir_fd") is not None:
            song.unlink()
            os.mkfifo(song)
        return info

    monkeypatch.setattr(serve.os, "stat", stat_then_swap)
    hung, result = _without_hanging(lambda: open_inside(song, [root]))
    monkeypatch.undo()
    if hung:  # unblock the stuck open before failing
        with open(song, "wb"):
            pass
    assert not hung and isinstance(result.get("error"), NotServable)
    assert stat.S_ISFIFO(os.lstat(song).st_mode)


def test_safe_open_refuses_a_device_file(tree):
    root, _ = tree
    device = root / "a" / "null.wav"
    try:
        os.mknod(device, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot make a device node here ({exc})")
    with pytest.raises(NotServable):
        open_inside(device, [root])


def test_a_hard_link_inside_the_root_is_the_file_itself(tree):
    """The documented limit: a path cannot tell a hard link from the file. It is read only when it holds the
    scanned bytes (size, mtime and fingerprint), so it cannot show anything the scan did not classify."""
    root, out = tree
    link = root / "a" / "hard.wav"
    try:
        os.link(out / "secret.wav", link)
    except OSError as exc:
        pytest.skip(f"no hard links here ({exc})")
    info = link.stat()
    row = {"path": os.fsencode(link), "size": info.st_size, "mtime_ns": info.st_mtime_ns,
           "fingerprint": fingerprint(link)}
    assert read_scanned(row, [root], max_bytes=1 << 20) == SECRET_MARK
    with pytest.raises(NotServable):
        read_scanned({**row, "fingerprint": "0" * 32}, [root], max_bytes=1 << 20)


def test_read_scanned_checks_size_mtime_and_fingerprint_on_the_opened_file(tree):
    root, _ = tree
    song = root / "a" / "song.wav"
    info = song.stat()
    row = {"path": os.fsencode(song), "size": info.st_size, "mtime_ns": info.st_mtime_ns,
           "fingerprint": fingerprint(song)}
    assert read_scanned(row, [root], max_bytes=1 << 20) == b"inside"
    assert read_scanned(row, [root], max_bytes=3) is None  # checked, but too large to read
    with pytest.raises(NotServable):
        read_scanned(row, [], max_bytes=1 << 20)
    for change in ({"size": info.st_size + 1}, {"mtime_ns": info.st_mtime_ns + 1}, {"fingerprint": "f" * 32}):
        with pytest.raises(NotServable) as caught:
            read_scanned({**row, **change}, [root], max_bytes=1 << 20)
        assert str(caught.value) == CHANGED_OR_MOVED
    song.write_bytes(b"INSIDE")  # same size, other bytes, mtime put back
    os.utime(song, ns=(info.st_atime_ns, info.st_mtime_ns))
    with pytest.raises(NotServable):
        read_scanned(row, [root], max_bytes=1 << 20)


def test_configured_libraries_come_from_the_command_line_and_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--library", "a.sqlite", "--library=/x/b.sqlite", "--other", "--library", "a.sqlite", "--library"]
    env = {"CODEFEATURE_LIBRARY": os.pathsep.join(["/x/c.sqlite", "", "/x/b.sqlite"])}
    assert configured_libraries(argv, env) == [str(tmp_path / "a.sqlite"), "/x/b.sqlite", "/x/c.sqlite"]
    assert configured_libraries([], {}) == []
    assert configured_libraries(["--libraryx", "y", "--lib", "z"], {}) == []  # no abbreviations, no look-alikes
    monkeypatch.setenv("HOME", "/h")
    assert configured_libraries(["--library", "~/m.sqlite"], {}) == ["/h/m.sqlite"]


@pytest.mark.parametrize("size", [0, 1, 1000, (1 << 20) - 1, 1 << 20, (1 << 20) + 7, 2 << 20, (2 << 20) + 1,
                                  (3 << 20) + 5])
def test_the_pages_fingerprint_of_a_descriptor_is_the_scans_fingerprint(tmp_path, size):
    from codeFeature.collection.serve import fingerprint_of_descriptor
    from codeFeature.collection.store import fingerprint

    path = tmp_path / "f.bin"
    path.write_bytes(np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, 5 if size > 5 else 0, os.SEEK_SET)  # the offset is neither used nor moved
        assert fingerprint_of_descriptor(fd, size) == fingerprint(path, size)
        assert os.lseek(fd, 0, os.SEEK_CUR) == (5 if size > 5 else 0)
    finally:
        os.close(fd)
