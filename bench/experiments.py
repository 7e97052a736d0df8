"""Candidate speed-ups for warm ``predict_file``, tried by monkeypatch or scratch code, never in the library.

    python -m bench.experiments [SONG] [--repeats 5] [--only decode features forward env cold]

For each candidate: the median time of the stage it touches (with the 1-minute load
average before the runs), and what it does to the output: the maximum absolute
difference of the per-segment probabilities (and of the features) from the
library's current path. 0.0 means bit-for-bit identical.
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

from codeFeature.runtime import prepare_process  # noqa: E402

prepare_process()
REPO = Path(__file__).resolve().parent.parent

import numpy as np  # noqa: E402

RESULTS: list[dict] = []


def timed(fn, repeats):
    fn()
    times, loads = [], []
    out = None
    for _ in range(repeats):
        loads.append(round(os.getloadavg()[0], 1))
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), loads, out


def report(group, name, seconds, loads, diff=None, note=""):
    RESULTS.append({"group": group, "name": name, "seconds": seconds, "loads": loads, "max_abs_diff": diff,
                    "note": note})
    d = "" if diff is None else f"max|diff| {diff:.3g}"
    print(f"  [{group}] {name:60s} {seconds:8.3f} s  load {min(loads):.1f}-{max(loads):.1f}  {d}  {note}",
          flush=True)


def probs_of(model, x):
    import keras

    r = model.keras_model(x, training=False)
    r = r[0] if isinstance(r, (list, tuple)) else r
    return keras.ops.convert_to_numpy(r)


# ---------------------------------------------------------------------------------------------- decode
def exp_decode(song, models, reps):
    import soundfile as sf
    import soxr

    import codeFeature.audio as A
    from codeFeature.features import segment_features
    from codeFeature.segments import segment_array

    print("decode: soundfile + soxr quality, ffmpeg direct, whole-file resample")
    for name, model in models.items():
        rate = model.config.sample_rate
        base_t, loads, base = timed(lambda: A.load_audio(song, sample_rate=rate).samples, reps)
        segs, _ = segment_array(base, model.config)
        p_base = probs_of(model, segment_features(segs, model.config))
        report("decode", f"{name}: soundfile blocks + soxr HQ stream (current)", base_t, loads, 0.0)

        def with_quality(q):
            real = soxr.ResampleStream

            def patched(*a, **k):
                k["quality"] = q
                return real(*a, **k)

            A.soxr.ResampleStream = patched
            try:
                return A.load_audio(song, sample_rate=rate).samples
            finally:
                A.soxr.ResampleStream = real

        for q in ("VHQ", "MQ", "LQ", "QQ"):
            t, loads, y = timed(lambda: with_quality(q), reps)
            segs, _ = segment_array(y, model.config)
            d = float(np.abs(probs_of(model, segment_features(segs, model.config)) - p_base).max())
            report("decode", f"{name}: soxr quality {q}", t, loads, d, f"signal diff {np.abs(y - base).max():.2g}")

        def read_only():
            with sf.SoundFile(str(song)) as f:
                return f.read(dtype="float32")

        t, loads, _ = timed(read_only, reps)
        report("decode", f"{name}: libsndfile mp3 read only (no downmix/resample)", t, loads, None,
               "lower bound of the soundfile path")

        def whole_resample():
            y = read_only().mean(axis=1, dtype=np.float32)
            return soxr.resample(y, 44100, rate, quality="HQ").astype(np.float32)

        t, loads, y = timed(whole_resample, reps)
        d = float(np.abs(y - base).max()) if len(y) == len(base) else None
        report("decode", f"{name}: read all, mean, soxr.resample once (not streamed)", t, loads, None,
               f"signal max diff vs stream {d}")

        ffmpeg = A.find_ffmpeg()
        if ffmpeg:
            t, loads, y = timed(lambda: A._decode_ffmpeg(Path(song), None, Path(song).name, rate, "").samples, reps)
            n = min(len(y), len(base))
            segs, _ = segment_array(y.astype(np.float32), model.config)
            try:
                d = float(np.abs(probs_of(model, segment_features(segs, model.config))[: len(p_base)]
                                 - p_base[: len(segs)]).max())
            except ValueError:
                d = None
            report("decode", f"{name}: ffmpeg decodes mp3 straight to {rate} Hz mono (subprocess)", t, loads, d,
                   f"{len(y)} vs {len(base)} samples; signal diff {np.abs(y[:n] - base[:n]).max():.2g}")


# ---------------------------------------------------------------------------------------------- features
def exp_features(song, models, reps):
    import librosa

    from codeFeature.features import segment_features
    from codeFeature.segments import segment_array

    print("features: float32 vs float64, chunk size, scratch numpy mel")
    for name, model in models.items():
        cfg = model.config
        y = __import__("codeFeature").decode(song, sample_rate=cfg.sample_rate)
        segs, _ = segment_array(y, cfg)
        t, loads, x = timed(lambda: segment_features(segs, cfg), reps)
        p = probs_of(model, x)
        report("features", f"{name}: segment_features, all {len(segs)} segments float32 (one call)", t, loads, 0.0)
        t, loads, _ = timed(lambda: np.concatenate([segment_features(segs[i:i + 128], cfg)
                                                    for i in range(0, len(segs), 128)]), reps)
        report("features", f"{name}: in chunks of 128 (current predict_segments)", t, loads, 0.0)
        t, loads, _ = timed(lambda: np.concatenate([segment_features(segs[i:i + 16], cfg)
                                                    for i in range(0, len(segs), 16)]), reps)
        report("features", f"{name}: in chunks of 16", t, loads, 0.0)
        if cfg.feature == "mfcc":
            f64 = lambda: np.swapaxes(librosa.feature.mfcc(  # noqa: E731
                y=segs.astype(np.float64), sr=cfg.sample_rate, n_mfcc=cfg.n_mfcc, n_fft=cfg.n_fft,
                hop_length=cfg.hop_length, n_mels=cfg.n_mels), 1, 2)[..., None].astype(np.float32)
        else:
            from codeFeature.musicnn import MUSICNN_FRAMES

            def f64():
                mel = librosa.feature.melspectrogram(y=segs.astype(np.float64), sr=16000, n_fft=512, hop_length=256,
                                                     n_mels=96, center=True, pad_mode="constant")
                lm = np.log10(10000 * mel + 1)[:, :, :MUSICNN_FRAMES]
                return np.ascontiguousarray(np.swapaxes(lm, 1, 2), dtype=np.float32)
        t, loads, x64 = timed(f64, reps)
        report("features", f"{name}: librosa in float64", t, loads, float(np.abs(probs_of(model, x64) - p).max()),
               f"feature diff {np.abs(x64 - x).max():.3g}")
        # stages inside librosa, to see where feature time goes
        t_stft, loads, S = timed(lambda: np.abs(librosa.stft(segs, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                                             pad_mode="constant")) ** 2, reps)
        report("features", f"{name}:   of which librosa.stft + |.|^2", t_stft, loads)
        fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels)
        t_mel, loads, M = timed(lambda: np.einsum("...ft,mf->...mt", S, fb, optimize=True), reps)
        report("features", f"{name}:   of which mel filterbank (einsum)", t_mel, loads)
        if cfg.feature == "mfcc":
            t_db, loads, _ = timed(lambda: librosa.power_to_db(M), reps)
            report("features", f"{name}:   of which power_to_db", t_db, loads)
            import scipy.fft

            db = librosa.power_to_db(M)
            t_dct, loads, _ = timed(lambda: scipy.fft.dct(db, axis=-2, type=2, norm="ortho")[..., :cfg.n_mfcc, :], reps)
            report("features", f"{name}:   of which DCT", t_dct, loads)


# ---------------------------------------------------------------------------------------------- forward
def exp_forward(song, models, reps):
    import keras
    import tensorflow as tf

    import codeFeature as cf
    from codeFeature.features import segment_features
    from codeFeature.segments import segment_array

    print("forward: call styles and batch sizes")
    for name, model in models.items():
        km = model.keras_model
        y = cf.decode(song, sample_rate=model.config.sample_rate)
        segs, _ = segment_array(y, model.config)
        x = segment_features(segs, model.config)
        n = len(x)

        def first(r):
            r = r[0] if isinstance(r, (list, tuple)) else r
            return keras.ops.convert_to_numpy(r)

        def chunked(call, bs):
            return lambda: np.concatenate([first(call(x[i:i + bs])) for i in range(0, n, bs)])

        direct = lambda a: km(a, training=False)  # noqa: E731
        t, loads, ref = timed(chunked(direct, 128), reps)
        report("forward", f"{name}: direct call, chunks of 128 (current)", t, loads, 0.0, f"{n} segments")
        for bs in (8, 32):
            t, loads, o = timed(chunked(direct, bs), reps)
            report("forward", f"{name}: direct call, chunks of {bs}", t, loads, float(np.abs(o - ref).max()))
        t, loads, o = timed(chunked(km.predict_on_batch, 128), reps)
        report("forward", f"{name}: predict_on_batch, chunks of 128", t, loads, float(np.abs(o - ref).max()))
        t, loads, o = timed(lambda: first(km.predict(x, batch_size=32, verbose=0)), reps)
        report("forward", f"{name}: predict(batch_size=32)", t, loads, float(np.abs(o - ref).max()))
        graph = tf.function(direct, reduce_retracing=True)
        t, loads, o = timed(chunked(graph, 128), reps)
        report("forward", f"{name}: tf.function(reduce_retracing), chunks of 128", t, loads,
               float(np.abs(o - ref).max()))
        sig = tf.function(direct, input_signature=[tf.TensorSpec((None, *model.config.input_shape), tf.float32)])
        t, loads, o = timed(chunked(sig, 128), reps)
        report("forward", f"{name}: tf.function(input_signature=(None, ...)), chunks of 128", t, loads,
               float(np.abs(o - ref).max()))
        t, loads, o = timed(chunked(sig, 32), reps)
        report("forward", f"{name}: tf.function(input_signature), chunks of 32", t, loads,
               float(np.abs(o - ref).max()))
        try:
            xla = tf.function(direct, jit_compile=True, input_signature=[
                tf.TensorSpec((None, *model.config.input_shape), tf.float32)])
            t, loads, o = timed(chunked(xla, 128), reps)
            report("forward", f"{name}: tf.function(jit_compile=True), chunks of 128", t, loads,
                   float(np.abs(o - ref).max()))
        except Exception as exc:  # XLA may be missing on CPU builds
            print(f"  jit_compile failed: {exc}")
        np.save(Path(tempfile.gettempdir()) / f"cf_bench_ref_{name}.npy", ref)
        np.save(Path(tempfile.gettempdir()) / f"cf_bench_x_{name}.npy", x)


_ENV_CHILD = r"""
import os, sys, time, json, statistics, numpy as np
import tensorflow as tf
intra, inter = %(intra)r, %(inter)r
if intra: tf.config.threading.set_intra_op_parallelism_threads(intra)
if inter: tf.config.threading.set_inter_op_parallelism_threads(inter)
import codeFeature as cf, keras
m = cf.load_model(%(name)r)
x = np.load(%(x)r); ref = np.load(%(ref)r)
graph = %(graph)r
f = tf.function(lambda a: m.keras_model(a, training=False), input_signature=[tf.TensorSpec((None, *m.config.input_shape), tf.float32)]) if graph else (lambda a: m.keras_model(a, training=False))
def run():
    r = [f(x[i:i+128]) for i in range(0, len(x), 128)]
    r = [v[0] if isinstance(v, (list, tuple)) else v for v in r]
    return np.concatenate([keras.ops.convert_to_numpy(v) for v in r])
