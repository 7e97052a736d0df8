"""Synthetic, music-like test songs for the benchmarks (no downloads, deterministic).

A song is a chord progression (detuned saw-like partials), a bass line, kick / snare /
hi-hat clicks and a little noise, 44.1 kHz stereo, written with soundfile (mp3 via
libsndfile's LAME). Long files (15, 30, 60 minutes) and the 100 batch songs are cut or
looped from a 5-minute mp3 with ffmpeg stream copy (``-c copy``): encoding an hour with
LAME would take two minutes on a 2-core machine, copying takes a second.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 44100


def music_like(seconds: float, *, sr: int = SR, seed: int = 0) -> np.ndarray:
    """A stereo music-like signal, shape (n, 2), float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    out = np.zeros((n, 2), np.float32)
    bpm = 96 + 40 * rng.random()
    beat = int(sr * 60 / bpm)
    bar = 4 * beat
    roots = 110.0 * 2 ** (rng.integers(0, 12, size=8) / 12)
    t_bar = np.arange(bar) / sr
    env_bar = np.exp(-t_bar * 1.5).astype(np.float32)
    kick = (np.sin(2 * np.pi * 55 * t_bar[: beat // 2] * np.exp(-t_bar[: beat // 2] * 8))
            * np.exp(-t_bar[: beat // 2] * 20)).astype(np.float32)
    for b, lo in enumerate(range(0, n, bar)):
        hi = min(n, lo + bar)
        m = hi - lo
        root = roots[b % len(roots)]
        chord = np.zeros(m, np.float32)
        for ratio in (1.0, 1.26, 1.5, 2.0):
            for k in (1, 2, 3):
                chord += (np.sin(2 * np.pi * root * ratio * k * t_bar[:m] + rng.random() * 6.28) / k).astype(np.float32)
        chord *= 0.05 * env_bar[:m]
        bass = (0.12 * np.sin(2 * np.pi * root / 2 * t_bar[:m])).astype(np.float32)
        mono = chord + bass
        for q in range(4):
            s = q * beat
            if s >= m:
                break
            e = min(m, s + len(kick))
            if q % 2 == 0:
                mono[s:e] += 0.5 * kick[: e - s]
            else:
                e2 = min(m, s + beat // 4)
                mono[s:e2] += (0.15 * rng.standard_normal(e2 - s) * np.exp(-np.arange(e2 - s) / sr * 30)).astype(np.float32)
        mono += (0.01 * rng.standard_normal(m)).astype(np.float32)
        out[lo:hi, 0] = mono
        out[lo:hi, 1] = np.roll(mono, 37) * 0.9
    peak = float(np.abs(out).max()) or 1.0
    return (0.8 * out / peak).astype(np.float32)


def write_mp3(path: Path, seconds: float, *, seed: int = 0, loud: bool = False) -> Path:
    """A :func:`music_like` mp3; ``loud``: driven into full scale and clipped there, as loud commercial
    masters are, so that it decodes a little beyond full scale (peaks of 1.01-1.04 at 16 kHz)."""
    y = music_like(seconds, seed=seed)
    if loud:
        y = np.clip(2.5 * y, -1.0, 1.0)
    sf.write(str(path), y, SR, format="MP3")
    return path


def ffmpeg_exe() -> str:
    from codeFeature.audio import find_ffmpeg

    exe = find_ffmpeg()
    if exe is None:
        raise RuntimeError("ffmpeg is needed to build the long test files (pip install imageio-ffmpeg)")
    return exe


def loop_mp3(src: Path, dst: Path, times: int) -> Path:
    """``src`` repeated ``times`` times, by stream copy (no re-encode)."""
    subprocess.run([ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", "-stream_loop", str(times - 1),
                    "-i", str(src), "-c", "copy", str(dst)], check=True)
    return dst


def cut_mp3(src: Path, folder: Path, seconds: float, count: int) -> list[Path]:
    """The first ``count`` pieces of ``seconds`` of ``src``, by stream copy."""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg_exe(), "-nostdin", "-y", "-loglevel", "error", "-i", str(src), "-f", "segment",
                    "-segment_time", str(seconds), "-c", "copy", str(folder / "song%03d.mp3")], check=True)
    files = sorted(folder.glob("song*.mp3"))
    # the last piece may be short; keep full ones
    full = [f for f in files if sf.info(str(f)).duration >= seconds - 0.5]
    return full[:count]


def real_song() -> Path | None:
    """A real GTZAN track from ``../shared/data/gtzan`` when present."""
    root = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "gtzan" / "genres"
    for genre in ("jazz", "rock", "blues"):
        files = sorted((root / genre).glob("*.wav")) if (root / genre).is_dir() else []
        if files:
            return files[0]
    return None
