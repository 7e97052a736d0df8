"""Measure how closely the project's extractors reproduce the GTZAN Kaggle material.

For every full 30 s track in ``<data>/genres/<genre>/<genre>.000NN.wav``:

(a) **Tabular features** -- :func:`codeFeature.gtzan_features.gtzan_features`
    of the whole track against its row of ``<data>/features_30_sec.csv``:
    per-column median relative error ``|ours - csv| / |csv|`` over the tracks,
    and the overall median over all (track, column) cells.  ``harmony_mean``
    and ``perceptr_mean`` are means of zero-mean signals (~1e-5), so their
    relative error is large and meaningless; the overall median is also
    reported without them.

(b) **Spectrogram images** --
    :func:`codeFeature.spectrogram_image.render_spectrogram_image` against the
    shared image ``<data>/spectrograms/<genre>/<genre>000NN.webp`` of the same
    track: mean absolute pixel difference (0-255) over the RGB channels of
    the whole 720x720 image and of the plot area (rows 86-629, columns
    90-647).  Rendered both with the default (first 5 s, what the tutorial
    notebook actually did) and with the first 30 s (what the data README
    describes), to document which one the images are.

Prints a table and writes JSON to ``runs/feature_parity.json`` (``--out reports/feature_parity.json``
refreshes the tracked report).

Usage::

    python -m training.measure_feature_parity [--data ../shared/data/gtzan] [--out runs/feature_parity.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from codeFeature.gtzan_features import FEATURE_COLUMNS, gtzan_features
from codeFeature.spectrogram_image import PLOT_AREA, render_spectrogram_image

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Columns whose reference values are ~0, so relative error is not meaningful.
NEAR_ZERO_COLUMNS = ("harmony_mean", "perceptr_mean")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO_ROOT.parent / "shared" / "data" / "gtzan",
        help="GTZAN data folder with features_30_sec.csv, genres/ and spectrograms/ "
        "(default: ../shared/data/gtzan relative to the repository root)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "runs" / "feature_parity.json",
        help="JSON report path (default: runs/feature_parity.json; reports/feature_parity.json is the tracked one)",
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N tracks (quick check)")
    parser.add_argument("--skip-images", action="store_true", help="skip the spectrogram comparison")
    return parser.parse_args(argv)


def load_csv(path: Path) -> dict[str, np.ndarray]:
    """Rows of a Kaggle feature CSV as ``{filename: 57 features}``."""
    import csv

    rows: dict[str, np.ndarray] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in FEATURE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise SystemExit(f"{path}: missing columns {missing}")
        for row in reader:
            rows[row["filename"]] = np.array([float(row[c]) for c in FEATURE_COLUMNS])
    return rows


def image_mad(rendered: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Mean absolute RGB difference over the whole image and over the plot area."""
    diff = np.abs(rendered[..., :3].astype(np.int16) - reference[..., :3].astype(np.int16))
    r0, r1, c0, c1 = PLOT_AREA
    return float(diff.mean()), float(diff[r0:r1, c0:c1].mean())


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import librosa
    from PIL import Image

    data: Path = args.data
    csv_path = data / "features_30_sec.csv"
    if not csv_path.is_file():
        print(f"error: {csv_path} not found (pass --data)", file=sys.stderr)
        return 2
    table = load_csv(csv_path)
    tracks = sorted((data / "genres").glob("*/*.wav"))
    if args.limit:
        tracks = tracks[: args.limit]
    if not tracks:
        print(f"error: no tracks under {data / 'genres'}", file=sys.stderr)
        return 2

    # Warm up numba / FFT plans so the timings are per-track steady state.
    warm = np.random.default_rng(0).standard_normal(3 * 22050).astype(np.float32) * 0.1
    gtzan_features(warm)
    render_spectrogram_image(warm)

    rel_rows, names, feat_times = [], [], []
    tempo_match = 0
    per_track: list[dict] = []
    img_rows: list[dict] = []
    render_times: list[float] = []
    tempo_idx = FEATURE_COLUMNS.index("tempo")
    for wav in tracks:
        y, sr = librosa.load(wav, sr=22050, mono=True)
        entry: dict = {"track": wav.name, "samples": int(y.size)}
        ref = table.get(wav.name)
        if ref is not None:
            t0 = time.perf_counter()
            ours = gtzan_features(y, sample_rate=sr)
            feat_times.append(time.perf_counter() - t0)
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.abs(ours - ref) / np.abs(ref)
            rel_rows.append(rel)
            names.append(wav.name)
            tempo_match += bool(np.isclose(ours[tempo_idx], ref[tempo_idx], rtol=1e-6))
            entry["median_rel_error"] = float(np.median(rel))
            entry["max_rel_error_excl_near_zero"] = float(
                np.max([r for c, r in zip(FEATURE_COLUMNS, rel) if c not in NEAR_ZERO_COLUMNS])
            )
        else:
            entry["median_rel_error"] = None  # track not in the CSV
        genre, number = wav.stem.split(".")
        img_path = data / "spectrograms" / genre / f"{genre}{number}.webp"
        if not args.skip_images and img_path.is_file():
            reference = np.asarray(Image.open(img_path).convert("RGB"))
            t0 = time.perf_counter()
            img5 = render_spectrogram_image(y, sample_rate=sr)
            render_times.append(time.perf_counter() - t0)
            img30 = render_spectrogram_image(y, sample_rate=sr, seconds=30.0)
            all5, plot5 = image_mad(img5, reference)
            all30, plot30 = image_mad(img30, reference)
            row = {
                "track": wav.name,
                "mad_rgb_5s": all5,
                "mad_plot_5s": plot5,
                "mad_rgb_30s": all30,
                "mad_plot_30s": plot30,
                "exact_pixel_fraction_5s": float(
                    np.mean(np.all(img5[..., :3] == reference[..., :3], axis=-1))
                ),
            }
            img_rows.append(row)
            entry.update({k: v for k, v in row.items() if k != "track"})
        per_track.append(entry)

    report: dict = {"data": str(data), "n_tracks": len(tracks), "per_track": per_track}
    print(f"GTZAN parity on {len(tracks)} full tracks from {data}\n")

    if rel_rows:
        rel = np.vstack(rel_rows)
        keep = [i for i, c in enumerate(FEATURE_COLUMNS) if c not in NEAR_ZERO_COLUMNS]
        per_col = {c: float(np.median(rel[:, i])) for i, c in enumerate(FEATURE_COLUMNS)}
        per_col_p90 = {c: float(np.percentile(rel[:, i], 90)) for i, c in enumerate(FEATURE_COLUMNS)}
        per_col_max = {c: float(np.max(rel[:, i])) for i, c in enumerate(FEATURE_COLUMNS)}
        feats = {
            "n_tracks_in_csv": len(rel_rows),
            "overall_median_rel_error": float(np.median(rel)),
            "overall_median_rel_error_excl_near_zero": float(np.median(rel[:, keep])),
            "overall_p90_rel_error_excl_near_zero": float(np.percentile(rel[:, keep], 90)),
            "overall_p99_rel_error_excl_near_zero": float(np.percentile(rel[:, keep], 99)),
            "overall_max_rel_error_excl_near_zero": float(np.max(rel[:, keep])),
            "tempo_exact_match_fraction": tempo_match / len(rel_rows),
            "per_column_median_rel_error": per_col,
            "per_column_p90_rel_error": per_col_p90,
            "per_column_max_rel_error": per_col_max,
            "seconds_per_30s_track": {
                "median": float(np.median(feat_times)),
                "max": float(np.max(feat_times)),
            },
        }
        report["features"] = feats
        print(f"(a) 57 features vs features_30_sec.csv ({len(rel_rows)} tracks)")
        print(f"    {'column':26s} {'median rel':>11s} {'p90 rel':>11s} {'max rel':>11s}")
        for c in FEATURE_COLUMNS:
            flag = "  (near-zero reference)" if c in NEAR_ZERO_COLUMNS else ""
            print(f"    {c:26s} {per_col[c]:11.2e} {per_col_p90[c]:11.2e} {per_col_max[c]:11.2e}{flag}")
        print(f"    overall median rel error           {feats['overall_median_rel_error']:.2e}")
        print(f"    ... excluding harmony/perceptr_mean {feats['overall_median_rel_error_excl_near_zero']:.2e}"
              f"  (p90 {feats['overall_p90_rel_error_excl_near_zero']:.2e},"
              f" p99 {feats['overall_p99_rel_error_excl_near_zero']:.2e},"
              f" max {feats['overall_max_rel_error_excl_near_zero']:.2e})")
        print(f"    tempo identical on {tempo_match}/{len(rel_rows)} tracks")
        print(f"    time per 30 s track: median {feats['seconds_per_30s_track']['median']:.3f} s\n")

    if img_rows:
        keys = ["mad_rgb_5s", "mad_plot_5s", "mad_rgb_30s", "mad_plot_30s", "exact_pixel_fraction_5s"]
        summary = {k: {"mean": float(np.mean([r[k] for r in img_rows])),
                       "median": float(np.median([r[k] for r in img_rows])),
                       "max": float(np.max([r[k] for r in img_rows]))} for k in keys}
        summary["n_images"] = len(img_rows)
        summary["seconds_per_render"] = {"median": float(np.median(render_times)),
                                         "max": float(np.max(render_times))}
        report["spectrograms"] = summary
        print(f"(b) rendered spectrogram vs shared WebP ({len(img_rows)} images), mean |diff| in 0-255")
        print(f"    {'track':22s} {'RGB 5s':>8s} {'plot 5s':>8s} {'RGB 30s':>8s} {'plot 30s':>8s}")
        for r in img_rows:
            print(f"    {r['track']:22s} {r['mad_rgb_5s']:8.3f} {r['mad_plot_5s']:8.3f}"
                  f" {r['mad_rgb_30s']:8.3f} {r['mad_plot_30s']:8.3f}")
        print(f"    {'mean':22s} {summary['mad_rgb_5s']['mean']:8.3f} {summary['mad_plot_5s']['mean']:8.3f}"
              f" {summary['mad_rgb_30s']['mean']:8.3f} {summary['mad_plot_30s']['mean']:8.3f}")
        print(f"    {'max':22s} {summary['mad_rgb_5s']['max']:8.3f} {summary['mad_plot_5s']['max']:8.3f}"
              f" {summary['mad_rgb_30s']['max']:8.3f} {summary['mad_plot_30s']['max']:8.3f}")
        print(f"    render time: median {summary['seconds_per_render']['median']:.3f} s\n")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