run()
ts, ls = [], []
for _ in range(%(reps)d):
    ls.append(round(os.getloadavg()[0], 1)); t0 = time.perf_counter(); o = run(); ts.append(time.perf_counter() - t0)
print(json.dumps({"t": statistics.median(ts), "loads": ls, "diff": float(np.abs(o - ref).max())}))
"""


def exp_env(models, reps):
    print("forward in a new process: thread settings and oneDNN options")
    tmpd = Path(tempfile.gettempdir())
    variants = [("default threads", {}, 0, 0), ("intra 1 / inter 1", {}, 1, 1), ("intra 2 / inter 1", {}, 2, 1),
                ("TF_ENABLE_ONEDNN_OPTS=0", {"TF_ENABLE_ONEDNN_OPTS": "0"}, 0, 0),
                ("ONEDNN_DEFAULT_FPMATH_MODE=BF16 (AMX bf16)", {"ONEDNN_DEFAULT_FPMATH_MODE": "BF16"}, 0, 0)]
    for name in models:
        x, ref = tmpd / f"cf_bench_x_{name}.npy", tmpd / f"cf_bench_ref_{name}.npy"
        if not x.exists():
            print("  run the forward group first")
            return
        for graph in (False, True):
            for label, env, intra, inter in variants:
                code = _ENV_CHILD % {"intra": intra, "inter": inter, "name": name, "x": str(x),
                                     "ref": str(ref), "reps": reps, "graph": graph}
                proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                                      env={**os.environ, **env}, timeout=900)
                line = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                if not line:
                    print(f"  {label} failed: {proc.stderr[-500:]}")
                    continue
                r = json.loads(line[-1])
                report("env", f"{name}: {'tf.function' if graph else 'direct call'}, {label}", r["t"], r["loads"],
                       r["diff"])


_COLD_CHILD = r"""
import os, sys, time, json
t0 = time.perf_counter()
from codeFeature.runtime import prepare_process; prepare_process()
import codeFeature as cf
t1 = time.perf_counter()
import keras, tensorflow
t2 = time.perf_counter()
import librosa
t3 = time.perf_counter()
m = cf.load_model(%(name)r)
t4 = time.perf_counter()
from codeFeature.phases import record_phases
with record_phases() as runs:
    p = cf.predict_file(%(song)r, model=m)
    t5 = time.perf_counter()
    p2 = cf.predict_file(%(song)r, model=m)
    t6 = time.perf_counter()
