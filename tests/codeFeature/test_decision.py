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


# --- the words of a verdict never contradict its numbers (a property over random probability tables) ---

import re

from hypothesis import given, settings, strategies as st

from codeFeature.decision import percent

_QUOTED = re.compile(r"(\w+) \((\d+(?:\.\d+)?)%\)")


@st.composite
def _tables(draw):
    n_labels = draw(st.integers(2, 10))
    n_segments = draw(st.integers(1, 12))
    raw = draw(st.lists(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=n_labels, max_size=n_labels),
                        min_size=n_segments, max_size=n_segments))
    table = np.asarray(raw, dtype=np.float64) + 1e-6
    table /= table.sum(axis=1, keepdims=True)
    rule = DecisionRule(aggregate=draw(st.sampled_from(["vote", "mean"])),
                        min_confidence=draw(st.sampled_from([0.0, 0.2, 0.35, 0.6])),
                        min_margin=draw(st.sampled_from([0.0, 0.05, 0.11, 0.14, 0.3])))
    return table.astype(draw(st.sampled_from([np.float32, np.float64]))), GENRES[:n_labels], rule


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(_tables())
def test_the_words_agree_with_the_numbers(case):
    table, labels, rule = case
    verdict = decide(table, labels, rule=rule)
    mean = table.astype(np.float64).mean(axis=0)
    by_name = dict(zip(labels, mean))
    votes = dict(zip(labels, np.bincount(table.argmax(axis=1), minlength=len(labels))))
    # the top three are the chart's three longest bars, in the chart's order
    assert [p for _, p in verdict.top] == sorted((p for _, p in verdict.top), reverse=True)
    assert verdict.top[0][1] == pytest.approx(mean.max())
    # a sure answer is the chart's top bar (and, by the vote rule, the most-voted genre too): nothing on
    # screen argues against it
    if not verdict.not_sure:
        assert by_name[verdict.genre] == pytest.approx(mean.max())
        if rule.aggregate == "vote":
            assert votes[verdict.genre] == max(votes.values())
        assert verdict.headline == verdict.genre and verdict.explanation == ""
    else:
        first, second = verdict.headline.removeprefix("not sure: ").split(" or ")
        assert first == verdict.genre
        # the second genre named is the likeliest of the others, as the chart shows
        assert by_name[second] == pytest.approx(max(p for g, p in by_name.items() if g != first))
        assert verdict.explanation.startswith("The model is not sure: ")
    for reason in verdict.reasons:
        quoted = [(name, float(value)) for name, value in _QUOTED.findall(reason) if name in by_name]
        for name, value in quoted:  # every figure beside a genre is that genre's mean probability
            assert abs(value - 100 * by_name[name]) <= 0.5 + 1e-9, reason
        if "leads" in reason:  # "a (x) leads b (y) by less than m points": x >= y and x - y < m, as written
            (a, x), (b, y) = quoted
            assert (a, b) == (first, second) and x >= y and x - y < 100 * rule.min_margin
            assert by_name[a] - by_name[b] < rule.min_margin
        if "higher mean probability" in reason:  # the vote's winner, then the genre the mean prefers
            assert rule.aggregate == "vote" and by_name[second] > by_name[first]
            shown = re.search(r"\((\S+)% against (\S+)%\)", reason)
            assert float(shown[1]) >= float(shown[2])
            assert f"voted {first} ({votes[first]} of {len(table)})" in reason
    # the JSON says what the headline says
    record = verdict.to_dict()
    assert record["verdict"] == verdict.headline and record["not_sure"] == verdict.not_sure


def test_a_vote_against_the_mean_is_said_as_such_not_as_a_tie():
    # the case: 26 % against 15 % was called "nearly tied"; votes for pop, the mean for hiphop
    p = np.full((3, 10), 0.0)
    p[0, [7, 4]] = [0.40, 0.35]
    p[1, [7, 4]] = [0.38, 0.37]
    p[2, [7, 4]] = [0.00, 0.95]
    p[:, 0] = 1 - p.sum(axis=1)
    verdict = decide(p, GENRES, rule=DecisionRule(min_margin=0.14))
    assert verdict.headline == "not sure: pop or hiphop"
    assert verdict.reasons == ("most segments voted pop (2 of 3), but hiphop has the higher mean probability "
                               "(56% against 26%)",)
    assert "tied" not in verdict.explanation
    assert percent(0.255) == "26%" or percent(0.255) == "25%"


