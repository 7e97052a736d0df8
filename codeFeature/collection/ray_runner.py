"""The scan on a Ray cluster: Ray Data maps batches of file paths through a pool of actors.

Each actor loads the model once (:class:`Classifier`) and turns a batch of paths into
``results`` rows with the same :func:`~.classify.classify_path` the local runner uses, so both
runners store the same answers. The rows stream back to the driver, which writes them to the
SQLite database one transaction per file, as the local runner does.

Why stream to the driver rather than write Parquet shards to merge: a row is small (a few KB
with its per-segment evidence) and the driver writes it as it arrives, so an interrupted scan
keeps every finished file and resumes exactly as a local one does; shards would need a
location every node can write, a merge step, and would lose the files of unmerged shards on
a kill. At the rate one database takes (thousands of rows a second) the driver is not the
bottleneck; the classification is.

What is supported: paths on a file system that every node mounts at the same absolute path
(NFS, SMB/CIFS, a cluster file system, or one machine); the model folder must be readable there
too. The ``codeFeature`` package itself travels with the job (Ray's ``runtime_env`` ``py_modules``
uploads this very copy), so the workers run the driver's code whether or not the repository is on
their disk; its third-party dependencies must be installed on every node. Object store URIs
(``s3://``) are not: the decoder reads local paths.

Ray's token authentication: since Ray 2.59 a local instance started by ``ray.init()`` enables it by
default and, when no token is configured, writes a new one to ``~/.ray/auth_token``. For the local
instance a scan starts, :func:`run_ray` instead hands Ray a one-time token through ``RAY_AUTH_TOKEN``
(which Ray reads before that file), so the instance is protected and nothing is written to the home
folder; a token or mode the user configured (``RAY_AUTH_MODE``, ``RAY_AUTH_TOKEN``,
``RAY_AUTH_TOKEN_PATH``) is left as it is. Connecting to a running cluster (``address``) uses that
cluster's own settings.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import secrets
import threading
from typing import Callable, Iterator, Optional

import numpy as np

from .classify import ModelSpec, classify_path, worker_failed
from .store import LibraryStore
from .walk import Found

#: Files per Ray Data batch: small, so rows come back while the scan runs and an actor busy with
#: a two-hour file holds up few others.
BATCH_FILES = 4
#: Ray's variables for token authentication (see the module's docstring).
AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


class Classifier:
    """A Ray Data actor: loads the model once, then classifies batches of paths."""

    def __init__(self, spec: ModelSpec):
        from ..runtime import prepare_process

        prepare_process()
        from .. import numba_cache

        # actors of one node share its cache: the first fills it under the lock, the others load
        numba_cache.ensure_ready()
        self.spec = spec
        self.model = spec.load()

    def __call__(self, batch: dict) -> dict:
        rows = []
        for path, size, mtime_ns, problem in zip(batch["path"], batch["size"], batch["mtime_ns"], batch["problem"]):
            item = Found(bytes(path), int(size), int(mtime_ns), str(problem) or None)
            try:
                record = classify_path(item, self.model, self.spec)
            except Exception as exc:  # classify_path turns bad files into rows; this is a last resort
                record = worker_failed(item, self.spec, exc)
            rows.append(pickle.dumps(record))
        return {"record": np.array(rows, dtype=object)}


@contextlib.contextmanager
def one_time_token() -> Iterator[bool]:
    """Within the block, a local Ray instance authenticates with a token that lives only in this
    process's environment (inherited by the Ray processes it starts), unless the user configured Ray's
    authentication; yields whether it did."""
    if any(os.environ.get(name) for name in AUTH_VARIABLES):
        yield False
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    _reload_ray_auth()
    try:
        yield True
    finally:
        for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
            os.environ.pop(name, None)
        _reload_ray_auth()


def _reload_ray_auth() -> None:
    """Make Ray read its authentication variables again.

    Ray copies them into its C++ configuration and caches the token it found (or that there was none)
    once; Ray itself refreshes both the same way when it turns token authentication on for a local
    instance (``ray._private.authentication.authentication_token_setup``). Without this, a process that
    had imported Ray earlier would still see "disabled" and no token, and Ray would write a new one to
    ``~/.ray/auth_token``.
    """
    try:
        from ray._raylet import AuthenticationTokenLoader, Config
    except ImportError:  # a Ray without token authentication: nothing to refresh
        return
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def run_ray(todo: list[Found], spec: ModelSpec, store: LibraryStore, *, actors: int = 1,
            address: Optional[str] = None, on_record: Optional[Callable[[dict], None]] = None,
            num_cpus: Optional[int] = None, stop: Optional[threading.Event] = None) -> int:
    """Classify ``todo`` on Ray with ``actors`` actors and store each row as it arrives; returns rows stored.

    Parameters
    ----------
    address : str, optional
        ``HOST:PORT`` of a running cluster (``ray start --head``); default: start Ray on this
        machine for this scan and stop it after. If Ray is already initialised in this
        process, that instance is used.
    num_cpus : int, optional
        CPUs of the local instance (default: all).
    stop : threading.Event, optional
        Once set, the rows still to come are not waited for (Ray cancels the rest when the dataset's
        iterator is dropped).
    """
    import ray

    import codeFeature

    with contextlib.ExitStack() as cleanup:
        if not ray.is_initialized():
            # py_modules: Ray packs this copy of the package and puts it on every worker's path, in place of
            # a PYTHONPATH that assumed the repository sits at the same path on every node
            env = {"py_modules": [codeFeature], "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}}
            if address:
                ray.init(address=address, runtime_env=env, log_to_driver=False)
            else:
                cleanup.enter_context(one_time_token())
                # "local": a fresh instance even if another cluster is running on this machine
                ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, runtime_env=env,
                         log_to_driver=False)
            cleanup.callback(ray.shutdown)
        from .. import numba_cache

        # this machine's actors then only load librosa's kernels (numba_cache's docstring)
        numba_cache.ensure_ready()
        return _stream(todo, spec, store, actors=actors, on_record=on_record, stop=stop)


def _stream(todo: list[Found], spec: ModelSpec, store: LibraryStore, *, actors: int,
            on_record: Optional[Callable[[dict], None]], stop: Optional[threading.Event]) -> int:
    import ray

    stored = 0
    ray.data.DataContext.get_current().enable_progress_bars = False
    items = [{"path": item.path, "size": item.size, "mtime_ns": item.mtime_ns, "problem": item.problem or ""}
             for item in todo]
    dataset = ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // BATCH_FILES)))
    results = dataset.map_batches(Classifier, fn_constructor_kwargs={"spec": spec}, batch_size=BATCH_FILES,
                                  compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1)
    for row in results.iter_rows():
        record = pickle.loads(row["record"])
        store.put(record)
        stored += 1
        if on_record is not None:
            on_record(record)
        if stop is not None and stop.is_set():
            break
    return stored
