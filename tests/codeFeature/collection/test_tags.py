"""Tag writes: byte-exact undo, survival of SIGKILL at any instant, and respect for the tags already there.

Real files are made with ffmpeg (imageio-ffmpeg's binary) and mutagen; the database rows are written
directly with ``LibraryStore.put`` (no model runs here).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codeFeature.collection.store import LibraryStore, fingerprint
from codeFeature.collection.tags import (TEMP_NAME, apply_tags, file_hash, id3v1_genre, read_genre, temp_path,
                                      undo_tags)
from tests.conftest import REPO

MODEL = "tiny"


def _ffmpeg() -> str:
    from codeFeature.audio import find_ffmpeg

    found = find_ffmpeg()
    if not found:
        pytest.skip("ffmpeg is not available (pip install imageio-ffmpeg)")
    return found


def _encode(path: Path, seconds: float, *args: str) -> Path:
    subprocess.run([_ffmpeg(), "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency=440:duration={seconds}", "-ac", "2", *args, str(path)], check=True, timeout=60)
    return path


def _mp3(path: Path, seconds: float = 3.0) -> Path:
    """An mp3 with no tag at all (ffmpeg writes none with -id3v2_version 0 -write_id3v1 0)."""
    return _encode(path, seconds, "-c:a", "libmp3lame", "-b:a", "128k", "-id3v2_version", "0", "-write_id3v1", "0")


def _v1_block(genre: int, title: bytes = b"A title") -> bytes:
    """An ID3v1.1 tag (128 bytes)."""
    return (b"TAG" + title.ljust(30, b"\0") + b"An artist".ljust(30, b"\0") + b"An album".ljust(30, b"\0")
            + b"1999" + b"a comment".ljust(28, b"\0") + b"\0\x05" + bytes([genre]))


def _cover(size: int) -> bytes:
    return b"\xff\xd8\xff\xe0" + random.Random(size).randbytes(size - 4)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _put(store: LibraryStore, path: Path, genre: str = "rock", *, confidence: float = 0.9,
         not_sure: bool = False) -> None:
    info = path.stat()
    store.put({"path": os.fsencode(path), "path_text": str(path), "model": MODEL, "model_hash": "0" * 16,
               "precision": "float32", "size": info.st_size, "mtime_ns": info.st_mtime_ns,
               "fingerprint": fingerprint(path), "status": "ok", "genre": genre, "confidence": confidence,
               "vote_share": confidence, "not_sure": int(not_sure),
               "verdict": f"not sure: {genre} or jazz" if not_sure else genre,
               "reasons": ["the two best are nearly tied"] if not_sure else [], "scanned_at": time.time()})


def _by_name(changes) -> dict:
    return {Path(c.path).name: c for c in changes}


def _kinds(folder: Path) -> dict:
    """Every kind of file the undo must give back exactly; name -> mutagen kind."""
    from mutagen.apev2 import APEv2
    from mutagen.id3 import APIC, ID3, TCON, TIT2

    made = {}
    plain = _mp3(folder / "plain.mp3")
    made[plain.name] = "id3"
    v1 = folder / "v1only.mp3"
    v1.write_bytes(plain.read_bytes() + _v1_block(255))
    made[v1.name] = "id3"
    ape = folder / "apeonly.mp3"
    ape.write_bytes(plain.read_bytes())
    tags = APEv2()
    tags["Title"] = "A title"
    tags.save(ape)
    made[ape.name] = "id3"
    cover = folder / "v23cover.mp3"
    cover.write_bytes(plain.read_bytes())
    tags = ID3()
    tags.add(TIT2(encoding=1, text="A title"))
    tags.add(APIC(encoding=0, mime="image/jpeg", type=3, desc="", data=_cover(150_000)))
    tags.save(cover, v2_version=3)
    made[cover.name] = "id3"
    v24 = folder / "v24.mp3"
    v24.write_bytes(plain.read_bytes() + _v1_block(17))
    tags = ID3()
    tags.add(TIT2(encoding=3, text="Ünïcode title"))
    tags.add(TCON(encoding=3, text="Abstract"))
    tags.save(v24, v2_version=4, v1=0)
    made[v24.name] = "id3"
    numeric = folder / "tcon17.mp3"
    numeric.write_bytes(plain.read_bytes())
    tags = ID3()
    tags.add(TCON(encoding=0, text="(17)"))
    tags.save(numeric, v2_version=3)
    made[numeric.name] = "id3"
    for name, codec in (("song.flac", "flac"), ("song.ogg", "libvorbis"), ("song.opus", "libopus"),
                        ("song.m4a", "aac")):
        _encode(folder / name, 3.0, "-c:a", codec)
        made[name] = "mp4" if name.endswith("m4a") else "vorbis"
    return made


def test_undo_gives_back_every_kind_of_file_byte_for_byte(tmp_path):
    folder = tmp_path / "music"
    folder.mkdir()
    kinds = _kinds(folder)
    before = {name: _sha(folder / name) for name in kinds}
    with LibraryStore(tmp_path / "lib.sqlite") as store:
        for name in kinds:
            _put(store, folder / name, "metal")
        done = _by_name(apply_tags(store, model=MODEL, write=True, overwrite=True))
        assert {n: c.action for n, c in done.items()} == dict.fromkeys(kinds, "write")
        for name, kind in kinds.items():
            assert read_genre(folder / name, kind) == ["Metal"], name
            assert _sha(folder / name) != before[name]
            row = store.get(folder / name, MODEL)   # the row follows the file, so a rescan leaves it alone
            assert (row["size"], row["fingerprint"]) == ((folder / name).stat().st_size, fingerprint(folder / name))
        recipes = {Path(text).name: size for text, size in
                   store.db.execute("SELECT path_text, length(undo) FROM tag_writes")}
        assert recipes["v23cover.mp3"] < 1024      # the 150 kB cover is found in the new file, not stored again
        assert [c.action for c in undo_tags(store)] == ["restore"] * len(kinds)   # the dry run changes nothing
        assert all(_sha(folder / name) != before[name] for name in kinds)
        undone = _by_name(undo_tags(store, write=True))
        assert {n: c.action for n, c in undone.items()} == dict.fromkeys(kinds, "restore")
        assert undo_tags(store, write=True) == []
    assert {name: _sha(folder / name) for name in kinds} == before
    assert sorted(p.name for p in folder.iterdir()) == sorted(kinds)   # no copy left behind


def test_undo_refuses_a_file_changed_since_the_write(tmp_path):
    song = _mp3(tmp_path / "song.mp3")
    other = _mp3(tmp_path / "other.mp3")
    with LibraryStore(tmp_path / "lib.sqlite") as store:
        _put(store, song)
        _put(store, other)
        originals = {p.name: _sha(p) for p in (song, other)}
        apply_tags(store, model=MODEL, write=True)
        data = bytearray(song.read_bytes())
        data[-1000] ^= 1                              # same size, one bit of audio changed
        song.write_bytes(bytes(data))
        edited = _sha(song)
        result = _by_name(undo_tags(store, write=True))
        assert result["song.mp3"].action == "skip" and "changed since the tag was written" in result["song.mp3"].note
        assert result["other.mp3"].action == "restore"
        assert _sha(song) == edited and _sha(other) == originals["other.mp3"]
        # still refused later: nothing is guessed
        assert _by_name(undo_tags(store, write=True))["song.mp3"].action == "skip"


def test_fills_only_empty_genres_unless_overwrite_and_shows_old_to_new(tmp_path):
    import mutagen

    folder = tmp_path / "music"
    folder.mkdir()
    empty = _mp3(folder / "empty.mp3")
    flac = _encode(folder / "mine.flac", 2.0, "-c:a", "flac")
    audio = mutagen.File(flac)
    audio["genre"] = ["Abstract"]
    audio.save()
    unsure = _mp3(folder / "unsure.mp3")
    weak = _mp3(folder / "weak.mp3")
    with LibraryStore(tmp_path / "lib.sqlite") as store:
        _put(store, empty, "hiphop")
        _put(store, flac, "metal")
        _put(store, unsure, "disco", not_sure=True)
        _put(store, weak, "jazz", confidence=0.3)
        plan = _by_name(apply_tags(store, model=MODEL, min_confidence=0.5))
        assert plan["empty.mp3"].line().split(None, 1)[1].endswith("genre (none) -> Hip-Hop")
        assert plan["mine.flac"].action == "skip" and "Abstract" in plan["mine.flac"].note \
            and "--overwrite" in plan["mine.flac"].note
        assert plan["unsure.mp3"].action == "skip" and "--include-not-sure" in plan["unsure.mp3"].note
        assert plan["weak.mp3"].action == "skip" and "below --min-confidence 50%" in plan["weak.mp3"].note
        apply_tags(store, model=MODEL, write=True, min_confidence=0.5)
        assert read_genre(empty, "id3") == ["Hip-Hop"] and read_genre(flac, "vorbis") == ["Abstract"]
        assert read_genre(unsure, "id3") is None and read_genre(weak, "id3") is None
        over = _by_name(apply_tags(store, model=MODEL, overwrite=True, include_not_sure=True))
        assert over["mine.flac"].line().endswith("genre Abstract -> Metal")
        assert over["empty.mp3"].action == "same" and over["unsure.mp3"].action == "write"
        assert over["weak.mp3"].action == "write"             # no minimum this time
        apply_tags(store, model=MODEL, write=True, overwrite=True)
        assert read_genre(flac, "vorbis") == ["Metal"]
        with pytest.raises(ValueError, match="between 0 and 1"):
            apply_tags(store, model=MODEL, min_confidence=50)


def test_id3_version_encoding_and_id3v1_are_kept_in_step(tmp_path):
    from mutagen.id3 import ID3, TCON, TIT2

    song = _mp3(tmp_path / "song.mp3")
    base = song.read_bytes()
    v23 = tmp_path / "v23.mp3"                      # v2.3, Latin-1 TCON, and an ID3v1 tag saying Blues
    v23.write_bytes(base)
    tags = ID3()
    tags.add(TIT2(encoding=0, text="v2 title"))
    tags.add(TCON(encoding=0, text="Blues"))
    tags.save(v23, v2_version=3)
    with open(v23, "ab") as handle:
        handle.write(_v1_block(0, b"Old v1 title"))
    v1_before = v23.read_bytes()[-128:]
    v1only = tmp_path / "v1only.mp3"                # only ID3v1, genre 255 (none): an empty genre
    v1only.write_bytes(base + _v1_block(255))
    custom = tmp_path / "custom.mp3"                # a label outside the ID3v1 list
    custom.write_bytes(base + _v1_block(255))
    with LibraryStore(tmp_path / "lib.sqlite") as store:
        _put(store, v23, "reggae")
        _put(store, v1only, "hiphop")
        _put(store, custom, "chiptune")
        done = _by_name(apply_tags(store, model=MODEL, write=True, overwrite=True))
        assert {c.action for c in done.values()} == {"write"}
    tags = ID3(v23, load_v1=False)
    assert tags.version[:2] == (2, 3) and tags["TCON"].encoding == 0 and tags["TCON"].text == ["Reggae"]
    assert tags["TIT2"].text == ["v2 title"] and tags["TIT2"].encoding == 0
    v1_after = v23.read_bytes()[-128:]
    assert v1_after[:127] == v1_before[:127] and v1_after[127] == id3v1_genre("Reggae") == 16
    assert b"Old v1 title" in v1_after                  # not rebuilt from the ID3v2 title
    only = ID3(v1only, load_v1=False)
    assert set(only.keys()) == {"TCON"}                  # the v1 fields were not copied into ID3v2
    assert only["TCON"].encoding == 0 and v1only.read_bytes()[-1] == 7 == id3v1_genre("Hip-Hop")
    assert v1only.read_bytes()[-128:-1] == _v1_block(255)[:-1]
    assert read_genre(custom, "id3") == ["Chiptune"] and custom.read_bytes()[-1] == 255


def test_an_id3v1_genre_counts_as_a_genre(tmp_path):
    v1 = tmp_path / "v1.mp3"
    v1.write_bytes(_mp3(tmp_path / "x.mp3").read_bytes() + _v1_block(17))
    (tmp_path / "x.mp3").unlink()
    with LibraryStore(tmp_path / "lib.sqlite") as store:
        _put(store, v1, "jazz")
        plan = _by_name(apply_tags(store, model=MODEL))
        assert plan["v1.mp3"].action == "skip" and "Rock" in plan["v1.mp3"].note


def test_a_scan_never_takes_a_leftover_copy_for_music(tmp_path):
    from codeFeature.collection.walk import WalkStats, walk

    song = _mp3(tmp_path / "song.mp3")
    leftover = Path(os.fsdecode(temp_path(os.fsencode(song))))
    leftover.write_bytes(song.read_bytes())
    assert TEMP_NAME.fullmatch(leftover.name.encode())
    stats = WalkStats()
    assert [os.fsdecode(f.path) for f in walk(tmp_path, stats=stats)] == [str(song)] and stats.other_files == 1
    with LibraryStore(tmp_path / "lib.sqlite") as store:
        _put(store, song)
        apply_tags(store, model=MODEL)               # a dry run leaves it
        assert leftover.exists()
        apply_tags(store, model=MODEL, write=True)   # a write run clears it
    assert not leftover.exists() and read_genre(song, "id3") == ["Rock"]


def test_mode_owner_and_times(tmp_path):
    song = _mp3(tmp_path / "song.mp3")
    kept = _mp3(tmp_path / "kept.mp3")
    for path in (song, kept):
        path.chmod(0o640)
        os.utime(path, ns=(1_000_000_000, 2_000_000_000))
    with LibraryStore(tmp_path / "lib.sqlite") as store:
        _put(store, song)
        apply_tags(store, model=MODEL, write=True)
    with LibraryStore(tmp_path / "lib2.sqlite") as store:
        _put(store, kept)
        apply_tags(store, model=MODEL, write=True, keep_times=True)
    assert (song.stat().st_mode & 0o777, kept.stat().st_mode & 0o777) == (0o640, 0o640)
    assert kept.stat().st_mtime_ns == 2_000_000_000 and song.stat().st_mtime_ns > 2_000_000_000
    assert read_genre(kept, "id3") == read_genre(song, "id3") == ["Rock"]


def test_hard_links_and_fifos_are_left_alone(tmp_path):
    song = _mp3(tmp_path / "song.mp3")
    os.link(song, tmp_path / "second name.mp3")
    before = _sha(song)
    with LibraryStore(tmp_path / "lib.sqlite") as store:
        _put(store, song)
        result = apply_tags(store, model=MODEL, write=True)
    assert result[0].action == "skip" and "hard links" in result[0].note and _sha(song) == before


# ---------------------------------------------------------------- SIGKILL at any instant


def _audio_region(data: bytes) -> bytes:
    """An mp3's bytes without its ID3v2 tag at the start and ID3v1 tag at the end."""
    if data[:3] == b"ID3":
        size = 0
        for byte in data[6:10]:
            size = (size << 7) | byte
        data = data[10 + size:]
    if data[-128:-125] == b"TAG":
        data = data[:-128]
    return data


