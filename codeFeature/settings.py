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
=============================  ==============================================================================
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Optional


def _word(environ: Mapping[str, str], name: str, default: str) -> str:
    return (environ.get(name) or "").strip().lower() or default


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
            model_path=tuple(p.strip() for p in (env.get("CODEFEATURE_MODEL_PATH") or "").split(os.pathsep)
                             if p.strip()),
            onednn_max_cpu_isa=(env.get("ONEDNN_MAX_CPU_ISA") or "").strip().upper(),
        )

    def engine_cache_dir(self) -> Optional[Path]:
        """Where converted models are kept; ``None`` for no cache."""
        if self.engine_cache is None:
            return Path.home() / ".cache" / "codefeature"
        return Path(self.engine_cache) if self.engine_cache else None

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)


_lock = threading.Lock()
_current: Optional[Settings] = None


def current() -> Settings:
    """The settings of this process: the environment as read at the first call (or the last :func:`reload`)."""
    global _current
    with _lock:
        if _current is None:
            _current = Settings.from_environ()
        return _current


def reload(environ: Optional[Mapping[str, str]] = None) -> Settings:
    """Read the environment (or ``environ``) again and make it the current settings."""
    global _current
    with _lock:
        _current = Settings.from_environ(environ)
        return _current
