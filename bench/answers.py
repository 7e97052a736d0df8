"""The same song, the same answer: every surface's answers for a folder of songs, recorded and compared.

    python -m bench.answers record FOLDER --out answers.json [--model NAME ...]
    python -m bench.answers compare FOLDER --reference answers.json

For each audio file in FOLDER (not recursive) and each model, the answer through each surface a person
uses: a path (``predict_file``), the file's bytes (``predict_file`` on bytes), the app (its upload decoding,
then ``predict_audio``), the command line (``python -m codeFeature --json``) and a collection scan (its
database row). ``record`` checks that the surfaces agree with each other and writes the answers;
``compare`` does the same and then checks them against a recording made earlier, e.g. before a refactor:
bit for bit when the recording was made on the same kind of CPU with the same inference path, else within
a tolerance that float32 summation orders stay inside, with every verdict's words identical.

Exit status 0 when everything agrees, 1 otherwise (each difference is printed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: Surfaces compared at full precision (the same process, float32 arrays).
EXACT_SURFACES = ("path", "bytes", "app")
#: Across CPUs (other kernels, other summation orders), probabilities may move this much.
ACROSS_MACHINES = 2e-3


def audio_files(folder: Path) -> list[Path]:
    from codeFeature import SUPPORTED_EXTENSIONS

    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS)


def _summary(prediction) -> dict:
    verdict = prediction.verdict.to_dict()
    return {"genre": prediction.genre, "verdict": verdict.get("verdict"), "state": verdict.get("state"),
            "not_sure": bool(prediction.not_sure), "labels": list(prediction.labels),
            "mean": [float(p) for p in np.asarray(prediction.mean_probabilities, np.float64)],
            "segments": int(len(prediction.probabilities))}


def in_process(files: list[Path], model_name: str,
               precision: Optional[str] = None) -> tuple[dict[str, dict[str, dict]], str]:
    """Each file's path, bytes and app answers, and the inference path they ran on (CPU level, engine,
    precision: bit-for-bit comparisons need the same)."""
    from codeFeature import load_model, predict_audio, predict_file
    from webapp.uploads import decode_upload  # the app's own upload decoding

    model = load_model(model_name, precision=precision)
    out: dict[str, dict[str, dict]] = {}
    for path in files:
        data = path.read_bytes()
        by_path = predict_file(path, model=model)
        by_bytes = predict_file(data, model=model, filename=path.name)
        decoded = decode_upload(data, path.name, sample_rate=model.config.sample_rate)
        by_app = predict_audio(decoded.samples, model=model, file=path.name, warnings=decoded.warnings)
        out[path.name] = {"path": _summary(by_path), "bytes": _summary(by_bytes), "app": _summary(by_app)}
    return out, model.inference_path


def by_cli(files: list[Path], model_name: str, precision: Optional[str] = None) -> dict[str, dict]:
    run = subprocess.run([sys.executable, "-m", "codeFeature", "--json", "--model", model_name,
                          *_precision_option(precision), *map(str, files)], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    out = {}
    for line in run.stdout.splitlines():
        row = json.loads(line)
        if "error" in row:
            out[Path(row["file"]).name] = {"error": row["error"]}
            continue
        out[Path(row["file"]).name] = {"genre": row["genre"], "verdict": row.get("verdict"),
                                       "state": row.get("state"), "not_sure": bool(row.get("not_sure")),
                                       "labels": list(row["probabilities"]),
                                       "mean": [float(v) for v in row["probabilities"].values()],
                                       "segments": len(row["segments"])}
    return out


def by_scan(folder: Path, model_name: str, precision: Optional[str] = None) -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "answers.sqlite"
        subprocess.run([sys.executable, "-m", "codeFeature", "scan", str(folder), "--db", str(db),
                        "--model", model_name, *_precision_option(precision)], cwd=ROOT, capture_output=True, text=True, timeout=3600,
                       check=False)
        con = sqlite3.connect(db)
        con.row_factory = sqlite3.Row
        rows = con.execute("SELECT * FROM results").fetchall()
        con.close()
    out = {}
    for row in rows:
        name = Path(row["path_text"]).name
        if row["status"] != "ok":
            out[name] = {"error": row["error"]}
            continue
        probabilities = json.loads(row["probabilities"])
        labels = json.loads(row["labels"])
        keys = row.keys()
        out[name] = {"genre": row["genre"], "verdict": row["verdict"],
                     "state": row["state"] if "state" in keys else None, "not_sure": bool(row["not_sure"]),
                     "labels": labels,
                     "mean": [float(v) for v in (probabilities.values() if isinstance(probabilities, dict)
                                                  else probabilities)],
                     "segments": int(row["n_segments"])}
    return out


def _precision_option(precision: Optional[str]) -> list[str]:
    return [] if precision is None else ["--precision", precision]


def model_hash(model_name: str) -> str:
    from codeFeature.model_io import resolve_model_dir

    folder = Path(resolve_model_dir(model_name))
    digest = hashlib.sha256()
    for name in sorted(p.name for p in folder.iterdir() if p.suffix in (".json", ".h5", ".keras")
                       and p.name != "manifest.json"):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:16]


def disagreements(answers: dict, *, tolerance: float = 0.0, rounded: Optional[int] = None) -> list[str]:
    """Where the surfaces of one recording disagree with its path answer."""
    problems = []
    for name, surfaces in answers.items():
        reference = surfaces["path"]
        for surface, answer in surfaces.items():
            if surface == "path":
                continue
            problems += _differences(f"{name} [{surface} vs path]", reference, answer,
                                     tolerance=tolerance, rounded=None if surface in EXACT_SURFACES else 4)
    return problems


def _differences(where: str, a: dict, b: dict, *, tolerance: float, rounded: Optional[int]) -> list[str]:
    if "error" in a or "error" in b:
        return [] if a.get("error") == b.get("error") else [f"{where}: error {a.get('error')!r} vs {b.get('error')!r}"]
    problems = []
    for key in ("genre", "verdict", "state", "not_sure", "labels", "segments"):
        if a.get(key) is None or b.get(key) is None:  # a surface that does not carry it (an older database)
            continue
        if a[key] != b[key]:
            problems.append(f"{where}: {key} {a[key]!r} vs {b[key]!r}")
    left, right = np.asarray(a["mean"]), np.asarray(b["mean"])
    if rounded is not None:
        left, right = np.round(left, rounded), np.round(right, rounded)
        allowed = max(tolerance, 10.0 ** -rounded * 1.01)
    else:
        allowed = tolerance
    if left.shape != right.shape:
        problems.append(f"{where}: {left.shape} probabilities vs {right.shape}")
    elif np.max(np.abs(left - right), initial=0.0) > allowed:
        problems.append(f"{where}: probabilities differ by {np.max(np.abs(left - right)):.3g} (allowed {allowed:g})")
    return problems


def make_songs(folder: Path, seconds: float = 12.0, rate: int = 22050) -> list[Path]:
    """Three short songs made of numbers alone (a seeded generator, 16-bit wav), the same on every
    machine: a plucked-string melody over a kick, a noisy drum loop, and sustained chords."""
    import soundfile as sf

    rng = np.random.default_rng(20261207)
    t = np.arange(int(seconds * rate)) / rate
    beat = 0.5
    kick = np.where((t % beat) < 0.12, np.sin(2 * np.pi * 55 * t) * np.exp(-(t % beat) * 30), 0.0)
    notes = 220.0 * 2 ** (rng.integers(0, 12, size=int(seconds / beat) + 1) / 12)
    pluck = np.sin(2 * np.pi * notes[(t // beat).astype(int)] * t) * np.exp(-(t % beat) * 6)
    hats = rng.normal(0, 1, t.size) * np.exp(-(t % (beat / 2)) * 60)
    chords = sum(np.sin(2 * np.pi * f * t) for f in (261.63, 329.63, 392.0)) * (0.6 + 0.4 * np.sin(0.5 * t))
    songs = {"pluck_and_kick.wav": 0.4 * pluck + 0.5 * kick,
             "drum_loop.wav": 0.6 * kick + 0.15 * hats + 0.1 * rng.normal(0, 1, t.size) * (t % 1 < 0.05),
             "chords.wav": 0.2 * chords}
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, signal in songs.items():
        path = folder / name
        sf.write(path, np.clip(signal, -1, 1).astype(np.float32), rate, subtype="PCM_16")
        written.append(path)
    return written


def record(folder: Path, models: Iterable[str], precision: Optional[str] = None) -> dict:
    files = audio_files(folder)
    result = {"folder": str(folder), "files": {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:16]
                                               for p in files}, "precision": precision, "models": {}}
    for model_name in models:
        answers, machine = in_process(files, model_name, precision)
        for surface, found in (("cli", by_cli(files, model_name, precision)),
                               ("scan", by_scan(folder, model_name, precision))):
            for name in answers:
                answers[name][surface] = found.get(name, {"error": f"no {surface} answer"})
        result["models"][model_name] = {"machine": machine, "model_hash": model_hash(model_name),
                                        "answers": answers}
    return result


def compare(now: dict, before: dict) -> list[str]:
    problems = []
    for model_name, entry in now["models"].items():
        problems += disagreements(entry["answers"])
        old = before["models"].get(model_name)
        if old is None:
            continue
        if old["model_hash"] != entry["model_hash"]:
            problems.append(f"{model_name}: the model's files changed since the recording "
                            f"({old['model_hash']} -> {entry['model_hash']}); record again to compare")
            continue
        exact = old["machine"] == entry["machine"]
        for name, surfaces in entry["answers"].items():
            if before["files"].get(name) != now["files"].get(name):
                continue
            old_surfaces = old["answers"].get(name, {})
            for surface, answer in surfaces.items():
                if surface not in old_surfaces:
                    continue
                problems += _differences(f"{model_name}: {name} [{surface}: now vs recorded]", old_surfaces[surface],
                                         answer, tolerance=0.0 if exact else ACROSS_MACHINES,
                                         rounded=None if surface in EXACT_SURFACES else 4)
    return problems


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.answers", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="record every surface's answers for a folder's songs")
    rec.add_argument("folder", type=Path)
    rec.add_argument("--out", type=Path, required=True)
    rec.add_argument("--model", action="append", help="model name or folder (repeatable; default: the default)")
    rec.add_argument("--precision", choices=("auto", "float32", "bfloat16", "int8"),
                     help="every surface's precision (default: each surface's own default, i.e. auto)")
    songs = sub.add_parser("make-songs", help="write the deterministic synthetic songs the tests compare")
    songs.add_argument("folder", type=Path)
    cmp_ = sub.add_parser("compare", help="record again and compare with an earlier recording")
    cmp_.add_argument("folder", type=Path)
    cmp_.add_argument("--reference", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "make-songs":
        for path in make_songs(args.folder):
            print(path)
        return 0
    if args.command == "record":
        from codeFeature import default_model_name

        now = record(args.folder, args.model or [default_model_name()], args.precision)
        args.out.write_text(json.dumps(now, indent=1) + "\n")
        problems = [p for entry in now["models"].values() for p in disagreements(entry["answers"])]
    else:
        before = json.loads(args.reference.read_text())
        now = record(args.folder, list(before["models"]), before.get("precision"))
        problems = compare(now, before)
    for problem in problems:
        print(problem)
    counted = sum(len(entry["answers"]) for entry in now["models"].values())
    print(f"{counted} answers ({', '.join(now['models'])}): "
          + ("every surface agrees" + (" and matches the recording" if args.command == "compare" else "")
             if not problems else f"{len(problems)} differences"))
    return 0 if not problems else 1


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
