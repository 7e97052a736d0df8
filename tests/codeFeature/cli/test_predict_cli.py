import json
import os
import subprocess
import sys

import numpy as np
import pytest

from codeFeature.config import GENRES
from codeFeature.errors import AudioTooShortError, ConfigError
from codeFeature.predict import Prediction, default_jobs, predict_audio, predict_file, usable_cores, vote_index
from tests.conftest import REPO, chord


def test_vote_is_majority_and_ties_go_to_the_higher_mean():
    p = np.array([[0.6, 0.4, 0], [0.6, 0.4, 0], [0.1, 0.9, 0]])
    assert vote_index(p) == 0
    tie = np.array([[0.5, 0.45, 0.05], [0.1, 0.9, 0.0]])
    assert vote_index(tie) == 1  # one vote each; mean 0.675 beats 0.3


def test_prediction_shapes_and_timeline(tiny_model, audio_dir):
    prediction = predict_file(audio_dir / "chord.flac", model=tiny_model)
    n = len(prediction.starts)
    assert n == 2  # 7 s: two whole segments, a 1 s tail (< half) dropped
    assert prediction.probabilities.shape == (n, 10)
    np.testing.assert_allclose(prediction.probabilities.sum(axis=1), 1, atol=1e-5)
    assert prediction.genre in GENRES
    assert prediction.genre == GENRES[vote_index(prediction.probabilities)]
    assert 0 <= prediction.confidence <= 1
    rows = prediction.segments()
    assert [r["start"] for r in rows] == [0.0, 3.0] and rows[-1]["end"] == 6.0
    csv = prediction.to_csv().splitlines()
    assert csv[0].split(",")[:4] == ["start", "end", "genre", "confidence"] and len(csv) == n + 1


def test_short_clip_is_padded_with_a_warning(tiny_model):
    prediction = predict_audio(chord(1.0), model=tiny_model)
    assert len(prediction.starts) == 1 and prediction.duration == pytest.approx(1.0)
    assert prediction.ends[0] == pytest.approx(1.0)
    assert any("padded" in w for w in prediction.warnings)
    with pytest.raises(AudioTooShortError):
        predict_audio(chord(0.2), model=tiny_model)
    # a 29.7 s GTZAN track in a 30 s segment (ann_features) loses nothing worth a warning; 2.9 s in 3 s neither
    assert not any("padded" in w for w in predict_audio(chord(2.9), model=tiny_model).warnings)


def test_predict_audio_resamples_and_validates(tiny_model):
    at_44k = predict_audio(chord(6.0, 44100), model=tiny_model, sample_rate=44100)
    at_22k = predict_audio(chord(6.0), model=tiny_model)
    assert at_44k.probabilities.shape == at_22k.probabilities.shape
    with pytest.raises(ConfigError, match="mono"):
        predict_audio(np.zeros((100, 2)), model=tiny_model)
    with pytest.raises(ConfigError, match="LoadedModel"):
        predict_audio(chord(3.0), model="tiny")


def test_long_input_is_chunked_consistently(tiny_model, monkeypatch):
    from codeFeature import predict

    y = chord(30.0)
    whole = predict_audio(y, model=tiny_model).probabilities
    monkeypatch.setattr(predict, "CHUNK_SEGMENTS", 3)
    seen = []
    chunked = predict_audio(y, model=tiny_model, progress=lambda f, m: seen.append(f)).probabilities
    np.testing.assert_allclose(whole, chunked, atol=1e-5)
    assert seen[-1] == 1.0 and len(seen) == 4


def _cli(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "codeFeature", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=300)