# --- the third state: outside the model's genres ---

from codeFeature.decision import OutsideRule, Verdict

_TAGS = ("rock", "electronic", "House", "dance", "speechy")


def _outside_rule(**overrides) -> OutsideRule:
    spec = {"tags": list(_TAGS), "mean": [0.2] * 5, "scale": [0.1] * 5,
            # two "genres": rock-ish and mid-everything, in standardised units
            "centroids": [[2.0, -1.0, -1.0, -1.0, -1.0], [0.0, 0.0, 0.0, 0.0, 0.0]],
            "max_distance": 2.0, "not_music": {"speech": [-1.5, -1.5, -1.5, -1.5, 4.0]},
            "describe": ["rock", "electronic", "House", "dance"], "min_describe": 1.0}
    spec.update(overrides)
    return OutsideRule.from_dict(spec)


def _two_genre_probs():
    return np.asarray([[0.8, 0.2], [0.7, 0.3]])


def test_each_state_headline_explanation_and_json():
    rule = DecisionRule(outside=_outside_rule())
    labels = ("rock", "other")
    sure = decide(_two_genre_probs(), labels, rule=rule, tags=np.array([[0.4, 0.1, 0.1, 0.1, 0.1]] * 2))
    assert sure.state == "genre" and not sure.not_sure and sure.headline == "rock" and sure.explanation == ""
    assert sure.to_dict()["state"] == "genre" and sure.to_dict()["outside_kind"] is None
    # electronic / house / dance far above the training songs: music outside the genres
    dance = decide(_two_genre_probs(), labels, rule=rule, tags=np.array([[0.2, 0.9, 0.8, 0.6, 0.2]] * 2))
    assert dance.state == "outside" and dance.outside_kind == "music" and dance.not_sure
    assert dance.sounds_like == ("electronic", "house", "dance")
    assert dance.headline == "not one of the two genres: sounds like electronic, house, dance"
    assert dance.explanation.startswith("The model hears music outside its two genres: its tags lie ")
    record = dance.to_dict()
    assert (record["state"], record["outside_kind"], record["sounds_like"], record["verdict"]) == (
        "outside", "music", ["electronic", "house", "dance"], dance.headline)
    # nearer the speech profile than any genre, and far from them: not music
    speech = decide(_two_genre_probs(), labels, rule=rule, tags=np.array([[0.05, 0.05, 0.05, 0.05, 0.6]] * 2))
    assert speech.state == "outside" and speech.outside_kind == "not music" and speech.sounds_like == ("speech",)
    assert speech.headline == "not music: sounds like speech"
    assert speech.explanation.startswith("The model does not hear music: its tags lie ")
    assert "nearest those of speech" in speech.explanation
    # silence stays "not sure", whatever the tags say
    silent = decide(_two_genre_probs(), labels, rule=rule, rms=1e-7, tags=np.array([[0.2, 0.9, 0.8, 0.6, 0.2]] * 2))
    assert silent.state == "not_sure" and silent.outside_kind is None
    # no outside rule (every model without the key): the same tags never make the answer "outside"
    plain = decide(_two_genre_probs(), labels, tags=np.array([[0.2, 0.9, 0.8, 0.6, 0.2]] * 2))
    assert plain.state == "genre"


def test_min_music_says_not_music_and_the_figures_match():
    rule = DecisionRule(outside=_outside_rule(music_tags=["rock", "electronic"], min_music=0.3))
    v = decide(_two_genre_probs(), ("rock", "other"), rule=rule, tags=np.array([[0.25, 0.1, 0.2, 0.2, 0.2]] * 3))
    assert v.outside_kind == "not music" and v.reasons[0] == "no music tag reaches 30% (the strongest has 25%)"


