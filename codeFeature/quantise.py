"""int8 kernels for a model's heavy convolutions, rounded against the statistics of their input.

Rounding each kernel tap to the nearest of 255 levels (per output channel, symmetric) is the plain
way. On musicnn's timbral convolutions it moved the default model's probabilities by up to 0.06 on
GTZAN's valid split and changed one of its 98 tracks. Almost all of that error came from the kernels,
not from the 8-bit input. GPTQ (Frantar et al., "GPTQ: accurate post-training quantization for
generative pre-trained transformers", ICLR 2023, after Hassibi & Stork's Optimal Brain Surgeon) rounds
the taps one at a time and moves each rounding error onto the taps not rounded yet, weighted by the
second moments ``H = E[p pᵀ]`` of the input patches ``p`` the kernel sees. That minimises the expected
squared error of the convolution's output instead of the kernel's, and keeps every valid track.

``H`` describes the input (log-mel patches of music after the input batch norm), not the weights. It is
measured once on the training split (:func:`patch_moments`, run by ``python -m training.int8_calibration``),
stored in the model folder as ``int8/<layer>.npy`` and named in the manifest's ``int8_calibration``.
The kernels themselves are still read from ``model.weights.h5`` and rounded at load time
(:func:`gptq_round`), so the weights file stays the model's only copy of its weights.

This module does no I/O beyond reading and writing those ``.npy`` files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import CalibrationError, ConfigError

#: The model folder's sub-folder holding one second-moment matrix per layer.
CALIBRATION_DIR = "int8"
#: GPTQ's damping: this fraction of ``H``'s mean diagonal is added to its diagonal before inverting
#: (the paper's default; 0.001 and 0.1 kept the same valid answers).
DAMP = 0.01
#: Levels of a kernel tap: symmetric int8, -127..127.
KERNEL_LEVELS = 255


def patch_moments(inputs: np.ndarray, kernel_size: tuple[int, int], *, batch: int = 16) -> np.ndarray:
    """``E[p pᵀ]`` over every ``kernel_size`` patch ``p`` of ``inputs`` (stride 1, no padding).

    Parameters
    ----------
    inputs : np.ndarray, shape (n, rows, cols) or (n, rows, cols, 1)
        What the convolution reads, padding included (for musicnn's timbral convolutions: the
        ``timbral_pad`` layer's output).
    kernel_size : (int, int)
        The convolution's kernel height and width.

    Returns
    -------
    np.ndarray, shape (kh * kw, kh * kw), float64
        Patches flattened row-major, the order of a ``(out, 1, kh, kw)`` kernel's taps.
    """
    from numpy.lib.stride_tricks import sliding_window_view

    inputs = np.asarray(inputs, np.float32)
    if inputs.ndim == 4:
        if inputs.shape[-1] != 1:
            raise ConfigError(f"patch_moments needs single-channel input, got shape {inputs.shape}")
        inputs = inputs[..., 0]
    kh, kw = kernel_size
    total = np.zeros((kh * kw, kh * kw), np.float64)
    count = 0
    for lo in range(0, len(inputs), batch):
        patches = sliding_window_view(inputs[lo:lo + batch], (kh, kw), axis=(1, 2)).reshape(-1, kh * kw)
        total += (patches.T @ patches).astype(np.float64)
        count += len(patches)
    if count == 0:
        raise ConfigError("patch_moments needs at least one input")
    return total / count


def kernel_scales(kernel: np.ndarray) -> np.ndarray:
    """Per-output-channel scale of a ``(out, ...)`` kernel: its largest |tap| (1e-12 where all are 0)."""
    flat = np.abs(np.asarray(kernel, np.float32)).reshape(kernel.shape[0], -1)
    return np.maximum(flat.max(axis=1), np.float32(1e-12))


def _nearest_level(values: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``values`` rounded to the nearest ``k / 127 * scale``, ``k`` an integer in [-127, 127]."""
    half = (KERNEL_LEVELS - 1) // 2
    return np.clip(np.round(values / scale * half), -half, half) / half * scale


def plain_round(kernel: np.ndarray) -> np.ndarray:
    """``kernel`` rounded to the nearest of :data:`KERNEL_LEVELS` levels per output channel."""
    kernel = np.asarray(kernel, np.float32)
    scale = kernel_scales(kernel).reshape(-1, *([1] * (kernel.ndim - 1)))
    return _nearest_level(kernel, scale).astype(np.float32)


def gptq_round(kernel: np.ndarray, moments: np.ndarray, *, damp: float = DAMP) -> np.ndarray:
    """``kernel`` on the same per-channel int8 grid as :func:`plain_round`, rounded by GPTQ.

    Parameters
    ----------
    kernel : np.ndarray, shape (out, ...)
        Taps flattened row-major after the first axis must match ``moments``' order.
    moments : np.ndarray, shape (taps, taps)
        :func:`patch_moments` of the convolution's input.
    damp : float
        See :data:`DAMP`.

    Returns
    -------
    np.ndarray, the shape of ``kernel``, float32
        Every tap is ``k / 127 * scale`` for an integer ``k`` in [-127, 127], with the channel's scale
        of :func:`kernel_scales` (of the original kernel), so an int8 engine reproduces it exactly.
    """
    kernel = np.asarray(kernel, np.float32)
    out = kernel.shape[0]
    weights = kernel.reshape(out, -1).astype(np.float64)
    taps = weights.shape[1]
    moments = np.asarray(moments, np.float64)
    if moments.shape != (taps, taps):
        raise ConfigError(f"moments of shape {moments.shape} do not fit a kernel of {taps} taps a channel")
    scale = kernel_scales(kernel).astype(np.float64).reshape(out, 1)
    damped = moments + damp * float(np.mean(np.diag(moments))) * np.eye(taps)
    from .blas import one_blas_thread

    # on one BLAS thread: OpenBLAS's threaded LU (dgetrf_parallel) hung for good in a process that had
    # forked before (OpenBLAS issue 5520), and the rounding then does not depend on the thread count
    with one_blas_thread():
        # the upper Cholesky factor of H^-1: row j gives how tap j's error spreads over taps j+1..
        upper = np.linalg.cholesky(np.linalg.inv(damped)).T
    rounded = np.empty_like(weights)
    for j in range(taps):
        column = _nearest_level(weights[:, j:j + 1], scale)
        rounded[:, j:j + 1] = column
        error = (weights[:, j:j + 1] - column) / upper[j, j]
        weights[:, j + 1:] -= error * upper[j:j + 1, j + 1:]
    return rounded.reshape(kernel.shape).astype(np.float32)


def conv_inputs(keras_model: Any, layer: str, x: np.ndarray, *, batch: int = 32) -> np.ndarray:
    """What ``keras_model``'s layer ``layer`` reads when the model is given ``x`` (float32)."""
    import keras

    probe = keras.Model(keras_model.inputs, keras_model.get_layer(layer).input)
    parts = [keras.ops.convert_to_numpy(probe([x[lo:lo + batch]], training=False))
             for lo in range(0, len(x), batch)]
    return np.concatenate(parts).astype(np.float32)


def read_calibration(folder: Path, manifest: dict) -> dict[str, np.ndarray]:
    """The second-moment matrices the manifest's ``int8_calibration`` names ({} where it names none).

    Raises
    ------
    CalibrationError
        If a named file is missing or is not a square matrix (a ``ModelError`` and a ``ValueError``).
    """
    entry = manifest.get("int8_calibration") or {}
    found = {}
    for layer, relative in (entry.get("layers") or {}).items():
        path = Path(folder) / relative
        if not path.is_file():
            raise CalibrationError(f"{folder}: the manifest's int8_calibration names {relative}, which is missing")
        matrix = np.load(path, allow_pickle=False)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise CalibrationError(f"{path} is not a square matrix (shape {matrix.shape})")
        found[layer] = matrix.astype(np.float64)
    return found


def write_calibration(folder: Path, moments: dict[str, np.ndarray]) -> dict[str, str]:
    """Write each layer's matrix to ``folder/int8/<layer>.npy`` (float32, the same bytes for the same
    values); returns the manifest's ``layers`` mapping."""
    directory = Path(folder) / CALIBRATION_DIR
    directory.mkdir(parents=True, exist_ok=True)
    layers = {}
    for layer, matrix in sorted(moments.items()):
        relative = f"{CALIBRATION_DIR}/{layer}.npy"
        np.save(Path(folder) / relative, np.asarray(matrix, np.float32), allow_pickle=False)
        layers[layer] = relative
    return layers
