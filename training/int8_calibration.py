"""Measure a musicnn model folder's int8 calibration: what its heavy convolutions read, on the train split.

The int8 path (``--precision int8``, and ``auto`` on CPUs with VNNI but no AMX) rounds the timbral
convolutions' kernels by GPTQ against the second moments of their input patches
(:mod:`codeFeature.quantise`). This command measures those moments on the train split's segments and
writes them into the folder (``int8/<layer>.npy``, named in the manifest's ``int8_calibration``)::

    python -m training.int8_calibration runs/musicnn_genre              # a run folder (--gtzan DIR as usual)
    python -m training.int8_calibration models/musicnn_genre --write-shipped

``python -m training.train_musicnn_head`` runs it on the folders it writes, so a retrained model carries
its calibration. Only the train split is read: valid stays held out for judging the int8 path
(``python -m training.evaluate --model runs/musicnn_genre_train_only --precision int8``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from training.data import TRAIN_SPLIT, display_path, file_sha256, load_set, read_split
from training.datasets import add_gtzan_argument, audio_data, exit_on_missing_data

log = logging.getLogger("training.int8_calibration")


def heavy_convolutions(keras_model, manifest: dict) -> list[str]:
    """The manifest's ``bfloat16_layers`` that are single-input-channel ``Conv2D`` layers."""
    names = []
    for name in manifest.get("bfloat16_layers", []):
        try:
            layer = keras_model.get_layer(name)
        except ValueError:
            continue
        if type(layer).__name__ == "Conv2D" and int(layer.kernel.shape[2]) == 1:
            names.append(name)
    return names


def measure(folder: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """The second moments of what ``folder``'s heavy convolutions read when its model is given ``x``.

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
        raise ValueError(f"{folder} lists no single-channel Conv2D among its bfloat16_layers: nothing to calibrate")
    moments = {}
    for name in layers:
        kernel = model.keras_model.get_layer(name).kernel
        moments[name] = patch_moments(conv_inputs(model.keras_model, name, x), (int(kernel.shape[0]), int(kernel.shape[1])))
    return moments


def write_entry(folder: Path, moments: dict[str, np.ndarray], *, segments: int, data_note: str) -> dict:
    """Write ``moments`` into ``folder`` and name them in its manifest's ``int8_calibration``; returns that entry."""
    from codeFeature.model_io import MANIFEST_FILE
    from codeFeature.quantise import DAMP, write_calibration

    entry = {
        "layers": write_calibration(folder, moments),
        "statistic": "E[p p^T] over every input patch p of the layer (after the input batch norm and the time "
                     "padding), float32; the int8 kernels are rounded by GPTQ against it at load time "
                     "(codeFeature.quantise.gptq_round)",
        "damp": DAMP,
        "segments": int(segments),
        "data": data_note,
        "reproduce": f"python -m training.int8_calibration {display_path(folder)}"
                     + (" --write-shipped" if _shipped(folder) else ""),
    }
    path = Path(folder) / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest["int8_calibration"] = entry
    path.write_text(json.dumps(manifest, indent=2) + "\n")  # as save_model writes it
    return entry


def calibrate(folder: Path, x: np.ndarray, *, data_note: str) -> dict:
    """Measure (:func:`measure`) and write (:func:`write_entry`) ``folder``'s int8 calibration from model
    inputs ``x`` (train segments); returns the manifest entry."""
    return write_entry(folder, measure(folder, x), segments=len(x), data_note=data_note)


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

    x, note = train_inputs(audio_data(args.data, args.gtzan), args.split,
                           FeatureConfig.from_dict(manifest["feature_config"]))
    try:
        entry = calibrate(folder, x, data_note=note)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log.info("%s: int8 calibration of %s from %d segments (%s)", display_path(folder), ", ".join(entry["layers"]),
             entry["segments"], note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
