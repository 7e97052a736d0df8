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
from codeFeature.feature_kinds import feature_kind
from codeFeature.features import FEATURES_REVISION, segment_features
from codeFeature.segments import segment_array
from training.datasets import HOW_TO_GET, DatasetError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The shared GTZAN material, when it sits beside the repository (users have their own: see training.datasets).
SHARED_GTZAN = REPO_ROOT.parent / "shared" / "data" / "gtzan"
#: The fault-filtered split lists (Kereliuk, Sturm & Larsen 2015), shipped with the code: training/splits/README.md.
SPLITS_DIR = REPO_ROOT / "training" / "splits"
TRAIN_SPLIT = SPLITS_DIR / "train_filtered.txt"
VALID_SPLIT = SPLITS_DIR / "valid_filtered.txt"
#: Where training and evaluation write by default (gitignored); python -m training.promote installs a run.
RUNS_DIR = Path(os.environ.get("CODEFEATURE_RUNS", REPO_ROOT / "runs"))
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
            raise DatasetError(f"{folder} is not a folder; {HOW_TO_GET}")
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
                track = track_id_of(path)
                if track is not None:
                    tracks.setdefault(track, []).append(path)
    return dict(sorted(tracks.items()))


def read_split(path: str | os.PathLike) -> list[str]:
    """Track ids listed in a split file (lines like ``blues/blues.00029.wav``)."""
    ids = []
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise DatasetError(f"the split list {path} does not exist") from None
    for line in text.splitlines():
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
    ident = json.dumps([str(path.resolve()), stat.st_size, int(stat.st_mtime), config.to_dict(), extra,
                        FEATURES_REVISION])
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
            except (GenreError, ValueError) as exc:  # undecodable or unusable file
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
        # seeded by the file's name and the augmentation's version only, so that the same data give the
        # same augmented copies on any machine, wherever the files live and whatever the cache key
        rng = np.random.default_rng(int(hashlib.sha1(f"{path.name}|{extra_key}".encode()).hexdigest()[:8], 16))
        segments = np.concatenate([segments, *augment(segments, rng)])
    feats = segment_features(segments, config)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp.npy")
        np.save(tmp, feats)
        tmp.replace(cached)
    return feats


# --------------------------------------------------------------------------- tables and images

IMAGE_SUFFIXES = {".png", ".webp", ".jpg", ".jpeg"}


def data_kind(paths: Sequence[str | os.PathLike]) -> str:
    """``"csv"``, ``"images"`` or ``"audio"``: what a ``--data`` argument holds.

    A single ``.csv`` file is a Kaggle-format table; a folder whose files are images is an
    image folder (``images_original/`` or the shared ``spectrograms/``); anything else is audio.
    """
    paths = [Path(p) for p in paths]
    if len(paths) == 1 and paths[0].suffix.lower() == ".csv":
        return "csv"
    if any(p.suffix.lower() == ".csv" for p in paths):
        raise ValueError(f"give one Kaggle CSV at a time, got {[str(p) for p in paths]}")
    for folder in paths:
        if not folder.is_dir():
            raise DatasetError(f"{folder} is neither a folder nor a .csv file; {HOW_TO_GET}")
    suffixes = {p.suffix.lower() for folder in paths for p in folder.rglob("*") if p.is_file()}
    if suffixes & IMAGE_SUFFIXES and not suffixes & AUDIO_SUFFIXES:
        return "images"
    return "audio"


def load_csv_set(path: str | os.PathLike, track_ids: Sequence[str] | None) -> SegmentSet:
    """Rows of a Kaggle feature table (``features_30_sec.csv`` or ``features_3_sec.csv``) as a SegmentSet.

    Each row is one segment of the track its ``filename`` names (``blues.00000.wav`` or
    ``blues.00000.3.wav``), so 3 s rows vote per track like audio segments do. The label
    comes from the file name (it must agree with the ``label`` column). Rows with missing or
    non-finite values are skipped and listed in ``skipped``.
    """
    import pandas as pd

    from codeFeature.gtzan_features import FEATURE_COLUMNS

    if not Path(path).is_file():
        raise DatasetError(f"the feature table {path} does not exist; {HOW_TO_GET}")
    table = pd.read_csv(path)
    missing = [c for c in ("filename", *FEATURE_COLUMNS) if c not in table.columns]
    if missing:
        raise ValueError(f"{path} lacks the Kaggle columns {missing[:5]}{'...' if len(missing) > 5 else ''}")
    wanted = set(track_ids) if track_ids is not None else None
    xs, ys, ts, skipped = [], [], [], []
    values = table[list(FEATURE_COLUMNS)].to_numpy(dtype=np.float64, na_value=np.nan)
    for i, name in enumerate(table["filename"].astype(str)):
        track = track_id_of(name)
        if track is None:
            skipped.append({"file": f"{path}:{name}", "reason": "not a GTZAN track name"})
            continue
        if wanted is not None and track not in wanted:
            continue
        if not np.all(np.isfinite(values[i])):
            log.warning("skipping row %s of %s: missing or non-finite values", name, path)
            skipped.append({"file": f"{path}:{name}", "reason": "missing or non-finite feature values"})
            continue
        xs.append(values[i])
        ys.append(GENRES.index(track.split(".")[0]))
        ts.append(track)
    if not xs:
        raise ValueError(f"no usable rows in {path} for the requested tracks")
    return SegmentSet(np.asarray(xs, np.float32), np.asarray(ys, np.int64), np.asarray(ts, dtype=str), skipped)


