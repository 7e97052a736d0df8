"""One song, one answer: a path, its bytes and an upload decode to the same samples.

The corpus is the kind of mp3 that broke this before: ID3v2 tags with PRIV frames (as
Amazon and Windows Media write them), a large APIC cover, a 200 kB tag, a VBR file with a
Xing header, and tags followed by padding or junk that libsndfile refuses from memory
("Format not recognised") but reads from a path. Those used to fall back to ffmpeg's decoder
and resampler for uploads only, and the app and the CLI disagreed on the genre.
"""

from __future__ import annotations

import io
import subprocess

import numpy as np
import pytest
import soundfile as sf

from codeFeature import load_audio, predict_file
from codeFeature.audio import find_ffmpeg
from tests.conftest import chord, write_audio

mutagen_id3 = pytest.importorskip("mutagen.id3", reason="mutagen writes the ID3v2 test tags (pip install mutagen)")

RATES = (22050, 16000)  # the MFCC models' and musicnn's


def _synchsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 127, (n >> 14) & 127, (n >> 7) & 127, n & 127])


def _strip_id3v2(data: bytes) -> bytes:
    """The MPEG frames of ``data`` without its leading ID3v2 tag, if any."""
    if data[:3] != b"ID3":
        return data
    size = int.from_bytes(bytes(b & 127 for b in data[6:10]), "big")
    return data[10 + size:]


def _raw_tag(frames: bytes) -> bytes:
    """An ID3v2.3 tag around ``frames``: written by hand where the test needs a malformed layout."""
    return b"ID3\x03\x00\x00" + _synchsafe(len(frames)) + frames


def _raw_frame(frame_id: bytes, payload: bytes) -> bytes:
    return frame_id + len(payload).to_bytes(4, "big") + b"\x00\x00" + payload


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("parity")
    rng = np.random.default_rng(7)
    song = chord(9.0, 44100, channels=2, seed=3)
    cbr = write_audio(folder / "cbr.mp3", song, 44100)
    files = {"cbr": cbr}
    mpeg = _strip_id3v2(cbr.read_bytes())

    def tagged(name, *frames, version=3):
        path = folder / f"{name}.mp3"
        path.write_bytes(mpeg)
        tags = mutagen_id3.ID3()
        for frame in frames:
            tags.add(frame)
        tags.save(path, v2_version=version)
        files[name] = path

    tagged("priv", mutagen_id3.TIT2(encoding=3, text="Song"),
           mutagen_id3.PRIV(owner="WM/MediaClassPrimaryID", data=rng.bytes(16)),
           mutagen_id3.PRIV(owner="PeakValue", data=b"\x00\x7f\x00\x00"),
           mutagen_id3.PRIV(owner="www.amazon.com", data=rng.bytes(600)))
    tagged("apic", mutagen_id3.APIC(encoding=3, mime="image/jpeg", type=3, desc="Cover", data=rng.bytes(300_000)))
    tagged("large_tag_v24", mutagen_id3.PRIV(owner="blob", data=rng.bytes(200_000)), version=4)
    # the layouts libsndfile reads from a path but not from memory
    head = _raw_tag(_raw_frame(b"PRIV", b"www.amazon.com\x00" + rng.bytes(64)))
    (folder / "priv_then_padding.mp3").write_bytes(head + b"\x00" * 3000 + mpeg)
    (folder / "tag_then_junk.mp3").write_bytes(_raw_tag(_raw_frame(b"TIT2", b"\x00x")) + rng.bytes(500) + mpeg)
    files["priv_then_padding"] = folder / "priv_then_padding.mp3"
    files["tag_then_junk"] = folder / "tag_then_junk.mp3"
    for name, (fmt, subtype) in {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"),
                                 "ogg": ("OGG", "VORBIS")}.items():
        path = folder / f"song.{name}"
        sf.write(path, song, 44100, format=fmt, subtype=subtype)
        files[name] = path
    ffmpeg = find_ffmpeg()
    if ffmpeg is not None:
        vbr = folder / "vbr.mp3"
        subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(files["wav"]), "-c:a",
                        "libmp3lame", "-q:a", "4", str(vbr)], check=True, timeout=60)
        files["vbr_xing"] = vbr
        m4a = folder / "song.m4a"  # an ffmpeg-only format: bytes and path must agree there too
        subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(files["wav"]), "-c:a", "aac",
                        "-b:a", "128k", str(m4a)], check=True, timeout=60)
        files["m4a"] = m4a
    return files


