"""The Library page, driven headlessly through ``streamlit.testing.v1.AppTest``: open a database, filter,
open a file's analysis from its stored row (nothing is classified again).

The page shows only the databases the server was started with (``--library`` after ``--``, or
``CODEFEATURE_LIBRARY``); tests/codeFeature/collection/test_library_hostile.py tries to make it show anything else.
"""

from __future__ import annotations

import os
import sys

import pytest

from codeFeature import settings
from codeFeature.collection.classify import ModelSpec
from codeFeature.collection.scan import scan
from codeFeature.collection.store import LibraryStore
from tests.conftest import REPO

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

PAGE = str(REPO / "webapp" / "library.py")


@pytest.fixture(scope="module")
def library(audio_dir, tiny_model_dir, tiny_model, tmp_path_factory):
    db = tmp_path_factory.mktemp("library") / "lib.sqlite"
    with LibraryStore(db) as store:
        scan(audio_dir, store, ModelSpec.resolve(str(tiny_model_dir), "float32"), jobs=2, model=tiny_model,
             progress=False)
        rows = {r["path_text"]: r for r in store.rows(with_segments=False)}
    return db, rows


def serve_libraries(monkeypatch, *dbs, argv=()):
    """Start the page as ``streamlit run app.py -- ARGV`` with ``CODEFEATURE_LIBRARY`` naming ``dbs``."""
    monkeypatch.setattr(sys, "argv", ["app.py", *argv])
    if dbs:
        monkeypatch.setenv("CODEFEATURE_LIBRARY", os.pathsep.join(str(d) for d in dbs))
    else:
        monkeypatch.delenv("CODEFEATURE_LIBRARY", raising=False)
    settings.reload()  # the server's environment, read again after the test changed it


def _metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def test_library_page_counts_filters_and_opens_a_stored_analysis(library, monkeypatch):
    from codeFeature import predict

    def no_classifying(*args, **kwargs):
        raise AssertionError("the Library page must not classify")

    monkeypatch.setattr(predict, "predict_file", no_classifying)
    monkeypatch.setattr(predict, "predict_audio", no_classifying)
    db, rows = library
    serve_libraries(monkeypatch, db)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception
    errors = sum(r["status"] == "error" for r in rows.values())
    assert _metric(at, "Files") == str(len(rows)) and _metric(at, "Errors") == str(errors)
    at.selectbox(key="lib_show").set_value("errors only").run()
    count = next(c.value for c in at.caption if c.value.endswith("to open its analysis."))
    assert count.startswith(f"{errors} of {len(rows)} files")
    at.selectbox(key="lib_show").set_value("everything").run()
    flac = next(p for p in rows if p.endswith("chord.flac"))
    options = at.selectbox(key="lib_open").options  # shown as paths; the values are the table's row numbers
    at.selectbox(key="lib_open").set_value(options.index(flac)).run()
    assert not at.exception
    genre = rows[flac]["genre"]
    shown = [m.value for m in at.metric]
    assert any(genre.lower() in str(v).lower() for v in shown), shown
    assert not at.warning, [w.value for w in at.warning]  # played: it lies inside the scanned root, unchanged
    assert at.get("audio"), "the player is missing"


def test_library_page_without_a_configured_library_says_how_to_start_one(monkeypatch):
    serve_libraries(monkeypatch)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception
    assert any("streamlit run app.py -- --library" in i.value and "CODEFEATURE_LIBRARY" in i.value for i in at.info)
    assert not at.text_input and not at.selectbox  # nothing to type a path into


def test_library_page_reads_the_command_line_and_offers_only_those(library, tmp_path, monkeypatch):
    db, rows = library
    other = tmp_path / "second.sqlite"
    with LibraryStore(other):
        pass
    serve_libraries(monkeypatch, argv=["--library", str(db), f"--library={other}", "--unrelated"])
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception
    assert at.selectbox(key="lib_db").options == [f"lib.sqlite ({db.parent})", f"second.sqlite ({tmp_path})"]
    assert _metric(at, "Files") == str(len(rows))
    at.selectbox(key="lib_db").set_value(str(other)).run()
    assert not at.exception and any("library is empty" in i.value for i in at.info)


def test_library_page_says_plainly_when_the_file_is_not_a_library(tmp_path, monkeypatch):
    bogus = tmp_path / "notes.sqlite"
    bogus.write_text("not a database" * 200)
    serve_libraries(monkeypatch, bogus)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception and any("not a library database" in i.value for i in at.info)
    # a configured path that is missing: the person who started the server named it, so it may say so
    serve_libraries(monkeypatch, tmp_path / "missing.sqlite")
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception and any("does not exist" in i.value for i in at.info)


def test_library_page_shows_and_filters_the_verdict_state(tmp_path, monkeypatch):
    """Songs outside the model's genres: counted apart, named "outside the three" in the table, kept by the
    "outside only" filter and left out of the others (rows made from synthetic predictions, no model)."""
    from tests.codeFeature.collection.test_collection_outside import _prediction, _record

    db = tmp_path / "lib.sqlite"
    made = {"/m/electronic.wav": _prediction([0.5, 0.9, 0.1]), "/m/house.wav": _prediction([0.5, 0.8, 0.1]),
            "/m/rock.wav": _prediction([0.5, 0.1, 0.1])}
    with LibraryStore(db) as store:
        for path, prediction in made.items():
            store.put(_record(path.encode(), prediction))
        unsure = _record(b"/m/unsure.wav", _prediction([0.5, 0.1, 0.1], outside=False))
        unsure.update(not_sure=1, state="not_sure", verdict="not sure: rock or jazz")
        store.put(unsure)
    serve_libraries(monkeypatch, db)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception
    assert (_metric(at, "Files"), _metric(at, "Not sure"), _metric(at, "Outside")) == ("4", "1", "2")
    table = at.dataframe[0].value
    assert dict(zip(table["file"], table["state"])) == {"electronic.wav": "outside the three",
                                                       "house.wav": "outside the three", "rock.wav": "genre",
                                                       "unsure.wav": "not sure"}
    for show, files in (("outside only", {"electronic.wav", "house.wav"}), ("not sure only", {"unsure.wav"}),
                        ("sure only", {"rock.wav"})):
        at.selectbox(key="lib_show").set_value(show).run()
        assert set(at.dataframe[0].value["file"]) == files, show
