"""Write the stored genre into the files' own tags with mutagen, and undo it byte for byte.

Formats: mp3 (ID3v2 ``TCON``, and the ID3v1 genre byte when the file has an ID3v1 tag), flac /
ogg / opus (Vorbis comment ``GENRE``), m4a / mp4 (``©gen``). wav, aiff and au have no genre tag
that players agree on and are left alone.

What is guaranteed
------------------
* **Nothing is written without** ``write``: the dry run lists ``old -> new`` per file.
* **What is there is respected.** By default only files with no genre are filled; ``overwrite``
  replaces existing genres. Not-sure results are skipped unless ``include_not_sure``, songs outside
  the model's genres unless ``include_outside``; results below ``min_confidence`` are skipped. A file whose size or mtime differ from its row (changed
  since the scan), a hard-linked file (a copy would split its names) and a file owned by another
  user whose owner cannot be kept are skipped with a message. In mp3s the ID3v2 version stays
  (v2.3 stays v2.3, v2.4 stays v2.4, a new tag is v2.4; mutagen cannot write v2.2, which becomes
  v2.3), an existing ``TCON``'s text encoding stays (a new one is Latin-1, which every GTZAN
  label fits), ID3v1 fields are not folded into ID3v2, and an existing ID3v1 tag keeps every byte
  but its genre byte, which is set to the genre's number in the ID3v1 list, or 255 ("none", as
  mutagen writes) for a genre not in that list.
* **A file is never left half-written**, whatever instant the process dies: the new tag is
  written into a copy in the same folder (``.codefeature-tag-<hash>.tmp``; not an audio name, so
  a scan never takes it for music), which gets the original's mode, owner, extended attributes
  and, with ``keep_times``, its atime and mtime (by default the mtime becomes the time of the
  write, as Picard and beets' ``write`` do, so backup and sync tools see the change); the copy
  is fsynced, renamed over the original with :func:`os.replace`, and the folder is fsynced. A
  killed run leaves the old file or the new one, never a mix; its leftover copy is removed by the
  next ``write`` run.
* **The database says a file was tagged only once it is.** Before the rename the write is
  journalled as ``writing`` with an undo recipe and the whole-file hashes before and after; after
  the rename it becomes ``done`` together with the row's new size, mtime and fingerprint (so the
  next scan does not classify the file again). A run that finds a ``writing`` entry (an earlier
  run was killed) looks at the file: the new bytes make it ``done``, the old bytes drop the entry.
* **Undo gives back the original file byte for byte**: the recipe holds the original's bytes
  that the new file lacks (in practice its tag regions) and where the rest lies in the new file;
  it was checked against the original's hash before the rename, and the rebuilt file is checked
  again before it is renamed into place. A file that is not byte for byte what the write left
  (edited since) is refused with a message, never guessed at.

Concurrent ``tag`` runs on one database are refused (a lock file ``<db>-tag.lock`` beside it).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import mmap
import os
import re
import shutil
import stat as stat_module
import struct
import zlib
from dataclasses import dataclass
from typing import Callable, Optional

from ..errors import ConfigError, GenreError
from ..regular_file import open_regular
from .store import LibraryError, LibraryStore, fingerprint, readable

KINDS = {".mp3": "id3", ".flac": "vorbis", ".ogg": "vorbis", ".oga": "vorbis", ".opus": "vorbis",
         ".m4a": "mp4", ".mp4": "mp4"}
NO_TAG = "this format has no standard genre tag"
#: How a GTZAN label is written into a tag (the spelling players' genre lists use).
TAG_NAMES = {"hiphop": "Hip-Hop"}
#: Leftover copies of a killed run look like this (a dot-file with a non-audio extension).
TEMP_PREFIX = b".codefeature-tag-"
TEMP_SUFFIX = b".tmp"
TEMP_NAME = re.compile(rb"\.codefeature-tag-[0-9a-f]{16}\.tmp")
_CHUNK = 1 << 20
#: Block size of the undo recipe's search for unchanged runs.
_BLOCK = 1 << 14
#: Searches for a moved block before the recipe stops looking and keeps the rest as bytes.
_MAX_SEARCHES = 64


class TagError(GenreError):
    """A file that cannot be tagged safely; the message says why in plain words."""


class TagFormatError(GenreError, ValueError):
    """mutagen does not recognise the file's format: reported as an error, not a skip (not a TagError)."""


