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
     "outside": {...},                 # the "not one of the ten" rule (see OutsideRule); absent: never fires
     "source": "chosen on valid by ..."}

A verdict is in one of three states (:attr:`Verdict.state`): ``"genre"`` (one genre, sure),
``"not_sure"`` (the evidence is too weak to name one) or ``"outside"`` (the song is probably not in
any of the model's genres: other music, or not music at all, :attr:`Verdict.outside_kind`). Anything
but ``"genre"`` is hedged, and :attr:`Verdict.not_sure` is True for both, so that a consumer that
skips hedged answers (tags, filters) skips both.

``"vote"``: the genre most segments voted for; a tie goes to the higher mean probability.
``"mean"``: the genre with the highest probability averaged over the segments. Either way the
confidence is the winner's mean probability, and silence always makes the answer "not sure".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from .errors import ConfigError

AGGREGATES = ("vote", "mean")
#: RMS (full scale 1.0) below which a song counts as silent: -80 dBFS, the level
#: :class:`codeFeature.level.LevelMeter` also calls silent.
SILENT_RMS = 1e-4


STATES = ("genre", "not_sure", "outside")
OUTSIDE_KINDS = ("music", "not music")


def _floats(values, name: str, length: Optional[int] = None) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"decision outside {name} must be a list of numbers") from None
    if length is not None and len(out) != length:
        raise ConfigError(f"decision outside {name} has {len(out)} values, expected {length}")
    if not all(np.isfinite(out)):
        raise ConfigError(f"decision outside {name} must be finite")
    return out


