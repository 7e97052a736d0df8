"""Train a model of your own genres from a folder of folders, with the shipped default's recipe.

FOLDER holds one sub-folder per label (any labels, two or more), audio files inside (any format
codeFeature decodes; sub-folders of a label, such as albums, count as that label)::

    my-genres/
        cumbia/  song1.mp3  song2.flac  ...
        house/   album/track1.m4a  ...
        techno/  ...

    python -m training.own_genres my-genres --out my_genres                  # songs grouped by file
    python -m training.own_genres my-genres --out my_genres --artists artists.csv
    python -m codeFeature --model my_genres song.mp3                         # use it like a shipped model

The recipe is the default model's (``models/musicnn_genre``, :mod:`training.train_musicnn_head`), less its
second head on other recording chains: the
frozen, pretrained musicnn (MSD) trunk, its penultimate layer and 50 tags per 3 s segment, computed once
per file and cached on disk (``--cache``); a head (RBF SVMs or logistic regression, standardised input)
fitted with scikit-learn, every label and every song given the same total weight; a temperature
calibrated on out-of-fold scores; the "not sure" thresholds; the int8 path's calibration and its check;
one Keras model folder with the 50 musicnn tags as a second output, loadable with no pickle.

The head is chosen by grouped cross-validation: the songs are split into folds so that the segments of
one song (or, with ``--artists``, every song of one artist) are never on both sides. The figure written
into the manifest (``metrics.cv_grouped``) is **nested**: in each outer fold the head is chosen and
calibrated on the other folds alone and the held-out songs are scored, so the choice itself is part of
what is measured; every song is scored once, by a model that never heard it. The "not sure" thresholds
are fitted on those held-out answers (flag as many wrong answers as possible, at most 10 % of the right
ones), as the default's are on GTZAN's valid split. The shipped model is then fitted on every song.

``--artists CSV``: rows ``file,artist`` (a header line is allowed), ``file`` being a path relative to
FOLDER (``house/album/track1.m4a``) or a bare file name found once under FOLDER. Songs it does not name
are their own group.

Refused in plain words (exit status 2), before any network runs where possible: fewer than two labels, a
label with fewer than :data:`MIN_SONGS` readable songs (or, with ``--artists``, of fewer than two
artists), DEST already there (unless ``--force``, which only ever replaces a model folder), DEST inside
FOLDER or FOLDER inside DEST. Files that do not decode are skipped, listed, and recorded in the manifest.
DEST is built in a temporary folder beside it and renamed into place at the end, so an interrupted run
never leaves half a model there.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

log = logging.getLogger("training.own_genres")

#: Fewest readable songs a label needs: grouped 5-fold cross-validation then holds out at least one of
#: its songs in every fold while the other folds still hold four to learn from.
MIN_SONGS = 5
#: The head input, as the default model's (musicnn MSD penultimate layer and its 50 tags).
SPEC = "msd:penultimate+msd:taggram"
BASE = "musicnn_msd"
#: The heads compared (kind, parameters): the default's family around its winner (svm C=1, gamma_scale
#: 0.1) and the logistic regression of models/musicnn_genre_lr (one value only: each of its fits costs
#: as much as all six SVMs'). Listed simplest first: ties go to the first.
GRID = ([("lr", {"C": 0.01})]
        + [("svm", {"C": c, "gamma_scale": g}) for c in (1.0, 0.3, 3.0) for g in (0.1, 0.3)])
#: The "not sure" rule may flag at most this share of the right held-out answers (the default's criterion).
MAX_RIGHT_FLAGGED = 0.10
#: min_tag is this times the weakest song's strongest tag, so no song of the folder is called "not music".
TAG_SAFETY = 0.5
#: The int8 check decodes at most this many songs (spread over the labels) and measures the
#: calibration on at most this many of their segments, which bounds its memory and time.
INT8_MAX_SONGS = 200
INT8_CALIBRATION_SEGMENTS = 400
#: One colour per label, in label order: Paul Tol's "muted" scheme, then Okabe and Ito's; distinct under
#: the common colour-vision deficiencies. Past 16 labels the colours repeat (every chart also names them).
PALETTE = ("#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499",
           "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")


class Refusal(Exception):
    """The input cannot make a model; the message says why in plain words and what to do."""


@dataclass(frozen=True)
class Song:
    path: Path
    rel: str  #: path relative to FOLDER, with "/" (the song's id)
    label: int


# ------------------------------------------------------------------ the folder of folders

def find_songs(folder: Path) -> tuple[list[str], list[Song], list[str]]:
    """The labels (sub-folders holding audio, sorted), their songs, and notes on what was left out."""
    from codeFeature.audio import SUPPORTED_EXTENSIONS

    if not folder.is_dir():
        raise Refusal(f"{folder} is not a folder: give a folder holding one sub-folder per label")
    audio = tuple(SUPPORTED_EXTENSIONS)
    labels, songs, notes = [], [], []
    for child in sorted(folder.iterdir(), key=lambda p: p.name):
        if child.name.startswith("."):
            continue
        if child.is_file():
            if child.suffix.lower() in audio:
                notes.append(f"{child.name}: an audio file directly in {folder}, not in a label's sub-folder; left out")
            continue
        if not child.is_dir():
            continue
        found = []
        for root, dirs, files in os.walk(child, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                path = Path(root) / name
                if not name.startswith(".") and path.suffix.lower() in audio and path.is_file():
                    found.append(path)
        if not found:
            notes.append(f"{child.name}/: holds no audio files ({', '.join(audio)}); not a label")
            continue
        index = len(labels)
        labels.append(child.name)
        songs += [Song(p, p.relative_to(folder).as_posix(), index) for p in found]
    return labels, songs, notes


def read_artists(path: Path, songs: list[Song]) -> tuple[dict[str, str], list[str]]:
    """Song id -> artist from a CSV of ``file,artist``; and notes on rows naming no song of the folder."""
    by_rel = {s.rel: s.rel for s in songs}
    by_name: dict[str, list[str]] = {}
    for s in songs:
        by_name.setdefault(s.path.name, []).append(s.rel)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise Refusal(f"--artists {path}: cannot read it as a CSV ({exc})") from None
    artists, unknown = {}, []
    for number, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 2 or not row[0].strip() or not row[1].strip():
            raise Refusal(f"--artists {path}, line {number}: expected 'file,artist', got {','.join(row)!r}")
        name, artist = row[0].strip().replace("\\", "/"), row[1].strip()
        if number == 1 and artist.lower() == "artist":
            continue  # a header
        rel = by_rel.get(name)
        if rel is None:
            matches = by_name.get(name, [])
            if len(matches) > 1:
                raise Refusal(f"--artists {path}, line {number}: {name!r} names {len(matches)} files "
                              f"({', '.join(matches[:3])}); give its path relative to the folder")
            rel = matches[0] if matches else None
        if rel is None:
            unknown.append(f"line {number} ({name})")
            continue
        if artists.get(rel, artist) != artist:
            raise Refusal(f"--artists {path}, line {number}: {rel} is given two artists "
                          f"({artists[rel]!r} and {artist!r})")
        artists[rel] = artist
    notes = [f"--artists: {len(unknown)} rows name no song of the folder and were ignored: "
             + ", ".join(unknown[:3]) + (", ..." if len(unknown) > 3 else "")] if unknown else []
    return artists, notes


def check_counts(labels: list[str], songs: list[Song], groups: dict[str, str], by_artist: bool,
                 skipped: int = 0) -> None:
    """Refuse fewer than two labels, or a label with too few songs (or artists)."""
    if len(labels) < 2:
        have = f"only {labels[0]!r}" if labels else "none"
        raise Refusal(f"the folder needs at least 2 labels (sub-folders holding audio); it has {have}")
    short = []
    for i, label in enumerate(labels):
        mine = [s for s in songs if s.label == i]
        if len(mine) < MIN_SONGS:
            short.append(f"{label!r} has {len(mine)}")
    if short:
        after = f" readable (after skipping {skipped} unreadable files)" if skipped else ""
        raise Refusal(f"every label needs at least {MIN_SONGS}{after} songs: " + "; ".join(short)
                      + ". Add songs, or leave the label out")
    if by_artist:
        few = []
        for i, label in enumerate(labels):
            n = len({groups[s.rel] for s in songs if s.label == i})
            if n < 2:
                few.append(f"{label!r} has songs of {n} artist")
        if few:
            raise Refusal("with --artists, every label needs songs of at least 2 artists (the cross-validation "
                          "holds an artist's songs out together): " + "; ".join(few))


# ------------------------------------------------------------------ embeddings (cached)

def _cache_path(cache_dir: Path, model, path: Path, digest: str) -> Path:
    """The cache file of ``path``'s outputs: the key :func:`training.musicnn_embeddings.embed_files` uses,
    so that the two commands share the cache."""
    stat = path.stat()
    key = hashlib.sha1(json.dumps([str(path.resolve()), stat.st_size, int(stat.st_mtime), digest,
                                   model.config.to_dict(), None, "float32"]).encode()).hexdigest()
    return Path(cache_dir) / model.name / f"{key}.npz"


def embed_songs(base, songs: list[Song], cache_dir: Path):
    """The musicnn outputs of every segment of ``songs`` (an :class:`Embedded`, tracks = song ids) and
    the songs that could not be decoded (``[{"file", "reason"}]``)."""
    from codeFeature.errors import GenreError
    from codeFeature.features import segment_features
    from training.data import file_segments
    from training.musicnn_embeddings import LAYERS, Embedded, _multi_output, _weights_digest

    digest = _weights_digest(base)
    forward = None
    parts: dict[str, list] = {k: [] for k in LAYERS}
    ys, ts, skipped = [], [], []
    t0, computed = time.perf_counter(), 0
    for number, song in enumerate(songs, start=1):
        try:
            cached = _cache_path(cache_dir, base, song.path, digest)
            if cached.exists():
                with np.load(cached) as record:
                    outs = [record[k] for k in LAYERS]
            else:
                segments = file_segments(song.path, base.config)
                if forward is None:
                    forward = _multi_output(base)
                outs = forward.forward(segment_features(segments, base.config))
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_suffix(".tmp.npz")
                with open(tmp, "wb") as handle:
                    np.savez(handle, **dict(zip(LAYERS, outs)))
                tmp.replace(cached)  # an interrupted run never leaves a half-written record
                computed += 1
        except (GenreError, OSError, ValueError) as exc:
            log.warning("skipping %s: %s", song.rel, exc)
            skipped.append({"file": song.rel, "reason": str(exc).splitlines()[0] if str(exc) else type(exc).__name__})
            continue
        for k, v in zip(LAYERS, outs):
            parts[k].append(np.asarray(v, np.float32))
        ys.append(np.full(len(outs[0]), song.label))
        ts.append(np.full(len(outs[0]), song.rel, dtype=object))
        if number % 10 == 0 or number == len(songs):
            spent = time.perf_counter() - t0
            log.info("musicnn: %d/%d songs (%d computed, the rest from the cache) in %.0f s", number, len(songs),
                     computed, spent)
    if not ys:
        return None, skipped
    return Embedded({k: np.concatenate(v) for k, v in parts.items()}, np.concatenate(ys),
                    np.concatenate(ts).astype(str)), skipped


# ------------------------------------------------------------------ heads, folds, figures

def balanced_weights(y: np.ndarray, tracks: np.ndarray) -> np.ndarray:
    """Sample weights giving every song of a label the same total, and every label the same total (mean 1)."""
    from training.musicnn_heads import track_weights

    w = track_weights(tracks)
    for k in np.unique(y):
        w[y == k] /= w[y == k].sum()
    return w * len(w) / w.sum()


def n_folds(y: np.ndarray, groups: np.ndarray, wanted: int) -> int:
    """``wanted`` folds, fewer where a label has fewer groups (songs or artists); at least 2."""
    smallest = min(len(set(groups[y == k].tolist())) for k in np.unique(y))
    return max(2, min(wanted, smallest, len(set(groups.tolist()))))


def grouped_folds(y: np.ndarray, groups: np.ndarray, folds: int, seed: int):
    """Train / test row indices of ``folds`` folds, stratified by label, no group on both sides."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(y)), y, groups))


