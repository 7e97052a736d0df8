"""The Library page, driven headlessly through ``streamlit.testing.v1.AppTest``: open a database, filter,
open a file's analysis from its stored row (nothing is classified again)."""

from __future__ import annotations

import pytest

from codeFeature.library.scan import ModelSpec, scan
from codeFeature.library.store import LibraryStore
from tests.conftest import REPO

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

PAGE = str(REPO / "pages" / "2_Library.py")


@pytest.fixture(scope="module")
def library(audio_dir, tiny_model_dir, tiny_model, tmp_path_factory):
    db = tmp_path_factory.mktemp("library") / "lib.sqlite"
    with LibraryStore(db) as store:
        scan(audio_dir, store, ModelSpec.resolve(str(tiny_model_dir), "float32"), jobs=2, model=tiny_model,
             progress=False)
        rows = {r["path_text"]: r for r in store.rows(with_segments=False)}
    return db, rows


def _metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def test_library_page_counts_filters_and_opens_a_stored_analysis(library, monkeypatch):
    from codeFeature import predict

    def no_classifying(*args, **kwargs):
        raise AssertionError("the Library page must not classify")

    monkeypatch.setattr(predict, "predict_file", no_classifying)
    monkeypatch.setattr(predict, "predict_audio", no_classifying)
    db, rows = library
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception
    at.text_input(key="lib_db").set_value(str(db)).run()
    assert not at.exception
    errors = sum(r["status"] == "error" for r in rows.values())
    assert _metric(at, "Files") == str(len(rows)) and _metric(at, "Errors") == str(errors)
    at.selectbox(key="lib_show").set_value("errors only").run()
    assert "of" in at.caption[0].value and at.caption[0].value.startswith(f"{errors} of {len(rows)}")
    at.selectbox(key="lib_show").set_value("everything").run()
    flac = next(p for p in rows if p.endswith("chord.flac"))
    options = at.selectbox(key="lib_open").options  # shown as paths; the values are the table's row numbers
    at.selectbox(key="lib_open").set_value(options.index(flac)).run()
    assert not at.exception
    genre = rows[flac]["genre"]
    shown = [m.value for m in at.metric]
    assert any(genre.lower() in str(v).lower() for v in shown), shown


def test_library_page_says_plainly_when_the_file_is_not_a_library(tmp_path):
    bogus = tmp_path / "notes.sqlite"
    bogus.write_text("not a database" * 200)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    at.text_input(key="lib_db").set_value(str(bogus)).run()
    assert not at.exception and any("not a library database" in i.value for i in at.info)
    at.text_input(key="lib_db").set_value(str(tmp_path / "missing.sqlite")).run()
    assert not at.exception and any("does not exist" in i.value for i in at.info)