@dataclass
class TagChange:
    """One file's planned or done change. ``action``: write, restore, same, skip or error."""

    path: str
    action: str
    old: Optional[list] = None
    new: Optional[list] = None
    note: str = ""

    def line(self) -> str:
        if self.action in ("write", "restore", "same"):
            note = f" ({self.note})" if self.note else ""
            return f"{self.action:8s} {self.path}: genre {_show(self.old)} -> {_show(self.new)}{note}"
        return f"{self.action:8s} {self.path}: {self.note}"


def _show(value: Optional[list]) -> str:
    return "(none)" if not value else " / ".join(value)


def tag_name(genre: str) -> str:
    return TAG_NAMES.get(genre, genre.capitalize())


def tag_kind(path: bytes | str) -> Optional[str]:
    return KINDS.get(os.path.splitext(os.fsdecode(path))[1].lower())


def id3v1_genre(name: str) -> int:
    """``name``'s number in the ID3v1 genre list (case-insensitive), or 255 ("none") if absent."""
    from mutagen.id3 import TCON

    lowered = [g.lower() for g in TCON.GENRES[:255]]
    try:
        return lowered.index(name.lower())
    except ValueError:
        return 255


# ---------------------------------------------------------------- reading and editing tags


def read_genre(path: bytes | str, kind: str) -> Optional[list]:
    """The file's genre values as a player shows them, or ``None`` when it has none.

    For mp3 an ID3v2 ``TCON`` wins; without one, an ID3v1 genre byte counts (255 is none). The file is
    read only if it is a regular file, through the descriptor that was checked (a named pipe swapped in
    would otherwise hang the read)."""
    with os.fdopen(open_regular(path), "rb") as handle:
        if kind == "id3":
            from mutagen.id3 import ID3, ID3NoHeaderError

            try:
                tags = ID3(handle)
            except ID3NoHeaderError:
                tags = _v1_only(handle)
            frame = tags.get("TCON") if tags is not None else None
            values = [str(v) for v in frame.genres if str(v).strip()] if frame else []
            return values or None
        audio = _mutagen_class(handle, kind)(handle)
        if audio.tags is None:
            return None
        values = [str(v) for v in audio.tags.get("genre" if kind == "vorbis" else "\xa9gen", []) if str(v).strip()]
        return values or None


def _v1_only(handle):
    """An ID3v1-only file's fields as frames (``None`` without an ID3v1 tag); ``handle`` is open for reading."""
    from mutagen.id3._id3v1 import find_id3v1

    handle.seek(0)
    frames, _ = find_id3v1(handle)
    return frames


def _mutagen_class(name, kind: str):
    """The mutagen class that reads ``name`` (a path or an open file), chosen from the real file (the copy's
    name ends in .tmp)."""
    import mutagen
    from mutagen.id3 import ID3
    from mutagen.mp4 import MP4

    if kind == "id3":
        return ID3
    if kind == "mp4":
        return MP4
    audio = mutagen.File(name)
    if hasattr(name, "seek"):
        name.seek(0)
    if audio is None:
        raise TagFormatError("mutagen does not recognise this file")
    return type(audio)


