"""The library's subcommands: ``python -m codeFeature scan | export | tag``.

``scan ROOT --db DB``
    Classify every audio file under ROOT into the database; rerun to do only new or changed
    files. Exit status 0, or 130 when interrupted (finished files are kept).
``export --db DB OUT.{csv,parquet,jsonl} [--by-genre DIR]``
    Write the results for other tools; ``--by-genre`` makes a folder per genre of symlinks.
``tag --db DB [--write] [--overwrite] [--min-confidence P] [--keep-times] [--undo]``
    Write the genre into the files' own tags: a dry run unless ``--write``; only empty genres
    unless ``--overwrite``; ``--undo --write`` gives the original bytes back.
"""

from __future__ import annotations

import argparse
import os
import sys

SUBCOMMANDS = ("scan", "export", "tag")


def build_parser() -> argparse.ArgumentParser:
    from ..model_io import PRECISIONS
    from .scan import ENGINES, POOLS

    parser = argparse.ArgumentParser(prog="python -m codeFeature",
                                     description="Keep a music library's genres in a database.")
    sub = parser.add_subparsers(dest="command", required=True)

    scan = sub.add_parser("scan", help="classify every audio file under a folder into the database",
                          description="Classify every audio file under ROOT into DB. Run it again to do only new "
                                      "or changed files; interrupt it at any time, finished files are kept.")
    scan.add_argument("root", metavar="ROOT", help="a folder (walked recursively, symlink loops are not followed) "
                                                   "or one file")
    scan.add_argument("--db", required=True, help="the SQLite database (created if missing)")
    scan.add_argument("--model", metavar="NAME_OR_DIR", default=None,
                      help="a shipped model's name or a model folder (default: the shipped default); another "
                           "model's results are kept beside the first's")
    scan.add_argument("--jobs", type=int, default=None, metavar="N",
                      help="files classified at once (default: two more than the cores, at most 8, for threads; one "
                           "per core, at most 4, for --pool processes and for Ray actors with --engine ray)")
    scan.add_argument("--retry-errors", action="store_true", help="classify again the files that failed before")
    scan.add_argument("--prune", action="store_true",
                      help="remove the stored results of files under ROOT that are no longer on disk")
    scan.add_argument("--engine", choices=ENGINES, default="local",
                      help="local: worker threads on this machine; ray: a Ray Data actor pool (see --address)")
    scan.add_argument("--address", metavar="HOST:PORT", default=None,
                      help="with --engine ray: a running Ray cluster (ray start --head); default: start Ray here. "
                           "Every node must read the files at the same absolute paths (a shared file system)")
    scan.add_argument("--pool", choices=POOLS, default="threads",
                      help="the local engine's workers: threads sharing one model (default, faster here), or "
                           "processes loading the model once each")
    scan.add_argument("--precision", choices=PRECISIONS, default=None,
                      help="compute precision of musicnn's timbral convolutions (default: auto)")
    scan.add_argument("--quiet", action="store_true", help="no progress output")
    _add_wait(scan)

    export = sub.add_parser("export", help="write the results as CSV, Parquet or JSON lines",
                            description="Write the database's results to OUT; the format follows its extension.")
    export.add_argument("--db", required=True)
    export.add_argument("out", metavar="OUT", nargs="?", default=None, help="OUT.csv, OUT.parquet or OUT.jsonl")
    export.add_argument("--model", default=None, help="only this model's results (default: every model)")
    export.add_argument("--by-genre", metavar="DIR", default=None,
                        help="also make DIR/<genre>/ folders of symlinks to the files (never moved or copied); "
                             "not-sure results go to DIR/not_sure/")
    _add_wait(export)

    tag = sub.add_parser("tag", help="write the genre into the files' tags (dry run unless --write)",
                         description="Write each file's genre into its own tags with mutagen: mp3 (ID3 TCON, and the "
                                     "ID3v1 genre byte when there is an ID3v1 tag), flac / ogg / opus (Vorbis GENRE), "
                                     "m4a (MP4 ©gen). Without --write, only lists old -> new per file. By default "
                                     "only empty genres are filled. Each file is written as a copy beside it, "
                                     "fsynced and renamed over it, so an interruption never leaves a half-written "
                                     "file; --undo --write gives back the files' original bytes exactly.")
    tag.add_argument("--db", required=True)
    tag.add_argument("--model", default=None, help="whose results (default: the only model, or the default model)")
    tag.add_argument("--write", action="store_true", help="write the tags (default: a dry run)")
    tag.add_argument("--overwrite", action="store_true",
                     help="replace genres the files already have (default: fill only files with no genre)")
    tag.add_argument("--min-confidence", type=float, default=0.0, metavar="P",
                     help="skip results whose confidence (the winner's mean probability, 0 to 1) is below P")
    tag.add_argument("--include-not-sure", action="store_true", help="also tag results that are not sure")
    tag.add_argument("--keep-times", action="store_true",
                     help="keep each file's modification time (default: it becomes the time of the write, so "
                          "backup and sync tools see the change)")
    tag.add_argument("--undo", action="store_true", help="give back the files' bytes from before every --write not "
                                                          "yet undone, newest first (a dry run unless --write)")
    _add_wait(tag)
    return parser