def test_outside_rule_round_trips_through_the_manifest_and_rejects_bad_specs():
    rule = DecisionRule(min_margin=0.1, min_tag=0.05, outside=_outside_rule())
    assert DecisionRule.from_manifest({"decision": rule.to_dict()}) == rule
    import json
    assert DecisionRule.from_manifest(json.loads(json.dumps({"decision": rule.to_dict()}))) == rule
    good = _outside_rule().to_dict()
    for bad in ({"centroids": [[0.0] * 4]}, {"scale": [0.0] * 5}, {"max_distance": 0},
                {"describe": ["techno"]}, {"transform": "log"}, {"min_score": 0.5},
                {"min_score": 1.5, "weights": [1] * 5}, {"mean": ["x"] * 5}, {"mean": [float("nan")] * 5},
                {"score_kind": "guess"}, {"max_confidence": 0.5}, {"style_tags": ["rock"], "max_confidence": 0.5},
                {"style_tags": ["rock"], "min_style": 1.0, "max_confidence": 1.5}):
        with pytest.raises(ConfigError):
            OutsideRule.from_dict({**good, **bad})
    missing = dict(good)
    del missing["centroids"]
    with pytest.raises(ConfigError):
        OutsideRule.from_dict(missing)
    with pytest.raises(ConfigError):
        DecisionRule.from_manifest({"decision": {"outside": [1, 2]}})
    with pytest.raises(ConfigError):  # an outside verdict is always hedged
        Verdict(genre="rock", confidence=0.9, vote_share=1.0, not_sure=False, reasons=(), top=(("rock", 0.9),),
                outside_kind="music")


@st.composite
def _outside_cases(draw):
    table, labels, rule = draw(_tables())
    n_segments = len(table)
    tags = np.asarray(draw(st.lists(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=5, max_size=5),
                                    min_size=n_segments, max_size=n_segments)))
    linear = draw(st.booleans())
    styled = draw(st.booleans())
    outside = _outside_rule(max_distance=draw(st.sampled_from([0.5, 2.0, 4.0])),
                            min_music=draw(st.sampled_from([0.0, 0.3])), music_tags=["rock", "electronic"],
                            transform=draw(st.sampled_from(["none", "logit"])),
                            weights=[0.5, 1.0, 1.0, 0.5, 1.0] if linear else [], bias=-3.0,
                            min_score=0.6 if linear else 0.0,
                            music={"dance": [0.0, 3.0, 3.0, 3.0, 0.0]} if linear else {},
                            score_kind=draw(st.sampled_from(["nearest", "not music"])),
                            style_tags=["electronic", "House"] if styled else [], min_style=1.5 if styled else 0.0,
                            max_confidence=draw(st.sampled_from([0.3, 0.6, 1.0])) if styled else 0.0)
    rule = DecisionRule(aggregate=rule.aggregate, min_confidence=rule.min_confidence, min_margin=rule.min_margin,
                        outside=outside)
    return table, labels, rule, tags


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(_outside_cases())
def test_the_words_agree_with_the_numbers_in_every_state(case):
    table, labels, rule, tags = case
    verdict = decide(table, labels, rule=rule, tags=tags)
    o = rule.outside
    z = o.standardise(tags.mean(axis=0))
    nearest = float(o.distance(z, o.centroids).min())
    record = verdict.to_dict()
    assert record["state"] == verdict.state and record["verdict"] == verdict.headline
    assert verdict.not_sure == (verdict.state != "genre")
    if verdict.state == "outside":
        why = verdict.reasons[0]
        assert verdict.explanation.startswith("The model hears music" if verdict.outside_kind == "music"
                                              else "The model does not hear music")
        if "no music tag" not in why:
            shown, limit = map(float, re.findall(r"(\d+\.\d+)", why)[:2])
            if " score " in why:  # "its tags score S ..., above the M ...": S is the score, S > M
                assert shown == pytest.approx(o.score(z), abs=0.006) and o.score(z) > o.min_score
                assert (verdict.outside_kind == "not music") or o.score_kind == "nearest"
            elif "name" in why:  # "its tags name T (L ... beyond the M ...) and no genre is clear (the best has C%,
                # under X%)": T's standardised level L >= M, and the winner's mean probability C < X
                tag, level = o.style(z)
                assert verdict.outside_kind == "music" and f"name {tag.lower()} " in why
                assert shown == pytest.approx(level, abs=0.006) and level >= o.min_style
                assert verdict.confidence < o.max_confidence
                best, limit_shown = re.search(r"the best has (\d+)%, under (\d+)%", why).groups()
                assert abs(float(best) - 100 * verdict.confidence) <= 0.5 + 1e-9
            else:  # "its tags lie D from the nearest genre's typical tags, beyond the M ...": D > M
                assert shown == pytest.approx(nearest, abs=0.006) and nearest > o.max_distance
            assert shown >= limit
        if verdict.outside_kind == "music":
            words = ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"][len(labels) - 2]
            assert verdict.headline.startswith(f"not one of the {words} genres")
            for word in verdict.sounds_like:  # every word named stands out above the training songs
                assert z[[t.lower() for t in o.tags].index(word)] >= o.min_describe
        else:
            assert verdict.headline.startswith("not music")
    else:
        # not outside: the tags are within reach of a genre by the rule's own numbers
        assert nearest <= o.max_distance and (o.min_score == 0 or o.score(z) <= o.min_score)
        # and either no style tag stands out or the head is sure enough of its winner
        assert o.style(z) is None or verdict.confidence >= o.max_confidence
        assert verdict.sounds_like == () and verdict.outside_kind is None
        if verdict.state == "genre":
            assert verdict.headline == verdict.genre
        else:
            assert verdict.headline.startswith("not sure: ")


