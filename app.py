"""Music genre classifier: upload a song, see its genre, how each ~3 s segment voted, and its spectrograms.

Run with ``streamlit run app.py``. This file is UI only: the navigation between the pages, the
sidebar's model choice (shared by every page) and the upload page. Everything from bytes to a
prediction is in :mod:`codeFeature`; the result view is :func:`ui.show_analysis`.

Pages are registered in :data:`PAGES`: a new page is one ``st.Page(...)`` line there.
"""

from __future__ import annotations

import hashlib
import logging
import os

from codeFeature.runtime import prepare_process  # noqa: E402  (before TensorFlow and librosa)

prepare_process()

import streamlit as st

from codeFeature import GenreError, SUPPORTED_EXTENSIONS, predict_audio
from codeFeature.audio import FFMPEG_EXTENSIONS, find_ffmpeg
from codeFeature.errors import ModelError
from codeFeature.decision import DecisionRule
from codeFeature.engines import plan
from codeFeature.model_io import default_model_name, list_models
from ui import (QUEUE, ServerBusy, check_upload, decode_upload, get_model, keep, kept, model_card, model_config, preload_model,
                show_analysis, start_janitor, waiting_message)

log = logging.getLogger("app")

st.set_page_config(page_title="Music genre classifier", page_icon="🎵", layout="wide")

#: What the upload page keeps in ``st.session_state`` (not widget state, so it outlives a visit to
#: another page): the last result and the file's name. The file's bytes and decoded audio are kept
#: under the same name in the server's bounded store (:func:`ui.keep`), not in the session.
RESULT = "upload_result"

start_janitor()  # once per server: ends closed tabs' sessions and gives their memory back


# ---------------------------------------------------------------- sidebar: the model, for every page

def _percent(value) -> str:
    return f"{value:.0%}" if isinstance(value, (int, float)) else str(value)


def _data_name(path: str) -> str:
    """``../shared/data/gtzan/genres`` -> ``GTZAN genres``: the data set, not this machine's folders."""
    parts = [p for p in str(path).replace("\\", "/").split("/") if p not in ("", "..", ".")]
    if "gtzan" in (p.lower() for p in parts):
        at = [p.lower() for p in parts].index("gtzan")
        rest = parts[at + 1:]
        return "GTZAN " + ("/".join(rest) if rest else "")
    return parts[-1] if parts else str(path)


def _short_source(source: str) -> str:
    """Where a model's not-sure thresholds come from, without the command that computed them (the
    manifest keeps it): "python -m ...: on the 98 valid tracks, ..." -> "on the 98 valid tracks, ..."."""
    command, sep, criterion = source.partition(": ")
    return criterion if sep and command.startswith("python ") else source


