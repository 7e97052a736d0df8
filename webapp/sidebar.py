"""The sidebar every page shares: the model picker, and for the chosen model what was measured on it and on
what (each figure with its n), how it runs here, how it answers, what it was trained on and how to reproduce it.

The figures come from the manifest's optional ``"figures"`` list, each ``{"label", "value" (0..1), "n",
"measured_on", "command"}``, written by the training command that measured them. A manifest without it (older
model folders) has its ``metrics`` read instead, each figure labelled with what it is: a refit model's valid
score belongs to its train-only twin, and says so.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import PurePosixPath

import streamlit as st

from codeFeature import GenreError
from codeFeature.decision import DecisionRule
from codeFeature.engines import plan
from codeFeature.model_io import default_model_name, list_models
from webapp.models import model_card

log = logging.getLogger("app.sidebar")


@dataclass(frozen=True)
class Figure:
    """One measured figure: a proportion with the number of items it was measured on."""

    label: str
    value: float
    n: int
    measured_on: str = ""
    command: str = ""

    def text(self) -> str:
        """``"Accuracy when sure, GTZAN valid: 81.8 % (n = 98)"``."""
        return f"{self.label}: {self.value * 100:.1f} % (n = {self.n})"


def manifest_figures(card: dict) -> list[Figure] | None:
    """The manifest's ``"figures"``, or ``None`` when it has none. An entry that is not a figure (a value
    outside 0..1, no label, no whole n) is left out and logged: the sidebar never shows a number it cannot
    label."""
    raw = card.get("figures")
    if not isinstance(raw, list):
        if raw is not None:
            log.warning("model %s: 'figures' is not a list; ignored", card.get("name"))
        return None
    figures = []
    for entry in raw:
        try:
            label, value, n = entry["label"], entry["value"], entry["n"]
            if not (isinstance(label, str) and label.strip() and isinstance(value, (int, float))
                    and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1
                    and isinstance(n, int) and not isinstance(n, bool) and n > 0):
                raise ValueError(entry)
            figures.append(Figure(label.strip(), float(value), n, str(entry.get("measured_on") or ""),
                                  str(entry.get("command") or "")))
        except (KeyError, TypeError, ValueError):
            log.warning("model %s: figure %r is not {label, value in 0..1, n}; left out", card.get("name"), entry)
    return figures


def _data_name(path: str) -> str:
    """``../shared/data/gtzan/genres`` -> ``GTZAN genres``: the data set, not this machine's folders."""
    parts = [p for p in str(path).replace("\\", "/").split("/") if p not in ("", "..", ".")]
    if "gtzan" in (p.lower() for p in parts):
        at = [p.lower() for p in parts].index("gtzan")
        rest = parts[at + 1:]
        return "GTZAN " + ("/".join(rest) if rest else "")
    return parts[-1] if parts else str(path)


def _valid_set(card: dict) -> str:
    """Where a legacy model's valid figures were measured, in words: "GTZAN valid split (valid_filtered.txt)"."""
    training = card.get("training") or {}
    data = training.get("data") or []
    gtzan = any("gtzan" in str(d).lower() for d in data)
    split = ((training.get("splits") or {}).get("valid") or {}).get("file")
    name = f" ({PurePosixPath(str(split).replace(chr(92), '/')).name})" if split else ""
    return ("GTZAN " if gtzan else "") + "valid split" + name