def _edit_id3(name: str, values: list) -> None:
    """Set ``TCON`` in ``name``, keeping the ID3v2 version, the frame's encoding and the ID3v1 tag's bytes."""
    from mutagen.id3 import ID3, TCON, ID3NoHeaderError
    from mutagen.id3._id3v1 import find_id3v1

    with open(name, "rb") as handle:
        v1_frames, v1_offset = find_id3v1(handle)
        v1_raw = None
        if v1_frames is not None and v1_offset == -128:
            handle.seek(-128, os.SEEK_END)
            v1_raw = bytearray(handle.read(128))
    try:
        probe = ID3(name, load_v1=False, translate=False)
        version = 3 if probe.version[:2] in ((2, 2), (2, 3)) else 4
        # load again translated to the version written back; ID3v1 fields are not folded in
        tags = ID3(name, load_v1=False, v2_version=version)
    except ID3NoHeaderError:
        tags, version = ID3(), 4
    old = tags.getall("TCON")
    encoding = old[0].encoding if old else 0
    text = list(values)
    if encoding == 0:
        try:
            "".join(text).encode("latin-1")
        except UnicodeEncodeError:
            encoding = 1 if version == 3 else 3
    tags.delall("TCON")
    tags.add(TCON(encoding=encoding, text=text))
    tags.save(name, v1=1, v2_version=version)  # v1=1: an ID3v1 tag is rewritten only where one was
    if v1_raw is not None:
        # mutagen rebuilt the ID3v1 tag from the ID3v2 frames; put the file's own back, genre byte changed
        v1_raw[127] = id3v1_genre(text[0])
        with open(name, "r+b") as handle:
            handle.seek(-128, os.SEEK_END)
            if handle.read(3) == b"TAG":
                handle.seek(-128, os.SEEK_END)
                handle.write(bytes(v1_raw))


def _edit(name: str, kind: str, cls, values: list) -> None:
    """Set the genre of the file ``name`` (a copy) to ``values``; ``cls`` reads the format."""
    if kind == "id3":
        _edit_id3(name, values)
        return
    audio = cls(name)
    if audio.tags is None:
        audio.add_tags()
    if kind == "vorbis":
        existing = [k for k in audio.tags.keys() if k.lower() == "genre"]
        audio.tags[existing[0] if existing else "GENRE"] = list(values)
    else:
        audio.tags["\xa9gen"] = list(values)
    audio.save()


def _put_back(name: str, kind: str, cls, values: Optional[list]) -> None:
    """Set the genre of the copy ``name`` to ``values``, or remove it where ``values`` is empty."""
    if values:
        _edit(name, kind, cls, values)
        return
    if kind == "id3":
        from mutagen.id3 import ID3

        tags = ID3(name, load_v1=False, translate=False)
        tags.delall("TCON")
        tags.save(name, v1=1, v2_version=3 if tags.version[:2] in ((2, 2), (2, 3)) else 4)
        return
    audio = cls(name)
    for key in [k for k in (audio.tags or {}).keys() if k.lower() in ("genre", "\xa9gen")]:
        del audio.tags[key]
    audio.save()


def write_genre(path: bytes | str, kind: str, values: list, *, keep_times: bool = False) -> None:
    """Set one file's genre safely (a copy, fsync, rename; see the module notes), without a database."""
    _rewrite(os.fsencode(path), lambda temp, cls: _edit(os.fsdecode(temp), kind, cls, values), kind=kind,
             keep_times=keep_times)


# ---------------------------------------------------------------- the undo recipe


def _match_forward(a, ai: int, b, bi: int, limit: int) -> int:
    """How many bytes ``a[ai:]`` and ``b[bi:]`` share at their start (at most ``limit``)."""
    n, step = 0, _CHUNK
    while n < limit:
        k = min(step, limit - n)
        if a[ai + n:ai + n + k] == b[bi + n:bi + n + k]:
            n += k
        elif k == 1:
            break
        else:
            step = k // 2
    return n


def _match_backward(a, ai: int, b, bi: int, limit: int) -> int:
    """How many bytes ``a[:ai]`` and ``b[:bi]`` share at their end (at most ``limit``)."""
    n, step = 0, _CHUNK
    while n < limit:
        k = min(step, limit - n)
        if a[ai - n - k:ai - n] == b[bi - n - k:bi - n]:
            n += k
        elif k == 1:
            break
        else:
            step = k // 2
    return n


