"""The library for other tools: CSV, Parquet and JSON lines, and folders of symlinks per genre.

Every format has the same columns: the file (``path``), what classified it, the verdict, one
``p_<genre>`` column per mean probability, and the error for files that failed. ``scanned_at`` is the
time the file was classified, in UTC: ISO 8601 text (``2025-03-01T12:34:56.789Z``) in CSV and JSON
lines, a timestamp with time zone UTC (millisecond precision) in Parquet, which every Parquet reader
shows as a date and time (the database keeps seconds since the epoch). Parquet and
JSON lines also carry the per-segment evidence (``segment_starts``, ``segment_probabilities``);
CSV stays flat (one row per file) for spreadsheets.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

from ..errors import ConfigError
from .store import LibraryStore, unpack_segments

FORMATS = (".csv", ".parquet", ".jsonl")
#: Columns of every export, before the ``p_<genre>`` ones.
#: ``state`` is "genre", "not_sure" or "outside" (:attr:`codeFeature.decision.Verdict.state`), ``outside_kind``
#: "music" or "not music" when outside, ``sounds_like`` its words joined by ", " (empty when none).
BASE_COLUMNS = ("path", "model", "model_hash", "precision", "status", "genre", "confidence", "vote_share",
                "not_sure", "state", "outside_kind", "sounds_like", "verdict", "reasons", "top_tags", "duration",
                "n_segments", "error", "size", "mtime_ns", "fingerprint", "scanned_at")


def flat_rows(store: LibraryStore, *, model: Optional[str] = None, segments: bool = False):
    """The export's rows as dicts (``segments`` adds the per-segment lists)."""
    for row in store.rows(model, with_segments=segments):
        out = {c: row.get(c) for c in BASE_COLUMNS}
        out["path"] = row["path_text"]
        out["scanned_at"] = iso_time(row.get("scanned_at"))
        out["reasons"] = "; ".join(row.get("reasons") or [])
        out["top_tags"] = ", ".join(tag for tag, _ in (row.get("top_tags") or []))
        out["sounds_like"] = ", ".join(row.get("sounds_like") or []) if row["status"] == "ok" else None
        if row["status"] == "ok":
            out.update({f"p_{label}": p for label, p in zip(row["labels"], row["probabilities"])})
        if segments:
            if row["status"] == "ok":
                starts, probabilities, _ = unpack_segments(row["segments"])
                out["segment_starts"] = [float(s) for s in starts]
                out["segment_probabilities"] = probabilities.astype(float).tolist()
            else:
                out["segment_starts"] = out["segment_probabilities"] = None
        yield out


