"""The app's charts as Altair specs and their words: one colour per label, the probability bars, the segment
timeline and its legend. Colours, legends and axes come from the labels they are given (a model's own,
any number), never from a fixed list.

altair and pandas are imported where they are used: at a page's first run the model starts loading
before they are imported, and they import while it loads.
"""

from __future__ import annotations

import colorsys

import numpy as np

from codeFeature import GENRES

#: One colour per GTZAN genre, the same in every chart: Paul Tol's "muted" qualitative scheme (designed to
#: stay distinct under the common colour-vision deficiencies) and, for the tenth, Okabe and Ito's
#: orange. No grey: a grey label looks disabled. Every chart also names the label in text or on hover.
GENRE_COLOURS = {
    "blues": "#332288", "classical": "#88CCEE", "country": "#DDCC77", "disco": "#AA4499", "hiphop": "#117733",
    "jazz": "#44AA99", "metal": "#882255", "pop": "#CC6677", "reggae": "#999933", "rock": "#E69F00",
}
#: Colours for other labels (a model trained on a person's own genres), in order of the model's labels.
SPARE_COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7"]


def _more_colours(count: int) -> list[str]:
    """``count`` further colours beyond the spare ones, evenly spread around the hue circle (a golden-ratio
    step, so that neighbours in the list differ most), at two lightnesses."""
    colours = []
    for k in range(count):
        hue = (0.11 + k * 0.618034) % 1.0
        red, green, blue = colorsys.hls_to_rgb(hue, 0.42 if k % 2 else 0.58, 0.55)
        colours.append(f"#{round(red * 255):02x}{round(green * 255):02x}{round(blue * 255):02x}")
    return colours


def label_colours(labels=GENRES) -> dict[str, str]:
    """label -> colour, for every label given: GTZAN's genres their fixed colours, the others the spare ones
    in order, then generated ones, so that no two labels share a colour however many there are."""
    labels = list(dict.fromkeys(str(label) for label in labels))
    others = [label for label in labels if label not in GENRE_COLOURS]
    spare = SPARE_COLOURS + _more_colours(max(0, len(others) - len(SPARE_COLOURS)))
    given = dict(zip(others, spare))
    return {label: GENRE_COLOURS.get(label) or given[label] for label in labels}


def genre_colour_scale(labels=GENRES):
    """The label -> colour scale of :func:`label_colours`, for an Altair ``color`` encoding."""
    import altair as alt

    colours = label_colours(labels)
    return alt.Scale(domain=list(colours), range=list(colours.values()))


def segments_word(n: int) -> str:
    return f"{n} segment" if n == 1 else f"{n} segments"


def clock(seconds: float) -> str:
    """``83.4`` -> ``"1:23"``: times a listener can find in a player."""
    seconds = max(0.0, float(seconds))
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


#: What a probability chart's bars are: the song's mean over its segments, or one segment's own.
SONG_MEAN = "mean probability over the segments"
ONE_SEGMENT = "this segment's probability"


def probability_chart(labels, probabilities, *, votes=None, winner: str | None = None, title: str | None = None,
                      measure: str = SONG_MEAN):
    """Every label's probability as a horizontal bar, highest first, the winner starred.

    Parameters
    ----------
    labels : sequence of str
    probabilities : array, shape (n_labels,)
    votes : array of int, shape (n_labels,), optional
        Segments that voted for each label: printed beside its probability.
    winner : str, optional
        The label the verdict chose (marked ★ even when it is not the longest bar).
    measure : str
        What the bars are, the axis title: :data:`SONG_MEAN` or :data:`ONE_SEGMENT`.
    """
    import altair as alt
    import pandas as pd

    probabilities = np.asarray(probabilities, dtype=float)
    frame = pd.DataFrame({"genre": list(labels), "probability": probabilities})
    frame["name"] = [("★ " if g == winner else "") + g for g in frame["genre"]]
    frame["text"] = [f"{p:.0%}" + (f" · {int(v)} vote{'s' if v != 1 else ''}" if votes is not None else "")
                     for p, v in zip(probabilities, votes if votes is not None else probabilities)]
    frame = frame.sort_values("probability", ascending=False, kind="stable")
    # every label, always: no overlap culling, and 24 px a row so that none need it
    y = alt.Y("name:N", sort=list(frame["name"]), title=None,
              axis=alt.Axis(labelOverlap=False, labelLimit=160, labelFontSize=13, ticks=False))
    base = alt.Chart(frame)
    bars = base.mark_bar().encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1.35 if votes is not None else 1.15], nice=False),
                axis=alt.Axis(format="%", values=[0, 0.25, 0.5, 0.75, 1.0]),
                title=measure),
        y=y,
        color=alt.Color("genre:N", scale=genre_colour_scale(labels), legend=None),
        stroke=alt.condition(alt.datum.genre == (winner or ""), alt.value("black"), alt.value(None)),
        tooltip=[alt.Tooltip("genre:N"), alt.Tooltip("probability:Q", format=".1%"),
                 *([alt.Tooltip("text:N", title="mean · votes")] if votes is not None else [])],
    )
    # the figure beside its bar; the scale runs on past 100 % so that it is never cut off on a phone
    text = [base.mark_text(align="left", dx=4, fontSize=12).encode(x="probability:Q", y=y, text="text:N")]
    chart = alt.layer(bars, *text).properties(height=PROBABILITY_ROW * len(frame))
    return chart.properties(title=title) if title else chart


