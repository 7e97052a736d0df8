"""Train one genre model on GTZAN-layout audio, select it on the valid split, and save it.

Splits are by track (the fault-filtered lists shipped in ``training/splits/`` by
default), so no segment of a valid track is ever seen in training. The data is
found by ``--gtzan DIR`` / ``GTZAN_DIR`` (:mod:`training.datasets`: the Kaggle
or marsyas layout) unless ``--data`` names it. The model folder (JSON + weights +
manifest + report) goes to ``runs/<name>/`` (gitignored), curves and the
confusion matrix to ``runs/<name>/reports/``; ``python -m training.promote
runs/<name>`` installs it as a shipped model.

Examples
--------
Rebuild the shipped CNN from the Kaggle download, then ship it::

    python -m training.train --model cnn_mfcc_small --augment --gtzan ~/gtzan
    python -m training.promote runs/cnn_mfcc_small

The feature ANN on the Kaggle table (or on audio: ``--data .../genres_original``)::

    python -m training.train --model ann_features

The image CNN, and a transfer-learning model (ImageNet weights need the internet once;
``--weights none`` trains the same architecture from scratch)::

    python -m training.train --model cnn_spectrogram
    python -m training.train --model tl_mobilenetv2 --weights none

A smoke run on a few synthetic tracks, rows or images (for CI)::

    python -m training.train --model cnn_mfcc --quick      # writes runs/cnn_mfcc-quick/

An MFCC model with extra per-frame features (spectral contrast, tonnetz, harmonic / percussive
separation), written to ``runs/cnn_mfcc+contrast+tonnetz`` so that it never overwrites the plain model::

    python -m training.train --model cnn_mfcc --augment --extras contrast,tonnetz

With a frozen transfer-learning base, the base's pooled embeddings of every image are computed
once and cached; the head trains on the cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

from codeFeature.runtime import prepare_process  # noqa: E402  (before TensorFlow and librosa)

prepare_process()

import numpy as np

from codeFeature.config import GENRES
from codeFeature.feature_kinds import feature_kind
from training.data import (DEFAULT_CACHE, REPO_ROOT, RUNS_DIR, SHARED_GTZAN, TRAIN_SPLIT, VALID_SPLIT, data_kind,
                           display_path, file_sha256, load_set, read_split)
from training.datasets import add_gtzan_argument, exit_on_missing_data, find_gtzan

log = logging.getLogger("training.train")


#: The shared material's paths for each kind of input; a run on them records no ``--data`` in its command.
DEFAULT_DATA = {
    "audio": [SHARED_GTZAN / "genres", SHARED_GTZAN / "excerpts"],
    "csv30": [SHARED_GTZAN / "features_30_sec.csv"],
    "csv3": [SHARED_GTZAN / "features_3_sec.csv"],
    "images": [SHARED_GTZAN / "spectrograms"],
}


def parse_args(argv=None) -> argparse.Namespace:
    from training.builders import SPECS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, choices=sorted(SPECS), help="which architecture to train")
    add_gtzan_argument(parser)
    parser.add_argument("--data", nargs="+", type=Path,
                        help="GTZAN-layout audio folders, one Kaggle-format CSV, or image folders (default: the "
                             "shared data the model was designed for: audio, features_30_sec.csv or spectrograms/)")
    parser.add_argument("--train-split", type=Path, help="split list (lines like blues/blues.00029.wav, which also "
                        "match .au files); default: training/splits/train_filtered.txt with GTZAN data, else a "
                        "seeded stratified split by track saved to the run's reports/split/")
    parser.add_argument("--valid-split", type=Path, help="as --train-split, for selection and the valid figures")
    parser.add_argument("--extras", type=_extras_arg, default=(), metavar="NAMES",
                        help="MFCC models: extra per-frame features beside the MFCC, comma-separated: contrast "
                             "(spectral contrast, 7 rows), tonnetz (6 rows), hpss (MFCC of the harmonic and of the "
                             "percussive part instead of one MFCC); the model is named e.g. cnn_mfcc+contrast+tonnetz")
    parser.add_argument("--out", type=Path, help="model folder to write (default: runs/<model>, or "
                        "runs/<model>+<extra>+... with --extras, runs/<model>-quick with --quick; "
                        "python -m training.promote RUN_DIR ships it)")
    parser.add_argument("--reports", type=Path, default=None,
                        help="reports go to REPORTS/<name>/ (default: the model folder's reports/)")
    parser.add_argument("--epochs", type=int, help="maximum epochs (default: the model's, e.g. 600 for ann_features)")
    parser.add_argument("--patience", type=int, help="early-stopping patience in epochs (default: the model's)")
    parser.add_argument("--monitor", default="val_accuracy", choices=["val_accuracy", "val_loss"],
                        help="what early stopping watches on the valid split; the best epoch's weights are kept")
    parser.add_argument("--batch-size", type=int, help="default: the model's (128 for the feature ANNs, else 32)")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--augment", action="store_true",
                        help="audio only: add two pitch-shifted, time-stretched, noisy copies of each training segment")
    parser.add_argument("--weights", default="imagenet", choices=["imagenet", "none"],
                        help="tl_* models: ImageNet weights (downloaded by Keras) or none (train from scratch)")
    parser.add_argument("--fine-tune", type=int, default=0, metavar="EPOCHS",
                        help="tl_* models with ImageNet weights: after the head, unfreeze the base for EPOCHS "
                             "at learning rate / 10")
    parser.add_argument("--image-size", type=int, help="image models: side of the input (default 224; 299 for InceptionV3)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="feature cache folder")
    parser.add_argument("--quick", action="store_true",
                        help="train for 2 epochs on tiny synthetic data of the model's kind (rows, images, or audio "
                             "when --data is given or the model reads audio): a smoke test, not a model; with "
                             "--gtzan, 2 epochs on that dataset and the shipped splits (checks the download)")
    return parser.parse_args(argv)


def _extras_arg(text: str) -> tuple[str, ...]:
    """``--extras contrast,tonnetz`` -> ("contrast", "tonnetz"); names are checked by FeatureConfig."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def model_name(model: str, extras=()) -> str:
    """The folder and report name of ``model`` trained with ``extras``: ``cnn_mfcc+contrast+tonnetz``."""
    return "+".join([model, *extras])


