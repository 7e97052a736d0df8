"""A music library in an embedded database: scan folders, resume, export, tag, and scale out on Ray.

``python -m codeFeature scan ROOT --db library.sqlite`` walks ``ROOT``, classifies every audio
file and keeps one row per (file, model) in a SQLite database (:mod:`.store`); running it again
does only new or changed files. :mod:`.scan` walks and classifies (threads on this machine,
:mod:`.ray_engine` on a Ray cluster), :mod:`.export` writes CSV / Parquet / JSON lines and
genre folders of symlinks, :mod:`.tags` writes the genre into the files' own tags (with undo).

Every stored answer comes from :attr:`codeFeature.predict.Prediction.verdict`, and
:func:`.store.load_prediction` rebuilds the :class:`~codeFeature.predict.Prediction` from a row,
so the app shows a stored song exactly as if it had just been classified.
"""

from .store import LibraryStore, fingerprint, load_prediction, SCHEMA_VERSION

__all__ = ["LibraryStore", "fingerprint", "load_prediction", "SCHEMA_VERSION"]
