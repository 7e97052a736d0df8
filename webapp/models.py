"""The app's models: one background load per model and server process (shared by every page and session),
and the manifest of each, cached because every rerun of every page reads it."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import streamlit as st

from codeFeature import GenreError, load_model, predict_audio

log = logging.getLogger("app.models")


def _load_and_warm(name: str):
    """Load a model and warm it up with one throw-away segment: librosa's numba kernels compile
    and TensorFlow traces the forward pass here, not during the user's first upload or live window.

    A child process tries the model first (:func:`codeFeature.model_probe.probe_model`, remembered once
    it passed): a model whose native code crashes is refused with a message instead of ending the server
    for every visitor."""
    from codeFeature.errors import ModelError
    from codeFeature.model_probe import probe_model

    verdict = probe_model(name)
    if not verdict.ok:
        log.error("model %s failed its trial run: %s", name, verdict.detail)
        raise ModelError(verdict.message)
    model = load_model(name)
    noise = np.random.default_rng(0).normal(0, 0.01, model.config.segment_samples).astype(np.float32)
    predict_audio(noise, model=model)
    # then one full batch per stream: the engine sizes each stream's working memory for the largest batch
    # it has run and keeps it; sized here, it is part of the loaded model, not a rise after some later
    # song (one of 24 s or more) that no closed session can give back
    streams = max(1, int(getattr(getattr(model, "_runner", None), "streams", 1) or 1))
    model.forward(np.zeros((streams * model.forward_batch, *model.config.input_shape), np.float32))
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


@st.cache_data(show_spinner=False, max_entries=32)
def model_card(name: str) -> dict:
    """The model's manifest (cached: read on every rerun of every page)."""
    from codeFeature.model_io import read_manifest, resolve_model_dir

    return read_manifest(resolve_model_dir(name))


def model_config(name: str):
    """The model's :class:`FeatureConfig` from its manifest (no need to wait for the model)."""
    from codeFeature.config import FeatureConfig

    try:
        return FeatureConfig.from_dict(model_card(name)["feature_config"])
    except (KeyError, GenreError):
        return get_model(name).config  # a broken manifest: the loader says what is wrong


def model_labels(name: str) -> list[str]:
    """The labels the model answers with, from its manifest (any number, any names)."""
    try:
        labels = model_card(name).get("labels")
    except GenreError:
        labels = None
    return [str(label) for label in labels] if labels else list(get_model(name).labels)
