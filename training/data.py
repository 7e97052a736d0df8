"""Datasets for training: GTZAN-layout audio folders, split lists, and a feature cache.

Tracks are identified as ``<genre>.<number>`` (``blues.00029``); every file whose
name starts with a track id belongs to that track, so a full track and an
excerpt of it always land on the same side of a split.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from codeFeature.audio import decode
from codeFeature.config import GENRES, FeatureConfig
from codeFeature.errors import GenreError
from codeFeature.features import segment_features
from codeFeature.split import segment_array

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The shared GTZAN material, when it sits beside the repository.
SHARED_GTZAN = REPO_ROOT.parent / "shared" / "data" / "gtzan"
DEFAULT_CACHE = Path(os.environ.get("CODEFEATURE_CACHE", REPO_ROOT / ".cache" / "features"))

_TRACK_RE = re.compile(r"^(?P<genre>[a-z]+)\.?(?P<number>\d{5})")
AUDIO_SUFFIXES = {".wav", ".au", ".flac", ".ogg", ".mp3"}


def track_id_of(path: str | os.PathLike) -> str | None:
    """``blues.00029`` for ``.../blues.00029.wav`` or ``blues00029.png``; ``None`` if not a GTZAN name."""
    match = _TRACK_RE.match(Path(path).name)
    if not match or match["genre"] not in GENRES:
        return None
    return f"{match['genre']}.{match['number']}"


def find_audio(folders: Iterable[str | os.PathLike]) -> dict[str, list[Path]]:
    """Every GTZAN-named audio file under ``folders``, grouped by track id (sorted)."""
    tracks: dict[str, list[Path]] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder")
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
                track = track_id_of(path)
                if track is not None:
                    tracks.setdefault(track, []).append(path)
    return dict(sorted(tracks.items()))


def read_split(path: str | os.PathLike) -> list[str]:
    """Track ids listed in a split file (lines like ``blues/blues.00029.wav``)."""
    ids = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            track = track_id_of(line.split("/")[-1])
            if track is None:
                raise ValueError(f"{path}: {line!r} is not a GTZAN track name")
            ids.append(track)
    return ids


def file_sha256(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@dataclass
class SegmentSet:
    """Features of every segment of a set of tracks.

    Attributes
    ----------
    x : np.ndarray, shape (n_segments, *config.input_shape), float32
    y : np.ndarray, shape (n_segments,), int64
        Index into :data:`GENRES`.
    tracks : np.ndarray, shape (n_segments,), str
        Track id of each segment.
    skipped : list of dict
        Files that could not be used, with the reason.
    """

    x: np.ndarray
    y: np.ndarray
    tracks: np.ndarray
    skipped: list = field(default_factory=list)

    @property
    def n_tracks(self) -> int:
        return len(set(self.tracks.tolist()))

    def subset(self, mask: np.ndarray) -> "SegmentSet":
        return SegmentSet(self.x[mask], self.y[mask], self.tracks[mask], self.skipped)


def _cache_key(path: Path, config: FeatureConfig, extra: str) -> str:
    stat = path.stat()
    ident = json.dumps([str(path.resolve()), stat.st_size, int(stat.st_mtime), config.to_dict(), extra])
    return hashlib.sha1(ident.encode()).hexdigest()


def file_segments(path: Path, config: FeatureConfig) -> np.ndarray:
    """Segments of one file, cut exactly as :func:`codeFeature.predict.predict_file` cuts them."""
    segments, _ = segment_array(decode(path, sample_rate=config.sample_rate), config)
    return segments


def build_segment_set(tracks: dict[str, list[Path]], track_ids: Sequence[str], config: FeatureConfig, *,
                      cache_dir: Path | None = DEFAULT_CACHE, augment=None, extra_key: str = "") -> SegmentSet:
    """Decode, segment and featurise the files of ``track_ids``, with a per-file disk cache.

    Parameters
    ----------
    tracks : dict
        From :func:`find_audio`.
    track_ids : sequence of str
        Tracks to include; those with no audio are left out silently (the caller counts them).
    config : FeatureConfig
    cache_dir : Path or None
        Per-file features are cached under it, keyed by path, size, mtime and config.
    augment : callable(segments, rng) -> list of segment arrays, optional
        Extra segments derived from each file's segments (training side only).
    """
    xs, ys, ts, skipped = [], [], [], []
    for track in track_ids:
        for path in tracks.get(track, []):
            label = GENRES.index(track.split(".")[0])
            try:
                feats = _cached_features(path, config, cache_dir, augment, extra_key)
            except GenreError as exc:
                log.warning("skipping %s: %s", path, exc)
                skipped.append({"file": str(path), "reason": str(exc)})
                continue
            xs.append(feats)
            ys.append(np.full(len(feats), label, dtype=np.int64))
            ts.append(np.full(len(feats), track, dtype=object))
    if not xs:
        raise ValueError("no usable audio for the requested tracks")
    return SegmentSet(np.concatenate(xs), np.concatenate(ys), np.concatenate(ts).astype(str), skipped)


def _cached_features(path: Path, config: FeatureConfig, cache_dir: Path | None, augment, extra_key: str) -> np.ndarray:
    key = _cache_key(path, config, extra_key if augment else "")
    cached = cache_dir / f"{key}.npy" if cache_dir is not None else None
    if cached is not None and cached.exists():
        return np.load(cached)
    segments = file_segments(path, config)
    if augment is not None:
        rng = np.random.default_rng(int(key[:8], 16))
        segments = np.concatenate([segments, *augment(segments, rng)])
    feats = segment_features(segments, config)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp.npy")
        np.save(tmp, feats)
        tmp.replace(cached)
    return feats
