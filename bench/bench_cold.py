"""Cold start of the command line, phase by phase, next to a bare ``import tensorflow``.

Each round starts fresh processes, interleaved so that the machine's load hits every row alike:

* ``python -c pass`` (the interpreter) and ``python -c "import tensorflow"`` (the floor: serving goes
  through TensorFlow, so no CLI run can start faster than this import);
* ``python -m codeFeature --help`` and ``--list-models`` (they must not import TensorFlow);
* ``python -m codeFeature SONG`` end to end, to its first result, for each song and model;
* a phase probe: a fresh process that does what the CLI does, step by step, with a clock around each
  step: interpreter, imports (the CLI and the library, no TensorFlow), TensorFlow import, model build and
  weight load, tracing (the first forward pass of one batch), first decode, first feature computation
  (librosa's first call, numba compilation where librosa uses it), and the prediction itself.

The report gives medians over ``--rounds`` rounds, with the 1-minute load average beside each row, and
the CLI's margin over the bare TensorFlow import (the issue's target: at most 2 s).

    python -m bench.bench_cold                       # 3 rounds, musicnn_genre, 30 s wav and 5-min mp3
    python -m bench.bench_cold --rounds 5 --json cold.json
    python -m bench.bench_cold --models musicnn_genre cnn_mfcc_small
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: The phase probe: run with ``python -c`` in a fresh process; prints one JSON object of phase seconds.
#: It calls the same functions, in the same order, as ``python -m codeFeature SONG``.
PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
phases = {}
def mark(name):
    global t0
    now = time.perf_counter(); phases[name] = now - t0; t0 = now
import codeFeature.cli.predict as cli
from codeFeature import model_io, predict
mark("imports (CLI + library, no TensorFlow)")
cli.import_tensorflow_quietly()
mark("TensorFlow import")
model = model_io.load_model(MODEL)
mark("model build + weight load")
import numpy as np
model.forward(np.zeros((1, *model.config.input_shape), np.float32))
mark("tracing (first forward pass)")
from codeFeature.audio import decode
audio = decode(SONG, sample_rate=model.config.sample_rate)
mark("first decode (whole song)")
from codeFeature.features import segment_features
from codeFeature.segments import segment_array
segments, _ = segment_array(audio[: model.config.segment_samples * 2], model.config)
segment_features(segments, model.config)
mark("first features (librosa / numba first call)")
prediction = predict.predict_file(SONG, model=model)
mark("predict_file (decode + features + forward)")
print(json.dumps(phases))
sys.stdout.flush()
import os; os._exit(0)  # as the CLI does
"""


def timed(command: list[str], env: dict | None = None) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
    return time.perf_counter() - t0, run


def load() -> float:
    return os.getloadavg()[0]


def make_songs(folder: Path) -> dict[str, Path]:
    from bench.songs import write_mp3

    import soundfile as sf
    from bench.songs import SR, music_like

    folder.mkdir(parents=True, exist_ok=True)
    wav = folder / "clip30.wav"
    if not wav.exists():
        sf.write(str(wav), music_like(30, seed=1), SR)
    mp3 = folder / "song300.mp3"
    if not mp3.exists():
        write_mp3(mp3, 300, seed=2)
    return {"30 s wav": wav, "5-min mp3": mp3}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["musicnn_genre"])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "bench_cold")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)

    songs = make_songs(args.workdir)
    py = sys.executable
    rows: dict[str, list[tuple[float, float]]] = {}

    def record(name: str, seconds: float, run: subprocess.CompletedProcess | None = None) -> None:
        if run is not None and run.returncode != 0:
            raise SystemExit(f"{name} failed ({run.returncode}):\n{run.stderr[-2000:]}")
        rows.setdefault(name, []).append((seconds, load()))

    phase_rows: dict[str, dict[str, list[float]]] = {}
    stderr_lines: dict[str, int] = {}
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds} (load {load():.1f})", file=sys.stderr, flush=True)
        record("python -c pass (interpreter)", *timed([py, "-c", "pass"]))
        record('python -c "import tensorflow" (the floor)', *timed([py, "-c", "import tensorflow"]))
        record("python -m codeFeature --help", *timed([py, "-m", "codeFeature", "--help"]))
        record("python -m codeFeature --list-models", *timed([py, "-m", "codeFeature", "--list-models"]))
        for model in args.models:
            for label, song in songs.items():
                seconds, run = timed([py, "-m", "codeFeature", str(song), "--model", model])
                record(f"python -m codeFeature <{label}> --model {model}", seconds, run)
                stderr_lines[f"{model} {label}"] = len([l for l in run.stderr.splitlines() if l.strip()])
                code = PROBE.replace("MODEL", repr(model)).replace("SONG", repr(str(song)))
                seconds, run = timed([py, "-c", code])
                record(f"phase probe <{label}> --model {model} (total)", seconds, run)
                phases = json.loads(run.stdout.strip().splitlines()[-1])
                interpreter = seconds - sum(phases.values())
                target = phase_rows.setdefault(f"{model}, {label}", {})
                target.setdefault("interpreter start + exit", []).append(interpreter)
                for name, value in phases.items():
                    target.setdefault(name, []).append(value)

    # imported only now, so that nothing of the library's is in this process while the children are timed
    from codeFeature import engines
    cpu = engines.cpu_model()
    print(f"\ncold start, {args.rounds} rounds, medians; CPU: {cpu}; {os.cpu_count()} cores")
    print(f"| command | median s | min s | load (1-min) |")
    print("|---|---|---|---|")
    summary = {}
    for name, values in rows.items():
        secs = [v[0] for v in values]
        loads = [v[1] for v in values]
        summary[name] = {"median": statistics.median(secs), "min": min(secs), "load": [min(loads), max(loads)]}
        print(f"| `{name}` | {statistics.median(secs):.2f} | {min(secs):.2f} | {min(loads):.1f}-{max(loads):.1f} |")
    floor = summary['python -c "import tensorflow" (the floor)']["median"]
    print(f"\nCLI margin over the bare TensorFlow import (target <= 2 s):")
    for name, s in summary.items():
        if name.startswith("python -m codeFeature <"):
            print(f"  {name}: {s['median'] - floor:+.2f} s")
    for key, phases in phase_rows.items():
        print(f"\nphases of the cold CLI ({key}; medians, s):")
        for name, values in phases.items():
            print(f"  {name:48s} {statistics.median(values):6.2f}")
    print(f"\nnon-empty stderr lines of the CLI runs (banners, decoder noise): {stderr_lines}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "rounds": args.rounds, "rows": summary,
                                         "phases": {k: {n: statistics.median(v) for n, v in p.items()}
                                                    for k, p in phase_rows.items()},
                                         "stderr_lines": stderr_lines}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
