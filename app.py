"""Music genre classifier: upload a song, see its genre, how each ~3 s segment voted, and its spectrograms.

Run with ``streamlit run app.py``. This file only builds the navigation between the pages and the sidebar
they share (the model choice, :func:`webapp.sidebar.sidebar`); each page is a module of :mod:`webapp`
(upload, live, library), and everything from bytes to a prediction is in :mod:`codeFeature`.

Pages are registered in :data:`PAGES`: a new page is one ``st.Page(...)`` line there.
"""

from __future__ import annotations

import os

from codeFeature.runtime import prepare_process  # noqa: E402  (before TensorFlow and librosa)

prepare_process()

import streamlit as st

from webapp.memory import start_janitor, tune_malloc
from webapp.sidebar import sidebar

tune_malloc()  # once per process, before the first song's buffers: see its docstring
st.set_page_config(page_title="Music genre classifier", page_icon="🎵", layout="wide")
start_janitor()  # once per server: ends closed tabs' sessions and gives their memory back

#: The app's pages, in the navigation's order. To add one: a module in webapp/ run as a script and a line
#: ``st.Page("webapp/NAME.py", title=..., icon=..., url_path=...)``. (Not a folder named pages/: Streamlit
#: would serve its own menu of that folder to a page URL opened before the main page.)
PAGES = [
    st.Page("webapp/upload.py", title="Upload a song", icon=":material/upload_file:", default=True),
    st.Page("webapp/live.py", title="Listen live", icon=":material/mic:", url_path="Listen_live"),
    st.Page("webapp/library.py", title="Library", icon=":material/library_music:", url_path="Library"),
]

navigation = st.navigation(PAGES)
sidebar()
navigation.run()
