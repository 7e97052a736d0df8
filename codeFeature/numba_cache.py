"""librosa's numba kernels: a cache of the project's own, filled by one process at a time.

Why this exists
---------------
librosa compiles some of its kernels with ``@numba.guvectorize(cache=True)`` and keeps the machine
code on disk. numba writes each such kernel as two pairs of files (``name-N.nbi/.nbc`` for the kernel,
``guf-name-N.nbi/.nbc`` for its NumPy wrapper), and the wrapper calls the kernel by a symbol whose
name carries a counter local to the process that compiled it. When two processes compile the same
kernel at once, the kernel's files can come from one process and the wrapper's from the other; the
wrapper then calls a symbol that does not exist, and *every later process that loads the pair
crashes* (SIGSEGV inside NumPy's ufunc loop, no Python traceback). This is numba issue 10128,
open for numba up to 0.68.1 (the newest at the time of writing; two fixes, numba pull requests 10545
and 10814, were not merged); librosa issue 1998 traced its segfaults to it and was closed as an
upstream bug, with the advice to warm the cache up in one process before starting others.

This project starts several processes that touch librosa at once on a fresh machine (the app's
warm-up beside a CLI, ``--pool processes``, Ray actors, the test suite beside the app), so it
takes the advice systematically:

1. **A cache location of its own** (:func:`configure`, run by
   :func:`codeFeature.runtime.prepare_process`, which the entry points call first -- the CLI, the
   app, pool workers, Ray actors, training and benchmark scripts -- or else by the gate below, before
   any librosa kernel is decorated: numba picks a function's cache folder when the function is decorated, from
   ``numba.config.CACHE_DIR``, which is set just before librosa's first kernel module loads).
   The folder is under the user's cache folder and its name carries the Python, numba, llvmlite,
   NumPy and librosa versions, librosa's source stamp and the CPU, so a cache left by other
   versions -- possibly poisoned by the race in numba's default place, librosa's ``__pycache__`` --
   is never read. The environment is left alone: child processes (pools, Ray actors on this
   machine) import codeFeature too and compute the same folder. A ``NUMBA_CACHE_DIR`` the
   user set is respected: it is used instead, never emptied.
2. **Filled once, under an inter-process lock** (:func:`ensure_ready`). The first process to need
   librosa takes an exclusive file lock, empties the folder (anything there without a "ready"
   record was left by an interrupted fill), imports librosa's modules that compile kernels at
   import, runs every feature pipeline of the project on a short synthetic signal (compiling the
   kernels numba compiles on first call), records the files it made, and lets go. Others wait on
   the lock, then find the record and only load. After the record exists no lock is taken.
3. **Lazily and automatically.** ``import codeFeature`` puts a gate on librosa's lazy attribute loader
   (librosa 0.10+ loads its submodules on first attribute access, which is when its kernels
   compile): the first ``librosa.<anything>`` in a process runs :func:`ensure_ready`, then the gate
   removes itself (:func:`ensure_ready` calls :func:`configure` first where ``prepare_process`` has not).
   ``import codeFeature`` itself stays cheap (no numba import, no setting read).

Why a lock rather than compiling into a private folder and renaming it into place: numba keeps
the folder it chose at decoration for the whole life of the process and also writes to it later
(kernels compiled on first call), so a process that compiled into a private folder would go on
writing there after the rename; and with a lock only one process on the machine pays the
compilation, while with renaming every process of a pool would compile and all but one throw the
work away. If the lock cannot be had (a folder that cannot be written, or a holder that does not
let go within :data:`LOCK_TIMEOUT` seconds), the process compiles into a private temporary folder
and shares nothing: slower, never unsafe.

What is not covered: a process that imported librosa's submodules before :mod:`codeFeature` (its kernels are already bound to numba's default cache;
:func:`status` says so), and kernels
first compiled for a type the warm-up did not use (numba compiles those on first call; they are
plain ``@jit`` kernels, stored in one file each, which the race above does not concern), and a
process whose warm-up failed (it goes on with the shared folder unmarked; the next process empties
and fills it again while the first may still write to it -- a bug in the features, said in the notes).
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from . import settings

#: How long a process waits for another one's fill before compiling privately instead. The fill
#: compiles every kernel the features use: tens of seconds on a busy small machine.
LOCK_TIMEOUT = 600.0
#: Raised when what is stored in the ready record changes, so that older records are not trusted.
RECORD_VERSION = 1
#: librosa's modules that compile kernels when imported (``@guvectorize`` / ``@vectorize`` with
#: explicit signatures and ``cache=True``), and the others whose ``cache=True`` kernels the warm-up
#: reaches by calling the features.
_EAGER_MODULES = ("librosa.util.utils", "librosa.core.audio", "librosa.core.pitch", "librosa.beat")
_ALSO_IMPORT = ("librosa.core", "librosa.util", "librosa.filters", "librosa.feature", "librosa.onset",
                "librosa.sequence", "librosa.decompose", "librosa.effects", "librosa.beat")


@dataclass(frozen=True)
class CacheSetup:
    """Where this process keeps librosa's kernels, and what :func:`ensure_ready` did."""

    #: numba's cache folder for this process (``numba.config.CACHE_DIR``).
    kernels: Path
    #: The lock file and the ready record of that folder.
    lock: Path
    record: Path
    #: ``"codeFeature"``: the project's own folder; ``"user"``: ``NUMBA_CACHE_DIR`` set by the user;
    #: ``"private"``: a temporary folder for this process alone (the lock could not be had).
    owner: str
    #: Version key that names the project's folder.
    key: str
    #: librosa's kernel modules were imported before :func:`configure`: they use numba's default cache.
    preloaded: bool = False
    #: Set by :func:`ensure_ready`: this process filled the cache (``True``), found it ready
    #: (``False``), or has not looked yet (``None``).
    filled: Optional[bool] = None
    #: Plain-words notes (why a private folder was used, what failed in the warm-up).
    notes: tuple[str, ...] = field(default_factory=tuple)


