"""Spectrogram image folders: tiny generated ones for smoke runs and tests.

Real folders (the shared ``spectrograms/`` or the Kaggle ``images_original/``) are read by
:func:`training.data.load_image_set` through
:func:`codeFeature.spectrogram_image.load_spectrogram_image`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.tabular import synthetic_split_lines
from codeFeature.config import GENRES


def make_synthetic_images(folder: Path, *, tracks_per_genre: int = 3, side: int = 48,
                          seed: int = 0) -> tuple[list[Path], Path, Path]:
    """Write ``<folder>/images/<genre>/<genre>000NN.png`` (RGB, a genre-specific stripe) and split lists."""
    from PIL import Image

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    for g, genre in enumerate(GENRES):
        (folder / "images" / genre).mkdir(parents=True, exist_ok=True)
        for k in range(tracks_per_genre):
            path = folder / "images" / genre / f"{genre}{k:05d}.png"
            if not path.exists():
                pixels = rng.integers(0, 60, (side, side, 3))
                pixels[(g * side) // len(GENRES):((g + 1) * side) // len(GENRES)] += 150
                Image.fromarray(pixels.astype(np.uint8)).save(path)
    train, valid = synthetic_split_lines(tracks_per_genre)
    (folder / "train.txt").write_text("\n".join(train) + "\n")
    (folder / "valid.txt").write_text("\n".join(valid) + "\n")
    return [folder / "images"], folder / "train.txt", folder / "valid.txt"
