"""How many files to classify at once: the core-count policy of the CLI and of a collection scan."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity: a container's or ``taskset``'s share, not the
    machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_jobs() -> int:
    """Files the CLI and a threaded library scan classify at once by default: two more than
    :func:`usable_cores`, at most 8.

    Each file is decoded on its own thread while the network runs on the engine's streams; with only one
    file per core, every file can be waiting on the network at the same moment and a core then idles.
    On 2 cores, the batch CLI kept 95 % of the CPU busy with 2 files at once and 99 % with 3, 4 or 6
    (``python -m bench.bench_speed --only batch`` prints the share beside its figure).
    """
    return min(8, usable_cores() + 2)
