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


class ModelError(GenreError):
    """A model folder is missing, malformed, or disagrees with its manifest."""
