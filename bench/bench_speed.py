"""Speed and memory benchmark of issue 5: every figure of its table, in one run.

    python -m bench.bench_speed                 # full run (~10 min on the 2-core machine)
    python -m bench.bench_speed --quick         # fewer repeats, shorter long files, no browser
    python -m bench.bench_speed --json out.json # also save every measurement
    python -m bench.bench_speed --only warm batch --isa AVX512_CORE_BF16   # the issue 14 rows, as on a CPU without AMX

The songs are generated in a temporary folder (``bench/songs.py``: synthetic music-like
44.1 kHz stereo mp3 written by soundfile; long files and the 100 batch songs are made
from it by ffmpeg stream copy) plus a real GTZAN track from ``../shared/data`` when
present. Each figure is the median of repeated runs; the 1-minute load average is
recorded before every run and printed beside the figure, because the machine has 2
cores that other jobs share. Figures are measurements, not assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from codeFeature.runtime import prepare_process  # noqa: E402  (before TensorFlow and librosa)

prepare_process()
REPO = Path(__file__).resolve().parent.parent

import numpy as np  # noqa: E402

ROWS: list[dict] = []
LAST_CPU: list[float] = []


def cpu_line() -> str:
    """The CPU model, cores, the instruction-set level the library computes at and the flags that decide it."""
    from codeFeature import engines

    flags = sorted(engines.cpu_flags() & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
                                          "amx_int8", "amx_tile"})
    return (f"{engines.cpu_model()}, {os.cpu_count()} CPUs, computing at {engines.describe_isa()}; "
            f"flags {' '.join(flags)}; figures {engines.isa_provenance()}")


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def measure(fn, repeats: int, *, warmup: int = 0) -> tuple[list[float], list[float], list]:
    """Run ``fn`` ``repeats`` times; seconds, 1-min load before each run, and results."""
    for _ in range(warmup):
        fn()
    times, loads, results = [], [], []
    cpu = []
    for _ in range(repeats):
        loads.append(load1())
        c0 = time.process_time()
        t0 = time.perf_counter()
        results.append(fn())
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    # CPU seconds of this process (all threads): less sensitive than wall time to other jobs' load
    LAST_CPU[:] = cpu
    return times, loads, results


def phase_note(stages: dict) -> str:
    """Every phase ``Prediction.timings`` holds, in :data:`codeFeature.predict.PHASES` order (medians, s)."""
    from codeFeature.predict import PHASES

    words = {"predict": "forward"}
    parts = [f"{words.get(k, k)} {stages[k]:.2f}" for k in PHASES if k != "overlap" and k in stages]
    return " / ".join(parts) + f" / overlap -{stages.get('overlap', 0.0):.2f} s"


def phase_breakdown(label: str, stages: dict) -> str:
    """Where a warm call's time goes: each phase's median seconds and share of the median total, largest
    first (the shares add up to 100 % with ``other`` less ``overlap``)."""
    from codeFeature.predict import PHASES

    total = stages.get("total") or sum(v for k, v in stages.items() if k in PHASES and k != "overlap")
    rows = sorted(((k, stages[k]) for k in PHASES if k != "overlap" and k in stages), key=lambda kv: -kv[1])
    lines = [f"  where the time goes, {label} (median total {total:.3f} s):"]
    lines += [f"    {k:9} {v:7.3f} s  {100 * v / total:5.1f} %" for k, v in rows]
    lines.append(f"    {'overlap':9} {-stages.get('overlap', 0.0):7.3f} s  (phases that ran at once)")
    return "\n".join(lines)


def record(name: str, values: list[float], loads: list[float], *, unit: str, target: float | None,
           better: str = "lower", note: str = "", **extra) -> dict:
    med = statistics.median(values) if values else float("nan")
    ok = None
    if target is not None and values:
        ok = med <= target if better == "lower" else med >= target
    cpu = statistics.median(LAST_CPU) if LAST_CPU and unit == "s" and len(LAST_CPU) == len(values) else None
    LAST_CPU.clear()
    if cpu is not None:
        note = f"cpu {cpu:.2f} s; " + note
    row = {"name": name, "median": med, "unit": unit, "values": values, "loads": loads, "cpu_s": cpu,
           "target": target, "better": better, "pass": ok, "note": note, **extra}
    ROWS.append(row)
    print(f"  {name}: median {med:.3f} {unit} of {['%.3f' % v for v in values]} (load {loads})", flush=True)
    return row


# --------------------------------------------------------------------------- the seed-style baseline
def seed_style_predict(path: Path, keras_model, config, workdir: Path) -> np.ndarray:
    """The seed design: pydub cuts 3 s chunks, exports each to wav, librosa loads each, one predict per chunk.

    The seed computed MFCC; for a model with other features (musicnn's log-mel), the chunk's features
    come from the library's feature function instead, so that the baseline runs the same model."""
    import librosa
    from pydub import AudioSegment

    from bench.songs import ffmpeg_exe

    exe = ffmpeg_exe()
    AudioSegment.converter = exe
    if path.suffix.lower() == ".wav":
        audio = AudioSegment.from_wav(str(path))
    else:
        # pydub's from_file needs ffprobe, which the imageio-ffmpeg wheel lacks: let ffmpeg write the wav
        wav = workdir / "whole.wav"
        subprocess.run([exe, "-nostdin", "-y", "-loglevel", "error", "-i", str(path), str(wav)], check=True)
        audio = AudioSegment.from_wav(str(wav))
    chunk_ms = int(config.segment_seconds * 1000)
    probs = []
    for i, start in enumerate(range(0, len(audio) - chunk_ms + 1, chunk_ms)):
        chunk_path = workdir / f"chunk{i}.wav"
        audio[start:start + chunk_ms].export(str(chunk_path), format="wav")
        y, sr = librosa.load(str(chunk_path), sr=config.sample_rate)
        if config.feature == "mfcc":
            mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=config.n_mfcc, n_fft=config.n_fft,
                                        hop_length=config.hop_length, n_mels=config.n_mels).T
            mfcc = mfcc[: config.frames_per_segment]
            if len(mfcc) < config.frames_per_segment:
                mfcc = np.pad(mfcc, ((0, config.frames_per_segment - len(mfcc)), (0, 0)))
            x = mfcc[None, ..., None]
        else:
            from codeFeature.features import segment_features

            x = segment_features(y[None, : config.segment_samples], config)
        out = keras_model.predict(x, verbose=0)
        probs.append((out[0] if isinstance(out, list) else out)[0])
        chunk_path.unlink()
    return np.array(probs)


