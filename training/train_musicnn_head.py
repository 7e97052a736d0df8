"""Train a genre head on the frozen musicnn trunk and ship it as one Keras model folder.

The head (chosen by ``python -m training.head_cv_report --search``: repeated artist-grouped
cross-validation over train + valid, mean accuracy plus the worst genre's recall; the defaults below
are its winner: balanced one-vs-rest RBF SVMs with every genre weighted alike) reads cached musicnn outputs
(:mod:`training.musicnn_embeddings`), is fitted with scikit-learn and calibrated
by a temperature fitted on out-of-fold scores of its own training data (folds
grouped by artist), then folded into built-in Keras layers on top of the
network (:func:`training.musicnn_heads.head_layers`): one model whose first
output is the ten genre probabilities and whose second is the base's 50 tags,
loaded in safe mode with no pickle.

The shipped default is refit on train + valid (``--fit-on train+valid``). Its
honest estimates are written beside it: the same recipe fitted on train only
and scored on valid (``metrics.valid``, also ``metrics.valid_train_only``; that
model is saved too, as ``<out>_train_only``, so that ``training.evaluate``
reproduces the figure), and artist-grouped 5-fold cross-validation over
train + valid (``metrics.cv_artist_5fold``). The refit's own score on valid
(``metrics.valid_refit``) is not an estimate: it has seen those tracks.

    python -m training.train_musicnn_head --gtzan ~/gtzan       # the default model, to runs/musicnn_genre
    python -m training.train_musicnn_head --preset lr           # the logistic regression (models/musicnn_genre_lr)
    python -m training.train_musicnn_head --gtzan ~/gtzan --quick   # a smoke run -> runs/musicnn_genre-quick

The audio is found as by ``training.train`` (``--gtzan DIR``, else ``GTZAN_DIR``, else
``../shared/data/gtzan``; ``--data`` names folders directly), the splits default to the shipped
``training/splits/`` lists, and everything is written under ``runs/``; the tracked ``reports/`` only
with ``--write-report``, ``models/`` only through ``python -m training.promote``.
"""

from __future__ import annotations

import argparse
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
from training.data import REPO_ROOT, RUNS_DIR, TRAIN_SPLIT, VALID_SPLIT, display_path, file_sha256, read_split
from training.datasets import DatasetError, add_gtzan_argument, audio_data, exit_on_missing_data

log = logging.getLogger("training.train_musicnn_head")
DEFAULT_ARTISTS = REPO_ROOT / "training" / "splits" / "artists_train_valid.txt"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--inputs", default="msd:penultimate+msd:taggram",
                   help="head input: <msd|mtt>:<penultimate|mean_pool|max_pool|pooled|taggram>, joined by +")
    p.add_argument("--head", default="svm", choices=("lr", "svm", "mlp"))
    p.add_argument("--C", type=float, default=1.0)
    p.add_argument("--gamma-scale", type=float, default=0.03, help="svm: gamma = this / n_features")
    p.add_argument("--svm-balanced", action=argparse.BooleanOptionalAction, default=True,
                   help="svm: weigh each one-vs-rest machine's genre as much as the other nine together")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--weighting", default="genre", choices=("segment", "track", "genre"),
                   help="sample weights: every segment alike, every track alike, or every genre alike (its tracks "
                        "alike within it)")
    p.add_argument("--train-hop", type=float, default=None,
                   help="train on 3 s windows every this many seconds (more windows of the long tracks); scoring "
                        "always cuts segments as serving does")
    p.add_argument("--mixup", type=float, default=0.0,
                   help="add this many times the training rows again, mixed between two tracks of one genre")
    p.add_argument("--augment", type=augment_list, default=",".join(DEFAULT_AUGMENT) or "none", metavar="CHAINS",
                   help="also train on every training track as these recording chains give it, comma-separated "
                        "(band: low-passed with noise; shellac: a 78-rpm-like transfer; noise10: pink noise at "
                        "10 dB SNR; training.recording_chain), 'none' for the audio alone; scoring always uses "
                        "the audio as it is (default: %(default)s)")
    p.add_argument("--augment-as", choices=AUGMENT_AS, default=DEFAULT_AUGMENT_AS,
                   help="rows: the chain versions join the head's training rows; second-head: a second head is "
                        "fitted on them too and the model averages the two heads' calibrated probabilities "
                        "(default: %(default)s)")
    p.add_argument("--fit-on", default="train+valid", choices=("train", "train+valid"))
    p.add_argument("--no-calibration", action="store_true", help="temperature 1 (the raw scores' softmax)")
    p.add_argument("--artists", type=Path, default=DEFAULT_ARTISTS,
                   help="artist index (Sturm's 'track ::: artist ::: title' or CSV track,artist) for grouped folds")
    p.add_argument("--cv-folds", type=int, default=5, help="artist-grouped folds over the fitted tracks (0: none)")
    add_gtzan_argument(p)
    p.add_argument("--data", nargs="+", type=Path,
                   help="GTZAN-layout audio folders (default: the audio of the dataset --gtzan finds)")
    p.add_argument("--train-split", type=Path, default=TRAIN_SPLIT)
    p.add_argument("--valid-split", type=Path, default=VALID_SPLIT)
    p.add_argument("--name", default="musicnn_genre")
    p.add_argument("--out", type=Path, help="model folder (default runs/<name>, runs/<name>-quick with --quick)")
    p.add_argument("--cache", type=Path, default=None,
                   help="musicnn embedding cache (default .cache/musicnn_embeddings)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run, not a model: at most 2 train and 1 valid tracks a genre of the data found, "
                        "fit on train, no cross-validation, no bfloat16 re-score; never writes models/ or reports/")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--skip-bfloat16", action="store_true", help="do not re-score valid with bfloat16 layers")
    p.add_argument("--skip-int8", action="store_true",
                   help="do not re-score valid on the int8 path (OpenVINO; skipped where it is not installed)")
    p.add_argument("--write-report", action="store_true",
                   help="also write the calibration report to REPORTS/<name>/ (tracked files)")
    p.add_argument("--reports", type=Path, default=REPO_ROOT / "reports", help="where --write-report writes")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="a shipped model's recipe as the defaults (lr: models/musicnn_genre_lr)")
    args = p.parse_args(argv)
    if args.preset:
        p.set_defaults(**PRESETS[args.preset])
        args = p.parse_args(argv)
    if args.quick:
        tracked = [(REPO_ROOT / "models").resolve(), (REPO_ROOT / "reports").resolve()]
        for what, folder in (("--out", args.out), ("--reports", args.reports if args.write_report else None)):
            if folder is not None and any(Path(folder).resolve().is_relative_to(t) for t in tracked):
                p.error(f"--quick never writes into the tracked models/ or reports/ ({what} {folder})")
    return args


