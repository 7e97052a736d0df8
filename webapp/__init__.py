"""The Streamlit app's pages and the pieces they share (``streamlit run app.py`` starts it).

Pages (each run as a script by the navigation in ``app.py``): :mod:`webapp.upload`, :mod:`webapp.live`,
:mod:`webapp.library`. Shared pieces: :mod:`webapp.sidebar` (the model picker and its measured figures),
:mod:`webapp.components` (a song's analysis view), :mod:`webapp.charts` (colours and charts from a model's
labels), :mod:`webapp.models` (loading and caching models), :mod:`webapp.uploads` (upload limits),
:mod:`webapp.analysis_queue` (one queue of analyses per server), :mod:`webapp.memory` (what sessions keep, the
sweep of closed sessions, giving memory back) and :mod:`webapp.settings` (the ``CODEFEATURE_APP_*`` variables).

UI only: nothing here is imported by :mod:`codeFeature`, and nothing runs at import.
"""
