"""How long the whole-song plots take after the genre is known, for a 5-minute song.

    python -m bench.bench_plots [--seconds 300] [--repeats 3]

The app shows the genre first and then draws the waveform, the mel spectrogram and what the
model sees (:func:`codeFeature.plots.song_panels`, rendered to PNG). This measures that step
for each input kind the shipped genre models use (musicnn's log-mel at 16 kHz, MFCC at
22.05 kHz) on a synthesised song, and prints the load average beside the figures: on a shared
machine they are noisy. The close-up of one segment is measured too (it is what a slider move
redraws). CPU seconds are printed beside wall-clock ones: on a loaded machine the wall clock
mostly measures the wait for a core, the CPU time what the drawing itself costs.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from codeFeature import engines
from codeFeature.config import FeatureConfig
from codeFeature.model_io import read_manifest, resolve_model_dir
from codeFeature.plots import CLOSEUP_WIDTH, SONG_WIDTH, song_panels


def song(seconds: float, rate: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * rate)) / rate
    y = sum(np.sin(2 * np.pi * f * t) for f in (110.0, 220.0, 277.18, 329.63)) / 4
    beat = (np.sin(2 * np.pi * 2 * t) > 0.95).astype(np.float32) * rng.standard_normal(len(t))
    return (0.5 * y + 0.2 * beat + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def render(samples, config, **kwargs) -> tuple[float, float]:
    """Wall-clock and CPU seconds (this process) to draw and encode the panels."""
    t0, c0 = time.perf_counter(), time.process_time()
    for panel in song_panels(samples, config, **kwargs):
        panel.png()
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["musicnn_genre", "cnn_mfcc"])
    args = parser.parse_args(argv)
    print(f"CPU: {engines.cpu_model()}, {os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.2f}")
    render(song(10.0, 16000), FeatureConfig.from_dict(read_manifest(resolve_model_dir(args.models[0]))
                                                       ["feature_config"]))  # imports and first-draw caches
    for name in args.models:
        config = FeatureConfig.from_dict(read_manifest(resolve_model_dir(name))["feature_config"])
        samples = song(args.seconds, config.sample_rate)
        starts = np.arange(0, args.seconds, config.segment_seconds)
        whole = [render(samples, config, boundaries=starts, width=SONG_WIDTH) for _ in range(args.repeats)]
        piece = samples[: config.segment_samples]
        close = [render(piece, config, width=CLOSEUP_WIDTH) for _ in range(args.repeats)]
        (wall, cpu), (cwall, ccpu) = np.median(whole, axis=0), np.median(close, axis=0)
        print(f"{name:14s} ({config.feature}, {config.sample_rate} Hz): whole {args.seconds:.0f} s song "
              f"{wall:.2f} s wall, {cpu:.2f} s CPU; one-segment close-up {cwall * 1000:.0f} ms wall, "
              f"{ccpu * 1000:.0f} ms CPU (medians of {args.repeats}); load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
