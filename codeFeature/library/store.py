"""The library database: one SQLite file, one row per (file, model), written one finished file at a time.

Durability: the database runs in WAL mode with ``synchronous=FULL`` and every finished file is
one transaction, so a ``kill -9`` or a power cut loses at most the file being classified, never a
finished row, and never leaves the database corrupt (SQLite's journal rolls an unfinished
transaction back on the next open).

Paths are stored as the exact bytes the file system gave (``os.fsencode``), so names in any
encoding round-trip; ``path_text`` is a readable form for tables and exports, with bytes that
are not UTF-8 shown as ``\\xNN``.

Tables (``SCHEMA_VERSION`` 1):

``meta(key, value)``
    ``schema_version``, and when the database was created.
``roots(root, root_text, scanned_at)``
    Every folder (or single file) a scan was started on, as absolute path bytes: the app plays
    and decodes only files inside one of them (:mod:`.serve`). Created by the first scan that
    records its root, so a database scanned before it existed has none.
``results``
    Primary key ``(path, model)``. What was classified (``size``, ``mtime_ns``, ``fingerprint``),
    by what (``model``, ``model_hash`` = sha256 of its ``manifest.json``, ``precision``), and the
    answer: ``status`` ``"ok"`` with the verdict (``genre``, ``confidence``, ``vote_share``,
    ``not_sure``, ``verdict``, ``reasons``, ``top``, ``rule``), ``duration``, ``rms``, ``labels``,
    the mean ``probabilities``, ``top_tags``, ``warnings`` and the per-segment evidence
    (``segments``: a NumPy ``.npz`` blob of ``starts``, ``probabilities`` and any extra outputs
    such as musicnn's 50 tags); or ``status`` ``"error"`` with the readable ``error``.
``tag_changes``
    Every tag written by ``python -m codeFeature tag --write``, with the values it replaced, so
    ``tag --undo`` can put them back.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

SCHEMA_VERSION = 1

#: Bytes read from each end of a file for its fingerprint.
FINGERPRINT_EDGE = 1 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    path BLOB NOT NULL,
    path_text TEXT NOT NULL,
    model TEXT NOT NULL,
    model_hash TEXT NOT NULL,
    precision TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    error TEXT,
    duration REAL,
    rms REAL,
    genre TEXT,
    confidence REAL,
    vote_share REAL,
    not_sure INTEGER,
    verdict TEXT,
    reasons TEXT,
    top TEXT,
    rule TEXT,
    labels TEXT,
    probabilities TEXT,
    top_tags TEXT,
    warnings TEXT,
    segment_seconds REAL,
    n_segments INTEGER,
    segments BLOB,
    extra_labels TEXT,
    seconds REAL,
    scanned_at REAL NOT NULL,
    PRIMARY KEY (path, model)
);
CREATE INDEX IF NOT EXISTS results_model_genre ON results (model, genre);
CREATE TABLE IF NOT EXISTS tag_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path BLOB NOT NULL,
    path_text TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT NOT NULL,
    written_at REAL NOT NULL,
    undone_at REAL
);
"""

#: The ``roots`` table (see :meth:`LibraryStore.add_root`).
_ROOTS_SCHEMA = ("CREATE TABLE IF NOT EXISTS roots "
                 "(root BLOB PRIMARY KEY, root_text TEXT NOT NULL, scanned_at REAL NOT NULL)")

#: The columns of ``results``, in table order.
COLUMNS = ("path", "path_text", "model", "model_hash", "precision", "size", "mtime_ns", "fingerprint", "status",
           "error", "duration", "rms", "genre", "confidence", "vote_share", "not_sure", "verdict", "reasons", "top",
           "rule", "labels", "probabilities", "top_tags", "warnings", "segment_seconds", "n_segments", "segments",
           "extra_labels", "seconds", "scanned_at")
