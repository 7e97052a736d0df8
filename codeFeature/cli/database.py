"""What the collection's subcommands share: ``--wait``, opening the database, and its errors in plain words."""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from typing import Callable

from ..collection.store import DEFAULT_WAIT


def add_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", type=float, default=DEFAULT_WAIT, metavar="SECONDS",
                        help="how long to wait while another program writes to the database before giving up "
                             f"(default: {DEFAULT_WAIT:g})")


def with_store(args: argparse.Namespace, command: Callable, *, readonly: bool = False) -> int:
    """Open ``args.db``, run ``command(args, store)`` and turn every expected failure into one line on
    stderr and exit status 2."""
    from ..collection.store import DatabaseBusyError, LibraryStore
    from ..errors import GenreError

    if not args.wait >= 0:
        print("error: --wait must be a number of seconds, 0 or more", file=sys.stderr)
        return 2
    try:
        with LibraryStore(args.db, readonly=readonly, wait=args.wait) as store:
            return command(args, store)
    except (DatabaseBusyError, sqlite3.DatabaseError) as exc:
        # the store is closed by now, so its lock files can be looked at to name the writer
        print(f"error: {database_trouble(args, exc)}", file=sys.stderr)
        return 2
    except (GenreError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def database_trouble(args: argparse.Namespace, exc: Exception) -> str:
    """A database error met after opening (or a busy one at opening) in plain words."""
    from ..collection.store import DatabaseBusyError, busy_message, is_busy

    if isinstance(exc, DatabaseBusyError) or is_busy(exc):
        return busy_message(args.db, args.wait)
    return (f"{args.db} could not be used ({exc}); if it is damaged, restore it from a backup or scan into a "
            "new database file")


def leave(status: int) -> None:
    """End the process now with ``status``, output flushed: workers may be deep in a long file, and
    everything finished is already committed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
