"""The music library: scan into SQLite, resume, rescan, export, tags (synthesised audio, the tiny model)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from codeFeature.collection import classify as classify_module
from codeFeature.collection import scan as scan_module
from codeFeature.collection.export import by_genre, export
from codeFeature.collection.classify import ModelSpec
from codeFeature.collection.scan import scan
from codeFeature.collection.walk import WalkStats, walk
from codeFeature.collection.store import LibraryError, LibraryStore, load_prediction
from codeFeature.predict import predict_file
from tests.conftest import REPO, chord, write_audio

LATIN1_NAME = b"caf\xe9 latin-1.wav"  # not UTF-8: only bytes-level handling keeps it


def _tree(folder: Path) -> dict:
    """Every entry under ``folder`` with its size and mtime (symlinks not followed): proof nothing was written."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(folder)):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            out[path] = (info.st_mode, info.st_size, info.st_mtime_ns)
    return out


@pytest.fixture()
def spec(tiny_model_dir):
    return ModelSpec.resolve(str(tiny_model_dir), "float32")


@pytest.fixture()
def messy(tmp_path):
    """Good songs in four formats, and every kind of trouble a real collection holds."""
    root = tmp_path / "music"
    (root / "album" / "disc 2").mkdir(parents=True)
    for i, ext in enumerate(("wav", "flac", "ogg", "mp3")):
        write_audio(root / "album" / f"track{i}.{ext}", chord(4.0, seed=i))
    write_audio(root / "album" / "disc 2" / "日本語の曲.flac", chord(3.5, seed=7))
    write_audio(root / "latin.wav", chord(3.2, seed=8))
    os.rename(os.fsencode(root / "latin.wav"), os.path.join(os.fsencode(root), LATIN1_NAME))
    write_audio(root / "shout.wav", chord(3.0, seed=9)).rename(root / "SHOUT.WAV")  # the case does not matter
    (root / "empty.mp3").write_bytes(b"")                                 # zero bytes
    (root / "broken.flac").write_bytes(b"fLaC" + os.urandom(3000))         # a header, then garbage
    (root / "text.ogg").write_text("not audio at all\n" * 20)             # wrong content for its name
    (root / "cover.jpg").write_bytes(os.urandom(500))                     # not audio-looking: left alone
    (root / "notes.txt").write_text("liner notes")
    os.symlink(root, root / "album" / "loop")                             # a symlink loop
    os.symlink(root / "album", root / "album again")                      # the same folder under a second name
    os.symlink(root / "missing.mp3", root / "dangling.mp3")               # a broken symlink
    os.mkfifo(root / "pipe.wav")                                          # opening it would block for ever
    write_audio(root / "locked.wav", chord(3.0, seed=10))                 # made unreadable by the test
    return root


AUDIO_LOOKING = {"album/track0.wav", "album/track1.flac", "album/track2.ogg", "album/track3.mp3",
                 "album/disc 2/日本語の曲.flac", LATIN1_NAME.decode("latin-1"), "SHOUT.WAV", "empty.mp3",
                 "broken.flac", "text.ogg", "dangling.mp3", "pipe.wav", "locked.wav"}
GOOD = {"album/track0.wav", "album/track1.flac", "album/track2.ogg", "album/track3.mp3",
        "album/disc 2/日本語の曲.flac", LATIN1_NAME.decode("latin-1"), "SHOUT.WAV"}


def _relative(row: dict, root: Path) -> str:
    return os.path.relpath(row["path"], os.fsencode(root)).decode("utf-8", "surrogateescape") \
        if b"\xe9" not in row["path"] else os.path.basename(row["path"]).decode("latin-1")


def _make_unreadable(root: Path, monkeypatch) -> None:
    """chmod 000; as root (CI) that denies nothing, so the read is made to fail the way it would."""
    locked = root / "locked.wav"
    locked.chmod(0)
    if os.geteuid() != 0:
        return
    real = classify_module.fingerprint

    def denied(path, size=None):
        if os.fsencode(path) == os.fsencode(locked):
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real(path, size)

    monkeypatch.setattr(classify_module, "fingerprint", denied)


