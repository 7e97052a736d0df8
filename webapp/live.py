"""Listen live: record a clip, or classify what the microphone hears as it hears it.

A page of the app started by ``streamlit run app.py`` (registered in its ``PAGES``;
the sidebar's model choice, made there, is used here).
UI only: recordings go through the same :mod:`codeFeature` pipeline as uploads
(``load_audio`` + ``predict_audio``); the continuous stream goes through
:class:`codeFeature.stream.StreamClassifier`, which resamples and segments
exactly as files are.

Continuous listening needs ``streamlit-webrtc`` (and through it ``aiortc`` and
``av``); without it the page still records clips.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import time

from codeFeature.runtime import prepare_process  # noqa: E402  (before TensorFlow and librosa)

prepare_process()

import numpy as np
import streamlit as st

from codeFeature import GenreError, load_audio, predict_audio
from codeFeature.model_io import default_model_name
from codeFeature.stream import StreamClassifier, StreamError, frame_to_array
from webapp.components import show_analysis
from webapp.models import get_model, preload_model


def _import_webrtc():
    """``streamlit_webrtc`` if installed, else ``None``.

    aiortc's SRTP wheel (pylibsrtp) carries its own OpenSSL. TensorFlow loads itself with
    ``RTLD_GLOBAL``, so once a model has been loaded (say on the upload page) its BoringSSL symbols
    shadow pylibsrtp's and ``srtp_init()`` crashes the whole server with a segmentation fault.
    Loading pylibsrtp with ``RTLD_DEEPBIND`` binds it to its own symbols, whatever came first.
    """
    import sys

    flags = sys.getdlopenflags()
    try:
        sys.setdlopenflags(flags | getattr(os, "RTLD_DEEPBIND", 0))
        import pylibsrtp  # noqa: F401
    except ImportError:
        return None
    finally:
        sys.setdlopenflags(flags)
    try:
        import streamlit_webrtc
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    return streamlit_webrtc


webrtc = _import_webrtc()

log = logging.getLogger("app.live")

#: Seconds between refreshes of the live view.
REFRESH_SECONDS = 1.0
#: Seconds of audio the live spectrogram shows, its FFT size and mel bands.
HISTORY_SECONDS = 10.0
MEL_FFT = 1024
MEL_BANDS = 96
#: Seconds without a frame from the browser after which the live view says that no audio is arriving.
STALL_SECONDS = 3.0
#: Localhost and LAN work without STUN; a deployment behind NAT must set real ICE servers here.
RTC_CONFIGURATION = {"iceServers": []}
NO_MIC_HELP = ("**No microphone?** If the recorder shows \"An error has occurred\" or the player says "
               "\"Requested device not found\" (NotFoundError) or \"Permission denied\" (NotAllowedError), the "
               "browser found no microphone or was not allowed to use it: plug one in, or allow the microphone in "
               "the address bar's site settings, and reload. Browsers only offer it on `localhost` or over HTTPS. "
               "[Uploading a song](/) works without one.")

st.set_page_config(page_title="Listen live · Music genre classifier", page_icon="🎙️", layout="wide")


def chosen_model_name() -> str:
    """The model picked on the main page, else the shipped default."""
    return st.session_state.get("model_name") or default_model_name()


def no_microphone_help() -> None:
    """What to do without a microphone: folded away, and shown only while nothing has been heard."""
    with st.expander("No microphone?"):
        st.markdown(NO_MIC_HELP)


# ---------------------------------------------------------------- (a) record a clip

def classify_recording(data: bytes, model_name: str, *, filename: str = "recording.wav"):
    """The upload pipeline on a recorded WAV: decode, resample, segment, classify."""
    model = get_model(model_name)
    decoded = load_audio(data, sample_rate=model.config.sample_rate, filename=filename)
    return predict_audio(decoded.samples, model=model, file=filename, warnings=decoded.warnings), decoded.samples


def record_section(model_name: str) -> None:
    st.subheader("Record a clip")
    st.caption("Record a few seconds (3 s or more gives at least one full segment); it is classified like an "
               "upload.")
    # sample_rate=None: the browser's own rate (44.1 / 48 kHz); soxr resamples it as it does files
    clip = st.audio_input("Record from the microphone", sample_rate=None, key="clip")
    if clip is None:
        no_microphone_help()
        return
    data = clip.getvalue()
    key = (hashlib.sha1(data).hexdigest(), model_name)
    if st.session_state.get("clip_key") != key:
        st.session_state.pop("clip_result", None)
        try:
            with st.spinner("Classifying the recording…"):
                st.session_state["clip_result"] = classify_recording(data, model_name)
        except GenreError as exc:
            st.error(f"Could not classify the recording: {exc}. Record again, a little longer or louder.")
            return
        except Exception:  # never a traceback for the user; log it for the operator
            log.exception("unexpected failure classifying a recording")
            st.error("Something unexpected went wrong with the recording. Record again; the problem has been logged.")
            return
        st.session_state["clip_key"] = key
    prediction, samples = st.session_state["clip_result"]
    show_analysis(prediction, samples=samples, audio_bytes=data, key="clip", csv_name="recording-segments.csv")


# ---------------------------------------------------------------- (b) listen continuously

class LiveSession:
    """What the WebRTC thread and the script share: the current stream and the last result.

    The audio callback runs on aiortc's event loop, never in the script thread, so it only
    touches this object (never ``st.session_state``).
    """

    def __init__(self, model):
        self.model = model
        self.lock = threading.Lock()
        self.classifier: StreamClassifier | None = None
        self.result = None
        self.error: str | None = None
        self.frames = 0
        self.last_frame = time.monotonic()  # when the browser's last frame arrived (or the stream began)

    def on_frame(self, frame) -> None:
        """Producer: called for every audio frame the browser sends (about 50 a second)."""
        with self.lock:
            if self.classifier is None:
                self.classifier = StreamClassifier(self.model, history_seconds=HISTORY_SECONDS)
                self.classifier.start_worker()
                self.result, self.error, self.frames = None, None, 0
            classifier = self.classifier
        self.last_frame = time.monotonic()
        try:
            samples, rate = frame_to_array(frame)
            classifier.feed(samples, sample_rate=rate)
            self.frames += 1
        except StreamError:
            pass  # frames still in flight after stop, or a frame we cannot read: drop it

    def reset_if_finished(self) -> None:
        """Before a new stream: forget a finished one so the next frame starts afresh."""
        with self.lock:
            if self.classifier is not None and self.classifier.snapshot().finished:
                self.classifier = None

    def finish(self) -> None:
        """After stop: classify the tail and keep the prediction."""
        with self.lock:
            classifier = self.classifier
        if classifier is None or classifier.snapshot().finished:
            return
        try:
            self.result = classifier.finish(file="microphone")
        except GenreError as exc:
            self.error = f"Nothing to classify: {exc}"


def get_session(model_name: str) -> LiveSession:
    session = st.session_state.get("live_session")
    if session is None or session.model.name != get_model(model_name).name:
        if session is not None and session.classifier is not None:
            session.classifier.stop_worker(timeout=0)  # another model was chosen: drop the old stream
        session = LiveSession(get_model(model_name))
        st.session_state["live_session"] = session
    return session


@functools.lru_cache(maxsize=4)
def _mel_basis(sample_rate: int) -> np.ndarray:
    import librosa

    return librosa.filters.mel(sr=sample_rate, n_fft=MEL_FFT, n_mels=MEL_BANDS)


def mel_image(samples: np.ndarray, sample_rate: int, seconds: float) -> np.ndarray:
    """RGB picture, shape (n_mels, frames, 3) uint8, of the last ``seconds``; new audio enters on the right.

    Redrawn every refresh, so it is kept cheap: a cached filter bank and one STFT, no matplotlib figure.
    """
    import librosa
    from matplotlib import colormaps

    width = int(seconds * sample_rate)
    if len(samples) < width:  # silence on the left until 10 s have been heard: the picture scrolls
        samples = np.concatenate([np.zeros(width - len(samples), np.float32), samples])
    power = np.abs(librosa.stft(samples[-width:], n_fft=MEL_FFT, hop_length=MEL_FFT // 2)) ** 2
    db = 10.0 * np.log10(np.maximum(_mel_basis(sample_rate) @ power, 1e-10))
    top = max(float(db.max()), -20.0)  # the loudest of the last 10 s sets the scale: quiet rooms stay visible
    scaled = np.clip((db - (top - 80.0)) / 80.0, 0.0, 1.0)
    return (colormaps["magma"](scaled[::-1])[..., :3] * 255).astype(np.uint8)


def live_notes(silent_for: float, pending: int, segment_seconds: float) -> list[str]:
    """Why the live view may look stuck, in words: no audio arriving, or the classifier behind."""
    notes = []
    if silent_for >= STALL_SECONDS:
        notes.append(f"No audio has reached the server for {silent_for:.0f} s: the connection is slow or was "
                     "interrupted, or the browser stopped sending. Listening goes on as soon as audio arrives; "
                     "press Stop to keep what was heard.")
    if pending >= 2:
        notes.append(f"The server is busy: {pending} windows ({pending * segment_seconds:.0f} s of audio) are "
                     "waiting to be classified. They are kept and classified in order.")
    return notes


def show_live(session: LiveSession) -> None:
    classifier = session.classifier
    if classifier is None:
        st.info("Waiting for the microphone… If nothing happens, check that the browser may use it.")
        return
    state = classifier.snapshot()
    if classifier.worker_error is not None:
        st.error(f"The live classifier stopped: {classifier.worker_error}")
    seg = classifier.config.segment_seconds
    to_next = seg - (state.seconds % seg)
    left, middle, right = st.columns(3)
    left.metric("Running vote", state.genre.capitalize() if state.genre else "…",
                help="Majority vote of the 3 s windows heard so far; a tie goes to the higher mean probability.")
    middle.metric("Confidence", f"{state.confidence:.0%}" if state.confidence is not None else "…",
                  help="The voted genre's probability averaged over the windows.")
    right.metric("Heard", f"{state.seconds:.1f} s", help=f"{len(state.windows)} windows classified")
    for note in live_notes(time.monotonic() - session.last_frame, state.pending, seg):
        st.warning(note)
    st.image(mel_image(state.recent, state.sample_rate, HISTORY_SECONDS), width="stretch",
             caption=f"Mel spectrogram of the last {HISTORY_SECONDS:.0f} s (newest on the right); "
                     f"next window in {to_next:.1f} s")
    if state.windows:
        latest = state.windows[-1]
        st.markdown(f"**Latest window** {latest.start:.0f}–{latest.end:.0f} s: **{latest.genre}** "
                    f"({latest.confidence:.0%}), ready {latest.latency:.2f} s after it ended")
        # plain text, not a dataframe: the view is redrawn every refresh and must stay light
        st.markdown("  \n".join(f"{w.start:4.0f}–{w.end:.0f} s · {w.genre} ({w.confidence:.0%})"
                                 for w in reversed(state.windows[-8:])))


def listen_section(model_name: str) -> None:
    st.subheader("Listen continuously")
    if webrtc is None:
        st.info("Continuous listening needs `pip install streamlit-webrtc`; recording a clip works without it.")
        return
    st.caption("Press **Start** and allow the microphone. Every 3 s window is classified as it completes; "
               "**Stop** keeps the result.")
    session = get_session(model_name)
    try:
        sink = webrtc.create_audio_sink_track(session.on_frame, key="live_sink")
        ctx = webrtc.webrtc_streamer(key="live", mode=webrtc.WebRtcMode.SENDONLY,
                                     rtc_configuration=RTC_CONFIGURATION,
                                     media_stream_constraints={"audio": True, "video": False},
                                     sink_audio_track=sink)
    except Exception as exc:  # e.g. no Streamlit server session (a bare script run): say so, keep the page
        log.warning("continuous listening unavailable: %r", exc)
        st.info("Continuous listening is not available in this session (it needs a browser connected to "
                "`streamlit run`); recording a clip still works.")
        return
    playing = bool(ctx.state.playing)
    if playing:
        session.reset_if_finished()
    else:
        session.finish()
    if ctx.state.signalling and not playing:
        st.info("Connecting to the microphone… The browser asks for permission now. If it does not, or "
                "nothing happens, it found no microphone or may not use one: see **No microphone?** below.")

    @st.fragment(run_every=REFRESH_SECONDS if playing else None)
    def live_view() -> None:
        show_live(session)

    if playing:
        live_view()
        return
    if session.error:
        st.warning(session.error)
    if session.result is not None:
        st.markdown("**Last listening session**")
        show_analysis(session.result, key="live", csv_name="live-segments.csv")
    else:
        no_microphone_help()


def main() -> None:
    st.title("Listen live")
    model_name = chosen_model_name()
    preload_model(model_name)  # loads while the visitor reads the page
    st.write(f"Classify what the microphone hears with **{model_name}** (change it in the sidebar): the same "
             "3 s segments, features and vote as uploads.")
    record, listen = st.tabs(["Record a clip", "Listen continuously"])
    with record:
        record_section(model_name)
    with listen:
        listen_section(model_name)


if __name__ == "__main__":  # Streamlit runs a page as __main__; a test may import its helpers
    main()
