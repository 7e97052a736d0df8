"""The library database: one SQLite file, one row per (file, model), written one finished file at a time.

Durability: the database runs in WAL mode with ``synchronous=FULL`` and every finished file is
one transaction, so a ``kill -9`` or a power cut loses at most the file being classified, never a
finished row, and never leaves the database corrupt (SQLite's journal rolls an unfinished
transaction back on the next open).

Paths are stored as the exact bytes the file system gave (``os.fsencode``), so names in any
encoding round-trip; ``path_text`` is a readable form for tables and exports, with bytes that
are not UTF-8 shown as ``\\xNN``.

Tables (``SCHEMA_VERSION`` 2):

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
    ``not_sure``, ``state``, ``outside_kind``, ``sounds_like``, ``verdict``, ``reasons``, ``top``,
    ``rule``), ``duration``, ``rms``, ``labels``,
    the mean ``probabilities``, ``top_tags``, ``warnings`` and the per-segment evidence
    (``segments``: a NumPy ``.npz`` blob of ``starts``, ``probabilities`` and any extra outputs
    such as musicnn's 50 tags); or ``status`` ``"error"`` with the readable ``error``. ``state`` is
    the verdict's :attr:`~codeFeature.decision.Verdict.state` (``"genre"``, ``"not_sure"`` or
    ``"outside"``; NULL on error rows), ``outside_kind`` ``"music"`` or ``"not music"`` when outside,
    ``sounds_like`` a JSON list of words.
``outside_rules(key, rule)``
    The outside part of the models' decision rules (:class:`~codeFeature.decision.OutsideRule`, some 20 KB
    of JSON for musicnn's 50 tags), kept once: a row's ``rule`` names it as ``{"outside": {"ref": key}}``,
    ``key`` being the first 16 hex digits of the sha256 of its JSON; reading a row puts it back.
    A version 1 row keeps its rule whole, which reads the same.
``tag_changes``
    Left from earlier versions (value-only tag history); no longer written.
``tag_writes``
    The tag journal (see :data:`TAG_SCHEMA`), created the first time ``tag`` runs.

Older databases: a version 1 database (before ``state``, ``outside_kind`` and ``sounds_like``) opened
for writing gains the three columns in one transaction (:meth:`LibraryStore._migrate`), each row's
state worked out again from what it stored; opened read-only (the app, ``export``) it is left as it
is and read with the state derived from ``not_sure`` (a version 1 row that was outside reads as
"not_sure", hedged as it was shown when it was stored).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import stat
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

from ..errors import GenreError

SCHEMA_VERSION = 2
#: Versions this code opens: older ones are migrated (read-write) or read as they are (read-only).
READABLE_VERSIONS = (1, 2)

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
    state TEXT,
    outside_kind TEXT,
    sounds_like TEXT,
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
CREATE TABLE IF NOT EXISTS outside_rules (key TEXT PRIMARY KEY, rule TEXT NOT NULL);
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
           "error", "duration", "rms", "genre", "confidence", "vote_share", "not_sure", "state", "outside_kind",
           "sounds_like", "verdict", "reasons", "top", "rule", "labels", "probabilities", "top_tags", "warnings",
           "segment_seconds", "n_segments", "segments", "extra_labels", "seconds", "scanned_at")
#: Columns holding JSON text.
JSON_COLUMNS = ("sounds_like", "reasons", "top", "rule", "labels", "probabilities", "top_tags", "warnings",
                "extra_labels")
#: The columns version 2 added, as a version 1 database is read without them (read-only: not migrated).
_V1_READ = {"state": "CASE WHEN status = 'ok' THEN CASE WHEN not_sure THEN 'not_sure' ELSE 'genre' END END",
            "outside_kind": "NULL", "sounds_like": "NULL"}


class LibraryError(GenreError):
    """A database that cannot be used (not SQLite, a newer schema, unwritable)."""


class DatabaseBusyError(LibraryError):
    """Another program kept the database locked for longer than the wait."""


class DamagedDatabaseError(LibraryError):
    """The database failed SQLite's quick integrity check; it was left as it is."""


class NoStoredResultError(LibraryError, ValueError):
    """An error row has no prediction to rebuild (a ValueError too, as it was before it had a name)."""


