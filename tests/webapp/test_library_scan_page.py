"""Scanning from the Library page (AppTest): only the folders the server allows, progress, Stop, rescan,
prune, errors in words, and the very rows ``python -m codeFeature scan`` stores.

The scans run in the server's background thread (:mod:`codeFeature.collection.background`) with the tiny
untrained model installed as ``tiny`` through ``CODEFEATURE_MODEL_PATH``. A gate on the classification
holds files back when a test needs a scan caught in the middle; nothing here depends on how fast the
machine is (every wait is bounded and polls a state).
"""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest

from codeFeature import settings
from codeFeature.collection import background
from codeFeature.collection import classify as classify_module
from codeFeature.collection.store import LibraryStore, load_prediction
from tests.conftest import REPO, chord, write_audio

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

PAGE = str(REPO / "webapp" / "library.py")
SONGS = 10
#: Longest wait for one scan of the tiny model over a few short files (a bound, not a speed figure).
SCAN_BOUND = 300


def _music(folder):
    folder.mkdir(parents=True)
    for i in range(SONGS):
        write_audio(folder / f"song{i:02d}.wav", chord(4.0, seed=i))
    (folder / "zz_broken.mp3").write_bytes(b"not an mp3 at all " * 40)  # last in the walk's order
    return folder


def _serve(monkeypatch, tiny_model_dir, db, folders, *, env_folders=()):
    monkeypatch.setattr(sys, "argv", ["app.py", "--library", str(db), *[a for f in folders for a in ("--scan-folder",
                                                                                                     str(f))]])
    monkeypatch.delenv("CODEFEATURE_LIBRARY", raising=False)
    if env_folders:
        monkeypatch.setenv("CODEFEATURE_SCAN_FOLDERS", os.pathsep.join(str(f) for f in env_folders))
    else:
        monkeypatch.delenv("CODEFEATURE_SCAN_FOLDERS", raising=False)
    monkeypatch.setenv("CODEFEATURE_MODEL_PATH", str(tiny_model_dir.parent))
    settings.reload()  # the server's environment, read again after the test changed it


