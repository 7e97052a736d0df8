"""Artist-free k-fold cross-validation of one model: no artist (so no track) is on both sides of a fold.

GTZAN holds several tracks of many artists; a track-level split still lets an artist's other songs sit
on both sides, which flatters every model. Here the folds come from scikit-learn's
``StratifiedGroupKFold`` (groups = artist, stratified by genre, seeded). For each fold, the training
part is split again the same way into an inner train / valid pair (the valid part drives early
stopping, as in ``training.train``); the model is trained by :func:`training.train.run`, the same code
path as ``python -m training.train``, and the held-out fold, never seen in training or selection, is
scored with :func:`training.metrics.scores`.

The artist file is a CSV of ``track,artist`` (a header line is allowed; tracks like ``blues.00029`` or
``blues/blues.00029.wav``). Tracks of the data without an artist are left out and counted.

Examples
--------
::

    python -m training.kfold --model cnn_mfcc_small --artists ../shared/data/gtzan/artists.csv --folds 5
    python -m training.kfold --model ann_features --artists artists.csv --quick
    python -m training.kfold --model musicnn_genre --artists training/splits/artists_train_valid.txt --folds 5

``--model musicnn_genre`` (or ``musicnn_head``) cross-validates the musicnn genre head's recipe (the
head options of ``training.train_musicnn_head``: ``--head``, ``--inputs``, ``--C``, ...) on cached
embeddings over the train + valid tracks, each fold's head fitted and calibrated on the other folds.

Every other option of ``training.train`` (``--data``, ``--epochs``, ``--augment``, ``--seed``, ``--cache``,
``--reports``, ...) is accepted and means the same; ``--train-split``, ``--valid-split`` and ``--out`` are
not (the folds are the splits; the fold models are temporary). The data is found as by
``training.train`` (``--gtzan DIR`` / ``GTZAN_DIR``, or ``--data``). The result goes to
``runs/<model>/reports/kfold.json`` and the fold lists to ``runs/<model>/reports/kfold/`` (``--reports
reports`` writes the tracked ``reports/<model>/``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np

from codeFeature.config import GENRES
from training.data import RUNS_DIR, display_path
from training.artists import artist_folds, read_artists  # noqa: F401  (also this module's API)
from training.datasets import exit_on_missing_data, find_gtzan

log = logging.getLogger("training.kfold")

#: --model names cross-validated as genre heads on the frozen musicnn trunk (options of training.train_musicnn_head)
MUSICNN_HEAD_MODELS = ("musicnn_genre", "musicnn_genre_lr", "musicnn_head")
#: tracks per genre of the generated data of a --quick run (enough for a few artist-free folds)
QUICK_TRACKS_PER_GENRE = 6


def inner_split(tracks: list[str], artists: dict[str, str], *, folds: int, seed: int) -> tuple[list[str], list[str]]:
    """An artist-free (inner train, inner valid) split of a fold's training part, about 1/``folds`` for valid."""
    n = min(max(folds, 2), len(set(artists[t] for t in tracks)))
    if n < 2:
        raise ValueError("a fold's training part has a single artist: nothing to hold out for early stopping")
    return artist_folds(tracks, artists, folds=n, seed=seed)[0]


def _write_list(path: Path, tracks: list[str], note: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# {note}\n" + "".join(f"{t.split('.')[0]}/{t}.wav\n" for t in sorted(tracks)))
    return path


def _summary(values: list[float | None]) -> dict:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None}
    return {"mean": round(float(np.mean(vals)), 4), "std": round(float(np.std(vals)), 4)}