def test_walk_finds_audio_looking_names_and_never_loops(messy):
    stats = WalkStats()
    found = list(walk(messy, stats=stats))
    names = {os.path.relpath(f.path, os.fsencode(messy)) for f in found}
    assert len(found) == len(AUDIO_LOOKING) == len(names)
    assert os.fsencode("album/track0.wav") in names and LATIN1_NAME in names
    assert not any(b"loop" in n or b"again" in n for n in names)   # reached twice, walked once
    assert stats.loops_avoided == 2 and stats.other_files == 2
    problems = {os.path.basename(f.path): f.problem for f in found if f.problem}
    assert set(problems) == {b"dangling.mp3", b"pipe.wav"}


def test_scan_gives_every_audio_file_a_row_and_writes_nothing_else(messy, tmp_path, spec, tiny_model, monkeypatch):
    _make_unreadable(messy, monkeypatch)
    before = _tree(messy)
    db = tmp_path / "lib.sqlite"
    with LibraryStore(db) as store:
        summary = scan(messy, store, spec, jobs=2, model=tiny_model, progress=False)
        rows = list(store.rows())
    assert _tree(messy) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib.sqlite", "lib.sqlite-shm", "lib.sqlite-wal", "music"] \
        or sorted(p.name for p in tmp_path.iterdir()) == ["lib.sqlite", "music"]
    assert summary.found == summary.stored == len(rows) == len(AUDIO_LOOKING) and not summary.interrupted
    by_name = {_relative(r, messy): r for r in rows}
    assert set(by_name) == AUDIO_LOOKING
    assert {n for n, r in by_name.items() if r["status"] == "ok"} == GOOD
    errors = {n: r["error"] for n, r in by_name.items() if r["status"] == "error"}
    assert "empty" in errors["empty.mp3"]
    assert "could not be decoded" in errors["broken.flac"] and "could not be decoded" in errors["text.ogg"]
    assert "broken symlink" in errors["dangling.mp3"] and "not a regular file" in errors["pipe.wav"]
    assert "Permission denied" in errors["locked.wav"]
    for row in rows:
        if row["status"] == "ok":
            assert row["genre"] in row["labels"] and len(row["probabilities"]) == 10
            assert row["n_segments"] >= 1 and row["fingerprint"] and row["model"] == "tiny"
    assert by_name[LATIN1_NAME.decode("latin-1")]["path_text"].endswith("caf\\xe9 latin-1.wav")


def test_rescan_skips_unchanged_and_redoes_changed_errors_on_request(messy, tmp_path, spec, tiny_model):
    (messy / "pipe.wav").unlink()  # keep this test about files
    import io

    log = io.StringIO()  # not a terminal: plain progress lines instead of a bar
    with LibraryStore(tmp_path / "lib.sqlite") as store:
        first = scan(messy, store, spec, jobs=2, model=tiny_model, progress_stream=log)
        assert f"{first.stored}/{first.stored} files" in log.getvalue() and "files/s, ETA" in log.getvalue()
        again = scan(messy, store, spec, jobs=2, model=tiny_model, progress=False)
        assert again.stored == 0 and again.unchanged == len(GOOD) + 1 and again.errors_kept == first.errors
        song = messy / "album" / "track0.wav"
        write_audio(song, chord(5.0, seed=42))                            # new content, new size
        changed = scan(messy, store, spec, jobs=2, model=tiny_model, progress=False)
        assert changed.stored == 1 and store.get(song, "tiny")["n_segments"] == 2
        # same size and mtime but new bytes: only the fingerprint tells
        other = messy / "album" / "track1.flac"
        info = other.stat()
        data = bytearray(other.read_bytes())
        data[-10:] = b"\x00" * 10
        other.write_bytes(bytes(data))
        os.utime(other, ns=(info.st_atime_ns, info.st_mtime_ns))
        assert scan(messy, store, spec, jobs=2, model=tiny_model, progress=False).stored == 1
        retried = scan(messy, store, spec, jobs=2, model=tiny_model, progress=False, retry_errors=True)
        assert retried.stored == first.errors and retried.unchanged == len(GOOD) + 1  # locked.wav reads here