def make_undo(old, new) -> bytes:
    """A recipe that rebuilds ``old`` from ``new`` (bytes-like, e.g. mmaps of the two files).

    A list of copies from ``new`` and literal bytes of ``old``: a tag edit changes a few regions
    and moves the rest, so the literals are about the size of the old tag regions. Runs of at least
    one block are found where they were last seen (the same shift) or, a bounded number of times,
    anywhere in ``new``; anything not found is kept as literal bytes, so the recipe is always right
    (only larger). Returned zlib-compressed.
    """
    ops = bytearray()
    covered = p = shift = searches = 0
    size_old, size_new = len(old), len(new)
    while p + _BLOCK <= size_old:
        block = old[p:p + _BLOCK]
        q = p + shift
        if not (0 <= q <= size_new - _BLOCK and new[q:q + _BLOCK] == block):
            q = -1
            if searches < _MAX_SEARCHES:
                searches += 1
                q = new.find(block)
        if q < 0:
            p += _BLOCK
            continue
        back = _match_backward(old, p, new, q, min(p - covered, q))
        ahead = _match_forward(old, p, new, q, min(size_old - p, size_new - q))
        start = p - back
        if start > covered:
            ops += b"L" + struct.pack("<Q", start - covered) + old[covered:start]
        ops += b"C" + struct.pack("<QQ", q - back, back + ahead)
        covered = p = p + ahead
        shift = q - (p - ahead)
    if covered < size_old:
        ops += b"L" + struct.pack("<Q", size_old - covered) + old[covered:]
    return zlib.compress(bytes(ops), 6)


def apply_undo(recipe: bytes, new, sink: Callable[[bytes], object]) -> None:
    """Feed ``sink`` the old file's bytes, rebuilt from ``recipe`` and ``new`` (bytes-like)."""
    ops = zlib.decompress(recipe)
    i = 0
    while i < len(ops):
        op = ops[i:i + 1]
        if op == b"L":
            (length,) = struct.unpack_from("<Q", ops, i + 1)
            sink(ops[i + 9:i + 9 + length])
            i += 9 + length
        elif op == b"C":
            start, length = struct.unpack_from("<QQ", ops, i + 1)
            if start + length > len(new):
                raise TagError("the undo recipe does not fit the file")
            for at in range(start, start + length, _CHUNK):
                sink(new[at:min(at + _CHUNK, start + length)])
            i += 17
        else:
            raise TagError("the stored undo recipe is damaged")


def _hash_of(data) -> str:
    digest = hashlib.blake2b(digest_size=32)
    for at in range(0, len(data), _CHUNK):
        digest.update(data[at:at + _CHUNK])
    return digest.hexdigest()


def file_hash(path: bytes | str) -> tuple[int, str]:
    """``(size, blake2b)`` of a whole file."""
    digest = hashlib.blake2b(digest_size=32)
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _mapped(handle):
    """An mmap of an open file (``b""`` when it is empty: an empty file cannot be mapped)."""
    size = os.fstat(handle.fileno()).st_size
    return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""


# ---------------------------------------------------------------- the safe rewrite


def temp_path(real: bytes) -> bytes:
    """The copy's name for ``real``: fixed per file, so a killed run's copy is found again."""
    folder, name = os.path.split(real)
    return os.path.join(folder, TEMP_PREFIX + hashlib.blake2b(name, digest_size=8).hexdigest().encode() + TEMP_SUFFIX)