def config_with_extras(model: str, extras=()):
    """``model``'s feature config with ``extras`` (checked, in canonical order); exits with the reason if unusable."""
    from codeFeature.errors import ConfigError
    from training.builders import SPECS

    config = SPECS[model].config
    if not extras:
        return config
    try:
        return dataclasses.replace(config, extras=tuple(extras))
    except ConfigError as exc:
        raise SystemExit(f"--extras {','.join(extras)} (model {model}): {exc}") from exc


@dataclasses.dataclass
class Trained:
    """What :func:`run` produced: the fitted (compiled) model, its input config, the data it read and its scores."""

    model: object
    config: object
    data: list
    kind: str
    manifest: dict
    train_scores: dict
    valid_scores: dict


@exit_on_missing_data
def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.data is None and (args.gtzan is not None or not args.quick):
        find_gtzan(args.gtzan)  # no dataset: say so now, before TensorFlow takes seconds to load
    return 2 if run(args) is None else 0


def quick_data(spec, quick_dir: Path, *, tracks_per_genre: int = 3) -> tuple[list[Path], Path, Path]:
    """Tiny generated data of ``spec``'s kind for a smoke run: (data folders or [csv], train list, valid list)."""
    from training.images import make_synthetic_images
    from training.synthetic import make_synthetic_gtzan
    from training.tabular import make_synthetic_csv

    if spec.data.startswith("csv"):
        return make_synthetic_csv(quick_dir / spec.data, rows_per_track=10 if spec.data == "csv3" else 1,
                                  tracks_per_genre=tracks_per_genre)
    if spec.data == "images":
        return make_synthetic_images(quick_dir / "images", tracks_per_genre=tracks_per_genre)
    return make_synthetic_gtzan(quick_dir, tracks_per_genre=tracks_per_genre)