def _add_wait(parser: argparse.ArgumentParser) -> None:
    from .store import DEFAULT_WAIT

    parser.add_argument("--wait", type=float, default=DEFAULT_WAIT, metavar="SECONDS",
                        help="how long to wait while another program writes to the database before giving up "
                             f"(default: {DEFAULT_WAIT:g})")


def main(argv: list[str]) -> int:
    """Run one subcommand; ``argv`` starts with its name."""
    args = build_parser().parse_args(argv)
    import sqlite3

    from ..errors import GenreError
    from .store import DatabaseBusyError, LibraryError, LibraryStore

    if args.command == "scan" and not os.path.exists(args.root):
        print(f"error: {args.root} does not exist; give the folder (or file) to scan", file=sys.stderr)
        return 2
    if not args.wait >= 0:
        print("error: --wait must be a number of seconds, 0 or more", file=sys.stderr)
        return 2
    try:
        with LibraryStore(args.db, readonly=args.command == "export", wait=args.wait) as store:
            if args.command == "scan":
                return _scan(args, store)
            if args.command == "export":
                return _export(args, store)
            return _tag(args, store)
    except (DatabaseBusyError, sqlite3.DatabaseError) as exc:
        # the store is closed by now, so its lock files can be looked at to name the writer
        print(f"error: {_database_trouble(args, exc)}", file=sys.stderr)
        return 2
    except (GenreError, LibraryError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _database_trouble(args, exc: Exception) -> str:
    """A database error met after opening (or a busy one at opening) in plain words."""
    from .store import DatabaseBusyError, busy_message, is_busy

    if isinstance(exc, DatabaseBusyError) or is_busy(exc):
        return busy_message(args.db, args.wait)
    return (f"{args.db} could not be used ({exc}); if it is damaged, restore it from a backup or scan into a "
            "new database file")


def _scan(args, store) -> int:
    import sqlite3

    from .scan import ModelSpec, scan

    if args.jobs is not None and args.jobs < 1:
        raise ValueError("--jobs must be at least 1")
    if args.address and args.engine != "ray":
        raise ValueError("--address needs --engine ray")
    from ..native_stderr import filtered_native_stderr

    spec = ModelSpec.resolve(args.model, args.precision)
    try:
        # native libraries' known noise (TensorFlow's banners, mpg123's notes, one Ray Data message) stays
        # off the terminal, as for the classify command
        with filtered_native_stderr():
            summary = scan(args.root, store, spec, jobs=args.jobs, retry_errors=args.retry_errors,
                           engine=args.engine, pool=args.pool, address=args.address, progress=not args.quiet,
                           prune=args.prune)
    except sqlite3.DatabaseError as exc:  # another writer outlasted --wait, mid-scan
        store.close()  # first: naming the writer opens the database's lock files
        print(f"error: {_database_trouble(args, exc)}; the files finished so far are kept", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        # workers may be deep in a long file: leave now rather than wait for them
        os._exit(2)
    for line in summary.lines():
        print(line, file=sys.stderr)
    if summary.interrupted:
        store.close()
        sys.stdout.flush()
        sys.stderr.flush()
        # worker threads may be deep in a long file: everything finished is committed, leave now
        os._exit(130)
    return 0


def _export(args, store) -> int:
    from .export import by_genre, export

    if args.out is None and args.by_genre is None:
        raise ValueError("give OUT.csv, OUT.parquet or OUT.jsonl, or --by-genre DIR")
    if args.out is not None:
        n = export(store, args.out, model=args.model)
        print(f"wrote {n} rows to {args.out}", file=sys.stderr)
    if args.by_genre is not None:
        model = store.pick_model(args.model)
        made = by_genre(store, args.by_genre, model=model)
        print(f"made {made} symlinks under {args.by_genre} ({model}'s genres)", file=sys.stderr)
    return 0


def _tag(args, store) -> int:
    from .tags import NO_TAG, apply_tags, undo_tags

    if args.undo:
        changes = undo_tags(store, write=args.write, keep_times=args.keep_times)
    else:
        changes = apply_tags(store, model=store.pick_model(args.model), write=args.write,
                             include_not_sure=args.include_not_sure, overwrite=args.overwrite,
                             min_confidence=args.min_confidence, keep_times=args.keep_times)
    untaggable = [c for c in changes if c.action == "skip" and c.note == NO_TAG]
    for change in changes:
        if change not in untaggable:
            print(change.line())
    if untaggable:  # one line, not one per wav file
        print(f"skip     {len(untaggable)} files: {NO_TAG} (wav, aiff, au)")
    done = sum(c.action in ("write", "restore") for c in changes)
    verb = "changed" if args.write else "would change"
    print(f"{done} files {verb}" + ("" if args.write else "; run again with --write to do it"), file=sys.stderr)
    return 0