def test_the_corpus_has_what_it_claims(corpus):
    """Guards the test itself: the hard cases really are hard for libsndfile from memory."""
    for name in ("priv_then_padding", "tag_then_junk"):
        data = corpus[name].read_bytes()
        with pytest.raises(sf.LibsndfileError):
            sf.SoundFile(io.BytesIO(data))
        with sf.SoundFile(str(corpus[name])) as sound:  # ... but readable from a path
            assert sound.frames > 0
    priv = corpus["priv"].read_bytes()
    assert priv[:3] == b"ID3" and b"PRIV" in priv[:2000] and b"www.amazon.com" in priv[:2000]
    assert b"APIC" in corpus["apic"].read_bytes()[:100] and corpus["apic"].stat().st_size > 300_000
    assert corpus["large_tag_v24"].read_bytes()[3] == 4
    if "vbr_xing" in corpus:
        assert b"Xing" in _strip_id3v2(corpus["vbr_xing"].read_bytes())[:400]


class _Upload(io.BytesIO):
    """What Streamlit hands the app: a binary file object with a name and ``getvalue``."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name = name


@pytest.mark.parametrize("rate", RATES)
def test_path_bytes_and_upload_decode_to_identical_samples(corpus, rate):
    for name, path in corpus.items():
        data = path.read_bytes()
        from_path = load_audio(path, sample_rate=rate)
        from_bytes = load_audio(data, sample_rate=rate, filename=path.name)
        from_upload = load_audio(_Upload(data, path.name), sample_rate=rate)
        assert len(from_path.samples) > 8 * rate, name
        np.testing.assert_array_equal(from_bytes.samples, from_path.samples, err_msg=name)
        np.testing.assert_array_equal(from_upload.samples, from_path.samples, err_msg=name)
        assert from_bytes.warnings == from_path.warnings, name


def test_bytes_without_a_file_name_still_decode_like_the_path(corpus):
    """libsndfile uses the extension when a tag hides the first frame; nameless ID3 bytes count as mp3."""
    for name in ("priv_then_padding", "tag_then_junk", "priv"):
        path = corpus[name]
        np.testing.assert_array_equal(load_audio(path.read_bytes()).samples, load_audio(path).samples,
                                      err_msg=name)


def test_the_tagged_mp3s_decode_to_the_untagged_audio(corpus):
    """Tags are metadata: every tagged copy of the same frames gives the plain file's samples."""
    plain = load_audio(corpus["cbr"]).samples
    for name in ("priv", "apic", "large_tag_v24", "priv_then_padding", "tag_then_junk"):
        np.testing.assert_array_equal(load_audio(corpus[name].read_bytes(), filename="x.mp3").samples, plain,
                                      err_msg=name)


def test_no_temporary_file_is_left_behind(corpus, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    data = corpus["priv"].read_bytes()
    load_audio(data, filename="a.mp3")
    from codeFeature.audio import open_audio

    stream = open_audio(data, filename="a.mp3")  # opened and dropped without reading
    stream.close()
    with pytest.raises(Exception):
        load_audio(b"not audio at all" * 10, filename="b.mp3")
    assert list(tmp_path.iterdir()) == []


def test_same_probabilities_from_path_and_bytes(corpus, tiny_model):
    for name in ("priv_then_padding", "vbr_xing", "apic"):
        if name not in corpus:
            continue
        path = corpus[name]
        a = predict_file(path, model=tiny_model)
        b = predict_file(path.read_bytes(), model=tiny_model, filename=path.name)
        np.testing.assert_array_equal(a.probabilities, b.probabilities, err_msg=name)
        assert a.verdict == b.verdict


def test_decoder_overshoot_is_scaled_silently_and_real_excess_is_reported(tmp_path):
    """mp3 decoding and resampling push a 0 dBFS master a little past 1.0: no warning for that;
    a float file at four times full scale, or a hard-clipped one, still gets its note."""
    y = chord(4.0)
    for peak, noted in ((1.2, False), (4.0, True)):
        path = tmp_path / f"peak{peak}.wav"
        sf.write(path, y / np.abs(y).max() * peak, 22050, subtype="FLOAT")
        decoded = load_audio(path)
        assert np.abs(decoded.samples).max() == pytest.approx(1.0)
        assert any("full scale" in w for w in decoded.warnings) == noted, (peak, decoded.warnings)
    sf.write(tmp_path / "clipped.wav", np.clip(y * 20, -1, 1), 22050, subtype="PCM_16")
    assert any("clipped" in w for w in load_audio(tmp_path / "clipped.wav").warnings)