#: Seconds a command waits for another program's write to the database to end before giving up.
DEFAULT_WAIT = 30.0


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
        If the file cannot be read; :class:`~codeFeature.errors.NotRegularFileError` if it is not a
        regular file.
    """
    from ..regular_file import open_regular

    digest = hashlib.blake2b(digest_size=16)
    # a pipe or a device under an audio name (or a file swapped for one) is refused, not read for ever
    with os.fdopen(open_regular(path, name=os.path.basename(os.fsdecode(path))), "rb") as handle:
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
        "not_sure": int(verdict.not_sure), "state": verdict.state, "outside_kind": verdict.outside_kind,
        "sounds_like": list(verdict.sounds_like), "verdict": verdict.headline, "reasons": list(verdict.reasons),
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
    :attr:`~codeFeature.predict.Prediction.verdict` is the stored answer.

    Parameters
    ----------
    row : dict
        A row from :meth:`LibraryStore.rows` or :meth:`LibraryStore.get`.

    Raises
    ------
    NoStoredResultError
        If the row is an error row (there is nothing to rebuild).
    """
    from ..decision import DecisionRule
    from ..predict import Prediction

    if row.get("status") != "ok":
        raise NoStoredResultError(f"{row.get('path_text')!r} has no stored result: {row.get('error')}")
    starts, probabilities, extras = unpack_segments(row["segments"])
    extra_labels = {name: tuple(labels) for name, labels in (row.get("extra_labels") or {}).items()}
    # from_manifest, not DecisionRule(**...): the stored rule's "outside" part is a dict to be parsed
    rule = DecisionRule.from_manifest({"decision": row["rule"]}) if row.get("rule") else DecisionRule()
    return Prediction(model=row["model"], labels=tuple(row["labels"]), probabilities=probabilities, starts=starts,
                      segment_seconds=float(row["segment_seconds"]), duration=float(row["duration"]),
                      file=row["path_text"], warnings=list(row.get("warnings") or []), extras=extras,
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

    def __init__(self, path: str | os.PathLike, *, readonly: bool = False, wait: float = DEFAULT_WAIT,
                 check: bool = True):
        self.path = Path(path)
        self.wait = float(wait)
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            info = None
        except OSError as exc:
            raise LibraryError(f"{self.path} cannot be opened: {exc.strerror or exc}") from exc
        if info is not None and not stat.S_ISREG(info.st_mode):
            # SQLite would open a named pipe and wait on it for ever
            from ..regular_file import file_kind

            raise LibraryError(f"{self.path} is not a database file ({file_kind(info.st_mode)})")
        if readonly and info is None:
            raise LibraryError(f"{self.path} does not exist; scan a folder into it first "
                               "(python -m codeFeature scan FOLDER --db ...)")
        if info is not None and check:
            self._quick_check()
        self.db = None
        try:
            if readonly:
                self.db = sqlite3.connect(self._read_only_uri(), uri=True, timeout=self.wait)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.db = sqlite3.connect(str(self.path), timeout=self.wait)
                # a write takes the lock before its first statement, where SQLite waits for it (up to
                # ``wait``); a transaction that reads first and then finds another writer fails at once
                self.db.isolation_level = "IMMEDIATE"
                self.db.execute("PRAGMA journal_mode=WAL")
                # FULL: a commit is on disk before it returns, so power loss keeps every finished file
                self.db.execute("PRAGMA synchronous=FULL")
            self.db.row_factory = sqlite3.Row
            self._check_schema(readonly)
        except (sqlite3.DatabaseError, LibraryError) as exc:
            if self.db is not None:
                self.db.close()
            if isinstance(exc, LibraryError):
                raise
            raise self.explain(exc) from exc

    def _read_only_uri(self) -> str:
        return f"{self.path.resolve().as_uri()}?mode=ro"

    def _quick_check(self) -> None:
        """Refuse a damaged database before anything writes to it.

        The check runs on a read-only connection, so a damaged file is never changed (a read-write
        connection could checkpoint its WAL into it on closing). ``PRAGMA quick_check`` reads every
        page and checks the b-tree structure, not that indexes match their tables (a full
        ``integrity_check`` would, at several times the cost).
        """
        try:
            db = sqlite3.connect(self._read_only_uri(), uri=True, timeout=self.wait)
        except sqlite3.DatabaseError as exc:
            raise self.explain(exc) from exc
        try:
            found = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
        except sqlite3.DatabaseError as exc:
            raise self.explain(exc) from exc
        finally:
            db.close()
        if found != ["ok"]:
            raise DamagedDatabaseError(self._damaged_message("; ".join(found)))

    def _damaged_message(self, detail: str) -> str:
        return (f"{self.path} is damaged (SQLite's integrity check says: {detail}); it was not used and was "
                "left exactly as it is. Restore it from a backup, or scan the music into a new database file "
                "(the music files themselves are not affected); `sqlite3 DB .recover` may save its rows")

    def explain(self, exc: sqlite3.Error) -> LibraryError:
        """``exc`` from SQLite as a :class:`LibraryError` in plain words: busy, damaged, or not a database.

        A busy database is explained without naming who holds it (that needs every connection of this
        process closed first: see :func:`busy_message`)."""
        text = str(exc)
        if is_busy(exc):
            return DatabaseBusyError(busy_message(self.path, self.wait, holders=False))
        if "malformed" in text or getattr(exc, "sqlite_errorname", "") == "SQLITE_CORRUPT":
            return DamagedDatabaseError(self._damaged_message(text))
        return LibraryError(f"{self.path} is not a library database ({text})")

    def _check_schema(self, readonly: bool) -> None:
        #: How each of COLUMNS is selected: itself, or an expression for a column an older version lacks.
        self._select = {c: c for c in COLUMNS}
        has_meta = self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
        if has_meta:
            found = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(found[0]) if found else 0
            if version not in READABLE_VERSIONS:
                raise LibraryError(f"{self.path} has schema version {version}; this version of codeFeature "
                                   f"reads versions {', '.join(map(str, READABLE_VERSIONS))}")
            if version < SCHEMA_VERSION:
                if readonly:
                    self._select.update(_V1_READ)
                else:
                    self._migrate()
            return
        if readonly:
            raise LibraryError(f"{self.path} is not a library database (no meta table)")
        others = self.db.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]
        if others:
            raise LibraryError(f"{self.path} is an SQLite database of something else; give a new file name")
        # one transaction: a kill during creation leaves no half-made schema behind
        self.db.executescript(f"BEGIN; {_SCHEMA} INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}'); "
                              f"INSERT INTO meta VALUES ('created_at', '{time.time()}'); COMMIT;")

    def _migrate(self) -> None:
        """Version 1 to 2, in one transaction (a kill leaves version 1 as it was): add ``state``,
        ``outside_kind`` and ``sounds_like``, and fill them for every stored answer.

        Each answer's verdict is worked out again from what the row stored (its probabilities, tags, rule
        and level: :func:`load_prediction`), so a row whose rule had an outside part gets its real state;
        a row that cannot be rebuilt gets the state its ``not_sure`` says."""
        # an explicit transaction: ALTER TABLE would otherwise commit on its own
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self._migrate_v1()
        except BaseException:
            self.db.rollback()
            raise
        self.db.commit()

    def _migrate_v1(self) -> None:
        found = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if found is not None and int(found[0]) >= 2:  # another program migrated it while we waited
            return
        self.db.execute("CREATE TABLE IF NOT EXISTS outside_rules (key TEXT PRIMARY KEY, rule TEXT NOT NULL)")
        present = {r[1] for r in self.db.execute("PRAGMA table_info(results)")}
        for column in ("state", "outside_kind", "sounds_like"):
            if column not in present:
                self.db.execute(f"ALTER TABLE results ADD COLUMN {column} TEXT")
        self.db.execute(f"UPDATE results SET state = ({_V1_READ['state']})")
        outside = self.db.execute(f"SELECT {', '.join(COLUMNS)} FROM results WHERE status = 'ok' "
                                  "AND rule LIKE '%\"outside\"%'").fetchall()
        for row in outside:
            parsed = _parse(row)
            try:
                verdict = load_prediction(parsed).verdict
            except (GenreError, KeyError, TypeError, ValueError):
                continue  # kept as not_sure: hedged, as it was shown
            self.db.execute("UPDATE results SET state=?, outside_kind=?, sounds_like=? WHERE path=? AND model=?",
                            (verdict.state, verdict.outside_kind, json.dumps(list(verdict.sounds_like)),
                             parsed["path"], parsed["model"]))
        self.db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "LibraryStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------ writing

    def put(self, record: dict) -> None:
        """Store one file's row (replacing that file's row for the same model) in its own transaction."""
        record, outside = _outside_by_reference(record)
        values = [json.dumps(record.get(c)) if c in JSON_COLUMNS and record.get(c) is not None else record.get(c)
                  for c in COLUMNS]
        with self.db:
            if outside is not None:
                self.db.execute("INSERT OR IGNORE INTO outside_rules (key, rule) VALUES (?, ?)", outside)
            self.db.execute(f"INSERT OR REPLACE INTO results ({', '.join(COLUMNS)}) "
                            f"VALUES ({', '.join('?' * len(COLUMNS))})", values)

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

    def rows(self, model: Optional[str] = None, *, with_segments: bool = True, page: int = 500) -> Iterator[dict]:
        """Every row (of ``model``, if given), ordered by path, with JSON columns parsed.

        Read ``page`` rows at a time, each page its own short read: a caller that writes while it
        iterates (``tag --write``) then holds no read transaction open, which would make SQLite
        refuse its writes at once, without waiting, whenever another program is writing.
        """
        columns = COLUMNS if with_segments else tuple(c for c in COLUMNS if c != "segments")
        selected = ", ".join(c if self._select[c] == c else f"{self._select[c]} AS {c}" for c in columns)
        last: Optional[tuple] = None
        while True:
            conditions, args = [], []
            if model is not None:
                conditions.append("model=?")
                args.append(model)
            if last is not None:
                conditions.append("(path, model) > (?, ?)")
                args.extend(last)
            sql = f"SELECT {selected} FROM results"
            if conditions:
                sql += " WHERE " + " AND ".join(conditions)
            batch = self.db.execute(sql + " ORDER BY path, model LIMIT ?", (*args, page)).fetchall()
            for row in batch:
                yield self._with_outside(_parse(row))
            if len(batch) < page:
                return
            last = (batch[-1]["path"], batch[-1]["model"])

    def get(self, path: str | bytes | os.PathLike, model: str) -> Optional[dict]:
        selected = ", ".join(c if self._select[c] == c else f"{self._select[c]} AS {c}" for c in COLUMNS)
        row = self.db.execute(f"SELECT {selected} FROM results WHERE path=? AND model=?",
                              (path_bytes(path), model)).fetchone()
        return self._with_outside(_parse(row)) if row is not None else None

    def _with_outside(self, row: dict) -> dict:
        """``row`` with its rule's outside part put back in place of the reference :meth:`put` stored."""
        rule = row.get("rule")
        ref = rule.get("outside") if isinstance(rule, dict) else None
        if not isinstance(ref, dict) or set(ref) != {"ref"}:
            return row
        known = self.__dict__.setdefault("_outside_rules", {})
        if ref["ref"] not in known:
            found = self.db.execute("SELECT rule FROM outside_rules WHERE key=?", (ref["ref"],)).fetchone()
            if found is None:
                raise LibraryError(f"{self.path} names a decision rule it does not hold ({ref['ref']}); "
                                   "scan the files again into a new database file")
            known[ref["ref"]] = json.loads(found[0])
        row["rule"] = {**rule, "outside": known[ref["ref"]]}
        return row

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

    def _tag_table(self) -> None:
        """Create ``tag_writes`` on first use (see :data:`TAG_SCHEMA`): a database made before it
        gains the table without a new schema version, and read-only openers never need it."""
        if getattr(self, "_tag_table_ready", False):
            return
        with self.db:
            self.db.executescript(TAG_SCHEMA)
        self._tag_table_ready = True

    def tag_begin(self, *, path: bytes, model: str, kind: str, old_value, new_value, undo: bytes,
                  before: tuple[int, str], after: tuple[int, str], temp: bytes) -> int:
        """Journal a tag write about to be renamed into place (state ``writing``); returns its id.

        ``before`` and ``after`` are ``(size, blake2b)`` of the whole file before and after;
        ``undo`` rebuilds the first from the second (:func:`~.tags.make_undo`)."""
        self._tag_table()
        with self.db:
            cursor = self.db.execute(
                "INSERT INTO tag_writes (path, path_text, model, kind, old_value, new_value, undo, size_before, "
                "hash_before, size_after, hash_after, temp, state, written_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'writing', ?)",
                (path, readable(path), model, kind, json.dumps(old_value), json.dumps(new_value), undo, *before,
                 *after, temp, time.time()))
            return int(cursor.lastrowid)

    def tag_state(self, change_id: int, state: str, *, stat: Optional[tuple] = None) -> None:
        """Move a journalled write to ``state`` (``done``, ``undoing``, ``undone``, ``lost``); with
        ``stat = (path, size, mtime_ns, fingerprint)`` update the file's results rows in the same
        transaction, so the database never says a file is tagged while its rows describe the old one."""
        self._tag_table()
        with self.db:
            self.db.execute("UPDATE tag_writes SET state=?, undone_at=CASE WHEN ?='undone' THEN ? ELSE undone_at END "
                            "WHERE id=?", (state, state, time.time(), change_id))
            if stat is not None:
                path, size, mtime_ns, fp = stat
                self.db.execute("UPDATE results SET size=?, mtime_ns=?, fingerprint=? WHERE path=?",
                                (size, mtime_ns, fp, path))

    def legacy_tag_changes(self) -> list[dict]:
        """Tag writes recorded by versions before the journal (table ``tag_changes``) and not yet undone,
        newest first: they kept the replaced genre values, not the bytes."""
        cursor = self.db.execute("SELECT id, path, path_text, model, kind, old_value, new_value FROM tag_changes "
                                 "WHERE undone_at IS NULL ORDER BY id DESC")
        return [{"id": r[0], "path": bytes(r[1]), "path_text": r[2], "model": r[3], "kind": r[4],
                 "old_value": json.loads(r[5]), "new_value": r[6]} for r in cursor]

    def legacy_tag_undone(self, change_id: int, *, stat: tuple) -> None:
        """Mark a ``tag_changes`` write undone and update the file's rows, in one transaction."""
        path, size, mtime_ns, fp = stat
        with self.db:
            self.db.execute("UPDATE tag_changes SET undone_at=? WHERE id=?", (time.time(), change_id))
            self.db.execute("UPDATE results SET size=?, mtime_ns=?, fingerprint=? WHERE path=?",
                            (size, mtime_ns, fp, path))

    def tag_drop(self, change_id: int) -> None:
        """Forget a journalled write whose rename never happened."""
        self._tag_table()
        with self.db:
            self.db.execute("DELETE FROM tag_writes WHERE id=?", (change_id,))

    def tag_writes(self, *states: str) -> list[dict]:
        """Journalled writes in ``states`` (every state if none), newest first."""
        self._tag_table()
        sql = ("SELECT id, path, path_text, model, kind, old_value, new_value, undo, size_before, hash_before, "
               "size_after, hash_after, temp, state FROM tag_writes")
        args: tuple = ()
        if states:
            sql += f" WHERE state IN ({', '.join('?' * len(states))})"
            args = states
        out = []
        for r in self.db.execute(sql + " ORDER BY id DESC", args):
            row = dict(r)
            row["path"], row["temp"] = bytes(row["path"]), bytes(row["temp"])
            row["old_value"], row["new_value"] = json.loads(row["old_value"]), json.loads(row["new_value"])
            out.append(row)
        return out

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

