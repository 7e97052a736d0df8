"""Calibration of genre probabilities: expected calibration error and reliability diagrams.

A model is calibrated when, among the answers given with confidence about p, a fraction p is right.
The expected calibration error (ECE) is the mean gap between confidence and accuracy over equal-width
confidence bins, weighted by the bins' sizes. At the track level the confidence is what the app shows:
the winner's probability averaged over the track's segments.
"""

from __future__ import annotations

import numpy as np


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """ECE: the bin-size-weighted mean |accuracy - confidence| over ``bins`` equal-width confidence bins."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        rows = index == b
        if rows.any():
            ece += rows.mean() * abs(correct[rows].mean() - confidence[rows].mean())
    return float(ece)


def reliability(confidence, correct, bins: int = 10) -> list[dict]:
    """Per-bin count, mean confidence and accuracy, for a reliability diagram."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    return [{"lo": round(float(edges[b]), 2), "hi": round(float(edges[b + 1]), 2), "n": int((index == b).sum()),
             "confidence": float(confidence[index == b].mean()) if (index == b).any() else None,
             "accuracy": float(correct[index == b].mean()) if (index == b).any() else None} for b in range(bins)]


def track_level(probabilities: np.ndarray, y: np.ndarray, tracks: np.ndarray, aggregate: str = "vote"):
    """Per track: (ids, true index, mean probabilities, winner index) under the decision rule's ``aggregate``."""
    from codeFeature.decision import winner_index

    ids = sorted(set(tracks.tolist()))
    true, mean, win = [], [], []
    for t in ids:
        rows = tracks == t
        true.append(int(y[rows][0]))
        mean.append(probabilities[rows].mean(axis=0))
        win.append(winner_index(probabilities[rows], aggregate))
    return ids, np.array(true), np.array(mean), np.array(win)


def calibration_figures(probabilities, y, tracks, aggregate: str = "vote", bins: int = 10) -> dict:
    """ECE at the segment and the track level (track confidence = the winner's mean probability, as the app shows)."""
    seg_conf, seg_ok = probabilities.max(axis=1), probabilities.argmax(axis=1) == y
    _, true, mean, win = track_level(probabilities, y, tracks, aggregate)
    trk_conf, trk_ok = mean[np.arange(len(win)), win], win == true
    return {"segment": {"ece": round(expected_calibration_error(seg_conf, seg_ok, bins), 4), "n": int(len(y)),
                        "bins": reliability(seg_conf, seg_ok, bins)},
            "track": {"ece": round(expected_calibration_error(trk_conf, trk_ok, bins), 4), "n": int(len(win)),
                      "bins": reliability(trk_conf, trk_ok, bins)}}


def plot_reliability(panels: dict, path, title: str) -> None:
    """Reliability diagrams: ``panels`` maps a panel title to ``{curve label: calibration_figures()[level]}``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * len(panels), 4.6), dpi=100)
    for i, (panel, curves) in enumerate(panels.items(), start=1):
        ax = fig.add_subplot(1, len(panels), i)
        ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfectly calibrated")
        for (label, fig_data), marker in zip(curves.items(), "osd^"):
            pts = [(b["confidence"], b["accuracy"], b["n"]) for b in fig_data["bins"] if b["n"]]
            xs, ys, ns = zip(*pts)
            ax.plot(xs, ys, marker=marker, label=f"{label} (ECE {fig_data['ece']:.3f})")
            for x, y, n in pts:
                ax.annotate(str(n), (x, y), textcoords="offset points", xytext=(3, -10), fontsize=7)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (mean of bin)")
        ax.set_ylabel("accuracy")
        ax.set_title(panel, fontsize=10)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path)
