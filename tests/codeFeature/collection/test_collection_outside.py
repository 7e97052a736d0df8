"""The verdict's third state ("outside": not one of the model's genres) in the collection: stored, migrated
into older databases, exported, never tagged unless asked, and carried by the CLI."""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from codeFeature.collection.export import export
from codeFeature.collection.store import (COLUMNS, JSON_COLUMNS, SCHEMA_VERSION, LibraryStore, _SCHEMA,
                                          load_prediction, pack_segments, record_from_prediction)
from codeFeature.collection.tags import apply_tags, read_genre
from codeFeature.decision import DecisionRule
from codeFeature.predict import Prediction
from tests.conftest import REPO, chord, write_audio

LABELS = ("blues", "rock", "jazz")
TAGS = ("rock", "electronic", "speech")
#: A rule that puts a song whose "electronic" tag stands out (standardised distance from the one centroid
#: above 1) outside the genres, sounding like "electronic".
OUTSIDE = {"tags": list(TAGS), "mean": [0.5, 0.1, 0.1], "scale": [0.1, 0.1, 0.1],
           "centroids": [[0.0, 0.0, 0.0]], "max_distance": 1.0, "describe": ["electronic"], "min_describe": 1.0,
           "source": "a test's rule"}
MODEL = "synthetic"


def _prediction(tags: list[float], *, outside: bool = True) -> Prediction:
    """A two-segment prediction whose answer is rock, sure; with the outside rule it may be outside."""
    probabilities = np.array([[0.1, 0.8, 0.1], [0.1, 0.7, 0.2]], np.float32)
    rule = DecisionRule.from_manifest({"decision": {"outside": OUTSIDE} if outside else {}})
    return Prediction(model=MODEL, labels=LABELS, probabilities=probabilities, starts=np.array([0.0, 3.0]),
                      segment_seconds=3.0, duration=6.0, file="x.wav", warnings=[],
                      extras={"tags": np.array([tags, tags], np.float32)}, extra_labels={"tags": TAGS},
                      rule=rule, rms=0.1)


def _record(path: bytes, prediction: Prediction) -> dict:
    return record_from_prediction(prediction, path=path, model_hash="0" * 16, precision="float32", size=1,
                                  mtime_ns=1, fp="f" * 32, seconds=0.1)


def test_a_prediction_outside_the_genres_is_stored_with_its_state_and_read_back(tmp_path):
    electronic, sure = _prediction([0.5, 0.9, 0.1]), _prediction([0.5, 0.1, 0.1])
    assert electronic.verdict.state == "outside" and sure.verdict.state == "genre"  # the fixture does what it says
    with LibraryStore(tmp_path / "lib.sqlite") as store:
        store.put(_record(b"/music/electronic.wav", electronic))
        store.put(_record(b"/music/rock.wav", sure))
        row = store.get(b"/music/electronic.wav", MODEL)
        assert (row["state"], row["outside_kind"], row["sounds_like"]) == ("outside", "music", ["electronic"])
        assert row["not_sure"] and row["verdict"] == "not one of the three genres: sounds like electronic"
        # the stored rule (with its outside part) rebuilds the very same verdict
        assert load_prediction(row).verdict == electronic.verdict
        plain = store.get(b"/music/rock.wav", MODEL)
        assert (plain["state"], plain["outside_kind"], plain["sounds_like"]) == ("genre", None, [])
        # the outside rule is kept once, however many rows carry it, and each row only names it
        store.put(_record(b"/music/house.wav", _prediction([0.5, 0.8, 0.1])))
        assert store.db.execute("SELECT count(*) FROM outside_rules").fetchone()[0] == 1
        stored = [json.loads(r[0]) for r in store.db.execute("SELECT rule FROM results WHERE rule LIKE '%ref%'")]
        assert len(stored) == 3 and all(set(r["outside"]) == {"ref"} for r in stored)
        assert load_prediction(store.get(b"/music/house.wav", MODEL)).verdict.state == "outside"


def _v1_database(path: Path, rows: list[dict]) -> None:
    """A database exactly as version 1 made it: no state, outside_kind or sounds_like columns."""
    old = _SCHEMA
    for column in ("state", "outside_kind", "sounds_like"):
        old = old.replace(f"    {column} TEXT,\n", "")
    assert "state" not in old
    columns = [c for c in COLUMNS if c not in ("state", "outside_kind", "sounds_like")]
    db = sqlite3.connect(path)
    db.executescript(f"BEGIN; {old} INSERT INTO meta VALUES ('schema_version', '1'); COMMIT;")
    for row in rows:
        values = [json.dumps(row.get(c)) if c in JSON_COLUMNS and row.get(c) is not None else row.get(c)
                  for c in columns]
        db.execute(f"INSERT INTO results ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", values)
    db.commit()
    db.close()


