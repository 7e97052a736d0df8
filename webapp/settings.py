"""The app's own settings (``CODEFEATURE_APP_*``), read in this one place.

:func:`current` reads the environment at its first call (never at import) and keeps the result;
:func:`reload` reads it again. The person who starts the server sets these; a value that is not a number
in range is logged and its default used, so that a typo cannot stop the app.

==============================  ======  ==========================================================================
variable                        default meaning
==============================  ======  ==========================================================================
CODEFEATURE_APP_ANALYSES        1       analyses (decode and classify) run at once in the whole server
CODEFEATURE_APP_QUEUE           8       visitors who may wait for a turn; one more is told the server is busy
CODEFEATURE_APP_WAIT_SECONDS    300     the longest wait for a turn before the visitor is told to try later
CODEFEATURE_APP_MAX_MINUTES     30      the longest audio analysed, refused from its header before decoding
CODEFEATURE_APP_KEEP_MB         512     what all sessions together keep between reruns (bytes, audio, pictures)
CODEFEATURE_APP_SESSION_GRACE   30      seconds a closed tab's session may wait for its visitor to come back
==============================  ======  ==========================================================================
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Mapping, Optional

log = logging.getLogger("app.settings")


def _number(environ: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= minimum:  # also refuses nan
        log.warning("%s=%r is not a number >= %g; using %g", name, raw, minimum, default)
        return default
    return value


@dataclass(frozen=True)
class AppSettings:
    """One reading of the app's environment variables (see the module's table)."""

    #: Each analysis holds its decoded song and the model's working buffers, so this, not the number of
    #: visitors, sets the server's peak memory.
    analyses_at_once: int = 1
    max_waiting: int = 8
    max_wait_seconds: float = 300.0
    #: Ten minutes of decoded audio is ~53 MB.
    max_minutes: float = 30.0
    keep_mb: float = 512.0
    #: At most half of Streamlit's ``server.disconnectedSessionTTL``, so that a closed tab's session is ended
    #: (and its uploads freed) before Streamlit drops it without freeing its files.
    session_grace_seconds: float = 30.0

    @classmethod
    def from_environ(cls, environ: Optional[Mapping[str, str]] = None) -> "AppSettings":
        env = os.environ if environ is None else environ
        d = cls()
        return cls(
            analyses_at_once=int(_number(env, "CODEFEATURE_APP_ANALYSES", d.analyses_at_once, minimum=1)),
            max_waiting=int(_number(env, "CODEFEATURE_APP_QUEUE", d.max_waiting, minimum=0)),
            max_wait_seconds=_number(env, "CODEFEATURE_APP_WAIT_SECONDS", d.max_wait_seconds, minimum=1),
            max_minutes=_number(env, "CODEFEATURE_APP_MAX_MINUTES", d.max_minutes, minimum=0.1),
            keep_mb=_number(env, "CODEFEATURE_APP_KEEP_MB", d.keep_mb, minimum=1),
            session_grace_seconds=_number(env, "CODEFEATURE_APP_SESSION_GRACE", d.session_grace_seconds, minimum=0),
        )


_lock = threading.Lock()
_current: Optional[AppSettings] = None


def current() -> AppSettings:
    """The app's settings: the environment as read at the first call (or the last :func:`reload`)."""
    global _current
    with _lock:
        if _current is None:
            _current = AppSettings.from_environ()
        return _current


def reload(environ: Optional[Mapping[str, str]] = None) -> AppSettings:
    """Read the environment (or ``environ``) again and make it the current settings."""
    global _current
    with _lock:
        _current = AppSettings.from_environ(environ)
        return _current
