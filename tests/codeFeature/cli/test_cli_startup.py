"""The command line's start-up and its table: no TensorFlow for --help / --list-models, no native noise on
stderr, readable file names, warnings after the table, and models from CODEFEATURE_MODEL_PATH."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[3]


def _cli(*args: str, env: dict | None = None, importtime: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "codeFeature", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("args", [("--help",), ("--list-models",)])
def test_help_and_list_models_do_not_import_tensorflow(args):
    run = _cli(*args, importtime=True)
    assert run.returncode == 0, run.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert "codeFeature.model_io" in imported  # importtime really listed the imports
    heavy = {name for name in imported if name.split(".")[0] in ("tensorflow", "keras", "numba", "scipy")}
    assert not heavy, sorted(heavy)[:5]


def test_extra_model_folders_are_listed_and_resolved(tmp_path, monkeypatch):
    from codeFeature import model_io

    extra = tmp_path / "mine"
    shutil.copytree(REPO / "models" / "cnn_mfcc_small", extra / "my_cnn")
    shutil.copytree(REPO / "models" / "cnn_mfcc_small", extra / "cnn_mfcc")  # a shipped name: models/ wins
    monkeypatch.setenv(model_io.MODEL_PATH_ENV, os.pathsep.join([str(tmp_path / "missing"), str(extra)]))
    names = model_io.list_models()
    assert names[-1] == "my_cnn" and names.count("cnn_mfcc") == 1
    assert model_io.resolve_model_dir("my_cnn") == extra / "my_cnn"
    assert model_io.resolve_model_dir("cnn_mfcc") == model_io.MODELS_DIR / "cnn_mfcc"
    assert "my_cnn" in model_io.list_models(task="genre")
    assert "my_cnn" not in model_io.list_models(models_dir=model_io.MODELS_DIR)  # an explicit folder is alone
    with pytest.raises(model_io.ModelError, match="no model called 'nope'"):
        model_io.resolve_model_dir("nope")
    listing = _cli("--list-models", env={**os.environ, model_io.MODEL_PATH_ENV: str(extra)})
    line = next(l for l in listing.stdout.splitlines() if " my_cnn " in l)
    assert f"({extra})" in line and "valid track accuracy" in line


def test_list_models_says_each_models_path_and_bad_settings_in_words():
    listing = _cli("--list-models", env={**os.environ, "CODEFEATURE_PRECISION": "float32"})
    assert listing.returncode == 0, listing.stderr[-2000:]
    rows = [l for l in listing.stdout.splitlines() if " genre " in l or " tags " in l]
    assert len(rows) >= 5 and all(" tensorflow float32 " in row for row in rows), rows
    bad = _cli("--list-models", env={**os.environ, "CODEFEATURE_ENGINE": "torch"})
    assert bad.returncode == 2 and "engine='torch'" in bad.stderr and "Traceback" not in bad.stderr


def test_display_names_are_file_names_told_apart_by_their_folders():
    from codeFeature.cli.predict import display_names

    names = display_names(["/a/b/song.mp3", "/a/c/song.mp3", "other.wav",
                           "/very/deep/" + "x" * 80 + "_live.flac"], width=30)
    assert names[:3] == ["b/song.mp3", "c/song.mp3", "other.wav"]
    assert len(names[3]) == 30 and names[3].startswith("xxx") and names[3].endswith("_live.flac")


def test_native_noise_is_filtered_and_everything_else_passes():
    script = r"""
import os, sys
from codeFeature.native_stderr import filtered_native_stderr
with filtered_native_stderr():
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    os.write(2, b"I0000 00:00:1.2 42 port.cc:153] oneDNN custom operations are on. You may see...\n")
    os.write(2, b"Note: Illegal Audio-MPEG-Header 0x00000000 at offset 4417.\nNote: Trying to resync...\n")
    os.write(2, b"Warning: Xing stream size off by more than 1%, fuzzy seeking may be even more fuzzy\n")
    os.write(2, b"a native message worth seeing\n")
    print("python stderr", file=sys.stderr)
    print("stdout")
os.write(2, b"after\n")
"""
    run = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout == "stdout\n"
    assert sorted(run.stderr.splitlines()) == ["a native message worth seeing", "after", "python stderr"]


def test_cli_table_keeps_its_rows_together_and_stderr_clean(tmp_path):
    rate = 22050
    t = np.arange(8 * rate) / rate
    song = tmp_path / "songs" / "a song.wav"
    song.parent.mkdir()
    sf.write(song, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate)
    quiet = tmp_path / "other" / "a song.wav"  # same name, another folder
    quiet.parent.mkdir()
    sf.write(quiet, np.zeros(8 * rate, np.float32), rate)
    run = _cli(str(song), str(quiet), str(tmp_path / "missing.mp3"), "--model", "cnn_mfcc_small",
               env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert run.returncode == 2  # one file failed
    rows = run.stdout.splitlines()
    assert rows[0].split()[0] == "file" and len(rows) == 4
    assert rows[1].startswith("songs/a song.wav") and rows[2].startswith("other/a song.wav")
    assert rows[3].startswith("missing.mp3") and "error:" in rows[3]
    notes = [line for line in run.stderr.splitlines() if line.strip()]
    assert notes and all(line.startswith("warning: other/a song.wav: ") for line in notes), run.stderr
    assert "absl" not in run.stderr and "oneDNN" not in run.stderr
    as_json = _cli(str(song), "--model", "cnn_mfcc_small", "--json")
    assert json.loads(as_json.stdout)["file"] == str(song)
    assert "absl" not in as_json.stderr and "oneDNN" not in as_json.stderr
