"""Open a person's file only if it is a regular file, and read it through that very descriptor.

A music folder can hold things that are not files: a named pipe (opening it for reading waits
for a writer that never comes; reading it waits for data), a device (``/dev/zero`` never ends),
a socket. A file can also be swapped for one of those between the moment it is looked at and the
moment it is read. So a file is opened non-blocking (opening a pipe then returns at once), the
*descriptor* is checked with ``fstat``, and every later read goes through that descriptor, or
through :func:`fd_path`, which names the same open file: nothing is opened by name twice.
"""

from __future__ import annotations

import os
import stat
from typing import Optional

from .errors import NotRegularFileError

_KINDS = ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"),
          (stat.S_ISLNK, "a symbolic link"))


def file_kind(mode: int) -> str:
    """``mode``'s kind of file in words ("a named pipe", "a character device", ..., "a regular file")."""
    if stat.S_ISREG(mode):
        return "a regular file"
    for test, words in _KINDS:
        if test(mode):
            return words
    return "not a file"


def not_regular_message(name: str, mode: int) -> str:
    if stat.S_ISDIR(mode):
        return f"{name} is a folder, not a file"
    return f"{name} is not a regular file ({file_kind(mode)}); it was not read"


def open_regular(path: str | bytes | os.PathLike, *, follow_symlinks: bool = True,
                 name: Optional[str] = None) -> int:
    """A read-only descriptor of ``path``, which is proven to be a regular file.

    Parameters
    ----------
    path : path-like or bytes
    follow_symlinks : bool
        With ``False``, a symlink as the last component is refused (``O_NOFOLLOW``).
    name : str, optional
        How the file is named in the message; default: the path.

    Returns
    -------
    int
        A blocking, close-on-exec descriptor; the caller closes it.

    Raises
    ------
    NotRegularFileError
        If ``path`` is a named pipe, a device, a socket, a folder, or (without following) a symlink.
    OSError
        If it cannot be opened (missing, permission denied).
    """
    shown = name if name is not None else os.fsdecode(path)
    # a look first, so that a device is usually refused without even being opened (opening some
    # devices does something, a tape rewinds); the fstat below is what decides
    info = os.stat(path, follow_symlinks=follow_symlinks)
    if not stat.S_ISREG(info.st_mode):
        raise NotRegularFileError(not_regular_message(shown, info.st_mode))
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if not follow_symlinks and os.path.islink(path):  # swapped for a symlink since the look: ELOOP
            raise NotRegularFileError(not_regular_message(shown, stat.S_IFLNK)) from exc
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFileError(not_regular_message(shown, info.st_mode))
        if getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)  # a regular file: reads behave as usual from here
    except BaseException:
        os.close(fd)
        raise
    return fd


def fd_path(fd: int) -> Optional[str]:
    """A name that opens the same file as the open descriptor ``fd`` (``/dev/fd/N``), or ``None``
    where the system has none.

    Opening it reaches the file ``fd`` refers to, not whatever its old name points at now, so a
    decoder (libsndfile, or an ffmpeg child given ``fd`` with ``pass_fds``) reads exactly the file
    that was checked.
    """
    if os.name == "posix" and os.path.isdir("/dev/fd"):
        return f"/dev/fd/{fd}"
    return None
