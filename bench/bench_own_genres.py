"""Time ``python -m training.own_genres`` on 100 songs of 30 s: cold (empty embedding cache) and again warm.

    python -m bench.bench_own_genres --gtzan ~/gtzan          # 100 GTZAN 30 s tracks, 10 labels (their genres)
    python -m bench.bench_own_genres --songs 40 --labels 4    # fewer

A folder of folders is made in a temporary folder: one label per GTZAN genre, GTZAN's 30 s tracks
copied in under new names. Where the dataset holds fewer distinct tracks than asked for (the project's
shared copy has 31), tracks are copied again under new names (``blues.00001-copy02.wav``): the volume of
audio, and so the time, is that of distinct songs (the embedding cache is keyed by path), and an
``--artists`` CSV groups every copy with its original, so the cross-validation never tests on a copy
of a training song. Then the command runs as a user runs it, in a subprocess, with a fresh cache
(``cold``), and once more with ``--force`` on the filled cache (``warm``: the head search, export and int8
check alone). It prints the CPU, the load average before and after each run, the wall time, the CPU
time (user + system) and the command's own split by step (the manifest's ``training_seconds_by_step``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def full_tracks(gtzan) -> dict[str, list[Path]]:
    """Genre -> its GTZAN audio files of at least 25 s (the 30 s tracks; excerpts left out)."""
    import soundfile as sf

    from training.data import find_audio
    from training.datasets import find_gtzan

    by_genre: dict[str, list[Path]] = {}
    for track, paths in find_audio(find_gtzan(gtzan).data_for("audio")).items():
        for path in paths:
            try:
                long_enough = sf.info(str(path)).duration >= 25
            except RuntimeError:
                long_enough = False
            if long_enough:
                by_genre.setdefault(track.split(".")[0], []).append(path)
                break
    return by_genre


def make_folder(root: Path, by_genre: dict[str, list[Path]], songs: int, labels: int) -> Path:
    """``root/data/<genre>/...`` with ``songs`` files over ``labels`` genres, and ``root/artists.csv``."""
    genres = sorted(g for g, paths in by_genre.items() if len(paths) >= 2)[:labels]
    if len(genres) < 2:
        raise SystemExit("error: fewer than 2 genres with at least 2 tracks of 30 s in this GTZAN copy")
    data = root / "data"
    rows = []
    for i, genre in enumerate(genres):
        (data / genre).mkdir(parents=True)
        share = songs // len(genres) + (1 if i < songs % len(genres) else 0)
        tracks = sorted(by_genre[genre])
        for n in range(share):
            source = tracks[n % len(tracks)]
            copy = n // len(tracks)
            name = source.stem + (f"-copy{copy:02d}" if copy else "") + source.suffix
            shutil.copyfile(source, data / genre / name)
            rows.append((f"{genre}/{name}", source.stem))
    with open(root / "artists.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("file", "artist"), *rows])
    return data


def timed_run(argv: list[str]) -> dict:
    """Wall time and CPU time (user + system, the command and its children) of one run; on a shared machine
    the wall time grows with the load, the CPU time much less."""
    before = os.getloadavg()
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "training.own_genres", *argv], cwd=REPO, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - t0
    cpu = _children_cpu() - cpu0
    if done.returncode:
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit(f"error: training.own_genres exited with {done.returncode}")
    return {"seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1), "load_before": [round(v, 1) for v in before],
            "load_after": [round(v, 1) for v in os.getloadavg()], "output": done.stdout.strip().splitlines()}


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv=None) -> int:
    from codeFeature.engines import cpu_model
    from training.datasets import add_gtzan_argument

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_gtzan_argument(p)
    p.add_argument("--songs", type=int, default=100)
    p.add_argument("--labels", type=int, default=10, help="GTZAN genres used as labels")
    p.add_argument("--skip-int8", action="store_true")
    p.add_argument("--keep", type=Path, help="keep the folder, the cache and the model here (default: deleted)")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-own-genres-")) if args.keep is None else args.keep
    root.mkdir(parents=True, exist_ok=True)
    try:
        data = make_folder(root, full_tracks(args.gtzan), args.songs, args.labels)
        model = root / "model"
        common = [str(data), "--out", str(model), "--artists", str(root / "artists.csv"),
                  "--cache", str(root / "cache")] + (["--skip-int8"] if args.skip_int8 else [])
        result = {"cpu": cpu_model(), "cores": os.cpu_count(), "songs": args.songs}
        result["cold"] = timed_run(common)
        result["cold"]["by_step"] = json.loads((model / "manifest.json").read_text())["training_seconds_by_step"]
        result["warm"] = timed_run(common + ["--force"])
        manifest = json.loads((model / "manifest.json").read_text())
        result["warm"]["by_step"] = manifest["training_seconds_by_step"]
        cv = manifest["metrics"]["cv_grouped"]
        result["cv"] = {k: cv[k] for k in ("songs", "song_accuracy", "balanced_accuracy", "folds")}
        result["command"] = "python -m bench.bench_own_genres " + " ".join(sys.argv[1:] if argv is None else argv)
        print(json.dumps(result, indent=1))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
