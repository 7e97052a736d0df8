"""Train a genre head on pretrained musicnn embeddings and ship it as one model folder.

The musicnn network (Pons & Serra 2019, pretrained on the Million Song Dataset or
MagnaTagATune, ported in :mod:`codeFeature.musicnn`) stays frozen; a multinomial
logistic regression on one of its embeddings learns the ten GTZAN genres. The
embedding (penultimate, mean / max pooled, both pooled, or the 50 tags) and the
regularisation are chosen by track accuracy on the valid split. The regression
is folded into a Dense softmax layer on top of the frozen network, so the
shipped model is an ordinary Keras model whose second output is the tags.

    python -m training.train_musicnn_head
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

log = logging.getLogger("training.train_musicnn_head")
EMBEDDINGS = ("penultimate", "mean_pool", "max_pool", "pooled", "taggram")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bases", nargs="+", default=["musicnn_msd", "musicnn_mtt"],
                        help="pretrained tagger model folders (names under models/) to try")
    parser.add_argument("--embeddings", nargs="+", default=list(EMBEDDINGS), choices=EMBEDDINGS)
    parser.add_argument("--C", nargs="+", type=float, default=[0.01, 0.03, 0.1, 0.3, 1.0],
                        help="inverse L2 strengths to try")
    parser.add_argument("--data", nargs="+", type=Path, default=[SHARED_GTZAN / "genres", SHARED_GTZAN / "excerpts"])
    parser.add_argument("--train-split", type=Path, default=SHARED_GTZAN / "splits" / "train_filtered.txt")
    parser.add_argument("--valid-split", type=Path, default=SHARED_GTZAN / "splits" / "valid_filtered.txt")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "models" / "musicnn_genre")
    parser.add_argument("--reports", type=Path, default=REPO_ROOT / "reports")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


def embed(base, layer: str, x: np.ndarray) -> np.ndarray:
    """Embeddings of musicnn log-mel patches, shape (n, dim)."""
    from codeFeature.musicnn import embedding_forward

    return (base if layer == "taggram" else embedding_forward(base, layer)).forward(x)[0]


def fit_head(train_z, train_y, c: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_z)
    clf = LogisticRegression(C=c, max_iter=5000, random_state=seed).fit(scaler.transform(train_z), train_y)
    return scaler, clf


def folded_weights(scaler, clf) -> tuple[np.ndarray, np.ndarray]:
    """Dense weights equal to standardise-then-regress: softmax((z - mu) / sd @ W + b)."""
    coef = np.zeros((len(GENRES), clf.coef_.shape[1]))
    bias = np.full(len(GENRES), -1e4)  # a genre absent from training can never win
    coef[clf.classes_] = clf.coef_
    bias[clf.classes_] = clf.intercept_
    kernel = (coef / scaler.scale_).T
    return kernel.astype(np.float32), (bias - (scaler.mean_ / scaler.scale_) @ coef.T).astype(np.float32)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    import keras

    keras.utils.set_random_seed(args.seed)
    from codeFeature.model_io import load_model, save_model
    from codeFeature.musicnn import embedding_model
    from training.metrics import plot_confusion, scores

    tracks = find_audio(args.data)
    train_ids, valid_ids = read_split(args.train_split), read_split(args.valid_split)
    if set(train_ids) & set(valid_ids):
        raise SystemExit("the train and valid splits share tracks")
    t0 = time.perf_counter()
    results, embedded = [], {}
    for base_name in args.bases:
        base = load_model(base_name, precision="float32")
        train = build_segment_set(tracks, train_ids, base.config, cache_dir=args.cache)
        valid = build_segment_set(tracks, valid_ids, base.config, cache_dir=args.cache)
        for layer in args.embeddings:
            tz, vz = embed(base, layer, train.x), embed(base, layer, valid.x)
            embedded[base_name, layer] = (tz, vz)
            for c in args.C:
                scaler, clf = fit_head(tz, train.y, c, args.seed)
                probs = np.zeros((len(vz), len(GENRES)))
                probs[:, clf.classes_] = clf.predict_proba(scaler.transform(vz))
                s = scores(probs, valid.y, valid.tracks, GENRES)
                results.append({"base": base_name, "embedding": layer, "C": c, "valid_track_accuracy": s["track_accuracy"],
                                "valid_segment_accuracy": s["segment_accuracy"]})
                log.info("%s %-11s C=%-5g valid tracks %.3f segments %.3f", base_name, layer, c,
                         s["track_accuracy"], s["segment_accuracy"])
    best = max(results, key=lambda r: (r["valid_track_accuracy"], r["valid_segment_accuracy"]))
    log.info("selected %s", best)

    base = load_model(best["base"], precision="float32")
    train = build_segment_set(tracks, train_ids, base.config, cache_dir=args.cache)
    valid = build_segment_set(tracks, valid_ids, base.config, cache_dir=args.cache)
    tz, vz = embedded[best["base"], best["embedding"]]
    scaler, clf = fit_head(tz, train.y, best["C"], args.seed)
    kernel, bias = folded_weights(scaler, clf)

    tagger = base.keras_model
    trunk = tagger if best["embedding"] == "taggram" else embedding_model(tagger, best["embedding"])
    head = keras.layers.Dense(len(GENRES), activation="softmax", name="genre")
    genre = head(trunk.output)
    head.set_weights([kernel, bias])
    model = keras.Model(tagger.inputs, [genre, tagger.output], name="musicnn_genre")
    model.trainable = False

    valid_probs = np.asarray(model.predict(valid.x, verbose=0)[0])
    reference = np.zeros_like(valid_probs)
    reference[:, clf.classes_] = clf.predict_proba(scaler.transform(vz))
    np.testing.assert_allclose(valid_probs, reference, atol=1e-4)  # the fold is exact up to float32
    valid_scores = scores(valid_probs, valid.y, valid.tracks, GENRES)
    train_scores = scores(np.asarray(model.predict(train.x, verbose=0)[0]), train.y, train.tracks, GENRES)
    seconds = time.perf_counter() - t0

    headline = lambda s: {k: s[k] for k in ("track_accuracy", "segment_accuracy", "tracks", "segments")}
    manifest = {
        "name": args.out.name,
        "task": "genre",
        "description": f"Logistic regression on pretrained musicnn ({best['base'].split('_')[1].upper()}) "
                       f"{best['embedding']} embeddings; also outputs the 50 musicnn tags",
        "labels": list(GENRES),
        "extra_outputs": [{"name": "tags", "labels": list(base.labels)}],
        "feature_config": base.config.to_dict(),
        "preprocessing": base.manifest.get("preprocessing"),
        "bfloat16_layers": base.manifest.get("bfloat16_layers", []),
        "normalization": "in the model: the head's standardisation is folded into its Dense weights",
        "seed": args.seed,
        "base_model": {"name": best["base"], "source": base.manifest.get("source"), "license": base.manifest.get("license")},
        "training": {
            "data": [os.path.relpath(p, REPO_ROOT) for p in args.data],
            "splits": {n: {"file": os.path.relpath(p, REPO_ROOT), "sha256": file_sha256(p)}
                       for n, p in (("train", args.train_split), ("valid", args.valid_split))},
            "train_tracks": train.n_tracks, "train_segments": int(len(train.y)),
            "head": {"embedding": best["embedding"], "C": best["C"], "classifier": "sklearn LogisticRegression (L2)"},
            "skipped_files": train.skipped + valid.skipped,
        },
        "metrics": {"selection": "base, embedding and C chosen by valid track accuracy; the valid figures are the "
                                 "selection set's", "train": headline(train_scores), "valid": headline(valid_scores)},
        "parameters": int(model.count_params()),
        "training_seconds": round(seconds, 1),
        "license": base.manifest.get("license"),
        "reproduce": "python -m training.train_musicnn_head",
    }
    save_model(model, args.out, manifest)
    # the same figures with the bfloat16 layers in bfloat16, as load_model's "auto" runs them on CPUs with AMX
    # (through training.evaluate, whose per-track batches the figure depends on slightly in bfloat16)
    from training.evaluate import evaluate

    fast_scores = evaluate(load_model(args.out, precision="bfloat16"), args.data, split=args.valid_split,
                           cache_dir=args.cache)
    manifest["metrics"]["valid_bfloat16"] = headline(fast_scores)
    save_model(model, args.out, manifest)
    (args.out / "report.json").write_text(json.dumps({"model": args.out.name, "data": manifest["training"]["data"],
                                                      **valid_scores, "train": train_scores,
                                                      "selection": results}, indent=1) + "\n")
    report_dir = args.reports / args.out.name
    report_dir.mkdir(parents=True, exist_ok=True)
    plot_confusion(valid_scores["confusion"], GENRES, report_dir / "confusion_valid.png",
                   f"{args.out.name}: valid tracks (n={valid_scores['tracks']})")
    print(json.dumps({"model": args.out.name, "selected": best, "valid": headline(valid_scores),
                      "valid_bfloat16": headline(fast_scores),
                      "train": headline(train_scores), "seconds": round(seconds, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
