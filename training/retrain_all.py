"""Retrain every shipped genre model with the command its manifest records, in one go.

    python -m training.retrain_all --gtzan ~/gtzan             # writes runs/retrain_all/<model>/
    python -m training.retrain_all --out-root /tmp/rt          # writes elsewhere
    python -m training.retrain_all --dry-run                   # only print the commands

Nothing under ``models/`` or ``reports/`` changes: each model goes to ``OUT_ROOT/<model>/`` and its
reports to ``OUT_ROOT/reports/<model>/`` (``OUT_ROOT`` defaults to ``runs/retrain_all``); ship one with
``python -m training.promote OUT_ROOT/<model>``. The dataset is found as by ``training.train``
(``--gtzan DIR``, else ``GTZAN_DIR``); it is handed to every command as ``GTZAN_DIR``.
Features are cached (``.cache/features``), so a second run skips extraction.
Prints each model's valid figures and the time it took.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from codeFeature.model_io import MODELS_DIR, list_models, read_manifest, resolve_model_dir
from training.data import REPO_ROOT, RUNS_DIR
from training.datasets import GTZAN_ENV, add_gtzan_argument, exit_on_missing_data, find_gtzan


#: Options a command needs beyond --out/--reports to write its reports into OUT_ROOT/reports/<model>/, where
#: training.promote finds them (train_musicnn_head writes its calibration report there only when asked).
REPORT_OPTIONS = {"training.train_musicnn_head": ["--write-report"]}


def commands(out_root: Path | None) -> list[tuple[str, list[str]]]:
    """(model name, argv) for every shipped genre model, from its manifest's ``reproduce``.

    ``out_root`` ``None`` means ``runs/retrain_all``: a retrain never writes into ``models/``.
    """
    out_root = Path(out_root) if out_root is not None else RUNS_DIR / "retrain_all"
    result = []
    for name in list_models(models_dir=MODELS_DIR, task="genre"):  # the shipped ones, not CODEFEATURE_MODEL_PATH's
        manifest = read_manifest(resolve_model_dir(name, models_dir=MODELS_DIR))
        argv = shlex.split(manifest["reproduce"])
        if argv[:2] != ["python", "-m"]:
            raise SystemExit(f"{name}: cannot run its reproduce command {manifest['reproduce']!r}")
        argv = [sys.executable, *argv[1:], "--out", str(out_root / name), "--reports", str(out_root / "reports"),
                *REPORT_OPTIONS.get(argv[2], [])]
        result.append((name, argv))
    return result


def _accepts_quick(command: list[str]) -> bool:
    """Whether the module ``command`` runs documents a ``--quick`` option (asked once per module)."""
    module = command[2]
    if module not in _QUICK:
        help_text = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO_ROOT, capture_output=True,
                                   text=True).stdout
        _QUICK[module] = "--quick" in help_text
    return _QUICK[module]


_QUICK: dict[str, bool] = {}


@exit_on_missing_data
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_gtzan_argument(parser)
    parser.add_argument("--out-root", type=Path, help="write the models here (default: runs/retrain_all)")
    parser.add_argument("--quick", action="store_true",
                        help="pass --quick to every command: a 2-epoch smoke run of each recipe")
    parser.add_argument("--only", nargs="+", metavar="MODEL", help="retrain only these shipped models")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if not args.dry_run:
        env[GTZAN_ENV] = str(find_gtzan(args.gtzan).root)  # fail here, once, if there is no dataset
    summary, started = [], time.perf_counter()
    out_root = args.out_root if args.out_root is not None else RUNS_DIR / "retrain_all"
    selected = commands(out_root)
    if args.only:
        unknown = sorted(set(args.only) - {name for name, _ in selected})
        if unknown:
            parser.error(f"not shipped genre models: {', '.join(unknown)}")
        selected = [(name, command) for name, command in selected if name in args.only]
    for name, command in selected:
        if args.quick and not _accepts_quick(command):
            print(f"{name}: skipped, {command[2]} has no --quick smoke run", flush=True)
            continue
        if args.quick:
            command.append("--quick")
        print("$", " ".join(shlex.quote(c) for c in command), flush=True)
        if args.dry_run:
            continue
        t0 = time.perf_counter()
        run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=env)
        if run.returncode != 0:
            last = run.stderr.strip().splitlines()[-1:] or [""]
            if run.returncode == 2 and last[0].startswith("error:"):  # the command's own plain message
                print(f"{name}: {last[0]}", file=sys.stderr)
                return 2
            print(run.stdout[-2000:], run.stderr[-4000:], sep="\n", file=sys.stderr)
            raise SystemExit(f"{name}: training failed with exit code {run.returncode}")
        valid = read_manifest(out_root / name)["metrics"]["valid"]
        summary.append({"model": name, "valid": valid, "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(summary[-1]), flush=True)
    if not args.dry_run:
        print(json.dumps({"models": len(summary), "total_seconds": round(time.perf_counter() - started, 1),
                          "out_root": str(out_root)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
