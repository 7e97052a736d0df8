"""Try a model in a child process before a long-lived process (the app's server) loads it.

A model runs native code: TensorFlow's or OpenVINO's kernels, and librosa's numba-compiled
features. If any of it crashes (a damaged numba cache, a CPU a kernel was not built for, a broken
native library), the crash ends the whole process, and for the app that is every visitor's
session. :func:`probe_model` loads the model and classifies a few seconds of synthetic sound in a
child process (``python -m codeFeature.model_probe FOLDER``), exactly as the app warms a model up;
a child that dies by a signal, fails or hangs becomes a :class:`ProbeResult` with a plain message,
and the caller keeps serving.

A verdict is kept per model folder contents, numba cache folder and library versions: in memory
for the life of the process, and on disk (the user's cache folder) when the model ran, so a model
costs one child per machine, not one per server start. A failure is not written to disk: a later
start tries again.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

#: Longest a child may take to load and run a model (TensorFlow's import, OpenVINO's compilation
#: and librosa's first compilation on a busy machine), after which it is killed and the model refused.
PROBE_TIMEOUT = 600.0
#: What a child's output keeps for the log (its last characters: the error is at the end).
_TAIL = 2000
#: The folder holding the codeFeature package: the repository in a source checkout, site-packages
#: when installed.
_REPO = Path(__file__).resolve().parents[1]
#: Run from a source checkout (``pyproject.toml`` beside the package) rather than an installed package.
_CHECKOUT = (_REPO / "pyproject.toml").is_file()


@dataclass(frozen=True)
class ProbeResult:
    """The verdict on one model."""

    #: The model ran in the child: loading it in this process is safe.
    ok: bool
    #: The name or folder the caller gave.
    model: str
    #: For the person at the screen, in plain words; empty when ``ok``. Names no server path.
    message: str = ""
    #: For the server's log: the child's exit status and the end of its output.
    detail: str = ""
    #: The child's exit code (negative: ended by that signal); ``None`` if it was killed for time.
    returncode: Optional[int] = None
    #: The verdict came from the cache, not from a child run now.
    cached: bool = False


_verdicts: dict[str, ProbeResult] = {}
_locks: dict[str, threading.Lock] = {}
_locks_lock = threading.Lock()


def _folder_digest(folder: Path) -> str:
    """Names, sizes and modification times of every file of the folder, and the manifest's bytes."""
    digest = hashlib.sha256()
    manifest = folder / "manifest.json"
    if manifest.is_file():
        digest.update(manifest.read_bytes())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        st = path.stat()
        digest.update(f"{path.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return digest.hexdigest()


def probe_key(folder: Path) -> str:
    """What the verdict depends on: the folder's contents, the numba cache, the versions, the engine
    and precision asked for through the environment."""
    from . import numba_cache, settings

    setup = numba_cache.status()
    chosen = settings.current()
    parts = [_folder_digest(folder), str(setup.kernels), setup.key, sys.executable, chosen.precision, chosen.engine]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


def _verdict_dir() -> Path:
    from . import numba_cache

    return numba_cache.default_root().parent / "model_probes"


def _read_ok(key: str, model: str) -> Optional[ProbeResult]:
    try:
        data = json.loads((_verdict_dir() / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("ok") is True and data.get("key") == key:
        return ProbeResult(ok=True, model=model, detail=str(data.get("detail", "")), returncode=0, cached=True)
    return None


def _write_ok(key: str, result: ProbeResult) -> None:
    """Whole or not at all; a verdict that cannot be written is only not remembered."""
    folder = _verdict_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".probe-", suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump({"ok": True, "key": key, "detail": result.detail}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, folder / f"{key}.json")
    except OSError:
        pass


def _describe_end(returncode: Optional[int], timeout: float) -> str:
    if returncode is None:
        return f"did not finish within {timeout:g} s and was stopped"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        words = signal.strsignal(-returncode) or name
        return f"crashed ({name}: {words.lower()})"
    return f"failed (exit status {returncode})"


def probe_model(name_or_dir: str | os.PathLike, *, timeout: float = PROBE_TIMEOUT,
                command: Optional[Sequence[str]] = None, remember: bool = True) -> ProbeResult:
    """Load ``name_or_dir`` and classify a few seconds of noise in a child process; never raises.

    Parameters
    ----------
    name_or_dir : str or path-like
        A model's name or folder, as :func:`codeFeature.load_model` takes it.
    timeout : float
        Seconds the child may take before it is killed and the model refused.
    command : sequence of str, optional
        The child's command line (default ``python -m codeFeature.model_probe FOLDER``); for tests.
    remember : bool
        Use and keep the verdict cache (see the module's docstring).
    """
    from .errors import GenreError
    from .model_io import resolve_model_dir

    model = str(name_or_dir)
    try:
        folder = resolve_model_dir(name_or_dir)
        key = probe_key(folder)
    except (GenreError, OSError) as exc:
        return ProbeResult(ok=False, model=model, message=f"The model {model} cannot be used: {exc}",
                           detail=repr(exc))
    if command is not None:
        key = hashlib.sha256(f"{key}|{list(command)}".encode()).hexdigest()[:24]
    with _locks_lock:
        lock = _locks.setdefault(key, threading.Lock())
    with lock:  # one child per model at a time; the other sessions wait for its verdict
        if remember:
            known = _verdicts.get(key) or _read_ok(key, model)
            if known is not None:
                _verdicts[key] = known
                return replace(known, model=model, cached=True)
        result = _run_child(model, folder, timeout, command)
        if remember:
            _verdicts[key] = result
            if result.ok:
                _write_ok(key, result)
        return result


def _run_child(model: str, folder: Path, timeout: float, command: Optional[Sequence[str]]) -> ProbeResult:
    # The child imports this same codeFeature: from a checkout, ``-m`` finds it in the child's working
    # folder, the repository; an installed one is on the interpreter's own path, and ``-P`` keeps a
    # codeFeature folder in the caller's working folder from shadowing it.
    own = [sys.executable, "-m"] if _CHECKOUT else [sys.executable, "-P", "-m"]
    argv = list(command) if command is not None else [*own, "codeFeature.model_probe", str(folder)]
    try:
        # the child inherits this environment; its main() prepares the process as every entry point does
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                              cwd=str(_REPO) if _CHECKOUT else None)
        returncode: Optional[int] = done.returncode
        output = (done.stdout + done.stderr).decode("utf-8", "replace")
    except subprocess.TimeoutExpired as exc:  # run() has killed the child
        returncode = None
        output = ((exc.stdout or b"") + (exc.stderr or b"")).decode("utf-8", "replace")
    except OSError as exc:
        returncode, output = 127, f"could not start the test process: {exc}"
    detail = f"{' '.join(argv)}: exit {returncode}\n{output[-_TAIL:]}"
    if returncode == 0:
        return ProbeResult(ok=True, model=model, detail=detail, returncode=0)
    reason = _plain_reason(output) if returncode is not None and returncode > 0 else ""
    # the visitor learns why in words, not where the server keeps its files
    reason = reason.replace(str(folder), model).replace(str(_REPO), ".")
    message = (f"The model {model} could not run on this machine: a test run of it "
               f"{_describe_end(returncode, timeout)}{': ' + reason if reason else ''}. "
               "The app is still running; choose another model.")
    return ProbeResult(ok=False, model=model, message=message, detail=detail, returncode=returncode)


def _plain_reason(output: str) -> str:
    """The child's one-line reason (``main`` prints it last, after ``PROBE-ERROR:``), if any."""
    for line in reversed(output.splitlines()):
        if line.startswith("PROBE-ERROR: "):
            return line[len("PROBE-ERROR: "):].strip()
    return ""


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The child: load the folder, classify noise, exit 0; a library error is one line and exit 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m codeFeature.model_probe MODEL_FOLDER", file=sys.stderr)
        return 64
    from .runtime import prepare_process

    prepare_process()
    import numpy as np

    from .errors import GenreError
    from .model_io import load_model
    from .predict import predict_audio

    try:
        model = load_model(args[0])
        noise = np.random.default_rng(0).normal(0, 0.01, model.config.segment_samples).astype(np.float32)
        predict_audio(noise, model=model)
    except GenreError as exc:
        print(f"PROBE-ERROR: {exc}", file=sys.stderr, flush=True)
        return 2
    except Exception as exc:  # noqa: BLE001 -- the parent turns this into a message
        print(f"PROBE-ERROR: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