def iso_time(epoch: Optional[float]) -> Optional[str]:
    """Seconds since the epoch as ISO 8601 in UTC to the millisecond, ``Z`` for UTC; None stays None."""
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(float(epoch), tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def export(store: LibraryStore, out: str | os.PathLike, *, model: Optional[str] = None) -> int:
    """Write ``store``'s rows to ``out``, in the format its extension names; returns the row count.

    ``out`` is replaced whole: the rows are written to a temporary file beside it, synced and renamed
    over it.

    Raises
    ------
    ConfigError
        For an extension other than :data:`FORMATS` (a ValueError too).
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"{out}: the export format follows the extension; use one of {', '.join(FORMATS)}")
    rows = list(flat_rows(store, model=model, segments=suffix != ".csv"))
    labels = []
    for row in rows:
        labels += [k for k in row if k.startswith("p_") and k not in labels]
    columns = list(BASE_COLUMNS) + labels + ([] if suffix == ".csv" else ["segment_starts", "segment_probabilities"])
    out.parent.mkdir(parents=True, exist_ok=True)
    with _replacing(out) as temp:
        if suffix == ".csv":
            with open(temp, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
                _sync(handle)
        elif suffix == ".jsonl":
            with open(temp, "w", encoding="utf-8") as handle:
                for row in rows:
                    handle.write(json.dumps({c: row.get(c) for c in columns}) + "\n")
                _sync(handle)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            records = [{c: row.get(c) for c in columns} for row in rows]
            for record in records:
                if record["scanned_at"] is not None:
                    record["scanned_at"] = datetime.fromisoformat(record["scanned_at"].replace("Z", "+00:00"))
            table = pa.Table.from_pylist(records, schema=_schema(labels))
            pq.write_table(table, temp)
            with open(temp, "rb+") as handle:
                _sync(handle)
    return len(rows)


@contextlib.contextmanager
def _replacing(out: Path) -> Iterator[Path]:
    """A temporary file beside ``out`` (beside its target when ``out`` is a symlink, which then keeps
    pointing at the new file), renamed over it once written: an interrupted export never leaves a
    half-written file where the old one was."""
    target = Path(os.path.realpath(out))
    temp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        yield temp
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    with contextlib.suppress(OSError):  # the rename itself on disk (not every file system allows it)
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _sync(handle) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _schema(labels: list[str]):
    import pyarrow as pa

    types = {"confidence": pa.float64(), "vote_share": pa.float64(), "not_sure": pa.bool_(),
             "duration": pa.float64(), "n_segments": pa.int64(), "size": pa.int64(), "mtime_ns": pa.int64(),
             "scanned_at": pa.timestamp("ms", tz="UTC")}
    fields = [pa.field(c, types.get(c, pa.string())) for c in BASE_COLUMNS]
    fields += [pa.field(label, pa.float64()) for label in labels]
    fields += [pa.field("segment_starts", pa.list_(pa.float64())),
               pa.field("segment_probabilities", pa.list_(pa.list_(pa.float64())))]
    return pa.schema(fields)


def by_genre(store: LibraryStore, folder: str | os.PathLike, *, model: str) -> int:
    """Make ``folder/<genre>/`` of symlinks to ``model``'s classified files; returns how many were made.

    The user's files are never moved or copied. Not-sure results go to ``folder/not_sure/``;
    two files of one name get ``name (2).ext``; a run again replaces only the links it made
    (an existing non-symlink is never touched).

    Raises
    ------
    ValueError
        If a genre cannot be a folder name inside ``folder`` (see :func:`check_folder_name`); then
        nothing is made.
    """
    folder = Path(folder)
    # every label first: a label that would leave ``folder`` stops the export before anything is made
    for row in store.rows(model, with_segments=False):
        if row["status"] == "ok" and not row["not_sure"]:
            check_folder_name(row["genre"])
    made = 0
    used: set = set()
    for row in store.rows(model, with_segments=False):
        if row["status"] != "ok":
            continue
        target = row["path"]
        genre_dir = os.path.join(os.fsencode(folder), os.fsencode("not_sure" if row["not_sure"] else row["genre"]))
        os.makedirs(genre_dir, exist_ok=True)
        stem, ext = os.path.splitext(os.path.basename(target))
        link, n = os.path.join(genre_dir, stem + ext), 1
        while link in used or (os.path.lexists(link) and not (os.path.islink(link) and os.readlink(link) == target)):
            n += 1  # taken by another file's link, or a file of the user's (never replaced)
            link = os.path.join(genre_dir, stem + f" ({n})".encode() + ext)
        used.add(link)
        if not os.path.lexists(link):
            os.symlink(target, link)
        made += 1
    return made


#: Longest label used as a folder name, in bytes of UTF-8 (most file systems allow 255).
MAX_FOLDER_NAME = 255


def check_folder_name(label) -> None:
    """Refuse a genre label that cannot be one folder inside the export folder.

    Labels come from a model's manifest, which may have been downloaded: ``../x``, ``/etc``, a
    name with a path separator, NUL or another control character, ``.``, ``..``, an empty or an
    overlong name would place links outside the folder or fail half-way.

    Raises
    ------
    ValueError
        Naming the label and what is wrong with it.
    """
    problem = None
    if not isinstance(label, str) or not label:
        problem = "it is empty"
    elif label in (".", ".."):
        problem = "it names a folder itself, not a folder inside"
    elif "/" in label or "\\" in label or os.sep in label or (os.altsep and os.altsep in label):
        problem = "it holds a path separator, so it would reach another folder"
    elif any(ord(c) < 32 or ord(c) == 127 for c in label):
        problem = "it holds a control character (NUL, newline, ...)"
    elif len(os.fsencode(label)) > MAX_FOLDER_NAME:
        problem = f"it is longer than {MAX_FOLDER_NAME} bytes"
    if problem is not None:
        shown = repr(label[:60] + "..." if isinstance(label, str) and len(label) > 60 else label)
        raise ConfigError(f"the genre label {shown} cannot be a folder name: {problem}; nothing was made "
                         "(the labels come from the model's manifest.json: fix it there and scan again)")
