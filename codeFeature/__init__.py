"""codeFeature: classify a song's genre, segment by segment.

>>> from codeFeature import load_model, predict_file
>>> model = load_model()                      # the default shipped model
>>> prediction = predict_file("song.mp3", model=model)
>>> prediction.genre, prediction.confidence   # doctest: +SKIP

Nothing is downloaded or loaded at import; TensorFlow is imported by the first
:func:`load_model` call.
"""

import os as _os

# TensorFlow's oneDNN kernels otherwise keep a memory pool of their own: ~300 MB more resident
# memory with musicnn, for no speed (bench/README.md). Read when TensorFlow starts, so set it here.
_os.environ.setdefault("TF_ONEDNN_USE_SYSTEM_ALLOCATOR", "1")

# librosa's numba kernels get a cache folder of the project's own, filled by one process at a time
# (numba issue 10128: processes compiling them at once can leave a cache that crashes every later
# process). Must come before librosa's kernels are decorated, i.e. before their first use.
from . import numba_cache as _numba_cache

_numba_cache.configure()

from .config import DEFAULT_CONFIG, GENRES, FeatureConfig
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