def _fsync_folder(folder: bytes) -> None:
    fd = os.open(folder or b".", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: bytes) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _open_regular(path: bytes) -> tuple[int, os.stat_result]:
    """Open ``path`` for reading without blocking on a FIFO, and insist on a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise TagError(f"cannot open it: {exc.strerror or exc}") from exc
    info = os.fstat(fd)
    if not stat_module.S_ISREG(info.st_mode):
        os.close(fd)
        raise TagError("not a regular file; left alone")
    return fd, info


def _same_file(path: bytes, info: os.stat_result) -> bool:
    try:
        now = os.stat(path)
    except OSError:
        return False
    return (now.st_ino, now.st_dev, now.st_size, now.st_mtime_ns) == (info.st_ino, info.st_dev, info.st_size,
                                                                     info.st_mtime_ns)


def _dress(temp: bytes, source: bytes, info: os.stat_result, *, keep_times: bool) -> None:
    """Give the copy the original's owner, mode, extended attributes and (if asked) times."""
    if (info.st_uid, info.st_gid) != (os.geteuid(), os.getegid()):
        try:
            os.chown(temp, info.st_uid, info.st_gid)
        except PermissionError:
            try:  # a file of ours in a group we are in: the group can still be kept
                if info.st_uid != os.geteuid():
                    raise
                os.chown(temp, -1, info.st_gid)
            except PermissionError as exc:
                raise TagError("it belongs to another user or group, which a rewritten copy could not keep; "
                               "tag it as that user") from exc
    shutil.copystat(source, temp)   # mode (after chown, which may clear set-id bits), xattrs, times
    if not keep_times:
        os.utime(temp)


class _Hasher:
    """A sink that hashes, counts and optionally writes what it is fed."""

    def __init__(self, target=None):
        self.digest = hashlib.blake2b(digest_size=32)
        self.size = 0
        self.target = target

    def __call__(self, piece) -> None:
        self.digest.update(piece)
        self.size += len(piece)
        if self.target is not None:
            self.target.write(piece)

    def result(self) -> tuple[int, str]:
        return self.size, self.digest.hexdigest()


def _rewrite(real: bytes, fill: Optional[Callable], *, kind: str, keep_times: bool,
             journal: Optional[Callable] = None, recipe: Optional[bytes] = None, expect: Optional[tuple] = None,
             target: Optional[tuple] = None) -> tuple:
    """Replace the file ``real`` by a new version built beside it: the core of write and undo.

    Write (no ``recipe``): copy ``real`` to its temp name and let ``fill(temp, cls)`` edit the copy
    with mutagen; an undo recipe is made and checked to rebuild the original. Undo: ``real`` must be
    ``expect`` ``(size, hash)``; the temp is rebuilt from it with ``recipe`` and must be ``target``.
    Then the copy is dressed and fsynced; ``journal(before, after, undo, temp)`` commits the intent
    and returns a function that withdraws it; the original is checked to be still the file opened,
    the copy is renamed over it and the folder fsynced. Returns ``(before, after, stat)``.
    """
    temp = temp_path(real)
    _remove(temp)   # a killed run's copy of this same file
    fd, info = _open_regular(real)
    withdraw = None
    try:
        if info.st_nlink > 1:
            raise TagError(f"it has {info.st_nlink} hard links; a rewritten copy would split them, so it is left "
                           "alone")
        cls = _mutagen_class(os.fsdecode(real), kind) if recipe is None else None
        try:
            out = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise TagError(f"cannot write a copy beside it ({exc.strerror or exc}); tags are written into a copy "
                           "in the same folder, then renamed over the file") from exc
        try:
            with os.fdopen(fd, "rb", closefd=False) as source, os.fdopen(out, "r+b", closefd=False) as copy:
                original = _mapped(source)
                try:
                    if recipe is None:
                        before = (len(original), _hash_of(original))
                        for at in range(0, len(original), _CHUNK):
                            copy.write(original[at:at + _CHUNK])
                        copy.flush()
                        fill(temp, cls)
                        with open(temp, "rb") as check:
                            made = _mapped(check)
                            try:
                                after = (len(made), _hash_of(made))
                                undo = make_undo(original, made)
                                rebuilt = _Hasher()
                                apply_undo(undo, made, rebuilt)
                            finally:
                                if isinstance(made, mmap.mmap):
                                    made.close()
                        if rebuilt.result() != before:
                            raise TagError("internal check failed: the undo recipe does not rebuild the file; "
                                           "left alone")
                    else:
                        before = (len(original), _hash_of(original))
                        if before != expect:
                            raise TagError("it changed since the tag was written (it is not byte for byte what "
                                           "the write left); left alone")
                        rebuilt = _Hasher(copy)
                        apply_undo(recipe, original, rebuilt)
                        copy.flush()
                        after, undo = rebuilt.result(), recipe
                        if after != target:
                            raise TagError("the rebuilt file does not match the original's checksum; left alone")
                finally:
                    if isinstance(original, mmap.mmap):
                        original.close()
            _dress(temp, real, info, keep_times=keep_times)
            os.fsync(out)
        finally:
            os.close(out)
        if journal is not None:
            withdraw = journal(before, after, undo, temp)
        if not _same_file(real, info):
            raise TagError("it changed while it was being tagged; left alone")
        os.replace(temp, real)
        withdraw = None
        _fsync_folder(os.path.dirname(real))
    except BaseException:
        _remove(temp)
        if withdraw is not None:
            withdraw()
        raise
    finally:
        os.close(fd)
    return before, after, os.stat(real)


