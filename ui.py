"""Streamlit pieces shared by the app's pages (``app.py`` and ``pages/``): the model cache and result views.

UI only; everything from bytes to a prediction is in :mod:`codeFeature`.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import streamlit as st

from codeFeature import GENRES, load_model, predict_audio

#: One colour per genre, the same in every chart.
GENRE_COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                 "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]


# altair and pandas are imported where they are used: at a page's first run the model starts loading
# before they are imported, and they import while it loads

def genre_colour_scale():
    import altair as alt

    return alt.Scale(domain=list(GENRES), range=GENRE_COLOURS)


def _load_and_warm(name: str):
    """Load a model and warm it up with one throw-away segment: librosa's numba kernels compile
    and TensorFlow traces the forward pass here, not during the user's first upload or live window."""
    model = load_model(name)
    noise = np.random.default_rng(0).normal(0, 0.01, model.config.segment_samples).astype(np.float32)
    predict_audio(noise, model=model)
    return model


@st.cache_resource(show_spinner=False)
def _model_future(name: str) -> Future:
    """One background load per model and server process; every page and session shares it."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"load-{name}")
    future = pool.submit(_load_and_warm, name)
    pool.shutdown(wait=False)  # the load goes on; the thread ends with it
    return future


def preload_model(name: str) -> None:
    """Start loading ``name`` in the background (TensorFlow's import and the warm-up take seconds),
    so that it is ready by the time the visitor has chosen a file. Returns at once."""
    _model_future(name)


def get_model(name: str):
    """The loaded, warmed-up model ``name`` (inference is thread-safe), waiting for its load if needed.

    A failed load is not cached: the next call tries again.
    """
    future = _model_future(name)
    try:
        if future.done():
            return future.result()
        with st.spinner("Loading the model…"):
            return future.result()
    except BaseException:
        _model_future.clear(name)
        raise


def probability_chart(labels, probabilities, *, title: str | None = None, height: int = 260):
    """Horizontal bars of one probability per genre (an altair chart)."""
    import altair as alt
    import pandas as pd

    frame = pd.DataFrame({"genre": list(labels), "probability": np.asarray(probabilities, dtype=float)})
    chart = alt.Chart(frame).mark_bar().encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")),
        y=alt.Y("genre:N", sort=list(labels), title=None),
        color=alt.Color("genre:N", scale=genre_colour_scale(), legend=None),
        tooltip=["genre", alt.Tooltip("probability:Q", format=".1%")],
    )
    return chart.properties(height=height, title=title) if title else chart.properties(height=height)


def show_summary(prediction) -> None:
    """Genre, confidence, votes, musicnn tags when the model has them, and the ten mean probabilities."""
    left, right = st.columns([1, 2])
    with left:
        st.metric("Genre", prediction.genre.capitalize())
        st.metric("Confidence", f"{prediction.confidence:.0%}",
                  help="The genre's probability averaged over all segments.")
        st.caption(f"{prediction.votes.max()} of {len(prediction.probabilities)} segments voted "
                   f"{prediction.genre} · {prediction.duration:.1f} s analysed · model {prediction.model}")
        tags = prediction.top_tags(5)
        if tags:
            st.markdown("**Sounds like:** " + ", ".join(tag for tag, _ in tags),
                        help="The strongest of musicnn's 50 Million Song Dataset tags, averaged over the segments.")
    with right:
        st.altair_chart(probability_chart(prediction.labels, prediction.mean_probabilities,
                                          title="Mean probability over segments"), width="stretch")


def show_timeline(prediction) -> None:
    """Every segment as a bar coloured by its genre, its opacity by its confidence."""
    import altair as alt
    import pandas as pd

    table = pd.DataFrame(prediction.segments())
    table["segment"] = np.arange(1, len(table) + 1)
    table["middle"] = (table["start"] + table["end"]) / 2
    # a one-row band on a fixed 0-1 scale: no y axis to size
    table["bottom"], table["top"], table["label_y"] = 0.0, 1.0, 0.5
    band = alt.Scale(domain=[0, 1])
    base = alt.Chart(table)
    bars = base.mark_rect(stroke="white", strokeWidth=0.5).encode(
        x=alt.X("start:Q", title="time (s)"), x2="end:Q",
        y=alt.Y("bottom:Q", scale=band, axis=None), y2="top:Q",
        color=alt.Color("genre:N", scale=genre_colour_scale(), legend=None),
        opacity=alt.Opacity("confidence:Q", scale=alt.Scale(domain=[0, 1], range=[0.3, 1]), legend=None),
        tooltip=["segment", "start", "end", "genre", alt.Tooltip("confidence:Q", format=".0%")],
    )
    layers = [bars]
    if len(table) <= 30:  # name each segment while the names still fit
        layers.append(base.mark_text(fontSize=11, angle=270 if len(table) > 12 else 0).encode(
            x="middle:Q", y=alt.Y("label_y:Q", scale=band, axis=None), text="genre:N"))
    chart = alt.layer(*layers).properties(height=60, title="Segment timeline (colour = genre, opacity = confidence)")
    # Streamlit sizes a layered chart to almost nothing unless given a height
    st.altair_chart(chart, width="stretch", height=160)


def csv_download(prediction, *, file_name: str, key: str | None = None) -> None:
    st.download_button("Download per-segment predictions (CSV)", prediction.to_csv(), file_name=file_name,
                       mime="text/csv", key=key)