def parse_args(argv=None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Other options are passed to training.train (see its --help).",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="which architecture (a training.train --model name)")
    parser.add_argument("--artists", type=Path, help="CSV of track,artist (required)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--tracks", nargs="+", type=Path,
                        help="split lists whose union is the pool of tracks (default: every track of the data)")
    return parser.parse_known_args(argv)


@exit_on_missing_data
def main(argv=None) -> int:
    own, rest = parse_args(argv)
    if own.artists is None:
        print("error: artist-free k-fold needs --artists FILE, a CSV of track,artist (e.g. blues.00029,Muddy "
              "Waters); without artists the folds could not keep an artist's songs on one side. For a plain "
              "track-level split use python -m training.train", file=sys.stderr)
        return 2
    if own.model in MUSICNN_HEAD_MODELS:  # a head on cached musicnn embeddings: fitted by scikit-learn, not train.run
        from training.train_musicnn_head import kfold_main

        return kfold_main(own, rest)
    for flag in ("--train-split", "--valid-split", "--out"):
        if any(a == flag or a.startswith(flag + "=") for a in rest):
            print(f"error: {flag} is not an option of k-fold: the folds are the splits", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from training import train as training
    from training.builders import SPECS
    from training.data import list_tracks, load_set, read_split
    from training.evaluate import predict_probabilities
    from training.metrics import scores

    args = training.parse_args(["--model", own.model, *rest])
    spec = SPECS[args.model]
    # with --extras the report is the extras model's (reports/cnn_mfcc+contrast/), never the plain model's
    name = training.model_name(args.model, training.config_with_extras(args.model, args.extras).extras)
    if args.quick and not (args.data is None and args.gtzan is not None):  # --gtzan: a smoke run on that data
        if args.data is None:
            args.data = training.quick_data(spec, Path(args.cache) / "quick-data" / "kfold",
                                            tracks_per_genre=QUICK_TRACKS_PER_GENRE)[0]
        else:  # as training.train: --quick with --data smoke-tests on generated audio
            from training.synthetic import make_synthetic_gtzan

            args.data = make_synthetic_gtzan(Path(args.cache) / "quick-data" / "kfold",
                                             tracks_per_genre=QUICK_TRACKS_PER_GENRE)[0]
    data = list(args.data or find_gtzan(args.gtzan).data_for(spec.data))
    args.data = data
    try:
        artists = read_artists(own.artists)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pool = list_tracks(data)
    if own.tracks:
        wanted = {t for path in own.tracks for t in read_split(path)}
        pool = [t for t in pool if t in wanted]
    missing = sorted(t for t in pool if t not in artists)
    if missing:
        log.warning("%d tracks have no artist in %s and are left out, e.g. %s", len(missing), own.artists,
                    missing[:3])
    pool = [t for t in pool if t in artists]
    try:
        pairs = artist_folds(pool, artists, folds=own.folds, seed=args.seed)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    report_dir = args.reports / name if args.reports is not None else RUNS_DIR / name / "reports"
    list_dir = report_dir / "kfold"
    rows = []
    with tempfile.TemporaryDirectory(prefix="kfold-") as tmp:
        for k, (train_part, test_ids) in enumerate(pairs, start=1):
            inner_train, inner_valid = inner_split(train_part, artists, folds=own.folds, seed=args.seed + k)
            note = f"artist-free {own.folds}-fold (seed={args.seed}), fold {k}"
            fold_args = training.parse_args(["--model", own.model, *rest])
            fold_args.data = data
            fold_args.train_split = _write_list(list_dir / f"fold{k}_train.txt", inner_train, note + ": inner train")
            fold_args.valid_split = _write_list(list_dir / f"fold{k}_valid.txt", inner_valid,
                                                note + ": inner valid (early stopping)")
            _write_list(list_dir / f"fold{k}_test.txt", test_ids, note + ": held out")
            fold_args.out = Path(tmp) / f"fold{k}" / name
            fold_args.reports = Path(tmp) / f"fold{k}" / "reports"
            log.info("fold %d/%d: %d tracks to train (%d of them for early stopping), %d held out",
                     k, own.folds, len(train_part), len(inner_valid), len(test_ids))
            trained = training.run(fold_args, make_quick_data=False)
            if trained is None:
                return 2
            test = load_set(data, test_ids, trained.config, cache_dir=args.cache)
            held = scores(predict_probabilities(trained.model, test.x), test.y, test.tracks, GENRES)
            rows.append({
                "fold": k,
                "train_tracks": len(inner_train), "valid_tracks": len(inner_valid),
                "test_artists": len({artists[t] for t in test_ids}),
                "train_artists": len({artists[t] for t in train_part}),
                "track_accuracy": held["track_accuracy"], "segment_accuracy": held["segment_accuracy"],
                "tracks": held["tracks"], "segments": held["segments"],
                "valid": training._headline(trained.valid_scores),
                "epochs_run": trained.manifest["training"]["epochs_run"],
                "best_epoch": trained.manifest["training"]["best_epoch"],
                "skipped_files": test.skipped,
                "confusion": held["confusion"],
            })
    result = {
        "model": name,
        "protocol": f"artist-free stratified {own.folds}-fold (StratifiedGroupKFold, groups = artist, seed "
                    f"{args.seed}); early stopping on an artist-free inner valid part of each fold's training "
                    "part; scores on the held-out fold; std over folds (ddof 0)",
        "data": [str(display_path(p)) for p in data],
        "artists_file": str(display_path(own.artists)),
        "folds": own.folds,
        "seed": args.seed,
        "quick": bool(args.quick),
        "tracks": sum(r["tracks"] for r in rows),
        "segments": sum(r["segments"] for r in rows),
        "artists": len({artists[t] for t in pool}),
        "tracks_without_artist": len(missing),
        "track_accuracy": _summary([r["track_accuracy"] for r in rows]),
        "segment_accuracy": _summary([r["segment_accuracy"] for r in rows]),
        "genres": list(GENRES),
        "per_fold": rows,
        "reproduce": " ".join(["python -m training.kfold --model", args.model, "--artists",
                               str(display_path(own.artists)), "--folds", str(own.folds),
                               *(["--tracks", *[str(display_path(p)) for p in own.tracks]] if own.tracks else []),
                               *rest]),
    }
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "kfold.json").write_text(json.dumps(result, indent=1) + "\n")
    for r in rows:
        print(f"fold {r['fold']}: track accuracy {r['track_accuracy']:.3f} (n={r['tracks']}), "
              f"segment accuracy {r['segment_accuracy']:.3f} (n={r['segments']})")
    t, s = result["track_accuracy"], result["segment_accuracy"]
    print(json.dumps({"model": name, "folds": own.folds, "tracks": result["tracks"],
                      "track_accuracy": t, "segment_accuracy": s, "report": str(display_path(report_dir / "kfold.json"))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