def test_an_old_database_is_read_as_it_is_and_migrated_when_opened_for_writing(tmp_path):
    db = tmp_path / "old.sqlite"
    outside = _record(b"/music/electronic.wav", _prediction([0.5, 0.9, 0.1]))
    unsure = _record(b"/music/quiet.wav", _prediction([0.5, 0.1, 0.1], outside=False))
    unsure.update(not_sure=1, verdict="not sure: rock or jazz")
    sure = _record(b"/music/rock.wav", _prediction([0.5, 0.1, 0.1], outside=False))
    broken = dict.fromkeys(COLUMNS)
    broken.update(path=b"/music/broken.mp3", path_text="/music/broken.mp3", model=MODEL, model_hash="0" * 16,
                  precision="float32", size=0, mtime_ns=0, fingerprint="", status="error", error="empty",
                  scanned_at=time.time())
    _v1_database(db, [outside, unsure, sure, broken])
    before = db.read_bytes()

    # read-only (the app, export): nothing is changed, and the state reads from not_sure
    with LibraryStore(db, readonly=True) as store:
        states = {row["path_text"]: row["state"] for row in store.rows(MODEL)}
        assert store.get(b"/music/electronic.wav", MODEL)["sounds_like"] == []
        assert export(store, tmp_path / "old.csv") == 4
    assert states == {"/music/electronic.wav": "not_sure", "/music/quiet.wav": "not_sure",
                      "/music/rock.wav": "genre", "/music/broken.mp3": None}
    assert db.read_bytes() == before

    # read-write (a scan, tag): migrated once, each answer's state worked out again from what it stored
    with LibraryStore(db) as store:
        rows = {row["path_text"]: row for row in store.rows(MODEL)}
        assert store.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "2"
    assert (rows["/music/electronic.wav"]["state"], rows["/music/electronic.wav"]["outside_kind"],
            rows["/music/electronic.wav"]["sounds_like"]) == ("outside", "music", ["electronic"])
    assert [rows[p]["state"] for p in ("/music/quiet.wav", "/music/rock.wav", "/music/broken.mp3")] == \
        ["not_sure", "genre", None]
    with LibraryStore(db) as store:  # and opened again, it is simply version 2
        store.put(_record(b"/music/new.wav", _prediction([0.5, 0.1, 0.1])))
        assert store.count() == 5 and SCHEMA_VERSION == 2


def test_a_newer_database_is_refused_in_plain_words(tmp_path):
    from codeFeature.collection.store import LibraryError

    db = tmp_path / "new.sqlite"
    with LibraryStore(db):
        pass
    with sqlite3.connect(db) as raw:
        raw.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    with pytest.raises(LibraryError, match="schema version 3"):
        LibraryStore(db)