def test_stored_row_rebuilds_the_same_prediction(audio_dir, tmp_path, spec, tiny_model):
    with LibraryStore(tmp_path / "lib.sqlite") as store:
        scan(audio_dir, store, spec, jobs=2, model=tiny_model, progress=False)
        for name in ("chord.flac", "chord.mp3", "mono22k.wav"):
            fresh = predict_file(audio_dir / name, model=tiny_model)
            row = store.get(audio_dir / name, "tiny")
            stored = load_prediction(row)
            # bit for bit, though classified two files at a time (features once ran on two BLAS threads
            # when another file's features overlapped them, and differed in the last bit)
            np.testing.assert_array_equal(stored.probabilities, fresh.probabilities)
            np.testing.assert_array_equal(stored.starts, fresh.starts)
            assert stored.verdict == fresh.verdict
            assert row["genre"] == fresh.genre and row["confidence"] == fresh.confidence
            assert row["not_sure"] == fresh.not_sure and row["verdict"] == fresh.verdict.headline
            assert {**stored.to_dict(), "file": None} == {**fresh.to_dict(), "file": None}
        with pytest.raises(ValueError, match="no stored result"):
            load_prediction(store.get(audio_dir / "empty.wav", "tiny"))


def test_a_file_changing_while_classified_is_retried_then_an_error(audio_dir, tmp_path, spec, tiny_model, monkeypatch):
    from codeFeature import predict

    song = tmp_path / "growing.wav"
    shutil.copy(audio_dir / "mono22k.wav", song)
    real = predict.predict_file
    calls = []

    def append_while_reading(source, **kwargs):
        calls.append(source)
        if len(calls) <= limit:
            with open(song, "ab") as handle:   # a download still being written
                handle.write(b"\x00\x00" * 1000)
        return real(source, **kwargs)

    monkeypatch.setattr(predict, "predict_file", append_while_reading)
    with LibraryStore(tmp_path / "lib.sqlite") as store:
        limit = 1
        scan(song, store, spec, jobs=1, model=tiny_model, progress=False)
        row = store.get(song, "tiny")
        assert row["status"] == "ok" and row["size"] == song.stat().st_size and len(calls) == 2
        calls.clear()
        limit = 99
        song.write_bytes(song.read_bytes())  # new mtime
        os.utime(song, ns=(0, 1))
        scan(song, store, spec, jobs=1, model=tiny_model, progress=False)
        row = store.get(song, "tiny")
        assert row["status"] == "error" and "kept changing" in row["error"] and len(calls) == 3
        # its stored stat is the one before the change, so the next scan retries it without being asked
        limit = 0
        assert scan(song, store, spec, jobs=1, model=tiny_model, progress=False).stored == 1
        assert store.get(song, "tiny")["status"] == "ok"


def test_another_model_adds_its_own_rows(audio_dir, tmp_path, tiny_model_dir, spec, tiny_model):
    other_dir = tmp_path / "tiny_b"
    shutil.copytree(tiny_model_dir, other_dir)
    manifest = json.loads((other_dir / "manifest.json").read_text())
    manifest["name"] = "tiny_b"
    (other_dir / "manifest.json").write_text(json.dumps(manifest))
    with LibraryStore(tmp_path / "lib.sqlite") as store:
        scan(audio_dir, store, spec, jobs=2, model=tiny_model, progress=False)
        first = {r["path"]: r["segments"] for r in store.rows("tiny")}
        other = ModelSpec.resolve(str(other_dir), "float32")
        assert scan(audio_dir, store, other, jobs=2, progress=False).stored == len(first)
        assert dict(store.models()) == {"tiny": len(first), "tiny_b": len(first)}
        assert {r["path"]: r["segments"] for r in store.rows("tiny")} == first
        with pytest.raises(LibraryError, match="several models"):
            store.pick_model(None)