#: The tag journal, created on first use by the ``tag`` command (kept apart from ``_SCHEMA``).
#: One row per genre write: ``state`` ``writing`` (the new file is ready beside the old one as
#: ``temp``; the rename may or may not have happened), ``done`` (renamed into place), ``undoing``,
#: ``undone``, or ``lost`` (the file was found to be neither the old nor the new bytes). ``undo``
#: is a zlib-compressed recipe that rebuilds the old bytes (``size_before``, ``hash_before``) from
#: the new ones (``size_after``, ``hash_after``); hashes are blake2b of the whole file.
TAG_SCHEMA = """
CREATE TABLE IF NOT EXISTS tag_writes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path BLOB NOT NULL,
    path_text TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT,
    undo BLOB NOT NULL,
    size_before INTEGER NOT NULL,
    hash_before TEXT NOT NULL,
    size_after INTEGER NOT NULL,
    hash_after TEXT NOT NULL,
    temp BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('writing', 'done', 'undoing', 'undone', 'lost')),
    written_at REAL NOT NULL,
    undone_at REAL
);
CREATE INDEX IF NOT EXISTS tag_writes_state ON tag_writes (state);
"""


def _parse(row: sqlite3.Row) -> dict:
    out = dict(row)
    out["path"] = bytes(out["path"])
    for column in JSON_COLUMNS:
        if out.get(column) is not None:
            out[column] = json.loads(out[column])
    if out.get("not_sure") is not None:
        out["not_sure"] = bool(out["not_sure"])
    if out.get("status") == "ok" and out.get("sounds_like") is None and "sounds_like" in out:
        out["sounds_like"] = []  # a version 1 row read without migrating
    return out


