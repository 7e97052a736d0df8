"""Repeated artist-grouped, genre-stratified cross-validation of a musicnn genre-head recipe, per genre.

One command for the figure that selects and describes the genre head: the tracks of train + valid that
have audio and a known artist (all ten genres; valid alone has no hiphop or reggae) are cut into
``--folds`` folds by scikit-learn's ``StratifiedGroupKFold`` (groups = artists, so no artist is on
both sides of a fold; stratified by genre), ``--repeats`` times with seeds ``seed``, ``seed + 1``, ...
Each fold's head is fitted by the recipe (:func:`training.train_musicnn_head.fit_recipe`: the same
code as the shipped model's training) on the other folds and scores the held-out tracks by the vote
over their served 3 s segments. It reports:

* accuracy over tracks: the mean and standard deviation over every fold of every repeat, and each
  repeat's pooled accuracy (every track scored once);
* per-genre recall: correct / tracks summed over the repeats, with the genre's n (distinct tracks)
  and a 95 % Wilson interval on that n (the repeats re-use the same tracks, so they do not add n);
* the worst genre (lowest recall).

With ``--search`` it compares a small grid of recipes (SVM C and gamma, one-vs-rest machines balanced
or not, track or genre weights, overlapping training windows, same-genre mixup, training on other recording
chains) by the criterion ``mean accuracy + worst genre's recall`` and reports
them all, best first; the search fits without calibration (a temperature never changes a segment's
winner), the single-recipe report calibrates as the shipped model does.

    python -m training.head_cv_report --gtzan ~/gtzan                       # the shipped default's recipe
    python -m training.head_cv_report --gtzan ~/gtzan --weighting genre --train-hop 1.5
    python -m training.head_cv_report --gtzan ~/gtzan --search --write-report   # -> reports/musicnn_head_cv/search/

The recipe options are those of ``python -m training.train_musicnn_head`` (``--inputs``, ``--head``,
``--C``, ``--gamma-scale``, ``--weighting``, ``--train-hop``, ``--mixup``, ``--preset``, ...). The data is
found as by every training command (``--gtzan DIR``, ``GTZAN_DIR``, ``--data``); the artist index
defaults to the shipped ``training/splits/artists_train_valid.txt`` (Sturm's). Tracks without a known
artist are left out and counted. ``--repeats`` (default 5) and ``--cv-folds`` (default 5) set the protocol.
Results go to ``runs/head_cv_report/{recipe,search}/``; ``--write-report`` also writes the tracked
``reports/musicnn_head_cv/{recipe,search}/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from codeFeature.config import GENRES
from training.data import REPO_ROOT, RUNS_DIR, display_path, read_split
from training.datasets import audio_data, exit_on_missing_data

log = logging.getLogger("training.head_cv_report")
REPORT_DIR = REPO_ROOT / "reports" / "musicnn_head_cv"

#: The SVMs of ``--search``, on the shipped default's input (MSD penultimate + tags): the shipped one, and
#: one-vs-rest machines balanced within (``balanced``) over a range of smoother kernels (smaller gamma).
SEARCH_SVMS = [{"C": 1.0, "gamma_scale": 0.1}, {"C": 3.0, "gamma_scale": 0.1}]
SEARCH_SVMS += [{"C": c, "gamma_scale": g, "balanced": True}
                for c, g in ((1.0, 0.1), (1.0, 0.05), (1.0, 0.03), (2.0, 0.03), (1.0, 0.02), (2.0, 0.02))]
#: The extra training signal (overlapping windows, same-genre mixup) tried on these genre-weighted SVMs.
SEARCH_EXTRAS = [{"C": 1.0, "gamma_scale": 0.1, "balanced": True}, {"C": 1.0, "gamma_scale": 0.05, "balanced": True},
                 {"C": 1.0, "gamma_scale": 0.03, "balanced": True}]


def search_recipes(spec: str) -> list[dict]:
    """The recipes ``--search`` compares (small on purpose: each costs repeats x folds fits on shared cores)."""
    plain = [{"spec": spec, "kind": "svm", "params": p, "weighting": w, "train_hop": None, "mixup": 0.0}
             for p in SEARCH_SVMS for w in ("track", "genre")]
    extra = [{"spec": spec, "kind": "svm", "params": p, "weighting": "genre", "train_hop": hop, "mixup": mix}
             for p in SEARCH_EXTRAS for hop, mix in ((1.5, 0.0), (None, 1.0))]
    # the shipped machines also trained on other recording chains (training.chain_robustness says what for)
    chains = [{"spec": spec, "kind": "svm", "params": SEARCH_EXTRAS[-1], "weighting": "genre", "train_hop": None,
               "mixup": 0.0, "augment": ["band", "shellac"], "augment_as": how} for how in ("rows", "second-head")]
    return plain + extra + chains


def wilson(correct: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``correct / n`` (``(0, 1)`` when ``n`` is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def criterion(result: dict) -> float:
    """What ``--search`` maximises: mean track accuracy plus the worst genre's recall (both 0..1)."""
    return result["track_accuracy"]["mean"] + result["worst_genre"]["recall"]


