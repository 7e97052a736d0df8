"""Find the GTZAN dataset on this machine, from one option or one environment variable.

Every training and evaluation command takes ``--gtzan DIR`` (else the environment variable
``GTZAN_DIR``, else ``../shared/data/gtzan`` beside the repository where that exists) and
recognises what it finds there:

* the Kaggle download, "GTZAN Dataset - Music Genre Classification"
  (https://www.kaggle.com/datasets/andradaolteanu/gtzan-dataset-music-genre-classification):
  ``DIR/Data/genres_original/<genre>/<genre>.000NN.wav``, ``features_30_sec.csv``,
  ``features_3_sec.csv`` and ``images_original/<genre>/<genre>000NN.png`` (``DIR`` may be the
  unzipped folder or its ``Data/``);
* the original marsyas archive ``genres.tar.gz``: ``DIR/genres/<genre>/<genre>.000NN.au``
  (``DIR`` may also be ``genres/`` itself);
* the project's shared material: ``genres/`` and ``excerpts/`` (wav), ``features_30_sec.csv``
  and ``spectrograms/``.

A missing dataset or part is a :class:`DatasetError` whose message says what is missing, where
it looked and how to get it; :func:`exit_on_missing_data` turns it into that one message and
exit status 2 for the command-line scripts.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from codeFeature.config import GENRES
from codeFeature.feature_kinds import feature_kind

#: The one environment variable naming the dataset's folder (``--gtzan`` overrides it).
GTZAN_ENV = "GTZAN_DIR"
REPO_ROOT = Path(__file__).resolve().parent.parent
#: The project's own copy of (part of) GTZAN, used only when it is there and nothing else is named.
SHARED_GTZAN = REPO_ROOT.parent / "shared" / "data" / "gtzan"

KAGGLE_URL = "https://www.kaggle.com/datasets/andradaolteanu/gtzan-dataset-music-genre-classification"
MARSYAS_URL = "http://marsyas.info/downloads/datasets.html"
HOW_TO_GET = (f'download the Kaggle "GTZAN Dataset - Music Genre Classification" ({KAGGLE_URL}) or marsyas\' '
              f"genres.tar.gz ({MARSYAS_URL}), unpack it, and pass --gtzan DIR or set {GTZAN_ENV}=DIR")

#: What each kind of model input needs, in words, for messages.
PART_NAMES = {
    "audio": "audio (Data/genres_original/<genre>/*.wav or genres/<genre>/*.au)",
    "csv30": "the feature table features_30_sec.csv",
    "csv3": "the feature table features_3_sec.csv",
    "images": "spectrogram images (Data/images_original/)",
}
_AUDIO_SUFFIXES = (".wav", ".au")


class DatasetError(FileNotFoundError):
    """A dataset, or the part of it a command needs, is not where the command looked.

    A ``FileNotFoundError``, so code that caught the old error keeps working.
    """


@dataclass
class Gtzan:
    """The GTZAN parts found under one folder.

    Attributes
    ----------
    root : Path
        The folder that was searched.
    layout : str
        ``"kaggle"``, ``"marsyas"``, ``"shared"`` or ``"folders"`` (genre folders straight under ``root``).
    audio : list of Path
        Folders of ``<genre>/<genre>.000NN.(wav|au)`` files (empty if none).
    csv30, csv3, images : Path or None
        The Kaggle tables and image folder (the shared ``spectrograms/`` counts as images).
    source : str
        How ``root`` was chosen (``--gtzan``, ``GTZAN_DIR`` or the shared folder), for messages.
    """

    root: Path
    layout: str
    audio: list = field(default_factory=list)
    csv30: Path | None = None
    csv3: Path | None = None
    images: Path | None = None
    source: str = ""

    def data_for(self, kind: str) -> list[Path]:
        """The ``--data`` paths for a model reading ``kind`` (``audio``, ``csv30``, ``csv3``, ``images``).

        Raises
        ------
        DatasetError
            If this copy of GTZAN lacks that part.
        """
        found = {"audio": self.audio, "csv30": [self.csv30] if self.csv30 else [],
                 "csv3": [self.csv3] if self.csv3 else [], "images": [self.images] if self.images else []}[kind]
        if not found:
            raise DatasetError(f"{PART_NAMES[kind]} is not in {self.root} ({self.layout} layout, from "
                               f"{self.source}); {HOW_TO_GET}")
        return list(found)


def _has_genre_audio(folder: Path) -> bool:
    """Whether ``folder`` holds at least one ``<genre>/<genre>.000NN`` audio file."""
    if not folder.is_dir():
        return False
    for genre in GENRES:
        sub = folder / genre
        if sub.is_dir() and any(p.suffix.lower() in _AUDIO_SUFFIXES for p in sub.iterdir()):
            return True
    return False


def recognise(root: str | os.PathLike, *, source: str = "") -> Gtzan | None:
    """What GTZAN layout ``root`` holds, or ``None`` if none is recognised."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return None
    if _has_genre_audio(root / "genres") and (root / "excerpts").is_dir():  # the project's shared copy: before
        # Kaggle's test, which its features_30_sec.csv would also pass (and then its audio would not be found)
        return Gtzan(root, "shared", [root / "genres", root / "excerpts"], _file(root / "features_30_sec.csv"),
                     _file(root / "features_3_sec.csv"), _folder(root / "spectrograms"), source)
    for data in (root / "Data", root):  # Kaggle: the unzipped folder, or its Data/
        if (data / "genres_original").is_dir() or (data / "features_30_sec.csv").is_file():
            audio = [data / "genres_original"] if _has_genre_audio(data / "genres_original") else []
            return Gtzan(root, "kaggle", audio, _file(data / "features_30_sec.csv"),
                         _file(data / "features_3_sec.csv"), _folder(data / "images_original"), source)
    if _has_genre_audio(root / "genres"):  # marsyas: genres.tar.gz unpacked here
        return Gtzan(root, "marsyas", [root / "genres"], source=source)
    if _has_genre_audio(root):  # genres/ or genres_original/ itself
        return Gtzan(root, "folders", [root], source=source)
    return None


