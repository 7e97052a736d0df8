"""Compare two collection databases scanned from the same files: are the stored answers the same, bit for bit?

    python -m codeFeature scan FOLDER --db before.sqlite     # with the code before a change
    python -m codeFeature scan FOLDER --db after.sqlite      # with the code after it
    python -m bench.compare_scans before.sqlite after.sqlite

Compares, for every file, what a scan stores about its answer (status, error, genre, confidence, vote share,
not sure, verdict, reasons, top three, labels, mean probabilities, top tags, warnings, duration, level, the
decision rule, and every segment's arrays), and prints each difference and their count; exit status 1 if
there is any. Columns only one of the databases has (a newer schema's) are listed, not compared.
"""

from __future__ import annotations

import argparse
import io
import sqlite3
import sys

import numpy as np

COMPARED = ("status", "error", "genre", "confidence", "vote_share", "not_sure", "verdict", "reasons", "top",
            "labels", "probabilities", "top_tags", "warnings", "duration", "rms", "n_segments", "segment_seconds",
            "fingerprint", "size", "precision", "model_hash", "rule", "extra_labels")


def rows(db: str) -> dict:
    connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    connection.row_factory = sqlite3.Row
    try:
        return {(bytes(r["path"]), r["model"]): dict(r) for r in connection.execute("SELECT * FROM results")}
    finally:
        connection.close()


def differences(old: dict, new: dict) -> list[str]:
    found = [f"only in the first: {p.decode(errors='replace')} ({m})" for p, m in old.keys() - new.keys()]
    found += [f"only in the second: {p.decode(errors='replace')} ({m})" for p, m in new.keys() - old.keys()]
    for key in sorted(old.keys() & new.keys()):
        a, b = old[key], new[key]
        name = key[0].decode(errors="replace")
        found += [f"{name}: {c} {a[c]!r} != {b[c]!r}" for c in COMPARED if a.get(c) != b.get(c)]
        if a.get("segments") is not None or b.get("segments") is not None:
            if a.get("segments") is None or b.get("segments") is None:
                found.append(f"{name}: segments stored in only one")
                continue
            x, y = np.load(io.BytesIO(a["segments"])), np.load(io.BytesIO(b["segments"]))
            if x.files != y.files:
                found.append(f"{name}: segment arrays {x.files} != {y.files}")
            found += [f"{name}: segment array {k} differs" for k in x.files if k in y.files
                      and not np.array_equal(x[k], y[k])]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("first")
    parser.add_argument("second")
    args = parser.parse_args()
    old, new = rows(args.first), rows(args.second)
    extra = sorted(set(next(iter(new.values()), {})) ^ set(next(iter(old.values()), {})))
    found = differences(old, new)
    for line in found:
        print(line)
    print(f"{len(old.keys() & new.keys())} files in both; {len(found)} differences"
          + (f"; columns in only one database, not compared: {', '.join(extra)}" if extra else ""))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