def summarise(folds: list[dict], labels=GENRES) -> dict:
    """Accuracy and per-genre recall from held-out folds.

    Parameters
    ----------
    folds : list of dict
        One per fold of every repeat: ``repeat`` (int), ``true`` and ``pred`` (label indices of its held-out
        tracks, one per track) and ``tracks`` (their ids).
    """
    acc = [float(np.mean(np.asarray(f["true"]) == np.asarray(f["pred"]))) for f in folds]
    repeats = sorted({f["repeat"] for f in folds})
    pooled, per_genre_correct, per_genre_seen = [], np.zeros(len(labels)), np.zeros(len(labels))
    distinct: dict[int, set] = {i: set() for i in range(len(labels))}
    confusion = np.zeros((len(labels), len(labels)), int)
    for r in repeats:
        true = np.concatenate([f["true"] for f in folds if f["repeat"] == r]).astype(int)
        pred = np.concatenate([f["pred"] for f in folds if f["repeat"] == r]).astype(int)
        pooled.append(float(np.mean(true == pred)))
        np.add.at(confusion, (true, pred), 1)
    for f in folds:
        for t, g in zip(f["tracks"], f["true"]):
            distinct[int(g)].add(t)
    for i in range(len(labels)):
        per_genre_seen[i] = confusion[i].sum()
        per_genre_correct[i] = confusion[i, i]
    genres = {}
    for i, g in enumerate(labels):
        n = len(distinct[i])
        if not per_genre_seen[i]:
            genres[g] = {"recall": None, "n": 0, "wilson95": None}
            continue
        recall = per_genre_correct[i] / per_genre_seen[i]
        lo, hi = wilson(recall * n, n)
        genres[g] = {"recall": round(float(recall), 4), "n": n, "wilson95": [round(lo, 4), round(hi, 4)],
                     "correct_over_repeats": int(per_genre_correct[i]), "scored_over_repeats": int(per_genre_seen[i])}
    measured = {g: v for g, v in genres.items() if v["n"]}
    worst = min(measured, key=lambda g: (measured[g]["recall"], g)) if measured else None
    return {"repeats": len(repeats), "folds_scored": len(folds),
            "tracks": int(sum(len(v) for v in distinct.values())),
            "track_accuracy": {"mean": round(float(np.mean(acc)), 4), "std": round(float(np.std(acc)), 4),
                               "min_fold": round(float(np.min(acc)), 4), "max_fold": round(float(np.max(acc)), 4),
                               "pooled_per_repeat": [round(v, 4) for v in pooled],
                               "pooled_mean": round(float(np.mean(pooled)), 4),
                               "pooled_std": round(float(np.std(pooled)), 4)},
            "per_genre": genres,
            "worst_genre": {"genre": worst, **(measured[worst] if worst else {"recall": 0.0, "n": 0})},
            "genres_under_0.40": [g for g, v in measured.items() if v["recall"] < 0.40],
            "confusion_over_repeats": confusion.tolist()}