_lock = threading.RLock()
_setup: Optional[CacheSetup] = None
_ready = False
_filling = False


# ---------------------------------------------------------------- the folder

def _dist_version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "none"


def _librosa_stamp() -> str:
    """Modification times and sizes of librosa's sources: numba keys its index on the source file's
    stamp, so a librosa reinstalled in place (same version) gets a new folder rather than a
    half-stale one."""
    from importlib.util import find_spec

    spec = find_spec("librosa")
    if spec is None or not spec.submodule_search_locations:
        return "none"
    digest = hashlib.sha256()
    for root in spec.submodule_search_locations:
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "tests"))
            for name in sorted(files):
                if name.endswith(".py"):
                    st = os.stat(os.path.join(folder, name))
                    digest.update(f"{os.path.relpath(os.path.join(folder, name), root)}:{st.st_mtime_ns}:"
                                  f"{st.st_size};".encode())
    return digest.hexdigest()[:12]


def _cpu_id() -> str:
    """The CPU as numba sees it (its cache entries are per CPU model and features)."""
    chosen = settings.current()
    parts = [platform.machine(), chosen.numba_cpu_name, chosen.numba_cpu_features]
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith(("model name", "flags", "Features", "CPU part")):
                    parts.append(line.strip())
                if not line.strip() and len(parts) > 3:
                    break  # the first processor is enough
    except OSError:
        parts.append(platform.processor())
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:8]


def cache_key() -> str:
    """The name of the project's cache folder: versions in words, then a hash of the rest."""
    versions = {"py": f"{sys.implementation.name}{sys.version_info[0]}.{sys.version_info[1]}",
                "numba": _dist_version("numba"), "llvmlite": _dist_version("llvmlite"),
                "numpy": _dist_version("numpy"), "librosa": _dist_version("librosa")}
    rest = hashlib.sha256(f"{versions}|{_librosa_stamp()}|{_cpu_id()}|{RECORD_VERSION}".encode()).hexdigest()[:10]
    return f"{versions['py']}-numba{versions['numba']}-librosa{versions['librosa']}-{rest}"


