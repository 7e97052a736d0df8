"""Library: scan the allowed folders, browse the collection, hear any file, open its analysis from the stored results.

A page of the multipage app started by ``streamlit run app.py -- --library DATABASE [--scan-folder FOLDER]``.
UI only: the database is written by a scan (``python -m codeFeature scan``, or the same scan started here
and run by :mod:`codeFeature.collection.background` in a thread of the server); the page itself only reads
it. A file's analysis is rebuilt from its stored row (:func:`codeFeature.collection.store.load_prediction`),
never classified again. The audio is decoded only for the pictures and the player.

A visitor never names a path: the databases are the ones the server was started with
(:func:`codeFeature.collection.serve.configured_libraries`), the folders a visitor may scan are the ones it
was started with (:func:`codeFeature.collection.serve.configured_scan_folders`), and a file's bytes come only
from :func:`codeFeature.collection.serve.read_scanned` (inside a scanned root, unchanged since the scan).
"""

from __future__ import annotations

import logging
import os

from codeFeature.runtime import prepare_process  # noqa: E402  (before TensorFlow and librosa)

prepare_process()

import pandas as pd
import streamlit as st

from codeFeature import GenreError, load_audio
from codeFeature.config import FeatureConfig
from codeFeature.collection import background
from codeFeature.collection.serve import (NO_ROOTS, NotServable, configured_libraries, configured_scan_folders,
                                       read_scanned)
from codeFeature.collection.store import LibraryError, LibraryStore, load_prediction
from codeFeature.model_io import default_model_name, list_models, read_manifest, resolve_model_dir
from webapp import charts, components

log = logging.getLogger("app.library")
#: Files longer than this are shown without the decoded pictures (decoding hours of audio for a plot is slow).
PICTURE_MAX_SECONDS = 20 * 60
#: Files larger than this are neither sent to the browser's player nor decoded for the pictures.
PLAYER_MAX_BYTES = 200 * 1024 * 1024
HOW_TO_START = ("No library was given to this app. Whoever starts the server chooses the libraries it shows and "
                "the folders this page may scan: start the app with `streamlit run app.py -- --library "
                "library.sqlite --scan-folder ~/Music` (repeat either option for several), or set "
                "`CODEFEATURE_LIBRARY` and `CODEFEATURE_SCAN_FOLDERS` (several separated by `" + os.pathsep + "`). "
                "A folder can also be scanned in a terminal: `python -m codeFeature scan FOLDER --db library.sqlite`.")
HOW_TO_ALLOW_SCANS = ("Scanning from this page is off: whoever starts the server chooses the folders it may scan, "
                      "with `--scan-folder FOLDER` after `--` (repeatable) or `CODEFEATURE_SCAN_FOLDERS`. Meanwhile, "
                      "scan in a terminal: `python -m codeFeature scan FOLDER --db DATABASE`.")
#: Error rows listed under a finished scan (all of them are in the table: "errors only").
ERRORS_SHOWN = 50
_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                 "twelve")
#: The "Show" filter: its options, and the verdict state each keeps (None: no state filter).
SHOW = {"everything": None, "sure only": "genre", "not sure only": "not_sure", "outside only": "outside",
        "errors only": None}


def state_words(state, n_labels: int) -> str | None:
    """A stored verdict state as the table shows it: "genre", "not sure" or "outside the ten" (the model's
    number of genres in words); None for an error row."""
    if state is None:
        return None
    if state == "outside":
        return f"outside the {_NUMBER_WORDS[n_labels] if n_labels < len(_NUMBER_WORDS) else n_labels}"
    return state.replace("_", " ")


def _stamp(path: str) -> tuple:
    """Changes whenever a scan writes: the cache key of the table."""
    out = []
    for suffix in ("", "-wal"):
        try:
            info = os.stat(path + suffix)
            out.append((info.st_size, info.st_mtime_ns))
        except OSError:
            out.append(None)
    return tuple(out)


@st.cache_data(show_spinner="Reading the library…", max_entries=4)
def load_table(path: str, model: str, stamp: tuple) -> pd.DataFrame:
    with LibraryStore(path, readonly=True) as store:
        rows = list(store.rows(model, with_segments=False))
    table = pd.DataFrame({
        "file": [os.path.basename(r["path_text"]) for r in rows],
        "folder": [os.path.dirname(r["path_text"]) for r in rows],
        "genre": [r["genre"] if r["status"] == "ok" else None for r in rows],
        "confidence": [r["confidence"] for r in rows],
        "state": [state_words(r["state"], len(r["labels"] or ())) if r["status"] == "ok" else None for r in rows],
        "verdict": [r["verdict"] if r["status"] == "ok" else "error" for r in rows],
        "_state": [r["state"] if r["status"] == "ok" else None for r in rows],
        "seconds": [r["duration"] for r in rows],
        "top tags": [", ".join(t for t, _ in (r["top_tags"] or [])[:3]) for r in rows],
        "error": [r["error"] for r in rows],
        "path": [r["path_text"] for r in rows],
        "_raw": [r["path"] for r in rows],  # the exact bytes, for names that are not UTF-8
    })
    return table


