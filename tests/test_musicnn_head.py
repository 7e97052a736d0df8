"""The genre head on musicnn embeddings: the regression fold, and the shipped model end to end."""

import numpy as np
import pytest

from codeFeature.config import GENRES
from codeFeature.model_io import list_models, load_model
from codeFeature.predict import predict_audio
from tests.conftest import chord


def test_logistic_regression_folds_exactly_into_a_dense_softmax():
    from scipy.special import softmax

    from training.train_musicnn_head import fit_head, folded_weights

    rng = np.random.default_rng(0)
    labels = np.array([0, 2, 3, 5, 7] * 20)  # genres 1, 4, 6, 8, 9 absent, as in small splits
    z = rng.normal(size=(100, 12)) * rng.uniform(0.1, 50, 12) + rng.normal(0, 20, 12) + labels[:, None]
    scaler, clf = fit_head(z, labels, 0.3, seed=0)
    kernel, bias = folded_weights(scaler, clf)
    assert kernel.shape == (12, len(GENRES)) and bias.shape == (len(GENRES),)
    folded = softmax(z @ kernel + bias, axis=1)
    expected = np.zeros_like(folded)
    expected[:, clf.classes_] = clf.predict_proba(scaler.transform(z))
    np.testing.assert_allclose(folded, expected, atol=1e-4)
    assert folded[:, [1, 4, 6, 8, 9]].max() < 1e-6


@pytest.mark.skipif("musicnn_genre" not in list_models(), reason="models/musicnn_genre is not shipped")
def test_shipped_musicnn_genre_model_gives_genres_and_tags():
    model = load_model("musicnn_genre")
    assert model.config.sample_rate == 16000 and model.labels == GENRES
    prediction = predict_audio(chord(7.0, 16000), model=model)
    assert prediction.probabilities.shape == (2, 10)
    assert prediction.extras["tags"].shape == (2, 50)
    tags = prediction.top_tags(3)
    assert len(tags) == 3 and all(t in model.manifest["extra_outputs"][0]["labels"] for t, _ in tags)
    assert tags[0][1] >= tags[1][1] >= tags[2][1]
    # the tag output is the pretrained tagger's, untouched by the head
    tagger = load_model(model.manifest["base_model"]["name"])
    direct = predict_audio(chord(7.0, 16000), model=tagger)
    np.testing.assert_allclose(prediction.extras["tags"], direct.probabilities, atol=1e-5)
