"""Walk folders, decide what needs classifying, classify it in parallel, store each file as it finishes.

Which files count: a name ending in one of :data:`AUDIO_EXTENSIONS` (case-insensitive) is
"audio-looking" and always ends as a row, a result or a readable error (an empty file, a broken
one, a pipe named ``x.mp3``, a dangling symlink). Anything else is left alone without being opened:
guessing audio from the content of every file in a home folder would read far too much, and a
music library names its files.

A file is read only through a descriptor proven to be a regular file
(:mod:`codeFeature.regular_file`): a named pipe or a device under an audio name, even one swapped in
after the walk, ends as an error row instead of blocking a worker for ever.

The walk follows symlinks to folders but never enters a folder twice (it keeps each folder's
``(st_dev, st_ino)``), so symlink loops end at once, and a file reached by two names (a symlink
or a hard link) is classified once, under the first name in sorted order. Names are handled as the
file system's bytes, so names in any encoding work.

A file is skipped when its row for the same model (same name and manifest hash, same
precision) has the same size, mtime and :func:`~.store.fingerprint`; errors are skipped too
unless ``retry_errors``. A file that changes while it is classified (its size or mtime differ
after) is tried again, then stored as an error that the next scan retries (its stat no longer
matches).
"""

from __future__ import annotations

import os
import stat as stat_module
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Optional

from ..audio import SUPPORTED_EXTENSIONS
from ..regular_file import file_kind
from .store import LibraryStore, error_record, fingerprint, manifest_hash, record_from_prediction

#: Extensions of audio-looking files: everything :mod:`codeFeature.audio` decodes (the ffmpeg ones
#: too: without ffmpeg they end as an error row that says to install it).
AUDIO_EXTENSIONS = tuple(sorted(set(SUPPORTED_EXTENSIONS)))
#: Attempts at a file whose size or mtime changes while it is classified.
CHANGE_ATTEMPTS = 3
ENGINES = ("local", "ray")
POOLS = ("threads", "processes")


@dataclass
class Found:
    """An audio-looking file the walk found.

    Attributes
    ----------
    path : bytes
        Absolute path, as the file system's bytes.
    size, mtime_ns : int
        From ``stat`` (0 when ``problem`` is set).
    problem : str or None
        Why the file cannot be read at all (a dangling symlink, a pipe); it is stored as an error.
    """

    path: bytes
    size: int = 0
    mtime_ns: int = 0
    problem: Optional[str] = None


@dataclass
class WalkStats:
    folders: int = 0
    audio_files: int = 0
    other_files: int = 0
    loops_avoided: int = 0
    same_file_twice: int = 0
    unreadable_folders: list = field(default_factory=list)
    #: The library database's own files met in the walk (``x.sqlite``, ``-wal``, ``-shm``, ``-journal``,
    #: ``-tag.lock``): neither audio nor "other files left alone".
    own_files: int = 0


#: Files SQLite and the ``tag`` command keep beside a database, by suffix of its name.
DATABASE_COMPANIONS = (b"", b"-wal", b"-shm", b"-journal", b"-tag.lock")


def database_files(db: str | os.PathLike) -> Optional[tuple[tuple[int, int], frozenset]]:
    """``((st_dev, st_ino) of the database's folder, {its file names})``, to tell :func:`walk` which files
    are the database's own; None when its folder cannot be looked at."""
    path = os.fsencode(os.path.abspath(os.fspath(db)))
    folder, name = os.path.split(path)
    try:
        info = os.stat(folder)
    except OSError:
        return None
    return (info.st_dev, info.st_ino), frozenset(name + suffix for suffix in DATABASE_COMPANIONS)


