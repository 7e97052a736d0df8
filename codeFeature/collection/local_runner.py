"""The local runner: worker threads sharing one model (the default), or processes loading it once each."""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable, Optional

from ..errors import ConfigError
from . import classify
from .classify import ModelSpec, worker_failed
from .store import LibraryStore
from .walk import Found

POOLS = ("threads", "processes")

_WORKER: dict = {}


def _worker_init(spec: ModelSpec) -> None:
    """Process-pool initialiser: load the model once per worker process."""
    from ..runtime import prepare_process

    prepare_process()
    _WORKER["spec"], _WORKER["model"] = spec, spec.load()


def _worker_classify(item: Found) -> dict:
    return classify.classify_path(item, _WORKER["model"], _WORKER["spec"])


def run_local(todo: list[Found], spec: ModelSpec, store: LibraryStore, *, jobs: int, pool: str = "threads",
              on_record: Optional[Callable[[dict], None]] = None, model=None,
              stop: Optional[threading.Event] = None) -> int:
    """Classify ``todo`` with ``jobs`` workers, storing each row as it finishes; returns rows stored.

    At most ``2 * jobs`` files are in flight, so a two-hour file occupies one worker while the
    others keep finishing short ones, and memory does not grow with the collection. Once ``stop`` is
    set, no new file is started; the files already being classified finish and are stored (their
    work is done by then), and it returns.
    """
    if pool == "threads":
        # one model shared by the threads: its traced graph is thread-safe, and decoding, features and
        # TensorFlow release the GIL
        model = model if model is not None else spec.load()
        executor = ThreadPoolExecutor(max_workers=jobs)
        submit = lambda item: executor.submit(classify.classify_path, item, model, spec)  # noqa: E731
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
        raise ConfigError(f"pool={pool!r}: use one of {', '.join(POOLS)}")
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
        return worker_failed(item, spec, exc)
