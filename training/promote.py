"""Install a trained run as a shipped model: the one explicit step that changes ``models/``.

Training and evaluation write to ``runs/`` (gitignored); nothing else replaces a shipped model.

    python -m training.promote runs/cnn_mfcc_small                 # replaces models/cnn_mfcc_small
    python -m training.promote runs/cnn_mfcc --name cnn_mfcc_v2    # installs a new model beside it

The run folder's model files (``model.json``, ``model.weights.h5``, ``manifest.json``, ``report.json``, an
``int8/`` folder; not its pictures or ``calibration.json``, which are reports) replace ``models/NAME/`` as a whole (written beside it first, then swapped in, so an interrupted
promote leaves the old model in place); its reports (``RUN_DIR/reports/``, or
``RUN_DIR/../reports/<run>/`` where ``--reports`` put them) replace ``reports/NAME/``. A ``--quick``
smoke run is refused: it is not a model.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from codeFeature.errors import ModelError
from codeFeature.model_io import MODELS_DIR, read_manifest
from training.data import REPO_ROOT, display_path

REPORTS_DIR = REPO_ROOT / "reports"
_MODEL_FILES = ("model.json", "model.weights.h5", "manifest.json")


def run_reports(run_dir: Path) -> Path | None:
    """Where a run's reports are: ``RUN_DIR/reports`` (the default) or ``RUN_DIR/../reports/<run>``."""
    for folder in (run_dir / "reports", run_dir.parent / "reports" / run_dir.name):
        if folder.is_dir():
            return folder
    return None


def _swap_in(source_files: list[Path], dest: Path, *, rename: dict | None = None) -> None:
    """Replace ``dest`` with a folder of ``source_files`` (copied beside it first, then renamed into place)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        for path in source_files:
            if path.is_dir():
                shutil.copytree(path, staging / path.name)
            else:
                shutil.copy2(path, staging / path.name)
        if rename:
            manifest = staging / "manifest.json"
            data = json.loads(manifest.read_text())
            data.update(rename)
            manifest.write_text(json.dumps(data, indent=1) + "\n")
        old = None
        if dest.exists():
            old = dest.with_name(f".{dest.name}-old")
            if old.exists():
                shutil.rmtree(old)
            dest.rename(old)
        staging.rename(dest)
        if old is not None:
            shutil.rmtree(old)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _report_file(path: Path) -> bool:
    """A picture or calibration report a training command leaves beside the model files: it belongs in
    ``reports/`` (installed there from the run's reports), not in the model folder."""
    return path.is_file() and (path.suffix == ".png" or path.name == "calibration.json")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a model folder written by training")
    parser.add_argument("--name", help="the shipped model's name (default: the run's)")
    parser.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="default: models/")
    parser.add_argument("--reports-dir", type=Path, default=REPORTS_DIR, help="default: reports/")
    parser.add_argument("--no-reports", action="store_true", help="install the model only")
    parser.add_argument("--default", action="store_true", help="also make it the app's and CLI's default model")
    args = parser.parse_args(argv)

    run_dir = args.run_dir
    try:
        manifest = read_manifest(run_dir)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    missing = [f for f in _MODEL_FILES if not (run_dir / f).is_file()]
    if missing:
        print(f"error: {run_dir} lacks {', '.join(missing)}; give a model folder written by training", file=sys.stderr)
        return 2
    if manifest.get("training", {}).get("quick"):
        print(f"error: {run_dir} is a --quick smoke run, not a model; train without --quick first", file=sys.stderr)
        return 2
    name = args.name or manifest.get("name") or run_dir.name
    if not name or "/" in name or name.startswith("."):
        print(f"error: {name!r} is not a model name", file=sys.stderr)
        return 2
    files = [p for p in sorted(run_dir.iterdir())
             if p.name != "reports" and not p.name.startswith(".") and not _report_file(p)]
    dest = args.models_dir / name
    replaced = dest.exists()
    _swap_in(files, dest, rename={"name": name} if manifest.get("name") != name else None)
    print(f"{'replaced' if replaced else 'installed'} {display_path(dest)} from {display_path(run_dir)}")
    reports = None if args.no_reports else run_reports(run_dir)
    if reports is not None:
        _swap_in(sorted(reports.iterdir()), args.reports_dir / name)
        print(f"reports: {display_path(args.reports_dir / name)} from {display_path(reports)}")
    if args.default:
        (args.models_dir / "default.txt").write_text(name + "\n")
        print(f"default model: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
