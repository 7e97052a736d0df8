"""int8 kernels rounded by GPTQ against the input's second moments (codeFeature.quantise), and the
model folder's calibration that feeds them (training.int8_calibration)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from codeFeature import engines, quantise
from codeFeature.model_io import MODELS_DIR, load_model

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "musicnn_reference.npz"
needs_openvino = pytest.mark.skipif(not engines.openvino_available(), reason="the openvino package is not installed")


def smooth_inputs(n=6, rows=24, cols=30, seed=0):
    """Inputs whose neighbouring values are correlated, as a log-mel's are."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, rows, cols))
    for axis in (1, 2):
        x = (x + np.roll(x, 1, axis) + np.roll(x, 2, axis)) / 3
    return (x + 1.5).astype(np.float32)


def conv_valid(x, kernel):
    """A single-channel 'valid' correlation: (n, R, C) x (out, 1, kh, kw) -> (n, out, R-kh+1, C-kw+1)."""
    from numpy.lib.stride_tricks import sliding_window_view

    patches = sliding_window_view(x, kernel.shape[2:], axis=(1, 2))  # n, R', C', kh, kw
    return np.einsum("nrcij,oij->norc", patches, kernel[:, 0])


def test_patch_moments_is_the_mean_outer_product_of_every_patch():
    x = smooth_inputs(n=2, rows=6, cols=7)
    want = np.zeros((6, 6))
    count = 0
    for segment in x:
        for r in range(6 - 3 + 1):
            for c in range(7 - 2 + 1):
                p = segment[r:r + 3, c:c + 2].reshape(-1).astype(np.float64)
                want += np.outer(p, p)
                count += 1
    np.testing.assert_allclose(quantise.patch_moments(x[..., None], (3, 2), batch=1), want / count, rtol=1e-5)


def test_gptq_taps_lie_on_the_int8_grid_of_the_plain_rounding():
    rng = np.random.default_rng(3)
    kernel = rng.normal(0, 0.1, (5, 1, 3, 4)).astype(np.float32)
    rounded = quantise.gptq_round(kernel, quantise.patch_moments(smooth_inputs(), (3, 4)))
    scale = quantise.kernel_scales(kernel).reshape(-1, 1, 1, 1)
    steps = rounded / scale * 127
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)
    assert np.abs(steps).max() <= 127 + 1e-3
    assert not np.array_equal(rounded, quantise.plain_round(kernel))  # it did move taps


def test_gptq_with_uncorrelated_input_is_plain_rounding():
    rng = np.random.default_rng(4)
    kernel = rng.normal(0, 0.1, (4, 1, 2, 3)).astype(np.float32)
    np.testing.assert_allclose(quantise.gptq_round(kernel, np.eye(6)), quantise.plain_round(kernel), atol=1e-7)


def test_gptq_lowers_the_output_error_on_correlated_input():
    rng = np.random.default_rng(5)
    kernel = rng.normal(0, 0.1, (16, 1, 5, 6)).astype(np.float32)
    fit, held_out = smooth_inputs(seed=1), smooth_inputs(seed=2)  # judged on inputs it was not fitted on
    moments = quantise.patch_moments(fit, (5, 6))
    exact = conv_valid(held_out, kernel)
    plain = np.mean((conv_valid(held_out, quantise.plain_round(kernel)) - exact) ** 2)
    gptq = np.mean((conv_valid(held_out, quantise.gptq_round(kernel, moments)) - exact) ** 2)
    assert gptq < 0.5 * plain, (gptq, plain)


def test_a_calibration_does_not_fit_another_kernel():
    with pytest.raises(ValueError, match="do not fit"):
        quantise.gptq_round(np.ones((2, 1, 2, 2), np.float32), np.eye(5))


def test_calibration_files_round_trip_with_the_same_bytes(tmp_path):
    moments = {"a_conv": np.eye(3) * 2.0, "b_conv": np.full((2, 2), 0.5)}
    layers = quantise.write_calibration(tmp_path, moments)
    first = {name: (tmp_path / rel).read_bytes() for name, rel in layers.items()}
    quantise.write_calibration(tmp_path, moments)
    assert {name: (tmp_path / rel).read_bytes() for name, rel in layers.items()} == first  # git sees no change
    manifest = {"int8_calibration": {"layers": layers}}
    read = quantise.read_calibration(tmp_path, manifest)
    assert set(read) == set(moments)
    np.testing.assert_allclose(read["a_conv"], moments["a_conv"])
    (tmp_path / layers["b_conv"]).unlink()
    with pytest.raises(ValueError, match="missing"):
        quantise.read_calibration(tmp_path, manifest)
    assert quantise.read_calibration(tmp_path, {}) == {}


def test_every_shipped_musicnn_folder_carries_its_calibration():
    for name in ("musicnn_genre", "musicnn_genre_lr", "musicnn_msd", "musicnn_mtt"):
        manifest = json.loads((MODELS_DIR / name / "manifest.json").read_text())
        read = quantise.read_calibration(MODELS_DIR / name, manifest)
        assert set(read) == {"timbral_74_conv", "timbral_77_conv"}, name
        assert read["timbral_74_conv"].shape == (7 * 38, 7 * 38) and read["timbral_77_conv"].shape == (7 * 67, 7 * 67)
        assert "train_filtered.txt" in manifest["int8_calibration"]["data"]  # measured on train, never valid


@pytest.fixture()
def uncalibrated_copy(tmp_path):
    folder = tmp_path / "musicnn_genre"
    shutil.copytree(MODELS_DIR / "musicnn_genre", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["int8_calibration"]
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(folder / "int8")
    return folder


@needs_openvino
def test_the_calibration_brings_int8_closer_to_float32(uncalibrated_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("CODEFEATURE_ENGINE_CACHE", str(tmp_path / "cache"))
    with np.load(FIXTURE) as data:
        patches = data["patches"]
    exact = load_model("musicnn_genre", precision="float32", engine="tensorflow").forward(patches)
    calibrated = load_model("musicnn_genre", precision="int8").forward(patches)
    plain = load_model(uncalibrated_copy, precision="int8").forward(patches)
    for got_gptq, got_plain, want in zip(calibrated, plain, exact):
        assert np.abs(got_gptq - want).max() < 0.75 * np.abs(got_plain - want).max()


def test_the_calibration_command_writes_a_folder_it_can_load(uncalibrated_copy, monkeypatch, tmp_path):
    from training.int8_calibration import calibrate, main

    monkeypatch.setenv("CODEFEATURE_ENGINE_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 4, (3, 187, 96)).astype(np.float32)
    entry = calibrate(uncalibrated_copy, x, data_note="3 random patches")
    assert entry["segments"] == 3 and set(entry["layers"]) == {"timbral_74_conv", "timbral_77_conv"}
    manifest = json.loads((uncalibrated_copy / "manifest.json").read_text())
    assert manifest["int8_calibration"] == entry
    assert set(quantise.read_calibration(uncalibrated_copy, manifest)) == set(entry["layers"])
    # a shipped folder's tracked files are only rewritten when asked
    assert main([str(MODELS_DIR / "musicnn_genre")]) == 2