def test_exports_and_genre_folders(audio_dir, tmp_path, spec, tiny_model):
    import pyarrow.parquet as pq

    from codeFeature.__main__ import main

    db = tmp_path / "lib.sqlite"
    with LibraryStore(db) as store:
        scan(audio_dir, store, spec, jobs=2, model=tiny_model, progress=False)
        n = store.count()
        ok = [r for r in store.rows() if r["status"] == "ok"]
    before = _tree(audio_dir)
    assert main(["export", "--db", str(db), str(tmp_path / "out.csv"), "--by-genre", str(tmp_path / "genres")]) == 0
    assert main(["export", "--db", str(db), str(tmp_path / "out.jsonl")]) == 0
    assert main(["export", "--db", str(db), str(tmp_path / "out.parquet")]) == 0
    import csv

    table = list(csv.DictReader(open(tmp_path / "out.csv", encoding="utf-8")))
    assert len(table) == n and {"path", "genre", "confidence", "not_sure", "error", "p_rock"} <= set(table[0])
    lines = [json.loads(line) for line in open(tmp_path / "out.jsonl", encoding="utf-8")]
    assert len(lines) == n and sum(line["segment_probabilities"] is not None for line in lines) == len(ok)
    frame = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert len(frame) == n
    first = next(r for r in frame if r["status"] == "ok")
    assert len(first["segment_probabilities"][0]) == 10 and first["p_blues"] == pytest.approx(
        next(r for r in ok if r["path_text"] == first["path"])["probabilities"][0])
    # scanned_at: the database's epoch seconds, exported as the same instant in UTC (ISO 8601 text; Parquet's
    # own timestamp type with time zone UTC)
    import datetime as dt
    import re

    with LibraryStore(db, readonly=True) as store:
        stored_at = {r["path_text"]: r["scanned_at"] for r in store.rows(with_segments=False)}
    iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
    for row in table + lines:
        assert iso.match(row["scanned_at"]), row["scanned_at"]
        moment = dt.datetime.fromisoformat(row["scanned_at"].replace("Z", "+00:00"))
        assert moment.utcoffset() == dt.timedelta(0)
        assert abs(moment.timestamp() - stored_at[row["path"]]) < 1e-3
    parquet_type = pq.read_schema(tmp_path / "out.parquet").field("scanned_at").type
    assert str(parquet_type.tz) == "UTC"
    for row in frame:
        assert row["scanned_at"].tzinfo is not None
        assert abs(row["scanned_at"].timestamp() - stored_at[row["path"]]) < 1e-3
    links = [p for p in (tmp_path / "genres").rglob("*")if p.is_symlink()]
    assert len(links) == len(ok)
    assert all(p.resolve().parent == audio_dir.resolve() for p in links)
    assert _tree(audio_dir) == before                                       # nothing moved or copied
    assert main(["export", "--db", str(db), str(tmp_path / "genres2")]) == 2  # no extension: a message
    assert main(["export", "--db", str(tmp_path / "nothing.sqlite"), str(tmp_path / "x.csv")]) == 2


def test_a_file_that_is_not_a_library_database_is_refused(tmp_path):
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE songs (x)").connection.commit()
    with pytest.raises(LibraryError, match="something else"):
        LibraryStore(other)
    text = tmp_path / "notes.sqlite"
    text.write_text("hello, not a database" * 100)
    with pytest.raises(LibraryError, match="not a library database"):
        LibraryStore(text)