def fit(cfg, x, y, tracks, labels, seed):
    from training.musicnn_heads import fit_head

    kind, params = cfg
    return fit_head(kind, x, y, sample_weight=balanced_weights(y, tracks), seed=seed, labels=labels, **params)


def oof_scores(cfg, x, y, tracks, groups, labels, folds, seed):
    """Every row's scores from a head fitted without its fold, and whether that head knew the row's label
    (a fold may hold all of a label's groups; its rows then cannot be calibrated)."""
    out = np.zeros((len(y), len(labels)))
    known = np.zeros(len(y), bool)
    for train, test in grouped_folds(y, groups, folds, seed):
        if len(np.unique(y[train])) < 2:
            continue  # nothing to tell apart: the rows stay unknown, and count as wrong
        head = fit(cfg, x[train], y[train], tracks[train], labels, seed)
        out[test] = head.scores(x[test])
        known[test] = np.isin(y[test], head.classes)
    return out, known


def temperature(scores, y, tracks, known) -> float:
    from training.musicnn_heads import fit_temperature

    if not known.any():
        return 1.0
    w = balanced_weights(y, tracks)
    return fit_temperature(scores[known], y[known], w[known])


def song_figures(probs, y, tracks, labels) -> dict:
    """Song (vote) and segment accuracy, balanced accuracy, the worst label's recall and the confusion."""
    from training.metrics import scores

    s = scores(probs, y, tracks, tuple(labels))
    recalls = [v["recall"] for v in s["per_genre"].values() if v["support"]]
    s["balanced_accuracy"] = round(float(np.mean(recalls)), 4)
    s["worst_recall"] = round(float(min(recalls)), 4)
    return s