def walk(root: str | bytes | os.PathLike, *, stats: Optional[WalkStats] = None,
         extensions: Iterable[str] = AUDIO_EXTENSIONS,
         own_files: Optional[tuple[tuple[int, int], frozenset]] = None) -> Iterator[Found]:
    """The audio-looking files under ``root`` (or ``root`` itself when it is a file), in sorted order.

    Parameters
    ----------
    root : path-like or bytes
    stats : WalkStats, optional
        Filled with counts of what was seen and left alone.
    extensions : iterable of str
        Lower-case extensions with the dot.
    own_files : tuple, optional
        :func:`database_files` of the library database: when the database lies inside ``root``, its
        files are counted as ``stats.own_files``, never as audio or as other files.

    Yields
    ------
    Found
    """
    stats = stats if stats is not None else WalkStats()
    wanted = {os.fsencode(e.lower()) for e in extensions}
    top = os.fsencode(os.path.abspath(os.fsdecode(root)))
    seen_folders: set = set()
    seen_files: set = set()

    def entry(path: bytes, name: bytes, folder_key=None) -> Optional[Found]:
        if own_files is not None and folder_key == own_files[0] and name in own_files[1]:
            stats.own_files += 1
            return None
        if os.path.splitext(name)[1].lower() not in wanted:
            stats.other_files += 1
            return None
        stats.audio_files += 1
        try:
            info = os.stat(path)
        except OSError as exc:
            return Found(path, problem=f"cannot read the file: {exc.strerror or exc} (a broken symlink?)")
        if not stat_module.S_ISREG(info.st_mode):
            return Found(path, problem=f"not a regular file ({file_kind(info.st_mode)}); it was not opened")
        key = (info.st_dev, info.st_ino)
        if key in seen_files:
            stats.same_file_twice += 1
            return None
        seen_files.add(key)
        return Found(path, info.st_size, info.st_mtime_ns)

    try:
        info = os.stat(top)
    except OSError as exc:
        raise FileNotFoundError(f"{os.fsdecode(top)}: {exc.strerror or exc}") from exc
    if not stat_module.S_ISDIR(info.st_mode):
        found = entry(top, os.path.basename(top))  # a file named on purpose is scanned, whatever it is
        if found is not None:
            yield found
        return
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            info = os.stat(folder)
            key = (info.st_dev, info.st_ino)
            if key in seen_folders:
                stats.loops_avoided += 1
                continue
            seen_folders.add(key)
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            stats.unreadable_folders.append((folder, exc.strerror or str(exc)))
            continue
        stats.folders += 1
        subfolders = []
        for item in entries:
            try:
                is_dir = item.is_dir()  # follows symlinks; loops end at the seen_folders check
            except OSError:
                is_dir = False
            if is_dir:
                subfolders.append(item.path)
                continue
            found = entry(item.path, item.name, key)
            if found is not None:
                yield found
        stack.extend(reversed(subfolders))


@dataclass
class ModelSpec:
    """Which model a scan uses, known without loading it (the planner and every worker agree on it)."""

    folder: str
    name: str
    model_hash: str
    precision: str
    engine: str = "auto"

    @classmethod
    def resolve(cls, model: Optional[str], precision: Optional[str] = None, *, facts=None) -> "ModelSpec":
        """``facts``: the machine's (:class:`codeFeature.cpu.CpuFacts`; default this one's)."""
        from ..inference_path import plan
        from ..model_io import read_manifest, resolve_model_dir

        folder = resolve_model_dir(model)
        manifest = read_manifest(folder)
        # the path load_model's own choice gives here (bfloat16 with AMX, int8 on OpenVINO with AVX-512
        # VNNI, OpenVINO float32 on AVX2, ...), engine and precision named explicitly: every worker, local or
        # on a Ray node, then runs this very path (a bare "float32" would mean TensorFlow's)
        chosen = plan(manifest, precision=precision, facts=facts)
        return cls(folder=str(folder), name=str(manifest.get("name", folder.name)),
                   model_hash=manifest_hash(folder), precision=chosen.precision, engine=chosen.engine)

    def load(self):
        from ..model_io import load_model

        return load_model(self.folder, precision=self.precision, engine=self.engine)


class Stopped(Exception):
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