# ---------------------------------------------------------------- runs over the database


class _RunLock:
    """One ``tag`` run per database at a time: the journal's recovery must not judge a live run's files."""

    def __init__(self, store: LibraryStore):
        self.path = os.fspath(store.path) + "-tag.lock"
        self.fd = None

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self.fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LibraryError("another `tag` run is using this database; wait for it to finish") from exc
            raise
        return self

    def __exit__(self, *exc_info):
        os.close(self.fd)   # closing drops the lock; the file stays (removing it would race a waiting run)


def _stat_of(path: bytes, info: os.stat_result) -> tuple:
    return path, info.st_size, info.st_mtime_ns, fingerprint(path, info.st_size)


def recover(store: LibraryStore, *, write: bool = False) -> list[TagChange]:
    """Settle the journal entries a killed run left (``writing``, ``undoing``) by looking at the files.

    Only the database is changed, and only to say what is on disk; with ``write`` the killed run's
    leftover copies are removed too."""
    notes = []
    for entry in store.tag_writes("writing", "undoing"):
        path = entry["path"]
        try:
            now = file_hash(os.path.realpath(path))
        except OSError:
            now = None
        before = (entry["size_before"], entry["hash_before"])
        after = (entry["size_after"], entry["hash_after"])
        if now == after:
            state = "done"
        elif now == before:
            state = "undone" if entry["state"] == "undoing" else None
        else:
            state = "lost"
        if state is None:
            store.tag_drop(entry["id"])
        else:
            store.tag_state(entry["id"], state, stat=_stat_of(path, os.stat(path)) if now is not None else None)
        if state == "lost":
            notes.append(TagChange(entry["path_text"], "error", note="an interrupted tag write left this file neither "
                                   "as it was nor as written (changed by something else?); its undo is dropped"))
        if write:
            _remove(entry["temp"])
    return notes


def _sweep(folders: set[bytes]) -> None:
    """Remove copies that killed runs left in ``folders`` (only names this module makes)."""
    for folder in folders:
        try:
            with os.scandir(folder) as listing:
                stale = [e.path for e in listing if TEMP_NAME.fullmatch(e.name) and e.is_file(follow_symlinks=False)]
        except OSError:
            continue
        for path in stale:
            _remove(path)


def _unchanged(row: dict) -> bool:
    try:
        info = os.stat(row["path"])
    except OSError:
        return False
    return (info.st_size, info.st_mtime_ns) == (row["size"], row["mtime_ns"])


