"""What an upload must pass before and while it is decoded: the server's size limit, and the longest audio
the app analyses (``CODEFEATURE_APP_MAX_MINUTES``), refused from the header before decoding."""

from __future__ import annotations

from codeFeature.audio import DecodedAudio
from codeFeature.errors import GenreError
from webapp import settings


class UploadRefused(GenreError):
    """An upload beyond what this server accepts (size or length)."""


def max_upload_bytes() -> int:
    """Streamlit's ``server.maxUploadSize`` (MB of 2^20 bytes, as Streamlit counts them) in bytes."""
    from streamlit import config

    return int(config.get_option("server.maxUploadSize")) * 1024 * 1024


def check_upload(data: bytes, name: str, *, limit: int | None = None) -> None:
    """Refuse an upload larger than the server's limit before anything reads it.

    Streamlit's upload handler already refuses a request body beyond ``server.maxUploadSize`` (from its
    Content-Length, then while it streams); this is the same limit checked again on the bytes the page
    actually got, so that a change of the upload path cannot bypass it.

    Raises
    ------
    UploadRefused
        When ``data`` is larger than ``limit`` bytes (default the server's).
    """
    limit = max_upload_bytes() if limit is None else limit
    if len(data) > limit:
        raise UploadRefused(f"{name} is {len(data) / 2**20:.3g} MB; this server takes files up to "
                            f"{limit / 2**20:.3g} MB. A compressed copy (mp3, ogg or flac) is smaller")


def decode_upload(data: bytes, name: str, *, sample_rate: int, max_seconds: float | None = None) -> DecodedAudio:
    """Decode an upload with :func:`codeFeature.load_audio`, refusing audio longer than ``max_seconds``
    (default ``CODEFEATURE_APP_MAX_MINUTES``) from its header before decoding, or, where the header does not
    say (formats ffmpeg decodes), as soon as the decoder passes the limit: a long file is never decoded whole.
    """
    import codeFeature

    check_upload(data, name)
    if max_seconds is None:
        max_seconds = settings.current().max_minutes * 60
    return codeFeature.load_audio(data, sample_rate=sample_rate, filename=name, max_seconds=max_seconds)