class GraphForward:
    """Stand-in for ``LoadedModel.keras_model`` whose call is one traced ``tf.function`` (an experiment)."""

    def __init__(self, keras_model, input_shape, jit_compile=False):
        import tensorflow as tf

        self.keras_model = keras_model
        self.outputs = keras_model.outputs
        self._fn = tf.function(lambda x: keras_model(x, training=False), jit_compile=jit_compile,
                               input_signature=[tf.TensorSpec((None, *input_shape), tf.float32)])

    def __call__(self, x, training=False):
        return self._fn(x)


def graph_model(model, jit_compile=False):
    """A copy of a ``LoadedModel`` whose forward pass runs as a graph."""
    import dataclasses

    return dataclasses.replace(model, keras_model=GraphForward(model.keras_model, model.config.input_shape,
                                                               jit_compile))


# --------------------------------------------------------------------------- subprocess workers
def worker_memory(model_name: str, path: str, chunk: str = "", graph: str = "") -> None:
    """Peak resident memory of classifying ``path`` (printed as JSON).

    ``chunk`` overrides ``codeFeature.predict.CHUNK_SEGMENTS`` and ``graph`` = "1" runs the
    forward pass through a ``tf.function``: both are experiments (monkeypatches), not the library.
    """
    import codeFeature as cf
    import codeFeature.predict as P

    if chunk:
        P.CHUNK_SEGMENTS = int(chunk)

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) / 1024.0
        return float("nan")

    model = cf.load_model(model_name)
    if graph == "1":
        model = graph_model(model)
    from bench.songs import music_like

    # warm the model and librosa on 10 s of audio so the figure is about the song, not the first call
    cf.predict_audio(music_like(10.0, sr=44100)[:, 0], model=model, sample_rate=44100)
    before = status("VmRSS:")
    hwm_before = status("VmHWM:")
    from codeFeature.phases import record_phases

    with record_phases() as runs:
        t0 = time.perf_counter()
        pred = cf.predict_file(path, model=model)
        seconds = time.perf_counter() - t0
    print(MARK + json.dumps({"rss_before_mb": before, "hwm_before_mb": hwm_before, "hwm_mb": status("VmHWM:"),
                      "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "seconds": seconds, "duration": pred.duration, "segments": len(pred.probabilities),
                      "timings": runs[0]}))


