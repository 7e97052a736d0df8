"""The outside rule's fitting pieces, on made-up evidence (no model, no GTZAN): the synthetic corpus, the
versions of a file, the valid threshold, and the two-stage fit read back through the verdict."""

import dataclasses

import numpy as np
import pytest

from codeFeature.decision import DecisionRule, OutsideRule, decide
from training.outside_rule import KEEP_VERSIONS, STYLE_TAGS, evaluate, fit_rule, threshold
from training.recording_chain import degrade
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


def test_versions_of_a_file_are_seeded_and_keep_its_length():
    x = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000).astype(np.float32)
    assert np.array_equal(degrade(x, "clean", 16000, 1), x)
    for version in ("band", "shellac", "noise10"):
        y = degrade(x, version, 16000, 7)
        assert y.shape == x.shape and y.dtype == np.float32 and np.isfinite(y).all()
        assert np.array_equal(y, degrade(x, version, 16000, 7)) and not np.array_equal(y, degrade(x, version, 16000, 8))
        assert not np.allclose(y, x, atol=1e-3)
    with pytest.raises(ValueError):
        degrade(x, "vinyl", 16000, 0)


# --- the two-stage fit on made-up evidence ---

TAGS = ["rock", "jazz", "classical", "electronic", "dance", "House", "electro", "electronica", "ambient", "noisy"]
GENRES = ("rock", "jazz", "classical")


def _song(rng, genre, n_segments, shift=0.0, sure=0.8, style=0.05, noisy=0.05):
    """Tags: the genre's tag high, a style level, a 'noisy' level; probabilities: the genre at ``sure``."""
    tags = np.full((n_segments, len(TAGS)), 0.05)
    tags[:, genre] = 0.6 + shift
    tags[:, 3:8] = style
    tags[:, 9] = noisy
    tags = np.clip(tags + rng.normal(0, 0.02, tags.shape), 0.001, 0.999)
    probs = np.full((n_segments, len(GENRES)), (1 - sure) / (len(GENRES) - 1))
    probs[:, genre] = sure
    return probs, tags


def _evidence(seed=0):
    rng = np.random.default_rng(seed)
    gtzan = []
    for split, n in (("train", 60), ("valid", 40)):
        for i in range(n):
            genre = i % 3
            for version, shift in zip(KEEP_VERSIONS, (0.0, -0.1, -0.2)):
                p, t = _song(rng, genre, 1 + i % 10, shift)
                gtzan.append({"split": split, "track": f"{split}{i}", "version": version, "probabilities": p,
                              "tags": t})
    synthetic = []
    for kind in ("noise", "speech", "clicks"):
        for i in range(6):
            p, t = _song(rng, i % 3, 3, shift=-0.5, sure=0.5, noisy=0.7 if kind != "speech" else 0.4)
            synthetic.append({"family": "not music", "kind": kind, "probabilities": p, "tags": t})
    return gtzan, synthetic


def test_the_fit_keeps_the_valid_share_and_flags_the_synthetic_non_music():
    gtzan, synthetic = _evidence()
    spec, figures = fit_rule(gtzan, synthetic, TAGS, len(GENRES), max_not_music=0.05, max_style=0.05,
                             max_confidence=0.5, c_grid=(0.1, 1.0), source="a test")
    rule = OutsideRule.from_dict(spec)  # what the manifest would hold is a valid rule
    assert rule.score_kind == "not music" and rule.style_tags == tuple(t for t in STYLE_TAGS if t in TAGS)
    assert figures["C"] in (0.1, 1.0) and set(figures["leave_one_kind_out_recall"]) == {"0.1", "1"}
    answers = evaluate(spec, gtzan, synthetic, GENRES)
    for version in KEEP_VERSIONS:  # each version of valid: at most 5 % + 5 % flagged by the two stages
        a = answers[f"gtzan valid {version}"]
        assert a["tracks"] == 40 and a["outside"] <= 4
    for kind in ("noise", "speech", "clicks"):
        a = answers[f"synthetic {kind}"]
        assert a["not_music"] == a["signals"] == 6
    # the standardisation is the clean train tracks' own
    train = np.array([r["tags"].mean(0) for r in gtzan if r["split"] == "train" and r["version"] == "clean"])
    z = rule.standardise(train)
    assert np.allclose(z.mean(0), 0, atol=1e-3) and np.allclose(z.std(0)[z.std(0) > 0.5], 1, atol=1e-3)