def quick_tracks(ids, have, per_genre: int) -> list[str]:
    """The first ``per_genre`` tracks of each genre among ``ids`` that have audio (a smoke run's selection)."""
    chosen, counts = [], {}
    for t in ids:
        genre = t.split(".")[0]
        if t in have and counts.get(genre, 0) < per_genre:
            chosen.append(t)
            counts[genre] = counts.get(genre, 0) + 1
    return chosen


#: Recipes of the shipped heads other than the default (options of this command), by --preset.
PRESETS = {"lr": {"head": "lr", "inputs": "msd:penultimate", "C": 0.01, "weighting": "segment", "fit_on": "train",
                  "no_calibration": True, "name": "musicnn_genre_lr", "augment": ()}}

#: The recording chains the default recipe also trains on (``--augment``): none. Training on band + shellac
#: versions keeps far more accuracy through other recording chains at the same accuracy on GTZAN's own audio,
#: but costs rock and reggae recall and moves two valid verdicts under the int8 path's 7-bit check, which
#: would put AVX2 CPUs on float32 (``python -m training.chain_robustness``, docs/models.md).
DEFAULT_AUGMENT: tuple[str, ...] = ("band", "shellac")
#: How the chain versions are used (``--augment-as``).
AUGMENT_AS = ("rows", "second-head")
DEFAULT_AUGMENT_AS = "second-head"


def head_params(args) -> dict:
    return {"lr": {"C": args.C}, "svm": {"C": args.C, "gamma_scale": args.gamma_scale,
                                         **({"balanced": True} if args.svm_balanced else {})},
            "mlp": {"hidden": args.hidden, "alpha": args.alpha}}[args.head]