def track_confidence(probs, tracks, ids, pred) -> tuple[list[float], list[float]]:
    """Each track's confidence and margin as the verdict computes them: the mean probability of its
    winner ``pred`` over its segments, and how far the runner-up's mean probability lies under it."""
    confidence, margin = [], []
    for track, win in zip(ids, pred):
        mean = np.asarray(probs)[np.asarray(tracks) == track].mean(axis=0)
        runner = max(float(v) for i, v in enumerate(mean) if i != int(win))
        confidence.append(round(float(mean[int(win)]), 6))
        margin.append(round(float(mean[int(win)]) - runner, 6))
    return confidence, margin


def held_out_answers(folds: list[dict], labels=GENRES) -> list[dict]:
    """One row per held-out track of every repeat: its track id, repeat, true and voted genre, and the
    confidence and margin the verdict's not-sure thresholds read (``training.decision_thresholds --from-cv``)."""
    rows = []
    for f in folds:
        for i, track in enumerate(f["tracks"]):
            rows.append({"repeat": f["repeat"], "track": track, "true": labels[int(f["true"][i])],
                         "pred": labels[int(f["pred"][i])], "right": bool(f["true"][i] == f["pred"][i]),
                         "confidence": f["confidence"][i], "margin": f["margin"][i]})
    return rows


def grouped_cv(embedded, pool, artists, recipe: dict, *, repeats: int = 5, folds: int = 5, seed: int = 42,
               calibrate: bool = True, overlap=None, fit=None, augmented=()) -> list[dict]:
    """Held-out votes of every fold of ``repeats`` artist-grouped ``folds``-fold splits of ``pool``.

    ``recipe``: ``spec``, ``kind``, ``params``, ``weighting``, ``mixup`` (as ``fit_recipe`` takes them);
    ``augmented``: the embeddings of its recording chains (``recipe["augment"]``), added to each fold's training
    tracks only: the held-out tracks are always scored as they are.
    ``fit`` (tests) replaces :func:`training.train_musicnn_head.fit_recipe`. Repeat ``r`` splits with seed
    ``seed + r``, so repeat 0 is the single split of ``training.kfold`` and the manifest's ``cv_artist_5fold``.
    """
    from training.artists import artist_folds
    from training.metrics import track_votes
    from training.musicnn_heads import input_matrix

    if fit is None:
        from training.train_musicnn_head import fit_recipe as fit
    e0 = next(iter(embedded.values()))
    out = []
    for r in range(repeats):
        for k, (train_part, test_part) in enumerate(artist_folds(pool, artists, folds=folds, seed=seed + r)):
            head = fit(embedded, train_part, recipe["spec"], recipe["kind"], recipe["params"], recipe["weighting"],
                       artists=artists, calibrate=calibrate, seed=seed, overlap=overlap,
                       mixup=recipe.get("mixup", 0.0), augmented=augmented,
                       augment_as=recipe.get("augment_as", "rows"))
            mask = np.isin(e0.tracks, test_part)
            probs = head.probabilities(input_matrix(recipe["spec"], embedded, mask))
            true, pred, ids = track_votes(probs, e0.y[mask], e0.tracks[mask])
            confidence, margin = track_confidence(probs, e0.tracks[mask], ids, pred)
            out.append({"repeat": r, "fold": k, "true": true, "pred": pred, "tracks": ids,
                        "confidence": confidence, "margin": margin,
                        "train_artists": sorted({artists[t] for t in train_part}),
                        "test_artists": sorted({artists[t] for t in test_part})})
            log.info("repeat %d fold %d: %.3f (n=%d)", r + 1, k + 1, float(np.mean(true == pred)), len(ids))
    return out


def recipe_label(recipe: dict) -> str:
    p = ", ".join(k if v is True else f"{k}={v:g}" for k, v in recipe["params"].items())
    extra = (f", windows every {recipe['train_hop']:g} s" if recipe.get("train_hop") else "") + \
        (f", mixup {recipe['mixup']:g}" if recipe.get("mixup") else "") + \
        (("" if not recipe.get("augment") else
          f", with a second head also on {' + '.join(recipe['augment'])} recordings, averaged"
          if recipe.get("augment_as") == "second-head" else f", also as {' + '.join(recipe['augment'])} recordings"))
    return f"{recipe['kind']}({p}) on {recipe['spec']}, {recipe['weighting']} weights{extra}"


