"""How much of the genre head's accuracy survives another recording chain, with and without training on them.

Real recordings reach the tool through chains GTZAN's CD and radio rips never went through: a 1920s shellac
disc, a band-limited transfer, a noisy room. This command measures what that costs and what training on
such chains (``train_musicnn_head --augment``, :mod:`training.recording_chain`) buys back, by the
same repeated artist-grouped, genre-stratified cross-validation as ``training.head_cv_report`` (train +
valid, 305 tracks, no artist on both sides of a fold): each fold's head is fitted by the recipe twice, on the
training folds' audio alone and on it plus its recording-chain versions, and the held-out tracks are scored
as they are **and** as every chain gives them (``band``, ``shellac``, ``noise10``; ``noise10`` is never
trained on, so it shows whether the gain carries to a chain the head has not seen). A held-out track's
degraded versions are never in its fold's training rows.

    python -m training.chain_robustness --gtzan ~/gtzan                 # 5 x 5 folds -> runs/chain_robustness/
    python -m training.chain_robustness --gtzan ~/gtzan --write-report  # also reports/musicnn_head_cv/chains/

The recipe options are ``train_musicnn_head``'s (``--augment`` names the chains of the augmented fit;
default: band and shellac). Heads are fitted without calibration: a temperature never changes a
segment's winner, so the vote and the accuracy are the calibrated head's.
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

from training.data import RUNS_DIR, display_path
from training.datasets import audio_data, exit_on_missing_data
from training.head_cv_report import REPORT_DIR, cpu_name, cv_pool, recipe_label, summarise, with_recipe_options

log = logging.getLogger("training.chain_robustness")

#: The chains the augmented fit trains on unless ``--augment`` names others.
CHAINS = ("band", "shellac")


def held_out_by_chain(embedded, chains: dict, pool, artists, recipe: dict, augment=(), *, repeats=5, folds=5,
                      seed=42, fit=None) -> dict[str, list[dict]]:
    """Held-out track votes per scoring chain: ``{"clean" | chain: [fold dicts as head_cv_report's]}``.

    ``embedded``: ``{base: Embedded}`` of the audio as it is; ``chains``: ``{name: {base: Embedded}}`` of the
    same tracks through each chain (every chain scored; those named in ``augment`` also trained on).
    """
    from training.artists import artist_folds
    from training.metrics import track_votes
    from training.musicnn_heads import input_matrix

    if fit is None:
        from training.train_musicnn_head import fit_recipe as fit
    scored = {"clean": embedded, **chains}
    out: dict[str, list[dict]] = {name: [] for name in scored}
    for r in range(repeats):
        for k, (train_part, test_part) in enumerate(artist_folds(pool, artists, folds=folds, seed=seed + r)):
            head = fit(embedded, train_part, recipe["spec"], recipe["kind"], recipe["params"], recipe["weighting"],
                       artists=artists, calibrate=False, seed=seed, mixup=recipe.get("mixup", 0.0),
                       augmented=tuple(chains[c] for c in augment), augment_as=recipe.get("augment_as", "rows"))
            for name, e in scored.items():
                e0 = next(iter(e.values()))
                mask = np.isin(e0.tracks, test_part)
                true, pred, ids = track_votes(head.probabilities(input_matrix(recipe["spec"], e, mask)),
                                              e0.y[mask], e0.tracks[mask])
                out[name].append({"repeat": r, "fold": k, "true": true, "pred": pred, "tracks": ids})
            log.info("repeat %d fold %d (augment %s) done", r + 1, k + 1, "+".join(augment) or "none")
    return out


def table(results: dict) -> list[str]:
    """Markdown rows: one per fitted recipe and scoring chain."""
    lines = ["| trained on | scored as | track accuracy (mean +- sd over folds) | worst genre (recall) | tracks |",
             "|---|---|---|---|---|"]
    for trained, by_chain in results.items():
        for chain, s in by_chain.items():
            acc, worst = s["track_accuracy"], s["worst_genre"]
            lines.append(f"| {trained} | {chain} | {acc['mean']:.3f} +- {acc['std']:.3f} | "
                         f"{worst['genre']} ({worst['recall']:.3f}) | {s['tracks']} |")
    return lines


def parse_args(argv=None):
    own = argparse.ArgumentParser(add_help=False)
    own.add_argument("--repeats", type=int, default=5)
    own.add_argument("--write-report", action="store_true", help="also write reports/musicnn_head_cv/chains/")
    own.add_argument("--out", type=Path, default=RUNS_DIR / "chain_robustness")
    args = with_recipe_options(own, argv, __doc__)
    if not args.augment:
        args.augment = CHAINS
    return args


@exit_on_missing_data
def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    from training.musicnn_embeddings import embed_files
    from training.musicnn_heads import BASES
    from training.recording_chain import VERSIONS
    from training.train_musicnn_head import head_params

    args.data = audio_data(args.data, args.gtzan)
    t0 = time.perf_counter()
    try:
        embedded, artists, _, pool = cv_pool(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    b = next(iter(embedded))
    cache = {} if args.cache is None else {"cache_dir": args.cache}
    chains = {c: {b: embed_files(BASES[b], args.data, augment=c, track_ids=pool, **cache)} for c in VERSIONS}
    recipe = {"spec": args.inputs, "kind": args.head, "params": head_params(args), "weighting": args.weighting,
              "mixup": args.mixup, "augment_as": args.augment_as}
    results = {}
    for augment in ((), tuple(args.augment)):
        trained = "audio as it is" + ("" if not augment else f" + {' + '.join(augment)} versions"
                                      + (" (a second head, averaged)" if args.augment_as == "second-head" else ""))
        folds = held_out_by_chain(embedded, chains, pool, artists, recipe, augment, repeats=args.repeats,
                                  folds=args.cv_folds, seed=args.seed)
        results[trained] = {chain: summarise(f) for chain, f in folds.items()}
    seconds = time.perf_counter() - t0
    lines = table(results)
    print("\n".join(lines))
    report = {
        "reproduce": f"python -m training.chain_robustness --augment {','.join(args.augment)} "
                     f"--augment-as {args.augment_as}",
        "recipe": recipe_label(dict(recipe, train_hop=None)),
        "protocol": f"{args.repeats} x artist-grouped, genre-stratified {args.cv_folds}-fold CV over train + valid "
                    f"({len(pool)} tracks); held-out tracks scored as they are and through each chain of "
                    "training.recording_chain; heads uncalibrated (the vote does not depend on the temperature)",
        "data": [str(display_path(p)) for p in args.data],
        "cpu": cpu_name(),
        "seconds": round(seconds, 1),
        "results": {t: {c: {k: v for k, v in s.items() if k != "confusion_over_repeats"} for c, s in by.items()}
                    for t, by in results.items()},
    }
    outs = [args.out] + ([REPORT_DIR / "chains"] if args.write_report else [])
    for out in outs:
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / "results.json.tmp"
        tmp.write_text(json.dumps(report, indent=1, default=float) + "\n")
        tmp.replace(out / "results.json")
        (out / "README.md").write_text(
            f"# Accuracy through other recording chains\n\nReproduce: `{report['reproduce']}` "
            f"(with `--gtzan DIR`). {report['protocol']}.\nRecipe: {report['recipe']}.\n"
            f"CPU: {report['cpu']}; {seconds:.0f} s.\n\n" + "\n".join(lines) + "\n")
        print(f"wrote {display_path(out)}/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