def _outside_by_reference(record: dict) -> tuple[dict, Optional[tuple[str, str]]]:
    """``record`` with its rule's outside part replaced by a reference, and ``(key, JSON)`` to store once;
    ``(record, None)`` when the rule has no outside part (or only a reference already)."""
    rule = record.get("rule")
    outside = rule.get("outside") if isinstance(rule, dict) else None
    if not isinstance(outside, dict) or set(outside) == {"ref"}:
        return record, None
    text = json.dumps(outside)  # in its own key order: the order of "not_music" and "music" matters
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    return {**record, "rule": {**rule, "outside": {"ref": key}}}, (key, text)


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


# ------------------------------------------------------------ a locked database

#: Byte offsets of SQLite's locks (its unix VFS: ``os_unix.c``, ``wal.c``): in WAL mode a writer holds
#: ``-shm`` byte 120 (and 121 to checkpoint, 122 to recover); in rollback-journal mode the main file's
#: PENDING (0x40000000) and RESERVED (0x40000001) bytes.
_WAL_WRITER_LOCKS = (120, 3)
_ROLLBACK_WRITER_LOCKS = (0x40000000, 2)


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite's "database is locked" (another connection holds the lock)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return isinstance(exc, sqlite3.OperationalError) and (
        name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc) or "busy" in str(exc))