def markdown(results: list[dict], info: dict) -> str:
    lines = ["# Repeated artist-grouped cross-validation of the musicnn genre head", "",
             f"Generated by `{info['reproduce']}`. {info['protocol']}", "",
             f"Pool: {info['tracks']} tracks of train + valid with audio and a known artist "
             f"({info['artists']} artists; {info['tracks_without_artist']} tracks without an artist left out). "
             f"Wall-clock {info['seconds']:.0f} s on {info['cpu']} (load average {info['load_average']}"
             + (f" on {os.cpu_count()} cores: shared with other work, so the time is inflated)."
                if float(info["load_average"].split(" / ")[0]) > (os.cpu_count() or 1) else ").")
             + " A first run also computes the musicnn embeddings into the cache.",
             "",
             f"Criterion: {info['criterion']}."
             + (" The ranking is on GTZAN's audio as it is; the shipped recipe also trains on other recording "
                "chains, which this criterion cannot see: what they buy is measured by `python -m "
                "training.chain_robustness` (reports/musicnn_head_cv/chains/)."
                if any(r.get("shipped") and r["recipe"].get("augment") for r in results) else ""), "",
             "| recipe | mean acc. (std over folds) | pooled acc. per repeat | worst genre (recall, n) | under 0.40 | "
             "criterion |", "|---|---|---|---|---|---|"]
    for r in results:
        s = r["summary"]
        w = s["worst_genre"]
        lines.append(f"| {recipe_label(r['recipe'])}{' (shipped)' if r.get('shipped') else ''} | "
                     f"{s['track_accuracy']['mean']:.3f} ({s['track_accuracy']['std']:.3f}) | "
                     f"{' '.join(f'{v:.3f}' for v in s['track_accuracy']['pooled_per_repeat'])} | "
                     f"{w['genre']} {w['recall']:.3f} ({w['n']}) | {', '.join(s['genres_under_0.40']) or 'none'} | "
                     f"{r['criterion']:.3f} |")
    for r in results[:1] + [x for x in results[1:] if x.get("shipped")]:
        s = r["summary"]
        lines += ["", f"## Per genre: {recipe_label(r['recipe'])}{' (shipped)' if r.get('shipped') else ''}", "",
                  "| genre | recall | n (tracks) | 95 % Wilson interval |", "|---|---|---|---|"]
        for g, v in s["per_genre"].items():
            if v["n"]:
                lines.append(f"| {g} | {v['recall']:.3f} | {v['n']} | {v['wilson95'][0]:.2f}-{v['wilson95'][1]:.2f} |")
            else:
                lines.append(f"| {g} | not measured | 0 | - |")
    lines += ["", "Recall is correct / scored summed over the repeats; n is the genre's distinct tracks (each repeat "
              "scores every track once, so repeats do not add n) and the interval is on that n.",
              "Every row, with its per-genre figures, is in `results.json` beside this file.", ""]
    return "\n".join(lines)


def _same_recipe(recipe: dict, head: dict) -> bool:
    """Whether a CV report's ``recipe`` is the recipe recorded in a manifest's ``training.head``."""
    mixup = (head.get("mixup") or {}).get("ratio", 0.0)
    return (recipe["spec"] == head.get("inputs") and recipe["kind"] == head.get("kind")
            and all(head.get(k) == v for k, v in recipe["params"].items())
            and recipe["weighting"] == head.get("weighting")
            and (recipe.get("train_hop") or None) == head.get("train_hop_seconds")
            and float(recipe.get("mixup") or 0.0) == float(mixup)
            and list(recipe.get("augment") or []) == list(head.get("augment") or [])
            and (not recipe.get("augment") or recipe.get("augment_as", "rows") == head.get("augment_as", "rows")))


