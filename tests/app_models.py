"""Small model folders the app's tests build: a model answering with labels of a person's own."""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Made-up labels, none of them GTZAN's.
THREE_LABELS = ["zouk", "drone", "chiptune"]


def write_own_label_models(folder: Path, labels=THREE_LABELS, *, name: str = "own_three") -> Path:
    """A models folder (``default.txt`` naming it) holding one untrained, seeded model of ``labels``, on the
    shipped MFCC input; returns ``folder``."""
    import keras

    from codeFeature.config import DEFAULT_CONFIG
    from codeFeature.model_io import save_model

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(DEFAULT_CONFIG.input_shape), keras.layers.Flatten(),
                              keras.layers.Dense(len(labels), activation="softmax")])
    model(np.zeros((1, *DEFAULT_CONFIG.input_shape), np.float32))
    save_model(model, folder / name, {"name": name, "labels": list(labels), "task": "genre",
                                      "feature_config": DEFAULT_CONFIG.to_dict(),
                                      "description": f"{len(labels)} made-up labels, untrained"})
    (folder / "default.txt").write_text(f"{name}\n")
    return folder
