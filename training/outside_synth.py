"""Synthetic sounds outside GTZAN's ten genres, to fit and check the "not one of the ten" rule.

Each generator makes one ``seconds``-long mono signal at ``sample_rate`` from a seeded
:class:`numpy.random.Generator`, so every run builds the same set. Two families:

* **not music**: white, pink and brown noise, rain-like crackle, crowd-like babble of modulated noise,
  keyboard-like random clicks, a train-like rumble with wheel clacks, bird-like chirps, whale-like slow
  glides, and speech-like signals (a glottal pulse train with a wandering pitch through moving vowel
  formants, in syllables and pauses);
* **music outside the ten**: electronic dance loops (a kick on every beat at 118-140 BPM, off-beat hi-hats,
  a saw-wave bass arpeggio).

None of them is real audio: the checks on real recordings are separate (``training.outside_rule --check``).
"""

from __future__ import annotations

import numpy as np
from scipy import signal as sps


def _norm(x: np.ndarray, peak: float = 0.5) -> np.ndarray:
    x = np.asarray(x, np.float64)
    m = np.abs(x).max()
    return (x * (peak / m) if m > 0 else x).astype(np.float32)


def _pink(rng, n):
    spectrum = np.fft.rfft(rng.normal(size=n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    return np.fft.irfft(spectrum, n)


def white(rng, sr, n):
    return _norm(rng.normal(size=n), rng.uniform(0.2, 0.8))


def pink(rng, sr, n):
    return _norm(_pink(rng, n), rng.uniform(0.2, 0.8))


def brown(rng, sr, n):
    x = np.cumsum(rng.normal(size=n))
    return _norm(sps.lfilter([1, -1], [1, -0.995], x), rng.uniform(0.2, 0.8))


def rain(rng, sr, n):
    drops = (rng.random(n) < rng.uniform(0.002, 0.02)) * rng.normal(size=n)
    b, a = sps.butter(2, [1000 / (sr / 2), 7000 / (sr / 2)], btype="band")
    return _norm(sps.lfilter(b, a, drops) + 0.3 * _pink(rng, n) / 50, 0.5)


def crowd(rng, sr, n):
    t = np.arange(n) / sr
    env = 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t) + 0.3 * np.abs(_pink(rng, n)) / 30
    b, a = sps.butter(2, [300 / (sr / 2), 4000 / (sr / 2)], btype="band")
    return _norm(sps.lfilter(b, a, _pink(rng, n)) * env, 0.5)


def typing(rng, sr, n):
    x = np.zeros(n)
    pos = 0
    click = np.exp(-np.arange(int(0.01 * sr)) / (0.0015 * sr))
    while pos < n - len(click):
        burst = click * rng.normal(size=len(click))
        x[pos:pos + len(click)] += burst * rng.uniform(0.3, 1)
        pos += int(rng.uniform(0.06, 0.35) * sr)
    return _norm(x + 0.001 * rng.normal(size=n), 0.6)


def train(rng, sr, n):
    rumble = sps.lfilter([1], [1, -0.999], rng.normal(size=n))
    x = rumble / np.abs(rumble).max()
    period = int(rng.uniform(0.4, 0.9) * sr)
    clack = np.exp(-np.arange(int(0.05 * sr)) / (0.01 * sr)) * rng.normal(size=int(0.05 * sr))
    for pos in range(0, n - len(clack), period):
        x[pos:pos + len(clack)] += 2 * clack
    return _norm(x + 0.2 * _pink(rng, n) / 30, 0.6)


def birds(rng, sr, n):
    x = 0.02 * _pink(rng, n) / 30
    t = 0
    while t < n:
        length = int(rng.uniform(0.05, 0.25) * sr)
        if t + length >= n:
            break
        f0, f1 = rng.uniform(2000, 6000, 2)
        phase = 2 * np.pi * np.cumsum(np.linspace(f0, f1, length)) / sr
        x[t:t + length] += np.sin(phase) * np.hanning(length)
        t += length + int(rng.uniform(0.05, 0.6) * sr)
    return _norm(x, 0.5)


def whale(rng, sr, n):
    x = 0.05 * _pink(rng, n) / 30
    t = 0
    while t < n:
        length = int(rng.uniform(0.8, 2.5) * sr)
        if t + length >= n:
            break
        f = np.interp(np.linspace(0, 1, length), [0, 0.5, 1], rng.uniform(150, 900, 3))
        phase = 2 * np.pi * np.cumsum(f) / sr
        x[t:t + length] += (np.sin(phase) + 0.3 * np.sin(2 * phase)) * np.hanning(length)
        t += length + int(rng.uniform(0.3, 1.5) * sr)
    return _norm(x, 0.5)


#: Vowel formants (F1, F2, F3) in Hz.
_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (300, 870, 2240), (530, 1840, 2480), (570, 840, 2410),
           (660, 1720, 2410), (440, 1020, 2240))