def select(x, y, tracks, groups, labels, folds, seed):
    """The head of :data:`GRID` with the best grouped-CV balanced song accuracy (then worst label's recall,
    then segment accuracy; then the simplest); returns it, its out-of-fold scores and the table."""
    from scipy.special import softmax

    best, table = None, []
    for order, cfg in enumerate(GRID):
        scores_, known = oof_scores(cfg, x, y, tracks, groups, labels, folds, seed)
        s = song_figures(softmax(scores_, axis=1), y, tracks, labels)
        key = (s["balanced_accuracy"], s["worst_recall"], s["segment_accuracy"], -order)
        table.append({"head": cfg[0], **cfg[1], **{k: s[k] for k in ("balanced_accuracy", "worst_recall",
                                                                     "track_accuracy", "tracks",
                                                                     "segment_accuracy", "segments")}})
        if best is None or key > best[0]:
            best = (key, cfg, scores_, known)
    return best[1], best[2], best[3], table


def wilson(right: int, n: int, z: float = 1.96) -> list[float]:
    """The 95 % Wilson score interval of ``right`` of ``n``."""
    if n == 0:
        return [0.0, 1.0]
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def nested_cv(x, y, tracks, groups, labels, folds, seed) -> tuple[dict, np.ndarray]:
    """Nested grouped cross-validation of the whole recipe (choice, fit, calibration); returns the figures
    and every segment's held-out probabilities."""
    from training.calibration import calibration_figures

    probs = np.zeros((len(y), len(labels)))
    rows = []
    for k, (train, test) in enumerate(grouped_folds(y, groups, folds, seed), start=1):
        inner = n_folds(y[train], groups[train], folds)
        cfg, scores_, known, _ = select(x[train], y[train], tracks[train], groups[train], labels, inner, seed)
        head = fit(cfg, x[train], y[train], tracks[train], labels, seed)
        head.temperature = temperature(scores_, y[train], tracks[train], known)
        probs[test] = head.probabilities(x[test])
        s = song_figures(probs[test], y[test], tracks[test], labels)
        rows.append({"fold": k, "head": head.describe(), "temperature": round(head.temperature, 4),
                     "train_songs": len(set(tracks[train].tolist())),
                     **{n: s[n] for n in ("track_accuracy", "tracks", "segment_accuracy", "segments")}})
        log.info("outer fold %d/%d: %s, %d of %d held-out songs right", k, folds, head.describe(),
                 round(s["track_accuracy"] * s["tracks"]), s["tracks"])
    s = song_figures(probs, y, tracks, labels)
    cal = calibration_figures(probs, y, tracks, "vote")
    acc = [r["track_accuracy"] for r in rows]
    per_label = {}
    for label, v in s["per_genre"].items():
        right = int(round(v["recall"] * v["support"]))
        per_label[label] = {"recall": v["recall"], "right": right, "songs": v["support"],
                            "interval_95": wilson(right, v["support"])}
    right = int(round(s["track_accuracy"] * s["tracks"]))
    return {"protocol": f"nested grouped {folds}-fold cross-validation (StratifiedGroupKFold by label, seed {seed}; "
                        "groups: " + ("artists" if len(set(groups.tolist())) < len(set(tracks.tolist())) else "songs")
                        + "): in each fold the head is chosen, fitted and calibrated on the other folds alone and "
                          "the held-out songs are scored; every song is scored once",
            "folds": folds, "songs": s["tracks"], "segments": s["segments"],
            "song_accuracy": s["track_accuracy"], "songs_right": right,
            "song_accuracy_interval_95": wilson(right, s["tracks"]),
            "song_accuracy_fold_mean": round(float(np.mean(acc)), 4),
            "song_accuracy_fold_std": round(float(np.std(acc)), 4),
            "balanced_accuracy": s["balanced_accuracy"], "segment_accuracy": s["segment_accuracy"],
            "ece_song": round(cal["track"]["ece"], 4), "per_label": per_label, "confusion": s["confusion"],
            "per_fold": rows}, probs


