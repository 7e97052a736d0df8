"""codeFeature: classify a song's genre, segment by segment.

>>> from codeFeature import load_model, predict_file
>>> model = load_model()                      # the default shipped model
>>> prediction = predict_file("song.mp3", model=model)
>>> prediction.genre, prediction.confidence   # doctest: +SKIP

Nothing is downloaded or loaded at import, no setting is read and the environment is left
alone; TensorFlow is imported by the first :func:`load_model` call. A program using the library
calls :func:`codeFeature.runtime.prepare_process` first for TensorFlow's memory-saving allocator
(the command line and the app do).
"""

# librosa's numba kernels: the first librosa.<name> in a process first makes sure of the project's own
# cache folder, filled by one process at a time (numba issue 10128; codeFeature.numba_cache). The gate
# reads no setting and leaves the environment alone; it must be in place before librosa's kernels load.
from . import numba_cache as _numba_cache

_numba_cache.install_gate()

from .config import DEFAULT_CONFIG, GENRES, FeatureConfig  # noqa: E402
from .errors import (AudioDecodeError, AudioTooShortError, ConfigError, GenreError, ModelError,
                     UnsupportedFormatError)
from .audio import DecodedAudio, decode, load_audio, SUPPORTED_EXTENSIONS
from .model_io import LoadedModel, default_model_name, list_models, load_model, save_model
from .decision import DecisionRule, Verdict, decide
from .predict import Prediction, predict_audio, predict_file, predict_segments, vote_index

__all__ = [
    "GENRES", "FeatureConfig", "DEFAULT_CONFIG",
    "GenreError", "ConfigError", "AudioDecodeError", "UnsupportedFormatError", "AudioTooShortError", "ModelError",
    "DecodedAudio", "decode", "load_audio", "SUPPORTED_EXTENSIONS",
    "LoadedModel", "load_model", "save_model", "list_models", "default_model_name",
    "Prediction", "predict_file", "predict_audio", "predict_segments", "vote_index",
    "DecisionRule", "Verdict", "decide",
]
