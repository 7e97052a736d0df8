"""training.promote installs a run's model files, never the pictures and calibration report a training command
leaves beside them (those belong in reports/)."""

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_promote_installs_the_model_files_and_leaves_pictures_out(tmp_path):
    from training import promote

    run = tmp_path / "runs" / "cnn_mfcc_small"
    shutil.copytree(REPO / "models" / "cnn_mfcc_small", run)
    (run / "confusion_valid.png").write_bytes(b"\x89PNG picture")
    (run / "calibration.json").write_text("{}")
    (run / "int8").mkdir()
    (run / "int8" / "layer.npy").write_bytes(b"moments")
    assert promote.main([str(run), "--models-dir", str(tmp_path / "models"),
                         "--reports-dir", str(tmp_path / "reports")]) == 0
    installed = sorted(p.name for p in (tmp_path / "models" / "cnn_mfcc_small").iterdir())
    assert "confusion_valid.png" not in installed and "calibration.json" not in installed
    assert {"model.json", "model.weights.h5", "manifest.json", "int8"} <= set(installed)
    assert (tmp_path / "models" / "cnn_mfcc_small" / "int8" / "layer.npy").read_bytes() == b"moments"