def apply_tags(store: LibraryStore, *, model: str, write: bool = False, include_not_sure: bool = False,
               include_outside: bool = False, overwrite: bool = False, min_confidence: float = 0.0,
               keep_times: bool = False) -> list[TagChange]:
    """Plan (and with ``write``, do) a genre tag for each of ``model``'s results.

    Parameters
    ----------
    store : LibraryStore
    model : str
    write : bool
        Change files; otherwise only list ``old -> new``.
    include_not_sure : bool
        Also tag results that are not sure (with the best guess).
    include_outside : bool
        Also tag songs the model placed outside its genres (state ``"outside"``) with its best guess;
        without it they are never tagged, whatever ``include_not_sure`` says: their "genre" is only
        the nearest of genres the song is not in.
    overwrite : bool
        Replace genres the files already have; by default only empty genres are filled.
    min_confidence : float
        Skip results whose confidence (the winner's mean probability, 0..1) is below this.
    keep_times : bool
        Give the rewritten file the original's atime and mtime (default: the mtime of the write).
    """
    import mutagen

    if not 0.0 <= min_confidence <= 1.0:
        raise ConfigError(f"--min-confidence must be between 0 and 1 (a probability such as 0.5), not {min_confidence}")
    with _RunLock(store):
        changes = recover(store, write=write)
        rows = [row for row in store.rows(model, with_segments=False) if row["status"] == "ok"]
        if write:
            _sweep({os.path.dirname(os.path.realpath(row["path"])) for row in rows})
        for row in rows:
            shown = row["path_text"]
            kind = tag_kind(row["path"])
            if kind is None:
                changes.append(TagChange(shown, "skip", note=NO_TAG))
                continue
            if row.get("state") == "outside":
                if not include_outside:
                    changes.append(TagChange(shown, "skip", note=f"{row['verdict']}; --include-outside tags it "
                                                                 f"with the nearest genre, {row['genre']}"))
                    continue
            elif row["not_sure"] and not include_not_sure:
                changes.append(TagChange(shown, "skip", note=f"{row['verdict']} ({'; '.join(row['reasons'])}); "
                                                             "--include-not-sure tags it with the best guess"))
                continue
            if row["confidence"] < min_confidence:
                changes.append(TagChange(shown, "skip", note=f"{row['genre']} at {row['confidence']:.0%} is below "
                                                             f"--min-confidence {min_confidence:.0%}"))
                continue
            if not _unchanged(row):
                changes.append(TagChange(shown, "skip", note="changed or gone since the scan; scan again first"))
                continue
            new = [tag_name(row["genre"])]
            try:
                old = read_genre(row["path"], kind)
                if old == new:
                    changes.append(TagChange(shown, "same", old, new))
                    continue
                if old and not overwrite:
                    changes.append(TagChange(shown, "skip", old, new, note=f"has a genre already ({_show(old)}); "
                                                                          f"--overwrite replaces it with {new[0]}"))
                    continue
                if write:
                    _write_one(store, row, model=model, kind=kind, old=old, new=new, keep_times=keep_times)
            except TagError as exc:
                changes.append(TagChange(shown, "skip", old=None, new=new, note=str(exc)))
                continue
            except (OSError, ValueError, mutagen.MutagenError) as exc:
                changes.append(TagChange(shown, "error", note=f"could not {'write' if write else 'read'} its tags: "
                                                              f"{exc}"))
                continue
            changes.append(TagChange(shown, "write", old, new))
    return changes


def _write_one(store: LibraryStore, row: dict, *, model: str, kind: str, old, new: list, keep_times: bool) -> None:
    path = row["path"]
    ids = []

    def journal(before, after, undo, temp):
        ids.append(store.tag_begin(path=path, model=model, kind=kind, old_value=old, new_value=new, undo=undo,
                                   before=before, after=after, temp=temp))
        return lambda: store.tag_drop(ids[0])

    _, _, info = _rewrite(os.fsencode(os.path.realpath(path)), lambda temp, cls: _edit(os.fsdecode(temp), kind, cls, new),
                          kind=kind, keep_times=keep_times, journal=journal)
    store.tag_state(ids[0], "done", stat=_stat_of(path, info))