def worker_apptest(song: str, second: str) -> None:
    """First result through AppTest in a fresh process (imports, model load, upload), then a later upload."""
    t_start = time.perf_counter()
    from streamlit.testing.v1 import AppTest

    out = {}
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=600)
    at.run()
    out["open_s"] = time.perf_counter() - t_start
    for key, path in (("first_upload_s", song), ("later_upload_s", second)):
        data = Path(path).read_bytes()
        t0 = time.perf_counter()
        at.file_uploader[0].set_value((Path(path).name, data, "audio/mpeg")).run()
        out[key] = time.perf_counter() - t0
        out[key + "_ok"] = bool(at.metric) and not at.exception and not at.error
    out["first_result_from_start_s"] = out["open_s"] + out["first_upload_s"]
    print(MARK + json.dumps(out))


#: A memory worker whose resident set passes this is stopped (the machine is shared): the row then says so.
MARK = "BENCH_RESULT "
RSS_CAP_MB = float(os.environ.get("BENCH_RSS_CAP_MB", 8000))


def run_worker(args: list[str], timeout: float = 1200, cap_mb: float | None = None) -> dict:
    """Run a worker in a new process, sampling its RSS; stop it past ``RSS_CAP_MB``."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.bench_speed", "--_worker", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    import threading

    peak = [0.0]
    killed = [False]

    def watch():
        while proc.poll() is None:
            try:
                for line in open(f"/proc/{proc.pid}/status"):
                    if line.startswith("VmRSS:"):
                        peak[0] = max(peak[0], int(line.split()[1]) / 1024.0)
            except OSError:
                return
            if peak[0] > (cap_mb or RSS_CAP_MB):
                killed[0] = True
                proc.kill()
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    watcher.join(1)
    if killed[0]:
        return {"killed": True, "hwm_mb": peak[0], "rss_before_mb": float("nan"), "seconds": float("nan"),
                "segments": 0, "sampled_peak_mb": peak[0]}
    lines = [line[len(MARK):] for line in out.splitlines() if line.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"worker {args} failed: {err[-2000:]}")
    result = json.loads(lines[-1])
    result["sampled_peak_mb"] = peak[0]
    return result


# --------------------------------------------------------------------------- CLI in a new process
def cli_first_result(song: Path, model: str | None = None) -> float:
    """Seconds from starting ``python -m codeFeature SONG`` to its first printed result line."""
    cmd = [sys.executable, "-m", "codeFeature", str(song)] + (["--model", model] if model else [])
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    seen = None
    for line in proc.stdout:
        if line.startswith("file "):
            continue  # the header
        seen = time.perf_counter() - t0
        break
    proc.stdout.read()
    proc.wait()
    if seen is None or proc.returncode != 0:
        raise RuntimeError(f"{cmd} printed no result (exit {proc.returncode})")
    return seen


def _process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds a running process has used, all its threads (Linux ``/proc``); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def cli_batch(songs: list[Path], model: str | None = None, jobs: int | None = None) -> dict:
    """One ``python -m codeFeature --json`` over ``songs``: time of each result line, and how busy the CPU
    was between the first and the last (the process's CPU seconds over the wall time and the cores)."""
    from codeFeature.predict import usable_cores

    cmd = [sys.executable, "-m", "codeFeature", "--json", *map(str, songs)] + (["--model", model] if model else [])
    cmd += ["--jobs", str(jobs)] if jobs else []
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
    stamps, cpu = [], []
    for line in proc.stdout:
        if line.startswith("{"):
            stamps.append(time.perf_counter() - t0)
            cpu.append(_process_cpu_seconds(proc.pid))
            if "error" in json.loads(line):
                raise RuntimeError(f"batch CLI error: {line}")
    proc.wait()
    warm = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
    busy = cpu_ms = float("nan")
    if len(stamps) > 1 and None not in (cpu[0], cpu[-1]):
        used = cpu[-1] - cpu[0]
        busy = used / ((stamps[-1] - stamps[0]) * usable_cores())
        cpu_ms = 1000 * used / (len(stamps) - 1)
    return {"songs": len(stamps), "total_s": stamps[-1], "first_s": stamps[0], "warm_songs_per_s": warm,
            "overall_songs_per_s": len(stamps) / stamps[-1], "cpu_busy": busy, "cpu_ms_per_song": cpu_ms}


def _batch_note(runs: list[dict]) -> str:
    return "; ".join(f"overall incl. start-up {r['overall_songs_per_s']:.1f}, CPU {100 * r['cpu_busy']:.0f} % busy, "
                     f"{r['cpu_ms_per_song']:.0f} CPU ms a song" for r in runs)


# --------------------------------------------------------------------------- real server + browser
def app_browser(song: Path, second: Path) -> dict:
    """Cold start of ``streamlit run app.py`` to the first result shown in headless Chromium."""
    import shutil
    import socket
    import urllib.request

    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise RuntimeError("no chromium on PATH")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"])
        t0 = time.perf_counter()
        app = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.port",
                                str(port), "--server.address", "127.0.0.1", "--server.headless", "true"],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                    break
                except OSError:
                    if time.perf_counter() - t0 > 120:
                        raise RuntimeError("the app did not start in 120 s")
                    time.sleep(0.1)
            out["server_healthy_s"] = time.perf_counter() - t0
            for key, path in (("first", song), ("later", second)):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                t1 = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded")
                page.locator("input[type=file]").set_input_files(str(path))
                t2 = time.perf_counter()
                page.get_by_text("Segment timeline").wait_for(timeout=300_000)
                t3 = time.perf_counter()
                out[f"{key}_page_and_upload_to_result_s"] = t3 - t1
                out[f"{key}_upload_to_result_s"] = t3 - t2
                if key == "first":
                    out["first_result_from_start_s"] = t3 - t0
                page.close()
        finally:
            app.terminate()
            app.wait(20)
            browser.close()
    return out


