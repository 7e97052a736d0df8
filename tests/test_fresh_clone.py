"""The retraining guide's commands (docs/training.md), run as a new user would: from a clean clone with no ``../shared``
beside it, on a miniature GTZAN in each public layout (the Kaggle download and marsyas' ``.au`` archive).

The clone is a copy of the repository's files (tracked and new, not ignored) in a temporary folder,
committed into a fresh git repository there, so ``git status --porcelain`` shows whether any command
changed a tracked file. The data are synthesised: a few seconds of a genre-specific chord for a few
tracks per genre, named after tracks of the shipped split lists so that the default splits select them,
a tiny ``features_30_sec.csv`` and a few tiny images. Every command runs in ``--quick`` mode (2 epochs; for
the musicnn heads, the musicnn embeddings of those 30 short tracks and a head fitted on them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from codeFeature.config import GENRES

REPO = Path(__file__).resolve().parent.parent
GUIDE = (REPO / "docs" / "training.md").read_text()  # the README links to it for retraining
SECONDS = 3.5  # one 3 s segment of every model that reads audio


def _split_ids(name: str) -> list[str]:
    from training.data import read_split

    return read_split(REPO / "training" / "splits" / name)


def _chord(genre: str, seconds: float, rate: int, seed: int) -> np.ndarray:
    g = GENRES.index(genre)
    t = np.arange(int(seconds * rate)) / rate
    y = sum(np.sin(2 * np.pi * 110.0 * 2 ** (g / 4) * m * t) for m in (1, 1.25, 1.5)) / 3
    return (0.4 * y + 0.02 * np.random.default_rng(seed).standard_normal(len(t))).astype(np.float32)


def _tracks() -> list[str]:
    """Two train tracks and one valid track of each genre, from the shipped fault-filtered lists."""
    train, valid = _split_ids("train_filtered.txt"), _split_ids("valid_filtered.txt")
    chosen = []
    for genre in GENRES:
        chosen += [t for t in train if t.startswith(genre + ".")][:2]
        chosen += [t for t in valid if t.startswith(genre + ".")][:1]
    return chosen


def make_kaggle(root: Path) -> Path:
    """``root/Data/{genres_original,images_original,features_30_sec.csv}``, as the Kaggle zip unpacks."""
    from PIL import Image

    from codeFeature.gtzan_features import FEATURE_COLUMNS

    data = root / "Data"
    rng = np.random.default_rng(0)
    lines = ["filename,length," + ",".join(FEATURE_COLUMNS) + ",label"]
    for i, track in enumerate(_tracks()):
        genre = track.split(".")[0]
        (data / "genres_original" / genre).mkdir(parents=True, exist_ok=True)
        sf.write(data / "genres_original" / genre / f"{track}.wav", _chord(genre, SECONDS, 22050, i), 22050,
                 subtype="PCM_16")
        (data / "images_original" / genre).mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 60, (24, 24, 3))
        pixels[:, GENRES.index(genre) * 2:GENRES.index(genre) * 2 + 3] += 150
        Image.fromarray(pixels.astype(np.uint8)).save(data / "images_original" / genre /
                                                      f"{track.replace('.', '')}.png")
        values = (GENRES.index(genre) + 0.3 * rng.standard_normal(len(FEATURE_COLUMNS))) * np.logspace(-3, 5, len(
            FEATURE_COLUMNS))
        lines.append(f"{track}.wav,661794," + ",".join(f"{v:.6g}" for v in values) + f",{genre}")
    (data / "features_30_sec.csv").write_text("\n".join(lines) + "\n")
    return root


def make_marsyas(root: Path) -> Path:
    """``root/genres/<genre>/<genre>.000NN.au``, as marsyas' genres.tar.gz unpacks."""
    for i, track in enumerate(_tracks()):
        genre = track.split(".")[0]
        (root / "genres" / genre).mkdir(parents=True, exist_ok=True)
        sf.write(root / "genres" / genre / f"{track}.au", _chord(genre, SECONDS, 22050, i), 22050,
                 format="AU", subtype="PCM_16")
    return root


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The repository's files in a fresh git repository, with nothing beside it (no ../shared)."""
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("needs git and a git checkout to copy")
    files = subprocess.run([git, "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True,
                           check=True).stdout.decode().split("\0")
    root = tmp_path_factory.mktemp("fresh") / "clone"
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    quiet = ["-c", "user.name=test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
    subprocess.run([git, "init", "-q"], cwd=root, check=True)
    subprocess.run([git, *quiet, "add", "-A"], cwd=root, check=True)
    subprocess.run([git, *quiet, "commit", "-qm", "clone"], cwd=root, check=True)
    assert not (root.parent / "shared").exists()
    return root


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("gtzan")
    return {"kaggle": make_kaggle(base / "kaggle"), "marsyas": make_marsyas(base / "marsyas")}


def _env(clone: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GTZAN_DIR", "CODEFEATURE_MODEL_PATH",
                                                            "CODEFEATURE_MODELS", "CODEFEATURE_RUNS")}
    env.update(CODEFEATURE_CACHE=str(clone.parent / "cache"), TF_CPP_MIN_LOG_LEVEL="3", **extra)
    return env


def _run(clone: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=clone, capture_output=True, text=True,
                          env=env or _env(clone), timeout=600)


def _status(clone: Path) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True,
                          check=True).stdout


