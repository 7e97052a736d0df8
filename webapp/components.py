"""The analysis view every page shows a song's result with (:func:`show_analysis`: the upload page, the live
page's recorded clip and the Library page): the headline and its rule, the probabilities beside the votes,
the segment timeline, the table and CSV, and the pictures with a close-up of one segment.

UI only; everything from bytes to a prediction is in :mod:`codeFeature`.
"""

from __future__ import annotations

import hashlib
import logging
import os

import numpy as np
import streamlit as st

from codeFeature import GenreError
from webapp import charts
from webapp.charts import ONE_SEGMENT, clock, segments_word
from webapp.memory import keep, kept
from webapp.models import model_config

log = logging.getLogger("app.components")


def show_verdict(prediction) -> None:
    """The headline (a genre, or "Not sure: rock or metal"), its confidence, the rule that chose it and,
    beside it, every genre's mean probability and votes: the two ways of adding up the segments."""
    verdict = prediction.verdict
    n = len(prediction.probabilities)
    votes = prediction.votes
    left, right = st.columns([1, 2])
    with left:
        rule_help = "How the segments became one answer: " + prediction.rule.description + "."
        if verdict.state == "outside":
            # the third state: what it sounds like under it, as the two genres are under "Not sure"
            big = "Not music" if verdict.outside_kind == "not music" else f"Not one of the {verdict.genre_count_words}"
            st.metric("Genre", big, delta=("sounds like " + ", ".join(verdict.sounds_like)) if verdict.sounds_like
                      else None, delta_color="off", delta_arrow="off", help=rule_help)
        elif verdict.not_sure:
            # "Not sure" big, the two likeliest genres under it: a metric's value never wraps, and
            # "Not sure: classical or country" would be cut off in a half-width column
            st.metric("Genre", "Not sure", delta=verdict.headline.split(": ", 1)[1], delta_color="off",
                      delta_arrow="off", help=rule_help)
        else:
            st.metric("Genre", verdict.headline.capitalize(), help=rule_help)
        if verdict.state == "outside":
            # not a confidence in the answer above: the likeliest of the model's labels, kept for reference
            st.metric("Nearest genre", f"{verdict.genre} {verdict.confidence:.0%}",
                      help=f"The model's likeliest genre all the same, its probability averaged over the "
                           f"{segments_word(n)}; the answer above is that the song is none of them.")
        else:
            st.metric("Confidence", f"{verdict.confidence:.0%}",
                      help=f"{verdict.genre.capitalize()}'s probability averaged over the {segments_word(n)}.")
        voted = int(votes[list(prediction.labels).index(verdict.genre)])
        st.caption(f"**{voted} of {segments_word(n)}** voted {verdict.genre} · mean probability "
                   f"{verdict.confidence:.0%} · {prediction.duration:.1f} s analysed · model {prediction.model}")
        st.caption(f"Rule: {prediction.rule.description}.")
        if verdict.state == "outside":
            st.info(verdict.explanation)
        elif verdict.not_sure:
            st.warning(verdict.explanation)
        tags = prediction.top_tags(5)
        if tags:
            # for a song heard as not music, musicnn's music tags describe nothing it is: named as tags
            words = "Strongest tags" if verdict.outside_kind == "not music" else "Sounds like"
            st.markdown(f"**{words}:** " + ", ".join(tag.lower() for tag, _ in tags),
                        help="The strongest of musicnn's 50 Million Song Dataset tags, averaged over the segments.")
    with right:
        st.markdown("**Mean probability and votes, every genre**")
        st.altair_chart(charts.probability_chart(prediction.labels, prediction.mean_probabilities, votes=votes,
                                                 winner=verdict.genre), width="stretch",
                        height=charts.probability_chart_height(len(prediction.labels)),
                        alt=charts.probability_text(prediction.labels, prediction.mean_probabilities, votes=votes))


def show_timeline(prediction) -> None:
    st.markdown("**Segment timeline** (colour: each segment's genre; paler: less sure; hover for details)")
    st.altair_chart(charts.timeline_chart(prediction), width="stretch", height=charts.TIMELINE_HEIGHT)
    st.markdown(charts.genre_legend(prediction.labels), unsafe_allow_html=True)


def segment_table(prediction):
    """One row a segment: times in seconds to 0.1, probabilities as whole percentages."""
    import pandas as pd

    table = pd.DataFrame(prediction.segments())
    table.insert(0, "segment", np.arange(1, len(table) + 1))
    table["confidence"] = (table["confidence"] * 100).round().astype(int)
    return table


def csv_download(prediction, *, file_name: str, key: str | None = None) -> None:
    st.download_button("Download per-segment predictions (CSV)", prediction.to_csv(), file_name=file_name,
                       mime="text/csv", key=key)


# ---------------------------------------------------------------- plots

