"""Benchmark the music library scan: cold rate once warm, peak memory, rescan, Ray, and a 2-hour file.

    python -m bench.bench_library                       # everything, 500 songs
    python -m bench.bench_library --songs 200 --only cold,rescan
    python -m bench.bench_library --only pools --songs 60   # threads against processes

The songs are real GTZAN 30 s tracks (``../shared/data/gtzan/genres``, or ``--data``): the 31 there
are copied again and again under new names (``blues.00007-copy012.wav``) up to ``--songs``, so the
volume is real audio but only 31 distinct songs. Each case runs ``python -m codeFeature scan`` in
a subprocess, as a user would, with the default model. Figures:

- cold: a new database; the rate "once warm" counts the rows stored after the first 10 %
  (model loading and TensorFlow's first traces excluded) by the rows' ``scanned_at`` times;
  peak memory is the largest sum of resident memory over the scan's process tree, sampled
  from /proc every 0.5 s (for Ray: the driver, raylet and actors started under it).
- rescan: the same folder again, nothing changed: the whole command's wall time.
- ray1 / ray2: ``--runner ray --jobs 1|2`` on a local instance, cold, rate once warm.
- long: one 2-hour file (GTZAN tracks end to end) named to sort first, among the songs: the
  short files' rate while the long one is classified and the peak memory.
- pools: ``--pool threads`` against ``--pool processes``, interleaved.
- ab: the local engine, Ray with 1 actor and Ray with 2 actors, interleaved twice (on a shared machine
  the load drifts between runs, so only interleaved runs compare fairly).

The machine's load (``os.getloadavg``) is printed beside every figure: on a shared machine the
figures move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

from codeFeature import engines  # noqa: E402  (the CPU's name; no TensorFlow: the scans run in child processes)

DEFAULT_DATA = REPO.parent / "shared" / "data" / "gtzan" / "genres"
CASES = ("cold", "rescan", "ray1", "ray2", "long", "pools", "ab")


def make_corpus(data: Path, folder: Path, songs: int) -> list[Path]:
    tracks = sorted(p for p in data.rglob("*") if p.suffix.lower() in (".wav", ".au"))
    if not tracks:
        sys.exit(f"no GTZAN tracks under {data}; give --data (the Kaggle genres_original or marsyas genres folder)")
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(songs):
        source = tracks[i % len(tracks)]
        target = folder / f"{source.stem}-copy{i // len(tracks):03d}{source.suffix}"
        if not target.exists():
            shutil.copyfile(source, target)  # a real copy: hard links would be one file to the scan
        made.append(target)
    return made


def make_long(data: Path, target: Path, hours: float = 2.0) -> None:
    import numpy as np
    import soundfile as sf

    if target.exists():
        return
    tracks = sorted(p for p in data.rglob("*.wav"))
    rate = sf.info(tracks[0]).samplerate
    needed = int(hours * 3600 * rate)
    with sf.SoundFile(target, "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        written = i = 0
        while written < needed:
            y, sr = sf.read(tracks[i % len(tracks)], dtype="float32", always_2d=True)
            y = y.mean(axis=1)[: needed - written] if sr == rate else np.zeros(0, np.float32)
            out.write(y)
            written += len(y)
            i += 1


class PeakRSS:
    """Samples the resident memory of a process tree from /proc (Ray actors are not our children)."""

    def __init__(self, pid: int, every: float = 0.5):
        self.pid, self.every, self.peak, self.stop = pid, every, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _tree(self) -> list[int]:
        pids, frontier = [self.pid], [self.pid]
        children: dict = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry))
        while frontier:
            frontier = [c for p in frontier for c in children.get(p, [])]
            pids += frontier
        return pids

    def _rss(self, pid: int) -> int:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, sum(self._rss(p) for p in self._tree()))
            self.stop.wait(self.every)

    def close(self) -> int:
        self.stop.set()
        self.thread.join()
        return self.peak


def run_scan(folder: Path, db: Path, *extra: str, ray_tree: bool = False) -> dict:
    command = [sys.executable, "-m", "codeFeature", "scan", str(folder), "--db", str(db), "--quiet", *extra]
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sampler = PeakRSS(process.pid)
    _, err = process.communicate()
    wall = time.perf_counter() - t0
    tree_peak = sampler.close()
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{err[-2000:]}")
    return {"wall_s": round(wall, 2), "peak_rss_gb": round(tree_peak / 1e9, 3),
            "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
            "summary": err.strip().splitlines()[-1][:300] if err.strip() else ""}


def warm_rate(db: Path, *, exclude: str | None = None) -> dict:
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT scanned_at, duration, path FROM results ORDER BY scanned_at").fetchall()
    if exclude:
        rows = [r for r in rows if exclude not in os.fsdecode(bytes(r[2]))]
    n = len(rows)
    skip = max(1, n // 10)
    span = rows[-1][0] - rows[skip - 1][0] if n > skip else float("nan")
    return {"rows": n, "warm_songs_per_s": round((n - skip) / span, 2) if span > 0 else None,
            "audio_s_per_s": round(sum(r[1] or 0 for r in rows[skip:]) / span, 1) if span > 0 else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--songs", type=int, default=500)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=None, help="where the copies go (default: a temporary folder)")
    parser.add_argument("--only", default=",".join(c for c in CASES if c != "pools"),
                        help=f"comma-separated cases from {', '.join(CASES)}")
    parser.add_argument("--jobs", type=int, default=None, help="local engine workers (default: the CLI's)")
    args = parser.parse_args()
    cases = args.only.split(",")
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_library_"))
    songs_dir = work / f"songs{args.songs}"
    t0 = time.perf_counter()
    make_corpus(args.data, songs_dir, args.songs)
    print(f"# {args.songs} copies of {len(list(args.data.rglob('*.wav')))} real GTZAN 30 s tracks in {songs_dir} "
          f"({time.perf_counter() - t0:.0f} s to make); CPU: {engines.cpu_model()}, {os.cpu_count()} cores; "
          f"load {os.getloadavg()}", flush=True)
    jobs = ["--jobs", str(args.jobs)] if args.jobs else []
    results: dict = {}

    def report(name: str, figures: dict) -> None:
        results[name] = figures
        print(json.dumps({"case": name, **figures}), flush=True)

    cold_db = work / "cold.sqlite"
    if "cold" in cases or "rescan" in cases:
        if "cold" in cases or not cold_db.exists():
            for suffix in ("", "-wal", "-shm"):
                Path(f"{cold_db}{suffix}").unlink(missing_ok=True)
            figures = run_scan(songs_dir, cold_db, *jobs)
            report("cold", {**figures, **warm_rate(cold_db)})
    if "rescan" in cases:
        report("rescan", run_scan(songs_dir, cold_db, *jobs))
    for actors in (1, 2):
        name = f"ray{actors}"
        if name in cases:
            db = work / f"{name}.sqlite"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink(missing_ok=True)
            figures = run_scan(songs_dir, db, "--runner", "ray", "--jobs", str(actors))
            report(name, {**figures, **warm_rate(db)})
    if "long" in cases:
        long_dir = work / f"long{args.songs}"
        if not long_dir.exists():
            long_dir.mkdir()
            for song in sorted(songs_dir.iterdir()):
                os.link(song, long_dir / song.name)  # its own folder; links are fine, each name is one file
            make_long(args.data, long_dir / "000-two-hours.wav")
        db = work / "long.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        figures = run_scan(long_dir, db, *jobs)
        with sqlite3.connect(db) as con:
            done_at, seconds, audio = con.execute("SELECT scanned_at, seconds, duration FROM results "
                                                  "WHERE path_text LIKE '%000-two-hours%'").fetchone()
            # the short files stored while the long one was being classified: they must keep flowing
            during = con.execute("SELECT count(*) FROM results WHERE scanned_at BETWEEN ? AND ? AND path_text "
                                 "NOT LIKE '%000-two-hours%'", (done_at - seconds, done_at)).fetchone()[0]
        report("long", {**figures, **warm_rate(db, exclude="000-two-hours"), "long_file_seconds": round(seconds, 1),
                        "long_file_audio_s": round(audio), "short_files_stored_while_long_ran": during,
                        "short_rate_while_long_ran": round(during / seconds, 2)})
    if "pools" in cases:
        for round_ in range(2):  # interleaved: the load drifts
            for pool in ("threads", "processes"):
                db = work / f"pool-{pool}-{round_}.sqlite"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
                figures = run_scan(songs_dir, db, "--pool", pool, *jobs)
                report(f"pool_{pool}_{round_}", {**figures, **warm_rate(db)})
    if "ab" in cases:
        variants = {"local": [*jobs], "ray1": ["--runner", "ray", "--jobs", "1"], "ray2": ["--runner", "ray", "--jobs", "2"]}
        for round_ in range(2):
            for name, extra in variants.items():
                db = work / f"ab-{name}-{round_}.sqlite"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db}{suffix}").unlink(missing_ok=True)
                figures = run_scan(songs_dir, db, *extra)
                report(f"ab_{name}_{round_}", {**figures, **warm_rate(db)})
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
