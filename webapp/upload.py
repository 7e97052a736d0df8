"""Upload a song: the app's default page. The file is checked, waits for a turn in the server's queue of
analyses, is decoded and classified, and its analysis shown (:func:`webapp.components.show_analysis`).

A page of the app started by ``streamlit run app.py`` (registered in its ``PAGES``; the sidebar's model
choice, made there, is used here). UI only: everything from bytes to a prediction is in :mod:`codeFeature`.
"""

from __future__ import annotations

import hashlib
import logging

import streamlit as st

from codeFeature import GENRES, GenreError, SUPPORTED_EXTENSIONS, predict_audio
from codeFeature.audio import FFMPEG_EXTENSIONS, find_ffmpeg
from codeFeature.errors import ModelError
from codeFeature.model_io import default_model_name
from webapp import analysis_queue, components, memory, models, uploads

log = logging.getLogger("app.upload")

#: What the upload page keeps in ``st.session_state`` (not widget state, so it outlives a visit to
#: another page): the last result and the file's name. The file's bytes and decoded audio are kept
#: under the same name in the server's bounded store (:func:`webapp.memory.keep`), not in the session.
RESULT = "upload_result"
#: The uploader's key is ``upload_<generation>``; the generation moves on with every file received, so the
#: uploader is drawn afresh, empty: a refused type's "not allowed" chip and the previous file do not linger
#: beside the next one, and Streamlit lets go of the previous upload's bytes.
GENERATION = "upload_generation"
#: A file just received, waiting for this run to analyse it: (name, bytes).
PENDING = "upload_pending"


def uploaded_types() -> list[str]:
    extensions = [e.lstrip(".") for e in SUPPORTED_EXTENSIONS]
    if find_ffmpeg() is None:
        extensions = [e for e in extensions if "." + e not in FFMPEG_EXTENSIONS]
    return extensions


def what_it_does(labels) -> str:
    """The page's first words, naming what the chosen model answers with."""
    labels = list(labels)
    if labels == list(GENRES):
        into = "one of GTZAN's ten genres"
    else:
        into = f"one of this model's {len(labels)} labels ({', '.join(labels)})"
    return f"Upload a song. It is cut into ~3 s segments; each segment is classified into {into}, and the segments vote."


def classify(data: bytes, filename: str, model_name: str):
    """Wait for a turn in the server's queue of analyses (saying how many are ahead), then decode and
    classify, with a progress bar that goes when the work ends (or fails); returns (prediction, samples)."""
    slot = st.empty()
    try:
        with analysis_queue.server_queue().turn(
                on_wait=lambda ahead: slot.info(analysis_queue.waiting_message(ahead),
                                                icon=":material/hourglass_top:")):
            bar = slot.progress(0.0, text=f"Decoding {filename}…")
            # the manifest gives the rate: the song decodes while the model may still be loading
            decoded = uploads.decode_upload(data, filename, sample_rate=models.model_config(model_name).sample_rate)
            model = models.get_model(model_name)
            bar.progress(0.05, text=f"Decoded {decoded.duration:.0f} s of audio; classifying…")
            prediction = predict_audio(decoded.samples, model=model, file=filename, warnings=decoded.warnings,
                                       progress=lambda f, msg: bar.progress(0.05 + 0.95 * f, text=msg))
    finally:
        slot.empty()
    return prediction, decoded.samples


def message(exc: GenreError, filename: str) -> str:
    """The library's message, naming the file once, with what to try."""
    text = str(exc)
    if isinstance(exc, (analysis_queue.ServerBusy, ModelError)):  # not the file's fault: no other file would fare better
        return text[:1].upper() + text[1:].rstrip(".") + "."
    if filename not in text:
        text = f"{filename}: {text}"
    if not text.startswith(filename):
        text = text[:1].upper() + text[1:]
    return text.rstrip(".") + ". Try another file: wav, flac, ogg and mp3 always work."


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


def _show_result(result: dict, model_name: str) -> None:
    """The session's last result, with its audio and pictures while the server's store still keeps them."""
    heavy = memory.kept(RESULT)
    if heavy is None or heavy[0] != result["key"]:
        st.caption("This result's audio was let go to keep the server's memory within its limit: choose the "
                   "file again to play it and see its pictures.")
        components.show_analysis(result["prediction"], key="upload", config=models.model_config(model_name))
        return
    _, data, samples = heavy
    components.show_analysis(result["prediction"], samples=samples, audio_bytes=data, key="upload",
                             config=models.model_config(model_name))


def main() -> None:
    st.title("Music genre classifier")
    model_name = st.session_state.get("model_name") or default_model_name()
    models.preload_model(model_name)  # loads while the visitor picks a file
    st.write(what_it_does(models.model_labels(model_name)))
    st.file_uploader("Song", type=uploaded_types(), key=_uploader_key(), on_change=_upload_changed,
                     help="wav, flac, ogg, mp3" + ("; m4a, aac, wma and more via ffmpeg"
                                                   if find_ffmpeg() else "; install ffmpeg for m4a, aac, wma"))
    pending = st.session_state.pop(PENDING, None)
    result = st.session_state.get(RESULT)
    if pending is None and result is not None and result["model"] != model_name:
        heavy = memory.kept(RESULT)  # another model was chosen: analyse the same file again, if it is still kept
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
        uploads.check_upload(data, name)
    except GenreError as exc:
        st.error(message(exc, name))
        return
    key = (hashlib.sha1(data).hexdigest(), model_name)
    if result is None or result["key"] != key:
        st.session_state.pop(RESULT, None)  # a failed upload must not leave the old result behind
        try:
            prediction, samples = classify(data, name, model_name)
        except GenreError as exc:
            log.info("could not classify %r: %s", name, exc)
            st.error(message(exc, name))
            return
        except Exception:  # never show a traceback to the user; log it for the operator
            log.exception("unexpected failure classifying %r", name)
            st.error(f"Something unexpected went wrong with {name}. Try another file; the problem has been logged.")
            return
        result = {"key": key, "name": name, "model": model_name, "prediction": prediction}
        st.session_state[RESULT] = result
        memory.keep(RESULT, (key, data, samples), len(data) + samples.nbytes)
        st.caption(f"Showing **{name}**; choose a file to analyse another.")
        components.show_analysis(prediction, samples=samples, audio_bytes=data, key="upload",
                                 config=models.model_config(model_name))
        return
    st.caption(f"Showing **{name}**; choose a file to analyse another.")
    _show_result(result, model_name)


if __name__ == "__main__":  # Streamlit runs a page as __main__; a test may import its helpers
    main()