def sidebar() -> str:
    """The model picker and its card; returns the chosen model's name (also ``st.session_state["model_name"]``)."""
    st.sidebar.header("Model")
    default = default_model_name()
    names = list_models(task="genre")
    names = ([default] if default in names else []) + [n for n in names if n != default]
    if st.session_state.get("model_name") not in names:
        st.session_state["model_name"] = names[0]
    # the choice lives in a plain key: a widget's own state is dropped on a page that does not draw it
    st.session_state["model_picker"] = st.session_state["model_name"]

    def chosen() -> None:
        st.session_state["model_name"] = st.session_state["model_picker"]

    name = st.sidebar.selectbox("Genre model", names, key="model_picker", on_change=chosen,
                                format_func=lambda n: f"{n} (default)" if n == default else n,
                                help="Every genre model found; the default is listed first. The choice is used "
                                     "on every page.")
    card = model_card(name)
    st.sidebar.caption(card.get("description", ""))
    metrics = card.get("metrics", {})
    valid = metrics.get("valid")
    try:
        path = plan(card)
    except GenreError as exc:  # a bad CODEFEATURE_PRECISION / CODEFEATURE_ENGINE; loading the model says so too
        st.sidebar.error(str(exc))
        path = None
    if path is not None and path.precision in ("bfloat16", "int8"):
        # this CPU runs the model's heaviest layers in bfloat16 or int8: show the figures measured that way
        valid = metrics.get(f"valid_{path.precision}", valid)
    if valid:
        refit = valid.get("fit_on") == "train" and "valid_refit" in metrics
        if "track_accuracy" in valid:
            # a refit model was never scored on valid: the figure is its recipe's, fitted without valid
            st.sidebar.metric("Valid accuracy of its recipe (tracks)" if refit else "Valid accuracy (tracks)",
                              _percent(valid["track_accuracy"]),
                              help=f"Majority vote over each track's segments, on {valid.get('tracks', '?')} GTZAN "
                                   "tracks of the fault-filtered valid split, which was also used to select the model"
                                   + (" (this figure is the recipe fitted on train only; the shipped model is refit "
                                      "on train + valid, so see the artist-grouped cross-validation below)."
                                      if refit else "."))
        lines = [f"{valid.get('tracks', '?')} valid tracks"]
        if "segment_accuracy" in valid:
            lines.append(f"segment accuracy {_percent(valid['segment_accuracy'])} on {valid.get('segments', '?')} "
                         "segments")
        ece = valid.get("ece")
        if isinstance(ece, dict):
            ece = ece.get("track")
        if isinstance(ece, (int, float)):
            lines.append(f"calibration error (ECE, tracks) {ece:.3f}")
        cv = metrics.get("cv_artist_5fold")
        if isinstance(cv, dict) and "track_accuracy" in cv:
            lines.append(f"artist-grouped 5-fold CV {_percent(cv['track_accuracy'])} of {cv.get('tracks', '?')} "
                         "tracks (train + valid)")
        st.sidebar.caption("; ".join(lines) + ".")
    if path is not None:
        st.sidebar.caption(f"**Runs here as:** {path.description}.")
    rule = DecisionRule.from_manifest(card)
    thresholds = [f"{label} {getattr(rule, attr):.0%}" for attr, label in
                  (("min_confidence", "confidence below"), ("min_margin", "margin below"), ("min_tag", "strongest tag below"))
                  if getattr(rule, attr) > 0]
    st.sidebar.caption(f"**Answer:** {rule.description}. **Not sure** when "
                       + (", ".join(thresholds) + " or the audio is silent" if thresholds else "the audio is silent")
                       + f" (thresholds {_short_source(rule.source)}).")
    training = card.get("training", {})
    if training:
        data = ", ".join(_data_name(d) for d in training.get("data", []))
        segments = f" ({training['train_segments']} segments)" if "train_segments" in training else ""
        st.sidebar.markdown(f"**Trained on** {training.get('train_tracks', '?')} GTZAN tracks{segments}"
                            + (f" from {data}" if data else ""))
    if card.get("reproduce"):
        st.sidebar.markdown("**Reproduce**")
        st.sidebar.code(card["reproduce"], language="bash", wrap_lines=True)
    return name


# ---------------------------------------------------------------- the upload page

def uploaded_types() -> list[str]:
    extensions = [e.lstrip(".") for e in SUPPORTED_EXTENSIONS]
    if find_ffmpeg() is None:
        extensions = [e for e in extensions if "." + e not in FFMPEG_EXTENSIONS]
    return extensions


def classify(data: bytes, filename: str, model_name: str):
    """Wait for a turn in the server's queue of analyses (saying how many are ahead), then decode and
    classify, with a progress bar that goes when the work ends (or fails); returns (prediction, samples)."""
    slot = st.empty()
    try:
        with QUEUE.turn(on_wait=lambda ahead: slot.info(waiting_message(ahead), icon=":material/hourglass_top:")):
            bar = slot.progress(0.0, text=f"Decoding {filename}…")
            # the manifest gives the rate: the song decodes while the model may still be loading
            decoded = decode_upload(data, filename, sample_rate=model_config(model_name).sample_rate)
            model = get_model(model_name)
            bar.progress(0.05, text=f"Decoded {decoded.duration:.0f} s of audio; classifying…")
            prediction = predict_audio(decoded.samples, model=model, file=filename, warnings=decoded.warnings,
                                       progress=lambda f, msg: bar.progress(0.05 + 0.95 * f, text=msg))
    finally:
        slot.empty()
    return prediction, decoded.samples


def _message(exc: GenreError, filename: str) -> str:
    """The library's message, naming the file once, with what to try."""
    text = str(exc)
    if isinstance(exc, (ServerBusy, ModelError)):  # not the file's fault: no other file would fare better
        return text[:1].upper() + text[1:].rstrip(".") + "."
    if filename not in text:
        text = f"{filename}: {text}"
    if not text.startswith(filename):
        text = text[:1].upper() + text[1:]
    return text.rstrip(".") + ". Try another file: wav, flac, ogg and mp3 always work."


