"""Where warm ``predict_file`` spends its time, per model (cProfile; py-spy optional).

    python -m bench.profile_predict [SONG] [--models musicnn_genre cnn_mfcc_small] [--top 25]

Without SONG a 5-minute 44.1 kHz stereo mp3 is synthesised in a temporary folder.
Prints the stage split that ``codeFeature.phases.record_phases`` records (median of runs) and the
top functions by own time and by cumulative time of one profiled warm run.
For a native-level view (TensorFlow kernels, libsndfile, soxr), run py-spy on the
same script: ``py-spy record --native -o prof.svg -- python -m bench.profile_predict``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import tempfile
import time
from pathlib import Path

from codeFeature.runtime import prepare_process  # noqa: E402  (before TensorFlow and librosa)

prepare_process()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("song", nargs="?", type=Path)
    parser.add_argument("--models", nargs="+", default=["musicnn_genre", "cnn_mfcc_small"])
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    import codeFeature as cf
    from codeFeature.phases import record_phases

    tmp = None
    song = args.song
    if song is None:
        from bench import songs

        tmp = tempfile.TemporaryDirectory(prefix="codefeature-prof-")
        song = songs.write_mp3(Path(tmp.name) / "song_5min.mp3", 300.0, seed=1)
    for name in args.models:
        model = cf.load_model(name)
        cf.predict_file(song, model=model)  # warm-up
        walls, stages, loads = [], [], []
        for _ in range(args.repeats):
            loads.append(round(os.getloadavg()[0], 2))
            with record_phases() as runs:
                t0 = time.perf_counter()
                cf.predict_file(song, model=model)
                walls.append(time.perf_counter() - t0)
            stages.extend(runs)
        med = {k: statistics.median(s[k] for s in stages) for k in stages[0]}
        wall = statistics.median(walls)
        print(f"\n=== {name}: warm predict_file on {song.name}: median {wall:.3f} s (load {loads})")
        for k, v in med.items():
            print(f"    {k:9s} {v:7.3f} s  {100 * v / wall:5.1f} %")
        prof = cProfile.Profile()
        prof.enable()
        cf.predict_file(song, model=model)
        prof.disable()
        for order in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(order).print_stats(args.top)
            text = buf.getvalue()
            start = text.find("   ncalls")
            print(f"--- top {args.top} by {order}\n" + text[start:])
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
