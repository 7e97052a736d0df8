"""A song's classification: :class:`Prediction`, what every way in (a file, an array, a live stream, a
stored row of the collection) gives back, and the notes it carries.

Timings are not part of it: a benchmark that wants them listens with :func:`codeFeature.phases.record_phases`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .decision import DecisionRule, Verdict, decide


@dataclass
class Prediction:
    """A song's classification.

    Attributes
    ----------
    model : str
        Name of the model that classified it.
    labels : tuple of str
        Output labels, in the columns' order.
    probabilities : np.ndarray, shape (n_segments, n_labels), float32
        Each segment's softmax output.
    starts : np.ndarray, shape (n_segments,), float64
        Segment start times in seconds.
    segment_seconds : float
        Length of one segment.
    duration : float
        Length of the decoded audio in seconds.
    file : str or None
        Name of the input, when it had one.
    warnings : list of str
        Readable notes about the input (silence, clipping, padding).
    extras : dict of str to np.ndarray
        Per-segment values of a model's further outputs, such as musicnn's 50 tags,
        each shape (n_segments, n_values); labelled by ``extra_labels``.
    rule : DecisionRule
        How the segments become one answer (from the model's manifest; see :mod:`codeFeature.decision`).
    rms : float or None
        The decoded audio's RMS level (full scale 1.0), when known; silence makes the answer "not sure".
    """

    model: str
    labels: tuple[str, ...]
    probabilities: np.ndarray
    starts: np.ndarray
    segment_seconds: float
    duration: float
    file: Optional[str] = None
    warnings: list = field(default_factory=list)
    extras: dict = field(default_factory=dict)
    extra_labels: dict = field(default_factory=dict)
    rule: DecisionRule = field(default_factory=DecisionRule)
    rms: Optional[float] = None

    @property
    def ends(self) -> np.ndarray:
        """Segment end times in seconds, clipped to the song's duration."""
        return np.minimum(self.starts + self.segment_seconds, self.duration)

    @property
    def segment_labels(self) -> list[str]:
        """Each segment's most probable label."""
        return [self.labels[i] for i in self.probabilities.argmax(axis=1)]

    @property
    def segment_confidences(self) -> np.ndarray:
        """Each segment's top probability, shape (n_segments,)."""
        return self.probabilities.max(axis=1)

    @property
    def mean_probabilities(self) -> np.ndarray:
        """Probabilities averaged over segments, shape (n_labels,)."""
        return self.probabilities.mean(axis=0)

    @property
    def votes(self) -> np.ndarray:
        """How many segments voted for each label, shape (n_labels,)."""
        return np.bincount(self.probabilities.argmax(axis=1), minlength=len(self.labels))

    @property
    def verdict(self) -> Verdict:
        """The answer by the model's :attr:`rule`: genre, confidence, top three, and whether it is not sure."""
        return decide(self.probabilities, self.labels, rule=self.rule, rms=self.rms, tags=self.extras.get("tags"))

    @property
    def genre(self) -> str:
        """The winning genre by the model's rule (default: the majority vote over segments, a tie going
        to the higher mean probability); the best guess even when :attr:`not_sure`."""
        return self.verdict.genre

    @property
    def confidence(self) -> float:
        """Mean probability of :attr:`genre` over the segments, in [0, 1]."""
        return self.verdict.confidence

    @property
    def vote_share(self) -> float:
        """Fraction of segments that voted for :attr:`genre`."""
        return self.verdict.vote_share

    @property
    def not_sure(self) -> bool:
        """Whether the evidence is too weak to name one genre (see :attr:`verdict`'s reasons)."""
        return self.verdict.not_sure

    def top_tags(self, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` strongest tags averaged over segments, when the model outputs tags."""
        if "tags" not in self.extras:
            return []
        mean = self.extras["tags"].mean(axis=0)
        order = np.argsort(mean)[::-1][:k]
        return [(self.extra_labels["tags"][i], float(mean[i])) for i in order]

    def segments(self) -> list[dict]:
        """One dict per segment: start, end, genre, confidence and every label's probability."""
        rows = []
        for start, end, probs in zip(self.starts, self.ends, self.probabilities):
            best = int(np.argmax(probs))
            row = {"start": round(float(start), 3), "end": round(float(end), 3),
                   "genre": self.labels[best], "confidence": round(float(probs[best]), 4)}
            rows.append(row)
        return rows

    def to_dict(self) -> dict:
        """The CLI's JSON object (see ``python -m codeFeature --help``): the original keys, then the
        verdict's (``not_sure``, ``state``, ``outside_kind``, ``sounds_like``, ``verdict``, ``reasons``, ``top``,
        ``vote_share``, ``rule``)."""
        verdict = self.verdict
        return {
            "file": self.file,
            "model": self.model,
            "genre": verdict.genre,
            "confidence": round(verdict.confidence, 4),
            "probabilities": {label: round(float(p), 4) for label, p in zip(self.labels, self.mean_probabilities)},
            "segments": self.segments(),
            "seconds": round(float(self.duration), 3),
            **verdict.to_dict(),
        }

    def to_csv(self) -> str:
        """Per-segment predictions as CSV: start, end, genre, confidence, then one column per label."""
        lines = [",".join(["start", "end", "genre", "confidence", *self.labels])]
        for start, end, probs in zip(self.starts, self.ends, self.probabilities):
            best = int(np.argmax(probs))
            cells = [f"{start:.3f}", f"{end:.3f}", self.labels[best], f"{probs[best]:.4f}"]
            lines.append(",".join(cells + [f"{p:.4f}" for p in probs]))
        return "\n".join(lines) + "\n"


#: A song shorter than one segment is padded by repeating it; the note says so only when the repeat
#: is more than this share of the segment (a 29.7 s GTZAN track in a 30 s segment is not worth a warning).
PADDING_NOTE_SHARE = 0.1


def padding_note(duration: float, config) -> list[str]:
    """The padding warning for a song of ``duration`` seconds, as a list of zero or one note."""
    if duration >= config.segment_seconds * (1 - PADDING_NOTE_SHARE):
        return []
    return [f"the audio lasts {duration:.1f} s, less than one {config.segment_seconds:g} s segment; "
            "it was padded by repeating it"]


def extra_labels(model) -> dict:
    """The labels of a loaded model's further outputs (the manifest's ``extra_outputs``), by name."""
    return {spec["name"]: tuple(spec["labels"]) for spec in model.manifest.get("extra_outputs", [])}