def _fingerprint(prediction, samples) -> str:
    digest = hashlib.sha1(np.ascontiguousarray(prediction.probabilities).tobytes())
    digest.update(f"{prediction.model}|{len(samples)}".encode())
    digest.update(np.ascontiguousarray(samples[:: max(1, len(samples) // 4096)]).tobytes())
    return digest.hexdigest()


def _song_pictures(prediction, samples, config, key: str) -> list[tuple[str, bytes]]:
    """The whole-song panels as PNGs, drawn once per result and kept for the session in the server's
    bounded store: reruns (a slider, a download, another page and back) reuse them while it keeps them."""
    from codeFeature.plots import MAX_PLOT_SECONDS, SONG_WIDTH, song_panels

    store = f"{key}__pictures"
    fingerprint = _fingerprint(prediction, samples)
    got = kept(store)
    if got is not None and got[0] == fingerprint:
        return got[1]
    shown = samples[: int(MAX_PLOT_SECONDS * config.sample_rate)]
    panels = song_panels(shown, config, width=SONG_WIDTH,
                         boundaries=prediction.starts[prediction.starts < MAX_PLOT_SECONDS])
    pictures = [(panel.title, panel.png()) for panel in panels]
    keep(store, (fingerprint, pictures), sum(len(png) for _, png in pictures))
    return pictures


def _show_pictures(pictures) -> None:
    for title, png in pictures:
        st.caption(title)
        st.image(png, width="stretch")


@st.fragment
def _closeup(prediction, samples, config, key: str) -> None:
    """One segment: its sound, its panels and its ten probabilities. A fragment: moving the slider
    reruns only this, so the page stays on this tab and nothing else is redrawn."""
    from codeFeature.plots import CLOSEUP_WIDTH, song_panels

    n = len(prediction.starts)
    index = 0
    if n > 1:
        index = st.slider("Segment", 1, n, 1, key=f"{key}_segment",
                          help="Drag, or click the slider and use the arrow keys.") - 1
    start, end = float(prediction.starts[index]), float(prediction.ends[index])
    lo = int(round(start * config.sample_rate))
    piece = samples[lo: lo + config.segment_samples]
    probs = prediction.probabilities[index]
    label = prediction.segment_labels[index]
    where = f"Segment {index + 1} of {n}" if n > 1 else "The only segment"
    st.markdown(f"**{where}**, {clock(start)}–{clock(end)} ({start:.1f}–{end:.1f} s): **{label}** "
                f"({probs.max():.0%})")
    st.audio(piece, sample_rate=config.sample_rate)
    left, right = st.columns([3, 2])
    # the chart first: it is cheap, so the words and the chart follow the slider at once, and the pictures,
    # which take a moment on a busy server, come after them instead of holding them back
    with right:
        st.altair_chart(charts.probability_chart(prediction.labels, probs, winner=label, measure=ONE_SEGMENT),
                        width="stretch", height=charts.probability_chart_height(len(prediction.labels)),
                        alt=charts.probability_text(prediction.labels, probs, measure=ONE_SEGMENT))
    with left:
        _show_pictures([(p.title, p.png()) for p in song_panels(piece, config, offset=start, width=CLOSEUP_WIDTH)])


def show_plots(prediction, samples, config, *, key: str) -> None:
    """The whole song's panels and the segment close-up, on two tabs."""
    from codeFeature.plots import MAX_PLOT_SECONDS

    whole, closeup = st.tabs(["Whole song", "One segment close up"], key=f"{key}_tabs")
    with whole:
        if len(samples) > MAX_PLOT_SECONDS * config.sample_rate:
            st.info(f"The pictures show the first {MAX_PLOT_SECONDS / 60:.0f} minutes; every segment was classified.")
        _show_pictures(_song_pictures(prediction, samples, config, key))
    with closeup:
        _closeup(prediction, samples, config, key)


# ---------------------------------------------------------------- the whole view

def show_analysis(prediction, *, samples=None, sample_rate: int | None = None, audio_bytes: bytes | None = None,
                  key: str = "analysis", csv_name: str | None = None, config=None) -> None:
    """A song's whole analysis: notes, player, headline and confidence, votes beside mean probabilities,
    the segment timeline and table, the CSV download, and (given the audio) the pictures and close-up.

    Parameters
    ----------
    prediction : codeFeature.Prediction
        The result to show; its ``verdict`` gives the headline.
    samples : np.ndarray, shape (n_samples,), optional
        The decoded mono audio. Without it (a stored result) the pictures and close-up are left out.
    sample_rate : int, optional
        Rate of ``samples``; default the model's. Other rates are resampled to the model's.
    audio_bytes : bytes, optional
        The original file, for the player (else the decoded ``samples`` are played, if given).
    key : str
        Unique per place on a page (e.g. ``"upload"``, ``"clip"``, ``"library"``): the widgets' keys and
        the kept pictures derive from it, so two views never share state.
    csv_name : str, optional
        File name of the CSV download; default from ``prediction.file``.
    config : FeatureConfig, optional
        The model's feature config; default read from the manifest of ``prediction.model`` (a model
        that cannot be found leaves the pictures out).
    """
    for note in prediction.warnings:
        st.warning(note[:1].upper() + note[1:] + ("" if note.endswith(".") else "."))
    if config is None and samples is not None:
        try:
            config = model_config(prediction.model)
        except GenreError as exc:  # e.g. a stored result whose model is gone: no pictures, the rest stands
            log.info("no pictures for %s: %s", prediction.file, exc)
            samples = None
    if samples is not None:
        samples = np.asarray(samples, dtype=np.float32)
        if sample_rate is not None and sample_rate != config.sample_rate:
            from codeFeature.resample import resample

            samples = resample(samples, sample_rate, config.sample_rate)
    if audio_bytes is not None:
        st.audio(audio_bytes)
    elif samples is not None:
        st.audio(samples, sample_rate=config.sample_rate)
    show_verdict(prediction)
    show_timeline(prediction)
    with st.expander(f"Every segment ({segments_word(len(prediction.probabilities))})"):
        st.dataframe(segment_table(prediction), hide_index=True, width="stretch",
                     column_config={"start": st.column_config.NumberColumn("start (s)", format="%.1f"),
                                    "end": st.column_config.NumberColumn("end (s)", format="%.1f"),
                                    "confidence": st.column_config.NumberColumn("confidence", format="%d%%")})
    stem = os.path.splitext(os.path.basename(prediction.file or "song"))[0]
    csv_download(prediction, file_name=csv_name or f"{stem}-segments.csv", key=f"{key}_csv")
    if samples is not None and len(samples):
        show_plots(prediction, samples, config, key=key)