print(json.dumps({"import codeFeature": t1-t0, "import keras+tensorflow": t2-t1, "import librosa": t3-t2,
  "load_model": t4-t3, "first predict_file": t5-t4, "second predict_file": t6-t5,
  "first timings": runs[0], "second timings": runs[1]}))
"""


def exp_cold(song, models):
    print("cold start breakdown (a new process each)")
    for name in models:
        code = _COLD_CHILD % {"name": name, "song": str(song)}
        load = round(os.getloadavg()[0], 1)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=900)
        wall = time.perf_counter() - t0
        r = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
        print(f"  {name} (load {load}): process wall {wall:.2f} s; " + "; ".join(
            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} " + json.dumps({a: round(b, 2) for a, b in v.items()})
            for k, v in r.items()), flush=True)
        RESULTS.append({"group": "cold", "name": name, "wall": wall, "load": load, **r})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("song", nargs="?", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--models", nargs="+", default=["musicnn_genre", "cnn_mfcc_small"])
    parser.add_argument("--only", nargs="+", default=["decode", "features", "forward", "env", "cold"])
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    import codeFeature as cf

    tmp = None
    song = args.song
    if song is None:
        from bench import songs

        tmp = tempfile.TemporaryDirectory(prefix="codefeature-exp-")
        song = songs.write_mp3(Path(tmp.name) / "song_5min.mp3", 300.0, seed=1)
    models = {name: cf.load_model(name) for name in args.models}
    print(f"song {song}; load {os.getloadavg()}")
    if "decode" in args.only:
        exp_decode(song, models, args.repeats)
    if "features" in args.only:
        exp_features(song, models, args.repeats)
    if "forward" in args.only:
        exp_forward(song, models, args.repeats)
    if "env" in args.only:
        exp_env(list(models), max(3, args.repeats // 2))
    if "cold" in args.only:
        exp_cold(song, list(models))
    if args.json:
        Path(args.json).write_text(json.dumps(RESULTS, indent=1, default=str))
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
