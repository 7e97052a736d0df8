"""Measure a musicnn model folder's int8 calibration: what its heavy convolutions read, on the train split.

The int8 path (``--precision int8``, and ``auto`` where valid judged it) rounds the front end's
convolutions' kernels (timbral and temporal) by GPTQ against the second moments of their input patches
(:mod:`codeFeature.quantise`). This command measures those moments on the train split's segments and
writes them into the folder (``int8/<layer>.npy``, named in the manifest's ``int8_calibration``)::

    python -m training.int8_calibration runs/musicnn_genre              # a run folder (--gtzan DIR as usual)
    python -m training.int8_calibration models/musicnn_genre --write-shipped
    python -m training.int8_calibration models/musicnn_genre --write-shipped --check-only   # judge what is there

``python -m training.train_musicnn_head`` runs it on the folders it writes, so a retrained model carries
its calibration, its verdicts judged on the train-only twin (valid held out; ``judged_on``). Run here on a
refit such as the shipped default, the verdicts are the refit's own, on valid that it was fitted on: to compare,
use ``--check-only`` on a copy rather than rewriting ``models/``. The moments come from the train split only. Valid then judges them: the int8 path runs
automatically (``auto``) only where it keeps valid's answers as issue 14 asks (:func:`check_on_valid`: the
same track accuracy as float32, segment accuracy within :data:`MAX_SEGMENT_POINTS` point). Where all the
heavy convolutions in int8 miss that, the timbral ones alone are tried; where they miss it too, ``auto``
keeps the folder off int8, and ``--precision int8`` still runs it when asked. The figures and the verdict
are the manifest's ``int8_calibration.valid_check`` (``input_bits: 8``). CPUs without AVX-512 VNNI run the
int8 input with 7-bit codes (:func:`codeFeature.engines.int8_input_codes`), so the kept layers are judged
again that way, as an AVX2 CPU computes them (:func:`check_7_bits`): ``valid_check_7bit`` (``input_bits:
7``) passes only where no valid track's verdict moves, and ``auto`` runs int8 on those CPUs only then.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from training.data import TRAIN_SPLIT, VALID_SPLIT, display_path, file_sha256, load_set, read_split
from training.datasets import add_gtzan_argument, audio_data, exit_on_missing_data

log = logging.getLogger("training.int8_calibration")


#: Fewest kernel taps of a convolution the int8 path takes. musicnn's 32-tap temporal convolution
#: does 2 % of the front end's multiply-adds; in int8 it changed 3 of GTZAN valid's 253 segments and
#: 2 of its 98 tracks (the timbral and the 64- and 128-tap temporal convolutions in int8 changed none),
#: so it stays in float32.
MIN_INT8_TAPS = 64

#: How far int8 may move valid's segment accuracy (percentage points) and still run automatically; the
#: track accuracy must not move at all (issue 14's terms).
MAX_SEGMENT_POINTS = 0.5


def heavy_convolutions(keras_model, manifest: dict) -> list[str]:
    """The convolutions the int8 path runs in int8: the single-input-channel ``Conv2D`` layers with at
    least :data:`MIN_INT8_TAPS` taps (musicnn's timbral convolutions and its 64- and 128-tap temporal
    ones), the manifest's ``bfloat16_layers`` first."""
    listed = [name for name in manifest.get("bfloat16_layers", []) if _single_channel_conv(keras_model, name)]
    others = [layer.name for layer in keras_model.layers
              if layer.name not in listed and _single_channel_conv(keras_model, layer.name)]
    return listed + others


def _single_channel_conv(keras_model, name: str) -> bool:
    try:
        layer = keras_model.get_layer(name)
    except ValueError:
        return False
    kernel = getattr(layer, "kernel", None)
    return (type(layer).__name__ == "Conv2D" and int(kernel.shape[2]) == 1
            and int(kernel.shape[0]) * int(kernel.shape[1]) >= MIN_INT8_TAPS)