def _file(path: Path) -> Path | None:
    return path if path.is_file() else None


def _folder(path: Path) -> Path | None:
    return path if path.is_dir() else None


def find_gtzan(option: str | os.PathLike | None = None) -> Gtzan:
    """The GTZAN copy named by ``option`` (``--gtzan``), else ``$GTZAN_DIR``, else the shared folder.

    Raises
    ------
    DatasetError
        If the named folder holds no recognisable GTZAN layout, or nothing is named and there is no
        shared copy; the message says where it looked and how to get the data.
    """
    if option is not None:
        candidates = [(Path(option), "--gtzan")]
    elif os.environ.get(GTZAN_ENV):
        candidates = [(Path(os.environ[GTZAN_ENV]), GTZAN_ENV)]
    else:
        candidates = [(SHARED_GTZAN, "the default ../shared/data/gtzan")]
    for folder, source in candidates:
        found = recognise(folder, source=source)
        if found is not None:
            return found
    folder, source = candidates[0]
    what = "does not exist" if not folder.exists() else "holds no GTZAN layout"
    named = "" if option is not None or os.environ.get(GTZAN_ENV) else f"no --gtzan or {GTZAN_ENV} given, and "
    raise DatasetError(f"GTZAN not found: {named}{folder} ({source}) {what}; {HOW_TO_GET}")


def kind_for_config(config) -> str:
    """Which part of GTZAN a model with this ``FeatureConfig`` reads: ``audio``, ``csv30``, ``csv3`` or ``images``."""
    data = feature_kind(config.feature).training_data
    if data == "table":
        return "csv3" if config.segment_seconds < 30 else "csv30"
    return data


def add_gtzan_argument(parser) -> None:
    """The shared ``--gtzan DIR`` option of every training and evaluation command."""
    parser.add_argument("--gtzan", type=Path, metavar="DIR", default=None,
                        help=f"the GTZAN folder: the Kaggle download (Data/genres_original, features_30_sec.csv, "
                             f"images_original) or marsyas' genres/ (.au); default ${GTZAN_ENV}, else "
                             f"../shared/data/gtzan if present")


def check_paths(paths, *, what: str = "--data") -> None:
    """Raise :class:`DatasetError` naming the first of ``paths`` that does not exist."""
    for path in paths:
        if not Path(path).exists():
            raise DatasetError(f"{what} {path} does not exist; {HOW_TO_GET}")


def audio_data(data, gtzan) -> list[Path]:
    """The audio folders a musicnn command reads: ``--data`` when given, else the audio of the GTZAN copy
    ``--gtzan`` names (see :func:`find_gtzan`); each checked to exist (:class:`DatasetError` if not)."""
    paths = list(data) if data is not None else find_gtzan(gtzan).data_for("audio")
    check_paths(paths)
    return paths


def exit_on_missing_data(main):
    """Wrap a command's ``main`` so a :class:`DatasetError` is one line on stderr and exit status 2.

    The command also runs with TensorFlow's native start-up banners filtered out of stderr
    (:func:`codeFeature.native_stderr.filtered_native_stderr`), so that line is all a user without
    the data sees.
    """
    from codeFeature.native_stderr import filtered_native_stderr

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        with filtered_native_stderr():
            try:
                return main(*args, **kwargs)
            except DatasetError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2

    return wrapped
