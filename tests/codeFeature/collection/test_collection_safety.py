"""No input can hang or escape (issue 29): special files, a file swapped for a pipe, labels that
would leave the export folder, a locked database, a damaged one.

Whatever could hang runs in a daemon thread joined with a timeout, or in a subprocess with one, so
a regression fails the test instead of blocking the suite.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from codeFeature.audio import find_ffmpeg, load_audio, open_audio
from codeFeature.errors import NotRegularFileError
from codeFeature.collection.export import by_genre, check_folder_name
from codeFeature.collection.store import (COLUMNS, DamagedDatabaseError, DatabaseBusyError, LibraryStore, fingerprint,
                                       lock_holders)
from codeFeature.regular_file import open_regular
from tests.conftest import REPO, chord, write_audio

BOUND = 60  # seconds: far beyond what any of these takes, short of "for ever"


def bounded(call, timeout: float = BOUND):
    """``call()``'s result (or its exception), from a daemon thread; fails the test if it does not end."""
    box: dict = {}

    def run():
        try:
            box["value"] = call()
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"still running after {timeout} s: it hangs"
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


# ------------------------------------------------------------------ special files


@pytest.mark.parametrize("kind", ["fifo", "dev_null", "dev_zero", "folder"])
def test_decoding_refuses_what_is_not_a_regular_file(tmp_path, kind):
    path = {"fifo": lambda: _fifo(tmp_path / "pipe.wav"), "folder": lambda: tmp_path,
            "dev_null": lambda: Path("/dev/null"), "dev_zero": lambda: Path("/dev/zero")}[kind]()
    if kind.startswith("dev"):  # under an audio name, as a collection would hold it
        os.symlink(path, tmp_path / "device.mp3")
        path = tmp_path / "device.mp3"
    with pytest.raises(NotRegularFileError) as info:
        bounded(lambda: load_audio(path))
    if kind == "folder":
        assert str(info.value) == f"{path.name} is a folder, not a file"
        return
    words = {"fifo": "a named pipe", "dev_null": "a character device", "dev_zero": "a character device"}[kind]
    assert str(info.value) == f"{path.name} is not a regular file ({words}); it was not read"


def test_fingerprint_and_open_regular_refuse_pipes_and_devices(tmp_path):
    pipe = _fifo(tmp_path / "pipe.flac")
    for path in (pipe, "/dev/zero"):
        with pytest.raises(NotRegularFileError, match="not a regular file"):
            bounded(lambda: fingerprint(path))
        with pytest.raises(OSError):  # also an OSError: code that skips unreadable files skips these
            bounded(lambda: fingerprint(path))
    song = write_audio(tmp_path / "song.wav", chord(1.0))
    link = tmp_path / "link.wav"
    os.symlink(song, link)
    os.close(open_regular(link))                                   # followed by default (the scan's walk)
    with pytest.raises(NotRegularFileError, match="a symbolic link"):
        open_regular(link, follow_symlinks=False)


def test_predict_file_on_a_pipe_is_an_error_not_a_hang(tmp_path, tiny_model):
    from codeFeature.predict import predict_file

    pipe = _fifo(tmp_path / "song.ogg")
    with pytest.raises(NotRegularFileError, match="named pipe"):
        bounded(lambda: predict_file(pipe, model=tiny_model))


def _swap_for_fifo(path: Path) -> None:
    spare = path.with_name(path.name + ".fifo")
    os.mkfifo(spare)
    os.replace(spare, path)


def test_an_opened_file_is_decoded_even_if_swapped_for_a_pipe(tmp_path):
    """The decoder reads the open, checked file: replacing its name afterwards changes nothing."""
    song = write_audio(tmp_path / "song.flac", chord(3.0, seed=3))
    expected = load_audio(song).samples
    stream = open_audio(song)
    _swap_for_fifo(song)
    with stream:
        got = bounded(lambda: np.concatenate(list(stream)))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.skipif(find_ffmpeg() is None, reason="no ffmpeg binary (system or imageio-ffmpeg)")
