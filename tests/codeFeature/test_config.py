import dataclasses

import pytest

from codeFeature.config import DEFAULT_CONFIG, GENRES, FeatureConfig
from codeFeature.errors import ConfigError, GenreError


def test_defaults_match_the_original_design():
    c = DEFAULT_CONFIG
    assert (c.sample_rate, c.n_mfcc, c.n_fft, c.hop_length) == (22050, 13, 2048, 512)
    assert c.segment_samples == 66150
    assert c.frames_per_segment == 130
    assert c.input_shape == (130, 13, 1)


def test_genres_are_gtzans():
    assert GENRES == ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_CONFIG.n_mfcc = 20


@pytest.mark.parametrize("kwargs, word", [
    ({"n_mfcc": 0}, "n_mfcc"), ({"sample_rate": -1}, "sample_rate"), ({"hop_length": 4096}, "hop_length"),
    ({"feature": "chroma"}, "feature"), ({"mfcc_backend": "torch"}, "mfcc_backend"),
    ({"segment_seconds": 0}, "segment_seconds"), ({"n_mfcc": 200}, "n_mfcc"), ({"n_fft": 1.5}, "n_fft"),
])
def test_invalid_values_name_the_argument(kwargs, word):
    with pytest.raises(ConfigError, match=word) as info:
        FeatureConfig(**kwargs)
    assert isinstance(info.value, GenreError)


def test_dict_round_trip_and_unknown_keys():
    c = FeatureConfig(n_mfcc=20, mfcc_backend="python_speech_features")
    assert FeatureConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="unknown"):
        FeatureConfig.from_dict({**c.to_dict(), "n_chroma": 12})


def test_derived_values_follow_parameters():
    c = FeatureConfig(segment_seconds=5.0, hop_length=1024, feature="logmel", n_mels=64)
    assert c.segment_samples == 110250
    assert c.frames_per_segment == 1 + 110250 // 1024
    assert c.input_shape == (c.frames_per_segment, 64, 1)
