"""Which artist made which GTZAN track, and folds that keep an artist's tracks together.

Shared by k-fold evaluation (:mod:`training.kfold`), the musicnn head's training and selection
(:mod:`training.train_musicnn_head`, :mod:`training.head_cv_report`): one artist on both sides of a split
would let a model recognise the artist (the recording, the voice) instead of the genre.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from training.data import track_id_of


def read_artists(path: str | Path) -> dict[str, str]:
    """Track id -> artist from a CSV of ``track,artist`` (an optional header line; ``#`` comments), or from
    Sturm's artist index (lines ``blues.00000.wav ::: John Lee Hooker ::: title``, ``##`` comments).

    Raises
    ------
    ValueError
        On a row that is not ``track,artist`` with a GTZAN track name, or a track given two artists.
    """
    artists: dict[str, str] = {}
    with open(path, newline="") as handle:
        lines = handle.read().splitlines()
    # Sturm's index (training/splits/artists_train_valid.txt) has lines "blues.00000.wav ::: artist ::: title"
    sturm = any(" ::: " in line for line in lines[:50])
    rows = ([part.strip() for part in line.split(":::")] for line in lines) if sturm else csv.reader(lines)
    for number, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        track = track_id_of(row[0].strip().split("/")[-1]) if len(row) >= 2 else None
        artist = row[1].strip() if len(row) >= 2 else ""
        if sturm and track is not None and not artist:
            continue  # Sturm could not identify every artist: such a track has none (callers count them)
        if track is None or not artist:
            if not artists and number == 1:  # a header such as "track,artist"
                continue
            raise ValueError(f"{path}:{number}: expected 'track,artist' (track like blues.00029), got {row!r}")
        if artists.get(track, artist) != artist:
            raise ValueError(f"{path}:{number}: {track} is given two artists: {artists[track]!r} and {artist!r}")
        artists[track] = artist
    if not artists:
        raise ValueError(f"{path} names no track's artist")
    return artists


def artist_folds(tracks: list[str], artists: dict[str, str], *, folds: int, seed: int) -> list[tuple[list[str], list[str]]]:
    """``folds`` (training part, held-out part) pairs of track ids: stratified by genre, grouped by artist."""
    from sklearn.model_selection import StratifiedGroupKFold

    tracks = sorted(tracks)
    genres = [t.split(".")[0] for t in tracks]
    groups = [artists[t] for t in tracks]
    n_groups = len(set(groups))
    if folds < 2:
        raise ValueError("k-fold needs at least 2 folds")
    if n_groups < folds:
        raise ValueError(f"{n_groups} artists cannot fill {folds} artist-free folds")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    pairs = []
    for train_idx, test_idx in splitter.split(np.zeros(len(tracks)), genres, groups):
        pairs.append(([tracks[i] for i in train_idx], [tracks[i] for i in test_idx]))
    return pairs
