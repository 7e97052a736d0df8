"""``python -m codeFeature tag --db DB [--write] ...``: the genre into the files' own tags, with undo."""

from __future__ import annotations

import argparse
import sys

from .database import add_wait, with_store


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name, help="write the genre into the files' tags (dry run unless --write)",
        description="Write each file's genre into its own tags with mutagen: mp3 (ID3 TCON, and the "
                    "ID3v1 genre byte when there is an ID3v1 tag), flac / ogg / opus (Vorbis GENRE), "
                    "m4a (MP4 ©gen). Without --write, only lists old -> new per file. By default "
                    "only empty genres are filled. Each file is written as a copy beside it, "
                    "fsynced and renamed over it, so an interruption never leaves a half-written "
                    "file; --undo --write gives back the files' original bytes exactly.")
    parser.add_argument("--db", required=True)
    parser.add_argument("--model", default=None, help="whose results (default: the only model, or the default model)")
    parser.add_argument("--write", action="store_true", help="write the tags (default: a dry run)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace genres the files already have (default: fill only files with no genre)")
    parser.add_argument("--min-confidence", type=float, default=0.0, metavar="P",
                        help="skip results whose confidence (the winner's mean probability, 0 to 1) is below P")
    parser.add_argument("--include-not-sure", action="store_true", help="also tag results that are not sure")
    parser.add_argument("--include-outside", action="store_true",
                        help="also tag songs the model places outside its genres, with its best-guess genre "
                             "(default: never)")
    parser.add_argument("--keep-times", action="store_true",
                        help="keep each file's modification time (default: it becomes the time of the write, so "
                             "backup and sync tools see the change)")
    parser.add_argument("--undo", action="store_true",
                        help="give back the files' bytes from before every --write not yet undone, newest first "
                             "(a dry run unless --write)")
    add_wait(parser)
    return parser


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    return with_store(args, _tag)


def _tag(args: argparse.Namespace, store) -> int:
    from ..collection.tags import NO_TAG, apply_tags, undo_tags

    if args.undo:
        changes = undo_tags(store, write=args.write, keep_times=args.keep_times)
    else:
        changes = apply_tags(store, model=store.pick_model(args.model), write=args.write,
                             include_not_sure=args.include_not_sure, include_outside=args.include_outside,
                             overwrite=args.overwrite, min_confidence=args.min_confidence,
                             keep_times=args.keep_times)
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
