"""Classify songs from the command line: ``python -m codeFeature SONG [SONG ...]``.

With ``--json``, one JSON object per input file is printed on its own line::

    {"file", "model", "genre", "confidence", "probabilities": {genre: p, ...},
     "segments": [{"start", "end", "genre", "confidence"}, ...], "seconds",
     "not_sure", "state", "outside_kind", "sounds_like", "verdict", "reasons",
     "top": [{"genre", "probability"}, ...], "vote_share", "rule"}

``genre`` is the model's best guess even when ``not_sure`` is true; ``verdict`` is what a person
reads ("rock", "not sure: rock or metal", "not one of the ten genres: sounds like electronic, house" or
"not music: sounds like speech"), the table's answer column; ``state`` is "genre", "not_sure" or
"outside", ``outside_kind`` "music" or "not music" when outside (see :mod:`codeFeature.decision`).

or ``{"file", "error"}`` for a file that cannot be classified. Every file is tried;
the exit status is 2 if any failed, 0 otherwise. Files are decoded and classified
``--jobs`` at a time (two more than the cores by default); results are printed in input order.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .runtime import prepare_process  # noqa: E402

# the CLI is an entry point: TensorFlow's and numba's set-up before either starts
prepare_process()

from .model_io import PRECISIONS  # noqa: E402  (numpy and the config only; TensorFlow loads with a model)
from .native_stderr import filtered_native_stderr  # noqa: E402


#: Room for the longest hedged answer, "not sure: classical or country"; a longer "not one of the ten
#: genres: sounds like ..." runs on past it rather than being cut, since its words are the answer.
ANSWER_WIDTH = 30


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m codeFeature",
        description="Classify the genre of songs, segment by segment (~3 s each), and vote.",
        epilog="Confidence is the winning genre's probability averaged over the segments. "
               "Exit status: 0 if every file was classified, 2 if any failed. "
               "Whole music libraries: python -m codeFeature scan ROOT --db library.sqlite "
               "(then export, tag); see python -m codeFeature scan --help.")
    parser.add_argument("paths", nargs="*", metavar="PATH", help="audio files (wav, flac, ogg, mp3; more with ffmpeg)")
    parser.add_argument("--model", metavar="NAME_OR_DIR", default=None,
                        help="a shipped model's name or a model folder (default: the shipped default)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per file")
    parser.add_argument("--list-models", action="store_true",
                        help="list the models (models/, then the folders in CODEFEATURE_MODEL_PATH) and exit")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="files classified at once (default: two more than the CPU cores, at most 8)")
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="compute precision of musicnn's timbral convolutions (default: CODEFEATURE_PRECISION "
                             "or auto: the fastest path measured for this CPU, see --list-models; int8 and "
                             "bfloat16 keep probabilities within ~2e-2 of float32)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("scan", "export", "tag"):  # the music library's subcommands (codeFeature.library)
        from .library.cli import main as library_main
        return library_main(argv)
    args = build_parser().parse_args(argv)
    if args.list_models:
        return list_models_command()
    if not args.paths:
        build_parser().error("give at least one PATH (or --list-models)")
    # TensorFlow's start-up banners and mpg123's notes about odd mp3 frames are written by native code
    # straight to stderr; the user sees neither (warnings in words come from the decoder itself)
    with filtered_native_stderr():
        return classify_command(args)


def list_models_command() -> int:
    """``--list-models``: every model the CLI can load by name, the default marked; no TensorFlow."""
    from .errors import ConfigError, ModelError
    from .model_io import MODELS_DIR, default_model_name, model_locations, read_manifest

    from .engines import cpu_model, plan

    default = default_model_name()
    for name, folder in model_locations().items():
        where = "" if folder.parent == MODELS_DIR else f"  ({folder.parent})"  # from CODEFEATURE_MODEL_PATH
        mark = "*" if name == default else " "
        try:
            manifest = read_manifest(folder)
        except ModelError as exc:
            print(f"{mark} {name:24s} unreadable: {exc}{where}")
            continue
        valid = manifest.get("metrics", {}).get("valid", {})
        accuracy = f"valid track accuracy {valid['track_accuracy']:.3f} (n={valid['tracks']})" if valid else ""
        try:
            chosen = plan(manifest)
            path = f"{chosen.engine} {chosen.precision}"
        except ConfigError as exc:  # CODEFEATURE_ENGINE / _PRECISION asks for what this model cannot do here
            path = f"cannot run here: {exc}"
        print(f"{mark} {name:24s} {manifest.get('task', 'genre'):6s} {path:20s} {accuracy}{where}")
    default_folder = model_locations().get(default)
    if default_folder is not None:
        try:
            print(f"inference here ({cpu_model()}): {plan(read_manifest(default_folder)).description}")
        except (ConfigError, ModelError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    return 0


def import_tensorflow_quietly() -> None:
    """Import TensorFlow with its native start-up banners filtered out (for callers outside :func:`main`)."""
    with filtered_native_stderr():
        import tensorflow  # noqa: F401


def classify_command(args: argparse.Namespace) -> int:
    """Classify ``args.paths``: a table (or JSON lines) on stdout, in input order."""
    from .errors import GenreError
    from .model_io import load_model
    from .predict import default_jobs, predict_file

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
    jobs = args.jobs if args.jobs is not None else default_jobs()
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
    names = display_names(args.paths)
    width = max([len("file"), *map(len, names)])
    notes: list[str] = []  # the table's warnings, printed after it so that its rows stay together
    if not args.json:
        print(f"{'file':{width}s} {'answer':{ANSWER_WIDTH}s} {'confidence':>10s} {'segments':>8s} {'seconds':>8s}")
    # decoding and features release the GIL, so a second file overlaps the first on a second core
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for path, name, prediction in zip(args.paths, names, pool.map(classify, args.paths)):
            if isinstance(prediction, str):
                failed += 1
                if args.json:
                    _emit_error(path, prediction, as_json=True)
                else:
                    print(f"{name:{width}s} error: {prediction}", flush=True)
                continue
            if args.json:
                for note in prediction.warnings:
                    print(f"warning: {path}: {note}", file=sys.stderr)
                record = prediction.to_dict()
                record["file"] = path
                print(json.dumps(record), flush=True)
            else:
                notes += [f"warning: {name}: {note}" for note in prediction.warnings]
                print(f"{name:{width}s} {prediction.verdict.headline:{ANSWER_WIDTH}s} {prediction.confidence:10.2f} "
                      f"{len(prediction.probabilities):8d} {prediction.duration:8.1f}", flush=True)
    for note in notes:
        print(note, file=sys.stderr)
    return 2 if failed else 0


def _emit_error(path: str, message: str, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"file": path, "error": message}), flush=True)
    else:
        print(f"{display_names([path])[0]} error: {message}", flush=True)


#: Widest file name the table shows; longer names are shortened in the middle, keeping both ends.
NAME_WIDTH = 48


def display_names(paths: list[str], width: int = NAME_WIDTH) -> list[str]:
    """Names a person recognises in the table: each file's name, with as many parent folders as it
    takes to tell files of the same name apart, shortened in the middle past ``width``."""
    parts = [Path(p).parts or (str(p),) for p in paths]
    depth = [1] * len(paths)
    while True:
        shown = ["/".join(pp[-d:]) for pp, d in zip(parts, depth)]
        clashes = {name for name in shown if shown.count(name) > 1}
        grow = [i for i, name in enumerate(shown) if name in clashes and depth[i] < len(parts[i])]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    return [_middle(name, width) for name in shown]


def _middle(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    tail = max(width // 2 - 1, 1)
    return text[: width - tail - 1] + "\u2026" + text[-tail:]


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # skip the interpreter's teardown: with TensorFlow loaded it joins thread pools and frees the graph for
    # seconds (bench/bench_cold.py) and has nothing left to save; the output is flushed above
    os._exit(status)
