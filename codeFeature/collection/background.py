"""Scans started from the app: a background thread owned by the server, one at a time per database.

The Library page reruns its script on every click and each visitor has a session of their own, so a
scan cannot live in a page run. :func:`start_scan` starts it in a thread of the server process and
keeps the job in a registry keyed by the database, where every later page run (of any visitor) finds
it again (:func:`current`) to show its progress, its errors and its summary, or to stop it.

The thread runs exactly what ``python -m codeFeature scan FOLDER --db DB`` runs:
:func:`codeFeature.collection.scan.scan` with the default model (or an installed one the visitor picked),
the model's default precision and the CLI's default number of workers. So the database, the resume
after a stop and the stored results are the CLI's: a scan started in the app and one started in a
terminal can take turns on one database.

What a visitor can do, and no more (anyone who reaches the app's port is a visitor):

* scan only a folder the person who started the server allowed (:func:`.serve.configured_scan_folders`)
  into only a database that person configured (:func:`.serve.configured_libraries`); both are checked
  here again, whatever the page passed. The walk is the CLI's: it follows symbolic links to folders
  below the allowed folder (each folder once), which only someone who can write into that folder can
  create;
* run one scan per database at a time (a second start is refused while one runs);
* stop a running scan (files finished so far are kept; the next scan goes on from there);
* choose only an installed genre model, by name.
"""

from __future__ import annotations

import itertools
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Optional

from ..errors import GenreError
from .serve import configured_libraries, configured_scan_folders
from .store import readable

log = logging.getLogger(__name__)

#: Error rows listed by a job (the rest are counted; the table's "errors only" filter shows them all).
MAX_LISTED_ERRORS = 200
#: How to resume, in the summary of a stopped scan started from the app.
AGAIN = "press Scan again to go on"
#: States a job goes through; the last three are final.
STATES = ("starting", "walking", "classifying", "stopping", "finished", "stopped", "failed")


class ScanRefused(GenreError):
    """A scan was not started; ``str(exc)`` is the message for the visitor."""


@dataclass
class ScanStatus:
    """A snapshot of one job, safe to read while the scan goes on.

    Attributes
    ----------
    state : str
        One of :data:`STATES`.
    total, done, errors : int
        Files to classify (known once the walk and the planning are over), classified so far, and how
        many of those are error rows.
    rate : float or None
        Files per second since the classification began.
    eta : float or None
        Seconds left at that rate.
    error_files : list of (str, str)
        ``(path, error in words)`` for the first :data:`MAX_LISTED_ERRORS` error rows.
    lines : list of str
        The scan's summary in words (the CLI's lines), once it has ended.
    message : str or None
        Why it failed, in words.
    """

    id: int
    db: str
    folder: str
    model: Optional[str]
    prune: bool
    retry_errors: bool
    state: str = "starting"
    total: Optional[int] = None
    done: int = 0
    errors: int = 0
    unchanged: int = 0
    rate: Optional[float] = None
    eta: Optional[float] = None
    started: float = field(default_factory=time.time)
    error_files: list = field(default_factory=list)
    lines: list = field(default_factory=list)
    message: Optional[str] = None

    @property
    def running(self) -> bool:
        return self.state in ("starting", "walking", "classifying", "stopping")