def _same_padding(inputs: np.ndarray, kernel_size: tuple[int, int]) -> np.ndarray:
    """``inputs`` (n, rows, cols, 1) padded as Keras's ``padding="same"`` pads them (the extra row or
    column after)."""
    pads = [(0, 0)] + [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_size] + [(0, 0)]
    return np.pad(inputs, pads)


def measure(folder: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """The second moments of what ``folder``'s heavy convolutions read when its model is given ``x``
    (their input as the kernel sees it: ``padding="same"`` included).

    Raises
    ------
    ValueError
        If the folder's model has no heavy convolution to calibrate.
    """
    from codeFeature.model_io import load_model
    from codeFeature.quantise import conv_inputs, patch_moments

    model = load_model(folder, precision="float32", engine="tensorflow")
    layers = heavy_convolutions(model.keras_model, model.manifest)
    if not layers:
        raise ValueError(f"{folder} has no single-channel Conv2D of {MIN_INT8_TAPS} taps or more: nothing to calibrate")
    moments = {}
    for name in layers:
        layer = model.keras_model.get_layer(name)
        size = (int(layer.kernel.shape[0]), int(layer.kernel.shape[1]))
        inputs = conv_inputs(model.keras_model, name, x)
        if layer.padding == "same":
            inputs = _same_padding(inputs, size)
        moments[name] = patch_moments(inputs, size)
    return moments


def write_entry(folder: Path, moments: dict[str, np.ndarray], *, segments: int, data_note: str,
                valid_check: dict | None = None, valid_check_7bit: dict | None = None) -> dict:
    """Write ``moments`` into ``folder`` (and remove the folder's other calibration files) and name them in
    its manifest's ``int8_calibration``, with ``valid_check`` (8-bit input codes) and ``valid_check_7bit``
    where given; returns that entry."""
    from codeFeature.model_io import MANIFEST_FILE
    from codeFeature.quantise import CALIBRATION_DIR, DAMP, write_calibration

    layers = write_calibration(folder, moments)
    for stale in sorted((Path(folder) / CALIBRATION_DIR).glob("*.npy")):
        if f"{CALIBRATION_DIR}/{stale.name}" not in layers.values():
            stale.unlink()
    entry = {
        "layers": layers,
        "statistic": "E[p p^T] over every input patch p of the layer (after the input batch norm and the time "
                     "padding), float32; the int8 kernels are rounded by GPTQ against it at load time "
                     "(codeFeature.quantise.gptq_round)",
        "damp": DAMP,
        "segments": int(segments),
        "data": data_note,
        "reproduce": f"python -m training.int8_calibration {display_path(folder)}"
                     + (" --write-shipped" if _shipped(folder) else ""),
    }
    if valid_check is not None:
        entry["valid_check"] = valid_check
    if valid_check_7bit is not None:
        entry["valid_check_7bit"] = valid_check_7bit
    path = Path(folder) / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["int8_calibration"] = entry
    path.write_text(json.dumps(manifest, indent=2) + "\n")  # as save_model writes it
    return entry


def calibrate(folder: Path, x: np.ndarray, *, data_note: str) -> dict:
    """Measure (:func:`measure`) and write (:func:`write_entry`) ``folder``'s int8 calibration from model
    inputs ``x`` (train segments); returns the manifest entry."""
    return write_entry(folder, measure(folder, x), segments=len(x), data_note=data_note)


def keeps_valid_answers(reference: dict, got: dict) -> bool:
    """Whether scores ``got`` (int8) keep ``reference``'s (float32): the same track accuracy, and segment
    accuracy within :data:`MAX_SEGMENT_POINTS` point."""
    return (round(got["track_accuracy"], 4) == round(reference["track_accuracy"], 4)
            and abs(got["segment_accuracy"] - reference["segment_accuracy"]) * 100 <= MAX_SEGMENT_POINTS + 1e-9)


def _valid_scores(folder: Path, precision: str, data, split: Path) -> dict:
    """Track and segment accuracy of ``folder`` on ``split`` through ``precision``'s serving path. A tagger
    (task ``tags``) answers with tags, not genres: its "accuracy" is agreement with its own float32 top tag
    (segments) and vote (tracks), so float32 scores 1.0 and int8 is judged by how many answers it moves."""
    from codeFeature.model_io import load_model
    from training.evaluate import evaluate
    from training.metrics import track_votes

    if precision == INT8_7BIT:
        return _scores_at_7_bits(folder, data, split)
    engine = "openvino" if precision == "int8" else "tensorflow"
    model = load_model(folder, precision=precision, engine=engine)
    if model.manifest.get("task", "genre") != "tags":
        result = evaluate(model, data, split=split)
        return {**{k: result[k] for k in ("track_accuracy", "tracks", "segment_accuracy", "segments")},
                "predictions": result["predictions"]}
    dataset = load_set(data, read_split(split), model.config)
    probs = model.forward(dataset.x)[0]
    exact = probs if precision == "float32" else load_model(folder, precision="float32",
                                                            engine="tensorflow").forward(dataset.x)[0]
    _, votes, ids = track_votes(probs, dataset.y, dataset.tracks)
    _, exact_votes, _ = track_votes(exact, dataset.y, dataset.tracks)
    return {"track_accuracy": round(float(np.mean(votes == exact_votes)), 4), "tracks": len(ids),
            "segment_accuracy": round(float(np.mean(probs.argmax(1) == exact.argmax(1))), 4),
            "segments": int(len(probs)), "measure": "agreement with float32's top tags",
            "predictions": {track: int(vote) for track, vote in zip(ids, votes)}}


#: ``precision`` of :func:`_valid_scores` for the int8 path with 7-bit input codes, as CPUs without VNNI run it.
INT8_7BIT = "int8_7bit"

_SCORE_AT_7_BITS = """
import json, sys
from pathlib import Path
from training.int8_calibration import _valid_scores
folder, data, split = json.loads(sys.argv[1])
print(json.dumps(_valid_scores(Path(folder), "int8", [Path(p) for p in data], Path(split))))
"""


def _scores_at_7_bits(folder: Path, data, split: Path) -> dict:
    """:func:`_valid_scores` of the int8 path with 7-bit input codes, as an AVX2 CPU runs it.

    A child process computes them under ``ONEDNN_MAX_CPU_ISA=AVX2``: there the level is ``avx2``, so the
    int8 input has 127 codes (:func:`codeFeature.engines.int8_input_codes`), and the convolutions run
    oneDNN's AVX2 int8 kernels (``vpmaddubsw``) on any newer CPU. The cap must be set before OpenVINO
    first asks oneDNN for the CPU's features, which is why it is a new process. The 7-bit sums are exact
    at every level (``python -m bench.int8_exactness``), so a VNNI CPU's 7-bit answers are the same."""
    import os
    import subprocess

    from training.data import REPO_ROOT

    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    argument = json.dumps([str(folder), [str(p) for p in data], str(split)])
    done = subprocess.run([sys.executable, "-c", _SCORE_AT_7_BITS, argument], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the 7-bit int8 scores could not be computed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def changed_tracks(reference: dict, got: dict) -> list[str] | None:
    """The tracks whose verdict ``got`` moves from ``reference``'s (``None`` where a score has no verdicts)."""
    if "predictions" not in reference or "predictions" not in got:
        return None
    return sorted(track for track, answer in reference["predictions"].items()
                  if got["predictions"].get(track) != answer)


def check_on_valid(folder: Path, data, split: Path = VALID_SPLIT, *, score=_valid_scores,
                   seven_bits: bool = True) -> dict:
    """Judge ``folder``'s int8 calibration on ``split`` (valid) and keep the layers that pass.

    The calibrated layers are tried all together, then only the manifest's ``bfloat16_layers`` (the
    timbral convolutions); the first set whose int8 scores :func:`keeps_valid_answers` stays in the folder.
    Where none does, the last one tried stays and ``passed`` is false, which keeps ``auto`` off int8
    (:func:`codeFeature.engines.plan`). ``score(folder, precision, data, split)`` gives the scores
    (``training.evaluate`` through the serving path; replaced in tests). The layers kept are then judged
    with 7-bit input codes too (:func:`check_7_bits`, ``seven_bits``), the manifest's ``valid_check_7bit``.
    Returns the manifest's new entry.
    """
    from codeFeature.model_io import read_manifest
    from codeFeature.quantise import read_calibration

    manifest = read_manifest(folder)
    entry = manifest["int8_calibration"]
    moments = read_calibration(folder, manifest)
    candidates = [sorted(moments)]
    timbral = sorted(name for name in moments if name in manifest.get("bfloat16_layers", []))
    if timbral and timbral != candidates[0]:
        candidates.append(timbral)
    reference = score(folder, "float32", data, split)
    tried, passed = [], False
    for layers in candidates:
        write_entry(folder, {name: moments[name] for name in layers}, segments=entry["segments"],
                    data_note=entry["data"])
        got = score(folder, "int8", data, split)
        passed = keeps_valid_answers(reference, got)
        tried.append({"layers": layers, **_figures(got), "tracks_changed": changed_tracks(reference, got),
                      "passed": passed})
        log.info("%s: int8 of %s on %s: tracks %.4f (float32 %.4f), segments %.4f (float32 %.4f): %s",
                 display_path(folder), ", ".join(layers), display_path(split), got["track_accuracy"],
                 reference["track_accuracy"], got["segment_accuracy"], reference["segment_accuracy"],
                 "kept" if passed else "misses")
        if passed:
            break
    split_entry = {"file": str(display_path(split)), "sha256": file_sha256(split)}
    figures = _figures(reference)
    check = {"input_bits": 8, "split": split_entry, "float32": figures, "tried": tried, "passed": passed,
             "criterion": f"track accuracy as float32's, segment accuracy within {MAX_SEGMENT_POINTS} point; "
                          "auto runs int8 only where passed"}
    kept = {name: moments[name] for name in tried[-1]["layers"]}
    write_entry(folder, kept, segments=entry["segments"], data_note=entry["data"], valid_check=check)
    check_7 = check_7_bits(folder, data, split, reference, tried[-1]["layers"], score=score) if seven_bits else None
    return write_entry(folder, kept, segments=entry["segments"], data_note=entry["data"], valid_check=check,
                       valid_check_7bit=check_7)


def _figures(scores: dict) -> dict:
    """``scores`` without the per-track verdicts (the manifest keeps figures, not 98 answers)."""
    return {key: value for key, value in scores.items() if key != "predictions"}


def check_7_bits(folder: Path, data, split: Path, reference: dict, layers: list[str], *, score=_valid_scores) -> dict:
    """Judge the folder's int8 layers with 7-bit input codes (CPUs without VNNI, :func:`_scores_at_7_bits`)
    against float32's ``reference`` scores: it passes where no track's verdict moves and segment accuracy
    stays within :data:`MAX_SEGMENT_POINTS` point. ``auto`` runs int8 below VNNI only where it passed."""
    got = score(folder, INT8_7BIT, data, split)
    moved = changed_tracks(reference, got)
    passed = moved == [] and keeps_valid_answers(reference, got)
    log.info("%s: int8 of %s with 7-bit input on %s: tracks %.4f (float32 %.4f), segments %.4f (float32 %.4f), "
             "%s: %s", display_path(folder), ", ".join(layers), display_path(split), got["track_accuracy"],
             reference["track_accuracy"], got["segment_accuracy"], reference["segment_accuracy"],
             "verdicts not compared" if moved is None else f"{len(moved)} track verdicts moved",
             "kept" if passed else "misses")
    return {"input_bits": 7, "split": {"file": str(display_path(split)), "sha256": file_sha256(split)},
            "layers": list(layers), "float32": _figures(reference), "int8": _figures(got),
            "tracks_changed": moved, "passed": passed,
            "criterion": "every track's verdict as float32's, segment accuracy within "
                         f"{MAX_SEGMENT_POINTS} point; auto runs int8 on CPUs without VNNI (7-bit input codes, "
                         "codeFeature.engines.int8_input_codes) only where passed",
            "computed": "OpenVINO int8 under ONEDNN_MAX_CPU_ISA=AVX2 (AVX2 int8 kernels, 127 input codes)"}


def _shipped(folder: Path) -> bool:
    """Whether ``folder`` is one of the repository's shipped models (tracked files)."""
    from codeFeature.model_io import MODELS_DIR

    return Path(folder).resolve().is_relative_to(MODELS_DIR.resolve())


def train_inputs(data, split: Path, config, ids=None) -> tuple[np.ndarray, str]:
    """The model inputs of the split's tracks (or of ``ids``, a part of it) and a one-line note of what they are."""
    dataset = load_set(data, read_split(split) if ids is None else ids, config)
    note = (f"{len(set(dataset.tracks.tolist()))} tracks of {display_path(split)} (sha256 {file_sha256(split)[:12]}), "
            f"every segment")
    return dataset.x, note


@exit_on_missing_data
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, metavar="MODEL_FOLDER", help="a musicnn model folder")
    add_gtzan_argument(parser)
    parser.add_argument("--data", nargs="+", help="GTZAN-layout audio folders (default: the audio --gtzan finds)")
    parser.add_argument("--split", type=Path, default=TRAIN_SPLIT, help="track list to measure on (default: train)")
    parser.add_argument("--valid-split", type=Path, default=VALID_SPLIT,
                        help="track list that judges the int8 path (default: valid)")
    parser.add_argument("--check-only", action="store_true",
                        help="keep the folder's measured moments and only judge them on --valid-split")
    parser.add_argument("--write-shipped", action="store_true",
                        help="allow writing into the repository's models/ (tracked files)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    from codeFeature.errors import ModelError
    from codeFeature.model_io import read_manifest

    folder = args.folder
    try:
        manifest = read_manifest(folder)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if _shipped(folder) and not args.write_shipped:
        print(f"error: {display_path(folder)} is a shipped model (tracked files); add --write-shipped to rewrite "
              "its calibration, or give a run folder", file=sys.stderr)
        return 2
    from codeFeature.config import FeatureConfig

    from codeFeature import engines

    data = audio_data(args.data, args.gtzan)
    if args.check_only:
        if not (manifest.get("int8_calibration") or {}).get("layers"):
            print(f"error: {display_path(folder)} has no int8 calibration to check; run without --check-only",
                  file=sys.stderr)
            return 2
    else:
        x, note = train_inputs(data, args.split, FeatureConfig.from_dict(manifest["feature_config"]))
        try:
            entry = calibrate(folder, x, data_note=note)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        log.info("%s: int8 calibration of %s from %d segments (%s)", display_path(folder),
                 ", ".join(entry["layers"]), entry["segments"], note)
    if not engines.openvino_available():
        log.warning("openvino is not installed: valid could not judge the int8 path, so auto will not run it")
        return 0
    try:
        entry = check_on_valid(folder, data, args.valid_split)
    except RuntimeError as exc:  # the 7-bit child process failed: the folder keeps its 8-bit verdict only
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info("%s: int8 runs %s for %s", display_path(folder),
             "automatically" if entry["valid_check"]["passed"] else "only when asked (--precision int8)",
             ", ".join(entry["layers"]))
    return 0


if __name__ == "__main__":
    from codeFeature.runtime import prepare_process

    prepare_process()  # an entry point: before TensorFlow starts
    sys.exit(main())
