"""A tiny synthetic GTZAN-layout dataset for smoke runs (``--quick``) and tests.

Each genre gets a few short tracks of a genre-specific chord with a little
noise; the data are made to check that the code runs, not that it learns music.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from codeFeature.config import GENRES


def make_synthetic_gtzan(folder: Path, *, tracks_per_genre: int = 3, seconds: float = 6.5,
                         sample_rate: int = 22050) -> tuple[list[Path], Path, Path]:
    """Write ``<folder>/genres/<genre>/<genre>.000NN.wav`` and train / valid split lists.

    Returns
    -------
    data_folders, train_split, valid_split
    """
    folder = Path(folder)
    audio = folder / "genres"
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    train_lines, valid_lines = [], []
    for g, genre in enumerate(GENRES):
        (audio / genre).mkdir(parents=True, exist_ok=True)
        for k in range(tracks_per_genre):
            name = f"{genre}.{k:05d}.wav"
            path = audio / genre / name
            if not path.exists():
                base = 110.0 * 2 ** (g / 4)
                y = sum(np.sin(2 * np.pi * base * m * t) for m in (1, 1.25, 1.5)) / 3
                y = 0.5 * y * (1 + 0.3 * np.sin(2 * np.pi * (g + 1) * t)) + 0.02 * rng.standard_normal(len(t))
                sf.write(path, y.astype(np.float32), sample_rate, subtype="PCM_16")
            (valid_lines if k == tracks_per_genre - 1 else train_lines).append(f"{genre}/{name}")
    train_split, valid_split = folder / "train.txt", folder / "valid.txt"
    train_split.write_text("\n".join(train_lines) + "\n")
    valid_split.write_text("\n".join(valid_lines) + "\n")
    return [audio], train_split, valid_split
