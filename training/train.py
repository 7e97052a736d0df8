"""Train one genre model on GTZAN-layout audio, select it on the valid split, and save it.

Splits are by track (the fault-filtered lists by default), so no segment of a
valid track is ever seen in training. The model folder (JSON + weights +
manifest + report) goes to ``models/<name>/``; curves and the confusion matrix
to ``reports/<name>/``.

Examples
--------
Rebuild the shipped CNN from the shared GTZAN material::

    python -m training.train --model cnn_mfcc_small --augment

A smoke run on a few synthetic tracks (for CI)::

    python -m training.train --model cnn_mfcc --quick --out /tmp/m
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from codeFeature.config import GENRES
from training.data import DEFAULT_CACHE, REPO_ROOT, SHARED_GTZAN, build_segment_set, file_sha256, find_audio, read_split

log = logging.getLogger("training.train")


def parse_args(argv=None) -> argparse.Namespace:
    from training.builders import SPECS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, choices=sorted(SPECS), help="which architecture to train")
    parser.add_argument("--data", nargs="+", type=Path,
                        default=[SHARED_GTZAN / "genres", SHARED_GTZAN / "excerpts"],
                        help="GTZAN-layout audio folders (default: the shared full tracks and excerpts)")
    parser.add_argument("--train-split", type=Path, default=SHARED_GTZAN / "splits" / "train_filtered.txt")
    parser.add_argument("--valid-split", type=Path, default=SHARED_GTZAN / "splits" / "valid_filtered.txt")
    parser.add_argument("--out", type=Path, help="model folder to write (default: models/<model>)")
    parser.add_argument("--reports", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=30, help="early-stopping patience (epochs)")
    parser.add_argument("--monitor", default="val_accuracy", choices=["val_accuracy", "val_loss"],
                        help="what early stopping watches on the valid split; the best epoch's weights are kept")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--augment", action="store_true",
                        help="add two pitch-shifted, time-stretched, noisy copies of each training segment")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="feature cache folder")
    parser.add_argument("--quick", action="store_true",
                        help="train for 2 epochs on a few synthetic tracks: a smoke test, not a model")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    import keras

    keras.utils.set_random_seed(args.seed)
    from training.augment import pitch_time_noise
    from training.builders import SPECS, build
    from training.metrics import plot_confusion, scores
    from codeFeature.model_io import save_model

    spec = SPECS[args.model]
    config = spec.config
    if args.quick:
        from training.synthetic import make_synthetic_gtzan

        quick_dir = Path(args.cache) / "quick-data"
        args.data, args.train_split, args.valid_split = make_synthetic_gtzan(quick_dir)
        args.epochs, args.augment = 2, False
    tracks = find_audio(args.data)
    train_ids, valid_ids = read_split(args.train_split), read_split(args.valid_split)
    overlap = set(train_ids) & set(valid_ids)
    if overlap:
        raise SystemExit(f"the splits share {len(overlap)} tracks, e.g. {sorted(overlap)[:3]}")
    t0 = time.perf_counter()
    augment = (lambda segs, rng: pitch_time_noise(segs, rng, sample_rate=config.sample_rate)) if args.augment else None
    train = build_segment_set(tracks, train_ids, config, cache_dir=args.cache, augment=augment,
                              extra_key="pitch_time_noise-v1")
    valid = build_segment_set(tracks, valid_ids, config, cache_dir=args.cache)
    extract_s = time.perf_counter() - t0
    log.info("train: %d segments of %d tracks; valid: %d segments of %d tracks (features in %.0f s)",
             len(train.y), train.n_tracks, len(valid.y), valid.n_tracks, extract_s)

    model = build(args.model, normalizer_data=train.x)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    stop = keras.callbacks.EarlyStopping(monitor=args.monitor, patience=args.patience, restore_best_weights=True,
                                         mode="max" if args.monitor.endswith("accuracy") else "min")
    t1 = time.perf_counter()
    history = model.fit(train.x, train.y, validation_data=(valid.x, valid.y), epochs=args.epochs,
                        batch_size=args.batch_size, callbacks=[stop], verbose=2, shuffle=True)
    train_s = time.perf_counter() - t1

    valid_scores = scores(model.predict(valid.x, verbose=0), valid.y, valid.tracks, GENRES)
    # the train figure scores original segments only, not augmented copies
    train_plain = build_segment_set(tracks, train_ids, config, cache_dir=args.cache) if args.augment else train
    train_scores = scores(model.predict(train_plain.x, verbose=0), train_plain.y, train_plain.tracks, GENRES)
    watched = np.asarray(history.history[args.monitor])
    best_epoch = int(np.argmax(watched) if args.monitor.endswith("accuracy") else np.argmin(watched)) + 1

    out = args.out or REPO_ROOT / "models" / args.model
    command = "python -m training.train --model " + args.model + (" --augment" if args.augment else "")
    manifest = {
        "name": out.name,
        "task": "genre",
        "description": spec.description,
        "labels": list(GENRES),
        "feature_config": config.to_dict(),
        "normalization": "in the model: a Normalization layer adapted on the training segments",
        "seed": args.seed,
        "training": {
            "data": [str(_display_path(p)) for p in args.data],
            "splits": {name: {"file": str(_display_path(p)), "sha256": file_sha256(p)}
                       for name, p in (("train", args.train_split), ("valid", args.valid_split))},
            "train_tracks": train.n_tracks, "train_segments": int(len(train.y)),
            "augmentation": "pitch shift, time stretch and noise, 2 copies per training segment" if args.augment else None,
            "epochs_run": len(history.history["loss"]), "best_epoch": best_epoch,
            "skipped_files": train.skipped + valid.skipped,
            "quick": bool(args.quick),
        },
        "metrics": {
            "selection": f"early stopping on {args.monitor} (valid segments); the valid figures are the selection set's",
            "train": _headline(train_scores), "valid": _headline(valid_scores),
        },
        "parameters": int(model.count_params()),
        "training_seconds": round(train_s, 1),
        "reproduce": command,
    }
    save_model(model, out, manifest)
    report = {"model": out.name, "data": manifest["training"]["data"], **valid_scores,
              "train": train_scores, "history": {k: [round(float(v), 5) for v in vals]
                                                 for k, vals in history.history.items()}}
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    report_dir = args.reports / out.name
    report_dir.mkdir(parents=True, exist_ok=True)
    plot_confusion(valid_scores["confusion"], GENRES, report_dir / "confusion_valid.png",
                   f"{out.name}: valid tracks (n={valid_scores['tracks']})")
    _write_history_csv(history.history, report_dir / "history.csv")
    print(json.dumps({"model": out.name, "valid": _headline(valid_scores), "train": _headline(train_scores),
                      "epochs": len(history.history["loss"]), "seconds": round(extract_s + train_s, 1)}))
    return 0


def _headline(s: dict) -> dict:
    return {k: s[k] for k in ("track_accuracy", "segment_accuracy", "tracks", "segments")}


def _display_path(path: Path) -> Path:
    path = Path(path).resolve()
    for base, shown in ((REPO_ROOT, Path(".")), (REPO_ROOT.parent, Path(".."))):
        try:
            return shown / path.relative_to(base)
        except ValueError:
            continue
    return path


def _write_history_csv(history: dict, path: Path) -> None:
    keys = list(history)
    rows = ["epoch," + ",".join(keys)]
    for i in range(len(history[keys[0]])):
        rows.append(f"{i + 1}," + ",".join(f"{history[k][i]:.5f}" for k in keys))
    path.write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    sys.exit(main())
