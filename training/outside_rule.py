"""Fit the "not one of the ten genres" rule of a model with musicnn tags, and check it on real recordings.

    python -m training.outside_rule --model models/musicnn_genre                    # fit, print the figures
    python -m training.outside_rule --model models/musicnn_genre --write-manifest   # ... and write decision.outside
    python -m training.outside_rule --model models/musicnn_genre --check            # the real_music table

The evidence is what every verdict already has: the model's 50 tags and its genre probabilities, per
segment. The tags are averaged over a song, turned into log-odds and standardised by the GTZAN
**train** tracks' mean and spread (``z``). The rule has two stages (docs/outside.md):

1. **Is it music?** A logistic regression tells music from non-music by ``z``: music is every GTZAN
   train track, clean and degraded as real recordings differ from GTZAN's (band-limited with noise;
   a 78-rpm-like transfer: narrow band, crackle and hiss); non-music is the synthetic corpus of
   :mod:`training.outside_synth` (noises, rain, crowd, typing, a train, birds, whale-like glides,
   speech-like signals). Its regularisation C is chosen by leaving one synthetic kind out at a time
   (the held-out kind's recall at the threshold, mean over kinds; ties to the smaller C). The
   threshold ``min_score`` flags at most ``--max-not-music`` (5 %) of the GTZAN **valid** tracks in
   each of their versions (clean and each degradation): the largest of those thresholds.
2. **Another style of music?** Only when the genre head is unsure (its winner's mean probability
   below ``--max-confidence``) and a tag that names a style outside the ten (electronic, dance,
   electro, electronica, House) stands out above the train tracks: ``min_style`` is the standardised
   level that at most ``--max-style`` (5 %) of the valid tracks reach in any version, *whatever* the
   head says, so the head's confidence (optimistic on valid, which the shipped head was refit on) only
   makes it fire less.

Nothing here reads ``real_music``: ``--check`` only reports on it, after the fit. The model's
outputs on every GTZAN file and version are cached under ``.cache/outside_rule/`` (keyed by the
file, the version and the model's weights), so a refit after changing a threshold takes seconds.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import zlib
from pathlib import Path

from codeFeature.runtime import prepare_process  # noqa: E402  (before TensorFlow and librosa)

prepare_process()

import numpy as np

from training.data import REPO_ROOT, TRAIN_SPLIT, VALID_SPLIT, display_path, find_audio, read_split
from training.datasets import add_gtzan_argument, audio_data, exit_on_missing_data
from training.recording_chain import degrade  # the versions of every GTZAN file

REAL_MUSIC = REPO_ROOT.parent / "shared" / "data" / "real_music"
CACHE = REPO_ROOT / ".cache" / "outside_rule"
#: Tags that may describe what an outside song sounds like (styles and textures; not decades or moods).
DESCRIBE = ("electronic", "dance", "electronica", "electro", "House", "ambient", "experimental", "chillout",
            "folk", "Hip-Hop", "funk", "soul", "rnb", "punk", "indie", "acoustic", "instrumental", "easy listening")
#: Tags that name a style of music outside GTZAN's ten genres.
STYLE_TAGS = ("electronic", "dance", "electronica", "electro", "House")
#: Versions of every GTZAN file: the music the rule must keep (clean and degraded as real recordings differ).
KEEP_VERSIONS = ("clean", "band", "shellac")
#: Versions only reported: GTZAN mixed with pink noise at 10 dB SNR (music, if noisy).
CHECK_VERSIONS = ("noise10",)
C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)
#: Segments from which a GTZAN track counts as a full track (30 s) rather than a 3 s excerpt in the figures.
FULL_SEGMENTS = 5
#: Bump when a degradation or the synthetic corpus changes, so the cache is not reused.
RECIPE = 1


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="models/musicnn_genre")
    add_gtzan_argument(p)
    p.add_argument("--data", nargs="+", type=Path, help="GTZAN-layout audio folders")
    p.add_argument("--max-not-music", type=float, default=0.05,
                   help="share of valid tracks (in each version) stage 1 may call not music")
    p.add_argument("--max-style", type=float, default=0.05,
                   help="share of valid tracks (in each version) whose style tags may reach min_style")
    p.add_argument("--max-confidence", type=float, default=0.5,
                   help="stage 2 fires only while the head's winner has less than this mean probability")
    p.add_argument("--no-noise-check", action="store_true",
                   help="skip the GTZAN tracks mixed with noise (only reported, never fitted on)")
    p.add_argument("--per-kind", type=int, default=8, help="synthetic signals per generator")
    p.add_argument("--cache", type=Path, default=CACHE)
    p.add_argument("--write-manifest", action="store_true", help="write decision.outside into the model's manifest")
    p.add_argument("--check", action="store_true", help="print the real_music table with the manifest's rule")
    p.add_argument("--real-music", type=Path, default=REAL_MUSIC)
    p.add_argument("--precision", default=None,
                   help="--check: the precision to load the model at (default: the command line's, auto); when "
                        "fitting: also count the clean GTZAN tracks the fitted rule flags at this precision")
    return p.parse_args(argv)


def logit(x):
    x = np.clip(np.asarray(x, np.float64), 1e-4, 1 - 1e-4)
    return np.log(x / (1 - x))


# --- evidence: the model's probabilities and tags, per segment, cached ---

def _weights_key(model) -> str:
    """The model's weights, and its inference path unless it is the reference (TensorFlow float32), so outputs of
    another path (int8) are never mixed with the reference's in the cache."""
    weights = hashlib.sha1((Path(model.path) / "model.weights.h5").read_bytes()).hexdigest()
    path = (getattr(model, "engine", "tensorflow"), getattr(model, "precision", "float32"))
    return weights if path == ("tensorflow", "float32") else f"{weights}|{path[0]} {path[1]}"


