"""Write the stored genre into the files' own tags with mutagen, and undo it.

Formats: mp3 (ID3 ``TCON``), flac / ogg / opus (Vorbis comment ``GENRE``), m4a / mp4 (``©gen``).
wav, aiff and au have no genre tag that players agree on and are left alone.

Safety: a dry run unless ``write``; not-sure results are skipped unless ``include_not_sure``; a
file whose size or mtime differ from its row (changed since the scan) is skipped; mutagen rewrites
only the metadata (ID3 header, FLAC metadata blocks, the Ogg comment packet, the MP4 ``moov``
atom), never the audio frames. Before each write the previous value is stored in the database's
``tag_changes`` table, so :func:`undo_tags` can put it back, and after it the row's size, mtime
and fingerprint are updated, so the next scan does not classify the file again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from .store import LibraryStore, fingerprint, readable

KINDS = {".mp3": "id3", ".flac": "vorbis", ".ogg": "vorbis", ".oga": "vorbis", ".opus": "vorbis",
         ".m4a": "mp4", ".mp4": "mp4"}
NO_TAG = "this format has no standard genre tag"
#: How a GTZAN label is written into a tag (the spelling players' genre lists use).
TAG_NAMES = {"hiphop": "Hip-Hop"}


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
            return f"{self.action:8s} {self.path}: genre {_show(self.old)} -> {_show(self.new)}"
        return f"{self.action:8s} {self.path}: {self.note}"


def _show(value: Optional[list]) -> str:
    return "(none)" if not value else " / ".join(value)


def tag_name(genre: str) -> str:
    return TAG_NAMES.get(genre, genre.capitalize())


def tag_kind(path: bytes | str) -> Optional[str]:
    return KINDS.get(os.path.splitext(os.fsdecode(path))[1].lower())


def read_genre(path: bytes | str, kind: str) -> Optional[list]:
    """The file's genre values, or ``None`` when it has no genre tag."""
    name = os.fsdecode(path)
    if kind == "id3":
        from mutagen.id3 import ID3, ID3NoHeaderError

        try:
            frame = ID3(name).get("TCON")
        except ID3NoHeaderError:
            return None
        return [str(v) for v in frame.genres] if frame else None
    audio = _open(name, kind)
    if audio.tags is None:
        return None
    values = audio.tags.get("genre" if kind == "vorbis" else "\xa9gen")
    return [str(v) for v in values] if values else None


def write_genre(path: bytes | str, kind: str, values: Optional[list]) -> None:
    """Set (or, with ``None``, remove) the file's genre tag; only the metadata is rewritten."""
    name = os.fsdecode(path)
    if kind == "id3":
        from mutagen.id3 import ID3, TCON, ID3NoHeaderError

        try:
            tags = ID3(name)
        except ID3NoHeaderError:
            tags = ID3()
        tags.delall("TCON")
        if values:
            tags.add(TCON(encoding=3, text=list(values)))
        # keep an ID3v2.3 tag v2.3: some players read nothing newer
        tags.save(name, v2_version=3 if tags.version[:2] == (2, 3) else 4)
        return
    audio = _open(name, kind)
    if audio.tags is None:
        audio.add_tags()
    key = "genre" if kind == "vorbis" else "\xa9gen"
    if values:
        audio.tags[key] = list(values)
    elif key in audio.tags:
        del audio.tags[key]
    audio.save()


def _open(name: str, kind: str):
    import mutagen
    from mutagen.mp4 import MP4

    audio = MP4(name) if kind == "mp4" else mutagen.File(name)
    if audio is None:
        raise ValueError("mutagen does not recognise this file")
    return audio


def _unchanged(row: dict) -> bool:
    try:
        info = os.stat(row["path"])
    except OSError:
        return False
    return (info.st_size, info.st_mtime_ns) == (row["size"], row["mtime_ns"])


def _after_write(store: LibraryStore, path: bytes) -> None:
    info = os.stat(path)
    store.update_stat(path, size=info.st_size, mtime_ns=info.st_mtime_ns, fp=fingerprint(path, info.st_size))


def apply_tags(store: LibraryStore, *, model: str, write: bool = False, include_not_sure: bool = False) -> list[TagChange]:
    """Plan (and with ``write``, do) a genre tag for each of ``model``'s results."""
    import mutagen

    changes = []
    for row in store.rows(model, with_segments=False):
        shown = row["path_text"]
        if row["status"] != "ok":
            continue
        kind = tag_kind(row["path"])
        if kind is None:
            changes.append(TagChange(shown, "skip", note=NO_TAG))
            continue
        if row["not_sure"] and not include_not_sure:
            changes.append(TagChange(shown, "skip", note=f"{row['verdict']} ({'; '.join(row['reasons'])}); "
                                                         "--include-not-sure tags it with the best guess"))
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
            if write:
                # the old value is stored first: a crash between the two leaves an undo that is harmless
                store.add_tag_change(path=row["path"], model=model, kind=kind, old_value=old, new_value=new[0])
                write_genre(row["path"], kind, new)
                _after_write(store, row["path"])
        except (OSError, ValueError, mutagen.MutagenError) as exc:
            changes.append(TagChange(shown, "error", note=f"could not {'write' if write else 'read'} its tags: {exc}"))
            continue
        changes.append(TagChange(shown, "write", old, new))
    return changes


def undo_tags(store: LibraryStore, *, write: bool = False) -> list[TagChange]:
    """Plan (and with ``write``, do) putting back the values replaced by earlier writes, newest first."""
    import mutagen

    changes = []
    for change in store.pending_undo():
        path, shown = change["path"], change["path_text"]
        kind = change["kind"]
        try:
            current = read_genre(path, kind)
            if current != [change["new_value"]]:
                changes.append(TagChange(shown, "skip", note=f"its genre is now {_show(current)}, not what was "
                                                             f"written ({change['new_value']}); left alone"))
                continue
            if write:
                write_genre(path, kind, change["old_value"])
                store.mark_undone(change["id"])
                _after_write(store, path)
        except (OSError, ValueError, mutagen.MutagenError) as exc:
            changes.append(TagChange(shown, "error", note=f"could not restore its tags: {exc}"))
            continue
        changes.append(TagChange(shown, "restore", current, change["old_value"]))
    return changes


__all__ = ["apply_tags", "undo_tags", "read_genre", "write_genre", "tag_kind", "tag_name", "TagChange", "readable"]