def run(args: argparse.Namespace, *, make_quick_data: bool = True) -> Trained | None:
    """Train, select on the valid split, save the model folder and reports, print the summary line.

    ``args`` are :func:`parse_args`'s. With ``args.quick`` and ``make_quick_data`` (the CLI), the data and
    splits are replaced by tiny generated ones; with ``make_quick_data=False`` (k-fold), ``args.data`` and
    the splits are kept and only the quick training settings apply. Returns ``None`` when ImageNet weights
    cannot be had (the error is printed).
    """
    import keras

    keras.utils.set_random_seed(args.seed)
    from training.augment import pitch_time_noise
    from training.builders import SPECS, WeightsUnavailableError
    from training.metrics import plot_confusion, scores
    from codeFeature.model_io import save_model

    spec = SPECS[args.model]
    config = config_with_extras(args.model, getattr(args, "extras", ()))
    if args.image_size:
        if config.feature != "spectrogram_image":
            raise SystemExit(f"--image-size applies to image models, not {args.model}")
        config = dataclasses.replace(config, image_size=args.image_size)
    epochs = args.epochs or spec.epochs
    patience = args.patience or spec.patience
    batch_size = args.batch_size or spec.batch_size
    if args.quick:
        from training.synthetic import make_synthetic_gtzan

        quick_dir = Path(args.cache) / "quick-data"
        if make_quick_data and args.gtzan is not None and args.data is None:
            pass  # a smoke run on the user's own GTZAN: is the download found, read and split?
        elif make_quick_data and args.data is None:
            args.data, args.train_split, args.valid_split = quick_data(spec, quick_dir)
        elif make_quick_data:  # the help's promise: --quick with --data smoke-tests on generated audio
            args.data, args.train_split, args.valid_split = make_synthetic_gtzan(quick_dir)
        epochs, args.augment, args.fine_tune = 2, False, min(args.fine_tune, 1)
        if config.feature == "spectrogram_image" and not args.image_size:
            # tiny images keep a smoke run of the big architectures fast; InceptionV3 needs at least 75
            config = dataclasses.replace(config, image_size=75 if spec.arch == "inceptionv3" else 32)
    data = args.data or find_gtzan(args.gtzan).data_for(spec.data)
    kind = data_kind(data)
    out = args.out or RUNS_DIR / (model_name(args.model, config.extras) + ("-quick" if args.quick else ""))
    report_dir = args.reports / out.name if args.reports is not None else out / "reports"
    if args.train_split is None or args.valid_split is None:
        from training.data import list_tracks, make_track_split

        if args.train_split is None and args.valid_split is None and \
                set(list_tracks(data)) & set(read_split(TRAIN_SPLIT) + read_split(VALID_SPLIT)):
            args.train_split, args.valid_split = TRAIN_SPLIT, VALID_SPLIT  # GTZAN: the fault-filtered split
        elif args.train_split is None and args.valid_split is None:
            args.train_split, args.valid_split = make_track_split(list_tracks(data), report_dir / "split",
                                                                  seed=args.seed)
            log.info("no split lists given: wrote a seeded stratified split by track to %s",
                     display_path(args.train_split.parent))
        else:
            raise SystemExit("give both --train-split and --valid-split, or neither")
    if args.augment and kind != "audio":
        raise SystemExit("--augment alters audio; it cannot be used with a feature table or images")
    train_ids, valid_ids = read_split(args.train_split), read_split(args.valid_split)
    overlap = set(train_ids) & set(valid_ids)
    if overlap:
        raise SystemExit(f"the splits share {len(overlap)} tracks, e.g. {sorted(overlap)[:3]}")
    weights = None if args.weights == "none" else "imagenet"
    base = None
    if spec.arch is not None:
        from training.builders import tl_base

        try:  # before reading any data: fail at once when the weights cannot be had
            base = tl_base(spec.arch, config.input_shape, weights)
        except WeightsUnavailableError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return None
    t0 = time.perf_counter()
    augment = (lambda segs, rng: pitch_time_noise(segs, rng, sample_rate=config.sample_rate)) if args.augment else None
    train = load_set(data, train_ids, config, cache_dir=args.cache, augment=augment, extra_key="pitch_time_noise-v2")
    valid = load_set(data, valid_ids, config, cache_dir=args.cache)
    extract_s = time.perf_counter() - t0
    log.info("train: %d segments of %d tracks; valid: %d segments of %d tracks (%s data, inputs in %.0f s)",
             len(train.y), train.n_tracks, len(valid.y), valid.n_tracks, kind, extract_s)

    t1 = time.perf_counter()
    if spec.arch is not None:
        model, history, monitor_key = _fit_transfer(spec.arch, base, train, valid, weights=weights, epochs=epochs,
                                                    patience=patience, batch_size=batch_size, args=args)
    else:
        model, history, monitor_key = _fit(args.model, config, train, valid, epochs=epochs, patience=patience,
                                           batch_size=batch_size, args=args)
    train_s = time.perf_counter() - t1

    from training.evaluate import predict_probabilities

    valid_scores = scores(predict_probabilities(model, valid.x), valid.y, valid.tracks, GENRES)
    # the train figure scores original segments only, not augmented copies
    train_plain = load_set(data, train_ids, config, cache_dir=args.cache) if args.augment else train
    train_scores = scores(predict_probabilities(model, train_plain.x), train_plain.y, train_plain.tracks, GENRES)
    watched = np.asarray(history[monitor_key])
    best_epoch = int(np.argmax(watched) if monitor_key.endswith("accuracy") else np.argmin(watched)) + 1

    command = _reproduce_command(args, data, spec)
    manifest = {
        "name": out.name,
        "task": "genre",
        "description": spec.description + (" (trained from scratch)" if spec.arch and weights is None else "")
        + (f", with extra features: {', '.join(config.extras)}" if config.extras else ""),
        "labels": list(GENRES),
        "feature_config": config.to_dict(),
        "normalization": _normalization_note(spec, config),
        "seed": args.seed,
        "training": {
            "data": [str(display_path(p)) for p in data],
            "data_kind": kind,
            "splits": {name: {"file": str(display_path(p)), "sha256": file_sha256(p)}
                       for name, p in (("train", args.train_split), ("valid", args.valid_split))},
            "train_tracks": train.n_tracks, "train_segments": int(len(train_plain.y)),
            "augmentation": "pitch shift, time stretch and noise, 2 copies per training segment" if args.augment else None,
            "weights": (args.weights if spec.arch else None),
            "fine_tune_epochs": (args.fine_tune if spec.arch else None),
            "epochs_run": len(history["loss"]), "best_epoch": best_epoch, "batch_size": batch_size,
            "skipped_files": train.skipped + valid.skipped,
            "quick": bool(args.quick),
        },
        "metrics": {
            "selection": f"early stopping on {monitor_key} (valid split); the valid figures are the selection set's",
            "train": _headline(train_scores), "valid": _headline(valid_scores),
        },
        "parameters": int(model.count_params()),
        "depth": model_depth(model),
        "training_seconds": round(train_s, 1),
        "input_seconds": round(extract_s, 1),
        "reproduce": command,
    }
    save_model(_without_optimizer(model), out, manifest)
    report_dir.mkdir(parents=True, exist_ok=True)
    # a copy of the manifest beside the reports keeps the row of a model that is trained but not shipped
    (report_dir / "manifest.json").write_text((out / "manifest.json").read_text())
    report = {"model": out.name, "data": manifest["training"]["data"], **valid_scores,
              "train": train_scores, "skipped_files": manifest["training"]["skipped_files"],
              "history": {k: [round(float(v), 5) for v in vals] for k, vals in history.items()}}
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    plot_confusion(valid_scores["confusion"], GENRES, report_dir / "confusion_valid.png",
                   f"{out.name}: valid tracks (n={valid_scores['tracks']})")
    _write_history_csv(history, report_dir / "history.csv")
    print(json.dumps({"model": out.name, "valid": _headline(valid_scores), "train": _headline(train_scores),
                      "epochs": len(history["loss"]), "seconds": round(extract_s + train_s, 1)}))
    return Trained(model=model, config=config, data=list(data), kind=kind, manifest=manifest,
                   train_scores=train_scores, valid_scores=valid_scores)


