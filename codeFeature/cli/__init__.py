"""The command line: one argparse parser with a subcommand per module.

``python -m codeFeature SONG [SONG ...]`` (no subcommand) classifies songs (:mod:`.predict`);
``scan``, ``export`` and ``tag`` keep a music collection's genres in a database (:mod:`.scan`,
:mod:`.export`, :mod:`.tag`; the database's shared handling is :mod:`.database`). The
``codefeature`` console command is the same :func:`main`.

Classifying needs no subcommand word, so that ``python -m codeFeature song.mp3`` stays what it has
always been: :func:`main` routes to the collection's subcommands only when the first word names one,
and otherwise parses the whole command line as the hidden ``classify`` subcommand, whose help, usage
and errors are the ones ``python -m codeFeature --help`` has always shown.
"""

from __future__ import annotations

import argparse
import sys

from . import export, predict, scan, tag  # numpy and the config only; TensorFlow loads with a model

#: The collection's subcommands, by the first word of the command line.
SUBCOMMANDS = {"scan": scan, "export": export, "tag": tag}
#: The hidden subcommand that classifies songs when the first word names no other.
DEFAULT = "classify"


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser and its subcommands' parsers, by name (``classify`` included)."""
    parser = argparse.ArgumentParser(prog="python -m codeFeature",
                                     description="Classify songs' genres, and keep a music collection's genres "
                                                 "in a database.")
    sub = parser.add_subparsers(dest="command", required=True)
    parsers = {DEFAULT: predict.add_parser(sub, DEFAULT)}
    parsers.update({name: module.add_parser(sub, name) for name, module in SUBCOMMANDS.items()})
    return parser, parsers


def main(argv: list[str] | None = None) -> int:
    """Run one command line (default ``sys.argv[1:]``); returns the exit status."""
    from ..runtime import prepare_process

    # the command line is an entry point: TensorFlow's and numba's process set-up before either starts
    prepare_process()
    argv = sys.argv[1:] if argv is None else list(argv)
    name = argv[0] if argv and argv[0] in SUBCOMMANDS else DEFAULT
    parser, parsers = build_parser()
    # the default command parses on its own parser, so that its errors (an unknown option too) show
    # its usage, not the subcommands'
    args = parsers[DEFAULT].parse_args(argv) if name == DEFAULT else parser.parse_args(argv)
    module = SUBCOMMANDS.get(name, predict)
    return module.run(args, parsers[name])
