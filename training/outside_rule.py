"""Fit the "not one of the ten genres" rule of a model with musicnn tags, and check it on real recordings.

    python -m training.outside_rule --model models/musicnn_genre                    # fit, print the figures
    python -m training.outside_rule --model models/musicnn_genre --write-manifest   # ... and write decision.outside
    python -m training.outside_rule --model models/musicnn_genre --check            # the real_music table

The evidence is the model's 50 tags averaged over a song (their log-odds, standardised by the GTZAN
**train** tracks' mean and spread). A logistic regression tells the train tracks' profiles from a
synthetic corpus of sounds outside the ten genres (:mod:`training.outside_synth`: noises, clicks,
rumble, chirps, glides, speech-like signals, electronic dance loops); its regularisation C is chosen by
leaving one synthetic kind out at a time (the held-out kind's recall at the threshold below, mean over
kinds; ties to the smaller C). The threshold ``min_score`` is set on the GTZAN **valid** tracks with
audio so that at most ``--max-flagged`` (10 %) of them are flagged. Reference profiles (each synthetic
kind's average) decide "not music" against "music", and the genres' average train profiles are kept as
centroids. Nothing here reads ``real_music``: ``--check`` only reports on it, after the fit.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from codeFeature.runtime import prepare_process  # noqa: E402  (before TensorFlow and librosa)

prepare_process()

import numpy as np

from training.data import TRAIN_SPLIT, VALID_SPLIT, display_path, read_split
from training.datasets import add_gtzan_argument, audio_data, exit_on_missing_data

REAL_MUSIC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_music"
#: Tags that may describe what an outside song sounds like (styles and textures; not decades or moods).
DESCRIBE = ("electronic", "dance", "electronica", "electro", "House", "ambient", "experimental", "chillout",
            "folk", "Hip-Hop", "funk", "soul", "rnb", "punk", "indie", "acoustic", "instrumental", "easy listening")
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/musicnn_genre")
    add_gtzan_argument(p)
    p.add_argument("--data", nargs="+", type=Path, help="GTZAN-layout audio folders")
    p.add_argument("--max-flagged", type=float, default=0.10, help="share of valid tracks the rule may flag")
    p.add_argument("--per-kind", type=int, default=6, help="synthetic signals per generator")
    p.add_argument("--write-manifest", action="store_true", help="write decision.outside into the model's manifest")
    p.add_argument("--check", action="store_true", help="print the real_music table with the manifest's rule")
    p.add_argument("--real-music", type=Path, default=REAL_MUSIC)
    return p.parse_args(argv)


def _logit(x):
    x = np.clip(np.asarray(x, np.float64), 1e-4, 1 - 1e-4)
    return np.log(x / (1 - x))


def gtzan_profiles(model, data):
    """Per track of train and valid (with audio): mean tags, and genre index."""
    from training.musicnn_embeddings import embed_files

    base = model.manifest.get("base_model", {}).get("name", "musicnn_msd")
    e = embed_files(base, data)
    out = {}
    for split, path in (("train", TRAIN_SPLIT), ("valid", VALID_SPLIT)):
        ids = [t for t in read_split(path) if t in set(e.tracks.tolist())]
        out[split] = (np.array([e.layers["taggram"][e.tracks == t].mean(0) for t in ids]),
                      np.array([e.y[e.tracks == t][0] for t in ids]), ids)
    return out


def degraded_profiles(model, data, seed=0):
    """Mean tags of every GTZAN train track with audio, degraded as real recordings differ from GTZAN's:
    low-passed at 3-6 kHz (old or band-limited transfers) and mixed with pink noise at 15-25 dB SNR.
    They join the train tracks as music the rule must keep."""
    from scipy import signal as sps

    from codeFeature.audio import decode
    from codeFeature.predict import predict_audio
    from training.data import find_audio

    rng = np.random.default_rng(seed)
    tracks = find_audio(data)
    sr = model.config.sample_rate
    out = []
    for t in read_split(TRAIN_SPLIT):
        for path in tracks.get(t, []):
            x = decode(path, sample_rate=sr).astype(np.float64)
            b, a = sps.butter(4, rng.uniform(3000, 6000) / (sr / 2))
            y = sps.lfilter(b, a, x)
            noise = np.fft.irfft(np.fft.rfft(rng.normal(size=len(y))) / np.sqrt(np.maximum(
                np.arange(len(y) // 2 + 1), 1)), len(y))
            snr = rng.uniform(15, 25)
            noise *= np.sqrt(np.mean(y ** 2) / max(np.mean(noise ** 2), 1e-12) / 10 ** (snr / 10))
            out.append(predict_audio((y + noise).astype(np.float32), model=model).extras["tags"].mean(0))
    return np.array(out)


def synthetic_profiles(model, per_kind):
    from codeFeature.predict import predict_audio
    from training.outside_synth import corpus

    rows = []
    for family, kind, signal in corpus(model.config.sample_rate, per_kind=per_kind):
        p = predict_audio(signal, model=model)
        rows.append((family, kind, p.extras["tags"].mean(0)))
    return rows


def _fit(X, Y, C):
    from sklearn.linear_model import LogisticRegression

    weight = np.where(Y == 1, (Y == 0).sum() / max(1, (Y == 1).sum()), 1.0)
    return LogisticRegression(C=C, max_iter=5000).fit(X, Y, sample_weight=weight)


def threshold(scores, max_flagged):
    """The smallest threshold that flags (score > threshold) at most ``max_flagged`` of ``scores``."""
    k = int(np.floor(max_flagged * len(scores)))
    return float(np.sort(scores)[::-1][k])


def fit(model, data, max_flagged, per_kind):
    g = gtzan_profiles(model, data)
    syn = synthetic_profiles(model, per_kind)
    degraded = degraded_profiles(model, data)
    train_p, train_y, _ = g["train"]
    valid_p, valid_y, valid_ids = g["valid"]
    mu, sd = _logit(train_p).mean(0), _logit(train_p).std(0) + 1e-6
    z = lambda P: (_logit(P) - mu) / sd  # noqa: E731
    zt, zv = z(train_p), z(valid_p)
    zt = np.vstack([zt, z(degraded)])  # the music the rule must keep: train tracks, clean and degraded
    train_y = np.r_[train_y, np.full(len(degraded), -1)]
    zs = z(np.array([r[2] for r in syn]))
    kinds = np.array([r[1] for r in syn])
    recall_by_c = {}
    for C in C_GRID:
        recalls = []
        for kind in sorted(set(kinds)):
            keep = kinds != kind
            lr = _fit(np.vstack([zt, zs[keep]]), np.r_[np.zeros(len(zt)), np.ones(keep.sum())], C)
            thr = threshold(lr.predict_proba(zv)[:, 1], max_flagged)
            recalls.append(float((lr.predict_proba(zs[~keep])[:, 1] > thr).mean()))
        recall_by_c[C] = float(np.mean(recalls))
    best_c = max(C_GRID, key=lambda c: (round(recall_by_c[c], 6), -c))
    lr = _fit(np.vstack([zt, zs]), np.r_[np.zeros(len(zt)), np.ones(len(zs))], best_c)
    valid_scores = lr.predict_proba(zv)[:, 1]
    thr = threshold(valid_scores, max_flagged)
    tags = list(model.extra_labels_of("tags")) if hasattr(model, "extra_labels_of") else list(
        next(s["labels"] for s in model.manifest["extra_outputs"] if s["name"] == "tags"))
    families = {r[1]: r[0] for r in syn}
    spec = {
        "tags": tags, "transform": "logit", "mean": _round(mu), "scale": _round(sd),
        "centroids": [_round(zt[train_y == k].mean(0)) for k in range(len(model.labels))],
        "max_distance": 0.0,
        "weights": _round(lr.coef_[0]), "bias": round(float(lr.intercept_[0]), 5), "min_score": round(thr, 5),
        "not_music": {k: _round(zs[kinds == k].mean(0)) for k in sorted(set(kinds)) if families[k] == "not music"},
        "music": {k: _round(zs[kinds == k].mean(0)) for k in sorted(set(kinds)) if families[k] == "music"},
        "describe": [t for t in DESCRIBE if t in tags], "min_describe": 1.0,
        "source": (f"python -m training.outside_rule --model {display_path(Path(model.path))} --write-manifest: "
                   f"logistic regression (C={best_c:g}, chosen by leave-one-synthetic-kind-out recall) of the "
                   f"{len(train_p)} GTZAN train tracks (clean and degraded) against {len(zs)} synthetic outside sounds "
                   f"(training.outside_synth); min_score flags at most {max_flagged:.0%} of the {len(zv)} valid "
                   f"tracks with audio; real_music not used"),
    }
    figures = {"C": best_c, "leave_one_kind_out_recall": {f"{c:g}": round(r, 3) for c, r in recall_by_c.items()},
               "valid_tracks": len(zv), "valid_flagged": int((valid_scores > thr).sum()),
               "synthetic_flagged_in_fit": f"{int((lr.predict_proba(zs)[:, 1] > thr).sum())}/{len(zs)}",
               "min_score": round(thr, 4)}
    return spec, figures


def _round(v):
    return [round(float(x), 5) for x in v]


def check(model_ref, real_music: Path) -> dict:
    """The real_music table: file, label, verdict; and the counts the issue asks for."""
    from codeFeature.model_io import load_model
    from codeFeature.predict import predict_file

    model = load_model(model_ref, precision="float32")
    rows = list(csv.DictReader(open(real_music / "labels.csv")))
    counts = {"outside": 0, "outside_hedged": 0, "outside_said_outside": 0, "in_genre": 0, "in_genre_right": 0,
              "in_genre_sure": 0, "in_genre_right_when_sure": 0}
    print(f"{'file':38s} {'label':24s} verdict")
    for r in rows:
        v = predict_file(real_music / r["file"], model=model).verdict
        print(f"{r['file'][:38]:38s} {r['label']:24s} {v.headline}", flush=True)
        if r["label"].startswith("outside"):
            counts["outside"] += 1
            counts["outside_hedged"] += v.not_sure
            counts["outside_said_outside"] += v.state == "outside"
        else:
            counts["in_genre"] += 1
            counts["in_genre_right"] += v.state == "genre" and v.genre == r["label"]
            counts["in_genre_sure"] += v.state == "genre"
            counts["in_genre_right_when_sure"] += v.state == "genre" and v.genre == r["label"]
    print(json.dumps(counts))
    return counts


@exit_on_missing_data
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.check:
        if not (args.real_music / "labels.csv").exists():
            print(f"error: no {args.real_music}/labels.csv", file=sys.stderr)
            return 2
        check(args.model, args.real_music)
        return 0
    from codeFeature.model_io import load_model, read_manifest, resolve_model_dir

    model = load_model(args.model, precision="float32")
    if not any(s.get("name") == "tags" for s in model.manifest.get("extra_outputs", [])):
        print(f"error: {args.model} has no tags output; the outside rule reads musicnn's tags", file=sys.stderr)
        return 2
    spec, figures = fit(model, audio_data(args.data, args.gtzan), args.max_flagged, args.per_kind)
    print(json.dumps(figures))
    if args.write_manifest:
        folder = resolve_model_dir(args.model)
        manifest = read_manifest(folder)
        manifest.setdefault("decision", {})["outside"] = spec
        tmp = folder / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, folder / "manifest.json")
        print(f"wrote decision.outside into {display_path(folder / 'manifest.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
