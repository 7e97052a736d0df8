"""What a process of the project sets up once, before TensorFlow or numba start: :func:`prepare_process`.

The library itself writes nothing to ``os.environ`` and reads nothing at import. Some native libraries
read their configuration from the environment once, when they load, so whatever must reach them has to
be in place before the first use; each entry point (the command line's ``main``, ``app.py``, the web
pages, the pool workers and Ray actors, the training and benchmark scripts, the model probe's child)
calls :func:`prepare_process` first. A program using the library directly may call it too, first thing;
without it the library gives the same answers, with TensorFlow's own (larger) memory pool.
"""

from __future__ import annotations

import os
import threading

_lock = threading.Lock()
_prepared = False


def prepare_process(*, tf_log_level: str = "2") -> None:
    """Set up this process for TensorFlow and librosa's numba kernels; idempotent, cheap (imports neither).

    * ``TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1`` (unless set): TensorFlow's oneDNN kernels otherwise keep a
      memory pool of their own, about 300 MB more resident memory with musicnn for no speed
      (``docs/configuration.md``). TensorFlow reads it when it loads, so it must be set before.
    * ``TF_CPP_MIN_LOG_LEVEL`` (unless set) to ``tf_log_level``: TensorFlow's C++ start-up notes stay off
      the terminal.
    * librosa's numba kernels get the project's own cache folder, filled by one process at a time
      (:func:`codeFeature.numba_cache.configure`; numba issue 10128), through ``numba.config`` rather
      than the environment (``import codeFeature``'s gate does it at librosa's first use otherwise).

    Both variables are set with ``setdefault``: a value the user gave wins, and child processes inherit
    them as they would any of the user's.
    """
    global _prepared
    with _lock:
        os.environ.setdefault("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", tf_log_level)
        if _prepared:
            return
        from . import numba_cache

        numba_cache.configure()
        _prepared = True