def test_ffmpeg_decodes_the_checked_file_even_if_swapped_for_a_pipe(tmp_path):
    wav = write_audio(tmp_path / "c.wav", chord(3.0, seed=4))
    m4a = tmp_path / "c.m4a"
    subprocess.run([find_ffmpeg(), "-loglevel", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True,
                   timeout=BOUND)
    expected = load_audio(m4a).samples
    stream = open_audio(m4a)   # ffmpeg starts at the first block, after the swap
    _swap_for_fifo(m4a)
    with stream:
        got = bounded(lambda: np.concatenate(list(stream)))
    np.testing.assert_array_equal(got, expected)
    assert not [p for p in tmp_path.iterdir() if p.name not in ("c.wav", "c.m4a")]


SCAN_WITH_SWAPS = textwrap.dedent("""
    import os, sys
    from codeFeature.collection import classify as classify_module
    from codeFeature.collection import scan as scan_module
    from codeFeature.collection.classify import ModelSpec
    from codeFeature.collection.scan import scan
    from codeFeature.collection.store import LibraryStore

    root, db, model = sys.argv[1:4]

    def swap(path, target=None):
        spare = path + ".new"
        os.mkfifo(spare) if target is None else os.symlink(target, spare)
        os.replace(spare, path)

    real_walk, real_fingerprint = scan_module.walk, classify_module.fingerprint

    def walk_then_swap(*args, **kwargs):
        yield from real_walk(*args, **kwargs)
        swap(os.path.join(root, "swapped after the walk.wav"))
        swap(os.path.join(root, "swapped for zero.wav"), "/dev/zero")

    def fingerprint_then_swap(path, size=None):
        value = real_fingerprint(path, size)
        if os.fsdecode(path).endswith("swapped before decoding.wav"):
            swap(os.fsdecode(path))
        return value

    scan_module.walk, classify_module.fingerprint = walk_then_swap, fingerprint_then_swap
    with LibraryStore(db) as store:
        summary = scan(root, store, ModelSpec.resolve(model, "float32"), jobs=2, progress=False)
        for row in store.rows():
            print(os.path.basename(row["path_text"]), "|", row["status"], "|", row["error"])
    print("stored", summary.stored)
""")


def test_a_scan_meets_pipes_devices_and_swaps_and_still_finishes(tmp_path, tiny_model_dir):
    root = tmp_path / "music"
    root.mkdir()
    for name in ("good.wav", "swapped after the walk.wav", "swapped for zero.wav", "swapped before decoding.wav"):
        write_audio(root / name, chord(3.0))
    _fifo(root / "pipe.mp3")
    os.symlink("/dev/zero", root / "zero.flac")
    os.symlink("/dev/null", root / "null.ogg")
    run = subprocess.run([sys.executable, "-c", SCAN_WITH_SWAPS, str(root), str(tmp_path / "lib.sqlite"),
                          str(tiny_model_dir)], cwd=REPO, capture_output=True, text=True, timeout=240,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {line.split(" | ")[0]: line.split(" | ")[1:] for line in run.stdout.splitlines() if " | " in line}
    assert "stored 7" in run.stdout
    assert rows["good.wav"][0] == "ok"
    for name, kind in (("pipe.mp3", "a named pipe"), ("zero.flac", "a character device"),
                       ("null.ogg", "a character device"), ("swapped after the walk.wav", "a named pipe"),
                       ("swapped for zero.wav", "a character device"),
                       ("swapped before decoding.wav", "a named pipe")):
        status, error = rows[name]
        assert status == "error" and f"not a regular file ({kind})" in error, (name, error)


# ------------------------------------------------------------------ labels as folder names


def _row(path: bytes, genre: str, *, not_sure: bool = False) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(path=path, path_text=os.fsdecode(path), model="m", model_hash="h", precision="float32", size=1,
               mtime_ns=1, fingerprint="f", status="ok", genre=genre, not_sure=int(not_sure), scanned_at=0.0,
               labels=[genre], probabilities=[1.0])
    return row


def _listing(folder: Path) -> list[str]:
    """Every path under ``folder`` but SQLite's own ``-wal`` / ``-shm`` files (a reader may make them)."""
    return sorted(str(p) for p in folder.rglob("*") if not p.name.endswith(("-wal", "-shm")))


@pytest.mark.parametrize("label", ["../escaped", "../../etc", "/tmp/abs", "a/b", "a\\b", "", ".", "..", "x\x00y",
                                   "new\nline", "x" * 256])
def test_a_label_that_would_leave_the_folder_is_refused(tmp_path, label, capsys):
    from codeFeature.__main__ import main

    song = write_audio(tmp_path / "song.wav", chord(1.0))
    db = tmp_path / "lib.sqlite"
    with LibraryStore(db) as store:
        store.put(_row(os.fsencode(song), "rock"))
        store.put(_row(os.fsencode(tmp_path / "other.wav"), label))
    before = _listing(tmp_path)
    assert main(["export", "--db", str(db), "--by-genre", str(tmp_path / "out" / "genres")]) == 2
    err = capsys.readouterr().err
    assert "cannot be a folder name" in err and "Traceback" not in err
    assert _listing(tmp_path) == before     # nothing made, inside or out
    with pytest.raises(ValueError, match="cannot be a folder name"):
        check_folder_name(label)


def test_ordinary_labels_still_make_their_folders(tmp_path):
    labels = ["rock", "hip-hop", "R&B", "drum & bass", "música", "k-pop (2)", "x" * 255]
    with LibraryStore(tmp_path / "lib.sqlite") as store:
        for i, label in enumerate(labels):
            store.put(_row(os.fsencode(tmp_path / f"s{i}.wav"), label))
        store.put(_row(os.fsencode(tmp_path / "unsure.wav"), "../x", not_sure=True))  # goes to not_sure/
        assert by_genre(store, tmp_path / "genres", model="m") == len(labels) + 1
    assert sorted(p.name for p in (tmp_path / "genres").iterdir()) == sorted(labels + ["not_sure"])


# ------------------------------------------------------------------ a locked database

HOLDER = textwrap.dedent("""
    import sqlite3, sys
    db = sqlite3.connect(sys.argv[1], isolation_level=None)
    if sys.argv[2] == "exclusive":  # keeps even readers out
        db.execute("PRAGMA locking_mode=EXCLUSIVE")
        db.execute("BEGIN EXCLUSIVE")
        db.execute("INSERT OR REPLACE INTO meta VALUES ('held', 'yes')")
    else:
        db.execute("BEGIN IMMEDIATE")
    print("held", flush=True)
    sys.stdin.readline()  # until the test says
    db.execute("ROLLBACK")
""")


class Holder:
    """A second process holding ``db``'s write lock until :meth:`release`."""

    def __init__(self, db: Path, mode: str = "immediate"):
        self.process = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), mode], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "held"

    def release(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("go\n")
            self.process.stdin.flush()
            self.process.wait(timeout=BOUND)

    def __enter__(self) -> "Holder":
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            self.release()
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=BOUND)


