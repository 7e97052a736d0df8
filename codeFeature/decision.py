"""The answer a person reads: one genre, or "not sure", by one rule a person can follow.

A :class:`Prediction <codeFeature.predict.Prediction>` holds every segment's probabilities; a
:class:`DecisionRule` turns them into a :class:`Verdict`: the winning genre, its confidence, the top
three genres and whether the evidence is too weak to name one genre. The rule comes from the
model's ``manifest.json`` (key ``"decision"``), so the app, the CLI, the CSV, a library scan and
training's evaluation all give the same answer for the same probabilities.

The manifest's ``decision`` object (every key optional)::

    {"aggregate": "vote" | "mean",     # how segments become one genre (default "vote")
     "min_confidence": 0.35,           # not sure when the winner's mean probability is below this
     "min_margin": 0.05,               # not sure when the runner-up's mean probability is this close
     "min_tag": 0.1,                   # not sure when no tag of the model reaches this (not music)
     "source": "chosen on valid by ..."}

``"vote"``: the genre most segments voted for; a tie goes to the higher mean probability.
``"mean"``: the genre with the highest probability averaged over the segments. Either way the
confidence is the winner's mean probability, and silence always makes the answer "not sure".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np

from .errors import ConfigError

AGGREGATES = ("vote", "mean")
#: RMS (full scale 1.0) below which a song counts as silent: -80 dBFS, the level
#: :class:`codeFeature.audio.LevelMeter` also calls silent.
SILENT_RMS = 1e-4


@dataclass(frozen=True)
class DecisionRule:
    """How a model's segment probabilities become an answer (see the module docstring).

    Thresholds of 0 never fire, so a model whose manifest says nothing is only "not sure" on silence.
    """

    aggregate: str = "vote"
    min_confidence: float = 0.0
    min_margin: float = 0.0
    min_tag: float = 0.0
    source: str = "default: no thresholds in the manifest"

    def __post_init__(self) -> None:
        if self.aggregate not in AGGREGATES:
            raise ConfigError(f"decision aggregate={self.aggregate!r}: use one of {', '.join(AGGREGATES)}")
        for name in ("min_confidence", "min_margin", "min_tag"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"decision {name}={value!r} must lie in [0, 1]")

    @classmethod
    def from_manifest(cls, manifest: dict) -> "DecisionRule":
        """The rule in ``manifest["decision"]``, or the default rule when it has none."""
        spec = manifest.get("decision") or {}
        if not isinstance(spec, dict):
            raise ConfigError(f"the manifest's 'decision' must be an object, not {type(spec).__name__}")
        known = {k: spec[k] for k in ("aggregate", "min_confidence", "min_margin", "min_tag", "source") if k in spec}
        return cls(**known)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def description(self) -> str:
        """The rule in one sentence, for a caption or ``--help``."""
        if self.aggregate == "vote":
            return ("the genre most segments voted for (a tie goes to the higher mean probability); "
                    "confidence is its probability averaged over the segments")
        return "the genre with the highest probability averaged over the segments; confidence is that probability"


@dataclass(frozen=True)
class Verdict:
    """A song's answer.

    Attributes
    ----------
    genre : str
        The rule's winner: the best guess, even when :attr:`not_sure`.
    confidence : float
        The winner's probability averaged over the segments.
    vote_share : float
        Fraction of segments whose top genre is :attr:`genre`.
    not_sure : bool
        True when the evidence is too weak to name one genre; :attr:`reasons` says why.
    reasons : tuple of str
        Plain-language reasons for :attr:`not_sure` (empty when sure).
    top : tuple of (str, float)
        Up to three genres by mean probability, highest first.
    rule : DecisionRule
    """

    genre: str
    confidence: float
    vote_share: float
    not_sure: bool
    reasons: tuple[str, ...]
    top: tuple[tuple[str, float], ...]
    rule: DecisionRule = field(default_factory=DecisionRule)

    @property
    def headline(self) -> str:
        """``"rock"``, or ``"not sure: rock or metal"`` (the two likeliest genres)."""
        if not self.not_sure:
            return self.genre
        names = [self.genre] + [name for name, _ in self.top if name != self.genre]
        return "not sure: " + " or ".join(names[:2])

    @property
    def top_text(self) -> str:
        """The top three in words, labelled with what the figures are: "by mean probability: jazz 20%, ..."."""
        return "by mean probability: " + ", ".join(f"{name} {percent(p)}" for name, p in self.top)

    @property
    def explanation(self) -> str:
        """Why the answer is not sure, and the top three, in one paragraph (empty when sure): what the app's
        warning and the CLI's notes say, so that no surface words it differently."""
        if not self.not_sure:
            return ""
        return "The model is not sure: " + "; ".join(self.reasons) + ". Top three " + self.top_text + "."

    def to_dict(self) -> dict:
        """The JSON keys a verdict adds to a prediction's record."""
        return {
            "not_sure": self.not_sure,
            "verdict": self.headline,
            "reasons": list(self.reasons),
            "top": [{"genre": name, "probability": round(p, 4)} for name, p in self.top],
            "vote_share": round(self.vote_share, 4),
            "rule": self.rule.aggregate,
        }