def test_tags_dry_run_write_rescan_and_undo(tmp_path, spec, tiny_model):
    import mutagen
    from mutagen.id3 import ID3, TCON

    from codeFeature.collection.tags import apply_tags, read_genre, undo_tags

    root = tmp_path / "music"
    root.mkdir()
    for ext in ("mp3", "flac", "ogg", "wav"):
        write_audio(root / f"song.{ext}", chord(4.0))
    write_audio(root / "quiet.flac", np.zeros(4 * 22050, np.float32))        # silence: not sure
    from codeFeature.audio import find_ffmpeg, load_audio

    ffmpeg = find_ffmpeg()
    if ffmpeg:
        subprocess.run([ffmpeg, "-loglevel", "error", "-i", str(root / "song.wav"), "-c:a", "aac",
                        str(tmp_path / "song.m4a")], check=True)
        shutil.move(tmp_path / "song.m4a", root / "song.m4a")
    flac = mutagen.File(root / "song.flac")
    flac["genre"] = ["My Own"]
    flac.save()
    tags = ID3()
    tags.add(TCON(encoding=3, text=["Old"]))
    tags.save(root / "song.mp3")
    audio_before = {p.name: load_audio(p).samples for p in root.iterdir()}
    with LibraryStore(tmp_path / "lib.sqlite") as store:
        scan(root, store, spec, jobs=2, model=tiny_model, progress=False)
        genre = store.get(root / "song.ogg", "tiny")["genre"]
        tree = _tree(root)
        kept = {c.path.rsplit("/", 1)[1]: c for c in apply_tags(store, model="tiny")}
        assert kept["song.mp3"].action == "skip" and "--overwrite" in kept["song.mp3"].note  # filled only if empty
        plan = {c.path.rsplit("/", 1)[1]: c for c in apply_tags(store, model="tiny", overwrite=True)}
        assert _tree(root) == tree                                          # a dry run changes nothing
        assert plan["song.mp3"].action == "write" and plan["song.mp3"].old == ["Old"]
        assert plan["song.wav"].action == "skip" and plan["quiet.flac"].action == "skip"
        assert "not sure" in plan["quiet.flac"].note
        done = {c.path.rsplit("/", 1)[1]: c for c in apply_tags(store, model="tiny", write=True, overwrite=True)}
        tagged = ["song.flac"] + (["song.m4a"] if ffmpeg else []) + ["song.mp3", "song.ogg"]
        assert sorted(n for n, c in done.items() if c.action == "write") == tagged
        written = genre.capitalize() if genre != "hiphop" else "Hip-Hop"
        kinds = {"song.mp3": "id3", "song.flac": "vorbis", "song.ogg": "vorbis", "song.m4a": "mp4"}
        for name, kind in ((n, kinds[n]) for n in tagged):
            assert read_genre(root / name, kind) == [written]
        assert read_genre(root / "quiet.flac", "vorbis") is None
        for path in root.iterdir():                                         # the audio itself is untouched
            np.testing.assert_array_equal(load_audio(path).samples, audio_before[path.name])
        assert scan(root, store, spec, jobs=2, model=tiny_model, progress=False).stored == 0
        assert all(c.action == "same" for c in apply_tags(store, model="tiny", write=True) if c.action != "skip")
        assert {c.action for c in undo_tags(store)} == {"restore"} and read_genre(root / "song.mp3", "id3") == [written]
        undone = undo_tags(store, write=True)
        assert len(undone) == len(tagged)
        assert read_genre(root / "song.mp3", "id3") == ["Old"] and read_genre(root / "song.flac", "vorbis") == ["My Own"]
        assert read_genre(root / "song.ogg", "vorbis") is None
        assert undo_tags(store, write=True) == []
        assert scan(root, store, spec, jobs=2, model=tiny_model, progress=False).stored == 0
        with_unsure = apply_tags(store, model="tiny", include_not_sure=True)
        assert any(c.action == "write" and c.path.endswith("quiet.flac") for c in with_unsure)