@dataclass(frozen=True)
class OutsideRule:
    """When a song is "not one of the ten genres" (or not music), from the model's tags.

    The song's tag profile (its tags averaged over the segments; with ``transform`` "logit", their
    log-odds) is standardised by the training songs' per-tag ``mean`` and ``scale``, giving ``z``.

    * **outside** when its **outside score**, ``sigmoid(weights . z + bias)`` (a logistic regression
      fitted to tell training songs from sounds outside them), exceeds ``min_score``; or when its
      **distance**, the per-tag RMS distance from ``z`` to the nearest of the genres' ``centroids``
      (each genre's average training profile), exceeds ``max_distance`` (0: off);
    * or when its strongest music tag (of ``music_tags``) is below ``min_music`` (then not music);
    * or, music outside the genres, when one of ``style_tags`` (tags that name music outside the genres:
      electronic, house...) stands out above the training songs (standardised score ``min_style`` or more)
      **and** the genre head is unsure of every genre (the winner's mean probability below
      ``max_confidence``): the tags name another style and the head does not recognise one of its own.

    An outside song is **not music** when its profile lies nearer one of ``not_music`` (reference
    profiles of non-music sounds, e.g. ``{"speech": [...], "noise": [...]}``) than any genre centroid
    and any of ``music`` (profiles of music outside the genres), and it "sounds like" that profile's
    name; otherwise it is music outside the genres and sounds like up to three of the ``describe`` tags
    that stand out most above the training songs (standardised score at least ``min_describe``).
    With ``score_kind`` "not music" (a score fitted to tell music from non-music), a song the score
    flags is not music, and the profiles only say what it sounds like.
    """

    tags: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    centroids: tuple[tuple[float, ...], ...]
    max_distance: float = 0.0
    not_music: tuple[tuple[str, tuple[float, ...]], ...] = ()
    music: tuple[tuple[str, tuple[float, ...]], ...] = ()
    transform: str = "none"
    weights: tuple[float, ...] = ()
    bias: float = 0.0
    min_score: float = 0.0
    music_tags: tuple[str, ...] = ()
    min_music: float = 0.0
    describe: tuple[str, ...] = ()
    min_describe: float = 1.0
    style_tags: tuple[str, ...] = ()
    min_style: float = 0.0
    max_confidence: float = 0.0
    score_kind: str = "nearest"
    source: str = ""

    @classmethod
    def from_dict(cls, spec: dict) -> "OutsideRule":
        if not isinstance(spec, dict):
            raise ConfigError(f"the decision's 'outside' must be an object, not {type(spec).__name__}")
        try:
            tags = tuple(str(t) for t in spec["tags"])
            n = len(tags)
            centroids = tuple(_floats(c, "centroids", n) for c in spec["centroids"])
            not_music = tuple((str(k), _floats(v, f"not_music[{k!r}]", n))
                              for k, v in dict(spec.get("not_music") or {}).items())
            music = tuple((str(k), _floats(v, f"music[{k!r}]", n)) for k, v in dict(spec.get("music") or {}).items())
            weights = _floats(spec["weights"], "weights", n) if spec.get("weights") else ()
            rule = cls(tags=tags, mean=_floats(spec["mean"], "mean", n), scale=_floats(spec["scale"], "scale", n),
                       centroids=centroids, max_distance=float(spec.get("max_distance", 0.0)), not_music=not_music,
                       music=music, transform=str(spec.get("transform", "none")), weights=weights,
                       bias=float(spec.get("bias", 0.0)), min_score=float(spec.get("min_score", 0.0)),
                       music_tags=tuple(str(t) for t in spec.get("music_tags", ())),
                       min_music=float(spec.get("min_music", 0.0)),
                       describe=tuple(str(t) for t in spec.get("describe", ())),
                       min_describe=float(spec.get("min_describe", 1.0)),
                       style_tags=tuple(str(t) for t in spec.get("style_tags", ())),
                       min_style=float(spec.get("min_style", 0.0)),
                       max_confidence=float(spec.get("max_confidence", 0.0)),
                       score_kind=str(spec.get("score_kind", "nearest")), source=str(spec.get("source", "")))
        except KeyError as missing:
            raise ConfigError(f"the decision's 'outside' lacks {missing}") from None
        except (TypeError, ValueError) as error:
            raise ConfigError(f"the decision's 'outside' is malformed: {error}") from None
        if not centroids or min(rule.scale) <= 0 or rule.max_distance < 0:
            raise ConfigError("the decision's 'outside' needs centroids, positive scales and max_distance >= 0")
        if rule.score_kind not in ("nearest", "not music"):
            raise ConfigError(f"decision outside score_kind={rule.score_kind!r}: use 'nearest' or 'not music'")
        if rule.transform not in ("none", "logit"):
            raise ConfigError(f"decision outside transform={rule.transform!r}: use 'none' or 'logit'")
        if not 0.0 <= rule.min_score < 1.0 or (rule.min_score > 0 and not weights):
            raise ConfigError("decision outside min_score must lie in [0, 1) and needs weights")
        if not 0.0 <= rule.max_confidence <= 1.0 or (rule.max_confidence > 0 and not (rule.style_tags
                                                                                   and rule.min_style > 0)):
            raise ConfigError("decision outside max_confidence must lie in [0, 1] and needs style_tags and "
                              "min_style > 0")
        if rule.max_distance == 0 and rule.min_score == 0 and rule.min_music == 0 and rule.max_confidence == 0:
            raise ConfigError("the decision's 'outside' sets no test (max_distance, min_score, min_music or "
                              "max_confidence)")
        unknown = [t for t in rule.music_tags + rule.describe + rule.style_tags if t not in tags]
        if unknown:
            raise ConfigError(f"the decision's 'outside' names tags the model lacks: {', '.join(unknown)}")
        return rule

    def to_dict(self) -> dict:
        return {"tags": list(self.tags), "mean": list(self.mean), "scale": list(self.scale),
                "centroids": [list(c) for c in self.centroids], "max_distance": self.max_distance,
                "not_music": {k: list(v) for k, v in self.not_music}, "music": {k: list(v) for k, v in self.music},
                "transform": self.transform, "weights": list(self.weights), "bias": self.bias,
                "min_score": self.min_score, "music_tags": list(self.music_tags),
                "min_music": self.min_music, "describe": list(self.describe), "min_describe": self.min_describe,
                "style_tags": list(self.style_tags), "min_style": self.min_style,
                "max_confidence": self.max_confidence, "score_kind": self.score_kind, "source": self.source}

    def standardise(self, profile: np.ndarray) -> np.ndarray:
        x = np.asarray(profile, np.float64)
        if self.transform == "logit":
            x = np.clip(x, 1e-4, 1 - 1e-4)
            x = np.log(x / (1 - x))
        return (x - np.asarray(self.mean)) / np.asarray(self.scale)

    def distance(self, z: np.ndarray, to: Sequence[Sequence[float]]) -> np.ndarray:
        """Per-tag RMS distance from standardised profile ``z`` to each row of ``to``."""
        return np.sqrt(((np.asarray(to, np.float64) - z) ** 2).mean(axis=1))

    def score(self, z: np.ndarray) -> float:
        """The outside score of standardised profile ``z``, in [0, 1] (0 without weights)."""
        if not self.weights:
            return 0.0
        return float(1.0 / (1.0 + np.exp(-(np.dot(self.weights, z) + self.bias))))

    def assess(self, tags: np.ndarray, confidence: Optional[float] = None
               ) -> Optional[tuple[str, str, tuple[str, ...]]]:
        """``(kind, reason, sounds_like)`` when the song is outside, else None.

        Parameters
        ----------
        tags : np.ndarray, shape (n_segments, n_tags)
        confidence : float, optional
            The genre head's winner's mean probability; without it the style test (``max_confidence``)
            never fires.
        """
        tags = np.asarray(tags, np.float64)
        if tags.ndim != 2 or tags.shape[1] != len(self.tags) or not len(tags):
            return None
        profile = tags.mean(axis=0)
        z = self.standardise(profile)
        nearest_genre = float(self.distance(z, self.centroids).min())
        if self.music_tags and self.min_music > 0:
            strongest = max(float(profile[self.tags.index(t)]) for t in self.music_tags)
            if strongest < self.min_music:
                return ("not music", f"no music tag reaches {percent(self.min_music)} (the strongest has "
                        f"{percent(strongest)})", self._nearest_not_music(z) or ())
        score = self.score(z)
        if self.min_score > 0 and score > self.min_score and self.score_kind == "not music":
            return ("not music", f"its tags score {score:.2f} for sounding unlike music, above the "
                    f"{self.min_score:.2f} that few training songs reach", self._nearest_not_music(z) or ())
        if self.min_score > 0 and score > self.min_score:
            why = (f"its tags score {score:.2f} for sounding unlike the training songs, above the "
                   f"{self.min_score:.2f} that few of them reach")
        elif self.max_distance > 0 and nearest_genre > self.max_distance:
            why = (f"its tags lie {nearest_genre:.2f} from the nearest genre's typical tags, beyond "
                   f"the {self.max_distance:.2f} that fits most of the training songs")
        else:
            style = self.style(z)
            if style is None or confidence is None or not self.max_confidence or confidence >= self.max_confidence:
                return None
            tag, level = style
            # music by the tags' own words: only the tests above decide "not music"
            return ("music", f"its tags name {tag.lower()} ({level:.2f} standard deviations above the training "
                    f"songs, beyond the {self.min_style:.2f} few of them reach) and no genre is clear (the best has "
                    f"{percent(confidence)}, under {percent(self.max_confidence)})", self.sounds_like(z))
        if self.not_music:
            gaps = self.distance(z, [v for _, v in self.not_music])
            i = int(np.argmin(gaps))
            music_gap = min([nearest_genre] + list(self.distance(z, [v for _, v in self.music])) if self.music
                            else [nearest_genre])
            if gaps[i] < music_gap:
                return ("not music", why + f"; they are nearest those of {self.not_music[i][0]}",
                        (self.not_music[i][0],))
        return ("music", why, self.sounds_like(z))

    def style(self, z: np.ndarray) -> Optional[tuple[str, float]]:
        """The ``style_tags`` tag that stands out most, with its standardised score, when that reaches
        ``min_style`` (else None)."""
        if not self.style_tags or self.min_style <= 0:
            return None
        level, tag = max((float(z[self.tags.index(t)]), t) for t in self.style_tags)
        return (tag, level) if level >= self.min_style else None

    def _nearest_not_music(self, z: np.ndarray) -> Optional[tuple[str, ...]]:
        if not self.not_music:
            return None
        gaps = self.distance(z, [v for _, v in self.not_music])
        return (self.not_music[int(np.argmin(gaps))][0],)

    def sounds_like(self, z: np.ndarray) -> tuple[str, ...]:
        """Up to three ``describe`` tags, lower-case, that stand out most above the training songs'."""
        scored = sorted(((float(z[self.tags.index(t)]), t) for t in self.describe), reverse=True)
        words: list[str] = []
        for score, tag in scored:
            word = tag.lower()
            if score >= self.min_describe and word not in words:
                words.append(word)
        return tuple(words[:3])


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
    outside: Optional[OutsideRule] = None

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
        if spec.get("outside") is not None:
            known["outside"] = OutsideRule.from_dict(spec["outside"])
        return cls(**known)

    def to_dict(self) -> dict:
        """The manifest's ``decision`` object for this rule (``from_manifest`` reads it back unchanged)."""
        out = {k: getattr(self, k) for k in ("aggregate", "min_confidence", "min_margin", "min_tag", "source")}
        if self.outside is not None:
            out["outside"] = self.outside.to_dict()
        return out

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
        True whenever the answer is not one sure genre (:attr:`state` ``"not_sure"`` or ``"outside"``);
        :attr:`reasons` says why.
    reasons : tuple of str
        Plain-language reasons for :attr:`not_sure` (empty when sure).
    top : tuple of (str, float)
        Up to three genres by mean probability, highest first.
    rule : DecisionRule
    outside_kind : str or None
        ``"music"`` (music in none of the genres) or ``"not music"`` when :attr:`state` is ``"outside"``.
    sounds_like : tuple of str
        A few words from the model's tags saying what an outside song sounds like (may be empty).
    n_genres : int or None
        How many genres the model knows ("not one of the ten genres").
    """

    genre: str
    confidence: float
    vote_share: float
    not_sure: bool
    reasons: tuple[str, ...]
    top: tuple[tuple[str, float], ...]
    rule: DecisionRule = field(default_factory=DecisionRule)
    outside_kind: Optional[str] = None
    sounds_like: tuple[str, ...] = ()
    n_genres: Optional[int] = None

    def __post_init__(self) -> None:
        if self.outside_kind not in (None,) + OUTSIDE_KINDS:
            raise ConfigError(f"outside_kind={self.outside_kind!r}: use None or one of {', '.join(OUTSIDE_KINDS)}")
        if self.outside_kind is not None and not self.not_sure:
            raise ConfigError("an outside verdict is always hedged (not_sure=True)")

    @property
    def state(self) -> str:
        """``"genre"`` (sure of one genre), ``"not_sure"`` or ``"outside"`` (none of the model's genres)."""
        if self.outside_kind is not None:
            return "outside"
        return "not_sure" if self.not_sure else "genre"

    @property
    def headline(self) -> str:
        """``"rock"``, ``"not sure: rock or metal"`` (the two likeliest genres), ``"not one of the ten genres:
        sounds like electronic, house"`` or ``"not music: sounds like speech"``."""
        if self.outside_kind is not None:
            head = "not music" if self.outside_kind == "not music" else f"not one of the {self.genre_count_words} genres"
            return head + (": sounds like " + ", ".join(self.sounds_like) if self.sounds_like else "")
        if not self.not_sure:
            return self.genre
        names = [self.genre] + [name for name, _ in self.top if name != self.genre]
        return "not sure: " + " or ".join(names[:2])

    @property
    def genre_count_words(self) -> str:
        """How many genres the model knows, in words ("ten"), for "not one of the ten genres"."""
        n = self.n_genres if self.n_genres is not None else len(self.top)
        words = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                 "twelve")
        return words[n] if n < len(words) else str(n)

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
        if self.outside_kind == "not music":
            lead = "The model does not hear music: "
        elif self.outside_kind == "music":
            lead = f"The model hears music outside its {self.genre_count_words} genres: "
        else:
            lead = "The model is not sure: "
        return lead + "; ".join(self.reasons) + ". Top three " + self.top_text + "."

    def to_dict(self) -> dict:
        """The JSON keys a verdict adds to a prediction's record."""
        return {
            "not_sure": self.not_sure,
            "state": self.state,
            "outside_kind": self.outside_kind,
            "sounds_like": list(self.sounds_like),
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
        the signal is not music to the model. With ``rule.outside``, they also decide whether the song
        lies outside the model's genres (state ``"outside"``; silence stays ``"not_sure"``).

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
    kind, sounds_like = None, ()
    silent = rms is not None and rms < SILENT_RMS
    if rule.outside is not None and tags is not None and not silent:
        found = rule.outside.assess(tags, confidence=float(mean[best]))
        if found is not None:
            kind, why, sounds_like = found
            # the outside reason first: it is the answer; the genre reasons stay as further detail
            reasons.insert(0, why)
    return Verdict(genre=str(labels[best]), confidence=float(mean[best]), vote_share=share,
                   not_sure=bool(reasons), reasons=tuple(reasons), top=top, rule=rule,
                   outside_kind=kind, sounds_like=tuple(sounds_like), n_genres=len(labels))