def _library_with_rows(tmp_path: Path, n: int = 3) -> Path:
    db = tmp_path / "lib.sqlite"
    with LibraryStore(db) as store:
        for i in range(n):
            store.put(_row(f"/music/{i}.wav".encode(), "rock"))
    return db


def test_a_write_while_reading_waits_for_the_other_writer_instead_of_failing(tmp_path):
    """The finding: ``tag --write`` writes while it iterates rows; that used to fail at once."""
    db = _library_with_rows(tmp_path, 5)
    reading, done = threading.Event(), threading.Event()
    seen: dict = {}

    def write_while_iterating():
        with LibraryStore(db, wait=BOUND) as store:
            rows = store.rows(page=2)
            first = next(rows)
            reading.set()
            store.put({**first, "size": 2, "mtime_ns": 2, "fingerprint": "g"})
            done.set()
            seen["rows"] = 1 + len(list(rows))
            seen["size"] = store.get(first["path"], "m")["size"]

    with Holder(db) as holder:
        writer = threading.Thread(target=write_while_iterating, daemon=True)
        writer.start()
        assert reading.wait(BOUND)
        writer.join(1.0)
        assert writer.is_alive() and not done.is_set()   # waiting, not failed
        holder.release()
        writer.join(BOUND)
    assert done.is_set() and seen == {"rows": 5, "size": 2}


def _cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "codeFeature", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def _assert_busy_message(run: subprocess.CompletedProcess, db: Path, holder: Holder) -> None:
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr and "OperationalError" not in run.stderr
    assert f"another program is writing to {db}" in run.stderr
    assert f"pid {holder.process.pid}: " in run.stderr            # who holds it
    assert "waiting 1 s" in run.stderr and "--wait" in run.stderr