#: Height in pixels of one label's row in a probability chart, and what its axis and title add below them.
PROBABILITY_ROW = 24
PROBABILITY_AXIS = 90


def probability_chart_height(n_labels: int) -> int:
    """The height to draw a probability chart of ``n_labels`` rows at: Streamlit does not size a chart from
    its spec but fits the whole spec, axis included, into its own height, so a model of two or three labels
    would get rows squeezed to nothing."""
    return PROBABILITY_ROW * int(n_labels) + PROBABILITY_AXIS


def probability_text(labels, probabilities, *, votes=None, measure: str = SONG_MEAN) -> str:
    """The chart in words, highest first (its ``alt`` text, for screen readers): "rock 41% (7 votes), ..."."""
    order = np.argsort(-np.asarray(probabilities, dtype=float), kind="stable")
    return measure[0].upper() + measure[1:] + ": " + ", ".join(
        f"{labels[i]} {probabilities[i]:.0%}" + (f" ({int(votes[i])} votes)" if votes is not None else "")
        for i in order)


def end_label(duration: float) -> str:
    """The last tick, the song's end, as a player shows it but never rounded up: 29.7 s is "0:29.7", not 30."""
    whole = int(duration)
    tenths = int((duration - whole) * 10 + 1e-9)
    return clock(whole) + (f".{tenths}" if tenths else "")


def tick_label_expr(duration: float) -> str:
    """A Vega expression labelling a timeline tick in m:ss (rounded down, as players count), the song's end
    with :func:`end_label`."""
    mmss = ("floor(datum.value / 60) + ':' + (floor(datum.value % 60) < 10 ? '0' : '') + "
            "floor(datum.value % 60)")
    return f"datum.value >= {duration - 1e-6!r} ? '{end_label(duration)}' : {mmss}"


#: Height in pixels of the timeline's band, and of the whole chart with its axis
#: (Streamlit does not size it from the spec).
TIMELINE_BAND = 56
TIMELINE_HEIGHT = TIMELINE_BAND + 60


def timeline_chart(prediction):
    """Every segment as a bar coloured by its label (the colours of all the model's labels), ticks on segment
    boundaries, the axis ending with the song, and the segment's time, label and top three on hover."""
    import altair as alt
    import pandas as pd

    probs = prediction.probabilities
    labels = list(prediction.labels)
    starts, ends = prediction.starts, prediction.ends
    top3 = np.argsort(-probs, axis=1)[:, :3]
    table = pd.DataFrame({
        "segment": np.arange(1, len(probs) + 1), "start": starts, "end": ends,
        "genre": prediction.segment_labels, "confidence": prediction.segment_confidences.astype(float),
        "time": [f"{clock(a)}–{clock(b)} ({a:.1f}–{b:.1f} s)" for a, b in zip(starts, ends)],
        "top": [", ".join(f"{labels[j]} {probs[i, j]:.0%}" for j in row) for i, row in enumerate(top3)],
    })
    table["bottom"], table["top_edge"] = 0.0, 1.0  # a one-row band on a fixed 0-1 scale
    # ticks on segment boundaries, thinned to at most ~12 so that the labels fit on a phone
    every = max(1, int(np.ceil(len(table) / 12)))
    ticks = [float(s) for s in starts[::every]] + [float(prediction.duration)]
    x = alt.X("start:Q", title="time (m:ss)", scale=alt.Scale(domain=[0, float(prediction.duration)], nice=False),
              axis=alt.Axis(values=ticks, labelExpr=tick_label_expr(float(prediction.duration)), grid=False))
    chart = alt.Chart(table).mark_rect(stroke="white", strokeWidth=0.5 if len(table) < 60 else 0).encode(
        x=x, x2="end:Q",
        y=alt.Y("bottom:Q", scale=alt.Scale(domain=[0, 1]), axis=None), y2="top_edge:Q",
        # the legend is HTML under the chart (see components.show_timeline): Vega's squeezed the band to nothing
        color=alt.Color("genre:N", scale=genre_colour_scale(labels), legend=None),
        opacity=alt.Opacity("confidence:Q", scale=alt.Scale(domain=[0, 1], range=[0.45, 1]), legend=None),
        tooltip=[alt.Tooltip("segment:Q"), alt.Tooltip("time:N"), alt.Tooltip("genre:N"),
                 alt.Tooltip("top:N", title="top three")],
    )
    return chart.properties(height=TIMELINE_BAND)


def genre_legend(labels=GENRES) -> str:
    """The labels' colours as an HTML line (it wraps on a phone, and stays sharp); labels are escaped."""
    import html

    return " ".join(f'<span style="white-space:nowrap"><span style="color:{colour};'
                    f'font-size:1.2em">■</span>&nbsp;{html.escape(label)}</span>&ensp;'
                    for label, colour in label_colours(labels).items())