@st.cache_data(show_spinner=False, max_entries=4)
def models_in(path: str, stamp: tuple) -> list[tuple[str, int]]:
    with LibraryStore(path, readonly=True) as store:
        return store.models()


def model_config(name: str):
    """The stored model's feature config, when the model is still installed (for the pictures).

    Only an installed model's name is looked up: a name stored in a database is never taken as a folder.
    """
    if name not in list_models():
        return None
    try:
        return FeatureConfig.from_dict(read_manifest(resolve_model_dir(name))["feature_config"])
    except (GenreError, KeyError):
        return None


def genre_chart(table: pd.DataFrame):
    import altair as alt

    # a song outside the genres is in none of them: its nearest genre is not counted as one of its files
    ok = table[table["genre"].notna() & (table["_state"] != "outside")]
    counts = ok.groupby(["genre", "_state"]).size().reset_index(name="files")
    counts["answer"] = counts["_state"].map({"genre": "sure", "not_sure": "not sure"})
    return alt.Chart(counts).mark_bar().encode(
        # whole files only: without these the axis of a small library reads 0.5, 1.5
        x=alt.X("files:Q", title="files", axis=alt.Axis(tickMinStep=1, format="d")),
        y=alt.Y("genre:N", sort="-x", title=None, axis=alt.Axis(labelOverlap=False)),
        color=alt.Color("genre:N", scale=charts.genre_colour_scale(), legend=None),
        opacity=alt.Opacity("answer:N", scale=alt.Scale(domain=["sure", "not sure"], range=[1.0, 0.4]),
                            legend=alt.Legend(title=None, orient="bottom")),
        tooltip=["genre", "answer", "files"],
    ).properties(height=max(160, 26 * counts["genre"].nunique()), title="Files per genre (faded: not sure)")


def filters(table: pd.DataFrame) -> pd.DataFrame:
    left, middle, right = st.columns([2, 2, 1])
    with left:
        query = st.text_input("Search file names", key="lib_query", placeholder="part of a name or folder")
    with middle:
        genres = st.multiselect("Genres", sorted(table["genre"].dropna().unique()), key="lib_genres")
    with right:
        show = st.selectbox("Show", list(SHOW), key="lib_show",
                            help="sure: one genre; not sure: the evidence is too weak to name one; outside: the "
                                 "model hears music outside its genres, or no music")
    min_conf = st.slider("Minimum confidence", 0.0, 1.0, 0.0, 0.05, key="lib_conf",
                         help="The winning genre's probability averaged over the song's segments.")
    shown = table
    if query:
        shown = shown[shown["path"].str.contains(query, case=False, regex=False)]
    if genres:
        shown = shown[shown["genre"].isin(genres)]
    if SHOW.get(show) is not None:
        shown = shown[shown["_state"] == SHOW[show]]
    elif show == "errors only":
        shown = shown[shown["error"].notna()]
    if min_conf > 0:
        shown = shown[shown["confidence"].fillna(0) >= min_conf]
    return shown


def show_file(db: str, model: str, raw_path: bytes) -> None:
    with LibraryStore(db, readonly=True) as store:
        row = store.get(raw_path, model)
        roots = store.roots()
    if row is None:
        st.warning("That file is no longer in the library.")
        return
    st.subheader(os.path.basename(row["path_text"]))
    st.caption(f"{row['path_text']} · classified by {row['model']} (manifest {row['model_hash']}, "
               f"{row['precision']})")
    if row["status"] != "ok":
        st.error(f"This file could not be classified: {row['error']}")
        return
    prediction = load_prediction(row)
    audio_bytes = samples = None
    config = model_config(row["model"])
    try:
        if not roots:
            raise NotServable(NO_ROOTS)
        # the only read of the file: inside a scanned root, never through a symlink, unchanged since the scan
        audio_bytes = read_scanned(row, roots, max_bytes=PLAYER_MAX_BYTES)
        if audio_bytes is None:
            st.info(f"This file is larger than {PLAYER_MAX_BYTES // 2 ** 20} MB, so it is neither played nor "
                    "decoded here; showing the stored results only.")
        elif config is not None and prediction.duration <= PICTURE_MAX_SECONDS:
            # decoded for the pictures and the close-up only (from the checked bytes): the answer is the stored one
            samples = load_audio(audio_bytes, sample_rate=config.sample_rate,
                                 filename=os.path.basename(row["path_text"])).samples
    except NotServable as exc:
        st.warning(str(exc))
    except GenreError as exc:
        st.info(f"The file no longer decodes ({exc}); showing the stored results only.")
    components.show_analysis(prediction, audio_bytes=audio_bytes, key="library", samples=samples,
                             sample_rate=config.sample_rate if config else None, config=config)


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60}:{seconds % 60:02d}"


