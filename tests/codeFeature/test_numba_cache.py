"""librosa's numba kernels: one cache of the project's own, filled by one process (numba issue 10128),
and models tried in a child process so that a crash cannot end the server.

The first test compiles every librosa kernel the features use in a fresh cache folder (the cost of
a first run on a fresh machine: tens of CPU seconds, once for the four processes); the others are
cheap (no compilation, or a child that crashes at once).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from codeFeature import model_probe, numba_cache

REPO = Path(__file__).resolve().parents[2]
#: Bounds a child that hangs; the children here take seconds to a minute on a busy machine.
CHILD_TIMEOUT = 900

#: A process of the project on a short synthetic signal: ann_features' features (librosa's chroma,
#: beat and peak kernels, the ones that crashed) and librosa's chroma directly. It waits for a file
#: to appear, then for its own delay, before its first librosa call: starts a second or two apart
#: are what poisons a cache without the lock (a later process loads the kernels an earlier one has
#: written and compiles the rest with other numbers; seen with this script and numba 0.68.1
#: without numba_cache: 3 of 6 processes started 2 s apart, and every later one, ended with SIGSEGV).
FEATURES_CHILD = textwrap.dedent("""
    import hashlib, json, os, sys, time
    import codeFeature, librosa
    from codeFeature import numba_cache
    from codeFeature.runtime import prepare_process
    prepare_process()  # what every entry point does first
    gated = getattr(librosa.__dict__.get("__getattr__"), "_codefeature_gate", False)
    heavy_at_import = "numba" in sys.modules
    go = sys.argv[1]
    deadline = time.monotonic() + 600
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(float(sys.argv[2]))
    import numpy as np
    from codeFeature.config import FeatureConfig
    from codeFeature.features import segment_features
    from codeFeature.model_io import read_manifest, resolve_model_dir
    config = FeatureConfig.from_dict(read_manifest(resolve_model_dir("ann_features"))["feature_config"])
    t = np.arange(config.segment_samples) / config.sample_rate
    y = (0.4 * np.sin(2 * np.pi * 330 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    features = segment_features(y[None, :], config)
    chroma = librosa.feature.chroma_stft(y=y, sr=config.sample_rate)
    import numba
    status = numba_cache.status()
    print(json.dumps({
        "digest": hashlib.sha256(features.tobytes() + chroma.tobytes()).hexdigest(),
        "filled": status.filled, "owner": status.owner, "notes": list(status.notes),
        "kernels": str(status.kernels), "numba_dir": numba.config.CACHE_DIR, "env": os.environ.get("NUMBA_CACHE_DIR"),
        "gated": gated, "gate_left": getattr(librosa.__dict__.get("__getattr__"), "_codefeature_gate", False),
        "heavy_at_import": heavy_at_import}))
""")


def _env(xdg: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(XDG_CACHE_HOME=str(xdg), PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2", **extra)
    return env


def _expected_digest() -> str:
    """The same numbers computed in this test's own process (its own cache folder)."""
    import librosa

    from codeFeature.config import FeatureConfig
    from codeFeature.features import segment_features
    from codeFeature.model_io import read_manifest, resolve_model_dir

    config = FeatureConfig.from_dict(read_manifest(resolve_model_dir("ann_features"))["feature_config"])
    t = np.arange(config.segment_samples) / config.sample_rate
    y = (0.4 * np.sin(2 * np.pi * 330 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    features = segment_features(y[None, :], config)
    chroma = librosa.feature.chroma_stft(y=y, sr=config.sample_rate)
    return hashlib.sha256(features.tobytes() + chroma.tobytes()).hexdigest()


def _folder_for(xdg: Path, monkeypatch) -> Path:
    """The project's cache folder a child with ``XDG_CACHE_HOME=xdg`` chooses."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    return numba_cache.default_root() / numba_cache.cache_key()


def test_processes_started_together_on_an_empty_cache_agree(tmp_path, monkeypatch):
    """Four processes compute ann_features' features on an empty cache, two at the same instant and
    two 1.5 s and 3 s later: one compiles under the lock, the others wait and load; all exit 0 with
    the same numbers, and a fifth started afterwards only loads them."""
    xdg = tmp_path / "xdg"
    folder = _folder_for(xdg, monkeypatch)
    # what an interrupted fill (or a poisoned cache) leaves: kernel files without a ready record
    (folder / "kernels").mkdir(parents=True)
    (folder / "kernels" / "utils._localmax-1035.py311.nbi").write_bytes(b"left over")
    script = tmp_path / "child.py"
    script.write_text(FEATURES_CHILD)
    go = tmp_path / "go"
    children = [subprocess.Popen([sys.executable, str(script), str(go), delay], env=_env(xdg), cwd=tmp_path,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE) for delay in ("0", "0", "1.5", "3")]
    time.sleep(0.5)  # not needed for correctness: lets the children reach their wait before the start
    go.touch()
    outputs = []
    try:
        for child in children:
            out, err = child.communicate(timeout=CHILD_TIMEOUT)
            assert child.returncode == 0, f"exit {child.returncode}: {err.decode()[-2000:]}"
            outputs.append(json.loads(out.decode().strip().splitlines()[-1]))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    later = subprocess.run([sys.executable, str(script), str(go), "0"], env=_env(xdg), cwd=tmp_path,
                           capture_output=True, timeout=CHILD_TIMEOUT)
    assert later.returncode == 0, later.stderr.decode()[-2000:]
    last = json.loads(later.stdout.decode().strip().splitlines()[-1])

    assert len({o["digest"] for o in outputs + [last]}) == 1
    assert outputs[0]["digest"] == _expected_digest()
    assert sorted(o["filled"] for o in outputs) == [False, False, False, True]  # one compiled, three loaded
    assert last["filled"] is False
    for o in outputs + [last]:
        assert o["owner"] == "codeFeature" and o["notes"] == []
        assert o["kernels"] == o["numba_dir"] == str(folder / "kernels")
        assert o["env"] is None  # through numba's config: the environment is left alone
        assert o["gated"] and not o["gate_left"] and not o["heavy_at_import"]
    record = json.loads((folder / "ready.json").read_text())
    assert record["key"] == folder.name
    assert any(name.startswith("guf-") or "/guf-" in name for name in record["files"])
    assert all((folder / "kernels" / name).is_file() for name in record["files"])
    assert not (folder / "kernels" / "utils._localmax-1035.py311.nbi").exists()  # the leftover was discarded
    assert f"numba{numba_cache._dist_version('numba')}" in folder.name
    assert f"librosa{numba_cache._dist_version('librosa')}" in folder.name


INSPECT_CHILD = textwrap.dedent("""
    import json, os, subprocess, sys
    import codeFeature
    from codeFeature import numba_cache
    from codeFeature.runtime import prepare_process
    prepare_process()
    status = numba_cache.status()
    grandchild = subprocess.run([sys.executable, "-c", "import codeFeature; from codeFeature import numba_cache;"
                                 "from codeFeature.runtime import prepare_process; prepare_process();"
                                 "print(numba_cache.status().owner, numba_cache.status().kernels, sep=chr(9))"],
                                capture_output=True, text=True, check=True).stdout.rstrip(chr(10)).split(chr(9))
    print(json.dumps({"owner": status.owner, "kernels": str(status.kernels), "env": os.environ.get("NUMBA_CACHE_DIR"),
                      "grandchild": grandchild, "numba_imported": "numba" in sys.modules}))
""")


def test_own_folder_is_versioned_inherited_and_a_user_choice_wins(tmp_path, monkeypatch):
    xdg = tmp_path / "xdg"
    folder = _folder_for(xdg, monkeypatch)
    run = subprocess.run([sys.executable, "-c", INSPECT_CHILD], env=_env(xdg), capture_output=True, text=True,
                         timeout=CHILD_TIMEOUT, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    ours = json.loads(run.stdout.strip().splitlines()[-1])
    assert ours["owner"] == "codeFeature" and ours["kernels"] == str(folder / "kernels") and ours["env"] is None
    assert ours["grandchild"] == ["codeFeature", str(folder / "kernels")]  # a pool's worker uses the same folder
    assert not ours["numba_imported"]

    user = tmp_path / "my numba cache"
    run = subprocess.run([sys.executable, "-c", INSPECT_CHILD], env=_env(xdg, NUMBA_CACHE_DIR=str(user)),
                         capture_output=True, text=True, timeout=CHILD_TIMEOUT, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    theirs = json.loads(run.stdout.strip().splitlines()[-1])
    assert theirs["owner"] == "user" and theirs["kernels"] == theirs["env"] == str(user)
    assert theirs["grandchild"] == ["user", str(user)]


LOCKED_CHILD = textwrap.dedent("""
    import json, os, subprocess, sys
    import codeFeature
    from codeFeature import numba_cache
    status = numba_cache.ensure_ready(timeout=0.5)
    import numba
    child = subprocess.run([sys.executable, "-c", "from codeFeature.runtime import prepare_process; prepare_process();"
                            "from codeFeature import numba_cache; print(numba_cache.status().kernels)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    print(json.dumps({"owner": status.owner, "kernels": str(status.kernels), "notes": list(status.notes),
                      "numba_dir": numba.config.CACHE_DIR, "env": os.environ.get("NUMBA_CACHE_DIR"),
                      "child": child}))
""")


def test_a_lock_held_too_long_means_a_private_folder_not_a_shared_write(tmp_path, monkeypatch):
    """Another process holds the fill lock (hung, or stopped in a debugger): after the timeout this
    process compiles into a folder of its own; its children still get the shared one."""
    from filelock import FileLock

    xdg = tmp_path / "xdg"
    folder = _folder_for(xdg, monkeypatch)
    folder.mkdir(parents=True)
    with FileLock(str(folder / "lock")):
        run = subprocess.run([sys.executable, "-c", LOCKED_CHILD], env=_env(xdg), capture_output=True, text=True,
                             timeout=CHILD_TIMEOUT, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["owner"] == "private"
    assert out["numba_dir"] == out["kernels"] != str(folder / "kernels")
    assert out["env"] is None and out["child"] == str(folder / "kernels")  # a child computes the shared one
    assert any("no lock" in note for note in out["notes"])
    assert not (folder / "ready.json").exists()


def test_ready_record_is_trusted_only_whole(tmp_path):
    setup = numba_cache.CacheSetup(kernels=tmp_path / "kernels", lock=tmp_path / "lock",
                                   record=tmp_path / "ready.json", owner="codeFeature", key="k1")
    (tmp_path / "kernels" / "sub").mkdir(parents=True)
    for name in ("sub/a-1.py311.nbi", "sub/a-1.py311.1.nbc", "sub/guf-a-1.py311.nbi"):
        (tmp_path / "kernels" / name).write_bytes(b"x")
    assert not numba_cache._record_valid(setup)  # files but no record: an interrupted fill
    numba_cache._write_record(setup)
    assert numba_cache._record_valid(setup)
    assert not numba_cache._record_valid(numba_cache.CacheSetup(**{**setup.__dict__, "key": "k2"}))
    (tmp_path / "kernels" / "sub" / "guf-a-1.py311.nbi").unlink()  # half a pair gone: fill again
    assert not numba_cache._record_valid(setup)
    setup.record.write_text("{not json")
    assert not numba_cache._record_valid(setup)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ready-")] == []  # no temporary left


# ---------------------------------------------------------------- model probe

def _counting_command(counter: Path, body: str) -> list[str]:
    return [sys.executable, "-c", f"open({str(counter)!r}, 'a').write('x')\n{body}"]


def test_probe_a_model_whose_process_segfaults(tmp_path, monkeypatch):
    """The child dies by SIGSEGV: the caller gets a plain message and goes on; the verdict is kept in
    memory (no second child) and not written to disk (a later start tries again)."""
    monkeypatch.setattr(model_probe, "_verdicts", {})
    monkeypatch.setattr(model_probe, "_verdict_dir", lambda: tmp_path / "verdicts")
    counter = tmp_path / "runs"
    command = _counting_command(counter, "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    first = model_probe.probe_model("ann_features", command=command)
    assert not first.ok and first.returncode == -signal.SIGSEGV and not first.cached
    assert "ann_features could not run on this machine" in first.message
    assert "SIGSEGV" in first.message and "still running" in first.message
    assert str(REPO) not in first.message
    again = model_probe.probe_model("ann_features", command=command)
    assert not again.ok and again.cached and again.message == first.message
    assert counter.read_text() == "x"
    assert not (tmp_path / "verdicts").exists() or not list((tmp_path / "verdicts").iterdir())


def test_probe_reports_a_child_error_in_words_without_server_paths(tmp_path, monkeypatch):
    monkeypatch.setattr(model_probe, "_verdicts", {})
    folder = REPO / "models" / "ann_features"
    body = f"import sys; print('PROBE-ERROR: {folder}/model.json is not a safe Keras model', file=sys.stderr); " \
           "sys.exit(2)"
    result = model_probe.probe_model("ann_features", command=[sys.executable, "-c", body], remember=False)
    assert not result.ok and result.returncode == 2
    assert "ann_features/model.json is not a safe Keras model" in result.message
    assert str(REPO) not in result.message
    assert str(folder) in result.detail  # the server's log keeps the path


def test_probe_stops_a_child_that_hangs(tmp_path):
    result = model_probe.probe_model("ann_features", command=[sys.executable, "-c", "import time; time.sleep(120)"],
                                     timeout=1.0, remember=False)
    assert not result.ok and result.returncode is None
    assert "did not finish within 1 s" in result.message


def test_probe_unknown_model_is_refused_without_a_child():
    result = model_probe.probe_model("no_such_model_here", command=[sys.executable, "-c", "raise SystemExit(0)"],
                                     remember=False)
    assert not result.ok and result.returncode is None
    assert "no_such_model_here" in result.message


def test_probe_a_real_model_runs_and_is_remembered_on_disk(tmp_path, monkeypatch):
    """The real child (``python -m codeFeature.model_probe``) loads ann_features and classifies noise;
    the verdict is written to disk, so a new server process would not run a child again."""
    monkeypatch.setattr(model_probe, "_verdicts", {})
    monkeypatch.setattr(model_probe, "_verdict_dir", lambda: tmp_path / "verdicts")
    result = model_probe.probe_model("ann_features")
    assert result.ok, result.detail
    assert result.message == "" and result.returncode == 0 and not result.cached
    monkeypatch.setattr(model_probe, "_verdicts", {})  # as in a new process
    again = model_probe.probe_model("ann_features")
    assert again.ok and again.cached
    assert len(list((tmp_path / "verdicts").glob("*.json"))) == 1


def test_probe_child_main_says_what_is_wrong(tmp_path, capsys):
    (tmp_path / "manifest.json").write_text("{broken")
    assert model_probe.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("PROBE-ERROR: ")
    assert model_probe.main([]) == 64


SHIFT_CHILD = textwrap.dedent("""
    import numba
    for i in range(7):  # other compilations first: this process numbers its kernels differently
        numba.njit(lambda x, i=i: x + i)(1)
    import librosa.core.audio  # all load from the cache but the zero-crossing kernel, compiled now
""")


def test_probe_survives_a_real_crash_on_a_poisoned_numba_cache(tmp_path, monkeypatch):
    """Finding 9 end to end: a numba cache whose zero-crossing kernel and its wrapper were written by
    two different processes (what numba issue 10128's race leaves) makes ann_features' features end
    the process with SIGSEGV. The real probe child crashes on it; the caller gets the verdict."""
    import shutil

    good = numba_cache.ensure_ready().kernels
    assert numba_cache.status().owner == "codeFeature"
    other, poisoned = tmp_path / "other", tmp_path / "poisoned"
    shutil.copytree(good, other)
    for path in other.rglob("*_zc_wrapper*"):
        path.unlink()
    env = {k: v for k, v in os.environ.items()}
    env.update(NUMBA_CACHE_DIR=str(other), PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-c", SHIFT_CHILD], env=env, check=True, timeout=CHILD_TIMEOUT, cwd=tmp_path)
    shutil.copytree(good, poisoned)
    wrappers = list(other.rglob("guf-audio._zc_wrapper*"))
    assert wrappers
    for path in wrappers:
        shutil.copy(path, poisoned / path.relative_to(other))

    monkeypatch.setattr(model_probe, "_verdicts", {})
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(poisoned))  # as a user's own, damaged, cache folder
    result = model_probe.probe_model("ann_features", remember=False)
    assert not result.ok and result.returncode == -signal.SIGSEGV, result.detail
    assert "SIGSEGV" in result.message