def _big_mp3s(folder: Path) -> dict:
    """Three mp3s of several MB: no tag, ID3v1 only, ID3v2.3 with a 2 MB cover."""
    from mutagen.id3 import APIC, ID3, TIT2

    part = _mp3(folder / "part.mp3", 60.0).read_bytes()      # about 1 MB of frames
    (folder / "part.mp3").unlink()
    frames = part * 5
    (folder / "a_plain.mp3").write_bytes(frames)
    (folder / "b_v1.mp3").write_bytes(frames + _v1_block(255))
    cover = folder / "c_cover.mp3"
    cover.write_bytes(frames)
    tags = ID3()
    tags.add(TIT2(encoding=1, text="Covered"))
    tags.add(APIC(encoding=0, mime="image/jpeg", type=3, desc="", data=_cover(2_000_000)))
    tags.save(cover, v2_version=3, padding=lambda info: 0)   # no padding: the genre must grow the tag
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _check_after_kill(folder: Path, originals: dict, db: Path) -> tuple[int, int]:
    """Every file is the original or fully tagged with the same audio; the database claims nothing false.

    Returns (files tagged, journal entries the kill left open)."""
    tagged = 0
    for name, data in originals.items():
        now = (folder / name).read_bytes()
        if now != data:
            assert read_genre(folder / name, "id3") == ["Rock"], name
            assert _audio_region(now) == _audio_region(data), name
            tagged += 1
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        done = connection.execute("SELECT path, size_after, hash_after FROM tag_writes WHERE state='done'").fetchall()
        writing = connection.execute("SELECT count(*) FROM tag_writes WHERE state='writing'").fetchone()[0]
    except sqlite3.OperationalError:     # killed before the journal's table was made
        done, writing = [], 0
    finally:
        connection.close()
    for path, size, digest in done:      # a change the database calls done is on disk
        assert file_hash(bytes(path)) == (size, digest)
    assert len(done) <= tagged
    return tagged, writing


