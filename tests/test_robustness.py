"""Every bad or odd input gets its documented answer from the library, the CLI and the app.

The inputs come from ``tests/corpus.py`` and are written to a temporary folder; nothing here is
committed audio. Also: uploads and decoding only ever write inside the temporary folder, and
remove what they wrote even when decoding fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import pytest

from codeFeature import audio
from codeFeature.audio import find_ffmpeg, load_audio
from codeFeature.errors import AudioDecodeError, GenreError
from codeFeature.predict import predict_file
from tests import corpus
from tests.conftest import REPO

CASES = corpus.cases()
IDS = [c.name for c in CASES]


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, corpus.Case]:
    return {c.name: c for c in corpus.build(tmp_path_factory.mktemp("corpus"))}


@pytest.fixture(scope="module")
def library_results(built, tiny_model) -> dict:
    """Each case through ``predict_file`` from its path: a Prediction or the exception."""
    results = {}
    for name, case in built.items():
        try:
            results[name] = predict_file(case.path, model=tiny_model)
        except GenreError as exc:
            results[name] = exc
    return results


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 30
    assert len(set(IDS)) == len(IDS)
    assert sum(not c.ok for c in CASES) >= 8 and sum(c.ok for c in CASES) >= 20


def _check(case: corpus.Case, outcome) -> None:
    if case.ok:
        assert not isinstance(outcome, Exception), f"{case.name}: expected a classification, got {outcome!r}"
        assert outcome.genre in outcome.labels
        assert np.isfinite(outcome.probabilities).all()
        if case.segments is not None:
            assert len(outcome.starts) == case.segments
        if case.fragment:
            assert any(case.fragment in w for w in outcome.warnings), outcome.warnings
    else:
        assert isinstance(outcome, case.expect), f"{case.name}: expected {case.expect.__name__}, got {outcome!r}"
        assert case.fragment in str(outcome)
        assert "Traceback" not in str(outcome)


@pytest.mark.parametrize("name", IDS)
def test_library_from_path(name, built, library_results):
    _check(built[name], library_results[name])


@pytest.mark.parametrize("name", [c.name for c in CASES if c.name not in ("directory_named_wav", corpus.LONG_CASE)])
def test_library_from_uploaded_bytes(name, built, library_results, tiny_model):
    """The app's path: bytes plus the name the browser sent; same outcome as from the file."""
    case = built[name]
    try:
        outcome = predict_file(case.path.read_bytes(), model=tiny_model, filename=case.shown_name)
    except GenreError as exc:
        outcome = exc
    _check(case, outcome)
    from_path = library_results[name]
    if case.ok:
        np.testing.assert_allclose(outcome.probabilities, from_path.probabilities, atol=1e-5)


def test_cli_answers_every_file_and_carries_on(built, library_results, tiny_model_dir):
    """One CLI run over the whole corpus (plus a repeated file and a missing one), as JSON lines."""
    cases = list(built.values())
    paths = [str(c.path) for c in cases]
    # the same file twice; a path through ../ ; a file that does not exist
    mono = built["mono"].path
    extra = [str(mono), str(mono.parent / ".." / mono.parent.name / mono.name), str(mono.parent / "missing.wav")]
    done = subprocess.run([sys.executable, "-m", "codeFeature", *paths, *extra, "--json",
                           "--model", str(tiny_model_dir)], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stdout and "Traceback" not in done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["file"] for line in lines] == paths + extra
    for case, line in zip(cases, lines):
        if case.ok:
            assert "error" not in line, f"{case.name}: {line}"
            assert set(line) >= {"file", "model", "genre", "confidence", "probabilities", "segments", "seconds"}
            if case.segments is not None:
                assert len(line["segments"]) == case.segments
            assert line["genre"] == library_results[case.name].genre, case.name
            if case.fragment:
                assert case.fragment in done.stderr  # warnings go to stderr
        else:
            assert set(line) == {"file", "error"}, f"{case.name}: {line}"
            assert case.fragment in line["error"], f"{case.name}: {line}"
            assert "unexpected error" not in line["error"]
    same, dotted, missing = lines[len(cases):]
    reference = lines[[c.name for c in cases].index("mono")]
    for repeat in (same, dotted):
        assert {k: v for k, v in repeat.items() if k != "file"} == {k: v for k, v in reference.items() if k != "file"}
    assert "does not exist" in missing["error"]


