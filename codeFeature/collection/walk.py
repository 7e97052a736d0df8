"""Walking a folder for audio-looking files.

Which files count: a name ending in one of :data:`AUDIO_EXTENSIONS` (case-insensitive) is
"audio-looking" and always ends as a row, a result or a readable error (an empty file, a broken
one, a pipe named ``x.mp3``, a dangling symlink). Anything else is left alone without being opened:
guessing audio from the content of every file in a home folder would read far too much, and a
music collection names its files.

The walk follows symlinks to folders but never enters a folder twice (it keeps each folder's
``(st_dev, st_ino)``), so symlink loops end at once, and a file reached by two names (a symlink
or a hard link) is classified once, under the first name in sorted order. Names are handled as the
file system's bytes, so names in any encoding work.
"""

from __future__ import annotations

import os
import stat as stat_module
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional

from ..audio import SUPPORTED_EXTENSIONS
from ..regular_file import file_kind
from .store import LibraryError

#: Extensions of audio-looking files: everything :mod:`codeFeature.audio` decodes (the ffmpeg ones
#: too: without ffmpeg they end as an error row that says to install it).
AUDIO_EXTENSIONS = tuple(sorted(set(SUPPORTED_EXTENSIONS)))


class RootNotFoundError(LibraryError, FileNotFoundError):
    """The folder (or file) to scan is not there."""


@dataclass
class Found:
    """An audio-looking file the walk found.

    Attributes
    ----------
    path : bytes
        Absolute path, as the file system's bytes.
    size, mtime_ns : int
        From ``stat`` (0 when ``problem`` is set).
    problem : str or None
        Why the file cannot be read at all (a dangling symlink, a pipe); it is stored as an error.
    """

    path: bytes
    size: int = 0
    mtime_ns: int = 0
    problem: Optional[str] = None


@dataclass
class WalkStats:
    folders: int = 0
    audio_files: int = 0
    other_files: int = 0
    loops_avoided: int = 0
    same_file_twice: int = 0
    unreadable_folders: list = field(default_factory=list)
    #: The library database's own files met in the walk (``x.sqlite``, ``-wal``, ``-shm``, ``-journal``,
    #: ``-tag.lock``): neither audio nor "other files left alone".
    own_files: int = 0


#: Files SQLite and the ``tag`` command keep beside a database, by suffix of its name.
DATABASE_COMPANIONS = (b"", b"-wal", b"-shm", b"-journal", b"-tag.lock")


def database_files(db: str | os.PathLike) -> Optional[tuple[tuple[int, int], frozenset]]:
    """``((st_dev, st_ino) of the database's folder, {its file names})``, to tell :func:`walk` which files
    are the database's own; None when its folder cannot be looked at."""
    path = os.fsencode(os.path.abspath(os.fspath(db)))
    folder, name = os.path.split(path)
    try:
        info = os.stat(folder)
    except OSError:
        return None
    return (info.st_dev, info.st_ino), frozenset(name + suffix for suffix in DATABASE_COMPANIONS)


def walk(root: str | bytes | os.PathLike, *, stats: Optional[WalkStats] = None,
         extensions: Iterable[str] = AUDIO_EXTENSIONS,
         own_files: Optional[tuple[tuple[int, int], frozenset]] = None) -> Iterator[Found]:
    """The audio-looking files under ``root`` (or ``root`` itself when it is a file), in sorted order.

    Parameters
    ----------
    root : path-like or bytes
    stats : WalkStats, optional
        Filled with counts of what was seen and left alone.
    extensions : iterable of str
        Lower-case extensions with the dot.
    own_files : tuple, optional
        :func:`database_files` of the library database: when the database lies inside ``root``, its
        files are counted as ``stats.own_files``, never as audio or as other files.

    Yields
    ------
    Found
    """
    stats = stats if stats is not None else WalkStats()
    wanted = {os.fsencode(e.lower()) for e in extensions}
    top = os.fsencode(os.path.abspath(os.fsdecode(root)))
    seen_folders: set = set()
    seen_files: set = set()

    def entry(path: bytes, name: bytes, folder_key=None) -> Optional[Found]:
        if own_files is not None and folder_key == own_files[0] and name in own_files[1]:
            stats.own_files += 1
            return None
        if os.path.splitext(name)[1].lower() not in wanted:
            stats.other_files += 1
            return None
        stats.audio_files += 1
        try:
            info = os.stat(path)
        except OSError as exc:
            return Found(path, problem=f"cannot read the file: {exc.strerror or exc} (a broken symlink?)")
        if not stat_module.S_ISREG(info.st_mode):
            return Found(path, problem=f"not a regular file ({file_kind(info.st_mode)}); it was not opened")
        key = (info.st_dev, info.st_ino)
        if key in seen_files:
            stats.same_file_twice += 1
            return None
        seen_files.add(key)
        return Found(path, info.st_size, info.st_mtime_ns)

    try:
        info = os.stat(top)
    except OSError as exc:
        raise RootNotFoundError(f"{os.fsdecode(top)}: {exc.strerror or exc}") from exc
    if not stat_module.S_ISDIR(info.st_mode):
        found = entry(top, os.path.basename(top))  # a file named on purpose is scanned, whatever it is
        if found is not None:
            yield found
        return
    stack = [top]
    while stack:
        folder = stack.pop()
        try:
            info = os.stat(folder)
            key = (info.st_dev, info.st_ino)
            if key in seen_folders:
                stats.loops_avoided += 1
                continue
            seen_folders.add(key)
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            stats.unreadable_folders.append((folder, exc.strerror or str(exc)))
            continue
        stats.folders += 1
        subfolders = []
        for item in entries:
            try:
                is_dir = item.is_dir()  # follows symlinks; loops end at the seen_folders check
            except OSError:
                is_dir = False
            if is_dir:
                subfolders.append(item.path)
                continue
            found = entry(item.path, item.name, key)
            if found is not None:
                yield found
        stack.extend(reversed(subfolders))