#: Columns holding JSON text.
JSON_COLUMNS = ("reasons", "top", "rule", "labels", "probabilities", "top_tags", "warnings", "extra_labels")


class LibraryError(Exception):
    """A database that cannot be used (not SQLite, a newer schema, unwritable)."""


def path_bytes(path: str | bytes | os.PathLike) -> bytes:
    """The exact file-system bytes of ``path`` (names in any encoding survive)."""
    return os.fsencode(path)


def readable(path: bytes) -> str:
    """``path`` for people: UTF-8, with bytes that are not UTF-8 shown as ``\\xNN``."""
    return path.decode("utf-8", "backslashreplace")


def clean_text(text: str) -> str:
    """``text`` safe to store and print: a file name that is not UTF-8 shows its odd bytes as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def fingerprint(path: str | bytes | os.PathLike, size: Optional[int] = None) -> str:
    """A content fingerprint: blake2b of the size and the first and last MiB.

    Why that is enough: it is a change detector beside size and mtime, not a content identity.
    Audio files change at their ends: tag editors rewrite the ID3v2 / Vorbis / MP4 metadata at
    the start or the ID3v1 / APE tag at the end, and a re-encode or a truncated copy changes the
    size. Reading 2 MiB at most keeps a rescan of thousands of files at page-cache speed (the
    whole file for songs under 2 MiB). A change that keeps the size, the mtime and both ends
    (an edit in the middle of a large file with its mtime set back) goes unseen; rescan such a
    file by touching it.

    Parameters
    ----------
    path : path-like or bytes
    size : int, optional
        The file's size if already known from ``stat``.

    Returns
    -------
    str
        32 hex digits.

    Raises
    ------
    OSError
        If the file cannot be read.
    """
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        if size is None:
            size = os.fstat(handle.fileno()).st_size
        digest.update(size.to_bytes(8, "little"))
        digest.update(handle.read(FINGERPRINT_EDGE))
        if size > 2 * FINGERPRINT_EDGE:
            handle.seek(size - FINGERPRINT_EDGE)
            digest.update(handle.read(FINGERPRINT_EDGE))
        elif size > FINGERPRINT_EDGE:
            digest.update(handle.read())
    return digest.hexdigest()


def manifest_hash(model_dir: str | os.PathLike) -> str:
    """sha256 (16 hex digits) of a model folder's ``manifest.json``: a retrained model is a new model."""
    return hashlib.sha256((Path(model_dir) / "manifest.json").read_bytes()).hexdigest()[:16]


def pack_segments(starts: np.ndarray, probabilities: np.ndarray, extras: dict) -> bytes:
    """Per-segment evidence as one ``.npz`` blob (float64 starts, float32 probabilities and extras)."""
    buffer = io.BytesIO()
    arrays = {"starts": np.asarray(starts, np.float64), "probabilities": np.asarray(probabilities, np.float32)}
    arrays.update({f"extra_{name}": np.asarray(value, np.float32) for name, value in extras.items()})
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def unpack_segments(blob: bytes) -> tuple[np.ndarray, np.ndarray, dict]:
    """The inverse of :func:`pack_segments`: ``(starts, probabilities, extras)``."""
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        extras = {key[len("extra_"):]: data[key] for key in data.files if key.startswith("extra_")}
        return data["starts"], data["probabilities"], extras


