"""The verdict contract: one rule, the top three, and "not sure" when the evidence is weak."""

import numpy as np
import pytest

from codeFeature.config import GENRES
from codeFeature.decision import DecisionRule, decide, vote_index, winner_index
from codeFeature.errors import ConfigError


def _probs(rows):
    return np.asarray(rows, dtype=np.float32)


def test_vote_and_mean_can_disagree_and_the_rule_decides():
    # two segments say blues weakly, one says classical strongly: vote -> blues, mean -> classical
    p = np.zeros((3, 10), np.float32)
    p[0, 0], p[0, 1] = 0.4, 0.3
    p[1, 0], p[1, 1] = 0.4, 0.3
    p[2, 1] = 0.9
    p[:, 2] = 1 - p.sum(axis=1)
    assert winner_index(p, "vote") == 0 and winner_index(p, "mean") == 1
    by_vote = decide(p, GENRES, rule=DecisionRule(aggregate="vote"))
    by_mean = decide(p, GENRES, rule=DecisionRule(aggregate="mean"))
    assert by_vote.genre == "blues" and by_mean.genre == "classical"
    assert by_mean.top[0][0] == by_mean.genre  # the mean rule's headline is the chart's top bar
    assert by_vote.confidence == pytest.approx(p[:, 0].mean())
    assert by_vote.vote_share == pytest.approx(2 / 3)


def test_tie_in_votes_goes_to_the_higher_mean():
    p = _probs([[0.6, 0.4] + [0] * 8, [0.45, 0.55] + [0] * 8])
    assert vote_index(p) == 0


def test_not_sure_on_low_confidence_near_tie_silence_and_no_tags():
    p = np.full((4, 10), 0.1, np.float32)
    p[:, 3] += 0.05
    p[:, 4] += 0.04
    p /= p.sum(axis=1, keepdims=True)
    sure = decide(p, GENRES)
    assert not sure.not_sure and sure.headline == "disco"
    weak = decide(p, GENRES, rule=DecisionRule(min_confidence=0.3))
    assert weak.not_sure and "30%" in weak.reasons[0]
    tied = decide(p, GENRES, rule=DecisionRule(min_margin=0.05))
    assert tied.not_sure and tied.headline == "not sure: disco or hiphop"
    silent = decide(p, GENRES, rms=1e-6)
    assert silent.not_sure and "silent" in silent.reasons[0]
    not_music = decide(p, GENRES, rule=DecisionRule(min_tag=0.2), tags=np.full((4, 50), 0.05))
    assert not_music.not_sure and "music" in not_music.reasons[0]
    assert not decide(p, GENRES, rule=DecisionRule(min_tag=0.2), tags=np.full((4, 50), 0.5)).not_sure


def test_rule_from_manifest_and_bad_values():
    rule = DecisionRule.from_manifest({"decision": {"aggregate": "mean", "min_margin": 0.1, "other": 1}})
    assert rule.aggregate == "mean" and rule.min_margin == 0.1
    assert DecisionRule.from_manifest({}) == DecisionRule()
    with pytest.raises(ConfigError):
        DecisionRule(aggregate="median")
    with pytest.raises(ConfigError):
        DecisionRule(min_confidence=1.5)
    with pytest.raises(ConfigError):
        decide(np.zeros((0, 10)), GENRES)


def test_to_dict_keys():
    d = decide(np.eye(10, dtype=np.float32)[[2, 2, 5]], GENRES).to_dict()
    assert d["verdict"] == "country" and d["not_sure"] is False and d["rule"] == "vote"
    assert [t["genre"] for t in d["top"]] == ["country", "jazz", "blues"]