class ScanJob:
    """One scan of ``folder`` into ``db`` in a daemon thread; read it with :meth:`status`."""

    _ids = itertools.count(1)

    def __init__(self, db: str, folder: str, *, model: Optional[str], prune: bool, retry_errors: bool,
                 jobs: Optional[int] = None):
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._jobs = jobs
        self._status = ScanStatus(id=next(self._ids), db=db, folder=folder, model=model, prune=prune,
                                  retry_errors=retry_errors)
        self._t0: Optional[float] = None
        self._thread = threading.Thread(target=self._run, name=f"library-scan-{self._status.id}", daemon=True)

    @property
    def id(self) -> int:
        return self._status.id

    @property
    def running(self) -> bool:
        return self._thread.is_alive() or self.status().running

    def status(self) -> ScanStatus:
        with self._lock:
            return replace(self._status, error_files=list(self._status.error_files), lines=list(self._status.lines))

    def stop(self) -> None:
        """Ask the scan to stop: no new file is started; the files in progress finish and are kept."""
        self._stop.set()
        with self._lock:
            if self._status.running:
                self._status.state = "stopping"

    def join(self, timeout: Optional[float] = None) -> bool:
        """Wait for the thread to end; returns whether it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # ---------------------------------------------------------------- the thread

    def _set(self, **values) -> None:
        with self._lock:
            if self._stop.is_set() and values.get("state") in ("walking", "classifying"):
                values["state"] = "stopping"
            for key, value in values.items():
                setattr(self._status, key, value)

    def _planned(self, summary) -> None:
        self._t0 = time.perf_counter()
        self._set(state="classifying", total=summary.todo, unchanged=summary.unchanged)

    def _record(self, record: dict) -> None:
        elapsed = time.perf_counter() - (self._t0 or time.perf_counter())
        with self._lock:
            status = self._status
            status.done += 1
            if record["status"] == "error":
                status.errors += 1
                if len(status.error_files) < MAX_LISTED_ERRORS:
                    status.error_files.append((readable(bytes(record["path"])), record["error"]))
            status.rate = status.done / elapsed if elapsed > 0 else None
            if status.rate and status.total is not None:
                status.eta = max(status.total - status.done, 0) / status.rate

    def _run(self) -> None:
        from .classify import ModelSpec
        from .scan import scan
        from .store import DEFAULT_WAIT, LibraryError, LibraryStore, busy_message, is_busy

        status = self.status()
        try:
            if not os.path.exists(status.folder):
                raise ScanRefused(f"The folder {status.folder} is not there now (is its drive mounted?); "
                                  "nothing was scanned.")
            self._set(state="walking")
            spec = ModelSpec.resolve(status.model)  # the CLI's default precision for this model and CPU
            with LibraryStore(status.db) as store:
                summary = scan(status.folder, store, spec, jobs=self._jobs, retry_errors=status.retry_errors,
                               prune=status.prune, progress=False, stop=self._stop, on_record=self._record,
                               on_planned=self._planned)
            self._set(state="stopped" if summary.interrupted else "finished", lines=summary.lines(again=AGAIN))
        except ScanRefused as exc:
            self._set(state="failed", message=str(exc))
        except sqlite3.DatabaseError as exc:  # another writer outlasted the wait, mid-scan
            message = busy_message(status.db, DEFAULT_WAIT, holders=False) if is_busy(exc) else \
                f"The library database could not be used ({exc})."
            self._set(state="failed", message=f"{message} The files finished so far are kept.")
        except (GenreError, LibraryError, OSError, ValueError) as exc:
            self._set(state="failed", message=f"The scan could not run: {exc}")
        except Exception:  # never a traceback for the visitor, and the server goes on
            log.exception("unexpected failure scanning %r into %r", status.folder, status.db)
            self._set(state="failed", message="Something unexpected went wrong while scanning; the problem has "
                                              "been logged. The files finished so far are kept.")


_REGISTRY: dict[str, ScanJob] = {}
_REGISTRY_LOCK = threading.Lock()


def current(db: str) -> Optional[ScanJob]:
    """The running scan of ``db``, else the last one this server ran, else None."""
    with _REGISTRY_LOCK:
        return _REGISTRY.get(db)


def start_scan(db: str, folder: str, *, model: Optional[str] = None, prune: bool = False,
               retry_errors: bool = False, jobs: Optional[int] = None,
               libraries: Optional[list[str]] = None, folders: Optional[list[str]] = None) -> ScanJob:
    """Start scanning ``folder`` into ``db`` in the background, as ``python -m codeFeature scan`` would.

    Parameters
    ----------
    db, folder : str
        Must be exactly one of ``libraries`` and one of ``folders``.
    model : str, optional
        An installed genre model's name (:func:`codeFeature.model_io.list_models`); default: the default model.
    prune, retry_errors : bool
        As ``--prune`` and ``--retry-errors``.
    jobs : int, optional
        Workers, as ``--jobs`` (default: the CLI's).
    libraries, folders : list of str, optional
        What the server allows; default :func:`.serve.configured_libraries` and
        :func:`.serve.configured_scan_folders`.

    Raises
    ------
    ScanRefused
        For a library or folder the server does not offer, a model that is not installed, or while a scan
        of ``db`` is running. Messages name nothing the visitor did not pick from the page.
    """
    libraries = configured_libraries() if libraries is None else libraries
    folders = configured_scan_folders() if folders is None else folders
    if not isinstance(db, str) or db not in libraries:
        raise ScanRefused("That library is not one this server offers.")
    if not isinstance(folder, str) or folder not in folders:
        raise ScanRefused("That folder is not one this server may scan.")
    if model is not None:
        from ..model_io import list_models

        if not isinstance(model, str) or model not in list_models(task="genre"):
            raise ScanRefused("That model is not installed on this server.")
    with _REGISTRY_LOCK:
        running = _REGISTRY.get(db)
        if running is not None and running.running:
            raise ScanRefused(f"This library is being scanned already ({running.status().folder}); wait for that "
                              "scan to finish, or stop it, before starting another.")
        job = ScanJob(db, folder, model=model, prune=bool(prune), retry_errors=bool(retry_errors), jobs=jobs)
        _REGISTRY[db] = job
        job._thread.start()
    return job
