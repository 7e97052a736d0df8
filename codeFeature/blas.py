"""BLAS on one thread while features are computed, shared by every feature and the int8 rounding.

Matrix products sum in another order on one OpenBLAS thread than on two, so features computed on one
thread always give the same bits whatever thread count an earlier caller left set; and OpenBLAS's idle
threads no longer spin beside the forward pass that follows.
"""

from __future__ import annotations

import contextlib
import functools
import threading


@functools.lru_cache(maxsize=1)
def _blas_threads():
    """The process's BLAS libraries (threadpoolctl), found once: numpy's and scipy's OpenBLAS."""
    import scipy.linalg  # noqa: F401  (loads scipy's OpenBLAS, so that it is found too)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


_one_blas_lock = threading.Lock()
_one_blas_users = 0
_one_blas_limiter = None


def _let_this_thread_set_blas_threads() -> None:
    """threadpoolctl (3.8 on) lets only the first thread that sets OpenBLAS's thread count set it again, and
    silently ignores the others; features run on whichever thread classifies. Make this one the setter."""
    from threadpoolctl import OpenBLASController

    clear = getattr(OpenBLASController, "clear_controlling_thread", None)
    if clear is not None:
        clear(force=True)


@contextlib.contextmanager
def one_blas_thread():
    """BLAS on one thread while any thread computes features, and back as it was once none does.

    One count under a lock for the whole process (OpenBLAS has one thread pool): with a threadpoolctl limit per
    call, threads that overlapped restored one another's count in the wrong order, so features could run on
    two BLAS threads and differ from a lone call's in the last bit, and the process could keep one BLAS
    thread after."""
    global _one_blas_users, _one_blas_limiter
    with _one_blas_lock:
        if _one_blas_users == 0:
            _let_this_thread_set_blas_threads()
            _one_blas_limiter = _blas_threads().limit(limits=1, user_api="blas")
        _one_blas_users += 1
    try:
        yield
    finally:
        with _one_blas_lock:
            _one_blas_users -= 1
            if _one_blas_users == 0:
                _let_this_thread_set_blas_threads()
                _one_blas_limiter.restore_original_limits()
                _one_blas_limiter = None
                _let_this_thread_set_blas_threads()  # leave no thread holding threadpoolctl's setter role