# --------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, shorter long files, no browser")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="the batch rows' files at once (python -m codeFeature --jobs; default: the CLI's)")
    parser.add_argument("--batch-runs", type=int, default=1, metavar="N",
                        help="runs of each batch row (its figure is their median; default 1)")
    parser.add_argument("--json", metavar="PATH", help="save every measurement as JSON")
    parser.add_argument("--workdir", metavar="DIR", help="keep the generated songs here (reused if present)")
    parser.add_argument("--no-browser", action="store_true", help="skip the real-server + Chromium measurement")
    parser.add_argument("--no-experiments", action="store_true",
                        help="leave out the EXPERIMENT rows (monkeypatched candidate changes)")
    parser.add_argument("--skip", nargs="*", default=[], help="sections to skip: warm baseline cold app memory batch embed")
    parser.add_argument("--only", nargs="+", default=None, metavar="SECTION",
                        help="run only these sections (the others are skipped), e.g. --only warm batch")
    parser.add_argument("--markdown", metavar="JSON", help="print the table of a saved --json run in Markdown and exit")
    parser.add_argument("--isa", metavar="ONEDNN_ISA",
                        help="cap the instruction set (sets ONEDNN_MAX_CPU_ISA for this run and its children), "
                             "e.g. AVX512_CORE_BF16 to measure a CPU without AMX (an emulation: a real Zen 4 "
                             "double-pumps AVX-512 and may be slower)")
    parser.add_argument("--_worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.only:
        args.skip = [s for s in ("warm", "baseline", "cold", "app", "memory", "batch", "embed") if s not in args.only]
    if args.isa:
        os.environ["ONEDNN_MAX_CPU_ISA"] = args.isa  # read by oneDNN when TensorFlow / OpenVINO start
    if args.markdown:
        print(markdown_table(json.loads(Path(args.markdown).read_text())["rows"]))
        return 0
    if args._worker:
        kind, *rest = args._worker
        {"memory": worker_memory, "apptest": worker_apptest}[kind](*rest)
        return 0

    from bench import songs as S

    quick = args.quick
    reps_warm = 3 if quick else 5
    reps_slow = 1 if quick else 3
    tmp = None
    if args.workdir:
        work = Path(args.workdir)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="codefeature-bench-")
        work = Path(tmp.name)
    print(f"machine: {cpu_line()}; load {os.getloadavg()}; songs in {work}", flush=True)

    # ---- songs
    t0 = time.perf_counter()
    long_s = 120.0 if quick else 300.0
    song5 = work / f"song_{int(long_s)}s.mp3"
    if not song5.exists():
        S.write_mp3(song5, long_s, seed=1)
    clip = work / "clip_30s.mp3"
    if not clip.exists():
        S.write_mp3(clip, 30.0, seed=2)
    clip2 = work / "clip2_30s.mp3"
    if not clip2.exists():
        S.write_mp3(clip2, 30.0, seed=3)
    mem_minutes = (5, 10, 20) if quick else (15, 30, 60)
    long_files = {}
    for minutes in mem_minutes:
        f = work / f"song_{minutes}min.mp3"
        if not f.exists():
            S.loop_mp3(song5, f, int(round(minutes * 60 / long_s)))
        long_files[minutes] = f
    n_batch = 30 if quick else 100
    batch = S.cut_mp3(long_files[mem_minutes[-1]], work / "batch", 30.0, n_batch)
    loud = work / f"loud_{n_batch}_songs.mp3"
    if not loud.exists() and "batch" not in args.skip:
        S.loop_mp3(S.write_mp3(work / "loud_300s.mp3", 300.0, seed=4, loud=True), loud, n_batch // 10 + 1)
    loud_batch = S.cut_mp3(loud, work / "batch_loud", 30.0, n_batch) if loud.exists() else []
    real = S.real_song()
    print(f"songs ready in {time.perf_counter() - t0:.1f} s (real song: {real})", flush=True)

    import codeFeature as cf
    from codeFeature.phases import record_phases

    default_name = cf.default_model_name()
    models = {default_name: cf.load_model(default_name), "cnn_mfcc_small": cf.load_model("cnn_mfcc_small")}
    label5 = f"{long_s / 60:g}-min mp3"

    # ---- warm predict_file
    warm_rows = {}
    if "warm" not in args.skip:
        print("warm predict_file", flush=True)
        for name, model in models.items():
            for song, label, target in ((song5, label5, 1.0), (clip, "30 s mp3 clip", 0.15)):
                with record_phases() as runs:
                    times, loads, preds = measure(lambda: cf.predict_file(song, model=model), reps_warm, warmup=1)
                stages = {k: statistics.median(r[k] for r in runs[-len(preds):]) for k in runs[-1]}
                warm_rows[(name, label)] = record(
                    f"warm predict_file, {label}, {name}", times, loads, unit="s", target=target,
                    stages={k: round(v, 3) for k, v in stages.items()},
                    note=phase_note(stages) + f"; {model.inference_path}")
                print(phase_breakdown(f"{label}, {name}", stages), flush=True)
            if name == default_name and not quick:
                # a song beyond full scale once decoded: predict_file reads it twice (the first pass, "peak",
                # finds the peak the song is scaled by), which is where a loud song's extra time goes
                loud5 = work / "loud_300s.mp3"
                if not loud5.exists():
                    S.write_mp3(loud5, 300.0, seed=4, loud=True)
                times, loads, preds = measure(lambda: cf.predict_file(loud5, model=model), reps_warm, warmup=1)
                stages = {k: statistics.median(p.timings.get(k, 0.0) for p in preds) for k in preds[0].timings}
                record(f"warm predict_file, loud 5-min mp3 (beyond full scale once decoded), {name}", times, loads,
                       unit="s", target=None, stages={k: round(v, 3) for k, v in stages.items()},
                       note=phase_note(stages))
                print(phase_breakdown(f"loud 5-min mp3, {name}", stages), flush=True)
            if not args.no_experiments:
                # the top recommended change, measured here by monkeypatch: the forward pass as a tf.function
                gmodel = graph_model(model)
                ref = cf.predict_file(song5, model=model).probabilities
                with record_phases() as runs:
                    times, loads, preds = measure(lambda: cf.predict_file(song5, model=gmodel), reps_warm, warmup=1)
                stages = {k: statistics.median(r[k] for r in runs[-len(preds):]) for k in runs[-1]}
                diff = float(np.abs(preds[0].probabilities - ref).max())
                record(f"EXPERIMENT tf.function forward: warm predict_file, {label5}, {name}", times, loads, unit="s",
                       target=1.0, note="decode {decode:.2f} / features {features:.2f} / forward {predict:.2f} s; "
                       .format(**stages) + f"max|p diff| {diff:.2g}", max_abs_diff=diff)
            if real is not None:
                times, loads, preds = measure(lambda: cf.predict_file(real, model=model), reps_warm, warmup=1)
                record(f"warm predict_file, real GTZAN {real.name} (30 s wav), {name}", times, loads, unit="s",
                       target=0.15, note=f"genre {preds[0].genre}")

    # ---- seed-style baseline
    if "baseline" not in args.skip:
        print("seed-style baseline", flush=True)
        bdir = work / "baseline"
        bdir.mkdir(exist_ok=True)
        bases = {}
        # the seed's own kind of model first, then every other measured model through the same pipeline
        for name in ["cnn_mfcc_small"] + [n for n in models if n != "cnn_mfcc_small"]:
            model = models[name]
            times, loads, results = measure(
                lambda: seed_style_predict(song5, model.keras_model, model.config, bdir), reps_slow)
            ours = cf.predict_file(song5, model=model)
            bases[name] = record(f"seed-style baseline (pydub wav export + librosa.load + predict per chunk), "
                                 f"{label5}, {name}", times, loads, unit="s", target=None,
                                 note=f"{len(results[0])} chunks; ours {len(ours.probabilities)} segments")
            n = min(len(results[0]), len(ours.probabilities))
            diff = float(np.abs(results[0][:n] - ours.probabilities[:n]).max())
            print(f"  baseline vs ours {name}: max |p diff| over {n} segments = {diff:.3g}", flush=True)
        for name in models:
            ours_row = warm_rows.get((name, label5))
            if ours_row is None:
                continue
            ratio = bases[name]["median"] / ours_row["median"]
            record(f"baseline / ours ({name}), {label5}", [ratio], [load1()], unit="x", target=10.0,
                   better="higher", note=f"ratio of medians; the baseline runs {name} too")
            if name != "cnn_mfcc_small":
                ratio = bases["cnn_mfcc_small"]["median"] / ours_row["median"]
                record(f"baseline with cnn_mfcc_small / ours ({name}), {label5}", [ratio], [load1()], unit="x",
                       target=None, better="higher", note="ratio of medians; the seed's kind of model in the "
                       "baseline, the default model in ours")

    # ---- musicnn embedding (issue 3)
    if "embed" not in args.skip:
        print("musicnn embedding", flush=True)
        from codeFeature.features import segment_features
        from codeFeature.model_io import embedding_forward
        from codeFeature.segments import segment_array

        tagger = cf.load_model("musicnn_msd")
        emb = embedding_forward(tagger, "penultimate")
        samples = cf.decode(song5, sample_rate=tagger.config.sample_rate)

        def embed():
            segs, _ = segment_array(samples, tagger.config)
            return emb.forward(segment_features(segs, tagger.config))[0]

        times, loads, _ = measure(embed, reps_warm, warmup=1)
        record(f"warm musicnn penultimate embedding, {label5} (decoded; features + forward)", times, loads,
               unit="s", target=1.5, note="issue 3 target")

    # ---- cold CLI
    if "cold" not in args.skip:
        print("cold CLI", flush=True)
        times, loads, _ = measure(lambda: cli_first_result(song5), reps_slow)
        LAST_CPU.clear()  # the work is in the child process
        record(f"cold `python -m codeFeature` {label5}, to first result, {default_name}", times, loads, unit="s",
               target=10.0)
        times, loads, _ = measure(lambda: cli_first_result(song5, "cnn_mfcc_small"), reps_slow)
        LAST_CPU.clear()  # the work is in the child process
        record(f"cold `python -m codeFeature` {label5}, to first result, cnn_mfcc_small", times, loads, unit="s",
               target=10.0)

    # ---- app
    if "app" not in args.skip:
        print("app (AppTest in a new process)", flush=True)
        res = []
        loads = []
        for _ in range(reps_slow):
            loads.append(load1())
            r = run_worker(["apptest", str(song5), str(clip2)], cap_mb=2 * RSS_CAP_MB)
            if r.get("killed"):
                print(f"  AppTest worker stopped at {r['hwm_mb']:.0f} MB (cap)", flush=True)
                continue
            res.append(r)
        record(f"app via AppTest: new process to first result ({label5} upload)",
               [r["first_result_from_start_s"] for r in res], loads, unit="s", target=10.0,
               note="imports + script run + model load + decode + predict + render, no browser")
        record("app via AppTest: later upload (30 s clip), classify + render", [r["later_upload_s"] for r in res],
               loads, unit="s", target=None, note="compare with warm predict_file on the 30 s clip")
        if not (quick or args.no_browser):
            print("app (streamlit run + headless Chromium)", flush=True)
            try:
                loads = [load1()]
                r = app_browser(song5, clip2)
                record(f"app: `streamlit run app.py` start to first result in Chromium ({label5} upload)",
                       [r["first_result_from_start_s"]], loads, unit="s", target=10.0,
                       note=f"server healthy at {r['server_healthy_s']:.1f} s; upload to result "
                            f"{r['first_upload_to_result_s']:.1f} s", **r)
                record("app in Chromium: later upload (30 s clip, new page), upload to result",
                       [r["later_upload_to_result_s"]], [load1()], unit="s", target=None,
                       note=f"page load + upload + render {r['later_page_and_upload_to_result_s']:.2f} s")
            except Exception as exc:  # the browser part is optional
                print(f"  browser measurement skipped: {type(exc).__name__}: {exc}", flush=True)

    # ---- memory
    if "memory" not in args.skip:
        print("peak memory (a new process per file)", flush=True)
        for name in models:
            peaks = {}
            for minutes, f in long_files.items():
                loads = [load1()]
                r = run_worker(["memory", name, str(f)])
                peaks[minutes] = r
                record(f"peak RSS classifying a {minutes}-min mp3, {name}", [r["hwm_mb"]], loads, unit="MB",
                       target=1024.0 if minutes == 60 else None,
                       note=(f"STOPPED at the {RSS_CAP_MB:.0f} MB safety cap (shared machine): the real peak is higher"
                            if r.get("killed") else f"RSS before the file {r['rss_before_mb']:.0f} MB; took "
                            f"{r['seconds']:.1f} s ({r['segments']} segments)"), worker=r)
            if not args.no_experiments:
                f = long_files[mem_minutes[-1]]
                for chunk, graph in (("16", ""), ("16", "1")):
                    loads = [load1()]
                    r = run_worker(["memory", name, str(f), chunk, graph])
                    record(f"EXPERIMENT CHUNK_SEGMENTS={chunk}{' + tf.function' if graph else ''}: peak RSS, "
                           f"{mem_minutes[-1]}-min mp3, {name}", [r["hwm_mb"]], loads, unit="MB", target=1024.0,
                           note=(f"STOPPED at the {RSS_CAP_MB:.0f} MB cap" if r.get("killed") else
                                 f"RSS before {r['rss_before_mb']:.0f} MB; took {r['seconds']:.1f} s"), worker=r)
            ms = sorted(peaks)
            if any(p.get("killed") for p in peaks.values()):
                print(f"  {name}: growth not computed (a run hit the safety cap)", flush=True)
                continue
            growth = [(peaks[b]["hwm_mb"] - peaks[a]["hwm_mb"]) / (b - a) for a, b in zip(ms, ms[1:])]
            record(f"peak RSS growth per minute of audio ({'-'.join(map(str, ms))} min), {name}",
                   [growth[-1]], [load1()], unit="MB/min", target=None,
                   note="between the two longest files; " + ", ".join(f"{g:.1f}" for g in growth))
            print(f"  {name}: peak growth per extra minute {['%.1f MB' % g for g in growth]}", flush=True)

    # ---- batch CLI
    if "batch" not in args.skip:
        print(f"batch CLI on {len(batch)} songs of 30 s", flush=True)
        for name in (default_name, "cnn_mfcc_small"):
            loads = [load1()]
            rs = [cli_batch(batch, None if name == default_name else name, args.jobs) for _ in range(args.batch_runs)]
            record(f"batch CLI {len(batch)} x 30 s mp3, songs/s once warm, {name}",
                   [r["warm_songs_per_s"] for r in rs], loads, unit="songs/s", target=20.0, better="higher",
                   note=_batch_note(rs))
        # loud masters decode beyond full scale and are classified scaled by their peak (two passes)
        rs = [cli_batch(loud_batch, jobs=args.jobs) for _ in range(args.batch_runs)]
        record(f"batch CLI {len(loud_batch)} x 30 s loud mp3 (beyond full scale once decoded), songs/s once warm, "
               f"{default_name}", [r["warm_songs_per_s"] for r in rs], [load1()], unit="songs/s", target=None,
               better="higher", note=_batch_note(rs))

    print_table()
    print(f"CPU: {cpu_line()}")
    if args.json:
        Path(args.json).write_text(json.dumps({"load_at_end": os.getloadavg(), "quick": quick, "cpu": cpu_line(),
                                               "rows": ROWS},
                                              indent=1, default=str))
        print(f"saved {args.json}")
    if tmp is not None:
        tmp.cleanup()
    return 0


def markdown_table(rows: list[dict]) -> str:
    """The table of a run (``--json`` output) in Markdown, as the READMEs show it."""
    lines = ["| figure | median | target | pass | load | note |", "|---|---|---|---|---|---|"]
    for r in rows:
        target = "" if r["target"] is None else ("≤ " if r["better"] == "lower" else "≥ ") + f"{r['target']:g}"
        ok = "" if r["pass"] is None else ("yes" if r["pass"] else "**no**")
        load = f"{min(r['loads']):.1f}-{max(r['loads']):.1f}" if r["loads"] else ""
        unit = {"songs/s": " songs/s", "MB/min": " MB/min"}.get(r["unit"], " " + r["unit"])
        median = f"{r['median']:.0f}" if abs(r["median"]) >= 1000 else f"{r['median']:.3g}"
        lines.append(f"| {r['name']} | {median}{unit} | {target} | {ok} | {load} | {r['note']} |")
    return "\n".join(lines)


def print_table() -> None:
    print()
    print(f"{'figure':100s} {'median':>10s} {'target':>10s} {'pass':>5s} {'load':>11s}  note")
    for r in ROWS:
        target = "" if r["target"] is None else ("<= " if r["better"] == "lower" else ">= ") + f"{r['target']:g}"
        ok = "" if r["pass"] is None else ("yes" if r["pass"] else "NO")
        loads = r["loads"]
        load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else ""
        print(f"{r['name'][:100]:100s} {r['median']:8.3g} {r['unit'][:2]:2s}{target:>10s} {ok:>5s} {load:>11s}  "
              f"{r['note']}")
    print(f"load average now {os.getloadavg()}; 2 cores shared with other jobs: read figures with their load")


if __name__ == "__main__":
    raise SystemExit(main())