def not_sure_rule(probs, tags, y, tracks) -> tuple[dict, dict]:
    """The default's "not sure" criterion on held-out answers: thresholds flagging the most wrong songs while
    flagging at most :data:`MAX_RIGHT_FLAGGED` of the right ones; min_tag keeps every song of the folder music."""
    from training.decision_thresholds import choose_thresholds, firing, per_track

    rows = per_track(probs, tags, tracks, y, "vote")
    rule = {"aggregate": "vote", **choose_thresholds(rows, MAX_RIGHT_FLAGGED)}
    rule["min_tag"] = float(np.floor(min(r["tag"] for r in rows) * TAG_SAFETY * 1000) / 1000)
    return rule, firing(rows, rule)


# ------------------------------------------------------------------ the model folder

def export_check(model, base, head, embedded, songs: list[Song], atol: float = 1e-4) -> float:
    """Max |Keras - scikit-learn| probability over the segments of one song a label; raises if above ``atol``."""
    from codeFeature.features import segment_features
    from training.data import file_segments
    from training.musicnn_heads import input_matrix

    runner = dataclasses.replace(base, keras_model=model, _graph=None)
    diff, seen = 0.0, set()
    for song in songs:
        if song.label in seen or song.rel not in set(embedded.tracks.tolist()):
            continue
        seen.add(song.label)
        got = runner.forward(segment_features(file_segments(song.path, base.config), base.config))[0]
        want = head.probabilities(input_matrix(SPEC, {"msd": embedded.subset([song.rel])}))
        diff = max(diff, float(np.max(np.abs(got - want))))
    if diff > atol:
        raise AssertionError(f"the exported head differs from the fitted one by {diff:.2e} (> {atol:g})")
    return diff