def _copies(folder: Path) -> set:
    found = set()
    for name in os.listdir(folder):
        if TEMP_NAME.fullmatch(os.fsencode(name)):
            try:
                found.add((name, os.stat(folder / name).st_ino))
            except FileNotFoundError:
                pass
    return found


#: A child that runs ``main(argv)`` with a SIGKILL planted at one exact step of the write or the undo.
_PLANTED = """
import os, signal, sys
from codeFeature.collection import store, tags

where, nth = sys.argv[1], int(sys.argv[2])
count = [0]

def due():
    count[0] += 1
    return count[0] == nth

def die():
    os.kill(os.getpid(), signal.SIGKILL)

real_edit, real_replace, real_state = tags._edit, os.replace, store.LibraryStore.tag_state

def edit(*args):                      # the copy is being written
    real_edit(*args)
    if where == "edited" and due():
        die()

def replace(*args):
    if where == "before-rename" and due():
        die()
    real_replace(*args)
    if where == "after-rename" and due():
        die()

def tag_state(self, change_id, state, **kwargs):
    if where == "before-done" and state in ("done", "undone") and due():
        die()
    real_state(self, change_id, state, **kwargs)

tags._edit, os.replace, store.LibraryStore.tag_state = edit, replace, tag_state
from codeFeature.__main__ import main
sys.exit(main(sys.argv[3:]))
"""


