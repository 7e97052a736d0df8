"""Track-level and segment-level scores, computed the same way for every model."""

from __future__ import annotations

import numpy as np

from codeFeature.predict import vote_index


def track_votes(probabilities: np.ndarray, y: np.ndarray, tracks: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Vote over each track's segments.

    Returns
    -------
    true, predicted : np.ndarray, shape (n_tracks,)
        Label indices per track (a track's segments all share one true label).
    ids : list of str
        Track ids in the same order.
    """
    ids = sorted(set(tracks.tolist()))
    true, pred = [], []
    for track in ids:
        rows = tracks == track
        true.append(int(y[rows][0]))
        pred.append(vote_index(probabilities[rows]))
    return np.array(true), np.array(pred), ids


def scores(probabilities: np.ndarray, y: np.ndarray, tracks: np.ndarray, labels: tuple[str, ...]) -> dict:
    """Accuracy at both levels, per-genre precision / recall / F1 and the confusion matrix (tracks).

    Parameters
    ----------
    probabilities : np.ndarray, shape (n_segments, n_labels)
    y : np.ndarray, shape (n_segments,)
        True label index of each segment.
    tracks : np.ndarray, shape (n_segments,)
        Track id of each segment.
    labels : tuple of str

    Returns
    -------
    dict
        ``tracks``, ``segments``, ``track_accuracy``, ``segment_accuracy``, ``genres``,
        ``per_genre`` (genre -> precision, recall, f1, support in tracks) and ``confusion``
        (rows = true genre, columns = predicted, track counts).
    """
    seg_pred = probabilities.argmax(axis=1)
    true, pred, ids = track_votes(probabilities, y, tracks)
    n = len(labels)
    confusion = np.zeros((n, n), dtype=int)
    np.add.at(confusion, (true, pred), 1)
    per_genre = {}
    for i, genre in enumerate(labels):
        tp = confusion[i, i]
        predicted, support = confusion[:, i].sum(), confusion[i].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_genre[genre] = {"precision": round(float(precision), 4), "recall": round(float(recall), 4),
                            "f1": round(float(f1), 4), "support": int(support)}
    return {
        "tracks": len(ids),
        "segments": int(len(y)),
        "track_accuracy": round(float(np.mean(true == pred)), 4),
        "segment_accuracy": round(float(np.mean(seg_pred == y)), 4),
        "genres": list(labels),
        "per_genre": per_genre,
        "confusion": confusion.tolist(),
    }


def plot_confusion(confusion, labels, path, title: str) -> None:
    """Write a confusion-matrix PNG (rows = true genre)."""
    from matplotlib.figure import Figure

    matrix = np.asarray(confusion)
    fig = Figure(figsize=(6.5, 5.5), dpi=100)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (r, c), value in np.ndenumerate(matrix):
        if value:
            ax.text(c, r, str(value), ha="center", va="center",
                    color="white" if value > matrix.max() / 2 else "black", fontsize=8)
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path)