def _cached(cache: Path, key: str, compute):
    path = cache / f"{hashlib.sha1(key.encode()).hexdigest()}.npz"
    if path.exists():
        with np.load(path) as record:
            return record["probabilities"], record["tags"]
    probabilities, tags = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    with open(tmp, "wb") as handle:
        np.savez(handle, probabilities=probabilities, tags=tags)
    os.replace(tmp, path)  # an interrupted run never leaves a half-written record
    return probabilities, tags


def _evidence(model, samples):
    from codeFeature.predict import predict_audio

    p = predict_audio(samples, model=model)
    return p.probabilities.astype(np.float32), p.extras["tags"].astype(np.float32)


def gtzan_evidence(model, data, versions, cache: Path) -> list[dict]:
    """One record per GTZAN track of train and valid with audio and per version: ``split``, ``track``,
    ``version``, ``probabilities`` and ``tags`` (every segment of the track's files, in order)."""
    from codeFeature.audio import decode

    split = {t: "train" for t in read_split(TRAIN_SPLIT)}
    split.update({t: "valid" for t in read_split(VALID_SPLIT)})
    weights = _weights_key(model)
    sr = model.config.sample_rate
    records = []
    tracks = {t: paths for t, paths in find_audio(data).items() if t in split}
    for version in versions:  # every track's clean version first: the figures that matter most come first
        for track, paths in tracks.items():
            probabilities, tags = [], []
            for path in paths:
                stat = path.stat()
                key = json.dumps([RECIPE, weights, str(path.resolve()), stat.st_size, int(stat.st_mtime), version])
                seed = zlib.crc32(f"{path.name}|{path.parent.parent.name}|{version}".encode())
                p, t = _cached(cache, key, lambda: _evidence(model, degrade(decode(path, sample_rate=sr), version,
                                                                             sr, seed)))
                probabilities.append(p)
                tags.append(t)
            records.append({"split": split[track], "track": track, "version": version,
                            "probabilities": np.concatenate(probabilities), "tags": np.concatenate(tags)})
    return records


def synthetic_evidence(model, per_kind: int, cache: Path) -> list[dict]:
    """One record per signal of :func:`training.outside_synth.corpus`: ``family``, ``kind``, ``probabilities``
    and ``tags``."""
    from training.outside_synth import corpus

    weights = _weights_key(model)
    records = []
    for i, (family, kind, signal) in enumerate(corpus(model.config.sample_rate, per_kind=per_kind)):
        key = json.dumps([RECIPE, weights, "synthetic", per_kind, i, kind])
        p, t = _cached(cache, key, lambda: _evidence(model, signal))
        records.append({"family": family, "kind": kind, "probabilities": p, "tags": t})
    return records


# --- the fit (pure arithmetic on the evidence: tested without a model) ---

def threshold(scores, max_flagged):
    """The smallest threshold that flags (score > threshold) at most ``max_flagged`` of ``scores``."""
    k = int(np.floor(max_flagged * len(scores)))
    return float(np.sort(scores)[::-1][k])


def _fit_lr(X, Y, C):
    from sklearn.linear_model import LogisticRegression

    weight = np.where(Y == 1, (Y == 0).sum() / max(1, (Y == 1).sum()), 1.0)
    return LogisticRegression(C=C, max_iter=5000).fit(X, Y, sample_weight=weight)


def _by_version(records, split):
    out: dict[str, list] = {}
    for r in records:
        if r["split"] == split:
            out.setdefault(r["version"], []).append(r)
    return out


