"""Every setting codeFeature takes from the environment, read in one place.

The library reads environment variables nowhere else. :func:`current` reads them at its first call (never at
import) and keeps the result; :func:`reload` reads them again (tests that change a variable, a long-lived
process told to). Code that wants a different value for one call passes it as an argument instead of editing
``os.environ``: the library never writes ``os.environ``.

=============================  ==============================================================================
variable                       meaning
=============================  ==============================================================================
CODEFEATURE_PRECISION          ``auto`` (default), ``float32``, ``bfloat16`` or ``int8``
CODEFEATURE_ENGINE             ``auto`` (default), ``tensorflow`` or ``openvino``
CODEFEATURE_ENGINE_CACHE       folder for converted models (default ``~/.cache/codefeature``; empty: none)
CODEFEATURE_OPENVINO_HINT      OpenVINO's performance hint (default ``THROUGHPUT``)
CODEFEATURE_MODELS             the folder of shipped models (default: the package's own)
CODEFEATURE_MODEL_PATH         more folders holding model folders, separated by ``os.pathsep``
ONEDNN_MAX_CPU_ISA             oneDNN's cap on the instruction set (read so that the CPU report can say so)
CODEFEATURE_LIBRARY            music-collection databases the app offers, separated by ``os.pathsep``
CODEFEATURE_SCAN_FOLDERS       folders the app may scan, separated by ``os.pathsep``
CODEFEATURE_CACHE              training's feature cache folder (default ``.cache/features`` in the checkout)
CODEFEATURE_RUNS               training's run folder (default ``runs/`` in the checkout)
NUMBA_CACHE_DIR                a numba cache folder of the user's own, used instead of the project's
NUMBA_CPU_NAME                 numba's target CPU (part of the numba cache folder's key)
NUMBA_CPU_FEATURES             numba's target CPU features (part of that key too)
NUMBA_DISABLE_JIT              numba's compiler off: nothing to cache
=============================  ==============================================================================

Tests
-----
``tests/conftest.py`` has an autouse fixture that calls :func:`forget` before and after every test, so a
test's ``monkeypatch.setenv`` is seen by the library as long as it is set before the library's first
use in that test; a test that changes a variable after that calls :func:`reload`. Code that only
needs another value for one call passes it as an argument (``plan(..., precision=...)``,
``model_search_path(models_dir=...)``) and leaves the settings alone.

What the process itself needs before TensorFlow or numba start (their own environment variables) is not
a setting: :func:`codeFeature.runtime.prepare_process` sets it, called once by each entry point.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional


def _word(environ: Mapping[str, str], name: str, default: str) -> str:
    return (environ.get(name) or "").strip().lower() or default


def _paths(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    """An ``os.pathsep``-separated list, empty parts left out."""
    return tuple(p.strip() for p in (environ.get(name) or "").split(os.pathsep) if p.strip())


@dataclass(frozen=True)
class Settings:
    """One reading of the environment. Fields hold raw, normalised words; the modules that own a decision
    check them (an unknown precision is refused by the path choice, with its own message)."""

    precision: str = "auto"
    engine: str = "auto"
    #: ``None``: the default folder; ``""``: no cache; else the folder
    engine_cache: Optional[str] = None
    openvino_hint: str = "THROUGHPUT"
    models_dir: Optional[str] = None
    model_path: tuple[str, ...] = field(default_factory=tuple)
    onednn_max_cpu_isa: str = ""
    #: the variable as written (its value goes into the CPU report's words)
    onednn_max_cpu_isa_raw: str = ""
    library: tuple[str, ...] = field(default_factory=tuple)
    scan_folders: tuple[str, ...] = field(default_factory=tuple)
    #: ``None``: unset (the default folder)
    cache: Optional[str] = None
    runs: Optional[str] = None
    #: ``""``: unset (the project's own folder)
    numba_cache_dir: str = ""
    numba_cpu_name: str = ""
    numba_cpu_features: str = ""
    numba_disable_jit: bool = False

    @classmethod
    def from_environ(cls, environ: Optional[Mapping[str, str]] = None) -> "Settings":
        env = os.environ if environ is None else environ
        cache = env.get("CODEFEATURE_ENGINE_CACHE")
        return cls(
            precision=_word(env, "CODEFEATURE_PRECISION", "auto"),
            engine=_word(env, "CODEFEATURE_ENGINE", "auto"),
            engine_cache=None if cache is None else cache.strip(),
            openvino_hint=(env.get("CODEFEATURE_OPENVINO_HINT") or "").strip().upper() or "THROUGHPUT",
            models_dir=(env.get("CODEFEATURE_MODELS") or "").strip() or None,
            model_path=_paths(env, "CODEFEATURE_MODEL_PATH"),
            onednn_max_cpu_isa=(env.get("ONEDNN_MAX_CPU_ISA") or "").strip().upper(),
            onednn_max_cpu_isa_raw=env.get("ONEDNN_MAX_CPU_ISA") or "",
            library=_paths(env, "CODEFEATURE_LIBRARY"),
            scan_folders=_paths(env, "CODEFEATURE_SCAN_FOLDERS"),
            cache=env.get("CODEFEATURE_CACHE") or None,
            runs=env.get("CODEFEATURE_RUNS") or None,
            numba_cache_dir=env.get("NUMBA_CACHE_DIR", ""),
            numba_cpu_name=env.get("NUMBA_CPU_NAME", ""),
            numba_cpu_features=env.get("NUMBA_CPU_FEATURES", ""),
            numba_disable_jit=env.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"),
        )

    def engine_cache_dir(self) -> Optional[Path]:
        """Where converted models are kept; ``None`` for no cache."""
        if self.engine_cache is None:
            return Path.home() / ".cache" / "codefeature"
        return Path(self.engine_cache) if self.engine_cache else None


_lock = threading.Lock()
_current: Optional[Settings] = None


def current() -> Settings:
    """The settings of this process: the environment as read at the first call (or the last :func:`reload`)."""
    global _current
    with _lock:
        if _current is None:
            _current = Settings.from_environ()
        return _current


def forget() -> None:
    """Drop the settings read so far: the next :func:`current` reads the environment again."""
    global _current
    with _lock:
        _current = None


def reload(environ: Optional[Mapping[str, str]] = None) -> Settings:
    """Read the environment (or ``environ``) again and make it the current settings."""
    global _current
    with _lock:
        _current = Settings.from_environ(environ)
        return _current