def figures_for(folder: Path, cv_report: Path, decision_report: Path, labelled_report: Path) -> list[dict]:
    """The manifest's ``figures``: what was measured on the model in ``folder``, on what, with n and the command.

    Read from the reports the commands wrote (never typed in): the train-only twin's valid accuracy
    (``metrics.valid``), the repeated artist-grouped CV of the same recipe (``cv_report``; refused if its
    recipe is not the manifest's), accuracy when sure on GTZAN valid (``decision_report``, the twin's held-out
    answers under this model's rule) and on real recordings in the model's genres (``labelled_report``).
    """
    manifest = json.loads((Path(folder) / "manifest.json").read_text())
    name = manifest["name"]
    out = []
    valid = manifest.get("metrics", {}).get("valid")
    if valid and valid.get("fit_on") == "train":
        out.append({"label": "valid tracks, the same recipe fitted on train only", "value": valid["track_accuracy"],
                    "n": valid["tracks"], "measured_on": "GTZAN valid (artist-disjoint from train; no hiphop or "
                    "reggae track)", "command": f"python -m training.evaluate --model runs/{name}_train_only "
                    "--gtzan DIR"})
    cv = json.loads(Path(cv_report).read_text())
    row = next((r for r in cv["results"] if _same_recipe(r["recipe"], manifest["training"]["head"])), None)
    if row is None:
        raise ValueError(f"{display_path(cv_report)} holds no row of {name}'s recipe: run its command again")
    summary = row["summary"]
    repeats = summary["repeats"]
    out.append({"label": f"artist-grouped cross-validation of the recipe, mean track accuracy ({repeats} repeats)",
                "value": summary["track_accuracy"]["mean"], "n": summary["tracks"],
                "measured_on": "GTZAN train + valid, all ten genres, folds grouped by artist", "command": cv["reproduce"]})
    worst = summary["worst_genre"]
    out.append({"label": f"the same cross-validation, worst genre's recall ({worst['genre']})",
                "value": worst["recall"], "n": worst["n"],
                "measured_on": "GTZAN train + valid, folds grouped by artist", "command": cv["reproduce"]})
    decision = json.loads(Path(decision_report).read_text())
    v = decision["valid"]
    out.append({"label": "right when sure, GTZAN valid (answers of the train-only twin)",
                "value": v["accuracy_when_sure"], "n": v["tracks"] - v["flagged"],
                "measured_on": f"GTZAN valid: sure on {v['tracks'] - v['flagged']} of {v['tracks']} tracks",
                "command": decision["criterion"].split(":")[0]})
    c = decision.get("cross_validation")
    if c:
        out.append({"label": "right when sure, artist-grouped cross-validation (held-out answers)",
                    "value": c["accuracy_when_sure"], "n": c["tracks"] - c["flagged"],
                    "measured_on": f"GTZAN train + valid, all ten genres: sure on {c['tracks'] - c['flagged']} of "
                    f"{c['tracks']} held-out answers ({c['tracks_distinct']} tracks x the repeats); the not-sure "
                    "thresholds were fitted on these answers", "command": decision["criterion"].split(":")[0]})
    real = json.loads(Path(labelled_report).read_text())
    g = real["in_genre"]
    if g["sure"]:
        out.append({"label": "right when sure, real recordings in the ten genres (not GTZAN)",
                    "value": g["accuracy_when_sure"], "n": g["sure"],
                    "measured_on": f"{g['files']} openly licensed recordings of the shared real-music set "
                    f"(label column, in-genre files only; sure on {g['sure']}); never used to fit or tune",
                    "command": real["reproduce"]})
    for f in out:
        f["value"] = round(float(f["value"]), 4)
    return out


def write_figures(folder: Path, **reports) -> list[dict]:
    """Write :func:`figures_for` into ``folder``'s manifest as ``figures`` (a rename: never half-written)."""
    figures = figures_for(folder, **reports)
    path = Path(folder) / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["figures"] = figures
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
    return figures


def with_recipe_options(own: argparse.ArgumentParser, argv, doc: str) -> argparse.Namespace:
    """``own``'s options (with ``-h``, which prints ``doc``; ``--repeats`` at least 1) and the recipe and data
    options of ``python -m training.train_musicnn_head``, in one namespace."""
    own.add_argument("-h", "--help", action="store_true")
    mine, rest = own.parse_known_args(argv)
    if mine.help:
        print(doc)
        print("Recipe and data options: those of python -m training.train_musicnn_head (--help there).")
        raise SystemExit(0)
    from training.train_musicnn_head import parse_args as recipe_args

    args = recipe_args(rest)
    for k, v in vars(mine).items():
        setattr(args, k, v)
    if getattr(args, "repeats", 1) < 1:
        raise SystemExit("error: --repeats must be at least 1")
    return args