def _fit(name, config, train, valid, *, epochs, patience, batch_size, args):
    """Compile and fit a model built from scratch, early stopping on the valid split."""
    import keras

    from training.builders import build

    model = build(name, normalizer_data=train.x, config=config)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(train.x, train.y, validation_data=(valid.x, valid.y), epochs=epochs,
                        batch_size=batch_size, callbacks=[_stopper(args.monitor, patience)], verbose=2, shuffle=True)
    return model, history.history, args.monitor


def _without_optimizer(model):
    """The same network uncompiled, so that the weight file holds no optimizer state (a third of its size)."""
    import keras

    config = json.loads(model.to_json())
    config.pop("compile_config", None)  # else the copy is compiled again and its optimizer saved too
    clean = keras.saving.deserialize_keras_object(config, safe_mode=True)
    clean.set_weights(model.get_weights())
    return clean


def _stopper(monitor, patience):
    import keras

    return keras.callbacks.EarlyStopping(monitor=monitor, patience=patience, restore_best_weights=True,
                                         mode="max" if monitor.endswith("accuracy") else "min")


def _fit_transfer(arch, base, train, valid, *, weights, epochs, patience, batch_size, args):
    """Transfer learning: frozen base -> cached embeddings -> head; optional fine-tuning of the whole model.

    From scratch (``weights=None``) there is nothing to freeze: the whole network trains on the images.
    """
    import keras

    from training.builders import tl_head, tl_join

    name = f"tl_{arch}"
    if weights is None:
        base.trainable = True
        model = tl_join(base, tl_head(int(base.output.shape[-1]), len(GENRES)), name)
        model.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        history = model.fit(train.x, train.y, validation_data=(valid.x, valid.y), epochs=epochs,
                            batch_size=batch_size, callbacks=[_stopper(args.monitor, patience)], verbose=2)
        return model, history.history, args.monitor
    tz = _cached_embeddings(base, train.x, arch, args.cache)
    vz = _cached_embeddings(base, valid.x, arch, args.cache)
    head = tl_head(tz.shape[1], len(GENRES))
    head.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                 loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = head.fit(tz, train.y, validation_data=(vz, valid.y), epochs=epochs, batch_size=batch_size,
                       callbacks=[_stopper(args.monitor, patience)], verbose=2).history
    model = tl_join(base, head, name)
    if args.fine_tune:
        base.trainable = True
        model.compile(optimizer=keras.optimizers.Adam(args.learning_rate / 10),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        more = model.fit(train.x, train.y, validation_data=(valid.x, valid.y), epochs=args.fine_tune,
                         batch_size=batch_size, callbacks=[_stopper(args.monitor, patience)], verbose=2).history
        history = {k: list(history[k]) + list(more.get(k, [])) for k in history}
    return model, history, args.monitor


def _cached_embeddings(base, x: np.ndarray, arch: str, cache_dir: Path | None) -> np.ndarray:
    """The frozen base's pooled embeddings of images ``x``, cached by architecture and image content."""
    import hashlib

    from training.evaluate import predict_probabilities

    key = hashlib.sha1(x.tobytes()).hexdigest()[:16]
    path = cache_dir / f"tl-{arch}-{x.shape[1]}-{key}.npy" if cache_dir is not None else None
    if path is not None and path.exists():
        return np.load(path)
    z = predict_probabilities(base, x, batch=16).astype(np.float32)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, z)
    return z