def record_from_prediction(prediction, *, path: bytes, model_hash: str, precision: str, size: int, mtime_ns: int,
                           fp: str, seconds: float) -> dict:
    """A ``results`` row for a classified file; the answer is the prediction's :attr:`verdict`."""
    verdict = prediction.verdict
    tags = prediction.top_tags(5)
    return {
        "path": path, "path_text": readable(path), "model": prediction.model, "model_hash": model_hash,
        "precision": precision, "size": size, "mtime_ns": mtime_ns, "fingerprint": fp, "status": "ok",
        "error": None, "duration": float(prediction.duration),
        "rms": None if prediction.rms is None else float(prediction.rms),
        "genre": verdict.genre, "confidence": float(verdict.confidence), "vote_share": float(verdict.vote_share),
        "not_sure": int(verdict.not_sure), "verdict": verdict.headline, "reasons": list(verdict.reasons),
        "top": [[name, float(p)] for name, p in verdict.top], "rule": verdict.rule.to_dict(),
        "labels": list(prediction.labels),
        "probabilities": [float(p) for p in prediction.mean_probabilities],
        "top_tags": [[tag, float(p)] for tag, p in tags], "warnings": [clean_text(w) for w in prediction.warnings],
        "segment_seconds": float(prediction.segment_seconds), "n_segments": int(len(prediction.starts)),
        "segments": pack_segments(prediction.starts, prediction.probabilities, prediction.extras),
        "extra_labels": {name: list(labels) for name, labels in prediction.extra_labels.items()},
        "seconds": float(seconds), "scanned_at": time.time(),
    }


def error_record(*, path: bytes, model: str, model_hash: str, precision: str, size: int, mtime_ns: int, fp: str,
                 error: str, seconds: float = 0.0) -> dict:
    """A ``results`` row for a file that could not be classified."""
    row = dict.fromkeys(COLUMNS)
    row.update(path=path, path_text=readable(path), model=model, model_hash=model_hash, precision=precision,
               size=size, mtime_ns=mtime_ns, fingerprint=fp, status="error", error=clean_text(error), seconds=float(seconds),
               scanned_at=time.time())
    return row


def load_prediction(row: dict):
    """Rebuild the :class:`~codeFeature.predict.Prediction` a stored ``ok`` row came from.

    Its probabilities, starts, extras, rule and RMS are the stored ones, so its
    :attr:`~codeFeature.predict.Prediction.verdict` is the stored answer; timings are empty
    (nothing was computed now).

    Parameters
    ----------
    row : dict
        A row from :meth:`LibraryStore.rows` or :meth:`LibraryStore.get`.

    Raises
    ------
    ValueError
        If the row is an error row (there is nothing to rebuild).
    """
    from ..decision import DecisionRule
    from ..predict import Prediction

    if row.get("status") != "ok":
        raise ValueError(f"{row.get('path_text')!r} has no stored result: {row.get('error')}")
    starts, probabilities, extras = unpack_segments(row["segments"])
    extra_labels = {name: tuple(labels) for name, labels in (row.get("extra_labels") or {}).items()}
    rule = DecisionRule(**row["rule"]) if row.get("rule") else DecisionRule()
    return Prediction(model=row["model"], labels=tuple(row["labels"]), probabilities=probabilities, starts=starts,
                      segment_seconds=float(row["segment_seconds"]), duration=float(row["duration"]),
                      file=row["path_text"], timings={}, warnings=list(row.get("warnings") or []), extras=extras,
                      extra_labels=extra_labels, rule=rule, rms=row.get("rms"))


