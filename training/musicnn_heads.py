"""Genre heads on frozen musicnn outputs: fit with scikit-learn, calibrate, export as built-in Keras layers.

A head reads one or more cached musicnn layers (:mod:`training.musicnn_embeddings`),
named ``<base>:<layer>`` with base ``msd`` or ``mtt`` and layer ``penultimate``,
``mean_pool``, ``max_pool``, ``pooled`` (mean ++ max) or ``taggram``; several are
concatenated (``msd:penultimate+msd:taggram``). Every head standardises its input
(mean and standard deviation of the training segments) and gives ten genre
scores:

* ``lr``: multinomial logistic regression (L2, ``C``); scores are its logits;
* ``svm``: one RBF support-vector machine per genre, one-vs-rest (``C``,
  ``gamma = gamma_scale / n_features``); scores are the ten decision values;
* ``mlp``: one hidden ReLU layer (``hidden`` units, L2 ``alpha``, Adam); scores are logits.

Probabilities are ``softmax(scores / T)``: a temperature ``T`` fitted by
cross-validation on the training data (out-of-fold scores, folds grouped by
artist when artists are known), which leaves every argmax and so every vote
unchanged. Platt scaling per genre or isotonic regression could change the
winner, and isotonic regression has no built-in Keras layer.

Export (:func:`head_layers`): the standardisation is a Dense layer with a diagonal
kernel; the RBF kernel ``exp(-gamma |z - s|^2)`` against every support vector
``s`` is ``exp(2 gamma z.s - gamma |s|^2 - gamma |z|^2)``: a Dense layer on ``z``, plus
a Dense layer on ``|z|^2`` (a Multiply and a Dense of ones), an ``Activation("exponential")``,
and a Dense layer of dual coefficients and intercepts divided by ``T``, then a softmax.
Only built-in layers, so the model loads from JSON in Keras' safe mode with no
code and no pickle; support vectors are stored as float32 weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from codeFeature.config import GENRES
from training.calibration import (calibration_figures, expected_calibration_error,  # noqa: F401 (re-exported)
                                  plot_reliability, reliability, track_level)

BASES = {"msd": "musicnn_msd", "mtt": "musicnn_mtt"}
HEADS = ("lr", "svm", "mlp")
#: Absent genres get this score (before the temperature), so they never win.
ABSENT_SCORE = -1e4


def parse_inputs(spec: str) -> list[tuple[str, str]]:
    """``"msd:penultimate+msd:taggram"`` -> ``[("msd", "penultimate"), ("msd", "taggram")]``."""
    parts = []
    for part in spec.split("+"):
        base, _, layer = part.partition(":")
        if base not in BASES or layer not in ("penultimate", "mean_pool", "max_pool", "pooled", "taggram"):
            raise ValueError(f"{part!r} is not <msd|mtt>:<penultimate|mean_pool|max_pool|pooled|taggram>")
        parts.append((base, layer))
    return parts


def input_matrix(spec: str, embedded: dict, mask: np.ndarray | None = None) -> np.ndarray:
    """The head input of ``spec`` from ``{base: Embedded}`` (rows selected by ``mask``)."""
    columns = []
    for base, layer in parse_inputs(spec):
        e = embedded[base]
        if layer == "pooled":
            block = np.concatenate([e.layers["mean_pool"], e.layers["max_pool"]], axis=1)
        else:
            block = e.layers[layer]
        columns.append(block if mask is None else block[mask])
    return np.concatenate(columns, axis=1).astype(np.float64)


def track_weights(tracks: np.ndarray) -> np.ndarray:
    """Sample weights giving every track the same total weight (mean weight 1)."""
    _, inverse, counts = np.unique(tracks, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    return w * len(w) / w.sum()


def genre_weights(tracks: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample weights giving every genre the same total weight, shared equally by its tracks (mean weight 1).

    The GTZAN audio at hand is unbalanced (14 metal tracks against 44 disco among train + valid's tracks with
    a known artist); with track weights a genre's say in the fit grows with its number of tracks.
    """
    tracks, y = np.asarray(tracks), np.asarray(y)
    w = track_weights(tracks)
    for genre in np.unique(y):
        rows = y == genre
        w[rows] /= w[rows].sum()
    return w * len(w) / w.sum()