def fit_rule(gtzan: list[dict], synthetic: list[dict], tags: list[str], n_genres: int, *,
             max_not_music: float = 0.05, max_style: float = 0.05, max_confidence: float = 0.5,
             c_grid=C_GRID, source: str = "") -> tuple[dict, dict]:
    """The manifest's ``decision.outside`` object and the fit's figures, from the evidence records of
    :func:`gtzan_evidence` (versions :data:`KEEP_VERSIONS` at least) and :func:`synthetic_evidence`."""
    profile = lambda rs: logit(np.array([r["tags"].mean(0) for r in rs]))  # noqa: E731
    train, valid = _by_version(gtzan, "train"), _by_version(gtzan, "valid")
    clean = profile(train["clean"])
    mu, sd = clean.mean(0), clean.std(0) + 1e-6
    z = lambda rs: (profile(rs) - mu) / sd  # noqa: E731
    keep = [v for v in KEEP_VERSIONS if v in train]
    zt = np.vstack([z(train[v]) for v in keep])
    zv = {v: z(rs) for v, rs in valid.items()}
    not_music = [r for r in synthetic if r["family"] == "not music"]
    zs = z(not_music)
    kinds = np.array([r["kind"] for r in not_music])

    def min_score_of(lr):
        return max(threshold(lr.predict_proba(zv[v])[:, 1], max_not_music) for v in keep)

    recall_by_c = {}
    for C in c_grid:
        recalls = []
        for kind in sorted(set(kinds)):
            held = kinds == kind
            lr = _fit_lr(np.vstack([zt, zs[~held]]), np.r_[np.zeros(len(zt)), np.ones((~held).sum())], C)
            recalls.append(float((lr.predict_proba(zs[held])[:, 1] > min_score_of(lr)).mean()))
        recall_by_c[C] = float(np.mean(recalls))
    best_c = max(c_grid, key=lambda c: (round(recall_by_c[c], 6), -c))
    lr = _fit_lr(np.vstack([zt, zs]), np.r_[np.zeros(len(zt)), np.ones(len(zs))], best_c)
    min_score = min_score_of(lr)
    style_index = [tags.index(t) for t in STYLE_TAGS if t in tags]
    min_style = max(threshold(zv[v][:, style_index].max(axis=1), max_style) for v in keep)
    genre_of = {r["track"]: int(np.argmax(np.bincount(r["probabilities"].argmax(1)))) for r in train["clean"]}
    train_y = np.array([genre_of[r["track"]] for r in train["clean"]])
    spec = {
        "tags": list(tags), "transform": "logit", "mean": _round(mu), "scale": _round(sd),
        # each genre's typical profile, by the head's answer on the train tracks (kept for the distance)
        "centroids": [_round(z(train["clean"])[train_y == k].mean(0)) if (train_y == k).any() else [0.0] * len(tags)
                      for k in range(n_genres)],
        "max_distance": 0.0,
        "weights": _round(lr.coef_[0]), "bias": round(float(lr.intercept_[0]), 5),
        "min_score": round(min_score, 5),
        # no reference profiles of non-music: the synthetic kinds named real recordings wrongly (docs/outside.md)
        "not_music": {},
        "music": {},
        "describe": [t for t in DESCRIBE if t in tags], "min_describe": 1.0,
        "style_tags": [tags[i] for i in style_index], "min_style": round(min_style, 5),
        "max_confidence": max_confidence, "score_kind": "not music", "source": source,
    }
    figures = {"C": best_c, "leave_one_kind_out_recall": {f"{c:g}": round(r, 3) for c, r in recall_by_c.items()},
               "min_score": round(min_score, 4), "min_style": round(min_style, 4)}
    return spec, figures


def _round(v):
    return [round(float(x), 5) for x in v]


def evaluate(spec: dict, gtzan: list[dict], synthetic: list[dict], labels, base_rule=None) -> dict:
    """How the fitted rule answers every evidence record, through :func:`codeFeature.decision.decide` with the
    model's own rule (``base_rule``: its not-sure thresholds) and ``spec`` as its outside rule."""
    import dataclasses

    from codeFeature.decision import DecisionRule, OutsideRule, decide

    rule = dataclasses.replace(base_rule or DecisionRule(), outside=OutsideRule.from_dict(spec))
    out: dict = {}
    for split in ("train", "valid"):
        for version, rs in _by_version(gtzan, split).items():
            states = [decide(r["probabilities"], labels, rule=rule, tags=r["tags"]) for r in rs]
            # a full 30 s track has about ten segments, an excerpt one: their tags differ in steadiness
            full = [len(r["tags"]) >= FULL_SEGMENTS for r in rs]
            out[f"gtzan {split} {version}"] = {
                "tracks": len(rs), "outside": sum(v.state == "outside" for v in states),
                "not_music": sum(v.outside_kind == "not music" for v in states),
                "full_tracks": sum(full), "full_outside": sum(v.state == "outside" for v, f in zip(states, full) if f)}
    for kind in dict.fromkeys(r["kind"] for r in synthetic):
        vs = [decide(r["probabilities"], labels, rule=rule, tags=r["tags"]) for r in synthetic if r["kind"] == kind]
        out[f"synthetic {kind}"] = {"signals": len(vs), "outside": sum(v.state == "outside" for v in vs),
                                   "not_music": sum(v.outside_kind == "not music" for v in vs),
                                   "hedged": sum(v.not_sure for v in vs)}
    return out