SCAN_STATE_WORDS = {"starting": "Starting the scan…", "walking": "Looking through the folder and loading the model…",
                    "classifying": "Classifying", "stopping": "Stopping: the files in progress are finishing…"}


def scan_progress(db: str) -> None:
    """The running (or last) scan of ``db``: progress, Stop, then its summary and errors in words."""
    job = background.current(db)
    if job is None:
        return
    status = job.status()
    if status.running:
        st.session_state["lib_scan_watching"] = status.id
        words = SCAN_STATE_WORDS[status.state]
        if status.total is None:
            st.progress(0.0, text=f"{words} ({status.folder})")
        else:
            fraction = status.done / status.total if status.total else 1.0
            text = f"{words}: {status.done} / {status.total} files"
            if status.rate:
                text += f", {status.rate:.2f} files/s, about {_clock(status.eta)} left"
            if status.errors:
                text += f", {status.errors} could not be classified"
            st.progress(min(fraction, 1.0), text=text)
        if status.state != "stopping" and st.button("Stop", key="lib_scan_stop",
                                                    help="No new file is started; the files being classified "
                                                         "finish and are kept. Scan again to go on."):
            job.stop()
            st.caption(SCAN_STATE_WORDS["stopping"])
        return
    if st.session_state.pop("lib_scan_watching", None) == status.id:
        st.rerun()  # the scan has just ended: the whole page again, so the table shows the new rows
    if status.state == "failed":
        st.error(status.message)
    elif status.state == "stopped":
        st.warning(f"The scan of {status.folder} was stopped; the files finished so far are kept.")
    else:
        st.success(f"The scan of {status.folder} is finished.")
    if not (status.lines or status.error_files):
        return
    with st.expander("What the last scan did", expanded=False):
        _scan_details(status)


def _scan_details(status) -> None:
    if status.lines:
        st.text("\n".join(status.lines))
    if status.error_files:
        st.caption(f"{status.errors} file(s) could not be classified"
                   + (f"; the first {ERRORS_SHOWN} are listed" if len(status.error_files) > ERRORS_SHOWN else "")
                   + " (the table's “errors only” shows them all):")
        st.dataframe(pd.DataFrame(status.error_files[:ERRORS_SHOWN], columns=["file", "why"]), hide_index=True,
                     width="stretch", key="lib_scan_errors")


def scan_panel(db: str) -> None:
    """Scan, rescan or prune one of the folders the server allows, into ``db``, in the background."""
    folders = configured_scan_folders()
    if not folders:
        st.caption(HOW_TO_ALLOW_SCANS)
        return
    job = background.current(db)
    running = job is not None and job.running
    with st.expander("Scan a folder into this library", expanded=running):
        # drawn the same way during a scan too: a widget left out of a run, or disabled, loses the visitor's choice
        if st.session_state.get("lib_scan_folder") not in folders:
            st.session_state.pop("lib_scan_folder", None)  # only a folder this server offers
        folder = st.selectbox("Folder", folders, key="lib_scan_folder",
                              help="The folders whoever started this server allowed.")
        models = list_models(task="genre")
        default = default_model_name()
        if st.session_state.get("lib_scan_model") not in models:
            st.session_state.pop("lib_scan_model", None)
        model = st.selectbox("Model", models, index=models.index(default) if default in models else 0,
                             key="lib_scan_model", help="The model that classifies the files.") \
            if len(models) > 1 else (models[0] if models else None)
        prune = st.checkbox("Forget the files that are no longer on disk", key="lib_scan_prune",
                            help="Removes the stored results of files under this folder that were deleted or "
                                 "moved (never when the folder holds no audio at all: an unplugged drive "
                                 "looks like that).")
        retry = st.checkbox("Try again the files that failed before", key="lib_scan_retry")
        st.caption("Only new and changed files are classified; a scan that is stopped goes on where it "
                   "stopped. The same scan as `python -m codeFeature scan FOLDER --db DATABASE`.")
        if st.button("Scan", key="lib_scan_start", type="primary", disabled=running):
            try:
                # the values are checked again there: a widget can hand back a value that only looks offered
                background.start_scan(db, folder, model=model, prune=prune, retry_errors=retry)
            except background.ScanRefused as exc:
                st.warning(str(exc))
            else:
                st.rerun()
    # outside the expander, so that progress and the outcome show without opening it; refreshed every
    # second while a scan runs, without rerunning the whole page
    st.fragment(scan_progress, run_every=1.0 if running else None)(db)