def test_the_style_stage_fires_on_a_style_the_genres_lack_only_when_the_head_is_unsure():
    gtzan, synthetic = _evidence(1)
    spec, figures = fit_rule(gtzan, synthetic, TAGS, len(GENRES), max_confidence=0.5, c_grid=(1.0,))
    rule = DecisionRule(outside=OutsideRule.from_dict(spec))
    rng = np.random.default_rng(5)
    probs, tags = _song(rng, 0, 6, style=0.5)  # electronic tags far above any training song
    unsure = np.full_like(probs, 1 / 3)
    unsure[:, 0] += 0.01
    unsure /= unsure.sum(1, keepdims=True)
    v = decide(unsure, GENRES, rule=rule, tags=tags)
    assert v.state == "outside" and v.outside_kind == "music" and v.sounds_like
    assert set(v.sounds_like) <= {t.lower() for t in STYLE_TAGS}
    assert decide(probs, GENRES, rule=rule, tags=tags).state == "genre"  # the head is sure at 80 %
    # and an unsure head on tags like the training songs' is not outside
    _, ordinary = _song(rng, 1, 6)
    assert decide(unsure, GENRES, rule=rule, tags=ordinary).state != "outside"
    # a threshold of the fit moves with the share asked: a stricter share never flags more valid tracks
    loose, _ = fit_rule(gtzan, synthetic, TAGS, len(GENRES), max_not_music=0.2, max_style=0.2, c_grid=(1.0,))
    assert loose["min_score"] <= spec["min_score"] and loose["min_style"] <= spec["min_style"]


def test_an_absent_rule_never_fires_on_the_same_evidence():
    gtzan, synthetic = _evidence(2)
    for r in synthetic:
        assert decide(np.full((3, 3), 1 / 3) + [0.01, 0, 0], GENRES, rule=DecisionRule(), tags=r["tags"]).outside_kind \
            is None
    spec, _ = fit_rule(gtzan, synthetic, TAGS, len(GENRES), c_grid=(1.0,))
    with_rule = dataclasses.replace(DecisionRule(), outside=OutsideRule.from_dict(spec))
    assert DecisionRule.from_manifest({"decision": with_rule.to_dict()}) == with_rule


# --- the shipped rule: one verdict through every surface ---

def test_the_shipped_rule_gives_one_verdict_through_file_bytes_json_and_table(tmp_path):
    """Pink noise through the shipped default model, read as a file, as bytes, and by the command line's JSON
    and table: the same "outside" verdict everywhere (the manifest's rule, not a surface's own)."""
    import json
    import subprocess
    import sys

    import soundfile as sf

    from codeFeature.model_io import load_model
    from codeFeature.predict import predict_file
    from training.outside_synth import pink

    model = load_model("musicnn_genre")
    if model.decision_rule.outside is None:
        pytest.skip("the shipped default model has no outside rule in its manifest")
    song = tmp_path / "noise.wav"
    sf.write(song, pink(np.random.default_rng(3), 16000, 16000 * 8), 16000)
    by_file = predict_file(song, model=model).verdict
    by_bytes = predict_file(song.read_bytes(), model=model, filename="noise.wav").verdict
    assert by_file.state == "outside" and by_file.outside_kind == "not music"
    assert by_bytes.to_dict() == by_file.to_dict()
    def run(*extra):
        return subprocess.run([sys.executable, "-m", "codeFeature", str(song), "--model", "musicnn_genre", *extra],
                              capture_output=True, text=True, timeout=600)

    shown = run("--json")
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout.strip().splitlines()[-1])
    assert (record["state"], record["outside_kind"], record["verdict"]) == ("outside", "not music", by_file.headline)
    table = run()
    assert table.returncode == 0 and by_file.headline in table.stdout


def test_the_cache_keeps_each_inference_path_apart(tmp_path):
    from types import SimpleNamespace

    from training.outside_rule import _weights_key

    (tmp_path / "model.weights.h5").write_bytes(b"weights")
    reference = _weights_key(SimpleNamespace(path=tmp_path, engine="tensorflow", precision="float32"))
    int8 = _weights_key(SimpleNamespace(path=tmp_path, engine="openvino", precision="int8"))
    assert reference != int8 and int8.startswith(reference)
    (tmp_path / "model.weights.h5").write_bytes(b"other weights")
    assert _weights_key(SimpleNamespace(path=tmp_path, engine="tensorflow", precision="float32")) != reference


def test_a_model_that_is_not_there_is_said_in_words(tmp_path, capsys):
    from training.outside_rule import main

    assert main(["--model", str(tmp_path / "no_such_model")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert main(["--check", "--real-music", str(tmp_path)]) == 2
    assert "labels.csv" in capsys.readouterr().err
