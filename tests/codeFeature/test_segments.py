import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from codeFeature.config import DEFAULT_CONFIG, FeatureConfig
from codeFeature.errors import AudioTooShortError
from codeFeature.segments import MIN_SECONDS, plan_segments, segment_array, segment_count

SEG = DEFAULT_CONFIG.segment_samples


def split_pydub(audio, config: FeatureConfig) -> list:
    """The original design's cut: a pydub ``AudioSegment`` sliced into segments by the same rule,
    the reference :func:`segment_array` is checked against.

    Parameters
    ----------
    audio : pydub.AudioSegment
        Mono at ``config.sample_rate``.

    Returns
    -------
    list of pydub.AudioSegment
        Each exactly ``config.segment_samples`` frames long.
    """
    if audio.frame_rate != config.sample_rate or audio.channels != 1:
        raise ValueError(f"split_pydub needs mono audio at {config.sample_rate} Hz, got "
                         f"{audio.channels} channels at {audio.frame_rate} Hz")
    seg = config.segment_samples
    n_full, tail = plan_segments(int(audio.frame_count()), config)
    chunks = [audio.get_sample_slice(i * seg, (i + 1) * seg) for i in range(n_full)]
    if tail:
        part = audio.get_sample_slice(n_full * seg, n_full * seg + tail)
        while int(part.frame_count()) < seg:
            part = part + part.get_sample_slice(0, seg - int(part.frame_count()))
        chunks.append(part)
    return chunks


@pytest.mark.parametrize("n_samples, expected", [
    (SEG, 1), (SEG * 10, 10), (SEG * 10 + SEG // 2 - 1, 10), (SEG * 10 + SEG // 2, 11),
    (SEG - 1, 1), (int(MIN_SECONDS * 22050), 1), (661794, 10),
])
def test_segment_counts(n_samples, expected):
    segments, starts = segment_array(np.zeros(n_samples, np.float32), DEFAULT_CONFIG)
    assert segments.shape == (expected, SEG)
    np.testing.assert_allclose(starts, np.arange(expected) * 3.0)


def test_too_short_is_an_error_with_the_duration():
    with pytest.raises(AudioTooShortError, match="0.20 s"):
        segment_array(np.zeros(int(0.2 * 22050), np.float32), DEFAULT_CONFIG)


def test_whole_segments_are_views_and_the_tail_is_wrap_padded():
    y = np.arange(SEG * 2 + SEG // 2 + 10, dtype=np.float32)
    segments, _ = segment_array(y, DEFAULT_CONFIG)
    np.testing.assert_array_equal(segments[0], y[:SEG])
    tail = y[2 * SEG:]
    np.testing.assert_array_equal(segments[2, :len(tail)], tail)
    np.testing.assert_array_equal(segments[2, len(tail):], tail[: SEG - len(tail)])


@settings(max_examples=60, deadline=None)
@given(n=st.integers(min_value=int(MIN_SECONDS * 22050), max_value=SEG * 6))
def test_count_rule_holds_for_any_length(n):
    count = segment_count(n, DEFAULT_CONFIG)
    full, tail = divmod(n, SEG)
    assert count == max(1, full + (1 if tail * 2 >= SEG else 0))
    assert count * SEG >= n - SEG // 2  # never more than half a segment dropped


@pytest.mark.parametrize("seconds", [1.0, 3.0, 7.4, 7.6])
def test_pydub_split_matches_the_array_view(seconds):
    from pydub import AudioSegment

    rng = np.random.default_rng(1)
    y = (rng.uniform(-0.5, 0.5, int(seconds * 22050)) * 32767).astype(np.int16)
    audio = AudioSegment(y.tobytes(), frame_rate=22050, sample_width=2, channels=1)
    chunks = split_pydub(audio, DEFAULT_CONFIG)
    segments, _ = segment_array(y.astype(np.float32), DEFAULT_CONFIG)
    assert len(chunks) == len(segments)
    for chunk, seg in zip(chunks, segments):
        np.testing.assert_array_equal(np.array(chunk.get_array_of_samples(), dtype=np.float32), seg)


def test_other_segment_lengths():
    config = FeatureConfig(segment_seconds=5.0)
    segments, starts = segment_array(np.zeros(22050 * 12, np.float32), config)
    assert segments.shape == (2, 110250)
    np.testing.assert_allclose(starts, [0.0, 5.0])