def test_tag_write_on_a_locked_database_waits_then_names_the_writer(tmp_path):
    song = write_audio(tmp_path / "song.flac", chord(2.0))
    info = os.stat(song)
    db = tmp_path / "lib.sqlite"
    with LibraryStore(db) as store:
        row = _row(os.fsencode(song), "rock")
        row.update(size=info.st_size, mtime_ns=info.st_mtime_ns, fingerprint=fingerprint(song), confidence=0.9,
                   vote_share=1.0, verdict="rock", reasons=[])
        store.put(row)
    with Holder(db) as holder:
        run = _cli("tag", "--db", str(db), "--write", "--wait", "1")
        _assert_busy_message(run, db, holder)


def test_scan_on_a_locked_database_waits_then_names_the_writer(tmp_path, tiny_model_dir):
    root = tmp_path / "music"
    root.mkdir()
    write_audio(root / "song.wav", chord(3.0))
    db = _library_with_rows(tmp_path)
    with Holder(db) as holder:
        run = _cli("scan", str(root), "--db", str(db), "--model", str(tiny_model_dir), "--precision", "float32",
                   "--quiet", "--wait", "1")
        _assert_busy_message(run, db, holder)


def test_export_reads_beside_a_writer_and_waits_for_an_exclusive_one(tmp_path, capsys):
    from codeFeature.__main__ import main

    db = _library_with_rows(tmp_path)
    with Holder(db):  # a writer in WAL mode: readers go on with the last committed rows
        assert main(["export", "--db", str(db), str(tmp_path / "out.csv"), "--wait", "1"]) == 0
    assert len((tmp_path / "out.csv").read_text().splitlines()) == 4
    with Holder(db, "exclusive") as holder:
        assert main(["export", "--db", str(db), str(tmp_path / "again.csv"), "--wait", "1"]) == 2
        err = capsys.readouterr().err
        assert f"another program is writing to {db} (pid {holder.process.pid}: " in err and "Traceback" not in err
        assert lock_holders(db) and not (tmp_path / "again.csv").exists()
    with pytest.raises(DatabaseBusyError):
        with Holder(db, "exclusive"):
            LibraryStore(db, readonly=True, wait=0.2)


# ------------------------------------------------------------------ a damaged database


def _damaged_library(tmp_path: Path) -> tuple[Path, str]:
    """A library of 400 rows, then random bytes over two whole pages in the middle of the file."""
    db = tmp_path / "lib.sqlite"
    rng = np.random.default_rng(29)
    with LibraryStore(db) as store:
        for i in range(400):
            row = _row(f"/music/{i:04d}.wav".encode(), "rock")
            row["segments"] = rng.bytes(300)
            store.put(row)
    assert not Path(f"{db}-wal").exists()  # closed cleanly: everything is in the main file
    page = 4096
    pages = db.stat().st_size // page
    with open(db, "r+b") as handle:
        handle.seek(pages // 2 * page)
        handle.write(rng.bytes(2 * page))
    return db, hashlib.sha256(db.read_bytes()).hexdigest()


def test_a_damaged_database_is_refused_and_left_untouched(tmp_path, capsys):
    from codeFeature.__main__ import main

    db, digest = _damaged_library(tmp_path)
    music = tmp_path / "music"
    music.mkdir()
    commands = [["scan", str(music), "--db", str(db), "--quiet"], ["tag", "--db", str(db)],
                ["tag", "--db", str(db), "--write"], ["tag", "--db", str(db), "--undo", "--write"],
                ["export", "--db", str(db), str(tmp_path / "out.csv")],
                ["export", "--db", str(db), "--by-genre", str(tmp_path / "genres")]]
    for command in commands:
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert f"{db} is damaged (SQLite's integrity check says: " in err and "was left exactly as it is" in err
        assert "Traceback" not in err
        assert hashlib.sha256(db.read_bytes()).hexdigest() == digest, command
    for readonly in (True, False):
        with pytest.raises(DamagedDatabaseError):
            LibraryStore(db, readonly=readonly)
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "genres").exists()


def test_a_pipe_given_as_the_database_is_refused(tmp_path, capsys):
    from codeFeature.__main__ import main

    pipe = _fifo(tmp_path / "lib.sqlite")
    assert bounded(lambda: main(["export", "--db", str(pipe), str(tmp_path / "out.csv")])) == 2
    assert "is not a database file (a named pipe)" in capsys.readouterr().err
