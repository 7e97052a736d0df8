"""The Ray runner stores what the local runner stores (a real local Ray instance, one actor)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from codeFeature.collection.classify import ModelSpec
from codeFeature.collection.scan import scan
from codeFeature.collection.store import LibraryStore, load_prediction
from tests.conftest import REPO, chord, write_audio  # noqa: F401

ray = pytest.importorskip("ray", reason="ray[data] is in requirements.txt; install it to run the Ray runner")


def test_ray_runner_gives_the_local_runners_results(tmp_path, tiny_model_dir, tiny_model):
    root = tmp_path / "music"
    (root / "sub").mkdir(parents=True)
    for i, ext in enumerate(("wav", "flac", "ogg", "mp3")):
        write_audio(root / f"song{i}.{ext}", chord(4.0 + i, seed=i))
    write_audio(root / "sub" / "short.wav", chord(1.0))
    (root / "broken.mp3").write_bytes(b"not an mp3" * 30)
    (root / "empty.wav").write_bytes(b"")
    os.symlink(root, root / "sub" / "loop")
    spec = ModelSpec.resolve(str(tiny_model_dir), "float32")
    with LibraryStore(tmp_path / "local.sqlite") as store:
        scan(root, store, spec, jobs=2, model=tiny_model, progress=False)
        local = {r["path"]: r for r in store.rows()}
    import codeFeature

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"py_modules": [codeFeature]})
    try:
        with LibraryStore(tmp_path / "ray.sqlite") as store:
            summary = scan(root, store, spec, jobs=1, runner="ray", progress=False)
            remote = {r["path"]: r for r in store.rows()}
    finally:
        ray.shutdown()
    assert summary.stored == len(local) == 7 and set(remote) == set(local)
    for path, row in local.items():
        other = remote[path]
        for column in ("status", "error", "genre", "not_sure", "verdict", "reasons", "size", "mtime_ns",
                       "fingerprint", "model", "model_hash", "n_segments", "duration", "labels", "warnings"):
            assert other[column] == row[column], (path, column)
        if row["status"] == "ok":
            # the same code on the same bytes; oneDNN's thread count in an actor may move the last float32 bit
            ours, theirs = load_prediction(row), load_prediction(other)
            np.testing.assert_allclose(theirs.probabilities, ours.probabilities, rtol=0, atol=1e-6)
            np.testing.assert_array_equal(theirs.starts, ours.starts)
            assert theirs.verdict.genre == ours.verdict.genre and theirs.verdict.not_sure == ours.verdict.not_sure


def test_the_cli_ray_scan_is_quiet_and_writes_nothing_to_the_home_folder(tmp_path, tiny_model_dir):
    """``scan --runner ray`` from a folder other than the repository, with a fresh home folder: the workers get
    the package from Ray's runtime_env (no PYTHONPATH), Ray's local instance gets a one-time token instead of
    writing ``~/.ray/auth_token``, and no error-level core_worker line reaches the terminal."""
    import subprocess
    import sys

    root = tmp_path / "music"
    root.mkdir()
    for i in range(2):
        write_audio(root / f"song{i}.wav", chord(4.0, seed=i))
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "PYTHONPATH"}
    # the driver finds the package through its own PYTHONPATH only; the workers must get it from Ray
    env.update(HOME=str(home), PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-m", "codeFeature", "scan", str(root), "--db", str(tmp_path / "r.sqlite"),
                           "--runner", "ray", "--jobs", "1", "--model", str(tiny_model_dir), "--precision", "float32"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "2 audio files found in 1 folder" in done.stderr and "2 classified now (0 errors)" in done.stderr
    assert not any("core_worker" in line and " E " in line for line in done.stderr.splitlines()), done.stderr
    assert not (home / ".ray").exists(), list((home / ".ray").iterdir())
    assert "auth_token" not in done.stderr
    with LibraryStore(tmp_path / "r.sqlite", readonly=True) as store:
        assert store.count() == 2 and all(r["status"] == "ok" for r in store.rows(with_segments=False))