def undo_tags(store: LibraryStore, *, write: bool = False, keep_times: bool = False) -> list[TagChange]:
    """Plan (and with ``write``, do) giving back each tagged file's bytes from before the write, newest first.

    A file that is not byte for byte what the write left is refused with a message."""
    import mutagen

    with _RunLock(store):
        changes = recover(store, write=write)
        entries = store.tag_writes("done")
        if write:
            _sweep({os.path.dirname(os.path.realpath(entry["path"])) for entry in store.tag_writes()})
        for entry in entries:
            path, shown = entry["path"], entry["path_text"]
            expect = (entry["size_after"], entry["hash_after"])
            target = (entry["size_before"], entry["hash_before"])
            try:
                real = os.fsencode(os.path.realpath(path))
                try:
                    now = file_hash(real)
                except OSError as exc:
                    raise TagError(f"cannot read it ({exc.strerror or exc}); left alone") from exc
                if now != expect:
                    raise TagError("it changed since the tag was written (its size or checksum differ from what "
                                   "the write left); left alone")
                if write:
                    def journal(before, after, undo, temp, change_id=entry["id"]):
                        store.tag_state(change_id, "undoing")
                        return lambda: store.tag_state(change_id, "done")

                    _, _, info = _rewrite(real, None, kind=entry["kind"], keep_times=keep_times, journal=journal,
                                          recipe=entry["undo"], expect=expect, target=target)
                    store.tag_state(entry["id"], "undone", stat=_stat_of(path, info))
            except TagError as exc:
                changes.append(TagChange(shown, "skip", note=str(exc)))
                continue
            except (OSError, ValueError, mutagen.MutagenError) as exc:
                changes.append(TagChange(shown, "error", note=f"could not restore it: {exc}"))
                continue
            changes.append(TagChange(shown, "restore", entry["new_value"], entry["old_value"]))
        changes += _undo_legacy(store, write=write, keep_times=keep_times)
    return changes


def _undo_legacy(store: LibraryStore, *, write: bool, keep_times: bool) -> list[TagChange]:
    """Writes recorded by versions before the journal kept the genre they replaced, not the bytes: put that
    genre back (safely, as every write), and say that the file's bytes may differ from the original's."""
    import mutagen

    changes = []
    for change in store.legacy_tag_changes():
        path, shown, kind = change["path"], change["path_text"], change["kind"]
        try:
            current = read_genre(path, kind)
            if current != [change["new_value"]]:
                changes.append(TagChange(shown, "skip", note=f"its genre is now {_show(current)}, not what was "
                                                             f"written ({change['new_value']}); left alone"))
                continue
            if write:
                old = change["old_value"]
                _, _, info = _rewrite(os.fsencode(os.path.realpath(path)),
                                      lambda temp, cls: _put_back(os.fsdecode(temp), kind, cls, old),
                                      kind=kind, keep_times=keep_times)
                store.legacy_tag_undone(change["id"], stat=_stat_of(path, info))
        except TagError as exc:
            changes.append(TagChange(shown, "skip", note=str(exc)))
            continue
        except (OSError, ValueError, mutagen.MutagenError) as exc:
            changes.append(TagChange(shown, "error", note=f"could not restore it: {exc}"))
            continue
        changes.append(TagChange(shown, "restore", current, change["old_value"],
                                 note="tagged by an earlier version, which kept the genre it replaced but not the "
                                      "bytes: the genre is back, the tag's layout may differ"))
    return changes


__all__ = ["apply_tags", "undo_tags", "recover", "read_genre", "write_genre", "tag_kind", "tag_name", "id3v1_genre",
           "make_undo", "apply_undo", "file_hash", "temp_path", "TagChange", "TagError", "readable"]