def cv_pool(args) -> tuple[dict, dict, list[str], list[str]]:
    """The embedded audio (``{base: Embedded}``), the artist index, the tracks of train + valid with audio, and
    the pool: those of them with a known artist. Raises ValueError (in words) when a file cannot be read or
    the pool cannot fill ``args.cv_folds`` artist-grouped folds."""
    from training.artists import read_artists
    from training.musicnn_embeddings import embed_files
    from training.musicnn_heads import BASES
    from training.train_musicnn_head import single_base

    try:
        artists = read_artists(args.artists)
        pool_ids = read_split(args.train_split) + read_split(args.valid_split)
    except OSError as exc:
        raise ValueError(str(exc)) from exc
    b = single_base(args.inputs)
    embedded = {b: embed_files(BASES[b], args.data, **({} if args.cache is None else {"cache_dir": args.cache}))}
    have = set(embedded[b].tracks.tolist())
    with_audio = sorted(set(t for t in pool_ids if t in have))
    pool = [t for t in with_audio if t in artists]
    if len({artists[t] for t in pool}) < args.cv_folds:
        raise ValueError(f"{len(pool)} tracks of {len({artists[t] for t in pool})} artists cannot fill "
                         f"{args.cv_folds} artist-grouped folds")
    return embedded, artists, with_audio, pool


def parse_args(argv=None):
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--repeats", type=int, default=5)
    own.add_argument("--search", action="store_true", help="compare the recipes of SEARCH (no calibration)")
    own.add_argument("--write-report", action="store_true", help="also write reports/musicnn_head_cv/ (tracked)")
    own.add_argument("--out", type=Path, default=RUNS_DIR / "head_cv_report")
    own.add_argument("--write-figures", type=Path, metavar="MODEL_DIR",
                     help="only write MODEL_DIR's manifest key 'figures' from the reports (reports/musicnn_head_cv/"
                          "recipe/, reports/<model>/decision/decision.json and labelled.json); fits nothing")
    args = with_recipe_options(own, argv, __doc__)
    if args.cv_folds < 2:
        raise SystemExit("error: --cv-folds must be at least 2")
    return args


def cpu_name() -> str:
    try:
        fields = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
        if "model name" in fields:
            return f"{fields['model name']} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"
    except OSError:
        pass
    import platform

    return platform.processor() or "an unknown CPU"