def default_root() -> Path:
    """The user's cache folder for the project (``$XDG_CACHE_HOME/codeFeature`` on Linux)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("codeFeature", appauthor=False)) / "numba"


def configure() -> CacheSetup:
    """Choose this process's numba cache folder; cheap, idempotent, called by
    :func:`codeFeature.runtime.prepare_process`.

    Sets ``numba.config.CACHE_DIR`` if numba is already imported (else :func:`ensure_ready` does, before
    librosa's first kernel module loads); then puts the gate on librosa's lazy loader. Writes nothing
    to the environment.
    """
    global _setup
    with _lock:
        if _setup is not None:
            return _setup
        key = cache_key()
        folder = default_root() / key
        ours = folder / "kernels"
        chosen = settings.current().numba_cache_dir
        if chosen and os.path.abspath(chosen) != str(ours):
            user = Path(chosen)
            setup = CacheSetup(kernels=user, lock=user / ".codeFeature.lock",
                               record=user / f".codeFeature-ready-{key}.json", owner="user", key=key)
        else:
            setup = CacheSetup(kernels=ours, lock=folder / "lock", record=folder / "ready.json",
                               owner="codeFeature", key=key)
        setup = replace(setup, preloaded=any(name in sys.modules for name in _EAGER_MODULES))
        if "numba" in sys.modules:
            _point_numba_at(setup.kernels)
        _setup = setup
        install_gate()
        return setup


def status() -> CacheSetup:
    """What :func:`configure` chose and what :func:`ensure_ready` did in this process."""
    return configure()


def _point_numba_at(kernels: Path) -> None:
    """Make ``kernels`` numba's cache folder in this process (``numba.config``, imported here for that)."""
    import numba.core.config as config

    # numba re-reads its environment before each compilation when a NUMBA_ variable changed since the
    # last read: read it now, so that the value set below is not overwritten by an older one
    config.reload_config()
    config.CACHE_DIR = str(kernels)


# ---------------------------------------------------------------- the gate

def install_gate() -> None:
    """Run :func:`ensure_ready` on the first ``librosa.<name>`` that loads something, then step aside.

    Run by ``import codeFeature`` (it reads no setting and imports only librosa's lazy package), so that
    every process of the library -- an entry point that called ``prepare_process`` or not -- compiles or
    loads librosa's kernels through the project's folder and its lock."""
    try:
        import librosa  # the package alone: librosa loads its submodules lazily
    except ImportError:
        return
    original = librosa.__dict__.get("__getattr__")
    if original is None or getattr(original, "_codefeature_gate", False):
        return  # not a lazily loaded librosa, or already gated

    def __getattr__(name: str):
        ensure_ready()
        return original(name)

    __getattr__._codefeature_gate = True  # type: ignore[attr-defined]
    __getattr__._codefeature_original = original  # type: ignore[attr-defined]
    librosa.__getattr__ = __getattr__


def _remove_gate() -> None:
    librosa = sys.modules.get("librosa")
    gate = getattr(librosa, "__dict__", {}).get("__getattr__")
    if gate is not None and getattr(gate, "_codefeature_gate", False):
        librosa.__getattr__ = gate._codefeature_original


# ---------------------------------------------------------------- the fill

def _cache_files(kernels: Path) -> list[str]:
    if not kernels.is_dir():
        return []
    return sorted(str(p.relative_to(kernels)) for p in kernels.rglob("*") if p.suffix in (".nbi", ".nbc"))


def _record_valid(setup: CacheSetup) -> bool:
    """The ready record exists, is for this key, and every file it lists is still there."""
    try:
        record = json.loads(setup.record.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(record, dict) or record.get("key") != setup.key or record.get("version") != RECORD_VERSION:
        return False
    files = record.get("files")
    if not isinstance(files, list) or not files:
        return False
    return all((setup.kernels / name).is_file() for name in files)


def _write_record(setup: CacheSetup) -> None:
    """Write the ready record whole or not at all (temporary file, fsync, rename)."""
    data = json.dumps({"version": RECORD_VERSION, "key": setup.key, "files": _cache_files(setup.kernels)},
                      indent=1).encode()
    fd, tmp = tempfile.mkstemp(dir=setup.record.parent, prefix=".ready-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, setup.record)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def warm_up() -> None:
    """Compile (or load) every librosa kernel the project's features use, on a short synthetic signal.

    Imports librosa's modules that compile at import, then runs :func:`~codeFeature.features.segment_features`
    for each feature kind (MFCC with every extra, log-mel, the GTZAN table, the spectrogram picture,
    musicnn's log-mel) and for each installed model's own feature configuration.
    """
    import importlib

    import numpy as np

    from .config import EXTRA_FEATURES, FEATURE_KINDS, FeatureConfig
    from .errors import ConfigError
    from .features import segment_features
    from .config import MUSICNN_SAMPLE_RATE

    for name in _ALSO_IMPORT:
        importlib.import_module(name)
    configs = [FeatureConfig(feature=kind) for kind in FEATURE_KINDS if kind != "musicnn_logmel"]
    configs.append(FeatureConfig(feature="musicnn_logmel", sample_rate=MUSICNN_SAMPLE_RATE))
    configs.append(FeatureConfig(feature="mfcc", extras=tuple(EXTRA_FEATURES)))
    configs.extend(_model_configs())
    rng = np.random.default_rng(0)
    seen = set()
    for config in configs:
        if config in seen:
            continue
        seen.add(config)
        t = np.arange(config.segment_samples) / config.sample_rate
        y = (0.3 * np.sin(2 * np.pi * 220.0 * t) * (1 + np.sin(2 * np.pi * 2.0 * t))
             + 0.01 * rng.standard_normal(t.size)).astype(np.float32)
        try:
            segment_features(y[None, :], config)
        except (ConfigError, ValueError):
            # a default combination no model has (musicnn's mel bands), or a broken model whose own
            # load says what is wrong: the kernels its features reached are compiled all the same
            continue


def _model_configs() -> list:
    """The feature configurations of the installed models (their sample rates may differ from the defaults)."""
    from .config import FeatureConfig
    from .model_io import model_locations, read_manifest

    configs = []
    try:
        locations = model_locations()
    except Exception:  # noqa: BLE001 -- a broken model search path must not stop the warm-up
        return configs
    for folder in locations.values():
        try:
            configs.append(FeatureConfig.from_dict(read_manifest(folder)["feature_config"]))
        except Exception:  # noqa: BLE001 -- the model's own load says what is wrong with it
            continue
    return configs


def ensure_ready(*, timeout: float = LOCK_TIMEOUT) -> CacheSetup:
    """Make sure this process loads librosa's kernels from a cache that one process filled alone.

    Cheap after the first call in a process, and after the first process on a machine (a file
    check). Call it before starting worker processes, so the workers only load; any first use of
    ``librosa.<name>`` calls it too. Never raises: a failure is recorded in :func:`status`'s notes
    and the process goes on (a private folder if the shared one could not be used).
    """
    global _setup, _ready, _filling
    setup = configure()
    if _ready:
        return _setup
    with _lock:
        if _ready or _filling:
            return _setup  # done meanwhile, or called from inside this thread's own fill
        _filling = True
        try:
            if not setup.preloaded:
                # before librosa's first kernel module loads: numba binds each kernel to this folder
                _point_numba_at(setup.kernels)
            _setup = _make_ready(_setup, timeout)
        finally:
            _filling = False
            _ready = True
            _remove_gate()
        return _setup


def _make_ready(setup: CacheSetup, timeout: float) -> CacheSetup:
    if settings.current().numba_disable_jit:
        return replace(setup, filled=False, notes=setup.notes + ("numba's compiler is off (NUMBA_DISABLE_JIT)",))
    if setup.preloaded:
        return replace(setup, filled=False, notes=setup.notes + (
            "librosa was imported before codeFeature: its kernels use numba's default cache",))
    if _record_valid(setup):
        return replace(setup, filled=False)
    from filelock import FileLock, Timeout

    try:
        setup.lock.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(setup.lock), timeout=timeout):
            if _record_valid(setup):
                return replace(setup, filled=False)
            if setup.owner == "codeFeature" and setup.kernels.exists():
                shutil.rmtree(setup.kernels)  # files without a record: an interrupted fill
            setup.kernels.mkdir(parents=True, exist_ok=True)
            try:
                warm_up()
            except Exception as exc:  # noqa: BLE001 -- the features say what is wrong when used
                return replace(setup, filled=True, notes=setup.notes + (
                    f"the warm-up failed ({type(exc).__name__}: {exc}); the cache is not marked ready",))
            _write_record(setup)
            return replace(setup, filled=True)
    except (Timeout, OSError) as exc:
        reason = (f"no lock on {setup.lock} within {timeout:g} s" if isinstance(exc, Timeout)
                  else f"cannot use {setup.kernels} ({exc})")
        private = Path(tempfile.mkdtemp(prefix="codeFeature-numba-"))
        atexit.register(shutil.rmtree, private, ignore_errors=True)
        # this process only: children keep the shared folder and its lock
        _point_numba_at(private)
        return replace(setup, kernels=private, owner="private", filled=True,
                       notes=setup.notes + (f"{reason}: compiling into a private folder",))