def model_depth(model) -> int:
    """Layers with weights (Dense, Conv, LSTM, BatchNorm, ...), counted through nested models."""
    count = 0
    for layer in model.layers:
        if hasattr(layer, "layers"):
            count += model_depth(layer)
        elif layer.weights and type(layer).__name__ not in ("Normalization",) and layer.name != "preprocess":
            count += 1
    return count


def _normalization_note(spec, config) -> str:
    return feature_kind(config.feature).normalization(config)


def _reproduce_command(args, data, spec) -> str:
    parts = ["python -m training.train --model", args.model]
    if getattr(args, "extras", ()):
        # canonical order, as the config stores it and the model's name spells it
        parts += ["--extras", ",".join(config_with_extras(args.model, args.extras).extras)]
    if args.data is not None and [Path(p).resolve() for p in data] != [Path(p).resolve() for p in DEFAULT_DATA[spec.data]]:
        parts += ["--data", *[str(display_path(p)) for p in data]]
    shipped = [(TRAIN_SPLIT, VALID_SPLIT), (SHARED_GTZAN / "splits" / "train_filtered.txt",
                                           SHARED_GTZAN / "splits" / "valid_filtered.txt")]
    if not args.quick and (Path(args.train_split).resolve(), Path(args.valid_split).resolve()) not in \
            [(a.resolve(), b.resolve()) for a, b in shipped]:
        parts += ["--train-split", str(display_path(args.train_split)), "--valid-split",
                  str(display_path(args.valid_split))]
    if args.augment:
        parts.append("--augment")
    if spec.arch is not None and args.weights == "none":
        parts += ["--weights", "none"]
    if args.fine_tune:
        parts += ["--fine-tune", str(args.fine_tune)]
    if args.image_size:
        parts += ["--image-size", str(args.image_size)]
    for flag, value in (("--epochs", args.epochs), ("--patience", args.patience), ("--batch-size", args.batch_size)):
        if value:
            parts += [flag, str(value)]
    return " ".join(parts)


def _headline(s: dict) -> dict:
    return {k: s[k] for k in ("track_accuracy", "segment_accuracy", "tracks", "segments")}


def _write_history_csv(history: dict, path: Path) -> None:
    keys = list(history)
    rows = ["epoch," + ",".join(keys)]
    for i in range(len(history[keys[0]])):
        rows.append(f"{i + 1}," + ",".join(f"{history[k][i]:.5f}" for k in keys))
    path.write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    sys.exit(main())
