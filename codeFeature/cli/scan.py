"""``python -m codeFeature scan ROOT --db DB``: classify every audio file under ROOT into the database.

Run it again to do only new or changed files. Exit status 0, or 130 when interrupted (finished files
are kept).

``--runner local|ray`` chooses where files are classified. It was spelled ``--engine`` before "engine"
came to mean only what runs the model (TensorFlow or OpenVINO, ``CODEFEATURE_ENGINE``); ``--engine
local|ray`` still works, hidden from the help, and says the new spelling in one line, so that people's
scripts keep running.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys

from ..collection.local_runner import POOLS
from ..collection.scan import RUNNERS
from ..model_io import PRECISIONS
from .database import add_wait, database_trouble, leave, with_store


def add_parser(sub, name: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help="classify every audio file under a folder into the database",
                            description="Classify every audio file under ROOT into DB. Run it again to do only new "
                                        "or changed files; interrupt it at any time, finished files are kept.")
    parser.add_argument("root", metavar="ROOT", help="a folder (walked recursively, symlink loops are not followed) "
                                                     "or one file")
    parser.add_argument("--db", required=True, help="the SQLite database (created if missing)")
    parser.add_argument("--model", metavar="NAME_OR_DIR", default=None,
                        help="a shipped model's name or a model folder (default: the shipped default); another "
                             "model's results are kept beside the first's")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="files classified at once (default: two more than the cores, at most 8, for threads; "
                             "one per core, at most 4, for --pool processes and for Ray actors with --runner ray)")
    parser.add_argument("--retry-errors", action="store_true", help="classify again the files that failed before")
    parser.add_argument("--prune", action="store_true",
                        help="remove the stored results of files under ROOT that are no longer on disk")
    parser.add_argument("--runner", choices=RUNNERS, default=None,
                        help="where files are classified: local, worker threads on this machine (default); ray, a "
                             "Ray Data actor pool (see --address)")
    # the old spelling of --runner, kept for scripts; any value is taken so that a TensorFlow / OpenVINO
    # value gets a sentence rather than argparse's list of choices
    parser.add_argument("--engine", dest="old_engine", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--address", metavar="HOST:PORT", default=None,
                        help="with --runner ray: a running Ray cluster (ray start --head); default: start Ray here. "
                             "Every node must read the files at the same absolute paths (a shared file system)")
    parser.add_argument("--pool", choices=POOLS, default="threads",
                        help="the local runner's workers: threads sharing one model (default, faster here), or "
                             "processes loading the model once each")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="compute precision of musicnn's timbral convolutions (default: auto)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    add_wait(parser)
    return parser


def runner_of(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """``--runner``, or the deprecated ``--engine`` it replaced (with one line saying so)."""
    if args.old_engine is None:
        return args.runner or "local"
    old = args.old_engine.strip().lower()
    if old not in RUNNERS:
        parser.error(f"--engine {args.old_engine}: the scan's --engine chose local or ray and is now --runner; "
                     "what runs the model (tensorflow, openvino) is set with CODEFEATURE_ENGINE")
    if args.runner is not None and args.runner != old:
        parser.error(f"--engine {old} and --runner {args.runner} disagree; give --runner only")
    print(f"note: --engine {old} is now --runner {old} (--engine will go away)", file=sys.stderr)
    return old


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    args.runner = runner_of(args, parser)
    if not os.path.exists(args.root):
        print(f"error: {args.root} does not exist; give the folder (or file) to scan", file=sys.stderr)
        return 2
    return with_store(args, _scan)


def _scan(args: argparse.Namespace, store) -> int:
    from ..collection.classify import ModelSpec
    from ..collection.scan import scan
    from ..errors import ConfigError
    from ..native_stderr import filtered_native_stderr

    if args.jobs is not None and args.jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    if args.address and args.runner != "ray":
        raise ConfigError("--address needs --runner ray")
    spec = ModelSpec.resolve(args.model, args.precision)
    try:
        # native libraries' known noise (TensorFlow's banners, mpg123's notes, one Ray Data message) stays
        # off the terminal, as for the classify command
        with filtered_native_stderr():
            summary = scan(args.root, store, spec, jobs=args.jobs, retry_errors=args.retry_errors,
                           runner=args.runner, pool=args.pool, address=args.address, progress=not args.quiet,
                           prune=args.prune)
    except sqlite3.DatabaseError as exc:  # another writer outlasted --wait, mid-scan
        store.close()  # first: naming the writer opens the database's lock files
        print(f"error: {database_trouble(args, exc)}; the files finished so far are kept", file=sys.stderr)
        leave(2)
    for line in summary.lines():
        print(line, file=sys.stderr)
    if summary.interrupted:
        store.close()
        leave(130)
    return 0