@contextmanager
def _no_engine_cache():
    """OpenVINO conversions of the temporary folder are not worth keeping (their names die with it)."""
    old = os.environ.get("CODEFEATURE_ENGINE_CACHE")
    os.environ["CODEFEATURE_ENGINE_CACHE"] = ""
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CODEFEATURE_ENGINE_CACHE", None)
        else:
            os.environ["CODEFEATURE_ENGINE_CACHE"] = old


def int8_step(folder: Path, head, embedded, songs: list[Song], labels, reproduce: str, config, *,
              check: bool) -> dict:
    """Measure the int8 path's calibration on the songs (:mod:`training.int8_calibration`) and, with
    ``check``, judge it as the default is judged: the int8 answers must keep float32's song accuracy and
    its segment accuracy within half a point, else ``auto`` stays off int8. The songs are the model's own
    (it was fitted on them), as the default's refit is judged on valid, which it was fitted on."""
    from codeFeature.features import segment_features
    from codeFeature.model_io import load_model
    from training.data import file_segments
    from training.int8_calibration import MAX_SEGMENT_POINTS, keeps_valid_answers, measure, write_entry
    from training.musicnn_heads import input_matrix

    have = set(embedded.tracks.tolist())
    chosen = spread([s for s in songs if s.rel in have], INT8_MAX_SONGS)
    xs = [segment_features(file_segments(s.path, config), config) for s in chosen]
    order = np.random.default_rng(0).permutation(sum(len(x) for x in xs))[:INT8_CALIBRATION_SEGMENTS]
    calibration = np.concatenate(xs)[np.sort(order)]
    note = f"{len(calibration)} segments of {len(chosen)} songs of the folder, drawn evenly (seed 0)"
    moments = measure(folder, calibration)
    entry = write_entry(folder, moments, segments=len(calibration), data_note=note)
    if check:
        ids = [s.rel for s in chosen]
        sub = embedded.subset(ids)
        x_all = np.concatenate(xs)
        y_all = np.concatenate([np.full(len(x), s.label) for x, s in zip(xs, chosen)])
        t_all = np.concatenate([np.full(len(x), s.rel, dtype=object) for x, s in zip(xs, chosen)]).astype(str)
        reference = _headline(song_figures(head.probabilities(input_matrix(SPEC, {"msd": sub})), sub.y, sub.tracks,
                                           labels))
        candidates = [sorted(moments)]
        timbral = sorted(n for n in moments if n in read_json(folder / "manifest.json").get("bfloat16_layers", []))
        if timbral and timbral != candidates[0]:
            candidates.append(timbral)
        tried, passed = [], False
        with _no_engine_cache():
            for layers in candidates:
                write_entry(folder, {n: moments[n] for n in layers}, segments=len(calibration), data_note=note)
                probs = load_model(folder, precision="int8", engine="openvino").forward(x_all)[0]
                got = _headline(song_figures(probs, y_all, t_all, labels))
                passed = keeps_valid_answers(reference, got)
                tried.append({"layers": layers, **got, "passed": passed})
                log.info("int8 of %s: songs %.4f (float32 %.4f), segments %.4f (float32 %.4f): %s", ", ".join(layers),
                         got["track_accuracy"], reference["track_accuracy"], got["segment_accuracy"],
                         reference["segment_accuracy"], "kept" if passed else "misses")
                if passed:
                    break
        verdict = {"songs": f"{len(chosen)} songs of the folder, which the model was fitted on (as the default's "
                            "refit is judged on valid, which it was fitted on)",
                   "float32": {**reference, "measure": "the fitted head on the cached float32 embeddings, which "
                                                       "the exported model matches (export_max_abs_diff)"},
                   "tried": tried, "passed": passed,
                   "criterion": f"track (song) accuracy as float32's, segment accuracy within {MAX_SEGMENT_POINTS} "
                                "point; auto runs int8 only where passed"}
        entry = write_entry(folder, {n: moments[n] for n in tried[-1]["layers"]}, segments=len(calibration),
                            data_note=note, valid_check=verdict)
    entry["reproduce"] = reproduce + "  (measured and judged by it)"
    manifest = read_json(folder / "manifest.json")
    manifest["int8_calibration"] = entry
    write_json(folder / "manifest.json", manifest)
    return entry


