"""codeFeature.settings is the one reader of the environment, at first use; the library writes nothing to
``os.environ``; codeFeature.runtime.prepare_process sets up what TensorFlow and numba read when they start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from codeFeature import settings
from codeFeature.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_every_variable_is_parsed_in_one_place():
    read = Settings.from_environ({
        "CODEFEATURE_PRECISION": " Int8 ", "CODEFEATURE_ENGINE": "OpenVINO", "CODEFEATURE_ENGINE_CACHE": "",
        "CODEFEATURE_OPENVINO_HINT": "latency", "CODEFEATURE_MODELS": "/m", "ONEDNN_MAX_CPU_ISA": "avx2",
        "CODEFEATURE_MODEL_PATH": os.pathsep.join(["/a", " ", "/b "]), "CODEFEATURE_LIBRARY": "/x.db",
        "CODEFEATURE_SCAN_FOLDERS": os.pathsep.join(["/music", "/more"]), "CODEFEATURE_CACHE": "/c",
        "CODEFEATURE_RUNS": "/r", "NUMBA_CACHE_DIR": "/n", "NUMBA_CPU_NAME": "generic", "NUMBA_DISABLE_JIT": "1"})
    assert (read.precision, read.engine, read.openvino_hint) == ("int8", "openvino", "LATENCY")
    assert read.engine_cache_dir() is None  # empty: no cache
    assert (read.models_dir, read.model_path) == ("/m", ("/a", "/b"))
    assert (read.onednn_max_cpu_isa, read.onednn_max_cpu_isa_raw) == ("AVX2", "avx2")
    assert (read.library, read.scan_folders, read.cache, read.runs) == (("/x.db",), ("/music", "/more"), "/c", "/r")
    assert (read.numba_cache_dir, read.numba_cpu_name, read.numba_disable_jit) == ("/n", "generic", True)
    empty = Settings.from_environ({})
    assert empty == Settings() and empty.engine_cache_dir() == Path.home() / ".cache" / "codefeature"
    assert not Settings.from_environ({"NUMBA_DISABLE_JIT": "0"}).numba_disable_jit


def test_read_once_until_reloaded(monkeypatch):
    monkeypatch.setenv("CODEFEATURE_PRECISION", "float32")
    first = settings.current()
    assert first.precision == "float32"
    monkeypatch.setenv("CODEFEATURE_PRECISION", "bfloat16")
    assert settings.current() is first  # read once: a change is not seen ...
    assert settings.reload().precision == "bfloat16"  # ... until the environment is read again
    assert settings.current().precision == "bfloat16"
    settings.forget()
    monkeypatch.setenv("CODEFEATURE_PRECISION", "int8")
    assert settings.current().precision == "int8"
    assert settings.reload({"CODEFEATURE_PRECISION": "auto"}).precision == "auto"  # a mapping of one's own


def test_a_bad_setting_is_refused_in_words_where_it_is_used(monkeypatch):
    from codeFeature.cpu import CpuFacts
    from codeFeature.errors import ConfigError
    from codeFeature.inference_path import plan

    monkeypatch.setenv("CODEFEATURE_PRECISION", "float16")
    with pytest.raises(ConfigError, match="precision='float16': use one of auto, float32, bfloat16, int8"):
        plan({"bfloat16_layers": ["x"]}, facts=CpuFacts("avx2", openvino=False))


IMPORT_CHILD = textwrap.dedent("""
    import json, os, sys
    before = dict(os.environ)
    import codeFeature
    from codeFeature import settings
    after_import = dict(os.environ)
    read_at_import = settings._current is not None
    from codeFeature.runtime import prepare_process
    prepare_process()
    prepare_process()  # idempotent
    print(json.dumps({"changed_by_import": sorted(k for k in set(before) | set(after_import)
                                                  if before.get(k) != after_import.get(k)),
                      "read_at_import": read_at_import,
                      "prepared": {k: os.environ.get(k) for k in ("TF_ONEDNN_USE_SYSTEM_ALLOCATOR",
                                                                   "TF_CPP_MIN_LOG_LEVEL", "NUMBA_CACHE_DIR")},
                      "heavy": sorted(m for m in ("tensorflow", "numba", "keras") if m in sys.modules)}))
""")


def test_import_reads_and_writes_nothing_and_prepare_process_sets_what_tensorflow_reads(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TF_", "NUMBA_", "CODEFEATURE_", "ONEDNN_"))}
    env.update(PYTHONPATH=str(REPO), XDG_CACHE_HOME=str(tmp_path / "xdg"), CODEFEATURE_PRECISION="bogus")
    run = subprocess.run([sys.executable, "-c", IMPORT_CHILD], env=env, capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["changed_by_import"] == [] and out["read_at_import"] is False
    # the allocator that saves memory and the quiet log; numba is pointed through its config, not the environment
    assert out["prepared"] == {"TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
                               "NUMBA_CACHE_DIR": None}
    assert out["heavy"] == []
    env["TF_ONEDNN_USE_SYSTEM_ALLOCATOR"] = "0"  # the user's own choice wins
    run = subprocess.run([sys.executable, "-c", IMPORT_CHILD], env=env, capture_output=True, text=True,
                         timeout=600, cwd=tmp_path)
    assert json.loads(run.stdout.strip().splitlines()[-1])["prepared"]["TF_ONEDNN_USE_SYSTEM_ALLOCATOR"] == "0"
