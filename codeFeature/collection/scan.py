"""A scan: walk a folder (:mod:`.walk`), decide what needs classifying, hand it to a runner
(:mod:`.local_runner` or :mod:`.ray_runner`, each classifying with :mod:`.classify`) and store each
file as it finishes (:mod:`.store`); the summary in words.

A file is skipped when its row for the same model (same name and manifest hash, same
precision) has the same size, mtime and :func:`~.store.fingerprint`; errors are skipped too
unless ``retry_errors``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from ..errors import ConfigError, GenreError
from .classify import ModelSpec
from .local_runner import run_local
from .store import LibraryStore, fingerprint
from .walk import Found, WalkStats, database_files, walk

#: Where the files are classified: worker threads or processes on this machine, or a Ray cluster.
RUNNERS = ("local", "ray")


class Stopped(GenreError):
    """The scan's ``stop`` flag was set before the classification began."""


def plan(found: Iterable[Found], store: LibraryStore, spec: ModelSpec, *, retry_errors: bool = False,
         counts: Optional[dict] = None, stop: Optional[threading.Event] = None) -> list[Found]:
    """The files that need classifying: new, changed, classified by another version of the model,
    or failed before (with ``retry_errors``).

    Raises
    ------
    Stopped
        When ``stop`` is set (checked before each file: each one may be read for its fingerprint).
    """
    counts = counts if counts is not None else {}
    counts.setdefault("unchanged", 0)
    counts.setdefault("errors_kept", 0)
    known = store.known(spec.name)
    todo = []
    for item in found:
        if stop is not None and stop.is_set():
            raise Stopped
        row = known.get(item.path)
        if row is not None and row[0] == item.size and row[1] == item.mtime_ns and row[3] == spec.model_hash \
                and row[4] == spec.precision:
            status = row[5]
            if status == "error" and retry_errors:
                todo.append(item)
                continue
            if item.problem is None:
                try:
                    same = fingerprint(item.path, item.size) == row[2]
                except OSError:
                    same = False
                if not same:
                    todo.append(item)
                    continue
            counts["unchanged" if status == "ok" else "errors_kept"] += 1
            continue
        todo.append(item)
    return todo


# ------------------------------------------------------------------ progress