def test_kill_9_mid_scan_then_resume_equals_an_uninterrupted_scan(tmp_path, tiny_model_dir, spec, tiny_model):
    root = tmp_path / "music"
    root.mkdir()
    n = 24
    for i in range(n):
        write_audio(root / f"song{i:02d}.wav", chord(4.0, seed=i))
    (root / "bad.mp3").write_bytes(b"nope" * 50)
    with LibraryStore(tmp_path / "whole.sqlite") as store:
        scan(root, store, spec, jobs=1, model=tiny_model, progress=False)
        whole = {r["path"]: r for r in store.rows()}
    db = tmp_path / "killed.sqlite"
    command = [sys.executable, "-m", "codeFeature", "scan", str(root), "--db", str(db), "--model", str(tiny_model_dir),
               "--jobs", "1", "--precision", "float32"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at = 0
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if db.exists():
                try:
                    killed_at = sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute(
                        "SELECT count(*) FROM results").fetchone()[0]
                except sqlite3.OperationalError:   # the schema is still being made
                    killed_at = 0
                if killed_at >= 3:
                    process.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.02)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the scan finished before it could be killed"
    assert 3 <= killed_at < n + 1
    with LibraryStore(db) as store:
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kept = store.count()
        assert kept >= killed_at
        resumed = scan(root, store, spec, jobs=1, model=tiny_model, progress=False)
        assert resumed.unchanged + resumed.errors_kept == kept and resumed.stored == n + 1 - kept  # nothing redone
        after = {r["path"]: r for r in store.rows()}
    assert set(after) == set(whole)
    for path, row in whole.items():
        other = after[path]
        for column in ("status", "genre", "not_sure", "verdict", "error", "size", "mtime_ns", "fingerprint",
                       "n_segments", "labels", "reasons"):
            assert other[column] == row[column], (path, column)
        if row["status"] == "ok":
            np.testing.assert_array_equal(load_prediction(other).probabilities, load_prediction(row).probabilities)


def test_prune_removes_only_files_gone_from_disk_and_never_everything(audio_dir, tmp_path, spec, tiny_model):
    import shutil

    library = tmp_path / "library"
    shutil.copytree(audio_dir, library)
    (library / "keep").mkdir()
    kept = library / "keep" / "a.wav"
    write_audio(kept, chord(4.0, seed=7))
    with LibraryStore(tmp_path / "lib.sqlite") as store:
        first = scan(library, store, spec, jobs=2, model=tiny_model, progress=False)
        victim = sorted(p for p in library.rglob("*") if p.is_file() and p != kept)[0]
        victim.unlink()
        told = scan(library, store, spec, jobs=2, model=tiny_model, progress=False)
        assert told.gone == 1 and told.pruned == 0 and store.get(victim, "tiny") is not None  # only said
        assert any("--prune" in line for line in told.lines())
        pruned = scan(library, store, spec, jobs=2, model=tiny_model, progress=False, prune=True)
        assert pruned.gone == 1 and pruned.pruned == 1 and store.get(victim, "tiny") is None
        assert store.count() == first.found - 1 and store.get(kept, "tiny") is not None
        # a folder scanned on its own never prunes its siblings
        assert scan(library / "keep", store, spec, jobs=2, model=tiny_model, progress=False, prune=True).pruned == 0
        assert store.count() == first.found - 1
        # an empty (unmounted?) root keeps everything, and says why
        for path in list(library.rglob("*")):
            if path.is_file():
                path.unlink()
        empty = scan(library, store, spec, jobs=2, model=tiny_model, progress=False, prune=True)
        assert empty.prune_refused and empty.pruned == 0 and store.count() == first.found - 1
        assert any("mounted" in line for line in empty.lines())


@pytest.mark.parametrize("level, precision", [("amx", "int8"), ("avx512_bf16", "int8"), ("avx2", "int8"),
                                              ("baseline", "float32")])
