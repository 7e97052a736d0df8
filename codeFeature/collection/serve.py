"""What the app may read of a music library: the databases the server was started with, and only the
scanned files inside a scanned root, unchanged since the scan; and which folders the app may scan.

Scanning from the app: the person who starts the server names the folders a visitor may scan
(:func:`configured_scan_folders`: ``--scan-folder FOLDER``, repeatable, and
``CODEFEATURE_SCAN_FOLDERS``). The rule is simple: every named folder may be scanned into every
configured library database (run a second server for libraries that must not share folders). A
visitor picks one of those folders and a library; the page never takes a path.

Anyone who can reach the app's port is a visitor, and a visitor never names a path. The person who
starts the server names the library databases (:func:`configured_libraries`); a scan records the
folders it was started on (``roots`` in :mod:`.store`). A stored row's file is read only by
:func:`read_scanned`, which

1. takes the row's path apart below one of the database's roots (no ``..``, ``.`` or empty names),
2. opens each folder below the root and then the file itself relative to its parent's descriptor,
   never following a symbolic link (``O_NOFOLLOW``), after checking with ``lstat`` that the file is a
   regular file (so a pipe or a device is never opened; ``O_NONBLOCK`` covers a swap in between),
3. checks on that descriptor (``fstat``) that it is the same regular file ``lstat`` saw, with the
   stored size and mtime, and that its :func:`~.store.fingerprint` is the stored one,
4. reads the bytes from that same descriptor and checks its size and mtime again,

so a file swapped for a symbolic link (or a folder on its path swapped for one) is refused whatever
it points at, and there is no window in which a checked path and the opened file can differ. The
root's own path is the one the scan was given; symbolic links in it were chosen by whoever ran the
scan and are followed. Every refusal gives the same :data:`CHANGED_OR_MOVED` message, so the page
reveals nothing about whether some other path exists.

What this cannot see: a hard link inside the root to a file elsewhere is that file, under a name
inside the root (a path cannot tell the two apart). Making one needs write access to the music
folder and, with Linux's ``fs.protected_hardlinks`` (the default on current distributions), to the
target file as well; and its bytes must still match the stored fingerprint of the scanned file.
"""

from __future__ import annotations

import hashlib
import os
import stat as stat_module
import sys
from typing import Iterable, Mapping, Optional, Sequence

from ..errors import GenreError
from ..settings import current
from .store import FINGERPRINT_EDGE

#: The environment variable naming library databases (``os.pathsep``-separated).
ENV_VAR = "CODEFEATURE_LIBRARY"
#: The app's own command-line option (after ``--`` on ``streamlit run app.py -- --library PATH``).
OPTION = "--library"
#: The environment variable naming the folders the app may scan (``os.pathsep``-separated).
SCAN_ENV_VAR = "CODEFEATURE_SCAN_FOLDERS"
#: The app's option naming a folder it may scan (repeatable).
SCAN_OPTION = "--scan-folder"

#: The one message for every file the page will not read: missing, outside the scanned roots, behind a
#: symbolic link, not a regular file, or different from the scanned file. One message for all of them,
#: so that it tells a visitor nothing about other paths.
CHANGED_OR_MOVED = ("This file changed or moved since the scan, so it is neither played nor decoded here "
                    "(the page reads only unchanged regular files inside a scanned folder, and never through "
                    "a symbolic link). Scan the folder again to update it; the stored results are shown below.")
#: For a database scanned before scans recorded their folders.
NO_ROOTS = ("This library was scanned before scans recorded which folders they cover, so its files are neither "
            "played nor decoded here. Scan its folders again (`python -m codeFeature scan FOLDER --db DATABASE`: "
            "unchanged files are not classified again); the stored results are shown below.")

_SUPPORTED = hasattr(os, "O_NOFOLLOW") and hasattr(os, "O_DIRECTORY") and os.open in os.supports_dir_fd
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOCTTY = getattr(os, "O_NOCTTY", 0)


class NotServable(GenreError):
    """The file is not read; ``str(exc)`` is the message for the visitor."""


def _option_values(argv: Sequence[str], option: str) -> list[str]:
    """The values of ``option VALUE`` and ``option=VALUE`` in ``argv``, in order."""
    given: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == option and i + 1 < len(argv):
            given.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith(option + "="):
            given.append(arg[len(option) + 1:])
        i += 1
    return given


def _absolute(paths: Iterable[str]) -> list[str]:
    out: list[str] = []
    for path in paths:
        path = path.strip()
        if not path:
            continue
        path = os.path.abspath(os.path.expanduser(path))
        if path not in out:
            out.append(path)
    return out


def configured_libraries(argv: Optional[Sequence[str]] = None,
                         environ: Optional[Mapping[str, str]] = None) -> list[str]:
    """The library databases the server was started with, as absolute paths, in order, without repeats.

    From ``--library PATH`` / ``--library=PATH`` (any number) in ``argv`` (default ``sys.argv[1:]``:
    ``streamlit run app.py -- --library PATH`` hands the script what follows ``--``), then from
    :data:`ENV_VAR` (``os.pathsep``-separated). Nothing is opened or checked here.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    listed = list(current().library) if environ is None else environ.get(ENV_VAR, "").split(os.pathsep)
    return _absolute(_option_values(argv, OPTION) + listed)


def configured_scan_folders(argv: Optional[Sequence[str]] = None,
                            environ: Optional[Mapping[str, str]] = None) -> list[str]:
    """The folders the app may scan, as absolute paths (``~`` expanded, symbolic links kept, as the CLI
    names its root), in order, without repeats.

    From ``--scan-folder FOLDER`` / ``--scan-folder=FOLDER`` (any number) in ``argv`` (default
    ``sys.argv[1:]``), then from :data:`SCAN_ENV_VAR` (``os.pathsep``-separated). Each may be scanned into
    any of :func:`configured_libraries`; with no library configured, none is offered. Nothing is opened
    or checked here.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    listed = list(current().scan_folders) if environ is None else environ.get(SCAN_ENV_VAR, "").split(os.pathsep)
    return _absolute(_option_values(argv, SCAN_OPTION) + listed)


