"""The scan on a Ray cluster: Ray Data maps batches of file paths through a pool of actors.

Each actor loads the model once (:class:`Classifier`) and turns a batch of paths into
``results`` rows with the same :func:`~.scan.classify_path` the local engine uses, so both
engines store the same answers. The rows stream back to the driver, which writes them to the
SQLite database one transaction per file, as the local engine does.

Why stream to the driver rather than write Parquet shards to merge: a row is small (a few KB
with its per-segment evidence) and the driver writes it as it arrives, so an interrupted scan
keeps every finished file and resumes exactly as a local one does; shards would need a
location every node can write, a merge step, and would lose the files of unmerged shards on
a kill. At the rate one database takes (thousands of rows a second) the driver is not the
bottleneck; the classification is.

What is supported: paths on a file system that every node mounts at the same absolute path
(NFS, SMB/CIFS, a cluster file system, or one machine); the model folder and this repository
must be readable there too (``PYTHONPATH`` is set to the repository for the workers). Object
store URIs (``s3://``) are not: the decoder reads local paths.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .scan import Found, ModelSpec, classify_path
from .store import LibraryStore, error_record

#: Files per Ray Data batch: small, so rows come back while the scan runs and an actor busy with
#: a two-hour file holds up few others.
BATCH_FILES = 4
REPO = Path(__file__).resolve().parents[2]


class Classifier:
    """A Ray Data actor: loads the model once, then classifies batches of paths."""

    def __init__(self, spec: ModelSpec):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
                record = error_record(path=item.path, model=self.spec.name, model_hash=self.spec.model_hash,
                                      precision=self.spec.precision, size=item.size, mtime_ns=item.mtime_ns, fp="",
                                      error=f"the worker failed on this file ({type(exc).__name__}: {exc})")
            rows.append(pickle.dumps(record))
        return {"record": np.array(rows, dtype=object)}


def run_ray(todo: list[Found], spec: ModelSpec, store: LibraryStore, *, actors: int = 1,
            address: Optional[str] = None, on_record: Optional[Callable[[dict], None]] = None,
            num_cpus: Optional[int] = None) -> int:
    """Classify ``todo`` on Ray with ``actors`` actors and store each row as it arrives; returns rows stored.

    Parameters
    ----------
    address : str, optional
        ``HOST:PORT`` of a running cluster (``ray start --head``); default: start Ray on this
        machine for this scan and stop it after. If Ray is already initialised in this
        process, that instance is used.
    num_cpus : int, optional
        CPUs of the local instance (default: all).
    """
    import ray

    started = False
    if not ray.is_initialized():
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH"))
                                                           if p),
                            "TF_CPP_MIN_LOG_LEVEL": "2"}}
        if address:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        else:
            # "local": a fresh instance even if another cluster is running on this machine
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, runtime_env=env,
                     log_to_driver=False)
        started = True
    from .. import numba_cache

    # this machine's actors then only load librosa's kernels (numba_cache's docstring)
    numba_cache.ensure_ready()
    stored = 0
    try:
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
    finally:
        if started:
            ray.shutdown()
    return stored