def find_images(folders: Iterable[str | os.PathLike]) -> dict[str, list[Path]]:
    """Every GTZAN-named image under ``folders`` (``blues00000.png`` or ``.webp``), grouped by track id."""
    found: dict[str, list[Path]] = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                track = track_id_of(path)
                if track is not None:
                    found.setdefault(track, []).append(path)
    return dict(sorted(found.items()))


def load_image_set(folders: Iterable[str | os.PathLike], track_ids: Sequence[str] | None, *, size: int,
                   cache_dir: Path | None = DEFAULT_CACHE) -> SegmentSet:
    """Spectrogram images as a SegmentSet (one segment per image), read like a Keras image pipeline.

    Images are loaded with :func:`codeFeature.spectrogram_image.load_spectrogram_image` and cached
    per file; an unreadable image is skipped with a warning and listed in ``skipped``.
    """
    from codeFeature.spectrogram_image import load_spectrogram_image

    images = find_images(folders)
    ids = list(images) if track_ids is None else [t for t in track_ids if t in images]
    xs, ys, ts, skipped = [], [], [], []
    for track in ids:
        for path in images[track]:
            stat = path.stat()
            key = hashlib.sha1(json.dumps([str(path.resolve()), stat.st_size, int(stat.st_mtime), size,
                                           "image-v1"]).encode()).hexdigest()
            cached = cache_dir / f"{key}.npy" if cache_dir is not None else None
            try:
                if cached is not None and cached.exists():
                    image = np.load(cached)
                else:
                    image = load_spectrogram_image(path, size=size)
                    if cached is not None:
                        cached.parent.mkdir(parents=True, exist_ok=True)
                        np.save(cached, image)
            except Exception as exc:  # Pillow raises several types for a broken file
                log.warning("skipping %s: %s", path, exc)
                skipped.append({"file": str(path), "reason": f"{type(exc).__name__}: {exc}"})
                continue
            xs.append(image)
            ys.append(GENRES.index(track.split(".")[0]))
            ts.append(track)
    if not xs:
        raise ValueError("no usable images for the requested tracks")
    return SegmentSet(np.asarray(xs, np.float32), np.asarray(ys, np.int64), np.asarray(ts, dtype=str), skipped)


def load_set(data: Sequence[str | os.PathLike], track_ids: Sequence[str] | None, config: FeatureConfig, *,
             cache_dir: Path | None = DEFAULT_CACHE, augment=None, extra_key: str = "") -> SegmentSet:
    """The inputs of ``config`` for ``track_ids`` (all tracks if ``None``) from audio, a CSV or images.

    Raises
    ------
    ValueError
        If the data kind cannot feed ``config`` (a CSV needs ``gtzan57``, images ``spectrogram_image``).
    """
    kind = data_kind(data)
    if kind == "csv":
        if feature_kind(config.feature).training_data != "table":
            raise ValueError(f"{data[0]} is a feature table; it can only feed feature='gtzan57' models, "
                             f"not feature={config.feature!r}: give an audio folder instead")
        return load_csv_set(data[0], track_ids)
    if kind == "images":
        if feature_kind(config.feature).training_data != "images":
            raise ValueError(f"{[str(d) for d in data]} holds images; they can only feed "
                             f"feature='spectrogram_image' models, not feature={config.feature!r}")
        return load_image_set(data, track_ids, size=config.image_size, cache_dir=cache_dir)
    tracks = find_audio(data)
    ids = list(tracks) if track_ids is None else track_ids
    return build_segment_set(tracks, ids, config, cache_dir=cache_dir, augment=augment, extra_key=extra_key)


def display_path(path: str | os.PathLike) -> Path:
    """``path`` relative to the repository (``./...``) or its parent (``../...``) when it lies there."""
    path = Path(path).resolve()
    for base, shown in ((REPO_ROOT, Path(".")), (REPO_ROOT.parent, Path(".."))):
        try:
            return shown / path.relative_to(base)
        except ValueError:
            continue
    return path


def list_tracks(data: Sequence[str | os.PathLike]) -> list[str]:
    """Track ids present in ``data`` (audio folders, a Kaggle CSV or image folders), sorted."""
    kind = data_kind(data)
    if kind == "csv":
        import pandas as pd

        if not Path(data[0]).is_file():
            raise DatasetError(f"the feature table {data[0]} does not exist; {HOW_TO_GET}")
        names = pd.read_csv(data[0], usecols=["filename"])["filename"].astype(str)
        return sorted({t for t in map(track_id_of, names) if t is not None})
    if kind == "images":
        return sorted(find_images(data))
    return sorted(find_audio(data))


def make_track_split(track_ids: Sequence[str], folder: str | os.PathLike, *, seed: int = 42,
                     valid_fraction: float = 0.3) -> tuple[Path, Path]:
    """A seeded split *by track*, stratified by genre, written as ``train.txt`` / ``valid.txt`` in ``folder``.

    Used when no split lists are given. Every segment, excerpt or row of a track follows its track.
    """
    rng = np.random.default_rng(seed)
    train, valid = [], []
    for genre in GENRES:
        ids = sorted(t for t in track_ids if t.split(".")[0] == genre)
        ids = [ids[i] for i in rng.permutation(len(ids))]
        n_valid = int(round(valid_fraction * len(ids))) if len(ids) > 1 else 0
        valid += ids[:n_valid]
        train += ids[n_valid:]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "train.txt", folder / "valid.txt"
    for path, ids in zip(paths, (train, valid)):
        path.write_text(f"# seeded (seed={seed}) stratified split by track\n"
                        + "".join(f"{t.split('.')[0]}/{t}.wav\n" for t in sorted(ids)))
    return paths
