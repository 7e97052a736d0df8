"""``python -m codeFeature export --db DB OUT.{csv,parquet,jsonl} [--by-genre DIR]``: the results for other tools."""

from __future__ import annotations

import argparse
import sys

from .database import add_wait, with_store


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help="write the results as CSV, Parquet or JSON lines",
                            description="Write the database's results to OUT; the format follows its extension.")
    parser.add_argument("--db", required=True)
    parser.add_argument("out", metavar="OUT", nargs="?", default=None, help="OUT.csv, OUT.parquet or OUT.jsonl")
    parser.add_argument("--model", default=None, help="only this model's results (default: every model)")
    parser.add_argument("--by-genre", metavar="DIR", default=None,
                        help="also make DIR/<genre>/ folders of symlinks to the files (never moved or copied); "
                             "not-sure results (and songs outside the genres) go to DIR/not_sure/")
    add_wait(parser)
    return parser


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    return with_store(args, _export, readonly=True)


def _export(args: argparse.Namespace, store) -> int:
    from ..collection.export import by_genre, export
    from ..errors import ConfigError

    if args.out is None and args.by_genre is None:
        raise ConfigError("give OUT.csv, OUT.parquet or OUT.jsonl, or --by-genre DIR")
    if args.out is not None:
        n = export(store, args.out, model=args.model)
        print(f"wrote {n} rows to {args.out}", file=sys.stderr)
    if args.by_genre is not None:
        model = store.pick_model(args.model)
        made = by_genre(store, args.by_genre, model=model)
        print(f"made {made} symlinks under {args.by_genre} ({model}'s genres)", file=sys.stderr)
    return 0
