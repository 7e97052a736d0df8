"""What the integrity check at opening costs: a library database of N rows (musicnn-sized rows: ten
genres, ten segments with 50 tags each), opened with and without ``PRAGMA quick_check``.

    python -m bench.bench_db_check [--rows 10000]

Prints the database's size, the best of five openings each way, and the CPU. The file lives in a
temporary folder (page cache warm: a first opening after a reboot reads the whole file from disk).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from codeFeature import engines
from codeFeature.collection.store import COLUMNS, JSON_COLUMNS, LibraryStore, pack_segments


def make(db: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    labels = [f"genre{j}" for j in range(10)]
    with LibraryStore(db) as store, store.db:
        for i in range(rows):
            row = dict.fromkeys(COLUMNS)
            row.update(path=f"/music/artist{i % 300}/album/{i:05d} song.mp3".encode(), path_text=f"{i:05d}",
                       model="msd_musicnn", model_hash="h", precision="float32", size=5_000_000 + i, mtime_ns=i,
                       fingerprint="f" * 32, status="ok", genre="genre0", not_sure=0, scanned_at=0.0,
                       labels=labels, probabilities=rng.random(10).tolist(), reasons=["a reason"],
                       top=[["genre0", 0.5]], top_tags=[["rock", 0.5]] * 5, warnings=[], rule={},
                       segments=pack_segments(np.arange(10) * 3.0, rng.random((10, 10)),
                                              {"tags": rng.random((10, 50))}))
            values = [json.dumps(row[c]) if c in JSON_COLUMNS and row[c] is not None else row[c] for c in COLUMNS]
            store.db.execute(f"INSERT INTO results VALUES ({', '.join('?' * len(COLUMNS))})", values)


def best(call, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-db-check-") as folder:
        db = Path(folder) / "lib.sqlite"
        make(db, args.rows)
        plain = best(lambda: LibraryStore(db, check=False).close())
        checked = best(lambda: LibraryStore(db).close())
        print(f"{args.rows} rows, {db.stat().st_size / 1e6:.1f} MB: opening {plain * 1000:.1f} ms without the check, "
              f"{checked * 1000:.1f} ms with quick_check (best of 5); CPU: {engines.cpu_model()}, "
              f"{os.cpu_count()} cores")


if __name__ == "__main__":
    main()