class Progress:
    """A tqdm bar with rate and ETA on a terminal; a plain line every ``every`` seconds otherwise."""

    def __init__(self, total: int, *, stream=None, every: float = 10.0, enabled: bool = True):
        self.total, self.done, self.errors = total, 0, 0
        self.stream = stream if stream is not None else sys.stderr
        self.every, self.enabled = every, enabled
        self.t0 = self.last = time.perf_counter()
        self.bar = None
        if enabled and total and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="file", file=self.stream, dynamic_ncols=True, smoothing=0.1)

    def update(self, record: dict) -> None:
        self.done += 1
        self.errors += record["status"] == "error"
        if self.bar is not None:
            self.bar.update(1)
            if self.errors:
                self.bar.set_postfix(errors=self.errors, refresh=False)
            return
        now = time.perf_counter()
        if self.enabled and (now - self.last >= self.every or self.done == self.total):
            self.last = now
            rate = self.done / max(now - self.t0, 1e-9)
            eta = (self.total - self.done) / rate if rate else float("inf")
            print(f"scan: {self.done}/{self.total} files, {rate:.1f} files/s, ETA {_clock(eta)}, "
                  f"{self.errors} errors", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _clock(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def plural(n: int, one: str, many: Optional[str] = None) -> str:
    """``"1 folder"``, ``"2 folders"``, ``"0 folders"``."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


@dataclass
class ScanSummary:
    found: int = 0
    todo: int = 0
    stored: int = 0
    errors: int = 0
    unchanged: int = 0
    errors_kept: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    #: Set with ``interrupted`` when the ``stop`` flag (not Ctrl-C) ended the scan.
    stopped: bool = False
    #: The stop came during the walk or the planning: nothing was classified, nothing pruned.
    stopped_early: bool = False
    gone: int = 0
    pruned: int = 0
    prune_refused: bool = False
    walk: WalkStats = field(default_factory=WalkStats)

    def lines(self, *, again: str = "run the same command to go on") -> list[str]:
        """The summary in words; ``again`` says how to resume after an interruption."""
        w = self.walk
        if self.stopped_early:
            return [f"stopped before any file was classified ({plural(self.found, 'audio file')} found so far); "
                    "nothing was changed"]
        out = [f"{plural(self.found, 'audio file')} found in {plural(w.folders, 'folder')} "
               f"({plural(w.other_files, 'other file')} left alone); "
               f"{self.unchanged} unchanged, {plural(self.errors_kept, 'earlier error')} kept (--retry-errors retries "
               f"{'it' if self.errors_kept == 1 else 'them'}), {self.stored} classified now "
               f"({plural(self.errors, 'error')}) in {self.seconds:.1f} s"]
        if w.loops_avoided:
            out.append(f"{plural(w.loops_avoided, 'folder')} reached again through a symlink "
                       f"{'was' if w.loops_avoided == 1 else 'were'} not entered twice")
        if w.same_file_twice:
            out.append(f"{plural(w.same_file_twice, 'file')} reached under a second name "
                       f"{'was' if w.same_file_twice == 1 else 'were'} classified once")
        for folder, reason in w.unreadable_folders:
            out.append(f"could not open folder {os.fsdecode(folder)!r}: {reason}")
        if self.prune_refused:
            out.append(f"no audio was found under the folder, so the {plural(self.gone, 'stored file')} under it "
                       f"{'was' if self.gone == 1 else 'were'} kept (is the drive mounted?)")
        elif self.pruned:
            out.append(f"{plural(self.gone, 'file')} no longer on disk: {'its' if self.gone == 1 else 'their'} "
                       f"{plural(self.pruned, 'stored row')} {'was' if self.pruned == 1 else 'were'} removed")
        elif self.gone:
            out.append(f"{plural(self.gone, 'stored file')} {'is' if self.gone == 1 else 'are'} no longer on disk; "
                       f"--prune removes {'its row' if self.gone == 1 else 'their rows'}")
        if self.interrupted:
            out.append(f"{'stopped' if self.stopped else 'interrupted'}: {plural(self.stored, 'finished file')} "
                       f"{'is' if self.stored == 1 else 'are'} kept; {again} ({self.todo - self.stored} left)")
        return out


def scan(root: str | os.PathLike, store: LibraryStore, spec: ModelSpec, *, jobs: Optional[int] = None,
         retry_errors: bool = False, runner: str = "local", pool: str = "threads", address: Optional[str] = None,
         progress: bool = True, progress_stream=None, model=None, prune: bool = False,
         stop: Optional[threading.Event] = None, on_record: Optional[Callable[[dict], None]] = None,
         on_planned: Optional[Callable[["ScanSummary"], None]] = None) -> ScanSummary:
    """Scan ``root`` into ``store`` with the model ``spec``.

    Parameters
    ----------
    root : path-like
        A folder (walked recursively) or one file.
    store : LibraryStore
    spec : ModelSpec
    jobs : int, optional
        Local workers, or Ray actors. Default: :func:`codeFeature.predict.default_jobs` threads (two more
        than the cores, at most 8); one process or Ray actor per core, at most 4 (each loads the model).
    retry_errors : bool
        Classify again the files whose stored row is an error.
    runner : {"local", "ray"}
        Where the files are classified: on this machine (:mod:`.local_runner`) or on Ray (:mod:`.ray_runner`).
    pool : {"threads", "processes"}
        The local runner's workers.
    address : str, optional
        A Ray cluster's ``HOST:PORT``; without it Ray starts on this machine.
    prune : bool
        Delete the stored rows (every model's) of files under ``root`` that are no longer on disk; never
        when the walk found no audio at all under ``root`` (an unmounted drive looks like that).
    stop : threading.Event, optional
        Set it (from another thread) to end the scan early: during the walk or the planning nothing is
        stored or pruned; during the classification no new file is started, the files in progress are
        finished and stored. The summary then has ``interrupted`` and ``stopped`` set. The next scan
        goes on where this one stopped, as after Ctrl-C.
    on_record : callable, optional
        Called with each row (a dict, as stored) right after it is stored.
    on_planned : callable, optional
        Called with the summary once the files to classify are known (``todo``) and the model is
        loaded, just before the classification starts.

    Returns
    -------
    ScanSummary
        ``interrupted`` is set when Ctrl-C (or ``stop``) stopped it (finished files are kept).
    """
    if runner not in RUNNERS:
        raise ConfigError(f"runner={runner!r}: use one of {', '.join(RUNNERS)}")
    summary = ScanSummary()
    t0 = time.perf_counter()

    def stopped_early() -> ScanSummary:
        summary.interrupted = summary.stopped = summary.stopped_early = True
        summary.seconds = time.perf_counter() - t0
        return summary

    found = []
    for item in walk(root, stats=summary.walk, own_files=database_files(store.path)):
        if stop is not None and stop.is_set():
            return stopped_early()  # a partial walk must never decide which files are gone
        found.append(item)
    summary.found = len(found)
    top = os.fsencode(os.path.abspath(os.fsdecode(root)))
    store.add_root(top)  # the app serves only files inside a scanned root
    gone = sorted(p for p in store.paths_under(top) - {f.path for f in found} if not os.path.lexists(p))
    summary.gone = len(gone)
    counts: dict = {}
    try:
        todo = plan(found, store, spec, retry_errors=retry_errors, counts=counts, stop=stop)
    except Stopped:
        return stopped_early()
    if prune and gone:
        if found:
            summary.pruned = store.forget(gone)
        else:
            summary.prune_refused = True
    summary.unchanged, summary.errors_kept, summary.todo = counts["unchanged"], counts["errors_kept"], len(todo)
    if todo and runner == "local" and pool == "threads" and model is None:
        model = spec.load()  # before the clock starts: the rate and ETA are the classification's
    bar = Progress(len(todo), stream=progress_stream, enabled=progress)
    if on_planned is not None:
        on_planned(summary)

    def stored(record: dict) -> None:
        summary.stored += 1
        summary.errors += record["status"] == "error"
        bar.update(record)
        if on_record is not None:
            on_record(record)

    if jobs is None:
        from ..predict import default_jobs, usable_cores

        jobs = default_jobs() if runner == "local" and pool == "threads" else min(4, usable_cores())
    try:
        if todo and runner == "local":
            run_local(todo, spec, store, jobs=jobs, pool=pool, on_record=stored, model=model, stop=stop)
        elif todo:
            from .ray_runner import run_ray

            run_ray(todo, spec, store, actors=jobs, address=address, on_record=stored, stop=stop)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - t0
    if stop is not None and stop.is_set() and summary.stored < summary.todo:
        summary.interrupted = summary.stopped = True
    return summary
