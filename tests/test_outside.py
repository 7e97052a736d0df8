"""The outside rule's fitting pieces: the synthetic corpus and the valid threshold (no model needed)."""

import numpy as np

from training.outside_rule import threshold
from training.outside_synth import MUSIC_OUTSIDE, NOT_MUSIC, corpus


def test_corpus_is_deterministic_finite_and_covers_every_kind():
    a, b = corpus(per_kind=1, seconds=3.0), corpus(per_kind=1, seconds=3.0)
    assert [k for _, k, _ in a] == list(NOT_MUSIC) + list(MUSIC_OUTSIDE)
    for (_, _, x), (_, _, y) in zip(a, b):
        assert x.shape == (48000,) and x.dtype == np.float32 and np.isfinite(x).all()
        assert 0 < np.abs(x).max() <= 1 and np.array_equal(x, y)


def test_threshold_flags_at_most_the_share_asked():
    scores = np.linspace(0, 1, 98)
    t = threshold(scores, 0.10)
    assert (scores > t).sum() == 9
    assert (np.zeros(10) > threshold(np.zeros(10), 0.1)).sum() == 0  # ties are never flagged past the share