def test_every_readme_retraining_command_runs_on_both_layouts_without_touching_tracked_files(clone, datasets):
    kaggle, marsyas = str(datasets["kaggle"]), str(datasets["marsyas"])
    assert _status(clone) == ""
    commands = [
        # docs/training.md's commands, in --quick mode, on each layout
        ("training.train", "--model", "cnn_mfcc_small", "--augment", "--gtzan", kaggle, "--quick"),
        ("training.train", "--model", "cnn_mfcc", "--gtzan", marsyas, "--quick"),
        ("training.train", "--model", "ann_features", "--gtzan", kaggle, "--quick"),
        ("training.evaluate", "--model", "runs/cnn_mfcc_small-quick", "--gtzan", marsyas, "--json"),
        ("training.kfold", "--model", "ann_features", "--artists", str(clone.parent / "artists.csv"), "--folds", "2",
         "--gtzan", kaggle, "--quick"),
        # the default model's recipe and the LR head's, each on a few 3.5 s tracks (musicnn embeddings: seconds)
        ("training.train_musicnn_head", "--gtzan", kaggle, "--quick"),
        ("training.train_musicnn_head", "--preset", "lr", "--gtzan", marsyas, "--quick"),
        ("training.decision_thresholds", "--model", "runs/musicnn_genre-quick", "--gtzan", marsyas,
         "--write-manifest"),  # the default recipe's "not sure" step, into the run's manifest
        ("training.retrain_all", "--gtzan", kaggle, "--quick", "--only", "cnn_mfcc_small"),  # one recipe: time
        ("training.compare", "--no-demo"),
    ]
    artists = [f"{t},artist {i // 2}" for i, t in enumerate(_tracks())]  # two tracks an artist
    (clone.parent / "artists.csv").write_text("track,artist\n" + "\n".join(artists) + "\n")
    for module, *args in commands:
        assert f"python -m {module}" in GUIDE, f"docs/training.md no longer shows {module}"
        run = _run(clone, module, *args)
        assert run.returncode == 0, f"{module} {args}:\n{run.stdout[-1500:]}\n{run.stderr[-3000:]}"
        assert _status(clone) == "", f"{module} changed tracked files:\n{_status(clone)}"
    runs = clone / "runs"
    for name in ("cnn_mfcc_small-quick", "cnn_mfcc-quick", "ann_features-quick"):
        assert (runs / name / "manifest.json").is_file(), name
        assert (runs / name / "reports" / "confusion_valid.png").is_file(), name
    # the quick runs used the miniature data through the shipped split lists: 2 train tracks a genre
    import json

    manifest = json.loads((runs / "cnn_mfcc-quick" / "manifest.json").read_text())
    assert manifest["training"]["train_tracks"] == 2 * len(GENRES)
    assert manifest["training"]["splits"]["train"]["file"].endswith("training/splits/train_filtered.txt")
    assert (runs / "cnn_mfcc_small-quick" / "reports" / "evaluate_valid_filtered_audio.json").is_file()
    assert (runs / "compare" / "comparison.md").is_file()
    for name in ("musicnn_genre-quick", "musicnn_genre_lr-quick"):  # the heads' smoke runs, from the shipped lists
        head = json.loads((runs / name / "manifest.json").read_text())
        assert head["training"]["quick"] is True and head["training"]["fit_tracks"] == 2 * len(GENRES), name
        assert head["training"]["splits"]["valid"]["file"].endswith("training/splits/valid_filtered.txt"), name
        assert head["metrics"]["valid"]["tracks"] == len(GENRES), name
    assert "decision" in json.loads((runs / "musicnn_genre-quick" / "manifest.json").read_text())
    assert (runs / "decision" / "musicnn_genre" / "decision.json").is_file()
    assert "genres_original" in " ".join(json.loads((runs / "musicnn_genre-quick" / "manifest.json").read_text())
                                         ["training"]["data"])
    assert (runs / "retrain_all" / "cnn_mfcc_small" / "manifest.json").is_file()

    # promoting is the explicit step that changes models/: a smoke run is refused, a real run installed
    for run_dir in ("runs/cnn_mfcc-quick", "runs/musicnn_genre-quick"):
        refused = _run(clone, "training.promote", run_dir)
        assert refused.returncode == 2 and "smoke run" in refused.stderr, run_dir
    assert _status(clone) == ""
    trained = _run(clone, "training.train", "--model", "cnn_mfcc_small", "--gtzan", marsyas, "--epochs", "1")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert _status(clone) == ""
    promoted = _run(clone, "training.promote", "runs/cnn_mfcc_small")
    assert promoted.returncode == 0, promoted.stderr
    changed = _status(clone)
    assert "models/cnn_mfcc_small/" in changed and "reports/cnn_mfcc_small/" in changed
    assert all(("models/cnn_mfcc_small/" in line or "reports/cnn_mfcc_small/" in line)
               for line in changed.splitlines())
    new = json.loads((clone / "models" / "cnn_mfcc_small" / "manifest.json").read_text())
    assert new["training"]["epochs_run"] == 1