def test_a_scan_runs_the_path_the_cli_would_pick(monkeypatch, level, precision):
    from codeFeature.cpu import CpuFacts
    from codeFeature.inference_path import plan
    from codeFeature.collection.classify import ModelSpec

    facts = CpuFacts(level, openvino=True)
    monkeypatch.delenv("CODEFEATURE_PRECISION", raising=False)
    monkeypatch.delenv("CODEFEATURE_ENGINE", raising=False)
    spec = ModelSpec.resolve("musicnn_genre", facts=facts)
    assert spec.precision == precision
    manifest = json.loads((Path(spec.folder) / "manifest.json").read_text())
    assert plan(manifest, facts=facts).precision == spec.precision  # what load_model(auto) plans, named explicitly
    assert plan(manifest, precision=spec.precision, engine=spec.engine, facts=facts) == plan(manifest, facts=facts)


def test_a_database_inside_the_scanned_folder_is_not_counted_and_counts_are_in_good_english(tmp_path, spec,
                                                                                          tiny_model):
    from codeFeature.__main__ import main

    root = tmp_path / "music"
    root.mkdir()
    write_audio(root / "one.wav", chord(4.0))
    (root / "cover.jpg").write_bytes(b"jpeg")
    db = root / "library.sqlite"
    (root / "library.sqlite-tag.lock").write_bytes(b"")  # left by a tag run
    with LibraryStore(db) as store:
        first = scan(root, store, spec, jobs=1, model=tiny_model, progress=False)
        again = scan(root, store, spec, jobs=1, model=tiny_model, progress=False)
    for summary in (first, again):
        # the cover only: the database, its -wal / -shm and the tag lock are the scan's own files
        assert summary.walk.other_files == 1 and summary.walk.own_files >= 3
    assert first.lines()[0].startswith("1 audio file found in 1 folder (1 other file left alone); 0 unchanged, "
                                       "0 earlier errors kept")
    assert "1 classified now (0 errors)" in first.lines()[0]
    assert again.lines()[0].startswith("1 audio file found in 1 folder (1 other file left alone); 1 unchanged")
    # the CLI prints those lines
    (root / "two.wav").write_bytes(b"")
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["scan", str(root), "--db", str(db), "--quiet", "--model", spec.folder,
                     "--precision", "float32"]) == 0
    assert "2 audio files found in 1 folder (1 other file left alone)" in err.getvalue()
    assert "(1 error)" in err.getvalue() and "folders" not in err.getvalue()


def test_a_stop_flag_ends_a_scan_keeping_finished_files_and_the_next_scan_goes_on(tmp_path, spec, tiny_model):
    import threading

    root = tmp_path / "music"
    root.mkdir()
    for i in range(6):
        write_audio(root / f"s{i}.wav", chord(4.0, seed=i))
    stop = threading.Event()
    # set during the walk: nothing stored, nothing pruned, not even a root
    stop.set()
    with LibraryStore(tmp_path / "lib.sqlite") as store:
        early = scan(root, store, spec, jobs=1, model=tiny_model, progress=False, stop=stop, prune=True)
        assert early.interrupted and early.stopped_early and store.count() == 0
        assert early.lines() == ["stopped before any file was classified (0 audio files found so far); nothing "
                                 "was changed"]
    # set after the second stored row: the rest is not started, what finished is kept
    stop = threading.Event()
    seen = []

    def on_record(record):
        seen.append(record["path"])
        if len(seen) == 2:
            stop.set()

    with LibraryStore(tmp_path / "lib.sqlite") as store:
        stopped = scan(root, store, spec, jobs=1, model=tiny_model, progress=False, stop=stop, on_record=on_record)
        assert stopped.interrupted and stopped.stopped and 2 <= stopped.stored < 6
        assert store.count() == stopped.stored == len(seen)
        assert any(line.startswith("stopped: ") and "run the same command" in line for line in stopped.lines())
        rest = scan(root, store, spec, jobs=1, model=tiny_model, progress=False)
        assert rest.unchanged == stopped.stored and rest.stored == 6 - stopped.stored and store.count() == 6