#: The uploader's key is ``upload_<generation>``; the generation moves on with every file received, so the
#: uploader is drawn afresh, empty: a refused type's "not allowed" chip and the previous file do not linger
#: beside the next one, and Streamlit lets go of the previous upload's bytes.
GENERATION = "upload_generation"
#: A file just received, waiting for this run to analyse it: (name, bytes).
PENDING = "upload_pending"


def _uploader_key() -> str:
    return f"upload_{st.session_state.get(GENERATION, 0)}"


def _upload_changed() -> None:
    """A file arrived: take it out of the uploader and start a fresh one. (An empty uploader says nothing:
    the file is always taken out, so an empty value is a redrawn widget, never a visitor removing a file.)"""
    upload = st.session_state.get(_uploader_key())
    if upload is None:
        return
    st.session_state[PENDING] = (upload.name, upload.getvalue())
    st.session_state[GENERATION] = st.session_state.get(GENERATION, 0) + 1


def upload_page() -> None:
    st.title("Music genre classifier")
    st.write("Upload a song. It is cut into ~3 s segments; each segment is classified into one of GTZAN's ten "
             "genres, and the segments vote.")
    model_name = st.session_state["model_name"]
    preload_model(model_name)  # loads while the visitor picks a file
    st.file_uploader("Song", type=uploaded_types(), key=_uploader_key(), on_change=_upload_changed,
                     help="wav, flac, ogg, mp3" + ("; m4a, aac, wma and more via ffmpeg"
                                                   if find_ffmpeg() else "; install ffmpeg for m4a, aac, wma"))
    pending = st.session_state.pop(PENDING, None)
    result = st.session_state.get(RESULT)
    if pending is None and result is not None and result["model"] != model_name:
        heavy = kept(RESULT)  # another model was chosen: analyse the same file again, if it is still kept
        pending = (result["name"], heavy[1]) if heavy is not None and heavy[0] == result["key"] else None
    if pending is None:
        if result is None or result["model"] != model_name:
            st.info("Choose an audio file to begin. Nothing is stored: the file is analysed in memory.")
            return
        st.caption(f"Showing **{result['name']}**; choose a file to analyse another.")
        _show_result(result, model_name)
        return
    name, data = pending
    try:
        check_upload(data, name)
    except GenreError as exc:
        st.error(_message(exc, name))
        return
    key = (hashlib.sha1(data).hexdigest(), model_name)
    if result is None or result["key"] != key:
        st.session_state.pop(RESULT, None)  # a failed upload must not leave the old result behind
        try:
            prediction, samples = classify(data, name, model_name)
        except GenreError as exc:
            log.info("could not classify %r: %s", name, exc)
            st.error(_message(exc, name))
            return
        except Exception:  # never show a traceback to the user; log it for the operator
            log.exception("unexpected failure classifying %r", name)
            st.error(f"Something unexpected went wrong with {name}. Try another file; the problem has been logged.")
            return
        result = {"key": key, "name": name, "model": model_name, "prediction": prediction}
        st.session_state[RESULT] = result
        keep(RESULT, (key, data, samples), len(data) + samples.nbytes)
        st.caption(f"Showing **{name}**; choose a file to analyse another.")
        show_analysis(prediction, samples=samples, audio_bytes=data, key="upload", config=model_config(model_name))
        return
    st.caption(f"Showing **{name}**; choose a file to analyse another.")
    _show_result(result, model_name)


def _show_result(result: dict, model_name: str) -> None:
    """The session's last result, with its audio and pictures while the server's store still keeps them."""
    heavy = kept(RESULT)
    if heavy is None or heavy[0] != result["key"]:
        st.caption("This result's audio was let go to keep the server's memory within its limit: choose the "
                   "file again to play it and see its pictures.")
        show_analysis(result["prediction"], key="upload", config=model_config(model_name))
        return
    _, data, samples = heavy
    show_analysis(result["prediction"], samples=samples, audio_bytes=data, key="upload",
                  config=model_config(model_name))


# ---------------------------------------------------------------- navigation

#: The app's pages, in the navigation's order. To add one: a line
#: ``st.Page("webapp/NAME.py", title=..., icon=..., url_path=...)``. (Not a folder named pages/: Streamlit
#: would serve its own menu of that folder to a page URL opened before the main page.)
PAGES = [
    st.Page(upload_page, title="Upload a song", icon=":material/upload_file:", default=True),
    st.Page("webapp/live.py", title="Listen live", icon=":material/mic:", url_path="Listen_live"),
    st.Page("webapp/library.py", title="Library", icon=":material/library_music:", url_path="Library"),
]

navigation = st.navigation(PAGES)
sidebar()
navigation.run()