def _below(path: bytes, root: bytes) -> Optional[tuple[bytes, list[bytes]]]:
    """``(folder opened as given, [names below it])`` for ``path`` under ``root``, or None if it is not
    plainly inside (relative, ``..``, ``.``, empty names)."""
    if not (path.startswith(b"/") and root.startswith(b"/")):
        return None
    root = root.rstrip(b"/") or b"/"
    if path == root:  # a scan of a single file: its folder is opened as given, the file without following
        base, name = os.path.split(root)
        parts = [name]
    else:
        prefix = root if root.endswith(b"/") else root + b"/"
        if not path.startswith(prefix):
            return None
        base, parts = root, path[len(prefix):].split(b"/")
    if not base or any(part in (b"", b".", b"..") for part in parts):
        return None
    return base, parts


def _open_below(base: bytes, parts: list[bytes]) -> Optional[int]:
    try:
        folder = os.open(base, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    except OSError:
        return None
    try:
        for name in parts[:-1]:
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC, dir_fd=folder)
            os.close(folder)
            folder = inner
        seen = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
        if not stat_module.S_ISREG(seen.st_mode):
            return None  # a pipe, device, socket, folder or symbolic link is never opened
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _NOCTTY | _CLOEXEC, dir_fd=folder)
    except OSError:
        return None
    finally:
        os.close(folder)
    info = os.fstat(fd)
    if not stat_module.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) != (seen.st_dev, seen.st_ino):
        os.close(fd)  # swapped between lstat and open
        return None
    return fd


def open_inside(path: str | bytes | os.PathLike, roots: Iterable[str | bytes | os.PathLike]) -> int:
    """A read-only descriptor of the regular file ``path``, reached from one of ``roots`` without following
    any symbolic link below the root; the caller closes it.

    Raises
    ------
    NotServable
        With :data:`CHANGED_OR_MOVED`, for every reason alike.
    """
    if not _SUPPORTED:
        raise NotServable("Playing library files is not supported on this platform (it needs O_NOFOLLOW "
                          "and directory descriptors); the stored results are shown below.")
    path = os.fsencode(path)
    for root in roots:
        found = _below(path, os.fsencode(root))
        if found is None:
            continue
        fd = _open_below(*found)
        if fd is not None:
            return fd
    raise NotServable(CHANGED_OR_MOVED)


def fingerprint_of_descriptor(fd: int, size: int) -> str:
    """:func:`~.store.fingerprint` (blake2b of the size and the first and last MiB) of an open regular file,
    read with ``pread`` so the descriptor's offset is neither used nor moved.

    :func:`~.store.fingerprint` opens a path; this reads the descriptor that was proven to be the scanned
    file, so no path is looked up again between the checks and the read. A test holds the two equal.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(size.to_bytes(8, "little"))

    def read(offset: int, count: int) -> bytes:
        chunks = []
        while count > 0:
            chunk = os.pread(fd, count, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            count -= len(chunk)
        return b"".join(chunks)

    digest.update(read(0, FINGERPRINT_EDGE))
    if size > 2 * FINGERPRINT_EDGE:
        digest.update(read(size - FINGERPRINT_EDGE, FINGERPRINT_EDGE))
    elif size > FINGERPRINT_EDGE:
        digest.update(read(FINGERPRINT_EDGE, size - FINGERPRINT_EDGE))
    return digest.hexdigest()


def _same_stat(info: os.stat_result, row: Mapping) -> bool:
    return stat_module.S_ISREG(info.st_mode) and (info.st_size, info.st_mtime_ns) == (row["size"], row["mtime_ns"])


def read_scanned(row: Mapping, roots: Iterable[str | bytes | os.PathLike], *, max_bytes: int) -> Optional[bytes]:
    """The bytes of a stored row's file, if it lies inside ``roots`` and is exactly the scanned file.

    Parameters
    ----------
    row : mapping
        A ``results`` row: ``path`` (bytes), ``size``, ``mtime_ns``, ``fingerprint``.
    roots : iterable of path-like
        The database's roots (:meth:`~.store.LibraryStore.roots`); none means nothing is read.
    max_bytes : int
        Larger files are checked but not read: the result is None.

    Raises
    ------
    NotServable
        With :data:`CHANGED_OR_MOVED` when the file is missing, outside the roots, reached through a
        symbolic link, not a regular file, or differs in size, mtime or fingerprint from the scan.
    """
    fd = open_inside(row["path"], roots)
    try:
        os.set_blocking(fd, True)
        if not _same_stat(os.fstat(fd), row):
            raise NotServable(CHANGED_OR_MOVED)
        # the fingerprint of this very descriptor (never the path again)
        if fingerprint_of_descriptor(fd, row["size"]) != row["fingerprint"]:
            raise NotServable(CHANGED_OR_MOVED)
        if row["size"] > max_bytes:
            return None
        chunks, offset = [], 0
        while offset < row["size"]:
            chunk = os.pread(fd, min(1 << 24, row["size"] - offset), offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        data = b"".join(chunks)
        if len(data) != row["size"] or not _same_stat(os.fstat(fd), row):
            raise NotServable(CHANGED_OR_MOVED)  # written to while it was read
        return data
    except OSError as exc:
        raise NotServable(CHANGED_OR_MOVED) from exc
    finally:
        os.close(fd)