def sample_weights(weighting: str, tracks: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """The weights of ``weighting``: ``segment`` (none: every row alike), ``track`` or ``genre``."""
    if weighting == "segment":
        return None
    if weighting == "track":
        return track_weights(tracks)
    if weighting == "genre":
        return genre_weights(tracks, y)
    raise ValueError(f"weighting {weighting!r}: use one of {', '.join(WEIGHTINGS)}")


WEIGHTINGS = ("segment", "track", "genre")


def mixup_rows(x: np.ndarray, y: np.ndarray, tracks: np.ndarray, ratio: float, *, seed: int = 42,
               alpha: float = 0.4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Extra rows mixed between segments of the same genre from two different tracks (mixup in the head's input).

    ``ratio`` x the genre's rows are made for each genre (rounded), each ``lam * a + (1 - lam) * b`` with
    ``lam ~ Beta(alpha, alpha)``. The label stays the genre, so no soft labels are needed; every new row is its
    own pseudo-track ``mix:<genre>:<i>`` (one segment, so a track's weight), never a real track id.
    Genres with a single track get none (their segments would be mixed with themselves).
    """
    rng = np.random.default_rng(seed)
    xs, ys, ts = [], [], []
    for genre in np.unique(y):
        rows = np.flatnonzero(y == genre)
        n_new = int(round(ratio * len(rows)))
        if n_new == 0 or len(set(tracks[rows].tolist())) < 2:
            continue
        a = rng.choice(rows, n_new)
        b = rng.choice(rows, n_new)
        same = tracks[a] == tracks[b]
        while same.any():  # redraw partners from the same track until every pair spans two tracks
            b[same] = rng.choice(rows, int(same.sum()))
            same = tracks[a] == tracks[b]
        lam = rng.beta(alpha, alpha, n_new)[:, None]
        xs.append(lam * x[a] + (1 - lam) * x[b])
        ys.append(np.full(n_new, genre))
        ts.append(np.array([f"mix:{genre}:{i}" for i in range(n_new)]))
    if not xs:
        return x[:0], y[:0], tracks[:0]
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ts)


@dataclass
class Head:
    """A fitted head: standardisation, a classifier and a temperature."""

    kind: str
    params: dict
    mean: np.ndarray
    scale: np.ndarray
    model: object
    classes: np.ndarray
    temperature: float = 1.0
    extra: dict = field(default_factory=dict)
    #: The output labels, in output order (``classes`` index them): GTZAN's genres, or a model's own
    #: (training.own_genres).
    labels: tuple = GENRES

    def standardise(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, np.float64) - self.mean) / self.scale

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Ten genre scores per row (absent genres: :data:`ABSENT_SCORE`)."""
        z = self.standardise(x)
        out = np.full((len(z), len(self.labels)), ABSENT_SCORE)
        if self.kind == "svm":
            out[:, self.classes] = np.stack([m.decision_function(z) for m in self.model], axis=1)
        else:
            from scipy.special import log_softmax

            # logits, as the exported Dense layer computes them (sklearn's predict_proba is their softmax)
            if self.kind == "lr":
                logits = z @ self.model.coef_.T + self.model.intercept_
            else:
                logits = _mlp_logits(self.model, z)
            if logits.shape[1] == 1:
                logits = _two_columns(logits, np.zeros(1))[0]
            out[:, self.classes] = logits if len(self.classes) > 2 else log_softmax(logits, axis=1)
        return out

    def probabilities(self, x: np.ndarray, temperature: float | None = None) -> np.ndarray:
        from scipy.special import softmax

        t = self.temperature if temperature is None else temperature
        return softmax(self.scores(x) / t, axis=1)

    def describe(self) -> str:
        p = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.params.items())
        return f"{self.kind}({p})"


@dataclass
class HeadPair:
    """Two heads on the same input whose calibrated probabilities are averaged: one fitted on the audio as it
    is, one also on other recording chains of it (``training.train_musicnn_head --augment-as second-head``).

    ``trained_on`` says, per member, what it was fitted on (the manifest records it).
    """

    members: tuple
    trained_on: tuple

    @property
    def kind(self) -> str:
        return self.members[0].kind

    @property
    def params(self) -> dict:
        return self.members[0].params

    @property
    def classes(self) -> np.ndarray:
        return np.unique(np.concatenate([m.classes for m in self.members]))

    @property
    def labels(self) -> tuple:
        return self.members[0].labels

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return np.mean([m.probabilities(x) for m in self.members], axis=0)

    def describe(self) -> str:
        return " + ".join(f"{m.describe()} on {what}" for m, what in zip(self.members, self.trained_on))


def _two_columns(kernel, bias):
    """A two-class model's single logit (scikit-learn keeps one: the second class's against the first) as
    two columns, 0 and that logit, whose softmax is the same probabilities."""
    kernel = np.asarray(kernel, np.float64)
    if kernel.shape[1] != 1:
        return kernel, bias
    return (np.concatenate([np.zeros_like(kernel), kernel], axis=1),
            np.concatenate([np.zeros(1), np.asarray(bias, np.float64).reshape(1)]))


def _mlp_logits(mlp, z: np.ndarray) -> np.ndarray:
    h = z
    for i, (w, b) in enumerate(zip(mlp.coefs_, mlp.intercepts_)):
        h = h @ w + b
        if i < len(mlp.coefs_) - 1:
            h = np.maximum(h, 0.0)
    return h


def fit_head(kind: str, x: np.ndarray, y: np.ndarray, *, sample_weight: np.ndarray | None = None,
             seed: int = 42, labels: Sequence[str] = GENRES, **params) -> Head:
    """Fit a head of ``kind`` (``lr``, ``svm``, ``mlp``) on rows ``x`` with label indices ``y`` (into
    ``labels``, GTZAN's genres unless given).

    ``params``: ``C`` (lr, svm), ``gamma_scale`` (svm: gamma = gamma_scale / n_features), ``balanced`` (svm,
    optional: class weights balancing each one-vs-rest machine), ``hidden`` and ``alpha`` (mlp).
    """
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)  # a constant column stays 0 after standardising
    z = (x - mean) / scale
    classes = np.unique(y)
    if kind == "lr":
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression(C=params["C"], max_iter=5000, random_state=seed).fit(z, y, sample_weight=sample_weight)
    elif kind == "svm":
        from sklearn.svm import SVC

        gamma = params["gamma_scale"] / z.shape[1]
        # "balanced": each one-vs-rest machine weighs its genre as much as the nine others together, so a
        # small genre is not outvoted by the rest inside its own machine
        weights = "balanced" if params.get("balanced") else None
        model = [SVC(kernel="rbf", C=params["C"], gamma=gamma, class_weight=weights)
                 .fit(z, (y == k).astype(int), sample_weight=sample_weight) for k in classes]
    elif kind == "mlp":
        from sklearn.neural_network import MLPClassifier

        model = MLPClassifier(hidden_layer_sizes=(params["hidden"],), alpha=params["alpha"], max_iter=300,
                              random_state=seed).fit(z, y, sample_weight=sample_weight)
    else:
        raise ValueError(f"head {kind!r}: use one of {', '.join(HEADS)}")
    return Head(kind, dict(params), mean, scale, model, classes, labels=tuple(labels))


def fit_temperature(scores: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    """The temperature minimising the (weighted) negative log-likelihood of ``softmax(scores / T)``."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight)

    def nll(log_t):
        return -np.sum(w * log_softmax(scores / np.exp(log_t), axis=1)[np.arange(len(y)), y]) / w.sum()

    return float(np.exp(minimize_scalar(nll, bounds=(-6, 6), method="bounded").x))


def out_of_fold_scores(kind: str, x: np.ndarray, y: np.ndarray, tracks: np.ndarray, groups: dict | None, *,
                       folds: int = 5, weighting: str = "segment", seed: int = 42, **params) -> np.ndarray:
    """Scores of every row from a head fitted without its fold (folds by artist, else by track)."""
    from sklearn.model_selection import StratifiedGroupKFold

    group = np.array([groups.get(t, t) if groups else t for t in tracks])
    out = np.zeros((len(y), len(GENRES)))
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_idx, test_idx in splitter.split(x, y, group):
        w = track_weights(tracks[train_idx]) if weighting == "track" else None
        head = fit_head(kind, x[train_idx], y[train_idx], sample_weight=w, seed=seed, **params)
        out[test_idx] = head.scores(x[test_idx])
    return out


def calibrate(head: Head, x, y, tracks, groups, *, weighting: str, seed: int = 42, folds: int = 5) -> Head:
    """Set ``head.temperature`` from out-of-fold scores of its own training rows."""
    oof = out_of_fold_scores(head.kind, x, y, tracks, groups, folds=folds, weighting=weighting, seed=seed,
                             **head.params)
    head.temperature = fit_temperature(oof, y, track_weights(tracks) if weighting == "track" else None)
    return head


# ------------------------------------------------------------------ export

def head_layers(features, head: Head, *, prefix: str = "head", name: str = "genre"):
    """Apply ``head`` to a Keras tensor ``features`` with built-in layers; returns the probability tensor
    (named ``name``). A :class:`HeadPair` becomes both heads and an ``Average`` of their probabilities.

    The layers get their weights at once (they are built on ``features``), so the caller needs no
    ``set_weights`` afterwards.
    """
    from keras import layers

    if isinstance(head, HeadPair):
        outs = [head_layers(features, m, prefix=f"{prefix}{i + 1}", name=f"{prefix}{i + 1}_probabilities")
                for i, m in enumerate(head.members)]
        return layers.Average(name=name)(outs)

    n = int(features.shape[-1])
    t = head.temperature

    def dense(x, kernel, bias, name, activation=None):
        kernel = np.asarray(kernel, np.float32)
        layer = layers.Dense(kernel.shape[1], activation=activation, use_bias=bias is not None, name=name)
        out = layer(x)
        layer.set_weights([kernel] + ([np.asarray(bias, np.float32)] if bias is not None else []))
        return out

    z = dense(features, np.diag(1.0 / head.scale), -head.mean / head.scale, f"{prefix}_standardise")
    full_scores_kernel = lambda k, b: _spread(*_two_columns(k, b), head.classes, t, len(head.labels))  # noqa: E731
    if head.kind == "lr":
        kernel, bias = full_scores_kernel(head.model.coef_.T, head.model.intercept_)
        logits = dense(z, kernel, bias, f"{prefix}_logits")
    elif head.kind == "mlp":
        mlp = head.model
        h = z
        for i, (w, b) in enumerate(zip(mlp.coefs_[:-1], mlp.intercepts_[:-1])):
            h = dense(h, w, b, f"{prefix}_hidden{i + 1}", activation="relu")
        kernel, bias = full_scores_kernel(mlp.coefs_[-1], mlp.intercepts_[-1])
        logits = dense(h, kernel, bias, f"{prefix}_logits")
    elif head.kind == "svm":
        sv, dual, intercept = svm_arrays(head)
        gamma = head.params["gamma_scale"] / n
        squared = layers.Multiply(name=f"{prefix}_square")([z, z])
        norm = dense(squared, np.ones((n, 1)), None, f"{prefix}_norm")
        cross = dense(z, 2 * gamma * sv.T, -gamma * np.sum(sv.astype(np.float64) ** 2, axis=1), f"{prefix}_cross")
        shift = dense(norm, -gamma * np.ones((1, len(sv))), None, f"{prefix}_norm_term")
        exponent = layers.Add(name=f"{prefix}_exponent")([cross, shift])
        kernel_values = layers.Activation("exponential", name=f"{prefix}_rbf")(exponent)
        kernel, bias = full_scores_kernel(dual, intercept)
        logits = dense(kernel_values, kernel, bias, f"{prefix}_logits")
    else:
        raise ValueError(head.kind)
    return layers.Activation("softmax", name=name)(logits)


def _spread(kernel, bias, classes, temperature, n_labels=len(GENRES)):
    """A (in, n_labels) kernel and bias over all labels from the fitted classes' columns, divided by the
    temperature."""
    kernel = np.asarray(kernel, np.float64)
    full_k = np.zeros((kernel.shape[0], n_labels))
    full_b = np.full(n_labels, ABSENT_SCORE)
    full_k[:, classes] = kernel
    full_b[classes] = bias
    return full_k / temperature, full_b / temperature


def svm_arrays(head: Head) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The union of the one-vs-rest machines' support vectors (float32, standardised space), their dual
    coefficients (n_sv, n_classes) and intercepts (n_classes,)."""
    index = sorted({int(i) for m in head.model for i in m.support_})
    position = {i: p for p, i in enumerate(index)}
    vectors = np.zeros((len(index), head.model[0].support_vectors_.shape[1]), np.float32)
    dual = np.zeros((len(index), len(head.model)))
    intercept = np.zeros(len(head.model))
    for c, m in enumerate(head.model):
        for row, (i, a) in enumerate(zip(m.support_, m.dual_coef_[0])):
            vectors[position[int(i)]] = m.support_vectors_[row]
            dual[position[int(i)], c] = a
        intercept[c] = m.intercept_[0]
    return vectors, dual, intercept


def head_summary(head: Head) -> dict:
    """What the manifest records about a head (a :class:`HeadPair`: the members' shared settings, then each
    member's temperature, support vectors and what it was fitted on)."""
    if isinstance(head, HeadPair):
        members = [{"trained_on": what, **{k: v for k, v in head_summary(m).items() if k not in m.params
                                           and k not in ("kind", "classes")}}
                   for m, what in zip(head.members, head.trained_on)]
        return {"kind": head.kind, **head.params, "classes": [head.labels[c] for c in head.classes],
                "members": members, "combine": "the mean of the members' calibrated probabilities"}
    out = {"kind": head.kind, **head.params, "temperature": round(head.temperature, 6),
           "classes": [head.labels[c] for c in head.classes]}
    if head.kind == "svm":
        out["support_vectors"] = int(len(svm_arrays(head)[0]))
    return out


def inputs_of(spec: str) -> Sequence[str]:
    return [f"{b}:{layer}" for b, layer in parse_inputs(spec)]

