"""Evaluate a model folder on GTZAN-layout audio, a Kaggle feature CSV or a spectrogram image folder.

Track accuracy is the majority vote over a track's segments (ties to the higher
mean probability, as the app does), segment accuracy scores every segment; both
come with the number of tracks, per-genre precision / recall / F1 and the
confusion matrix (rows = true genre). Audio is cut and featurised exactly as the
app and the CLI serve it (``codeFeature.features.segment_features``).

Examples
--------
The valid figures of the shipped default model, on the GTZAN found by ``--gtzan DIR`` or
``GTZAN_DIR`` (the Kaggle or marsyas layout) and the shipped ``training/splits/valid_filtered.txt``::

    python -m training.evaluate --model musicnn_genre --gtzan ~/gtzan --json

or on explicit folders and a split list::

    python -m training.evaluate --model musicnn_genre \
        --data ../shared/data/gtzan/genres ../shared/data/gtzan/excerpts \
        --split training/splits/valid_filtered.txt --json

Reports go to ``runs/<model>/reports/`` (gitignored); ``--reports reports`` writes the tracked ones.

An ensemble (the mean of the models' probabilities; models may read different features)::

    python -m training.evaluate --model musicnn_genre cnn_mfcc_small \
        --data ../shared/data/gtzan/genres ../shared/data/gtzan/excerpts \
        --split ../shared/data/gtzan/splits/valid_filtered.txt

The feature ANN on the Kaggle table::

    python -m training.evaluate --model ann_features --data ../shared/data/gtzan/features_30_sec.csv \
        --split ../shared/data/gtzan/splits/valid_filtered.txt
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from codeFeature.runtime import prepare_process  # noqa: E402  (before TensorFlow and librosa)

prepare_process()

import numpy as np

from codeFeature.model_io import PRECISIONS
from training.data import (DEFAULT_CACHE, REPO_ROOT, RUNS_DIR, VALID_SPLIT, data_kind, display_path, file_sha256,
                           load_set, read_split)
from training.datasets import add_gtzan_argument, exit_on_missing_data, find_gtzan, kind_for_config

log = logging.getLogger("training.evaluate")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, nargs="+",
                        help="a shipped model's name or a model folder; several make an ensemble (mean of "
                             "their probabilities)")
    add_gtzan_argument(parser)
    parser.add_argument("--data", nargs="+", type=Path,
                        help="audio folders, one Kaggle-format CSV, or image folders (default: the part of the "
                             "--gtzan dataset the model reads)")
    parser.add_argument("--split", type=Path, help="split list (lines like blues/blues.00029.wav); default: "
                        "training/splits/valid_filtered.txt on the --gtzan dataset, all tracks with --data")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object on stdout")
    parser.add_argument("--reports", type=Path, default=None,
                        help="reports go to REPORTS/<model>/ (JSON and a confusion-matrix PNG); default "
                             "runs/<model>/reports/; --reports reports writes the tracked ones")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="feature cache folder")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--precision", choices=PRECISIONS, default="float32",
                        help="compute precision of the layers a manifest lists as bfloat16_layers (musicnn's); "
                             "float32 by default, so that figures do not depend on the CPU; auto is what the "
                             "app and the CLI use")
    return parser.parse_args(argv)


def predict_probabilities(keras_model, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """Genre probabilities of model inputs ``x``, shape (n, n_labels); extra outputs are ignored."""
    import keras

    parts = []
    for lo in range(0, len(x), batch):
        out = keras_model(x[lo:lo + batch], training=False)
        if isinstance(out, (list, tuple)):
            out = out[0]
        parts.append(keras.ops.convert_to_numpy(out))
    return np.concatenate(parts).astype(np.float64)


def evaluate(model, data, *, split=None, cache_dir=DEFAULT_CACHE) -> dict:
    """Scores of a loaded model on ``data`` (see :func:`training.metrics.scores`), with what was read."""
    from training.metrics import scores, track_votes

    track_ids = read_split(split) if split is not None else None
    dataset = load_set(data, track_ids, model.config, cache_dir=cache_dir)
    # through the serving path (LoadedModel.forward): the engine and precision the app and the CLI use
    probs = model.forward(dataset.x)[0].astype(np.float64)
    result = scores(probs, dataset.y, dataset.tracks, model.labels)
    _, voted, ids = track_votes(probs, dataset.y, dataset.tracks)
    result["predictions"] = {t: model.labels[p] for t, p in zip(ids, voted)}
    result["ece"] = calibration_error(probs, dataset.y, dataset.tracks)
    missing = [] if track_ids is None else sorted(set(track_ids) - set(dataset.tracks.tolist()))
    return {"model": model.name, "data": [str(display_path(p)) for p in data], "data_kind": data_kind(data),
            "split": None if split is None else {"file": str(display_path(split)), "sha256": file_sha256(split)},
            **result, "tracks_without_data": len(missing), "skipped_files": dataset.skipped,
            "note": seen_note(model.manifest, split)}


def calibration_error(probs: np.ndarray, y: np.ndarray, tracks: np.ndarray) -> dict:
    """ECE of the probabilities at the track level (the vote's winner and its mean probability) and per segment."""
    from training.calibration import calibration_figures

    figures = calibration_figures(probs, y, tracks)
    return {"track": figures["track"]["ece"], "segment": figures["segment"]["ece"]}


def seen_note(manifest: dict, split) -> str | None:
    """A warning when the model was fitted on the split it is scored on (a head refit on train + valid)."""
    training = manifest.get("training", {})
    fitted = training.get("fit_on", "train").split("+")
    seen = {training.get("splits", {}).get(name, {}).get("sha256") for name in fitted} - {None}
    if split is not None and file_sha256(split) in seen:
        return (f"this model was fitted on {' + '.join(fitted)}: its score here is not an estimate of accuracy on new music; "
                "see its manifest's metrics.valid_train_only and cv_artist_5fold")
    return None


def evaluate_ensemble(models, data, *, split=None, cache_dir=DEFAULT_CACHE) -> dict:
    """Scores of the mean of several models' probabilities.

    When every model cuts the data into the same segments, segments are averaged and voted as
    usual. Otherwise (e.g. 3 s and 30 s windows) each model's track probability is the mean over
    its segments, the ensemble averages those, and ``segment_accuracy`` is ``None``.
    """
    from training.metrics import scores

    labels = models[0].labels
    if any(m.labels != labels for m in models):
        raise ValueError("the ensemble's models disagree on their labels: " + ", ".join(m.name for m in models))
    track_ids = read_split(split) if split is not None else None
    sets, probs = [], []
    for model in models:
        dataset = load_set(data, track_ids, model.config, cache_dir=cache_dir)
        sets.append(dataset)
        probs.append(model.forward(dataset.x)[0].astype(np.float64))
    if all(np.array_equal(s.tracks, sets[0].tracks) for s in sets):
        result = scores(np.mean(probs, axis=0), sets[0].y, sets[0].tracks, labels)
    else:
        ids = sorted(set.intersection(*[set(s.tracks.tolist()) for s in sets]))
        per_track = np.mean([[p[s.tracks == t].mean(axis=0) for t in ids] for s, p in zip(sets, probs)], axis=0)
        truth = np.array([labels.index(t.split(".")[0]) for t in ids])
        result = scores(per_track, truth, np.array(ids), labels)
        result["segment_accuracy"], result["segments"] = None, None
    name = "ensemble_" + "+".join(m.name for m in models)
    return {"model": name, "members": [m.name for m in models], "data": [str(display_path(p)) for p in data],
            "data_kind": data_kind(data),
            "split": None if split is None else {"file": str(display_path(split)), "sha256": file_sha256(split)},
            **result, "skipped_files": [f for s in sets for f in s.skipped]}


@exit_on_missing_data
def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.json else logging.INFO, format="%(levelname)s %(message)s",
                        stream=sys.stderr)
    if args.data is None:
        find_gtzan(args.gtzan)  # no dataset: say so now, before TensorFlow takes seconds to load
    import keras

    keras.utils.set_random_seed(args.seed)
    from codeFeature.errors import GenreError
    from codeFeature.model_io import load_model
    from training.metrics import plot_confusion

    try:
        models = [load_model(str(m), precision=args.precision) for m in args.model]
        if args.data is None:  # the dataset's part the (first) model reads, on the shipped valid split
            args.data = find_gtzan(args.gtzan).data_for(kind_for_config(models[0].config))
            if args.split is None:
                args.split = VALID_SPLIT
        if len(models) == 1:
            result = evaluate(models[0], args.data, split=args.split, cache_dir=args.cache)
        else:
            result = evaluate_ensemble(models, args.data, split=args.split, cache_dir=args.cache)
    except (GenreError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    name, labels = result["model"], models[0].labels
    precisions = sorted({m.precision for m in models})
    result["precision"] = precisions[0] if len(precisions) == 1 else precisions
    result["inference_path"] = sorted({m.inference_path for m in models})
    tag = (args.split.stem if args.split else "all") + "_" + result["data_kind"]
    for kind in ("bfloat16", "int8"):
        if kind in precisions:
            tag += "_" + kind
    report_dir = args.reports / name if args.reports is not None else RUNS_DIR / name / "reports"
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / f"evaluate_{tag}.json").write_text(json.dumps(result, indent=1) + "\n")
    plot_confusion(result["confusion"], labels, report_dir / f"confusion_{tag}.png",
                   f"{name}: {tag} (n={result['tracks']} tracks)")
    if args.json:
        print(json.dumps(result))
    else:
        segment = ("n/a (members cut different segments)" if result["segment_accuracy"] is None
                   else f"{result['segment_accuracy']:.4f} ({result['segments']} segments)")
        print(f"{name} on {', '.join(result['data'])}: track accuracy {result['track_accuracy']:.4f} "
              f"({result['tracks']} tracks), segment accuracy {segment}; "
              f"{len(result['skipped_files'])} files skipped")
        if result.get("ece"):
            print(f"expected calibration error: {result['ece']['track']:.3f} over tracks, "
                  f"{result['ece']['segment']:.3f} over segments")
        if result.get("note"):
            print(f"note: {result['note']}")
        print(f"{'genre':<10} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>7}")
        for genre, g in result["per_genre"].items():
            print(f"{genre:<10} {g['precision']:>9.3f} {g['recall']:>7.3f} {g['f1']:>6.3f} {g['support']:>7d}")
        print(f"reports: {display_path(report_dir)}/evaluate_{tag}.json, confusion_{tag}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