def speech(rng, sr, n):
    """A glottal pulse train with a wandering pitch through vowel formants, in syllables and pauses."""
    base = rng.uniform(95, 230)
    out = np.zeros(n)
    t = 0
    while t < n:
        syllables = int(rng.integers(3, 12))
        for _ in range(syllables):
            length = int(rng.uniform(0.12, 0.3) * sr)
            if t + length >= n:
                break
            f0 = base * np.exp(np.cumsum(rng.normal(0, 0.002, length)))
            phase = np.cumsum(f0 / sr)
            pulses = np.diff(np.floor(phase), prepend=0.0)
            source = sps.lfilter([1], [1, -0.95], pulses) + 0.05 * rng.normal(size=length)
            voiced = np.zeros(length)
            for f, bw in zip(_VOWELS[int(rng.integers(len(_VOWELS)))], (80, 100, 150)):
                r = np.exp(-np.pi * bw / sr)
                voiced += sps.lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / sr), r * r], source)
            if rng.random() < 0.3:  # a fricative
                b, a = sps.butter(2, 3000 / (sr / 2), btype="high")
                voiced = sps.lfilter(b, a, rng.normal(size=length)) * 0.1
            out[t:t + length] += voiced * np.hanning(length)
            t += length + int(rng.uniform(0.0, 0.06) * sr)
        t += int(rng.uniform(0.15, 0.6) * sr)
    return _norm(out + 0.002 * rng.normal(size=n), 0.5)


def electronic(rng, sr, n):
    """A dance loop: kick on every beat, off-beat hi-hats, a saw bass arpeggio."""
    bpm = rng.uniform(118, 140)
    beat = int(sr * 60 / bpm)
    x = np.zeros(n)
    k = np.arange(int(0.25 * sr))
    kick = np.sin(2 * np.pi * np.cumsum(np.linspace(150, 45, len(k))) / sr) * np.exp(-k / (0.08 * sr))
    b, a = sps.butter(2, 7000 / (sr / 2), btype="high") if sr > 14000 else sps.butter(2, 0.6, btype="high")
    hat = sps.lfilter(b, a, rng.normal(size=int(0.04 * sr))) * np.exp(-np.arange(int(0.04 * sr)) / (0.01 * sr))
    root = rng.uniform(40, 65)
    notes = root * 2 ** (np.array([0, 0, 7, 12, 10, 7, 3, 5])[rng.permutation(8)] / 12)
    for i, pos in enumerate(range(0, n, beat // 2)):
        if i % 2 == 0 and pos + len(kick) < n:
            x[pos:pos + len(kick)] += kick
        if i % 2 == 1 and pos + len(hat) < n:
            x[pos:pos + len(hat)] += 0.3 * hat
        length = min(beat // 2, n - pos)
        ph = np.arange(length) * notes[i % len(notes)] / sr
        x[pos:pos + length] += 0.25 * (2 * (ph % 1) - 1) * np.exp(-np.arange(length) / (0.2 * sr))
    if rng.random() < 0.7:  # a synth pad chord
        t = np.arange(n) / sr
        for ratio in (1, 1.26, 1.5):
            x += 0.05 * np.sign(np.sin(2 * np.pi * root * 4 * ratio * t))
    return _norm(x, 0.7)


NOT_MUSIC = {"noise": (white, pink, brown, rain), "crowd": (crowd,), "clicks": (typing,), "machine": (train,),
             "birdsong": (birds,), "whale song": (whale,), "speech": (speech,)}
MUSIC_OUTSIDE = {"electronic": (electronic,)}


def corpus(sample_rate: int = 16000, seconds: float = 9.0, per_kind: int = 6, seed: int = 0):
    """``[(family, kind, signal)]``: ``per_kind`` signals of every generator, ``family`` "not music" or "music"."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    out = []
    for family, kinds in (("not music", NOT_MUSIC), ("music", MUSIC_OUTSIDE)):
        for kind, makers in kinds.items():
            for i in range(per_kind):
                maker = makers[i % len(makers)]
                out.append((family, kind, maker(rng, sample_rate, n)))
    return out