def test_sigkill_at_twenty_instants_never_damages_a_file(tmp_path):
    folder = tmp_path / "music"
    folder.mkdir()
    originals = _big_mp3s(folder)
    db = tmp_path / "lib.sqlite"
    with LibraryStore(db) as store:
        for name in originals:
            _put(store, folder / name)
    command = [sys.executable, "-m", "codeFeature", "tag", "--db", str(db), "--write"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def back_to_originals():
        with LibraryStore(db) as store:
            undo_tags(store, write=True)
            assert {name: (folder / name).read_bytes() == data for name, data in originals.items()} \
                == dict.fromkeys(originals, True)
            for name in originals:             # rows follow the files through every step
                assert store.get(folder / name, MODEL)["size"] == (folder / name).stat().st_size

    # exact steps: inside the edit of the copy, between the journal and the rename, between the rename and
    # the database's "done", for the first and the last file
    planted = [(where, nth) for where in ("edited", "before-rename", "after-rename", "before-done") for nth in (1, 3)]
    seen = {}
    for where, nth in planted:
        done = subprocess.run([sys.executable, "-c", _PLANTED, where, str(nth), "tag", "--db", str(db), "--write"],
                              env=env, capture_output=True, timeout=60)
        assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
        seen[where, nth] = _check_after_kill(folder, originals, db)
        back_to_originals()
    assert seen["edited", 1] == (0, 0) and seen["edited", 3] == (2, 0)
    assert seen["before-rename", 1] == (0, 1) and seen["after-rename", 1] == (1, 1)   # an open journal entry,
    assert seen["before-rename", 3] == (2, 1) and seen["after-rename", 3] == (3, 1)   # settled by the next run
    assert seen["before-done", 3] == (3, 1)
    # and at seeded random instants once the work has begun
    rng = random.Random(29)
    kills, attempts, longest = 0, 0, 0.2
    while kills < 12 and attempts < 60:  # a faster machine finishes sooner: the instants shrink to fit it
        attempts += 1
        stale = _copies(folder)      # a killed run's leftover copy, which the next run removes
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline and not _copies(folder) - stale:
            time.sleep(0.0005)
        time.sleep(rng.uniform(0, longest))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        if process.returncode == -signal.SIGKILL:
            kills += 1
        else:
            longest /= 2
        _check_after_kill(folder, originals, db)
        back_to_originals()
    assert len(planted) + kills >= 20
    # an undo killed between its rename and the database's "undone" is settled too
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=60)
    done = subprocess.run([sys.executable, "-c", _PLANTED, "after-rename", "2", "tag", "--db", str(db), "--undo",
                           "--write"], env=env, capture_output=True, timeout=60)
    assert done.returncode == -signal.SIGKILL
    assert sum((folder / name).read_bytes() == data for name, data in originals.items()) == 2
    # finally, as a person would: a complete write, then an undo, give every byte back
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=60)
    assert all(read_genre(folder / name, "id3") == ["Rock"] for name in originals)
    subprocess.run(command + ["--undo"], env=env, check=True, capture_output=True, timeout=60)
    assert {name: (folder / name).read_bytes() == data for name, data in originals.items()} \
        == dict.fromkeys(originals, True)
    assert sorted(os.listdir(folder)) == sorted(originals)