def test_the_style_stage_needs_a_style_tag_and_an_unsure_head():
    rule = DecisionRule(outside=_outside_rule(max_distance=0.0, style_tags=["electronic", "House"], min_style=1.5,
                                              max_confidence=0.6))
    labels = ("rock", "other")
    house = np.array([[0.2, 0.2, 0.5, 0.2, 0.2]] * 2)  # House 3 standard deviations above the training songs
    unsure = np.asarray([[0.6, 0.4], [0.5, 0.5]])
    v = decide(unsure, labels, rule=rule, tags=house)
    assert v.state == "outside" and v.outside_kind == "music" and v.sounds_like[0] == "house"
    assert v.reasons[0].startswith("its tags name house (3.00 standard deviations above the training songs")
    assert "the best has 55%, under 60%" in v.reasons[0]
    # the head sure of one of its genres: its answer stands, whatever the tags say
    assert decide(_two_genre_probs(), labels, rule=rule, tags=house).state == "genre"
    # no style tag standing out: an unsure head's answer stands (this rule has no not-sure threshold)
    assert decide(unsure, labels, rule=rule, tags=np.array([[0.2] * 5] * 2)).state == "genre"
    # without the head's confidence (assess alone) the style stage never fires
    assert rule.outside.assess(house) is None
    with pytest.raises(ConfigError):  # max_confidence needs style tags and a level
        _outside_rule(max_confidence=0.5)
    with pytest.raises(ConfigError):
        _outside_rule(style_tags=["techno"], min_style=1.0, max_confidence=0.5)
    with pytest.raises(ConfigError):
        _outside_rule(score_kind="maybe")


def test_a_not_music_score_says_not_music_even_near_a_genre():
    # a song at the "mid-everything" genre centroid, but the score (fitted music against non-music) is high
    spec = dict(weights=[0.0, 0.0, 0.0, 0.0, 1.0], bias=0.0, min_score=0.5, max_distance=0.0, not_music={})
    tags = np.array([[0.2, 0.2, 0.2, 0.2, 0.25]] * 2)  # speechy 0.5 spread above: score 0.62
    nearest = decide(_two_genre_probs(), ("rock", "other"), rule=DecisionRule(outside=_outside_rule(**spec)), tags=tags)
    assert nearest.state == "outside" and nearest.outside_kind == "music"  # by the nearest profile: a genre's
    said = decide(_two_genre_probs(), ("rock", "other"),
                  rule=DecisionRule(outside=_outside_rule(**spec, score_kind="not music")), tags=tags)
    assert said.outside_kind == "not music" and said.headline == "not music" and said.sounds_like == ()
    assert said.reasons[0] == ("its tags score 0.62 for sounding unlike music, above the 0.50 that few training "
                               "songs reach")