def spread(songs: list[Song], most: int) -> list[Song]:
    """At most ``most`` of ``songs``, taken label by label in turn (every label represented)."""
    by_label: dict[int, list[Song]] = {}
    for s in songs:
        by_label.setdefault(s.label, []).append(s)
    out, queues = [], [list(v) for _, v in sorted(by_label.items())]
    while len(out) < most and any(queues):
        for q in queues:
            if q and len(out) < most:
                out.append(q.pop(0))
    return out


def _headline(s: dict) -> dict:
    return {k: s[k] for k in ("track_accuracy", "tracks", "segment_accuracy", "segments")}


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_json(path: Path, data: dict) -> None:
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


def _fsync_tree(folder: Path) -> None:
    for root, _, files in os.walk(folder):
        for name in files:
            with open(Path(root) / name, "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(root))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the rename is still atomic
    finally:
        os.close(fd)


def is_model_folder(path: Path) -> bool:
    from codeFeature.model_io import MANIFEST_FILE

    return (path / MANIFEST_FILE).is_file()


def check_destination(dest: Path, folder: Path, force: bool) -> None:
    """Refuse a destination that exists (unless ``force`` and it is a model folder) or overlaps FOLDER."""
    d, f = dest.resolve(), folder.resolve()
    if d == f or d.is_relative_to(f):
        raise Refusal(f"--out {dest} lies inside {folder}: it would become a label of its own next time; "
                      "write the model elsewhere")
    if f.is_relative_to(d):
        raise Refusal(f"{folder} lies inside --out {dest}: choose another place for the model")
    if dest.exists() or dest.is_symlink():
        if not force:
            raise Refusal(f"{dest} already exists: choose another --out, or add --force to replace the model there")
        if not dest.is_dir() or dest.is_symlink() or not (is_model_folder(dest) or not any(dest.iterdir())):
            raise Refusal(f"{dest} exists and is not a model folder (no manifest.json): not replaced, even with --force")


def install(tmp: Path, dest: Path) -> None:
    """Rename the finished ``tmp`` to ``dest`` (replacing a model folder there): DEST is never half a model."""
    _fsync_tree(tmp)
    old = None
    if dest.exists():
        old = dest.parent / f".{dest.name}.replaced-{os.getpid()}"
        os.rename(dest, old)
    try:
        os.rename(tmp, dest)
    except OSError:
        if old is not None:
            os.rename(old, dest)
        raise
    _fsync_dir(dest.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def reproduce_command(argv: list[str]) -> str:
    kept = [a for a in argv if a != "--force"]
    return "python -m training.own_genres " + shlex.join(kept)


def manifest_for(*, name, labels, base, head, model, cv, rule, firing_, selection, seen, folder, songs, skipped,
                 notes, groups_by, folds, seed, reproduce, seconds, diff) -> dict:
    from training.musicnn_heads import head_summary

    kind = {"lr": "Logistic regression", "svm": "RBF support-vector machines (one per label)"}[head.kind]
    counts = {label: sum(1 for s in songs if s.label == i) for i, label in enumerate(labels)}
    return {
        "name": name,
        "task": "genre",
        "description": f"Your own genres ({len(labels)}: {', '.join(labels)}). {kind} on pretrained musicnn (MSD) "
                       "penultimate + taggram, temperature-calibrated, fit on every song of the folder; also "
                       "outputs the 50 musicnn tags",
        "labels": list(labels),
        "colours": {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)},
        "extra_outputs": [{"name": "tags", "labels": list(base.labels)}],
        "feature_config": base.config.to_dict(),
        "preprocessing": base.manifest.get("preprocessing"),
        "bfloat16_layers": base.manifest.get("bfloat16_layers", []),
        "normalization": "in the model: the head's standardisation is a Dense layer (diagonal kernel)",
        "seed": seed,
        "base_model": {"name": base.name, "source": base.manifest.get("source"), "license": base.manifest.get("license")},
        "training": {
            "recipe": "training.own_genres: the default model's (training.train_musicnn_head) on a folder of "
                      "folders, one per label",
            "data": [str(folder.resolve())],  # a list, as every manifest's (the app lists them)
            "songs": sum(counts.values()),
            "songs_per_label": counts,
            "segments": int(cv["segments"]),
            "groups": groups_by,
            "skipped": skipped,
            "left_out": notes,
            "fit_on": "every song of the folder",
            "head": {"inputs": SPEC, **head_summary(head), "weighting": "label (every label, and every song of a "
                                                                        "label, the same total weight)",
                     "calibration": "temperature (softmax(scores / T)) fitted by minimum NLL on out-of-fold scores "
                                    f"of every song, {folds} folds grouped by {groups_by.split(' ')[0]}",
                     "fitted_with": "scikit-learn " + __import__("sklearn").__version__,
                     "export": "built-in Keras layers (training.musicnn_heads.head_layers); no pickle"},
            "selection": {"criterion": "grouped cross-validation over every song: balanced song accuracy, then the "
                                       "worst label's recall, then segment accuracy, then the simplest head",
                          "folds": folds, "grid": selection,
                          "note": "the chosen head's figure here is optimistic by selection; metrics.cv_grouped "
                                  "(nested) is the estimate"},
        },
        "metrics": {
            "note": "cv_grouped is the honest estimate: nested grouped cross-validation of the whole recipe (every "
                    "song scored once by a model that never heard it, nor any song of its group); seen is the "
                    "shipped model on its own songs, not an estimate",
            "cv_grouped": cv,
            "seen": {**seen, "note": "the shipped model on the songs it was fitted on: not an estimate"},
            "not_sure_on_held_out": firing_,
        },
        "decision": {**rule, "source": f"{reproduce}: on the {firing_['tracks']} songs' held-out answers of the nested "
                                       "cross-validation, the thresholds that flag the most wrong answers while "
                                       f"flagging at most {MAX_RIGHT_FLAGGED:.0%} of right ones; min_tag = "
                                       f"{TAG_SAFETY:g} x the weakest song's strongest tag"},
        # what the app's sidebar shows (the manifest's "figures" contract): the honest estimate, with its n
        "figures": [{"label": "Songs right, nested grouped cross-validation", "value": cv["song_accuracy"],
                     "n": int(cv["songs"]),
                     "measured_on": f"your folder's songs, each scored by a model that never heard it ({groups_by})",
                     "command": reproduce}],
        "parameters": int(model.count_params()),
        "training_seconds": round(seconds, 1),
        "license": base.manifest.get("license"),
        "reproduce": reproduce,
        "export_max_abs_diff": float(f"{diff:.3g}"),
    }


# ------------------------------------------------------------------ the command

def parse_args(argv):
    from training.musicnn_embeddings import EMBEDDING_CACHE

    p = argparse.ArgumentParser(prog="python -m training.own_genres", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="The recipe, the figures and the timing: docs/own-genres.md")
    p.add_argument("folder", type=Path, metavar="FOLDER", help="one sub-folder per label, audio files inside")
    p.add_argument("--out", type=Path, required=True, metavar="DEST", help="the model folder to write (must not exist)")
    p.add_argument("--artists", type=Path, metavar="CSV",
                   help="rows 'file,artist': group an artist's songs in cross-validation (default: each file alone)")
    p.add_argument("--name", help="the model's name (default: DEST's folder name)")
    p.add_argument("--cv-folds", type=int, default=5, help="grouped folds (fewer where a label has fewer groups)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--cache", type=Path, default=EMBEDDING_CACHE,
                   help="musicnn embedding cache (default .cache/musicnn_embeddings, shared with the GTZAN training)")
    p.add_argument("--skip-int8", action="store_true",
                   help="no int8 calibration: auto then runs the model in float32 (OpenVINO or TensorFlow)")
    p.add_argument("--force", action="store_true", help="replace DEST if it is a model folder")
    args = p.parse_args(argv)
    if args.cv_folds < 2:
        p.error(f"--cv-folds {args.cv_folds}: at least 2")
    return args


def run(argv: list[str]) -> dict:
    """Build the model; returns a summary. Raises :class:`Refusal` on input that cannot make one."""
    args = parse_args(argv)
    t0 = time.perf_counter()
    folder, dest = args.folder, args.out
    labels, songs, notes = find_songs(folder)
    artists, artist_notes = ({}, []) if args.artists is None else read_artists(args.artists, songs)
    notes += artist_notes
    groups_of = {s.rel: (f"artist:{artists[s.rel]}" if s.rel in artists else f"song:{s.rel}") for s in songs}
    check_counts(labels, songs, groups_of, args.artists is not None)
    check_destination(dest, folder, args.force)
    for note in notes:
        log.warning("%s", note)
    log.info("%d labels (%s), %d songs", len(labels), ", ".join(labels), len(songs))

    import keras

    keras.utils.set_random_seed(args.seed)
    from codeFeature.model_io import load_model, save_model
    from training.musicnn_heads import input_matrix
    from training.train_musicnn_head import build_model

    timings = {"start": round(time.perf_counter() - t0, 1)}
    base = load_model(BASE, precision="float32")
    t1 = time.perf_counter()
    embedded, skipped = embed_songs(base, songs, args.cache)
    timings["musicnn"] = round(time.perf_counter() - t1, 1)
    t1 = time.perf_counter()
    if skipped:
        unreadable = {s["file"] for s in skipped}
        songs = [s for s in songs if s.rel not in unreadable]
        check_counts(labels, songs, groups_of, args.artists is not None, skipped=len(skipped))
    x = input_matrix(SPEC, {"msd": embedded})
    y, tracks = embedded.y, embedded.tracks
    groups = np.array([groups_of[t] for t in tracks])
    tags = embedded.layers["taggram"]
    folds = n_folds(y, groups, args.cv_folds)
    groups_by = (f"artist (--artists {args.artists}; {sum(1 for s in songs if s.rel in artists)} of {len(songs)} "
                 "songs named, the rest each their own group)") if args.artists else "song (each file its own group)"

    log.info("nested grouped %d-fold cross-validation of the head choice (%d heads)", folds, len(GRID))
    cv, held_out = nested_cv(x, y, tracks, groups, labels, folds, args.seed)
    rule, firing_ = not_sure_rule(held_out, tags, y, tracks)
    cfg, scores_, known, table = select(x, y, tracks, groups, labels, folds, args.seed)
    head = fit(cfg, x, y, tracks, labels, args.seed)
    head.temperature = temperature(scores_, y, tracks, known)
    seen = _headline(song_figures(head.probabilities(x), y, tracks, labels))
    log.info("chosen on every song: %s, temperature %.3f", head.describe(), head.temperature)
    timings["heads"] = round(time.perf_counter() - t1, 1)
    t1 = time.perf_counter()

    name = args.name or dest.name
    model = build_model(base, SPEC, head, name)
    diff = export_check(model, base, head, embedded, songs)
    reproduce = reproduce_command(argv)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.building-", dir=dest.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's folder is private; the model folder is an ordinary one
        manifest = manifest_for(name=name, labels=labels, base=base, head=head, model=model, cv=cv, rule=rule,
                                firing_=firing_, selection=table, seen=seen, folder=folder, songs=songs,
                                skipped=skipped, notes=notes, groups_by=groups_by, folds=folds, seed=args.seed,
                                reproduce=reproduce, seconds=time.perf_counter() - t0, diff=diff)
        save_model(model, tmp, manifest)
        timings["export"] = round(time.perf_counter() - t1, 1)
        if not args.skip_int8:
            from codeFeature import engines

            t1 = time.perf_counter()
            int8_step(tmp, head, embedded, songs, labels, reproduce, base.config,
                      check=engines.openvino_available())
            timings["int8"] = round(time.perf_counter() - t1, 1)
        manifest = read_json(tmp / "manifest.json")
        manifest["training_seconds"] = round(time.perf_counter() - t0, 1)
        manifest["training_seconds_by_step"] = {**timings, "note": "wall-clock; musicnn: decoding and the network "
                                                "for songs not yet in the cache"}
        write_json(tmp / "manifest.json", manifest)
        check_destination(dest, folder, args.force)  # nothing appeared there meanwhile
        install(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"folder": str(dest), "labels": labels, "songs": len(songs), "skipped": skipped, "notes": notes,
            "cv": cv, "decision": rule, "not_sure": firing_, "head": head.describe(),
            "int8": (manifest.get("int8_calibration") or {}).get("valid_check", {}).get("passed"),
            "seconds": round(time.perf_counter() - t0, 1), "timings": timings}


def report(summary: dict) -> str:
    cv = summary["cv"]
    lines = [f"model written to {summary['folder']}: {len(summary['labels'])} labels "
             f"({', '.join(summary['labels'])}), {summary['songs']} songs, head {summary['head']}, "
             f"{summary['seconds']:.0f} s",
             f"grouped {cv['folds']}-fold cross-validation (nested): {cv['song_accuracy']:.1%} of {cv['songs']} "
             f"songs right (95 % interval {cv['song_accuracy_interval_95'][0]:.0%}-"
             f"{cv['song_accuracy_interval_95'][1]:.0%}), balanced {cv['balanced_accuracy']:.1%}",
             "per label: " + ", ".join(f"{k} {v['right']}/{v['songs']}" for k, v in cv["per_label"].items())]
    f = summary["not_sure"]
    rule = summary["decision"]
    lines.append(f"not sure when confidence < {rule['min_confidence']:g} or margin < {rule['min_margin']:g}: "
                 f"{f['flagged']} of {f['tracks']} held-out songs ({f['wrong_flagged']} of {f['wrong']} wrong), "
                 f"{f['accuracy_when_sure']:.1%} right when sure")
    if summary["int8"] is not None:
        lines.append("int8 path: " + ("kept (auto runs it)" if summary["int8"] else "misses the check (auto stays float32)"))
    if summary["skipped"]:
        lines.append(f"skipped {len(summary['skipped'])} unreadable files:")
        lines += [f"  {s['file']}: {s['reason']}" for s in summary["skipped"]]
    lines.append(f"use it: python -m codeFeature --model {shlex.quote(summary['folder'])} SONG")
    return "\n".join(lines)


def main(argv=None) -> int:
    from codeFeature.native_stderr import filtered_native_stderr

    argv = list(sys.argv[1:] if argv is None else argv)
    # a plain kill (SIGTERM) unwinds like Ctrl-C, so the temporary folder is removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    with filtered_native_stderr():
        try:
            summary = run(argv)
        except Refusal as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print(report(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
