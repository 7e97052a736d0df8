"""Retrain every shipped genre model with the command its manifest records, in one go.

    python -m training.retrain_all                       # rebuild models/ in place
    python -m training.retrain_all --out-root /tmp/rt    # rebuild elsewhere, leaving models/ alone
    python -m training.retrain_all --dry-run             # only print the commands

Features are cached (``.cache/features``), so a second run skips extraction.
Prints each model's valid figures and the time it took.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from codeFeature.model_io import list_models, read_manifest, resolve_model_dir
from training.data import REPO_ROOT


def commands(out_root: Path | None) -> list[tuple[str, list[str]]]:
    """(model name, argv) for every shipped genre model, from its manifest's ``reproduce``."""
    result = []
    for name in list_models(task="genre"):
        manifest = read_manifest(resolve_model_dir(name))
        argv = shlex.split(manifest["reproduce"])
        if argv[:2] != ["python", "-m"]:
            raise SystemExit(f"{name}: cannot run its reproduce command {manifest['reproduce']!r}")
        argv = [sys.executable, *argv[1:]]
        if out_root is not None:
            argv += ["--out", str(out_root / name), "--reports", str(out_root / "reports")]
        result.append((name, argv))
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-root", type=Path, help="write the models here instead of models/")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    summary, started = [], time.perf_counter()
    for name, command in commands(args.out_root):
        print("$", " ".join(shlex.quote(c) for c in command), flush=True)
        if args.dry_run:
            continue
        t0 = time.perf_counter()
        run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
        if run.returncode != 0:
            print(run.stdout[-2000:], run.stderr[-4000:], sep="\n", file=sys.stderr)
            raise SystemExit(f"{name}: training failed with exit code {run.returncode}")
        folder = (args.out_root / name) if args.out_root else resolve_model_dir(name)
        valid = read_manifest(folder)["metrics"]["valid"]
        summary.append({"model": name, "valid": valid, "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(summary[-1]), flush=True)
    if not args.dry_run:
        print(json.dumps({"models": len(summary), "total_seconds": round(time.perf_counter() - started, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
