"""Kaggle-format feature tables: tiny generated ones for smoke runs and tests.

The real tables (``features_30_sec.csv``, ``features_3_sec.csv``) are read by
:func:`training.data.load_csv_set`; each row is one segment of the track its
``filename`` names, so 3 s rows vote per track like audio segments.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from codeFeature.config import GENRES


def synthetic_split_lines(tracks_per_genre: int):
    train, valid = [], []
    for genre in GENRES:
        for k in range(tracks_per_genre):
            (valid if k == tracks_per_genre - 1 else train).append(f"{genre}/{genre}.{k:05d}.wav")
    return train, valid


def make_synthetic_csv(folder: Path, *, tracks_per_genre: int = 3, rows_per_track: int = 1,
                       seed: int = 0) -> tuple[list[Path], Path, Path]:
    """Write a Kaggle-format feature table (``features_30_sec.csv`` layout, or ``features_3_sec.csv``
    with ``rows_per_track`` > 1: filenames ``blues.00000.3.wav``) and train / valid split lists.

    Returns
    -------
    [csv_path], train_split, valid_split
    """
    from codeFeature.gtzan_features import FEATURE_COLUMNS

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (len(GENRES), len(FEATURE_COLUMNS)))
    scale = np.logspace(-3, 5, len(FEATURE_COLUMNS))  # the real columns span many orders of magnitude
    lines = ["filename,length," + ",".join(FEATURE_COLUMNS) + ",label"]
    for g, genre in enumerate(GENRES):
        for k in range(tracks_per_genre):
            for r in range(rows_per_track):
                name = f"{genre}.{k:05d}.{r}.wav" if rows_per_track > 1 else f"{genre}.{k:05d}.wav"
                values = (centres[g] + 0.3 * rng.standard_normal(len(FEATURE_COLUMNS))) * scale
                length = 66149 if rows_per_track > 1 else 661794
                lines.append(f"{name},{length}," + ",".join(f"{v:.6g}" for v in values) + f",{genre}")
    name = "features_3_sec.csv" if rows_per_track > 1 else "features_30_sec.csv"
    (folder / name).write_text("\n".join(lines) + "\n")
    train, valid = synthetic_split_lines(tracks_per_genre)
    (folder / "train.txt").write_text("\n".join(train) + "\n")
    (folder / "valid.txt").write_text("\n".join(valid) + "\n")
    return [folder / name], folder / "train.txt", folder / "valid.txt"
