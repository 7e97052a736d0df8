"""Music genre classifier: upload a song, see its genre, how each ~3 s segment voted, and its spectrograms.

Run with ``streamlit run app.py``. This file is UI only: widgets, layout and
caching. Everything from bytes to a prediction is in :mod:`codeFeature`.
"""

from __future__ import annotations

import hashlib
import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import streamlit as st

from codeFeature import GenreError, SUPPORTED_EXTENSIONS, load_audio, predict_audio
from codeFeature.audio import FFMPEG_EXTENSIONS, find_ffmpeg
from codeFeature.config import DEFAULT_CONFIG, FeatureConfig
from codeFeature.model_io import default_model_name, list_models, read_manifest, resolve_model_dir, resolve_precision
from ui import csv_download, get_model, preload_model, probability_chart, show_summary, show_timeline

log = logging.getLogger("app")

st.set_page_config(page_title="Music genre classifier", page_icon="🎵", layout="wide")


@st.cache_data(show_spinner=False)
def model_card(name: str) -> dict:
    return read_manifest(resolve_model_dir(name))


def sidebar() -> str:
    st.sidebar.header("Model")
    names = list_models(task="genre")
    default = default_model_name()
    name = st.sidebar.selectbox("Genre model", names, index=names.index(default) if default in names else 0,
                                help="Every shipped model; the default is the most accurate on GTZAN's valid split.")
    st.session_state["model_name"] = name  # the live page classifies with the same model
    card = model_card(name)
    st.sidebar.caption(card.get("description", ""))
    metrics = card.get("metrics", {})
    valid = metrics.get("valid")
    precision_note = ""
    try:
        precision = resolve_precision(None, card)
    except GenreError as exc:  # a bad CODEFEATURE_PRECISION; loading the model says so too
        st.sidebar.error(str(exc))
        precision = "float32"
    if precision == "bfloat16":
        # this CPU runs the model's heaviest layers in bfloat16: show the figures measured that way
        valid = metrics.get("valid_bfloat16", valid)
        precision_note = (" Its timbral convolutions run in bfloat16 on this CPU (about 3 times faster); "
                          "`CODEFEATURE_PRECISION=float32` turns that off.")
    if valid:
        st.sidebar.metric("Valid accuracy (tracks)", f"{valid['track_accuracy']:.0%}",
                          help=f"Majority vote over each track's segments, on {valid['tracks']} GTZAN tracks of "
                               "the fault-filtered valid split, which was also used to select the model.")
        st.sidebar.caption(f"Segment accuracy {valid['segment_accuracy']:.0%} on {valid['segments']} "
                           f"segments.{precision_note}")
    training = card.get("training", {})
    if training:
        st.sidebar.markdown(f"**Trained on** {training.get('train_tracks', '?')} GTZAN tracks "
                            f"({training.get('train_segments', '?')} segments) from "
                            + ", ".join(f"`{d}`" for d in training.get("data", [])))
    if card.get("reproduce"):
        st.sidebar.markdown("**Reproduce**")
        st.sidebar.code(card["reproduce"], language="bash")
    return name


def uploaded_types() -> list[str]:
    extensions = [e.lstrip(".") for e in SUPPORTED_EXTENSIONS]
    if find_ffmpeg() is None:
        extensions = [e for e in extensions if "." + e not in FFMPEG_EXTENSIONS]
    return extensions


def model_rate(name: str) -> int:
    """The rate the model's input is decoded at, from its manifest (no need to wait for the model)."""
    try:
        return FeatureConfig.from_dict(model_card(name)["feature_config"]).sample_rate
    except (KeyError, GenreError):
        return get_model(name).config.sample_rate  # a broken manifest: the loader says what is wrong


def classify(data: bytes, filename: str, model_name: str):
    """Decode and classify, with a progress bar; returns (prediction, samples)."""
    bar = st.progress(0.0, text="Decoding…")
    # the manifest gives the rate: the song decodes while the model may still be loading
    decoded = load_audio(data, sample_rate=model_rate(model_name), filename=filename)
    model = get_model(model_name)
    bar.progress(0.05, text=f"Decoded {decoded.duration:.0f} s of audio; classifying…")
    prediction = predict_audio(decoded.samples, model=model, file=filename, warnings=decoded.warnings,
                               progress=lambda f, msg: bar.progress(0.05 + 0.95 * f, text=msg))
    bar.empty()
    return prediction, decoded.samples