def vote_index(probabilities: np.ndarray) -> int:
    """Index of the majority-vote label over rows of ``probabilities``; ties go to the higher mean.

    Parameters
    ----------
    probabilities : np.ndarray, shape (n_segments, n_labels)
    """
    probabilities = np.asarray(probabilities)
    votes = np.bincount(probabilities.argmax(axis=1), minlength=probabilities.shape[1])
    tied = np.flatnonzero(votes == votes.max())
    return int(tied[np.argmax(probabilities.mean(axis=0)[tied])])


def winner_index(probabilities: np.ndarray, aggregate: str = "vote") -> int:
    """Index of the winning label of ``probabilities`` (shape (n_segments, n_labels)) by ``aggregate``."""
    if aggregate == "vote":
        return vote_index(probabilities)
    if aggregate == "mean":
        return int(np.argmax(np.asarray(probabilities).mean(axis=0)))
    raise ConfigError(f"aggregate={aggregate!r}: use one of {', '.join(AGGREGATES)}")


def percent(value: float, decimals: int = 0) -> str:
    """``0.234`` -> ``"23%"``: how every surface writes a probability."""
    return f"{value:.{decimals}%}"


def percent_pair(first: float, second: float, *, gap_below: Optional[float] = None) -> tuple[str, str]:
    """Two probabilities written with as few decimals (0 to 2) as keep what the words claim visible:
    their order (0.2004 and 0.1996 are "20.04%" and "19.96%", not "20%" twice) and, with ``gap_below``,
    a gap under it (0.2699 and 0.1300 under 0.14 are "26.99%" and "13.00%", not "27%" and "13%")."""
    for decimals in range(3):
        a, b = percent(first, decimals), percent(second, decimals)
        shown = round(first * 100, decimals) - round(second * 100, decimals)
        ordered = first == second or a != b
        if ordered and (gap_below is None or abs(shown) < gap_below * 100):
            break
    return a, b


def decide(probabilities: np.ndarray, labels: Sequence[str], *, rule: Optional[DecisionRule] = None,
           rms: Optional[float] = None, tags: Optional[np.ndarray] = None) -> Verdict:
    """The verdict on one song.

    Parameters
    ----------
    probabilities : np.ndarray, shape (n_segments, n_labels)
        Each segment's probabilities.
    labels : sequence of str, length n_labels
    rule : DecisionRule, optional
        Default: :class:`DecisionRule` (``"vote"``, no thresholds).
    rms : float, optional
        The song's RMS level (full scale 1.0); below :data:`SILENT_RMS` the answer is not sure.
    tags : np.ndarray, shape (n_segments, n_tags), optional
        The model's tag outputs (musicnn's 50 tags); when no tag's mean reaches ``rule.min_tag``
        the signal is not music to the model.

    Returns
    -------
    Verdict
    """
    rule = rule or DecisionRule()
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[0] == 0 or probabilities.shape[1] != len(labels):
        raise ConfigError(f"probabilities must have shape (n_segments >= 1, {len(labels)}), got {probabilities.shape}")
    mean = probabilities.mean(axis=0)
    best = winner_index(probabilities, rule.aggregate)
    order = [int(i) for i in np.argsort(-mean, kind="stable")]
    top = tuple((str(labels[i]), float(mean[i])) for i in order[:3])
    runner_up = next(i for i in order if i != best) if len(order) > 1 else best
    votes = np.bincount(probabilities.argmax(axis=1), minlength=len(labels))
    share = float(votes[best] / probabilities.shape[0])
    reasons = []
    if rms is not None and rms < SILENT_RMS:
        reasons.append("the audio is silent or nearly so")
    if mean[best] < rule.min_confidence:
        reasons.append(f"no genre reaches {rule.min_confidence:.0%} (the best, {labels[best]}, has {mean[best]:.0%})")
    if runner_up != best and mean[best] < mean[runner_up]:
        # Only the vote rule gets here: the segments' votes chose one genre, their mean another. Said as
        # such, with the higher figure second where it belongs, never as a "tie" between unequal numbers.
        ours, theirs = percent_pair(mean[best], mean[runner_up])
        reasons.append(f"most segments voted {labels[best]} ({int(votes[best])} of {probabilities.shape[0]}), "
                       f"but {labels[runner_up]} has the higher mean probability ({theirs} against {ours})")
    elif runner_up != best and mean[best] - mean[runner_up] < rule.min_margin:
        ours, theirs = percent_pair(mean[best], mean[runner_up], gap_below=rule.min_margin)
        reasons.append(f"{labels[best]} ({ours}) leads {labels[runner_up]} ({theirs}) by less than "
                       f"{rule.min_margin * 100:g} points, too little to be sure")
    if tags is not None and rule.min_tag > 0 and len(tags):
        strongest = float(np.asarray(tags, dtype=np.float64).mean(axis=0).max())
        if strongest < rule.min_tag:
            reasons.append("it does not sound like music to the model (no tag is strong)")
    return Verdict(genre=str(labels[best]), confidence=float(mean[best]), vote_share=share,
                   not_sure=bool(reasons), reasons=tuple(reasons), top=top, rule=rule)