def _page():
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _wait(db, until, *, bound=SCAN_BOUND):
    """Poll the job of ``db`` until ``until(status)``; fails after ``bound`` seconds."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        job = background.current(str(db))
        if job is not None and until(job.status()):
            return job.status()
        time.sleep(0.05)
    raise AssertionError(f"the scan did not get there in {bound} s: {background.current(str(db)).status()}")


def _finished(db):
    status = _wait(db, lambda s: not s.running)
    assert background.current(str(db)).join(30)
    return status


def _start(at, *, prune=False):
    at.run()  # the page as it is now (the Scan button is off while a scan runs)
    if prune:
        at.checkbox(key="lib_scan_prune").check()
    at.button(key="lib_scan_start").click().run()
    assert not at.exception, at.exception


def _rows(db):
    with LibraryStore(db, readonly=True) as store:
        return {r["path"]: r for r in store.rows()}


class Gate:
    """Lets ``open_for`` files through the classification, then holds every other one until released."""

    def __init__(self, monkeypatch, open_for=1):
        self.released = threading.Event()
        self.lock = threading.Lock()
        self.calls = 0
        self.open_for = open_for
        real = classify_module.classify_path

        def gated(item, model, spec):
            with self.lock:
                self.calls += 1
                mine = self.calls
            if mine > self.open_for:
                assert self.released.wait(SCAN_BOUND), "the test never released the gate"
            return real(item, model, spec)

        monkeypatch.setattr(classify_module, "classify_path", gated)


def _progress_texts(at):
    return [p.proto.text for p in at.get("progress")]


def test_the_page_offers_only_the_folders_the_server_allows(tmp_path, tiny_model_dir, monkeypatch):
    allowed_a, allowed_b, elsewhere = (_music(tmp_path / name) for name in ("a", "b", "elsewhere"))
    db = tmp_path / "lib.sqlite"
    _serve(monkeypatch, tiny_model_dir, db, [allowed_a], env_folders=[allowed_b])
    at = _page()
    assert at.selectbox(key="lib_scan_folder").options == [str(allowed_a), str(allowed_b)]
    assert not at.text_input  # nowhere to type a path
    # a value the page did not offer, set before the first run as a forged session would arrive, is dropped
    forged = AppTest.from_file(PAGE, default_timeout=120)
    forged.session_state["lib_scan_folder"] = str(elsewhere)
    forged.run()
    assert not forged.exception
    assert forged.selectbox(key="lib_scan_folder").value == str(allowed_a)
    forged.button(key="lib_scan_start").click().run()
    assert not forged.exception
    assert background.current(str(db)).status().folder == str(allowed_a)  # what was offered, not what was sent
    background.current(str(db)).stop()
    assert background.current(str(db)).join(SCAN_BOUND)
    # the background module checks again, whatever a page passes
    for bad_db, bad_folder, model in ((str(db), str(elsewhere), None), (str(tmp_path / "other.sqlite"),
                                                                       str(allowed_a), None),
                                      (str(db), str(allowed_a), str(tiny_model_dir)),  # a folder, not a name
                                      (str(db), str(allowed_a) + "/../elsewhere", None)):
        with pytest.raises(background.ScanRefused) as refused:
            background.start_scan(bad_db, bad_folder, model=model)
        assert "elsewhere" not in str(refused.value) and str(tmp_path) not in str(refused.value)
    assert background.current(str(db)).status().folder == str(allowed_a)  # no other scan was started


def test_without_scan_folders_the_page_says_who_allows_them(tmp_path, tiny_model_dir, monkeypatch):
    _serve(monkeypatch, tiny_model_dir, tmp_path / "lib.sqlite", [])
    at = _page()
    assert not at.button and any("--scan-folder" in c.value and "CODEFEATURE_SCAN_FOLDERS" in c.value
                                 for c in at.caption)


def test_scan_progress_stop_resume_rescan_prune_and_the_clis_rows(tmp_path, tiny_model_dir, monkeypatch):
    music = _music(tmp_path / "music")
    db = tmp_path / "lib.sqlite"
    _serve(monkeypatch, tiny_model_dir, db, [music])
    at = _page()
    from codeFeature.model_io import default_model_name

    assert at.selectbox(key="lib_scan_model").value == default_model_name()  # the CLI's default model
    at.selectbox(key="lib_scan_model").set_value("tiny")

    # 1. scan, caught after one file: progress in words, then Stop
    gate = Gate(monkeypatch)
    _start(at)
    _wait(db, lambda s: s.state == "classifying" and s.done >= 1)
    at.run()
    texts = _progress_texts(at)
    assert any(f"1 / {SONGS + 1} files" in t and "files/s" in t and "left" in t for t in texts), texts
    with pytest.raises(background.ScanRefused, match="being scanned already"):
        background.start_scan(str(db), str(music), model="tiny")  # one scan per database at a time
    at.button(key="lib_scan_stop").click().run()
    assert not at.exception
    assert background.current(str(db)).status().state == "stopping"
    gate.released.set()
    stopped = _finished(db)
    assert stopped.state == "stopped" and 1 <= stopped.done < SONGS + 1
    kept = _rows(db)
    assert len(kept) == stopped.done  # every file finished before the stop is kept, nothing else
    at.run()
    assert any("was stopped" in w.value for w in at.warning)
    assert any("press Scan again to go on" in t.value for t in at.text)

    # 2. scan again: only the rest is classified; progress ends, then the rows and the error in words
    # (the gate stays open from here on)
    _start(at)
    done = _finished(db)
    assert all(r["status"] == "ok" for r in kept.values())  # the broken file comes last: it was not reached
    assert done.state == "finished" and done.done == SONGS + 1 - len(kept) and done.unchanged == len(kept)
    rows = _rows(db)
    assert len(rows) == SONGS + 1 and all(kept[p]["scanned_at"] == rows[p]["scanned_at"] for p in kept)
    at.run()
    assert any("is finished" in s.value for s in at.success)
    assert next(m.value for m in at.metric if m.label == "Files") == str(SONGS + 1)
    errors = [d.value for d in at.dataframe if list(d.value.columns) == ["file", "why"]]
    assert errors and errors[0]["file"].str.endswith("zz_broken.mp3").any(), errors
    assert errors[0]["why"].str.len().min() > 10  # words, not a code

    # 3. rescan: nothing new for unchanged files
    _start(at)
    again = _finished(db)
    assert again.state == "finished" and again.done == 0 and again.total == 0 and again.unchanged == SONGS
    assert _rows(db) == rows
    at.run()
    assert any(f"{SONGS} unchanged" in t.value and "0 classified now" in t.value for t in at.text)

    # 4. prune: a deleted file is forgotten (only with the box ticked)
    (music / "song03.wav").unlink()
    _start(at)
    _finished(db)
    assert len(_rows(db)) == SONGS + 1  # without prune, kept and reported
    _start(at, prune=True)
    pruned = _finished(db)
    after = _rows(db)
    assert len(after) == SONGS and not any(p.endswith(b"song03.wav") for p in after)
    assert any("were removed" in line or "was removed" in line for line in pruned.lines), pruned.lines

    # 5. the same rows as the CLI's scan of the same folder
    from codeFeature.cli import main as cli

    cli_db = tmp_path / "cli.sqlite"
    assert cli(["scan", str(music), "--db", str(cli_db), "--model", "tiny", "--quiet"]) == 0
    theirs = _rows(cli_db)
    assert set(theirs) == set(after)
    for path, row in after.items():
        other = theirs[path]
        for column in ("status", "error", "genre", "not_sure", "verdict", "model", "model_hash", "precision",
                       "size", "mtime_ns", "fingerprint", "n_segments", "labels"):
            assert other[column] == row[column], (path, column)
        if row["status"] == "ok":
            np.testing.assert_allclose(load_prediction(other).probabilities, load_prediction(row).probabilities,
                                       rtol=0, atol=1e-6)


def test_the_genre_chart_counts_whole_files(tmp_path, tiny_model_dir, tiny_model, monkeypatch):
    from codeFeature.collection.classify import ModelSpec
    from codeFeature.collection.scan import scan

    music = tmp_path / "music"
    music.mkdir()
    write_audio(music / "one.wav", chord(4.0))
    db = tmp_path / "lib.sqlite"
    with LibraryStore(db) as store:
        scan(music, store, ModelSpec.resolve(str(tiny_model_dir), "float32"), jobs=1, model=tiny_model,
             progress=False)
    _serve(monkeypatch, tiny_model_dir, db, [])
    at = _page()
    import json

    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    axes = [s["encoding"]["x"].get("axis", {}) for s in specs if s.get("encoding", {}).get("x", {}).get("field")
            == "files"]
    assert axes and all(a.get("tickMinStep") == 1 and a.get("format") == "d" for a in axes), axes


def test_a_scan_that_cannot_run_says_why_in_words(tmp_path, tiny_model_dir, monkeypatch):
    gone = tmp_path / "unplugged drive"  # allowed by the server, but not there now
    damaged = tmp_path / "damaged.sqlite"
    damaged.write_bytes(b"SQLite format 3\x00" + os.urandom(8000))
    music = _music(tmp_path / "music")
    for db, folder, words in ((tmp_path / "lib.sqlite", gone, "is not there now"),
                              (damaged, music, "could not run")):
        _serve(monkeypatch, tiny_model_dir, db, [gone, music])
        at = _page()
        at.selectbox(key="lib_scan_folder").set_value(str(folder))
        _start(at)
        status = _finished(db)
        assert status.state == "failed" and words in status.message, status.message
        at.run()
        assert not at.exception and any(words in e.value for e in at.error)
        assert "Traceback" not in str([e.value for e in at.error])