def classify_path(item: Found, model, spec: ModelSpec) -> dict:
    """Classify one file into a ``results`` row (never raises for a bad file: that is an error row).

    Parameters
    ----------
    item : Found
    model : LoadedModel
        Loaded from ``spec``.
    spec : ModelSpec
    """
    from ..errors import GenreError
    from ..predict import predict_file

    t0 = time.perf_counter()
    common = dict(path=item.path, model=spec.name, model_hash=spec.model_hash, precision=spec.precision)
    if item.problem is not None:
        return error_record(**common, size=0, mtime_ns=0, fp="", error=item.problem)
    for _ in range(CHANGE_ATTEMPTS):
        try:
            before = os.stat(item.path)
            fp = fingerprint(item.path, before.st_size)
        except OSError as exc:
            return error_record(**common, size=item.size, mtime_ns=item.mtime_ns, fp="",
                                error=f"cannot read the file: {exc.strerror or exc}",
                                seconds=time.perf_counter() - t0)
        stat_key = dict(size=before.st_size, mtime_ns=before.st_mtime_ns, fp=fp)
        if before.st_size == 0:
            return error_record(**common, **stat_key, error="the file is empty (0 bytes)",
                                seconds=time.perf_counter() - t0)
        prediction = error = None
        try:
            prediction = predict_file(os.fsdecode(item.path), model=model)
        except GenreError as exc:
            error = str(exc)
        except MemoryError:
            error = "not enough memory to classify this file"
        except Exception as exc:  # one odd file must never stop a scan of thousands
            error = f"unexpected error ({type(exc).__name__}: {exc}); please report it"
        try:
            after = os.stat(item.path)
        except OSError:
            return error_record(**common, **stat_key, error="the file disappeared while it was being classified",
                                seconds=time.perf_counter() - t0)
        if (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
            break
    else:
        return error_record(**common, **stat_key, seconds=time.perf_counter() - t0,
                            error="the file kept changing while it was being classified; "
                                  "the next scan tries it again")
    seconds = time.perf_counter() - t0
    if prediction is None:
        return error_record(**common, **stat_key, error=error, seconds=seconds)
    return record_from_prediction(prediction, path=item.path, model_hash=spec.model_hash, precision=spec.precision,
                                  size=stat_key["size"], mtime_ns=stat_key["mtime_ns"], fp=fp, seconds=seconds)


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


# ------------------------------------------------------------------ engines

_WORKER: dict = {}


def _worker_init(spec: ModelSpec) -> None:
    """Process-pool initialiser: load the model once per worker process."""
    from ..runtime import prepare_process

    prepare_process()
    _WORKER["spec"], _WORKER["model"] = spec, spec.load()


def _worker_classify(item: Found) -> dict:
    return classify_path(item, _WORKER["model"], _WORKER["spec"])


def run_local(todo: list[Found], spec: ModelSpec, store: LibraryStore, *, jobs: int, pool: str = "threads",
              on_record: Optional[Callable[[dict], None]] = None, model=None,
              stop: Optional[threading.Event] = None) -> int:
    """Classify ``todo`` with ``jobs`` workers, storing each row as it finishes; returns rows stored.

    At most ``2 * jobs`` files are in flight, so a two-hour file occupies one worker while the
    others keep finishing short ones, and memory does not grow with the library. Once ``stop`` is
    set, no new file is started; the files already being classified finish and are stored (their
    work is done by then), and it returns.
    """
    if pool == "threads":
        # one model shared by the threads: its traced graph is thread-safe, and decoding, features and
        # TensorFlow release the GIL
        model = model if model is not None else spec.load()
        executor = ThreadPoolExecutor(max_workers=jobs)
        submit = lambda item: executor.submit(classify_path, item, model, spec)  # noqa: E731
    elif pool == "processes":
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from .. import numba_cache

        # librosa's kernels compiled here, once, so the workers only load them (numba_cache's docstring)
        numba_cache.ensure_ready()
        # spawn, not fork: forking a process that has TensorFlow's threads running is unsafe
        executor = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_worker_init, initargs=(spec,))
        submit = lambda item: executor.submit(_worker_classify, item)  # noqa: E731
    else:
        raise ValueError(f"pool={pool!r}: use one of {', '.join(POOLS)}")
    stored = 0
    pending: dict = {}
    items = iter(todo)
    try:
        while True:
            stopping = stop is not None and stop.is_set()
            if stopping:
                # queued files are dropped; a running one cannot be cancelled and is waited for
                for future in [f for f in pending if f.cancel()]:
                    del pending[future]
            while not stopping and len(pending) < 2 * jobs:
                item = next(items, None)
                if item is None:
                    break
                pending[submit(item)] = item
            if not pending:
                break
            # a timeout, so that a stop is seen while long files are still being classified
            done, _ = wait(pending, timeout=0.5 if stop is not None else None, return_when=FIRST_COMPLETED)
            for future in done:
                record = _result_or_error(future, pending.pop(future), spec)
                store.put(record)
                stored += 1
                if on_record is not None:
                    on_record(record)
    finally:
        # on Ctrl-C: drop what has not started; what finished is already committed
        executor.shutdown(wait=False, cancel_futures=True)
    return stored


def _result_or_error(future, item: Found, spec: ModelSpec) -> dict:
    """The worker's row; a worker that died (a crashed process) still gives its file an error row."""
    try:
        return future.result()
    except Exception as exc:  # BrokenProcessPool and the like: the scan goes on
        return error_record(path=item.path, model=spec.name, model_hash=spec.model_hash, precision=spec.precision,
                            size=item.size, mtime_ns=item.mtime_ns, fp="",
                            error=f"the worker failed on this file ({type(exc).__name__}: {exc})")


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
         retry_errors: bool = False, engine: str = "local", pool: str = "threads", address: Optional[str] = None,
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
    engine : {"local", "ray"}
    pool : {"threads", "processes"}
        The local engine's workers.
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
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: use one of {', '.join(ENGINES)}")
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
    if todo and engine == "local" and pool == "threads" and model is None:
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

        jobs = default_jobs() if engine == "local" and pool == "threads" else min(4, usable_cores())
    try:
        if todo and engine == "local":
            run_local(todo, spec, store, jobs=jobs, pool=pool, on_record=stored, model=model, stop=stop)
        elif todo:
            from .ray_engine import run_ray

            run_ray(todo, spec, store, actors=jobs, address=address, on_record=stored, stop=stop)
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - t0
    if stop is not None and stop.is_set() and summary.stored < summary.todo:
        summary.interrupted = summary.stopped = True
    return summary