def test_cli_json_contract_and_exit_codes(tiny_model_dir, audio_dir):
    good, bad, empty = audio_dir / "chord.mp3", audio_dir / "not_audio.mp3", audio_dir / "empty.wav"
    result = _cli(good, bad, empty, audio_dir / "chord.wav", "--model", tiny_model_dir, "--json")
    assert result.returncode == 2, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["file"] for r in records] == [str(good), str(bad), str(empty), str(audio_dir / "chord.wav")]
    ok = records[0]
    assert set(ok) == {"file", "model", "genre", "confidence", "probabilities", "segments", "seconds",
                       "not_sure", "state", "outside_kind", "sounds_like", "verdict", "reasons", "top",
                       "vote_share", "rule"}
    assert isinstance(ok["not_sure"], bool) and (ok["verdict"] == ok["genre"] or ok["not_sure"])
    assert ok["top"][0]["probability"] == max(ok["probabilities"].values())
    assert ok["model"] == "tiny" and ok["genre"] in GENRES
    assert list(ok["probabilities"]) == list(GENRES)
    assert abs(sum(ok["probabilities"].values()) - 1) < 1e-3
    assert all(set(s) == {"start", "end", "genre", "confidence"} for s in ok["segments"])
    assert ok["seconds"] == pytest.approx(7.0, abs=0.1)
    assert set(records[1]) == {"file", "error"} and "could not be decoded" in records[1]["error"]
    assert "empty" in records[2]["error"]
    assert "genre" in records[3]  # carried on after the failures
    assert "Traceback" not in result.stderr


def test_cli_exit_zero_when_all_succeed_and_human_table(tiny_model_dir, audio_dir):
    result = _cli(audio_dir / "chord.ogg", "--model", tiny_model_dir)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["file", "answer"]
    assert any(g in lines[1] for g in GENRES)
    # the table's answer is the JSON's verdict (one answer everywhere), "not sure: ..." included
    record = json.loads(_cli(audio_dir / "chord.ogg", "--model", tiny_model_dir, "--json").stdout)
    assert lines[1].split()[0] == "chord.ogg" and f" {record['verdict']} " in lines[1]


def test_cli_unknown_model_is_a_per_file_error(audio_dir):
    result = _cli(audio_dir / "chord.ogg", "--model", "no-such-model", "--json")
    assert result.returncode == 2
    assert "no model called" in json.loads(result.stdout)["error"]


def test_cli_jobs_keep_input_order_and_results(tiny_model_dir, audio_dir):
    files = [audio_dir / "chord.flac", audio_dir / "not_audio.mp3", audio_dir / "mono22k.wav",
             audio_dir / "chord.ogg", audio_dir / "empty.wav", audio_dir / "chord.mp3"]
    one = _cli(*files, "--model", tiny_model_dir, "--json", "--jobs", "1")
    three = _cli(*files, "--model", tiny_model_dir, "--json", "--jobs", "3")
    assert one.returncode == three.returncode == 2
    assert [json.loads(line)["file"] for line in three.stdout.splitlines()] == [str(f) for f in files]
    assert three.stdout == one.stdout  # same answers, whatever ran beside them
    assert _cli(files[0], "--jobs", "0").returncode == 2  # argparse's usage error


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="CPU affinity is Linux's")
def test_default_jobs_follow_the_cores_this_process_may_use():
    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})  # this thread only, as taskset or a container would
        assert (usable_cores(), default_jobs()) == (1, 3)
    finally:
        os.sched_setaffinity(0, allowed)
    assert usable_cores() == len(allowed)
    assert default_jobs() == min(8, len(allowed) + 2)


def test_cli_precision_reaches_the_model(audio_dir):
    # musicnn_genre is the one shipped model with bfloat16 layers; --precision float32 must give the library's
    # float32 numbers whatever this CPU supports, and a bad CODEFEATURE_PRECISION is a per-file error
    from codeFeature.model_io import list_models, load_model

    if "musicnn_genre" not in list_models():
        pytest.skip("models/musicnn_genre is not shipped")
    song = audio_dir / "chord.flac"
    result = _cli(song, "--model", "musicnn_genre", "--json", "--precision", "float32")
    assert result.returncode == 0, result.stderr
    expected = predict_file(song, model=load_model("musicnn_genre", precision="float32"))
    got = json.loads(result.stdout)["probabilities"]
    np.testing.assert_allclose([got[g] for g in GENRES], expected.mean_probabilities, atol=1e-4)
    bad = subprocess.run([sys.executable, "-m", "codeFeature", str(song), "--model", "musicnn_genre", "--json"],
                         capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "CODEFEATURE_PRECISION": "float8"})
    assert bad.returncode == 2 and "float8" in json.loads(bad.stdout)["error"]
    assert "Traceback" not in bad.stderr