def display_config(model_config):
    """The model's config when it uses MFCC, else the default MFCC config (the plots' 13 coefficients)."""
    return model_config if model_config.feature == "mfcc" else DEFAULT_CONFIG


def resample_for_display(samples: np.ndarray, source_rate: int, config) -> np.ndarray:
    if source_rate == config.sample_rate:
        return samples
    import soxr

    return soxr.resample(samples, source_rate, config.sample_rate).astype(np.float32)


def show_plots(prediction, samples: np.ndarray, model_config) -> None:
    # matplotlib is imported here, not at the page's first run: the model loads meanwhile
    from codeFeature.plots import MAX_PLOT_SECONDS, song_figure

    config = display_config(model_config)
    samples = resample_for_display(samples, model_config.sample_rate, config)
    whole, closeup = st.tabs(["Whole song", "One segment close up"])
    with whole:
        shown = samples[: int(MAX_PLOT_SECONDS * config.sample_rate)]
        if len(shown) < len(samples):
            st.info(f"The plots show the first {MAX_PLOT_SECONDS / 60:.0f} minutes; every segment was classified.")
        st.pyplot(song_figure(shown, config, boundaries=prediction.starts[prediction.starts < MAX_PLOT_SECONDS]),
                  clear_figure=True)
    with closeup:
        n = len(prediction.starts)
        index = st.slider("Segment", 1, n, 1, key="segment_index", disabled=n == 1) - 1 if n > 1 else 0
        start = float(prediction.starts[index])
        lo = int(start * config.sample_rate)
        piece = samples[lo: lo + config.segment_samples]
        probs = prediction.probabilities[index]
        st.markdown(f"**Segment {index + 1} of {n}**, {start:.1f}–{prediction.ends[index]:.1f} s: "
                    f"**{prediction.segment_labels[index]}** ({probs.max():.0%})")
        st.audio(piece, sample_rate=config.sample_rate)
        left, right = st.columns([3, 1])
        with left:
            st.pyplot(song_figure(piece, config, offset=start, width=8.5), clear_figure=True)
        with right:
            st.altair_chart(probability_chart(prediction.labels, probs, height=300), width="stretch")


def main() -> None:
    st.title("Music genre classifier")
    st.write("Upload a song. It is cut into ~3 s segments; each segment is classified into one of GTZAN's ten "
             "genres, and the segments vote.")
    st.page_link("pages/1_Listen_live.py", label="Listen live: record or stream from the microphone", icon="🎙️")
    model_name = sidebar()
    preload_model(model_name)  # loads while the visitor picks a file
    upload = st.file_uploader("Song", type=uploaded_types(), key="upload",
                              help="wav, flac, ogg, mp3" + ("; m4a, aac, wma and more via ffmpeg"
                                                            if find_ffmpeg() else "; install ffmpeg for m4a, aac, wma"))
    if upload is None:
        st.info("Choose an audio file to begin. Nothing is stored: the file is analysed in memory.")
        return
    data = upload.getvalue()
    key = (hashlib.sha1(data).hexdigest(), model_name)
    if st.session_state.get("result_key") != key or "result" not in st.session_state:
        st.session_state.pop("result", None)
        st.session_state.pop("result_key", None)  # a failed upload must not leave the old key behind
        try:
            st.session_state["result"] = classify(data, upload.name, model_name)
        except GenreError as exc:
            st.error(f"Could not classify {upload.name}: {exc}")
            return
        except Exception:  # never show a traceback to the user; log it for the operator
            log.exception("unexpected failure classifying %r", upload.name)
            st.error(f"Something unexpected went wrong with {upload.name}. Try another file; "
                     "the problem has been logged.")
            return
        st.session_state["result_key"] = key
    prediction, samples = st.session_state["result"]
    for note in prediction.warnings:
        st.warning(note)
    st.audio(data)
    show_summary(prediction)
    show_timeline(prediction)
    csv_download(prediction, file_name=os.path.splitext(os.path.basename(upload.name))[0] + "-segments.csv")
    show_plots(prediction, samples, get_model(model_name).config)


main()
