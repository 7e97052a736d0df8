"""The comparison table of every model of the original designs, from the shipped manifests and reports.

One row per model the training CLI knows (plus any other shipped genre model, such as
``musicnn_genre``): input, parameters, depth (layers with weights), training time, train and
valid accuracy (track vote, with n), and test accuracy where a test split and its data are
given. Models whose data is not here (``features_3_sec.csv``, ImageNet weights) say
"not trained here". Reads the shipped manifests and ``reports/``; writes ``comparison.md``,
``comparison_accuracy.png`` and ``comparison_depth.png`` to ``runs/compare/`` (``--out reports``
regenerates the tracked copies), and prints the table.

It also shows why the published numbers this project descends from were inflated: the same
network (``cnn_mfcc_small``'s architecture, same epochs) trained and scored on a random split of
3 s *segments*, where segments of one song sit on both sides, next to a split by *track*.

    python -m training.compare                      # writes runs/compare/
    python -m training.compare --out reports        # regenerates the tracked reports/comparison.md
    python -m training.compare --test-split test_filtered.txt --test-data /path/to/genres_original
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

from training.data import DEFAULT_CACHE, REPO_ROOT, RUNS_DIR, TRAIN_SPLIT, VALID_SPLIT, display_path
from training.datasets import DatasetError, add_gtzan_argument, check_paths, find_gtzan

log = logging.getLogger("training.compare")

#: Why a model has no row of figures.
NOT_TRAINED = {
    "ann_features_3s": "not trained here: needs features_3_sec.csv (or audio: `--data genres_original`)",
    "tl_": "not trained here: needs the ImageNet weights (downloaded by Keras with internet)",
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--reports", type=Path, default=REPO_ROOT / "reports",
                        help="where trained models' reports are read from (default: reports/)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where comparison.md and the charts are written (default: runs/compare/; "
                             "--out reports regenerates the tracked ones)")
    add_gtzan_argument(parser)
    parser.add_argument("--test-split", type=Path, help="a test split list; adds a test-accuracy column")
    parser.add_argument("--test-data", nargs="+", type=Path,
                        help="audio folders for --test-split (default: the shared audio); each model is "
                             "evaluated through the serving path on it")
    parser.add_argument("--demo-data", nargs="+", type=Path, default=None,
                        help="audio for the segment-split vs track-split demonstration (default: the --gtzan audio)")
    parser.add_argument("--demo-splits", nargs="+", type=Path, default=[TRAIN_SPLIT, VALID_SPLIT],
                        help="split lists whose tracks are pooled for the demonstration")
    parser.add_argument("--rerun-demo", action="store_true",
                        help="retrain the demonstration even if reports/leakage_demo.json exists")
    parser.add_argument("--no-demo", action="store_true", help="skip the demonstration")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--seed", type=int, default=42)
    return parser.parse_args(argv)


def input_label(feature_config: dict, input_shape) -> str:
    """``mfcc (130, 13, 1)``, or ``mfcc+contrast+tonnetz (130, 26, 1)`` for a model with extra features."""
    return "+".join([feature_config["feature"], *feature_config.get("extras", [])]) + f" {tuple(input_shape)}"


def collect_rows(models_dir: Path, *, reports_dir: Path | None = None, test_split=None, test_data=None,
                 cache_dir=DEFAULT_CACHE) -> list[dict]:
    """One dict per model: trained genre models (by valid track accuracy), then untrained ones.

    A model trained but not shipped (its folder removed, e.g. for its size) keeps its row through the
    copy of its manifest that training writes to ``reports/<model>/manifest.json``.
    """
    from codeFeature.model_io import list_models, load_model, read_manifest
    from training.builders import SPECS
    from training.train import model_depth

    rows = []
    shipped = list_models(models_dir=models_dir, task="genre")
    for name in shipped:
        m = read_manifest(models_dir / name)
        valid = m.get("metrics", {}).get("valid")
        if not valid or m.get("training", {}).get("quick"):
            continue
        loaded = load_model(models_dir / name)
        cfg = m["feature_config"]
        row = {"model": name, "input": input_label(cfg, m['input_shape']),
               "parameters": m.get("parameters", int(loaded.keras_model.count_params())),
               "depth": m.get("depth") or model_depth(loaded.keras_model),
               "training_seconds": m.get("training_seconds"),
               "train": m["metrics"].get("train"), "valid": valid,
               "data": ", ".join(m.get("training", {}).get("data", [])),
               "reproduce": m.get("reproduce", "")}
        if test_split is not None:
            from training.evaluate import evaluate

            try:
                data = test_data or find_gtzan().data_for("audio")
                row["test"] = evaluate(loaded, data, split=test_split, cache_dir=cache_dir)
            except (ValueError, FileNotFoundError) as exc:
                log.warning("no test figure for %s: %s", name, exc)
        rows.append(row)
    for manifest_path in sorted(reports_dir.glob("*/manifest.json")) if reports_dir is not None else []:
        name = manifest_path.parent.name
        m = json.loads(manifest_path.read_text())
        if name in shipped or not m.get("metrics", {}).get("valid") or m.get("training", {}).get("quick"):
            continue
        cfg = m["feature_config"]
        rows.append({"model": name + " (not shipped)", "name": name, "input": input_label(cfg, m['input_shape']),
                     "parameters": m.get("parameters"), "depth": m.get("depth"),
                     "training_seconds": m.get("training_seconds"), "train": m["metrics"].get("train"),
                     "valid": m["metrics"]["valid"], "data": ", ".join(m.get("training", {}).get("data", [])),
                     "reproduce": m.get("reproduce", "")})
    rows.sort(key=lambda r: -r["valid"]["track_accuracy"])
    done = {r.get("name", r["model"]) for r in rows}
    for name, spec in SPECS.items():
        if name in done:
            continue
        reason = next((why for prefix, why in NOT_TRAINED.items() if name.startswith(prefix)),
                      f"not trained here: `python -m training.train --model {name}` trains it")
        rows.append({"model": name, "input": f"{spec.config.feature} {tuple(spec.config.input_shape)}",
                     "not_trained": reason})
    return rows


def honest_notes(models_dir: Path) -> str:
    """Lines on the shipped models whose manifests carry more than one valid figure: a head refit on train +
    valid (its valid row is the train-only fit's), its artist-grouped cross-validation and calibration error."""
    from codeFeature.model_io import list_models, read_manifest

    lines = []
    for name in list_models(models_dir=models_dir, task="genre"):
        metrics = read_manifest(models_dir / name).get("metrics", {})
        valid, cv = metrics.get("valid") or {}, metrics.get("cv_artist_5fold")
        parts = []
        if "valid_refit" in metrics:
            parts.append(f"fit on train + valid for shipping; its valid row is the same recipe fitted on train only "
                         f"({valid['track_accuracy']:.1%}, n={valid['tracks']})")
        if cv:
            parts.append(f"artist-grouped 5-fold CV over train + valid {cv['track_accuracy']:.1%} "
                         f"± {cv['track_accuracy_std']:.1%} (n={cv['tracks']} tracks)")
        if isinstance(valid.get("ece"), dict):
            parts.append(f"calibration error on valid {valid['ece']['track']:.3f} (tracks), "
                         f"{valid['ece']['segment']:.3f} (segments)")
        if parts:
            lines.append(f"- {name}: " + "; ".join(parts) + ".")
    return "\n".join(lines)


def table(rows: list[dict], *, with_test: bool = False) -> str:
    head = ["model", "input", "parameters", "depth", "training time", "train tracks: acc.",
            "valid tracks: acc. (n)", "valid segments: acc. (n)"] + (["test tracks: acc. (n)"] if with_test else []) \
        + ["reproduce"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        if "not_trained" in r:
            cells = [r["model"], r["input"], "–", "–", "–", r["not_trained"], "–", "–"] + (["–"] if with_test else []) \
                + [f"`python -m training.train --model {r['model']}`"]
        else:
            t, v = r["train"] or {}, r["valid"]
            secs = r["training_seconds"]
            cells = [r["model"], r["input"], "–" if r["parameters"] is None else f"{r['parameters']:,}",
                     str(r["depth"]),
                     "–" if secs is None else f"{secs:.0f} s",
                     f"{t['track_accuracy']:.1%}" if t else "–",
                     f"{v['track_accuracy']:.1%} ({v['tracks']})", f"{v['segment_accuracy']:.1%} ({v['segments']})"]
            if with_test:
                test = r.get("test")
                cells.append(f"{test['track_accuracy']:.1%} ({test['tracks']})" if test else "no test data")
            cells.append(f"`{r['reproduce']}`")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_bars(rows: list[dict], folder: Path) -> list[Path]:
    """Bar charts of valid accuracy (tracks and segments) and of depth, for the trained models."""
    from matplotlib.figure import Figure

    trained = [r for r in rows if "not_trained" not in r]
    names = [f"{r['model']}\nn={r['valid']['tracks']}" for r in trained]
    x = np.arange(len(names))
    fig = Figure(figsize=(max(6, 1.1 * len(names)), 4.5), dpi=100)
    ax = fig.add_subplot()
    ax.bar(x - 0.2, [r["valid"]["track_accuracy"] for r in trained], 0.4, label="valid tracks (vote)")
    ax.bar(x + 0.2, [r["valid"]["segment_accuracy"] for r in trained], 0.4, label="valid segments")
    ax.axhline(0.1, color="grey", lw=0.8, ls="--", label="chance (10 genres)")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.set_title("Valid accuracy (fault-filtered, artist-disjoint split)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    acc = folder / "comparison_accuracy.png"
    fig.savefig(acc)
    fig = Figure(figsize=(max(6, 1.1 * len(names)), 4), dpi=100)
    ax = fig.add_subplot()
    ax.bar(x, [r["depth"] for r in trained], color="tab:green")
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("layers with weights")
    ax.set_title("Depth")
    fig.tight_layout()
    depth = folder / "comparison_depth.png"
    fig.savefig(depth)
    return [acc, depth]


def leakage_demo(data, split_files, *, cache_dir=DEFAULT_CACHE, seed: int = 42, epochs: int = 40,
                 min_segments: int = 1) -> dict:
    """Train one architecture twice on the same pooled segments: a random segment split, and a track split.

    Both use 30 % of the data for scoring and the same epochs (no early stopping, so neither
    selects on its test part). ``min_segments`` keeps only tracks with at least that many
    segments (``5``: the full 30 s tracks, as in the published work, where every track had ten).
    """
    import keras

    from codeFeature.config import GENRES
    from training.builders import build, SPECS
    from training.data import build_segment_set, find_audio, read_split
    from training.evaluate import predict_probabilities
    from training.metrics import scores

    name = "cnn_mfcc_small"
    ids = [t for f in split_files for t in read_split(f)]
    pool = build_segment_set(find_audio(data), ids, SPECS[name].config, cache_dir=cache_dir)
    counts = {t: int(np.sum(pool.tracks == t)) for t in set(pool.tracks.tolist())}
    pool = pool.subset(np.array([counts[t] >= min_segments for t in pool.tracks]))
    rng = np.random.default_rng(seed)
    n = len(pool.y)
    seg_test = np.zeros(n, bool)
    seg_test[rng.permutation(n)[: int(0.3 * n)]] = True
    tracks = np.array(sorted(set(pool.tracks.tolist())))
    held = set(rng.permutation(tracks)[: int(0.3 * len(tracks))].tolist())
    track_test = np.array([t in held for t in pool.tracks])
    shared = len(set(pool.tracks[seg_test]) & set(pool.tracks[~seg_test]))
    out = {"model": name, "segments": int(n), "tracks": int(len(tracks)), "epochs": epochs,
           "min_segments_per_track": min_segments,
           "tracks_on_both_sides_of_the_segment_split": shared}
    for label, test in (("segment_split", seg_test), ("track_split", track_test)):
        keras.utils.set_random_seed(seed)
        train, held_out = pool.subset(~test), pool.subset(test)
        model = build(name, normalizer_data=train.x)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.fit(train.x, train.y, epochs=epochs, batch_size=32, verbose=0, shuffle=True)
        s = scores(predict_probabilities(model, held_out.x), held_out.y, held_out.tracks, GENRES)
        out[label] = {k: s[k] for k in ("segment_accuracy", "track_accuracy", "segments", "tracks")}
        log.info("%s: %s", label, out[label])
    return out


def demo_text(demos: list[dict]) -> str:
    d0 = demos[0]
    lines = [f"Why the published figures were inflated: the same network ({d0['model']}, {d0['epochs']} epochs, no "
             "early stopping) trained twice on the same pooled train + valid segments, 30 % held out: once split at "
             "random by 3 s segment (segments of one song on both sides, as in the published work), once by track. "
             "Neither split is artist-disjoint, unlike the valid figures above.\n",
             "| data | split | held-out segment accuracy (n) | held-out track accuracy (n) |", "|---|---|---|---|"]
    for d in demos:
        data = (f"{d['tracks']} tracks with at least {d['min_segments_per_track']} segments" if
                d["min_segments_per_track"] > 1 else f"all {d['tracks']} tracks") + f", {d['segments']} segments"
        s, t = d["segment_split"], d["track_split"]
        lines.append(f"| {data} | random by segment ({d['tracks_on_both_sides_of_the_segment_split']} tracks on both "
                     f"sides) | {s['segment_accuracy']:.1%} ({s['segments']}) | {s['track_accuracy']:.1%} "
                     f"({s['tracks']}) |")
        lines.append(f"| {data} | by track (honest) | {t['segment_accuracy']:.1%} ({t['segments']}) | "
                     f"{t['track_accuracy']:.1%} ({t['tracks']}) |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    import keras

    keras.utils.set_random_seed(args.seed)
    rows = collect_rows(args.models_dir, reports_dir=args.reports, test_split=args.test_split, test_data=args.test_data, cache_dir=args.cache)
    out = args.out if args.out is not None else RUNS_DIR / "compare"
    out.mkdir(parents=True, exist_ok=True)
    text = ("Valid = the fault-filtered split's valid part (artist-disjoint; it also selected the models, so the "
            "figures are slightly optimistic). Track accuracy is the vote over a track's segments; n counts tracks "
            "(segments): 98 valid tracks have audio here (full tracks or 2-3 s excerpts), all 197 have a CSV row and an "
            "image. Depth counts layers with weights (through nested models). Training time is the fit alone, on "
            "a shared 2-core machine; musicnn_genre's is its head's (the network is pretrained). "
            "Generated by `python -m training.compare`.\n\n")
    text += table(rows, with_test=args.test_split is not None) + "\n"
    notes = honest_notes(args.models_dir)
    if notes:
        text += "\n" + notes + "\n"
    charts = plot_bars(rows, out)
    text += "\n" + " ".join(f"![{p.stem}]({p.name})" for p in charts) + "\n"
    demo_path = args.reports / "leakage_demo.json"
    if not args.no_demo:
        if args.rerun_demo or not demo_path.exists():
            try:
                demo_data = args.demo_data or find_gtzan(args.gtzan).data_for("audio")
                check_paths([*demo_data, *args.demo_splits])
            except DatasetError as exc:
                log.warning("demonstration skipped: %s", exc)
            else:
                demos = [leakage_demo(demo_data, args.demo_splits, cache_dir=args.cache, seed=args.seed,
                                      min_segments=k) for k in (1, 5)]
                demo_path = out / "leakage_demo.json"
                demo_path.write_text(json.dumps(demos, indent=1) + "\n")
        if demo_path.exists():
            demos = json.loads(demo_path.read_text())
            text += "\n" + demo_text(demos if isinstance(demos, list) else [demos])
    (out / "comparison.md").write_text(text)
    print(text)
    print(f"written: {display_path(out / 'comparison.md')}, " + ", ".join(str(display_path(p)) for p in charts),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