@pytest.mark.parametrize("args", [
    ("training.train", "--model", "cnn_mfcc_small", "--augment"),
    ("training.evaluate", "--model", "musicnn_genre"),
    ("training.retrain_all",),
    ("training.kfold", "--model", "cnn_mfcc", "--artists", "training/splits/README.md"),
    ("training.train", "--model", "cnn_mfcc", "--gtzan", "/no/such/folder"),
    ("training.train_musicnn_head",),
], ids=lambda a: " ".join(a[:3]))
def test_without_data_a_command_says_what_is_missing_and_exits_2(clone, args):
    before = _status(clone)  # the module's clone: an earlier test may have promoted a model in it
    run = _run(clone, *args)
    assert run.returncode == 2, run.stderr[-2000:]
    message = [line for line in run.stderr.splitlines() if line.strip()]
    assert "Traceback" not in run.stderr
    assert len(message) == 1, run.stderr
    assert message[0].startswith("error: ") and "GTZAN" in message[0] and "kaggle.com" in message[0]
    assert "GTZAN_DIR" in message[0] and "--gtzan" in message[0]
    assert _status(clone) == before


def test_gtzan_dir_environment_variable_and_layouts_are_recognised(datasets, tmp_path, monkeypatch):
    from training.datasets import DatasetError, find_gtzan, recognise

    kaggle = find_gtzan(datasets["kaggle"])
    assert kaggle.layout == "kaggle" and kaggle.audio == [datasets["kaggle"] / "Data" / "genres_original"]
    assert kaggle.data_for("csv30") == [datasets["kaggle"] / "Data" / "features_30_sec.csv"]
    assert kaggle.data_for("images") == [datasets["kaggle"] / "Data" / "images_original"]
    assert recognise(datasets["kaggle"] / "Data").layout == "kaggle"  # the zip's Data/ itself
    with pytest.raises(DatasetError, match="features_3_sec.csv"):
        kaggle.data_for("csv3")
    monkeypatch.setenv("GTZAN_DIR", str(datasets["marsyas"]))
    marsyas = find_gtzan()
    assert marsyas.layout == "marsyas" and marsyas.source == "GTZAN_DIR"
    assert recognise(datasets["marsyas"] / "genres").layout == "folders"  # genres/ itself
    with pytest.raises(DatasetError, match="feature table"):
        marsyas.data_for("csv30")
    # the split lists' .wav names select the .au files
    from training.data import TRAIN_SPLIT, find_audio, read_split

    found = find_audio(marsyas.audio)
    assert set(found) & set(read_split(TRAIN_SPLIT))
    assert all(p.suffix == ".au" for paths in found.values() for p in paths)
    monkeypatch.setenv("GTZAN_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match="holds no GTZAN layout"):
        find_gtzan()


def test_the_shared_layout_is_recognised_with_its_feature_table_beside_the_audio(datasets, tmp_path):
    """The project's copy has features_30_sec.csv at its top, as Kaggle's Data/ has: its audio must still be found."""
    from training.datasets import recognise

    root = tmp_path / "gtzan"
    shutil.copytree(datasets["marsyas"] / "genres", root / "genres")
    (root / "excerpts" / "blues").mkdir(parents=True)
    shutil.copy2(datasets["kaggle"] / "Data" / "features_30_sec.csv", root / "features_30_sec.csv")
    found = recognise(root)
    assert found.layout == "shared"
    assert found.data_for("audio") == [root / "genres", root / "excerpts"]
    assert found.data_for("csv30") == [root / "features_30_sec.csv"]