def check(model_ref, real_music: Path, precision=None) -> dict:
    """The real_music table: file, label, verdict; and the counts the issue asks for. The model is loaded as
    the command line loads it (``precision`` None: its default), so these are the answers people get."""
    from codeFeature.model_io import load_model
    from codeFeature.predict import predict_file

    model = load_model(model_ref, precision=precision)
    print(f"{model.name}: {getattr(model, 'engine', '')} {getattr(model, 'precision', '')}".rstrip())
    with open(real_music / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    counts = {"outside": 0, "outside_hedged": 0, "outside_said_outside": 0, "in_genre": 0, "in_genre_right": 0,
              "in_genre_sure": 0, "in_genre_outside": 0}
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
            counts["in_genre_outside"] += v.state == "outside"
    print(json.dumps(counts))
    return counts


@exit_on_missing_data
def main(argv=None) -> int:
    from codeFeature.errors import GenreError

    args = parse_args(argv)
    try:
        return run(args)
    except GenreError as exc:  # a model that is not there or cannot load: said in words, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args) -> int:
    if args.check:
        if not (args.real_music / "labels.csv").exists():
            print(f"error: no {args.real_music}/labels.csv", file=sys.stderr)
            return 2
        check(args.model, args.real_music, args.precision)
        return 0
    from codeFeature.model_io import load_model, read_manifest, resolve_model_dir

    model = load_model(args.model, precision="float32")
    spec_tags = next((s for s in model.manifest.get("extra_outputs", []) if s.get("name") == "tags"), None)
    if spec_tags is None:
        print(f"error: {args.model} has no tags output; the outside rule reads musicnn's tags", file=sys.stderr)
        return 2
    data = audio_data(args.data, args.gtzan)
    synthetic = synthetic_evidence(model, args.per_kind, args.cache)
    gtzan = gtzan_evidence(model, data, KEEP_VERSIONS + (() if args.no_noise_check else CHECK_VERSIONS), args.cache)
    n_valid = sum(r["split"] == "valid" and r["version"] == "clean" for r in gtzan)
    source = (f"python -m training.outside_rule --model {display_path(Path(model.path))} --write-manifest: "
              f"stage 1, not music: logistic regression of the GTZAN train tracks (clean, band-limited, 78-rpm-like) "
              f"against {sum(r['family'] == 'not music' for r in synthetic)} synthetic non-music sounds "
              f"(training.outside_synth), min_score flags at most {args.max_not_music:.0%} of the {n_valid} valid "
              f"tracks in each version; stage 2, another style: a style tag at or above the level at most "
              f"{args.max_style:.0%} of them reach, while the head's winner is under {args.max_confidence:.0%}; "
              f"real_music not used")
    spec, figures = fit_rule(gtzan, synthetic, list(spec_tags["labels"]), len(model.labels),
                             max_not_music=args.max_not_music, max_style=args.max_style,
                             max_confidence=args.max_confidence, source=source)
    figures["answers"] = evaluate(spec, gtzan, synthetic, model.labels, model.decision_rule)
    if args.precision is not None:  # the fit reads float32; people may get another path (int8)
        served = load_model(args.model, precision=args.precision)
        answers = evaluate(spec, gtzan_evidence(served, data, ("clean",), args.cache), [], served.labels,
                           served.decision_rule)
        figures[f"answers at {served.engine} {served.precision}"] = answers
    print(json.dumps(figures, indent=1))
    if args.write_manifest:
        folder = resolve_model_dir(args.model)
        manifest = read_manifest(folder)
        manifest.setdefault("decision", {})["outside"] = spec
        tmp = folder / "manifest.json.tmp"
        with open(tmp, "w") as handle:
            handle.write(json.dumps(manifest, indent=2) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, folder / "manifest.json")
        print(f"wrote decision.outside into {display_path(folder / 'manifest.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
