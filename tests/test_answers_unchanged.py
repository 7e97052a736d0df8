"""One answer everywhere, and the same answer as before: the answers of every surface (a path, bytes, the
app's upload decoding, the command line, a collection scan) agree on the same songs, and match the recording
in tests/fixtures/answers_reference.json (bit for bit on the CPU level and inference path it was recorded
with, within float32 summation-order noise elsewhere).

The recording was made with
    python -m bench.answers make-songs SONGS
    python -m bench.answers record SONGS --precision float32 --model musicnn_genre --model cnn_mfcc_small \\
        --out tests/fixtures/answers_reference.json
and is made again only when a model's files change on purpose (the comparison then says so). The same check
runs on real songs with `python -m bench.answers compare FOLDER --reference FILE` (see docs/testing.md).
"""

import hashlib
import json
from pathlib import Path

import pytest

from bench import answers

REFERENCE = Path(__file__).parent / "fixtures" / "answers_reference.json"


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    return answers.make_songs(tmp_path_factory.mktemp("songs"))


def test_the_synthetic_songs_are_the_recorded_ones(songs):
    """Otherwise the comparison below would compare other songs (it skips files whose bytes differ)."""
    recorded = json.loads(REFERENCE.read_text())["files"]
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in songs} == recorded


def test_every_surface_gives_the_recorded_answer(songs):
    before = json.loads(REFERENCE.read_text())
    now = answers.record(songs[0].parent, list(before["models"]), before["precision"])
    problems = answers.compare(now, before)
    assert not problems, "\n".join(problems)
    # each surface answered every song (an error row on one surface would also be a difference)
    for entry in now["models"].values():
        for surfaces in entry["answers"].values():
            assert set(surfaces) == {"path", "bytes", "app", "cli", "scan"}
            assert not any("error" in answer for answer in surfaces.values())


def test_a_changed_answer_is_caught(songs):
    """The comparison is not vacuous: one probability moved by 1e-6 on a same-machine recording fails it."""
    before = json.loads(REFERENCE.read_text())
    model_name = next(iter(before["models"]))
    entry = before["models"][model_name]
    now = {"files": before["files"], "models": {model_name: json.loads(json.dumps(entry))}}
    song = next(iter(entry["answers"]))
    now["models"][model_name]["answers"][song]["app"]["mean"][0] += 1e-6
    problems = answers.compare(now, before)
    assert any("app" in p for p in problems)