def test_undo_recipe_rebuilds_any_edit_exactly():
    from codeFeature.collection.tags import _BLOCK, apply_undo, make_undo

    rng = random.Random(33)
    for case in range(40):
        old = rng.randbytes(rng.choice([0, 10, _BLOCK - 1, 3 * _BLOCK + 7, 200_000]))
        new = bytearray(old)
        for _ in range(rng.randint(0, 4)):   # grow, shrink or overwrite at random places
            at = rng.randint(0, len(new))
            edit = rng.choice(["insert", "delete", "overwrite"])
            if edit == "insert":
                new[at:at] = rng.randbytes(rng.randint(1, 40_000))
            elif edit == "delete":
                del new[at:at + rng.randint(1, 40_000)]
            else:
                new[at:at + 10] = rng.randbytes(10)
        recipe = make_undo(old, bytes(new))
        out = bytearray()
        apply_undo(recipe, bytes(new), out.extend)
        assert bytes(out) == old, case
        if len(old) == 200_000 and new[:100] == old[:100] and len(new) == len(old):
            assert len(recipe) < 50_000, case   # unchanged runs are copied, not stored


def test_a_second_tag_run_on_the_same_database_is_refused(tmp_path):
    from codeFeature.collection.store import LibraryError
    from codeFeature.collection.tags import _RunLock

    song = _mp3(tmp_path / "song.mp3")
    with LibraryStore(tmp_path / "lib.sqlite") as store:
        _put(store, song)
        with _RunLock(store):
            with LibraryStore(tmp_path / "lib.sqlite") as other:
                with pytest.raises(LibraryError, match="another `tag` run"):
                    apply_tags(other, model=MODEL, write=True)
        assert read_genre(song, "id3") is None
        assert apply_tags(store, model=MODEL, write=True)[0].action == "write"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_the_owner_is_kept(tmp_path):
    song = _mp3(tmp_path / "song.mp3")
    os.chown(song, 4321, 4322)
    with LibraryStore(tmp_path / "lib.sqlite") as store:
        _put(store, song)
        assert apply_tags(store, model=MODEL, write=True)[0].action == "write"
    assert (song.stat().st_uid, song.stat().st_gid) == (4321, 4322) and read_genre(song, "id3") == ["Rock"]


