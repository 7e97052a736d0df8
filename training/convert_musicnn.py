"""Convert the pretrained musicnn taggers (MSD_musicnn, MTT_musicnn) to model folders.

The musicnn 0.1.0 wheel on PyPI (ISC licence) ships TF1 checkpoints. This script
reads them with ``tf.train.load_checkpoint`` (no musicnn code is imported or
installed: the wheel pins numpy < 1.17), copies every weight into the Keras 3
port :func:`codeFeature.musicnn.build_musicnn`, and writes ``models/musicnn_msd``
and ``models/musicnn_mtt`` with :func:`codeFeature.model_io.save_model`, plus the
package's licence as ``models/LICENSE-musicnn.txt``.

Usage (from the repository root)::

    python -m training.convert_musicnn                    # pip-downloads the wheel to a temp dir
    python -m training.convert_musicnn --wheel musicnn-0.1.0-py3-none-any.whl

Parity with the original TF1 graph is checked by ``tests/codeFeature/test_musicnn.py``
against ``tests/fixtures/musicnn_reference.npz`` (see
``training/make_musicnn_reference.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from codeFeature.config import FeatureConfig
from codeFeature.model_io import load_model, save_model
from codeFeature.musicnn import (
    MSD_TAGS, MTT_TAGS, MUSICNN_HOP, MUSICNN_N_FFT, MUSICNN_N_MELS, MUSICNN_SAMPLE_RATE,
    BFLOAT16_LAYERS, FRONTEND_BLOCKS, PREPROCESSING, build_musicnn, fold_frontend_signs)

WHEEL_NAME = "musicnn-0.1.0-py3-none-any.whl"
REPRODUCE = "python -m training.convert_musicnn"
#: The repository: the converted folders go to its models/.
REPO = Path(__file__).resolve().parent.parent

#: Keras layer of the port -> variable scope in the TF1 checkpoint. The TF1 names
#: are the auto-numbered tf.compat.v1.layers names, in musicnn/models.py's build order.
LAYER_TO_SCOPE: dict[str, str] = {
    "input_bn": "batch_normalization",
    "timbral_74_conv": "conv2d",
    "timbral_74_bn": "batch_normalization_1",
    "timbral_77_conv": "conv2d_1",
    "timbral_77_bn": "batch_normalization_2",
    "temporal_128_conv": "conv2d_2",
    "temporal_128_bn": "batch_normalization_3",
    "temporal_64_conv": "conv2d_3",
    "temporal_64_bn": "batch_normalization_4",
    "temporal_32_conv": "conv2d_4",
    "temporal_32_bn": "batch_normalization_5",
    "midend1_conv": "conv2d_5",
    "midend1_bn": "batch_normalization_6",
    "midend2_conv": "conv2d_6",
    "midend2_bn": "batch_normalization_7",
    "midend3_conv": "conv2d_7",
    "midend3_bn": "batch_normalization_8",
    "pool_bn": "batch_normalization_9",
    "dense": "dense",
    "penultimate": "batch_normalization_10",
    "taggram": "dense_1",
}

#: Layers of the port with no checkpoint variable: filled from the batch norms' signs.
SIGN_LAYERS = frozenset(f"{block}_sign" for block in FRONTEND_BLOCKS)

MODELS = {
    # output folder: (checkpoint folder in the wheel, tags, description)
    "musicnn_msd": ("MSD_musicnn", MSD_TAGS,
                    "musicnn (Pons & Serra 2019) trained on the Million Song Dataset's 50 most common "
                    "Last.fm tags; sigmoid tag scores per 3 s patch. Embeddings: layers 'penultimate' "
                    "(200), 'mean_pool' and 'max_pool' (753 each), see codeFeature.musicnn.embedding_model."),
    "musicnn_mtt": ("MTT_musicnn", MTT_TAGS,
                    "musicnn (Pons & Serra 2019) trained on MagnaTagATune's 50 most common tags; sigmoid "
                    "tag scores per 3 s patch. Embeddings: layers 'penultimate' (200), 'mean_pool' and "
                    "'max_pool' (753 each), see codeFeature.musicnn.embedding_model."),
}


def musicnn_feature_config() -> FeatureConfig:
    """The FeatureConfig every musicnn model folder carries."""
    return FeatureConfig(feature="musicnn_logmel", sample_rate=MUSICNN_SAMPLE_RATE, n_fft=MUSICNN_N_FFT,
                         hop_length=MUSICNN_HOP, n_mels=MUSICNN_N_MELS, segment_seconds=3.0)


def fetch_wheel(dest: Path) -> Path:
    """``pip download`` the musicnn 0.1.0 wheel (without dependencies) into ``dest``."""
    subprocess.run([sys.executable, "-m", "pip", "download", "musicnn==0.1.0", "--no-deps",
                    "--only-binary", ":all:", "-d", str(dest)], check=True)
    return dest / WHEEL_NAME


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def extract_checkpoint(wheel: zipfile.ZipFile, folder: str, dest: Path) -> Path:
    """Copy a checkpoint out of the wheel under a real prefix.

    The wheel's checkpoints have an empty file prefix (``MSD_musicnn/.index``),
    which ``tf.train.load_checkpoint`` would read as a directory; renaming the
    files to ``ckpt.*`` gives it a prefix it accepts.
    """
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in (".index", ".data-00000-of-00001"):
        (dest / f"ckpt{suffix}").write_bytes(wheel.read(f"musicnn/{folder}/{suffix}"))
    return dest / "ckpt"


def is_model_variable(name: str) -> bool:
    """False for optimizer state (Adam slots and beta powers), which inference does not need."""
    return not (name.endswith("/Adam") or name.endswith("/Adam_1") or name in ("beta1_power", "beta2_power"))


def convert(prefix: Path, num_tags: int):
    """Build the Keras port and fill it from the checkpoint at ``prefix``.

    Every Keras weight is set, and every model variable in the checkpoint is
    used, or this raises.
    """
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    wanted = {name for name in reader.get_variable_to_shape_map() if is_model_variable(name)}
    model = build_musicnn(num_tags)
    used: set[str] = set()
    for layer in model.layers:
        if not layer.weights or layer.name in SIGN_LAYERS:
            continue
        if layer.name not in LAYER_TO_SCOPE:
            raise RuntimeError(f"Keras layer {layer.name!r} has weights but no checkpoint scope")
        scope = LAYER_TO_SCOPE[layer.name]
        values = []
        for weight in layer.weights:
            # Keras 3 variable names are the bare names TF1 used too: kernel, bias, gamma, beta, moving_*
            name = f"{scope}/{weight.name}"
            if name not in wanted:
                raise RuntimeError(f"{layer.name}/{weight.name}: no variable {name!r} in the checkpoint")
            value = reader.get_tensor(name)
            target = tuple(weight.shape)
            # only the mid end's full-width Conv2D kernels (7, C, 1, 64) become Conv1D kernels (7, C, 64)
            if value.shape != target:
                if tuple(d for d in value.shape if d != 1) != tuple(d for d in target if d != 1):
                    raise RuntimeError(f"{name} has shape {value.shape}, {layer.name} expects {target}")
                value = value.reshape(target)
            values.append(value)
            used.add(name)
        layer.set_weights(values)
    # the port's front end pools before its batch norms: fold each block's signs (exact, see the docstring)
    for block in FRONTEND_BLOCKS:
        conv, norm = model.get_layer(f"{block}_conv"), model.get_layer(f"{block}_bn")
        kernel, bias = conv.get_weights()
        gamma, _, _, variance = norm.get_weights()
        kernel, bias, signs = fold_frontend_signs(kernel, bias, gamma, variance, norm.epsilon)
        conv.set_weights([kernel, bias])
        model.get_layer(f"{block}_sign").set_weights([signs])
    unused = sorted(wanted - used)
    if unused:
        raise RuntimeError(f"checkpoint variables not used by the port: {unused}")
    n_weights = len(model.weights) - len(SIGN_LAYERS)
    if len(used) != n_weights:
        raise RuntimeError(f"set {len(used)} of the model's {n_weights} weights")
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help=f"a local {WHEEL_NAME} (default: pip download it)")
    parser.add_argument("--out", type=Path, default=REPO / "models",
                        help="where to write the model folders and the licence (default: models/)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wheel_path = args.wheel if args.wheel is not None else fetch_wheel(tmp)
        wheel_sha = sha256(wheel_path)
        args.out.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel_path) as wheel:
            licence = wheel.read("musicnn-0.1.0.dist-info/LICENSE.md")
            (args.out / "LICENSE-musicnn.txt").write_bytes(licence)
            for folder_name, (checkpoint, tags, description) in MODELS.items():
                prefix = extract_checkpoint(wheel, checkpoint, tmp / checkpoint)
                model = convert(prefix, len(tags))
                manifest = {
                    "name": folder_name,
                    "task": "tags",
                    "labels": list(tags),
                    "feature_config": musicnn_feature_config().to_dict(),
                    "preprocessing": "codeFeature.musicnn.musicnn_logmel: " + PREPROCESSING,
                    "bfloat16_layers": list(BFLOAT16_LAYERS),
                    "description": description,
                    "source": {
                        "package": "musicnn 0.1.0 from PyPI (source: https://github.com/jordipons/musicnn)",
                        "wheel": wheel_path.name,
                        "wheel_sha256": wheel_sha,
                        "checkpoint": f"musicnn/{checkpoint}/ (.index, .data-00000-of-00001)",
                        "paper": "J. Pons, X. Serra. musicnn: pre-trained convolutional neural networks "
                                 "for music audio tagging. ISMIR 2019 late-breaking demo.",
                    },
                    "license": "ISC, see models/LICENSE-musicnn.txt",
                    "reproduce": REPRODUCE,
                }
                folder = save_model(model, args.out / folder_name, manifest)
                # the folder must load in safe mode and give the same numbers as the model just built
                probe = np.random.default_rng(0).uniform(0, 3, (2, *model.input_shape[1:])).astype(np.float32)
                reloaded = load_model(folder, precision="float32").keras_model
                diff = float(np.max(np.abs(reloaded.predict(probe, verbose=0) - model.predict(probe, verbose=0))))
                if diff > 0:
                    raise RuntimeError(f"{folder} does not reproduce the converted model (max diff {diff})")
                print(f"wrote {folder} ({len(model.weights)} weights from musicnn/{checkpoint})")
    print(f"wrote {args.out / 'LICENSE-musicnn.txt'}")
    return 0


if __name__ == "__main__":
    from codeFeature.runtime import prepare_process

    prepare_process()  # an entry point: before TensorFlow starts
    raise SystemExit(main())