def legacy_figures(card: dict, precision: str | None = None) -> tuple[list[Figure], list[str]]:
    """Figures read from an older manifest's ``metrics`` (no ``"figures"`` key), each labelled with what it
    measured, and notes that are not proportions (calibration error). ``precision``: the precision the model
    runs in here; where its own valid figures exist (``valid_int8``, ...) they are the ones shown."""
    metrics = card.get("metrics") or {}
    valid = metrics.get("valid")
    shown_in = ""
    if precision in ("bfloat16", "int8") and isinstance(metrics.get(f"valid_{precision}"), dict):
        valid, shown_in = metrics[f"valid_{precision}"], f" Measured in {precision}, as it runs here."
    figures, notes = [], []
    refit = isinstance(valid, dict) and valid.get("fit_on") == "train" and "valid_refit" in metrics
    cv = metrics.get("cv_artist_5fold")
    command = card.get("reproduce", "")
    if isinstance(cv, dict) and isinstance(cv.get("track_accuracy"), (int, float)) and cv.get("tracks"):
        figures.append(Figure("Artist-grouped 5-fold CV, tracks", cv["track_accuracy"], int(cv["tracks"]),
                              "GTZAN train + valid, each fold scored by a head fitted on the others (no artist in "
                              "both)" + (": the estimate for this model, refit on all of them." if refit else "."),
                              command))
    if isinstance(valid, dict):
        where = _valid_set(card)
        if refit:
            prefix, on = "Same recipe fitted on train only, valid", (
                f"{where}, which also selected the recipe. Not this model: it was refit on train + valid and "
                "has seen these tracks.")
        else:
            prefix, on = "Valid accuracy", f"{where}, which also selected this model."
        for key, count, unit in (("track_accuracy", "tracks", "tracks"), ("segment_accuracy", "segments", "segments")):
            if isinstance(valid.get(key), (int, float)) and valid.get(count):
                figures.append(Figure(f"{prefix} {unit}" if refit else f"{prefix}, {unit}", valid[key],
                                      int(valid[count]), (on + shown_in).strip(), command))
        ece = valid.get("ece")
        if isinstance(ece, dict):
            ece = ece.get("track")
        if isinstance(ece, (int, float)):
            notes.append(f"calibration error (ECE, tracks) {ece:.3f} on the same {valid.get('tracks', '?')} "
                         "valid tracks")
    return figures, notes


def show_figures(card: dict, precision: str | None) -> None:
    """What was measured on the model, each figure with its n and, under it, on what."""
    figures = manifest_figures(card)
    notes: list[str] = []
    if figures is None:
        figures, notes = legacy_figures(card, precision)
    if not figures and not notes:
        return
    st.sidebar.markdown("**Measured**")
    for k, figure in enumerate(figures):
        st.sidebar.markdown(f"{figure.label}: **{figure.value * 100:.1f} %** (n = {figure.n})",
                            help=("Reproduce: `" + figure.command + "`") if figure.command else None)
        # figures measured on the same data (tracks and segments of one split) share one line saying on what
        last_of_group = k + 1 == len(figures) or figures[k + 1].measured_on != figure.measured_on
        if figure.measured_on and last_of_group:
            st.sidebar.caption(figure.measured_on)
    if notes:
        st.sidebar.caption("; ".join(n[:1].upper() + n[1:] for n in notes) + ".")


def _short_source(source: str) -> str:
    """Where a model's not-sure thresholds come from, without the command that computed them (the
    manifest keeps it): "python -m ...: on the 98 valid tracks, ..." -> "on the 98 valid tracks, ..."."""
    command, sep, criterion = source.partition(": ")
    return criterion if sep and command.startswith("python ") else source


def _trained_on(training: dict) -> str:
    data = ", ".join(_data_name(d) for d in training.get("data", []))
    if "songs" in training and "fit_tracks" not in training:  # a folder of one's own labels (training.own_genres)
        count = f"{training['songs']} songs"
    elif "fit_tracks" in training:
        count = f"{training['fit_tracks']} tracks" + (f" ({training['fit_on'].replace('+', ' + ')})"
                                                       if training.get("fit_on") else "")
    else:
        segments = f" ({training['train_segments']} segments)" if "train_segments" in training else ""
        count = f"{training.get('train_tracks', '?')} tracks{segments}"
    return f"**Trained on** {count}" + (f" from {data}" if data else "")


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
    try:
        path = plan(card)
    except GenreError as exc:  # a bad CODEFEATURE_PRECISION / CODEFEATURE_ENGINE; loading the model says so too
        st.sidebar.error(str(exc))
        path = None
    show_figures(card, path.precision if path is not None else None)
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
        st.sidebar.markdown(_trained_on(training))
    if card.get("reproduce"):
        st.sidebar.markdown("**Reproduce**")
        st.sidebar.code(card["reproduce"], language="bash", wrap_lines=True)
    return name