class LibraryStore:
    """The library database at ``path`` (created on first use).

    Parameters
    ----------
    path : path-like
        The SQLite file; ``-wal`` and ``-shm`` files appear beside it while it is open.
    readonly : bool
        Open without creating or changing anything (the app).

    Raises
    ------
    LibraryError
        If the file is not a library database or has a newer schema.
    """

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False):
        self.path = Path(path)
        try:
            if readonly:
                if not self.path.is_file():
                    raise LibraryError(f"{self.path} does not exist; scan a folder into it first "
                                       "(python -m codeFeature scan FOLDER --db ...)")
                self.db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(str(self.path), timeout=30)
                self.db.execute("PRAGMA journal_mode=WAL")
                # FULL: a commit is on disk before it returns, so power loss keeps every finished file
                self.db.execute("PRAGMA synchronous=FULL")
            self.db.row_factory = sqlite3.Row
            self._check_schema(readonly)
        except sqlite3.DatabaseError as exc:
            raise LibraryError(f"{self.path} is not a library database ({exc})") from exc

    def _check_schema(self, readonly: bool) -> None:
        has_meta = self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if has_meta:
            found = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(found[0]) if found else 0
            if version != SCHEMA_VERSION:
                raise LibraryError(f"{self.path} has schema version {version}; this version of codeFeature "
                                   f"reads version {SCHEMA_VERSION}")
            return
        if readonly:
            raise LibraryError(f"{self.path} is not a library database (no meta table)")
        others = self.db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
        if others:
            raise LibraryError(f"{self.path} is an SQLite database of something else; give a new file name")
        # one transaction: a kill during creation leaves no half-made schema behind
        self.db.executescript(f"BEGIN; {_SCHEMA} INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}'); "
                              f"INSERT INTO meta VALUES ('created_at', '{time.time()}'); COMMIT;")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "LibraryStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------ writing

    def put(self, record: dict) -> None:
        """Store one file's row (replacing that file's row for the same model) in its own transaction."""
        values = [json.dumps(record.get(c)) if c in JSON_COLUMNS and record.get(c) is not None else record.get(c)
                  for c in COLUMNS]
        with self.db:
            self.db.execute(f"INSERT OR REPLACE INTO results ({', '.join(COLUMNS)}) "
                            f"VALUES ({', '.join('?' * len(COLUMNS))})", values)

    def update_stat(self, path: bytes, *, size: int, mtime_ns: int, fp: str) -> None:
        """Record a file's new size, mtime and fingerprint after a change that left its audio alone
        (a tag write), so the next scan does not classify it again."""
        with self.db:
            self.db.execute("UPDATE results SET size=?, mtime_ns=?, fingerprint=? WHERE path=?",
                            (size, mtime_ns, fp, path))

    def forget(self, paths: Iterable[bytes]) -> int:
        """Delete every model's row of ``paths`` (and their tag history), in one transaction; returns rows deleted."""
        paths = [bytes(p) for p in paths]
        with self.db:
            deleted = 0
            for chunk in iter_chunks(paths, 500):
                marks = ", ".join("?" * len(chunk))
                deleted += self.db.execute(f"DELETE FROM results WHERE path IN ({marks})", chunk).rowcount
                self.db.execute(f"DELETE FROM tag_changes WHERE path IN ({marks})", chunk)
        return deleted

    def paths_under(self, folder: bytes) -> set[bytes]:
        """The stored paths (any model) that lie under ``folder`` (an absolute path), or equal it."""
        folder = folder.rstrip(b"/") or b"/"
        prefix = folder if folder.endswith(b"/") else folder + b"/"
        return {bytes(r[0]) for r in self.db.execute("SELECT DISTINCT path FROM results")
                if bytes(r[0]) == folder or bytes(r[0]).startswith(prefix)}

    # ------------------------------------------------------------ reading

    def known(self, model: str) -> dict[bytes, tuple]:
        """``{path: (size, mtime_ns, fingerprint, model_hash, precision, status)}`` for ``model``'s rows."""
        cursor = self.db.execute("SELECT path, size, mtime_ns, fingerprint, model_hash, precision, status "
                                 "FROM results WHERE model=?", (model,))
        return {bytes(r[0]): tuple(r[1:]) for r in cursor}

    def models(self) -> list[tuple[str, int]]:
        """``[(model, rows)]``, most rows first."""
        return [tuple(r) for r in self.db.execute(
            "SELECT model, count(*) FROM results GROUP BY model ORDER BY count(*) DESC, model")]

    def count(self, model: Optional[str] = None) -> int:
        if model is None:
            return self.db.execute("SELECT count(*) FROM results").fetchone()[0]
        return self.db.execute("SELECT count(*) FROM results WHERE model=?", (model,)).fetchone()[0]

    def rows(self, model: Optional[str] = None, *, with_segments: bool = True) -> Iterator[dict]:
        """Every row (of ``model``, if given), ordered by path, with JSON columns parsed."""
        columns = COLUMNS if with_segments else tuple(c for c in COLUMNS if c != "segments")
        sql = f"SELECT {', '.join(columns)} FROM results"
        args: tuple = ()
        if model is not None:
            sql += " WHERE model=?"
            args = (model,)
        for row in self.db.execute(sql + " ORDER BY path, model", args):
            yield _parse(row)

    def get(self, path: str | bytes | os.PathLike, model: str) -> Optional[dict]:
        row = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM results WHERE path=? AND model=?",
                              (path_bytes(path), model)).fetchone()
        return _parse(row) if row is not None else None

    def pick_model(self, model: Optional[str]) -> str:
        """``model`` if the database has rows for it; with ``None``, the only model, or the default
        model if it is one of several.

        Raises
        ------
        LibraryError
            If there are no rows, or several models and none was chosen.
        """
        found = [name for name, _ in self.models()]
        if model is not None:
            if model not in found:
                raise LibraryError(f"{self.path} has no results of model {model!r}; it has: "
                                   + (", ".join(found) or "none"))
            return model
        if not found:
            raise LibraryError(f"{self.path} holds no results yet; scan a folder first")
        if len(found) == 1:
            return found[0]
        from ..model_io import default_model_name

        default = default_model_name()
        if default in found:
            return default
        raise LibraryError(f"{self.path} holds results of several models ({', '.join(found)}); choose one with --model")

    # ------------------------------------------------------------ tag history

    def add_tag_change(self, *, path: bytes, model: str, kind: str, old_value, new_value: str) -> None:
        with self.db:
            self.db.execute("INSERT INTO tag_changes (path, path_text, model, kind, old_value, new_value, written_at) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (path, readable(path), model, kind, json.dumps(old_value), new_value, time.time()))

    def pending_undo(self) -> list[dict]:
        """The tag writes not yet undone, newest first."""
        cursor = self.db.execute("SELECT id, path, path_text, model, kind, old_value, new_value FROM tag_changes "
                                 "WHERE undone_at IS NULL ORDER BY id DESC")
        return [{"id": r[0], "path": bytes(r[1]), "path_text": r[2], "model": r[3], "kind": r[4],
                 "old_value": json.loads(r[5]), "new_value": r[6]} for r in cursor]

    def mark_undone(self, change_id: int) -> None:
        with self.db:
            self.db.execute("UPDATE tag_changes SET undone_at=? WHERE id=?", (time.time(), change_id))

    # ------------------------------------------------------------ scanned roots
    # Kept apart from the schema above: the table is created by the first scan that records a root, so a
    # database made before it existed opens unchanged (same schema version) and simply has no roots.

    def add_root(self, root: bytes) -> None:
        """Record that a scan was started on ``root`` (absolute path bytes, as the scan names its files)."""
        with self.db:
            self.db.execute(_ROOTS_SCHEMA)
            self.db.execute("INSERT OR REPLACE INTO roots (root, root_text, scanned_at) VALUES (?, ?, ?)",
                            (bytes(root), readable(bytes(root)), time.time()))

    def roots(self) -> list[bytes]:
        """The roots scans were started on, sorted; empty for a database scanned before roots were recorded."""
        if not self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='roots'").fetchone():
            return []
        return sorted(bytes(r[0]) for r in self.db.execute("SELECT root FROM roots"))


def _parse(row: sqlite3.Row) -> dict:
    out = dict(row)
    out["path"] = bytes(out["path"])
    for column in JSON_COLUMNS:
        if out.get(column) is not None:
            out[column] = json.loads(out[column])
    if out.get("not_sure") is not None:
        out["not_sure"] = bool(out["not_sure"])
    return out


def iter_chunks(items: Iterable, size: int) -> Iterator[list]:
    """``items`` in lists of ``size``."""
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
