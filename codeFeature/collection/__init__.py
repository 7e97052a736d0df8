"""A music collection in an embedded database: scan folders, resume, export, tag, and scale out on Ray.

``python -m codeFeature scan ROOT --db library.sqlite`` walks ``ROOT`` (:mod:`.walk`), classifies every
audio file (:mod:`.classify`, run by :mod:`.local_runner` on this machine or :mod:`.ray_runner` on a Ray
cluster, chosen by :mod:`.scan`) and keeps one row per (file, model) in a SQLite database (:mod:`.store`);
running it again does only new or changed files. :mod:`.export` writes CSV / Parquet / JSON lines and
genre folders of symlinks, :mod:`.tags` writes the genre into the files' own tags (with undo);
:mod:`.serve` and :mod:`.background` are what the app may read and scan.

Every stored answer comes from :attr:`codeFeature.predict.Prediction.verdict` (its state too: a genre,
not sure, or outside the model's genres), and :func:`.store.load_prediction` rebuilds the
:class:`~codeFeature.predict.Prediction` from a row, so the app shows a stored song exactly as if it had
just been classified.
"""

from .store import LibraryStore, fingerprint, load_prediction, SCHEMA_VERSION

__all__ = ["LibraryStore", "fingerprint", "load_prediction", "SCHEMA_VERSION"]