def busy_message(db: str | os.PathLike, wait: float, *, holders: bool = True) -> str:
    """A locked database in words: who holds it where that can be found, and what to do.

    With ``holders``, the programs holding SQLite's write lock are looked up (Linux): call it only
    once every connection of this process to ``db`` is closed, since looking means opening the
    database's files, and closing them again drops any lock this process holds on them.
    """
    who = ""
    if holders:
        found = lock_holders(db)
        if found:
            who = " (" + "; ".join(found) + ")"
    return (f"another program is writing to {db}{who}, and it was still busy after waiting {wait:g} s; "
            "close that program or try again later (--wait SECONDS waits longer)")


def lock_holders(db: str | os.PathLike) -> list[str]:
    """``["pid 1234: python -m codeFeature scan ..."]``: the processes holding ``db``'s write lock.

    Asked of the kernel with ``F_GETLK`` on the bytes SQLite locks, so it names the writer (not the
    readers). Empty where that cannot be told (not Linux, another PID namespace, the lock already
    gone). Read the warning in :func:`busy_message`.
    """
    if not sys.platform.startswith("linux"):
        return []
    import fcntl
    import struct

    pids = []
    for path, (start, length) in ((f"{os.fspath(db)}-shm", _WAL_WRITER_LOCKS), (os.fspath(db), _ROLLBACK_WRITER_LOCKS)):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            query = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, start, length, 0)
            answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
            kind, _, _, _, pid = struct.unpack("hhqqi4x", answer)
            if kind != fcntl.F_UNLCK and pid > 0 and pid not in pids:
                pids.append(pid)
        except OSError:
            continue
        finally:
            os.close(fd)
    return [f"pid {pid}: {_command_line(pid)}" for pid in pids]


def _command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            words = handle.read(4096).rstrip(b"\0").split(b"\0")
    except OSError:
        return "a program that is no longer there, or that this user cannot see"
    text = " ".join(" ".join(os.fsdecode(w).split()) for w in words if w)
    return clean_text(text[:200] + ("..." if len(text) > 200 else "")) or "unknown"