def test_writes_recorded_by_an_earlier_version_are_still_undone(tmp_path):
    """A database tagged before the journal existed (table ``tag_changes``: the genre replaced, not the bytes):
    ``--undo`` puts each replaced genre back, or removes the one that was added, and says the layout may differ."""
    from mutagen.flac import FLAC
    from mutagen.id3 import ID3, TCON

    had = _mp3(tmp_path / "had_a_genre.mp3")
    tags = ID3()
    tags.add(TCON(encoding=3, text=["Metal"]))  # what the earlier version wrote over "Jazz"
    tags.save(str(had))
    empty = _encode(tmp_path / "had_none.flac", 2.0, "-c:a", "flac")
    audio = FLAC(str(empty))
    audio["GENRE"] = ["Rock"]  # added where there was none
    audio.save()
    db = tmp_path / "library.sqlite"
    with LibraryStore(db) as store:
        for path in (had, empty):
            _put(store, path)
        with store.db:
            for path, kind, old, new in ((had, "id3", ["Jazz"], "Metal"), (empty, "vorbis", None, "Rock")):
                store.db.execute("INSERT INTO tag_changes (path, path_text, model, kind, old_value, new_value, "
                                 "written_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                                 (os.fsencode(path), str(path), MODEL, kind, json.dumps(old), new, time.time()))
        planned = _by_name(undo_tags(store))
        assert planned["had_a_genre.mp3"].action == "restore" and read_genre(had, "id3") == ["Metal"]  # dry run
        done = _by_name(undo_tags(store, write=True))
        assert done["had_a_genre.mp3"].action == "restore" and "earlier version" in done["had_a_genre.mp3"].line()
        assert read_genre(had, "id3") == ["Jazz"] and read_genre(empty, "vorbis") is None
        assert undo_tags(store, write=True) == []  # each is undone once
        row = store.get(had, MODEL)
        assert (row["size"], row["fingerprint"]) == (had.stat().st_size, fingerprint(had))


def test_a_file_swapped_for_a_named_pipe_is_skipped_not_waited_for(tmp_path):
    """The dry run reads each file's genre: a pipe put where a scanned file was must not hang it."""
    import threading

    song = _mp3(tmp_path / "song.mp3")
    db = tmp_path / "library.sqlite"
    with LibraryStore(db) as store:
        _put(store, song)
    info = song.stat()
    song.unlink()
    os.mkfifo(song)
    os.utime(song, ns=(info.st_atime_ns, info.st_mtime_ns))
    found = []

    def run():
        with LibraryStore(db) as store:
            found.extend(apply_tags(store, model=MODEL))

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "reading a named pipe's tags hung"
    (change,) = found
    assert change.action in ("skip", "error") and "song.mp3" in change.path


def test_read_genre_refuses_a_named_pipe_at_once(tmp_path):
    from codeFeature.errors import NotRegularFileError

    fifo = tmp_path / "pipe.mp3"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError, match="named pipe"):
        read_genre(fifo, "id3")
