"""Reference outputs of the ORIGINAL musicnn for the Keras port's parity test.

Runs musicnn 0.1.0's own code (its librosa preprocessing ``extractor.batch_data``
and its TF1 graph ``models.define_model`` restored from the wheel's checkpoints)
on four deterministic synthetic 3 s signals, and writes
``tests/fixtures/musicnn_reference.npz`` with:

* ``audio_int16`` (4, 48000): the signals at 16 kHz, as written to WAV;
* ``patches`` (4, 187, 96) float32: the original's log-mel patches of them;
* for ``msd`` and ``mtt``: ``{model}_taggram`` (4, 50), ``{model}_penultimate``
  (4, 200), ``{model}_mean_pool`` and ``{model}_max_pool`` (4, 753), computed
  from ``patches``;
* ``signals`` (names) and ``versions`` (of the libraries used).

It must NOT run in the project's environment: musicnn pins numpy < 1.17 and
needs Keras 2 for ``tf.compat.v1.layers``. Use a throwaway virtualenv::

    python -m venv --system-site-packages /tmp/musicnn-venv
    /tmp/musicnn-venv/bin/pip install tf_keras
    pip download musicnn==0.1.0 --no-deps -d /tmp/mwheel
    /tmp/musicnn-venv/bin/pip install --no-deps /tmp/mwheel/musicnn-0.1.0-py3-none-any.whl
    TF_USE_LEGACY_KERAS=1 /tmp/musicnn-venv/bin/python -m training.make_musicnn_reference

(with TensorFlow 2.21, librosa 0.11 and numpy 2.4 the original code runs
unpatched in TF1 graph mode). The signals are kept quiet enough that the
original's float16 mel spectrogram does not overflow (see
``codeFeature.musicnn.musicnn_logmel``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.compat.v1.layers needs Keras 2 (tf_keras)
warnings.filterwarnings("ignore", message=r".*is deprecated and will be removed")  # the original's tf.layers calls

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SR = 16000
N_SAMPLES = 3 * SR
N_FRAMES = 187
SIGNALS = ("chord", "noise", "clicks", "chirp")
MODELS = {"msd": "MSD_musicnn", "mtt": "MTT_musicnn"}
FEATURES = ("taggram", "penultimate", "mean_pool", "max_pool")


def synthetic_signals() -> np.ndarray:
    """Four deterministic 3 s test signals at 16 kHz, quantised to int16."""
    t = np.arange(N_SAMPLES) / SR
    rng = np.random.default_rng(20190000)
    # A major chord with a few harmonics
    chord = sum(0.02 / h * np.sin(2 * np.pi * f * h * t) for f in (220.0, 277.18, 329.63) for h in (1, 2, 3))
    # white noise
    noise = 0.05 * rng.standard_normal(N_SAMPLES)
    # 4 clicks a second, each a decaying 1 kHz burst
    clicks = np.zeros(N_SAMPLES)
    burst = 0.3 * np.exp(-np.arange(400) / 60.0) * np.sin(2 * np.pi * 1000 * np.arange(400) / SR)
    for start in range(0, N_SAMPLES - 400, SR // 4):
        clicks[start:start + 400] += burst
    # exponential sweep 100 Hz -> 6 kHz with a slow tremolo
    phase = 2 * np.pi * 100 * 3 / np.log(60) * (60 ** (t / 3) - 1)
    chirp = 0.05 * (1 + 0.5 * np.sin(2 * np.pi * 2 * t)) * np.sin(phase)
    audio = np.stack([chord, noise, clicks, chirp])
    return np.round(np.clip(audio, -1, 1) * 32767).astype(np.int16)


def original_patches(audio_int16: np.ndarray) -> np.ndarray:
    """The original ``batch_data`` applied to each signal, read back from a 16-bit WAV."""
    import soundfile as sf
    from musicnn.extractor import batch_data

    patches = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, signal in enumerate(audio_int16):
            path = os.path.join(tmp, f"signal{i}.wav")
            sf.write(path, signal, SR, subtype="PCM_16")
            batch, _ = batch_data(path, N_FRAMES, N_FRAMES)
            if batch.shape != (1, N_FRAMES, 96):
                raise RuntimeError(f"expected one patch per 3 s signal, got {batch.shape}")
            patches.append(batch[0])
    patches = np.stack(patches).astype(np.float32)
    if not np.all(np.isfinite(patches)):
        raise RuntimeError("the original's float16 preprocessing overflowed; make the signals quieter")
    return patches


def original_outputs(patches: np.ndarray, model: str) -> dict[str, np.ndarray]:
    """Run the original TF1 graph of ``model`` on ``patches``."""
    import musicnn
    import tensorflow as tf
    from musicnn import models

    tf.compat.v1.reset_default_graph()
    x = tf.compat.v1.placeholder(tf.float32, [None, N_FRAMES, 96])
    is_training = tf.compat.v1.placeholder(tf.bool)
    logits, _, _, _, _, _, mean_pool, max_pool, penultimate = models.define_model(x, is_training, model, 50)
    taggram = tf.nn.sigmoid(logits)
    with tf.compat.v1.Session() as sess:
        # restore explicitly: the original extractor swallows restore errors
        tf.compat.v1.train.Saver().restore(sess, os.path.join(os.path.dirname(musicnn.__file__), model) + "/")
        values = sess.run([taggram, penultimate, mean_pool, max_pool],
                          feed_dict={x: patches, is_training: False})
    return {name: np.asarray(value, np.float32) for name, value in zip(FEATURES, values)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the musicnn parity fixture from the original code.")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "musicnn_reference.npz")
    args = parser.parse_args(argv)

    import importlib.metadata as md

    import musicnn.extractor  # noqa: F401  (switches TF to graph mode, as the original does)

    audio = synthetic_signals()
    patches = original_patches(audio)
    arrays = {"audio_int16": audio, "patches": patches, "signals": np.array(SIGNALS)}
    for key, model in MODELS.items():
        for name, value in original_outputs(patches, model).items():
            arrays[f"{key}_{name}"] = value
    versions = {dist: md.version(dist) for dist in ("musicnn", "tensorflow", "tf_keras", "numpy", "librosa")}
    arrays["versions"] = np.array([f"{k}=={v}" for k, v in versions.items()])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB) with {versions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
