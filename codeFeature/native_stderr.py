"""Keep native libraries' chatter off a command-line user's terminal.

Two libraries write straight to file descriptor 2, past Python: TensorFlow prints its start-up
banners (``WARNING: All log messages before absl::InitializeLog() ...`` and the oneDNN notice, once
per shared library that links absl, so twice a run; ``TF_CPP_MIN_LOG_LEVEL`` does not reach them),
and libsndfile's bundled mpg123 prints notes such as ``Note: Illegal Audio-MPEG-Header 0x... at
offset ...`` or ``Warning: Xing stream size off by more than 1%`` while it reads damaged or
oddly-joined mp3 frames, which the decoder already handles and reports in words.

:func:`filtered_native_stderr` points descriptor 2 at a pipe for the duration of a ``with`` block; a
thread forwards every line to the real stderr except those known messages. Python's own
``sys.stderr`` is pointed at the real stderr directly, so warnings and tracebacks are neither
delayed nor filtered. Only the CLI uses it: a library must not take over a process's descriptors.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import threading
from typing import Iterator

#: Lines of native noise dropped from stderr: TensorFlow's start-up banners, mpg123's notes and one Ray
#: Data message.
NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|\] oneDNN custom operations are on"
    r"|cpu_feature_guard\.cc"
    r"|^To enable the following instructions: "
    r"|^(Note|Warning|Error): .*(MPEG|mpeg|resync|Skipped \d+ bytes|Xing|frame|header|Header|stream)"
    r"|^\[src/libmpg123/"
    # Ray Data starts its actor pool with its own objects (the map function, its context) passed by
    # reference and actor restarts on, and Ray's core worker then logs at error level that a restart would
    # fail if those objects were lost; the driver holds them for the whole run, so on a scan that succeeds
    # it is noise (ray-project/ray#53727). Only that message is dropped: other core_worker errors still show.
    r"|core_worker\.cc:\d+: Actor with class name: .* has constructor arguments in the object store and "
    r"max_restarts > 0"
)


@contextlib.contextmanager
def filtered_native_stderr(pattern: re.Pattern = NOISE) -> Iterator[None]:
    """Within the block, drop lines matching ``pattern`` that native code writes to descriptor 2.

    Does nothing where descriptor 2 cannot be duplicated (no stderr at all).
    """
    try:
        sys.stderr.flush()
        real = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    python_stderr = sys.stderr
    redirected = _uses_fd2(python_stderr)
    if redirected:  # Python's own messages go straight to the terminal, unfiltered and undelayed
        sys.stderr = io.TextIOWrapper(io.FileIO(os.dup(real), "w"), encoding=getattr(python_stderr, "encoding", None)
                                      or "utf-8", errors="backslashreplace", line_buffering=True)
    pump = threading.Thread(target=_pump, args=(read_end, real, pattern), name="native-stderr", daemon=True)
    pump.start()
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(real, 2)  # closes the pipe's last write end: the pump reads to the end and stops
        pump.join(timeout=5)
        if redirected:
            with contextlib.suppress(Exception):
                sys.stderr.close()
            sys.stderr = python_stderr
        os.close(real)


def _uses_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


def _pump(read_end: int, real: int, pattern: re.Pattern) -> None:
    """Copy lines from the pipe to the real stderr, leaving out the noise."""
    with open(read_end, "rb", buffering=0) as pipe:
        pending = b""
        while True:
            chunk = pipe.read(65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            _forward(lines, real, pattern)
        if pending:
            _forward([pending], real, pattern, newline=False)


def _forward(lines: list[bytes], real: int, pattern: re.Pattern, *, newline: bool = True) -> None:
    kept = [line for line in lines if not pattern.search(line.decode("utf-8", "replace"))]
    if kept:
        data = b"\n".join(kept) + (b"\n" if newline else b"")
        with contextlib.suppress(OSError):
            os.write(real, data)
