"""Classifying one file into a ``results`` row, the same way in every runner (local or Ray).

A file is read only through a descriptor proven to be a regular file
(:mod:`codeFeature.regular_file`): a named pipe or a device under an audio name, even one swapped in
after the walk, ends as an error row instead of blocking a worker for ever. A file that changes
while it is classified (its size or mtime differ after) is tried again, then stored as an error that
the next scan retries (its stat no longer matches).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Optional

from .store import error_record, fingerprint, manifest_hash, record_from_prediction
from .walk import Found

#: Attempts at a file whose size or mtime changes while it is classified.
CHANGE_ATTEMPTS = 3


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


def worker_failed(item: Found, spec: ModelSpec, exc: BaseException) -> dict:
    """The error row of a file whose worker failed outside :func:`classify_path` (a crashed process,
    an actor's last resort): the scan goes on and the file is tried again by the next one."""
    return error_record(path=item.path, model=spec.name, model_hash=spec.model_hash, precision=spec.precision,
                        size=item.size, mtime_ns=item.mtime_ns, fp="",
                        error=f"the worker failed on this file ({type(exc).__name__}: {exc})")
