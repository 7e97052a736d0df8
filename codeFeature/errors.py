"""Exceptions raised by :mod:`codeFeature`.

Everything the library raises on purpose derives from :class:`GenreError`, so a
front end (the app, the CLI) can show ``str(exc)`` to a person and carry on.
"""


class GenreError(Exception):
    """Root of every error the library raises on purpose."""


class ConfigError(GenreError, ValueError):
    """A feature configuration or argument value is invalid."""


class AudioDecodeError(GenreError):
    """The input could not be decoded as audio."""


class UnsupportedFormatError(AudioDecodeError):
    """The format needs a decoder (usually ffmpeg) that is not available."""


class AudioTooShortError(GenreError):
    """The audio is too short to classify."""


class AudioTooLongError(GenreError):
    """The audio is longer than the caller accepts (``load_audio(max_seconds=...)``)."""


class ModelError(GenreError):
    """A model folder is missing, malformed, or disagrees with its manifest."""


class CalibrationError(ModelError, ValueError):
    """A model folder's int8 calibration is missing or malformed (a :class:`ValueError` too, as it was)."""


class NotRegularFileError(AudioDecodeError, OSError):
    """A path that is not a regular file (a named pipe, a device, a socket, a folder), refused
    before a byte is read: reading a named pipe blocks for ever and a device such as ``/dev/zero``
    never ends. An :class:`OSError` too, so code that treats unreadable files alike still does."""
