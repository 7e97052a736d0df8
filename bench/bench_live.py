"""Live latency: from a window's last frame being fed to its genre being available.

    python -m bench.bench_live [--models musicnn_genre cnn_mfcc_small] [--windows 12] [--rate 48000]

Synthetic 48 kHz stereo int16 audio is fed through :class:`codeFeature.stream.StreamClassifier`
in 20 ms frames (what a browser sends over WebRTC), at full speed rather than in real time. For each
3 s window the clock starts at the ``feed`` call that completes the window and stops when
``process`` has returned its probabilities: that is resampling the frame, the features and the model,
everything between the microphone's frame arriving at the server and the page being able to show the
genre (the page refreshes every 0.5 s on top of this). Prints the median, 90th percentile and worst
window per model, after one warm-up window; the budget is 1 s on the project's 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import time

from codeFeature.runtime import prepare_process  # noqa: E402  (before TensorFlow and librosa)

prepare_process()

import numpy as np  # noqa: E402

BUDGET_SECONDS = 1.0


def synth(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    """Stereo int16 'music': a chord, a beat and a little noise, shape (n, 2)."""
    t = np.arange(int(seconds * rate)) / rate
    y = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63, 440.0)) / 4
    y = 0.5 * y + 0.3 * np.exp(-30 * (t % 0.5)) * np.sin(2 * np.pi * 60 * t)
    y = y + 0.02 * np.random.default_rng(seed).standard_normal(len(t))
    stereo = np.stack([y, 0.9 * y], axis=1)
    return (np.clip(stereo, -1, 1) * 32767).astype(np.int16)


def measure(model_name: str, *, windows: int, rate: int, frame_ms: float = 20.0) -> dict:
    from codeFeature import load_model
    from codeFeature.predict import predict_segments
    from codeFeature.stream import StreamClassifier

    model = load_model(model_name)
    predict_segments(np.zeros((1, model.config.segment_samples), np.float32), model=model)  # warm, as the page does
    audio = synth((windows + 1) * model.config.segment_seconds + 1.0, rate)
    frame = int(rate * frame_ms / 1000)
    live = StreamClassifier(model)
    latencies, feed_times = [], []
    for lo in range(0, len(audio), frame):
        t0 = time.perf_counter()
        completed = live.feed(audio[lo:lo + frame], sample_rate=rate)
        feed_times.append(time.perf_counter() - t0)
        if completed:
            for window in live.process():
                latencies.append(window.latency)
    latencies = np.array(latencies[1:windows + 1])  # the first window after warm-up is dropped too
    return {"model": model_name, "windows": len(latencies), "median": float(np.median(latencies)),
            "p90": float(np.percentile(latencies, 90)), "max": float(latencies.max()),
            "feed_ms": 1000 * float(np.median(feed_times))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["musicnn_genre", "cnn_mfcc_small"])
    parser.add_argument("--windows", type=int, default=12, help="windows measured per model (default 12)")
    parser.add_argument("--rate", type=int, default=48000, help="input rate in Hz (default 48000)")
    args = parser.parse_args(argv)
    rows = [measure(name, windows=args.windows, rate=args.rate) for name in args.models]
    print(f"latency from a window's last frame to its genre; {args.rate} Hz stereo int16 in 20 ms frames; "
          f"{os.cpu_count()} CPUs; budget {BUDGET_SECONDS:.1f} s")
    print(f"{'model':<16} {'windows':>7} {'median s':>9} {'p90 s':>7} {'max s':>7} {'feed ms/frame':>14}"
          "  within budget")
    for r in rows:
        ok = "yes" if r["median"] <= BUDGET_SECONDS else "NO"
        print(f"{r['model']:<16} {r['windows']:>7} {r['median']:>9.3f} {r['p90']:>7.3f} {r['max']:>7.3f} "
              f"{r['feed_ms']:>14.3f}  {ok}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
