import json
import shutil

import numpy as np
import pytest

from codeFeature.config import DEFAULT_CONFIG, GENRES
from codeFeature.errors import GenreError, ModelError
from codeFeature.model_io import (MANIFEST_FILE, MODEL_JSON, WEIGHTS_FILE, default_model_name, list_models,
                                  load_model, read_manifest, save_model)


def test_round_trip_keeps_weights_config_and_manifest(tiny_model_dir, tiny_model):
    manifest = read_manifest(tiny_model_dir)
    assert manifest["feature_config"] == DEFAULT_CONFIG.to_dict()
    assert manifest["labels"] == list(GENRES)
    assert manifest["input_shape"] == [130, 13, 1] and manifest["output_size"] == 10
    assert "keras" in manifest["versions"]
    again = load_model(tiny_model_dir)
    x = np.random.default_rng(0).normal(size=(4, 130, 13, 1)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(again.keras_model(x)), np.asarray(tiny_model.keras_model(x)))
    assert again.config == DEFAULT_CONFIG and again.labels == GENRES


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _edit_manifest(folder, **changes):
    path = folder / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_config_that_disagrees_with_the_model_is_refused_naming_both(tiny_model_dir, tmp_path):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    _edit_manifest(folder, feature_config={**DEFAULT_CONFIG.to_dict(), "n_mfcc": 20}, input_shape=None)
    with pytest.raises(ModelError, match=r"\(130, 13, 1\).*\(130, 20, 1\)"):
        load_model(folder)


def test_label_count_mismatch_is_refused(tiny_model_dir, tmp_path):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    _edit_manifest(folder, labels=list(GENRES[:9]))
    with pytest.raises(ModelError, match="10 outputs.*9 labels"):
        load_model(folder)


@pytest.mark.parametrize("missing, match", [(MANIFEST_FILE, "manifest"), (MODEL_JSON, "model.json"),
                                            (WEIGHTS_FILE, "weights")])
def test_missing_files_are_named(tiny_model_dir, tmp_path, missing, match):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    (folder / missing).unlink()
    with pytest.raises(ModelError, match=match):
        load_model(folder)


def test_broken_manifest_and_version(tiny_model_dir, tmp_path):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    (folder / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(folder)
    folder2 = _copy(tiny_model_dir, tmp_path / "m2")
    _edit_manifest(folder2, format_version=99)
    with pytest.raises(ModelError, match="format_version"):
        load_model(folder2)


def test_lambda_layers_are_refused_by_safe_mode(tmp_path):
    import keras

    inputs = keras.Input((130, 13, 1))
    x = keras.layers.Lambda(lambda t: t * 2)(inputs)
    outputs = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    folder = tmp_path / "lambda"
    save_model(model, folder, {"labels": list(GENRES), "feature_config": DEFAULT_CONFIG.to_dict()})
    with pytest.raises(ModelError, match="safely"):
        load_model(folder)


def test_unknown_name_lists_the_shipped_models(tiny_model_dir):
    with pytest.raises(ModelError, match="tiny") as info:
        load_model("no-such-model", models_dir=tiny_model_dir.parent)
    assert isinstance(info.value, GenreError)


def test_listing_and_default(tiny_model_dir):
    root = tiny_model_dir.parent
    assert list_models(models_dir=root) == ["tiny"]
    assert default_model_name(models_dir=root) == "tiny"
    (root / "default.txt").write_text("tiny\n")
    assert load_model(models_dir=root).name == "tiny"


def test_every_shipped_model_loads_and_states_its_valid_accuracy():
    names = list_models()
    assert default_model_name() in names
    for name in names:
        model = load_model(name)
        manifest = model.manifest
        if model.task == "genre":
            valid = manifest["metrics"]["valid"]
            assert 0.0 <= valid["track_accuracy"] <= 1.0 and valid["tracks"] > 0
            assert manifest["training"]["splits"]["valid"]["sha256"]
            assert manifest["reproduce"].startswith("python -m training.")