@exit_on_missing_data
def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.write_figures is not None:
        from codeFeature.errors import ModelError

        folder = Path(args.write_figures)
        name = folder.name
        decision = REPO_ROOT / "reports" / name / "decision"
        try:
            figures = write_figures(folder, cv_report=REPORT_DIR / "recipe" / "results.json",
                                    decision_report=decision / "decision.json",
                                    labelled_report=decision / "labelled.json")
        except (OSError, ValueError, KeyError, ModelError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for f in figures:
            print(f"{f['label']}: {f['value']:.3f} (n={f['n']})")
        return 0
    args.data = audio_data(args.data, args.gtzan)
    try:
        embedded, artists, with_audio, pool = cv_pool(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from training.musicnn_embeddings import embed_files
    from training.musicnn_heads import BASES
    from training.train_musicnn_head import head_params

    b = next(iter(embedded))
    cache = {} if args.cache is None else {"cache_dir": args.cache}
    overlaps: dict = {}

    def overlap_for(hop):
        if hop and hop not in overlaps:
            overlaps[hop] = {b: embed_files(BASES[b], args.data, hop_seconds=hop, track_ids=pool, **cache)}
        return overlaps.get(hop)

    chains: dict = {}

    def chains_for(names):
        for c in names:
            if c not in chains:
                chains[c] = {b: embed_files(BASES[b], args.data, augment=c, track_ids=pool, **cache)}
        return tuple(chains[c] for c in names)

    shipped = {"spec": args.inputs, "kind": args.head, "params": head_params(args), "weighting": args.weighting,
               "train_hop": args.train_hop, "mixup": args.mixup,
               **({"augment": list(args.augment), "augment_as": args.augment_as} if args.augment else {})}
    recipes = [shipped]
    if args.search:
        recipes += [r for r in search_recipes(args.inputs) if r != shipped]
    calibrate = not (args.search or args.no_calibration)
    try:
        from codeFeature.model_io import read_manifest, resolve_model_dir

        shipped_head = read_manifest(resolve_model_dir("musicnn_genre"))["training"]["head"]
    except Exception:  # an install without the shipped default: no row is marked
        shipped_head = None
    t0 = time.perf_counter()
    results = []
    args.out.mkdir(parents=True, exist_ok=True)
    for i, recipe in enumerate(recipes):
        folds = grouped_cv(embedded, pool, artists, recipe, repeats=args.repeats, folds=args.cv_folds,
                           seed=args.seed, calibrate=calibrate, overlap=overlap_for(recipe["train_hop"]),
                           augmented=chains_for(recipe.get("augment") or ()))
        summary = summarise(folds)
        if i == 0:
            answers = held_out_answers(folds)
        row = {"recipe": recipe, "summary": summary, "criterion": round(criterion(summary), 4)}
        if shipped_head is not None and _same_recipe(recipe, shipped_head):
            row["shipped"] = True  # the recipe of the shipped default (models/musicnn_genre) when this ran
        results.append(row)
        w = summary["worst_genre"]
        print(f"{recipe_label(recipe)}: {summary['track_accuracy']['mean']:.3f} +- "
              f"{summary['track_accuracy']['std']:.3f}, worst {w['genre']} {w['recall']:.3f} (n={w['n']})",
              flush=True)
    results.sort(key=lambda r: -r["criterion"])
    seconds = time.perf_counter() - t0
    argv_shown = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--write-report"]
    skip = {"--gtzan", "--cache", "--out"}
    shown, drop = [], False
    for a in argv_shown:
        if drop:
            drop = False
            continue
        if a in skip:
            drop = True
            continue
        if a.split("=")[0] in skip:
            continue
        shown.append(a)
    info = {"protocol": f"{args.repeats} x artist-grouped, genre-stratified {args.cv_folds}-fold "
                        f"(StratifiedGroupKFold, groups = artists of {display_path(args.artists)}, seeds "
                        f"{args.seed}..{args.seed + args.repeats - 1}) over train + valid; every fold's head fitted "
                        + ("" if calibrate else "(without calibration) ")
                        + "on the other folds and scored on the held-out tracks by the vote over their segments.",
            "criterion": "mean track accuracy over the folds + the worst genre's recall",
            "tracks": len(pool), "artists": len({artists[t] for t in pool}),
            "tracks_without_artist": len(with_audio) - len(pool),
            "data": [str(display_path(p)) for p in args.data],
            "splits": [str(display_path(args.train_split)), str(display_path(args.valid_split))],
            "seconds": round(seconds, 1), "cpu": cpu_name(),
            "load_average": " / ".join(f"{v:.1f}" for v in os.getloadavg()),
            "reproduce": " ".join(["python -m training.head_cv_report", *shown]) + (" --write-report"
                                                                                  if args.write_report else "")}
    name = "search" if args.search else "recipe"
    outs = [args.out / name] + ([REPORT_DIR / name] if args.write_report else [])
    for out in outs:
        out.mkdir(parents=True, exist_ok=True)
        payload = json.dumps({**info, "results": results}, indent=1) + "\n"
        files = [("results.json", payload), ("README.md", markdown(results, info))]
        if not args.search:  # the held-out answers of the recipe, which --from-cv fits the not-sure thresholds on
            head = json.dumps({"reproduce": info["reproduce"], "recipe": shipped, "calibrated": calibrate})
            files.append(("held_out_answers.json", head[:-1] + ', "answers": [\n'
                          + ",\n".join(json.dumps(a) for a in answers) + "\n]}\n"))  # a row a line
        for fname, text in files:
            tmp = out / (fname + ".tmp")
            tmp.write_text(text)
            tmp.replace(out / fname)  # never a half-written report
    best = results[0]
    print(json.dumps({"best": recipe_label(best["recipe"]), "track_accuracy": best["summary"]["track_accuracy"]["mean"],
                      "std": best["summary"]["track_accuracy"]["std"], "worst_genre": best["summary"]["worst_genre"],
                      "tracks": info["tracks"], "report": [str(display_path(o)) for o in outs]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