# ---------------------------------------------------------------- temporary files

@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """Point tempfile at an empty folder, to see exactly what decoding writes there."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.skipif(find_ffmpeg() is None, reason="no ffmpeg binary (system or imageio-ffmpeg)")
def test_ffmpeg_temp_file_is_private_and_removed_on_success_and_failure(private_tmp, built, monkeypatch):
    good = built["m4a_aac"].path.read_bytes()
    hostile = "../../../etc/evil name;$(id)`x`.m4a"
    assert load_audio(good, filename=hostile).duration > 4
    assert list(private_tmp.iterdir()) == []
    with pytest.raises(AudioDecodeError, match="could not be decoded"):
        load_audio(b"\x00\x00\x00\x20ftypM4A " + os.urandom(3000), filename=hostile)
    assert list(private_tmp.iterdir()) == []

    seen = []
    real_popen = subprocess.Popen

    def watched_popen(command, **kwargs):
        # ffmpeg reads the checked, open temporary file through its /dev/fd/N name
        path = Path(command[command.index("-i") + 1]).resolve()
        seen.append(path)
        assert path.parent == private_tmp and path.exists()
        assert ".." not in path.name and "evil" not in path.name and "$" not in path.name
        return real_popen(command, **kwargs)

    class ExpiredAtOnce:
        """A timer whose time is up as soon as it starts: ffmpeg is killed at once."""

        def __init__(self, seconds, function):
            self.function, self.daemon = function, True

        def start(self):
            self.function()

        def cancel(self):
            pass

    monkeypatch.setattr(audio.subprocess, "Popen", watched_popen)
    monkeypatch.setattr(audio.threading, "Timer", ExpiredAtOnce)
    with pytest.raises(AudioDecodeError, match="longer than"):
        load_audio(good, filename=hostile)
    assert seen and not seen[0].exists()
    assert list(private_tmp.iterdir()) == []


def test_native_decoding_writes_no_file(private_tmp, built):
    for name in ("mp3", "flac", "png_as_mp3", "truncated_mp3"):
        try:
            load_audio(built[name].path.read_bytes(), filename="../" + built[name].filename)
        except GenreError:
            pass
    assert list(private_tmp.iterdir()) == []


# ---------------------------------------------------------------- the app

def test_upload_limit_is_configured_and_documented():
    """AppTest does not enforce server.maxUploadSize, so check it is set, and the README states it."""
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    limit = config["server"]["maxUploadSize"]
    assert isinstance(limit, int) and 50 <= limit <= 1000
    # an hour of 44.1 kHz 16-bit stereo mp3 at 320 kbit/s fits (~144 MB)
    assert limit >= 150
    readme = (REPO / "README.md").read_text()
    assert f"{limit} MB" in readme
    assert config["client"]["showErrorDetails"] in ("none", False)


APP_ORDER = ["empty", "mp3", "png_as_mp3", "mp3_id3_cover", "clip_0.2s", "truncated_mp3", "silence",
             "nan_inf_float", "six_channels", "m4a_aac", "funny_name", "mp3"]


def test_app_answers_the_corpus_subset_and_keeps_serving(built, tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    assert {c.name for c in CASES if c.app} <= set(APP_ORDER)
    # the app must write nothing: not in its working folder, not in the temporary folder
    monkeypatch.chdir(tmp_path)
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.run()
    genres = {}
    for name in APP_ORDER:
        case = built[name]
        at.file_uploader[0].set_value((case.shown_name, case.path.read_bytes(), "application/octet-stream")).run()
        assert not at.exception, f"{name}: {at.exception}"
        texts = [e.value for e in at.error] + [w.value for w in at.warning] + [m.value for m in at.markdown]
        assert not any("Traceback" in t for t in texts), name
        if case.ok:
            assert not at.error, f"{name}: {[e.value for e in at.error]}"
            genre = next(m.value for m in at.metric if m.label == "Genre")
            assert genre, name
            if case.fragment:
                assert any(case.fragment in w.value for w in at.warning), name
            if name in genres:  # the same file uploaded again gets the same answer
                assert genre == genres[name]
            genres[name] = genre
        else:
            assert len(at.error) == 1, name
            message = at.error[0].value
            assert message.count(case.shown_name) == 1, message  # the file named once, in plain words
            assert case.fragment in message and "unexpected" not in message
            assert not [m for m in at.metric if m.label == "Genre"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]
    assert list(private.iterdir()) == []


def test_app_turns_an_unexpected_failure_into_a_message(built, monkeypatch):
    """A bug in the library (not a GenreError) still gives a message, no traceback, and the app recovers."""
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    import codeFeature

    real = codeFeature.load_audio
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise MemoryError("simulated")
        return real(*args, **kwargs)

    monkeypatch.setattr(codeFeature, "load_audio", flaky)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.run()
    at.file_uploader[0].set_value(("a.wav", built["stereo"].path.read_bytes(), "audio/wav")).run()
    assert not at.exception
    assert at.error and "Something unexpected went wrong" in at.error[0].value
    assert "MemoryError" not in at.error[0].value
    at.file_uploader[0].set_value(("b.wav", built["mono"].path.read_bytes(), "audio/wav")).run()
    assert not at.exception and not at.error
    assert next(m.value for m in at.metric if m.label == "Genre")


def _wav_header(channels: int, rate: int, n_bytes: int = 4000) -> bytes:
    """A PCM16 wav whose header claims ``channels`` at ``rate`` Hz and ~2 GB of data; ``n_bytes`` follow."""
    import struct

    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    body = b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 0x7FFFFFF0) + bytes(n_bytes)
    return b"RIFF" + struct.pack("<I", 0x7FFFFFF0) + b"WAVE" + body


@pytest.mark.parametrize("channels, rate, n_bytes", [(2, 1, 4000), (1, 1, 2_000_000), (1, 4_000_000, 4000)])
def test_an_absurd_rate_in_the_header_is_refused(channels, rate, n_bytes):
    """Before the fix a 4 kB wav claiming 1 Hz decoded to 1000 s (400 MB), and a 2 MB one raised
    MemoryError (std::bad_alloc) from the resampler: a tiny upload could exhaust the server."""
    with pytest.raises(AudioDecodeError, match=f"header claims {channels} channels at {rate} Hz"):
        load_audio(_wav_header(channels, rate, n_bytes), filename="hostile.wav")


def test_a_header_claiming_a_thousand_channels_reads_small_blocks(monkeypatch):
    """Blocks are sized in samples, not frames, so 1000 claimed channels cannot allocate ~1 GB at once."""
    import soundfile

    sizes = []
    real_read = soundfile.SoundFile.read

    def spy(self, frames=-1, *args, **kwargs):
        sizes.append(frames * self.channels)
        return real_read(self, frames, *args, **kwargs)

    monkeypatch.setattr(soundfile.SoundFile, "read", spy)
    try:
        load_audio(_wav_header(1000, 44100, 40_000), filename="hostile.wav")
    except GenreError:
        pass
    assert sizes and max(sizes) <= 1 << 18


def test_audio_longer_than_the_cap_is_cut_with_a_warning(monkeypatch, built):
    monkeypatch.setattr(audio, "MAX_SECONDS", 2)
    decoded = load_audio(built["flac"].path)  # 7 s
    assert decoded.duration == pytest.approx(2.0, abs=0.01)
    assert any("only the first" in w for w in decoded.warnings)
    if find_ffmpeg() is not None:
        decoded = load_audio(built["m4a_aac"].path)  # 5 s, through ffmpeg
        assert decoded.duration == pytest.approx(2.0, abs=0.01)
        assert any("only the first" in w for w in decoded.warnings)
    # exactly at the cap: no warning
    monkeypatch.setattr(audio, "MAX_SECONDS", 4)
    assert not load_audio(built["mono"].path).warnings


def test_app_good_bad_then_the_same_good_file_again(built):
    """Re-uploading the file that was shown before an error must classify it again, not crash."""
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.run()
    good = built["stereo"].path.read_bytes()
    at.file_uploader[0].set_value(("a.wav", good, "audio/wav")).run()
    first = next(m.value for m in at.metric if m.label == "Genre")
    at.file_uploader[0].set_value(("bad.mp3", b"not audio" * 50, "audio/mpeg")).run()
    assert at.error and not at.exception
    at.file_uploader[0].set_value(("a.wav", good, "audio/wav")).run()
    assert not at.exception, at.exception
    assert not at.error
    assert next(m.value for m in at.metric if m.label == "Genre") == first