def augment_list(text) -> tuple[str, ...]:
    """``"band,shellac"`` -> ``("band", "shellac")``, each a chain of :mod:`training.recording_chain`;
    ``"none"`` -> ``()``."""
    from training.recording_chain import VERSIONS

    if isinstance(text, (tuple, list)):
        return tuple(text)
    chains = tuple(c.strip() for c in str(text).split(",") if c.strip() and c.strip().lower() != "none")
    unknown = [c for c in chains if c not in VERSIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown recording chain {', '.join(unknown)}: use {', '.join(VERSIONS)}")
    return chains


def single_base(spec: str) -> str:
    from training.musicnn_heads import parse_inputs

    bases = {b for b, _ in parse_inputs(spec)}
    if len(bases) != 1:
        raise SystemExit(f"--inputs {spec}: a shipped head reads one trunk (msd or mtt), not both")
    return bases.pop()


def recipe_rows(embedded, ids, spec, weighting, *, overlap=None, mixup=0.0, seed=42, augmented=()):
    """A recipe's training rows on the tracks ``ids``: ``(x, y, tracks, sample_weight or None)``.

    ``overlap`` (``{base: Embedded}`` cut with a shorter hop) gives more windows of the long tracks;
    ``augmented`` (a sequence of ``{base: Embedded}``, one per recording chain) adds the same tracks as other
    recording chains give them, as rows of the same track (so a track's weight is shared, not multiplied);
    ``mixup`` adds that many times the rows again, mixed between two tracks of one genre
    (:func:`training.musicnn_heads.mixup_rows`). Without any, the rows are exactly the served segments.
    """
    from training.musicnn_heads import input_matrix, mixup_rows, sample_weights

    source = embedded if overlap is None else overlap
    e0 = next(iter(source.values()))
    mask = np.isin(e0.tracks, list(ids))
    x, y, tracks = input_matrix(spec, source, mask), e0.y[mask], e0.tracks[mask]
    for chain in augmented:
        ec = next(iter(chain.values()))
        m = np.isin(ec.tracks, list(ids))
        x, y = np.concatenate([x, input_matrix(spec, chain, m)]), np.concatenate([y, ec.y[m]])
        tracks = np.concatenate([tracks, ec.tracks[m]])
    if mixup:
        mx, my, mt = mixup_rows(x, y, tracks, mixup, seed=seed)
        x, y, tracks = np.concatenate([x, mx]), np.concatenate([y, my]), np.concatenate([tracks, mt])
    return x, y, tracks, sample_weights(weighting, tracks, y)


def recipe_temperature(embedded, ids, spec, kind, params, weighting, artists, *, overlap=None, mixup=0.0,
                       seed=42, folds=5, augmented=()) -> float:
    """The temperature from out-of-fold scores of the served segments of ``ids``, each fold's head fitted by
    the whole recipe (its windows and mixup too) on the other folds; folds grouped by artist (else by track)."""
    from sklearn.model_selection import StratifiedGroupKFold

    from training.musicnn_heads import fit_head, fit_temperature, input_matrix, sample_weights

    e0 = next(iter(embedded.values()))
    mask = np.isin(e0.tracks, list(ids))
    x, y, tracks = input_matrix(spec, embedded, mask), e0.y[mask], e0.tracks[mask]
    track_ids = sorted(set(tracks.tolist()))
    genre_of = {t: int(g) for t, g in zip(tracks, y)}
    groups = [artists.get(t, t) if artists else t for t in track_ids]
    oof = np.zeros((len(y), len(GENRES)))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_idx, test_idx in splitter.split(np.zeros(len(track_ids)), [genre_of[t] for t in track_ids], groups):
        fx, fy, _, fw = recipe_rows(embedded, [track_ids[i] for i in train_idx], spec, weighting, overlap=overlap,
                                    mixup=mixup, seed=seed, augmented=augmented)
        head = fit_head(kind, fx, fy, sample_weight=fw, seed=seed, **params)
        rows = np.isin(tracks, [track_ids[i] for i in test_idx])
        oof[rows] = head.scores(x[rows])
    return fit_temperature(oof, y, sample_weights(weighting, tracks, y) if weighting != "segment" else None)


def fit_recipe(embedded, ids, spec, kind, params, weighting, *, artists=None, calibrate=True, seed=42, folds=5,
               overlap=None, mixup=0.0, augmented=(), augment_as="rows"):
    """The head of this recipe fitted (and calibrated by artist-grouped CV) on the tracks ``ids``.

    With ``augmented`` chain versions and ``augment_as="second-head"``: a :class:`HeadPair` of the head fitted
    without them and the head fitted with them (as rows), each calibrated on its own.
    """
    from training.musicnn_heads import HeadPair, calibrate as calibrate_head, fit_head

    if augmented and augment_as == "second-head":
        common = dict(artists=artists, calibrate=calibrate, seed=seed, folds=folds, overlap=overlap, mixup=mixup)
        return HeadPair((fit_recipe(embedded, ids, spec, kind, params, weighting, **common),
                         fit_recipe(embedded, ids, spec, kind, params, weighting, augmented=augmented, **common)),
                        ("the audio as it is", "the audio as it is and its other recording chains"))
    if augment_as not in AUGMENT_AS:
        raise ValueError(f"augment_as {augment_as!r}: use one of {', '.join(AUGMENT_AS)}")

    x, y, tracks, w = recipe_rows(embedded, ids, spec, weighting, overlap=overlap, mixup=mixup, seed=seed,
                                  augmented=augmented)
    head = fit_head(kind, x, y, sample_weight=w, seed=seed, **params)
    if calibrate:
        if overlap is None and not mixup and not augmented and weighting != "genre":
            # the rows are the served segments: the shipped recipes' calibration, unchanged
            calibrate_head(head, x, y, tracks, artists, weighting=weighting, seed=seed, folds=folds)
        else:
            head.temperature = recipe_temperature(embedded, ids, spec, kind, params, weighting, artists,
                                                  overlap=overlap, mixup=mixup, seed=seed, folds=folds,
                                                  augmented=augmented)
    return head


def score_head(head, embedded, ids, spec, aggregate="vote") -> dict:
    """Accuracy (with n), per-genre figures and ECE of ``head`` on the tracks ``ids``."""
    from training.metrics import scores
    from training.musicnn_heads import calibration_figures, input_matrix

    e0 = next(iter(embedded.values()))
    mask = np.isin(e0.tracks, list(ids))
    probs = head.probabilities(input_matrix(spec, embedded, mask))
    s = scores(probs, e0.y[mask], e0.tracks[mask], GENRES)
    cal = calibration_figures(probs, e0.y[mask], e0.tracks[mask], aggregate)
    s["ece"] = {"track": cal["track"]["ece"], "segment": cal["segment"]["ece"]}
    s["calibration"] = cal
    return s


def headline(s: dict) -> dict:
    out = {k: s[k] for k in ("track_accuracy", "tracks", "segment_accuracy", "segments")}
    if "ece" in s:
        out["ece"] = s["ece"]
    return out


def artist_cv(embedded, pool_ids, artists, spec, kind, params, weighting, *, folds=5, seed=42,
              calibrate=True, overlap=None, mixup=0.0, augmented=(), augment_as="rows") -> dict:
    """Artist-grouped ``folds``-fold cross-validation of the recipe over ``pool_ids`` (never grouped by track)."""
    from training.artists import artist_folds

    pool = sorted(t for t in set(pool_ids) if t in artists)
    missing = len(set(pool_ids)) - len(pool)
    rows, confusion = [], np.zeros((len(GENRES), len(GENRES)), int)
    for k, (train_part, test_part) in enumerate(artist_folds(pool, artists, folds=folds, seed=seed), start=1):
        head = fit_recipe(embedded, train_part, spec, kind, params, weighting, artists=artists,
                          calibrate=calibrate, seed=seed, overlap=overlap, mixup=mixup, augmented=augmented,
                          augment_as=augment_as)
        s = score_head(head, embedded, test_part, spec)
        confusion += np.asarray(s["confusion"])
        rows.append({"fold": k, "train_tracks": len(train_part), **headline(s)})
        log.info("artist fold %d/%d: track accuracy %.3f (n=%d)", k, folds, s["track_accuracy"], s["tracks"])
    acc = [r["track_accuracy"] for r in rows]
    seg = [r["segment_accuracy"] for r in rows]
    pooled = float(np.trace(confusion) / confusion.sum())
    return {"protocol": f"artist-grouped stratified {folds}-fold (StratifiedGroupKFold, groups = Sturm's artists, "
                        f"seed {seed}) over train + valid; each fold's head fitted"
                        + (" and calibrated" if calibrate else "") + " on the other folds",
            "folds": folds, "tracks": int(confusion.sum()), "segments": int(sum(r["segments"] for r in rows)),
            "tracks_without_artist": missing,
            "track_accuracy": round(float(np.mean(acc)), 4), "track_accuracy_std": round(float(np.std(acc)), 4),
            "track_accuracy_pooled": round(pooled, 4),
            "segment_accuracy": round(float(np.mean(seg)), 4),
            "ece_track": round(float(np.mean([r["ece"]["track"] for r in rows])), 4),
            "per_fold": rows, "confusion": confusion.tolist()}


def kfold_main(own, rest) -> int:
    """``python -m training.kfold --model musicnn_genre --artists FILE [head options]``: artist-grouped CV."""
    from training.artists import read_artists
    from training.musicnn_embeddings import embed_files
    from training.musicnn_heads import BASES

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--write-report", action="store_true")
    extra, rest = parser.parse_known_args(rest)
    preset = ["--preset", "lr"] if own.model == "musicnn_genre_lr" else []
    args = parse_args(["--name", own.model, *preset, *rest])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        artists = read_artists(own.artists)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.data = audio_data(args.data, args.gtzan)
    b = single_base(args.inputs)
    embedded = {b: embed_files(BASES[b], args.data, **({} if args.cache is None else {"cache_dir": args.cache}))}
    pool = (read_split(args.train_split) + read_split(args.valid_split)) if not own.tracks else \
        [t for path in own.tracks for t in read_split(path)]
    have = set(embedded[b].tracks.tolist())
    pool = [t for t in pool if t in have]
    cv = artist_cv(embedded, pool, artists, args.inputs, args.head, head_params(args), args.weighting,
                   folds=own.folds, seed=args.seed, calibrate=not args.no_calibration,
                   **recipe_extras(args, args.data, args.cache, track_ids=pool))
    cv.update({"model": own.model, "recipe": {"inputs": args.inputs, "head": args.head, **head_params(args),
                                              "weighting": args.weighting, **extras_summary(args)},
               "artists_file": str(display_path(own.artists)),
               "reproduce": " ".join(["python -m training.kfold --model", own.model, "--artists",
                                      str(display_path(own.artists)), "--folds", str(own.folds), *rest])})
    outs = [RUNS_DIR / own.model] + ([REPO_ROOT / "reports" / own.model] if extra.write_report else [])
    for out in outs:
        out.mkdir(parents=True, exist_ok=True)
        (out / "kfold.json").write_text(json.dumps(cv, indent=1) + "\n")
    for r in cv["per_fold"]:
        print(f"fold {r['fold']}: track accuracy {r['track_accuracy']:.3f} (n={r['tracks']})")
    print(json.dumps({k: cv[k] for k in ("model", "folds", "tracks", "track_accuracy", "track_accuracy_std",
                                        "track_accuracy_pooled", "ece_track", "tracks_without_artist")}
                     | {"report": [str(display_path(o / "kfold.json")) for o in outs]}))
    return 0


def recipe_extras(args, data, cache_dir=None, track_ids=None) -> dict:
    """``overlap``, ``mixup`` and ``augmented`` of ``fit_recipe`` from the options (the embeddings of the
    overlapping windows and of the recording chains cached)."""
    from training.musicnn_embeddings import embed_files
    from training.musicnn_heads import BASES

    b = single_base(args.inputs)
    cache = {} if cache_dir is None else {"cache_dir": cache_dir}
    overlap = None
    if args.train_hop:
        overlap = {b: embed_files(BASES[b], data, hop_seconds=args.train_hop, track_ids=track_ids, **cache)}
    augmented = tuple({b: embed_files(BASES[b], data, track_ids=track_ids, augment=chain, **cache)}
                      for chain in getattr(args, "augment", ()))
    return {"overlap": overlap, "mixup": args.mixup, "augmented": augmented,
            "augment_as": getattr(args, "augment_as", "rows")}


def extras_summary(args) -> dict:
    """What the manifest records of the recipe's extra training signal (nothing for the plain recipe)."""
    out = {}
    if args.train_hop:
        out["train_hop_seconds"] = args.train_hop
    if args.mixup:
        out["mixup"] = {"ratio": args.mixup, "alpha": 0.4, "between": "two tracks of one genre, in the head's input"}
    if getattr(args, "augment", ()):
        out["augment"] = list(args.augment)
        out["augment_as"] = args.augment_as
    return out


def time_head(head, n_features: int, segments: int = 100, repeats: int = 5) -> float:
    """Median seconds for the exported head alone on ``segments`` embeddings (a 5-minute song), traced."""
    import keras
    import tensorflow as tf

    from training.musicnn_heads import head_layers

    inp = keras.Input((n_features,))
    model = keras.Model(inp, head_layers(inp, head))
    fn = tf.function(lambda x: model(x, training=False))
    x = tf.constant(np.random.default_rng(0).normal(size=(segments, n_features)).astype(np.float32))
    fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.asarray(fn(x))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def build_model(base, spec: str, head, name: str):
    """The base's network with ``head`` folded on as built-in layers: outputs [genres, tags]."""
    import keras

    from training.musicnn_heads import head_layers, parse_inputs

    tagger = base.keras_model
    tensors = []
    for _, layer in parse_inputs(spec):
        if layer == "pooled":
            tensors += [tagger.get_layer("mean_pool").output, tagger.get_layer("max_pool").output]
        elif layer == "taggram":
            tensors.append(tagger.output)
        else:
            tensors.append(tagger.get_layer(layer).output)
    features = tensors[0] if len(tensors) == 1 else keras.layers.Concatenate(name="head_input")(tensors)
    genre = head_layers(features, head)
    model = keras.Model(tagger.inputs, [genre, tagger.output], name=name)
    model.trainable = False
    return model


def check_export(model, base, head, spec, data, ids, atol=1e-4, cache=None) -> float:
    """Max |Keras - scikit-learn| probability over the segments of ``ids``; raises if above ``atol``."""
    import dataclasses

    from training.data import load_set
    from training.musicnn_embeddings import embed_files
    from training.musicnn_heads import input_matrix, parse_inputs

    segments = load_set(data, ids, base.config)
    keras_probs = dataclasses.replace(base, keras_model=model, _graph=None).forward(segments.x)[0]
    b = parse_inputs(spec)[0][0]
    from training.musicnn_heads import BASES

    embedded = {b: embed_files(BASES[b], data, track_ids=ids, **(cache or {}))}
    reference = head.probabilities(input_matrix(spec, embedded))
    diff = float(np.max(np.abs(keras_probs - reference)))
    if diff > atol:
        raise AssertionError(f"the exported head differs from the fitted one by {diff:.2e} (> {atol:g})")
    return diff


def reproduce_command() -> str:
    """This run's command line without the options that only say where files are (the data, outputs, cache)."""
    argv, kept = sys.argv[1:], []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--out", "--reports", "--gtzan", "--cache"):
            skip = True
            continue
        if a.startswith(("--out=", "--reports=", "--gtzan=", "--cache=")) or a in ("--write-report", "--skip-bfloat16", "--skip-int8"):
            continue
        kept.append(a)
    return " ".join(["python -m training.train_musicnn_head", *kept])


def manifest_for(args, base, head, spec, model, metrics, fitted_ids, train_ids, splits, seconds, note) -> dict:
    from training.musicnn_heads import head_summary

    b = spec.split(":")[0].upper()
    kind = {"lr": "Logistic regression", "svm": "RBF support-vector machines (one per genre)",
            "mlp": "A one-hidden-layer MLP"}[head.kind]
    if len(getattr(head, "members", ())) == 2:
        what = kind if kind[:2].isupper() else kind[0].lower() + kind[1:]
        kind = (f"Two heads of {what}, one also trained on other recording chains ("
                + ", ".join(args.augment) + "), their calibrated probabilities averaged,")
    return {
        "name": args.name,
        "task": "genre",
        "description": f"{kind} on pretrained musicnn ({b}) {spec.replace(b.lower() + ':', '').replace('+', ' + ')}"
                       f"{'' if args.no_calibration else ', temperature-calibrated'}; fit on {args.fit_on}; "
                       "also outputs the 50 musicnn tags",
        "labels": list(GENRES),
        "extra_outputs": [{"name": "tags", "labels": list(base.labels)}],
        "feature_config": base.config.to_dict(),
        "preprocessing": base.manifest.get("preprocessing"),
        "bfloat16_layers": base.manifest.get("bfloat16_layers", []),
        "normalization": "in the model: the head's standardisation is a Dense layer (diagonal kernel)",
        "seed": args.seed,
        "base_model": {"name": base.name, "source": base.manifest.get("source"), "license": base.manifest.get("license")},
        "training": {
            "data": [str(display_path(p)) for p in args.data],
            "splits": splits,
            "fit_on": args.fit_on,
            "quick": bool(args.quick),
            "fit_tracks": len(set(fitted_ids)),
            "train_tracks": len(set(train_ids)),
            "head": {"inputs": spec, **head_summary(head), "weighting": args.weighting, **extras_summary(args),
                     "calibration": "none" if args.no_calibration else
                     "temperature (softmax(scores / T)) fitted by minimum NLL on out-of-fold scores of the fitted "
                     "tracks, 5 folds grouped by artist",
                     "fitted_with": "scikit-learn " + __import__("sklearn").__version__,
                     "export": "built-in Keras layers (training.musicnn_heads.head_layers); no pickle"},
            "selection": "python -m training.head_cv_report --search (5 x artist-grouped 5-fold CV over train + valid: "
                         "mean track accuracy + the worst genre's recall)" + (
                             "; the recording-chain augmentation by python -m training.chain_robustness (the same "
                             "folds, held-out tracks also scored through other chains)" if args.augment else ""),
        },
        "metrics": {"note": note, **metrics},
        "parameters": int(model.count_params()),
        "training_seconds": round(seconds, 1),
        "license": base.manifest.get("license"),
        "reproduce": reproduce_command(),
    }


@exit_on_missing_data
def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    # the data and splits first: a missing dataset is one plain line before TensorFlow loads
    args.data = audio_data(args.data, args.gtzan)
    train_ids, valid_ids = read_split(args.train_split), read_split(args.valid_split)
    if set(train_ids) & set(valid_ids):
        raise SystemExit("the train and valid splits share tracks")
    if args.quick:
        args.fit_on, args.cv_folds, args.skip_bfloat16, args.skip_int8 = "train", 0, True, True
    import keras

    keras.utils.set_random_seed(args.seed)
    from codeFeature.model_io import load_model, save_model
    from training.artists import read_artists
    from training.metrics import plot_confusion
    from training.musicnn_embeddings import embed_files
    from training.musicnn_heads import BASES

    t0 = time.perf_counter()
    spec, params = args.inputs, head_params(args)
    b = single_base(spec)
    base = load_model(BASES[b], precision="float32")
    cache = {} if args.cache is None else {"cache_dir": args.cache}
    if args.quick:  # embed only the few tracks a smoke run uses
        from training.data import find_audio

        have = set(find_audio(args.data))
        train_ids, valid_ids = quick_tracks(train_ids, have, 2), quick_tracks(valid_ids, have, 1)
        embedded = {b: embed_files(BASES[b], args.data, track_ids=train_ids + valid_ids, **cache)}
    else:
        embedded = {b: embed_files(BASES[b], args.data, **cache)}
    have = set(embedded[b].tracks.tolist())
    train_ids, valid_ids = [t for t in train_ids if t in have], [t for t in valid_ids if t in have]
    if not train_ids or not valid_ids:
        raise DatasetError(f"the audio in {', '.join(str(p) for p in args.data)} holds "
                           f"{len(train_ids)} tracks of {display_path(args.train_split)} and {len(valid_ids)} of "
                           f"{display_path(args.valid_split)}; both are needed")
    artists = read_artists(args.artists) if args.artists and Path(args.artists).is_file() else None
    if artists is None:
        log.warning("no artist index at %s: calibration folds are grouped by track and no artist CV is run",
                    args.artists)
    calibrate = not args.no_calibration
    recipe = dict(spec=spec, kind=args.head, params=params, weighting=args.weighting,
                  **recipe_extras(args, args.data, args.cache, track_ids=train_ids + valid_ids))
    folds = {"folds": 2} if args.quick else {}  # a smoke run has 2 train tracks a genre: 2 calibration folds

    # the honest figure: the recipe fitted on train only, scored on valid
    train_only = fit_recipe(embedded, train_ids, **recipe, artists=artists, calibrate=calibrate, seed=args.seed,
                            **folds)
    if not calibrate:
        uncalibrated = train_only
    else:
        uncalibrated = fit_recipe(embedded, train_ids, **recipe, artists=artists, calibrate=False, seed=args.seed)
    valid_train_only = score_head(train_only, embedded, valid_ids, spec)
    valid_uncalibrated = score_head(uncalibrated, embedded, valid_ids, spec)
    train_scores = score_head(train_only, embedded, train_ids, spec)
    log.info("fit on train: valid track accuracy %.4f (n=%d), ECE track %.3f (uncalibrated %.3f)",
             valid_train_only["track_accuracy"], valid_train_only["tracks"], valid_train_only["ece"]["track"],
             valid_uncalibrated["ece"]["track"])
    fitted_ids = train_ids + (valid_ids if args.fit_on == "train+valid" else [])
    head = train_only if args.fit_on == "train" else fit_recipe(embedded, fitted_ids, **recipe, artists=artists,
                                                                calibrate=calibrate, seed=args.seed)
    cv = None
    if artists is not None and args.cv_folds:
        cv = artist_cv(embedded, train_ids + valid_ids, artists, **recipe, folds=args.cv_folds, seed=args.seed,
                       calibrate=calibrate)
        log.info("artist-grouped %d-fold CV over train + valid: %.4f +- %.4f (n=%d)", args.cv_folds,
                 cv["track_accuracy"], cv["track_accuracy_std"], cv["tracks"])

    splits = {n: {"file": str(display_path(p)), "sha256": file_sha256(p)}
              for n, p in (("train", args.train_split), ("valid", args.valid_split))}
    metrics = {"valid": {**headline(valid_train_only), "fit_on": "train"},
               "valid_train_only": headline(valid_train_only),
               "valid_uncalibrated": headline(valid_uncalibrated),
               "train": headline(train_scores)}
    if cv is not None:
        metrics[f"cv_artist_{args.cv_folds}fold"] = {k: v for k, v in cv.items() if k not in ("per_fold", "confusion")}
    if args.fit_on == "train+valid":
        refit_valid = score_head(head, embedded, valid_ids, spec)
        metrics["valid_refit"] = {**headline(refit_valid), "note": "the shipped refit scored on valid, which it was "
                                  "fitted on: not an estimate of accuracy on new music"}
        note = ("fit on train + valid; metrics.valid (= valid_train_only) is the same recipe fitted on train only "
                "and scored on valid (the honest held-out figure, reproduced by training.evaluate on "
                f"{args.name}_train_only), cv_artist_{args.cv_folds}fold the artist-grouped estimate for the refit")
    else:
        note = "fit on train; metrics.valid is the held-out valid split (which also selected the head)"
    out = args.out or RUNS_DIR / (args.name + ("-quick" if args.quick else ""))
    seconds = time.perf_counter() - t0
    results = {}
    targets = [(out, head, args.name, fitted_ids)]
    if args.fit_on == "train+valid":
        targets.append((out.parent / f"{out.name}_train_only", train_only, f"{args.name}_train_only", train_ids))
    twin_figures: dict = {}
    calibration = None
    from codeFeature import engines

    model_config = base.config
    # the train-only twin first: its bfloat16 and int8 valid figures are the ones a refit's manifest shows (the
    # app reads metrics.valid_<precision> where that path runs; the refit's own valid score is not an estimate)
    for folder, fitted, name, ids in reversed(targets):
        model = build_model(base, spec, fitted, name)
        diff = check_export(model, base, fitted, spec, args.data, valid_ids, cache=cache)
        log.info("%s: exported head agrees with scikit-learn to %.1e on %d valid tracks", name, diff, len(valid_ids))
        sub = dict(vars(args), name=name, fit_on="train" if fitted is train_only else args.fit_on)
        manifest = manifest_for(argparse.Namespace(**sub), base, fitted, spec, model, dict(metrics), ids, train_ids,
                                splits, seconds, note)
        if fitted is train_only and args.fit_on == "train+valid":
            manifest["metrics"] = {"note": "the train-only fit of " + args.name + "; metrics.valid is held out",
                                   **{k: v for k, v in metrics.items() if k != "valid_refit"}}
            manifest["reproduce"] = manifest["reproduce"] + "  (written as " + name + ")"
        manifest["export_max_abs_diff_valid"] = float(f"{diff:.3g}")
        from training.musicnn_heads import input_matrix

        n_features = input_matrix(spec, {b: embedded[b].subset(valid_ids[:1])}).shape[1]
        head_seconds = time_head(fitted, n_features)
        log.info("%s: the head alone takes %.2f ms for 100 segments (a 5-minute song; median of 5, load %s)", name,
                 1000 * head_seconds, " / ".join(f"{v:.1f}" for v in os.getloadavg()))
        manifest["head_ms_per_100_segments"] = round(1000 * head_seconds, 2)
        save_model(model, folder, manifest)
        # the int8 path's calibration, measured on the train split only (training.int8_calibration), once:
        # every folder written here has the same trunk, so its convolutions read the same inputs; valid
        # judges which of them int8 may take automatically on the first folder (the train-only twin)
        from training.int8_calibration import check_on_valid, measure, train_inputs, write_entry

        int8_wanted = not args.skip_int8 and engines.openvino_available()
        if calibration is None:
            x, note = train_inputs(args.data, args.train_split, model_config, train_ids)
            calibration = {"moments": measure(folder, x), "segments": len(x), "data_note": note}
            manifest["int8_calibration"] = write_entry(folder, **calibration)
            if int8_wanted:
                entry = check_on_valid(folder, args.data, args.valid_split)
                manifest["int8_calibration"] = entry
                calibration["moments"] = {k: calibration["moments"][k] for k in entry["layers"]}
                calibration["valid_check"] = {**entry["valid_check"], "judged_on": name}
                if entry.get("valid_check_7bit"):  # the 7-bit verdict (CPUs without VNNI) travels with it
                    calibration["valid_check_7bit"] = {**entry["valid_check_7bit"], "judged_on": name}
        else:
            manifest["int8_calibration"] = write_entry(folder, **calibration)
            judged = calibration.get("valid_check", {}).get("judged_on")
            if judged:  # the verdicts are the twin's: int8_calibration on this folder would judge it, not them
                manifest["int8_calibration"]["reproduce"] = (
                    f"{reproduce_command()}  (moments from the train split; the verdicts judged on {judged}'s "
                    "valid answers, held out; python -m training.int8_calibration --check-only on a copy of this "
                    "folder judges the folder itself, on valid that it was fitted on)")
        for precision, wanted in (("bfloat16", not args.skip_bfloat16), ("int8", int8_wanted)):
            if wanted:
                rescore_valid(folder, precision, args, manifest, train_only=fitted is train_only,
                              twin_figures=twin_figures)
        save_model(model, folder, manifest)
        report = {"model": name, "valid_train_only": valid_train_only, "valid_uncalibrated": valid_uncalibrated,
                  "train": train_scores, "cv_artist": cv}
        (folder / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        plot_confusion(valid_train_only["confusion"], GENRES, folder / "confusion_valid_train_only.png",
                       f"{args.name} fit on train: valid tracks (n={valid_train_only['tracks']})")
        results[name] = {"folder": str(display_path(folder)), "metrics": {k: v for k, v in manifest["metrics"].items()
                                                                          if k != "note"}}
    report_dirs = [out] + ([args.reports / args.name] if args.write_report else [])
    write_calibration_report(report_dirs, args, valid_uncalibrated, valid_train_only, cv, seconds)
    print(json.dumps(results))
    return 0


def rescore_valid(folder, precision: str, args, manifest: dict, *, train_only: bool, twin_figures: dict) -> None:
    """Score valid again through ``precision``'s path (bfloat16, int8) into ``manifest``'s metrics.

    The train-only twin's figure (kept in ``twin_figures``) is the one the refit shows as ``valid_<precision>``;
    the refit's own score, seen in fitting, goes to ``valid_refit_<precision>``.
    """
    from codeFeature.model_io import load_model
    from training.evaluate import evaluate

    fast = evaluate(load_model(folder, precision=precision), args.data, split=args.valid_split)
    figure = {**headline(fast), "fit_on": manifest["training"]["fit_on"]}
    if train_only:
        twin_figures[precision] = figure
        manifest["metrics"][f"valid_{precision}"] = figure
    else:
        manifest["metrics"][f"valid_{precision}"] = twin_figures.get(precision) or figure
        if precision in twin_figures:
            manifest["metrics"][f"valid_refit_{precision}"] = {**figure, "note": "seen in fitting"}


def write_calibration_report(folders, args, before, after, cv, seconds) -> None:
    """Reliability diagrams and ECE on valid before and after calibration (the train-only fit), and the CV."""
    from training.musicnn_heads import plot_reliability

    cal = {"model": args.name, "reproduce": reproduce_command() + " --write-report",
           "fit": "the recipe fitted on train only; scored on the valid split (held out)",
           "ece_bins": 10, "track_confidence": "the winner's mean probability over the track's segments (as the app "
                                               "shows it); right = the vote is the true genre",
           "before": {"description": "softmax of the raw head scores (temperature 1)",
                      "track": before["calibration"]["track"], "segment": before["calibration"]["segment"]},
           "after": {"description": "softmax(scores / T), T fitted on out-of-fold scores of train (artist-grouped)",
                     "track": after["calibration"]["track"], "segment": after["calibration"]["segment"]},
           "cv_artist": cv, "seconds": round(seconds, 1), "load_average": [round(v, 1) for v in os.getloadavg()]}
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "calibration.json").write_text(json.dumps(cal, indent=1) + "\n")
        panels = {f"valid tracks (n={after['tracks']})": {"before": before["calibration"]["track"],
                                                         "after": after["calibration"]["track"]},
                  f"valid segments (n={after['segments']})": {"before": before["calibration"]["segment"],
                                                             "after": after["calibration"]["segment"]}}
        plot_reliability(panels, folder / "reliability_valid.png",
                         f"{args.name} (fit on train): calibration on valid, before and after")


if __name__ == "__main__":
    sys.exit(main())