def test_export_carries_the_state_in_every_format(tmp_path):
    pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    db = tmp_path / "lib.sqlite"
    with LibraryStore(db) as store:
        store.put(_record(b"/music/electronic.wav", _prediction([0.5, 0.9, 0.1])))
        store.put(_record(b"/music/rock.wav", _prediction([0.5, 0.1, 0.1])))
        for name in ("out.csv", "out.jsonl", "out.parquet"):
            assert export(store, tmp_path / name) == 2
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as handle:
        csv_rows = {r["path"]: r for r in csv.DictReader(handle)}
    assert (csv_rows["/music/electronic.wav"]["state"], csv_rows["/music/electronic.wav"]["outside_kind"],
            csv_rows["/music/electronic.wav"]["sounds_like"]) == ("outside", "music", "electronic")
    assert csv_rows["/music/rock.wav"]["state"] == "genre"
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert {r["path"]: r["state"] for r in lines} == {"/music/electronic.wav": "outside", "/music/rock.wav": "genre"}
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    assert {r["path"]: (r["state"], r["sounds_like"]) for r in table} == {
        "/music/electronic.wav": ("outside", "electronic"), "/music/rock.wav": ("genre", "")}
    # written whole: no temporary file is left beside the outputs
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_tag_never_writes_a_genre_for_an_outside_song_unless_asked(tmp_path):
    from codeFeature.cli import main
    from codeFeature.collection.store import fingerprint
    from tests.codeFeature.collection.test_tags import _mp3

    folder = tmp_path / "music"
    folder.mkdir()
    electronic, unsure = _mp3(folder / "electronic.mp3"), _mp3(folder / "unsure.mp3")
    db = tmp_path / "lib.sqlite"
    with LibraryStore(db) as store:
        for path, prediction in ((electronic, _prediction([0.5, 0.9, 0.1])),
                                 (unsure, _prediction([0.5, 0.1, 0.1], outside=False))):
            record = _record(os.fsencode(path), prediction)
            info = path.stat()
            record.update(size=info.st_size, mtime_ns=info.st_mtime_ns, fingerprint=fingerprint(path))
            if path == unsure:
                record.update(not_sure=1, state="not_sure", verdict="not sure: rock or jazz")
            store.put(record)
        plan = {Path(c.path).name: c for c in apply_tags(store, model=MODEL, include_not_sure=True)}
        assert plan["electronic.mp3"].action == "skip" and "--include-outside" in plan["electronic.mp3"].note
        assert plan["unsure.mp3"].action == "write"
    # --include-not-sure is not enough: an outside song's "genre" is only the nearest of genres it is not in
    assert main(["tag", "--db", str(db), "--write", "--include-not-sure"]) == 0
    assert read_genre(electronic, "id3") is None and read_genre(unsure, "id3") == ["Rock"]
    assert main(["tag", "--db", str(db), "--write", "--include-outside"]) == 0
    assert read_genre(electronic, "id3") == ["Rock"]


def _strict_musicnn(tmp_path: Path) -> Path:
    """The shipped musicnn model with an outside rule that always fires (no music tag can reach 100 %)."""
    from codeFeature import model_io

    folder = tmp_path / "models" / "strict"
    shutil.copytree(model_io.resolve_model_dir("musicnn_genre"), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    tags = list(manifest["extra_outputs"][0]["labels"])
    manifest["name"] = "strict"
    manifest["decision"]["outside"] = {"tags": tags, "mean": [0.0] * len(tags), "scale": [1.0] * len(tags),
                                       "centroids": [[0.0] * len(tags)], "music_tags": [tags[0]], "min_music": 1.0,
                                       "not_music": {"speech": [5.0] * len(tags)}, "source": "a test's rule"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_a_real_model_whose_outside_rule_fires_reaches_the_scan_the_export_and_the_cli(tmp_path):
    """End to end, as a person runs it: the CLI's JSON and table, a scan, an export, a tag dry run."""
    model = _strict_musicnn(tmp_path)
    music = tmp_path / "music"
    music.mkdir()
    song = write_audio(music / "song.flac", chord(4.0))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "codeFeature", *map(str, args)], capture_output=True,
                              text=True, cwd=REPO, env=env, timeout=600)

    as_json = cli(song, "--model", model, "--json", "--precision", "float32")
    assert as_json.returncode == 0, as_json.stderr[-2000:]
    record = json.loads(as_json.stdout)
    assert (record["state"], record["outside_kind"], record["sounds_like"]) == ("outside", "not music", ["speech"])
    assert record["verdict"] == "not music: sounds like speech" and record["not_sure"]
    table = cli(song, "--model", model, "--precision", "float32")
    assert table.returncode == 0 and "not music: sounds like speech" in table.stdout.splitlines()[1]

    db = tmp_path / "lib.sqlite"
    scanned = cli("scan", music, "--db", db, "--model", model, "--precision", "float32", "--quiet")
    assert scanned.returncode == 0, scanned.stderr[-2000:]
    with LibraryStore(db, readonly=True) as store:
        row = store.get(song, "strict")
    assert (row["state"], row["outside_kind"], row["sounds_like"]) == ("outside", "not music", ["speech"])
    assert row["verdict"] == record["verdict"]
    assert row["confidence"] == pytest.approx(record["confidence"], abs=5e-5)  # the JSON rounds to four places
    exported = cli("export", "--db", db, tmp_path / "out.csv")
    assert exported.returncode == 0, exported.stderr
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as handle:
        (line,) = list(csv.DictReader(handle))
    assert (line["state"], line["outside_kind"], line["sounds_like"]) == ("outside", "not music", "speech")
    dry = cli("tag", "--db", db, "--include-not-sure")
    assert dry.returncode == 0 and "--include-outside" in dry.stdout and "0 files would change" in dry.stderr
