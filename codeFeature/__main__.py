"""Classify songs from the command line: ``python -m codeFeature SONG [SONG ...]``.

With ``--json``, one JSON object per input file is printed on its own line::

    {"file", "model", "genre", "confidence", "probabilities": {genre: p, ...},
     "segments": [{"start", "end", "genre", "confidence"}, ...], "seconds"}

or ``{"file", "error"}`` for a file that cannot be classified. Every file is tried;
the exit status is 2 if any failed, 0 otherwise. Files are decoded and classified
``--jobs`` at a time (one per core by default); results are printed in input order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .model_io import PRECISIONS  # noqa: E402  (numpy and the config only; TensorFlow loads with a model)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m codeFeature",
        description="Classify the genre of songs, segment by segment (~3 s each), and vote.",
        epilog="Confidence is the winning genre's probability averaged over the segments. "
               "Exit status: 0 if every file was classified, 2 if any failed.")
    parser.add_argument("paths", nargs="*", metavar="PATH", help="audio files (wav, flac, ogg, mp3; more with ffmpeg)")
    parser.add_argument("--model", metavar="NAME_OR_DIR", default=None,
                        help="a shipped model's name or a model folder (default: the shipped default)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per file")
    parser.add_argument("--list-models", action="store_true", help="list the shipped models and exit")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="files classified at once (default: one per CPU core, at most 4)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="compute precision of musicnn's timbral convolutions (default: CODEFEATURE_PRECISION "
                             "or auto: the fastest path measured for this CPU, see --list-models; int8 and "
                             "bfloat16 keep probabilities within ~2e-2 of float32)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .errors import GenreError
    from .model_io import default_model_name, list_models, read_manifest, resolve_model_dir

    if args.list_models:
        default = default_model_name()
        for name in list_models():
            manifest = read_manifest(resolve_model_dir(name))
            valid = manifest.get("metrics", {}).get("valid", {})
            accuracy = f"valid track accuracy {valid['track_accuracy']:.3f} (n={valid['tracks']})" if valid else ""
            mark = "*" if name == default else " "
            print(f"{mark} {name:24s} {manifest.get('task', 'genre'):6s} {accuracy}")
        from .engines import cpu_model, plan

        print(f"inference here ({cpu_model()}): {plan(read_manifest(resolve_model_dir(default))).description}")
        return 0
    if not args.paths:
        build_parser().error("give at least one PATH (or --list-models)")

    from .model_io import load_model
    from .predict import predict_file

    try:
        model = load_model(args.model, precision=args.precision)
    except GenreError as exc:
        for path in args.paths:
            _emit_error(path, str(exc), as_json=args.json)
        return 2
    if model.task != "genre":
        message = f"model {model.name!r} predicts {model.task}, not genres; choose a genre model (--list-models)"
        for path in args.paths:
            _emit_error(path, message, as_json=args.json)
        return 2
    jobs = args.jobs if args.jobs is not None else min(4, os.cpu_count() or 1)
    if jobs < 1:
        build_parser().error("--jobs must be at least 1")

    def classify(path: str):
        """The prediction, or the message to print instead: one odd file must not cost the user the others."""
        try:
            return predict_file(path, model=model)
        except GenreError as exc:
            return str(exc)
        except Exception as exc:
            return f"unexpected error ({type(exc).__name__}: {exc}); please report it"

    failed = 0
    if not args.json:
        print(f"{'file':40s} {'genre':10s} {'confidence':>10s} {'segments':>8s} {'seconds':>8s}")
    # decoding and features release the GIL, so a second file overlaps the first on a second core
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for path, prediction in zip(args.paths, pool.map(classify, args.paths)):
            if isinstance(prediction, str):
                failed += 1
                _emit_error(path, prediction, as_json=args.json)
                continue
            for note in prediction.warnings:
                print(f"warning: {path}: {note}", file=sys.stderr)
            if args.json:
                record = prediction.to_dict()
                record["file"] = path
                print(json.dumps(record), flush=True)
            else:
                print(f"{_short(path, 40):40s} {prediction.genre:10s} {prediction.confidence:10.2f} "
                      f"{len(prediction.probabilities):8d} {prediction.duration:8.1f}", flush=True)
    return 2 if failed else 0


def _emit_error(path: str, message: str, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"file": path, "error": message}), flush=True)
    else:
        print(f"{_short(path, 40):40s} error: {message}", flush=True)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else "..." + text[-(width - 3):]


if __name__ == "__main__":
    sys.exit(main())