def choose_library() -> str | None:
    """The database to show: one of those the server was started with, never a path from the visitor."""
    allowed = configured_libraries()
    if not allowed:
        st.info(HOW_TO_START)
        return None
    if st.session_state.get("lib_db") not in allowed:
        st.session_state.pop("lib_db", None)  # whatever was there is not a choice this server offers
    if len(allowed) == 1:
        db = allowed[0]
        st.caption(f"Library: `{db}`")
    else:
        labels = {path: f"{os.path.basename(path)} ({os.path.dirname(path)})" for path in allowed}
        db = st.selectbox("Library", allowed, key="lib_db", format_func=lambda p: labels.get(p, "?"),
                          help="The libraries this server was started with.")
    # checked again after the widget: a select box can hand back a value that only looks like an option
    return db if db in allowed else None


def main() -> None:
    st.title("Library")
    st.write("A music collection scanned into a database, here or with `python -m codeFeature scan FOLDER --db "
             "library.sqlite`: every file's genre, how sure the model is, and any file's full analysis from the "
             "stored results.")
    db = choose_library()
    if db is None:
        return
    scan_panel(db)
    stamp = _stamp(db)
    try:
        models = models_in(db, stamp)
    except LibraryError as exc:
        job = background.current(db)
        if job is not None and job.running:  # a first scan is creating the database at this very moment
            st.info("A scan is filling this library; its files appear here when the scan ends.")
        else:
            st.info(str(exc))
        return
    if not models:
        st.info("The library is empty: scan a folder into it first"
                + (" (above)." if configured_scan_folders() else "."))
        return
    names = [name for name, _ in models]
    model = st.selectbox("Model", names, key="lib_model",
                         help="A library can hold several models' results side by side.") if len(names) > 1 \
        else names[0]
    table = load_table(db, model, stamp)
    ok = table["genre"].notna()
    cols = st.columns(5)
    cols[0].metric("Files", len(table))
    cols[1].metric("Classified", int(ok.sum()))
    cols[2].metric("Not sure", int((table["_state"] == "not_sure").sum()))
    cols[3].metric("Outside", int((table["_state"] == "outside").sum()),
                   help="Songs the model places outside its genres (other music, or not music)")
    cols[4].metric("Errors", int((~ok).sum()))
    if (ok & (table["_state"] != "outside")).any():
        chart = genre_chart(table)
        st.altair_chart(chart, width="stretch", height=chart.height + 90)  # Streamlit shrinks it otherwise
    shown = filters(table)
    st.caption(f"{len(shown)} of {len(table)} files. Click a column to sort, a row to open its analysis.")
    event = st.dataframe(
        shown.drop(columns=["path", "_raw", "_state"]), key="lib_table", hide_index=True, width="stretch", height=360,
        on_select="rerun", selection_mode="single-row",
        column_config={
            "confidence": st.column_config.ProgressColumn("confidence", min_value=0.0, max_value=1.0,
                                                          format="percent"),
            "seconds": st.column_config.NumberColumn("seconds", format="%.0f"),
            "state": st.column_config.TextColumn("state", help="genre, not sure, or outside the model's genres"),
        })
    rows = event.selection.rows if event is not None else []
    chosen = st.selectbox("Open a file", list(shown.index), index=None, format_func=lambda i: table.at[i, "path"],
                          key="lib_open", placeholder="choose a file, or click a row above")
    index = shown.index[rows[0]] if rows and rows[0] < len(shown) else chosen
    if index is not None:
        try:
            show_file(db, model, table.at[index, "_raw"])
        except LibraryError as exc:
            st.error(str(exc))
        except Exception:  # never a traceback for the visitor
            log.exception("unexpected failure showing %r", table.at[index, "path"])
            st.error("Something unexpected went wrong showing that file; the problem has been logged.")


main()
