"""codeFeature: classify a song's genre, segment by segment.

>>> from codeFeature import load_model, predict_file
>>> model = load_model()                      # the default shipped model
>>> prediction = predict_file("song.mp3", model=model)
>>> prediction.genre, prediction.confidence   # doctest: +SKIP

Nothing is downloaded or loaded at import, no setting is read and the environment is left
alone; TensorFlow is imported by the first :func:`load_model` call. A program that runs the
library in several processes calls :func:`codeFeature.runtime.prepare_process` first in each
(the command line and the app do).
"""

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
