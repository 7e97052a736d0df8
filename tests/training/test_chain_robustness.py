"""training.chain_robustness on a small synthetic set: every chain's held-out tracks are scored in every fold,
the augmented fit really trains on the chains named (and only those), and the table reports what summarise
computed. No audio, no network, no /work/shared."""

import numpy as np

from tests.training.test_kfold_head_cv import RECIPE, _synthetic_embedded


def _chain(embedded, shift, seed):
    """The same tracks 'through a chain': every row moved by ``shift`` plus noise."""
    from training.musicnn_embeddings import Embedded

    e = embedded["msd"]
    rng = np.random.default_rng(seed)
    layers = {k: v + shift + rng.normal(0, 0.5, v.shape).astype(np.float32) for k, v in e.layers.items()}
    return {"msd": Embedded(layers, e.y.copy(), e.tracks.copy())}


def test_every_chain_is_scored_on_held_out_tracks_and_only_named_chains_are_trained_on():
    from training.chain_robustness import held_out_by_chain, table
    from training.head_cv_report import summarise
    from training.train_musicnn_head import fit_recipe

    embedded, artists = _synthetic_embedded(artists_per_genre=3, tracks_per_artist=2)
    pool = sorted(artists)
    chains = {"band": _chain(embedded, 4.0, 1), "noise10": _chain(embedded, -4.0, 2)}
    seen = []

    def spy(emb, ids, *a, augmented=(), **k):
        seen.append((sorted(ids), len(augmented)))
        for chain in augmented:  # a held-out track's chain versions never reach its fold's training rows
            e0 = next(iter(chain.values()))
            assert set(ids) <= set(e0.tracks.tolist())
        return fit_recipe(emb, ids, *a, augmented=augmented, **k)

    plain = held_out_by_chain(embedded, chains, pool, artists, RECIPE, (), repeats=1, folds=3, seed=0, fit=spy)
    trained = held_out_by_chain(embedded, chains, pool, artists, RECIPE, ("band",), repeats=1, folds=3, seed=0,
                                fit=spy)
    assert [n for _, n in seen] == [0, 0, 0, 1, 1, 1]
    for folds in (plain, trained):
        assert set(folds) == {"clean", "band", "noise10"}
        for name, fs in folds.items():
            assert sorted(t for f in fs for t in f["tracks"]) == pool  # each track held out once a repeat
    acc = {name: np.mean(np.concatenate([f["true"] == f["pred"] for f in fs])) for name, fs in trained.items()}
    acc_plain = {name: np.mean(np.concatenate([f["true"] == f["pred"] for f in fs])) for name, fs in plain.items()}
    # the shifted chain is learned only when trained on: its held-out accuracy rises with augmentation
    assert acc["band"] > acc_plain["band"]

    results = {"plain": {c: summarise(f) for c, f in plain.items()}}
    rows = table(results)
    assert len(rows) == 2 + 3
    assert f"{results['plain']['band']['track_accuracy']['mean']:.3f}" in rows[3]


def test_augment_option_reads_chain_names_and_refuses_unknown_ones():
    import argparse

    import pytest

    from training.train_musicnn_head import augment_list, parse_args

    assert augment_list("band, shellac") == ("band", "shellac")
    assert augment_list("none") == () and augment_list("") == ()
    with pytest.raises(argparse.ArgumentTypeError, match="unknown recording chain vinyl"):
        augment_list("band,vinyl")
    default = parse_args([])  # the default recipe: a second head also trained on band + shellac versions
    assert default.augment == ("band", "shellac") and default.augment_as == "second-head"
    assert parse_args(["--preset", "lr"]).augment == ()  # musicnn_genre_lr's recipe has none
    assert parse_args(["--augment", "none"]).augment == ()
    assert parse_args(["--augment", "shellac"]).augment == ("shellac",)


def test_chain_rows_join_their_track_and_leave_every_genre_the_same_total_weight():
    from training.train_musicnn_head import recipe_rows

    embedded, artists = _synthetic_embedded(artists_per_genre=2, tracks_per_artist=2)
    ids = sorted(artists)[::2]
    chain = _chain(embedded, 1.0, 3)
    x0, y0, t0, w0 = recipe_rows(embedded, ids, "msd:penultimate", "genre")
    x, y, t, w = recipe_rows(embedded, ids, "msd:penultimate", "genre", augmented=(chain, chain))
    assert len(x) == 3 * len(x0) and np.array_equal(x[: len(x0)], x0)
    assert set(t[len(x0):].tolist()) == set(t0.tolist())  # rows of the same tracks, no new pseudo-tracks
    assert np.array_equal(y[len(x0):], np.concatenate([y0, y0]))
    totals = [w[y == g].sum() for g in np.unique(y)]
    assert np.allclose(totals, totals[0])  # still every genre alike
    for track in set(t0.tolist()):  # and a track's share is split between its versions, not multiplied
        assert np.isclose(w[t == track].sum() / w.sum(), w0[t0 == track].sum() / w0.sum())


def test_chain_embeddings_are_the_served_segments_of_the_degraded_audio_and_reproducible(tmp_path):
    """embed_files(augment=...): as many segments as the audio as it is, other values, the same on a second
    computation from an empty cache (seeded by file name), and cached apart from the clean embeddings."""
    import soundfile as sf

    from training.musicnn_embeddings import embed_files

    rng = np.random.default_rng(0)
    for genre, f0 in (("blues", 196.0), ("jazz", 330.0)):
        folder = tmp_path / "genres" / genre
        folder.mkdir(parents=True)
        t = np.arange(int(6.5 * 22050)) / 22050
        audio = 0.3 * np.sin(2 * np.pi * f0 * t) * (1 + np.sin(2 * np.pi * 2 * t)) + 0.02 * rng.normal(size=t.size)
        sf.write(folder / f"{genre}.00000.wav", audio.astype(np.float32), 22050)
    data = [tmp_path / "genres"]
    clean = embed_files("musicnn_msd", data, cache_dir=tmp_path / "c1")
    band = embed_files("musicnn_msd", data, cache_dir=tmp_path / "c1", augment="band")
    again = embed_files("musicnn_msd", data, cache_dir=tmp_path / "c2", augment="band")
    assert band.tracks.tolist() == clean.tracks.tolist() and len(clean.tracks) == 4  # two 3 s segments a file
    assert not np.allclose(band.layers["penultimate"], clean.layers["penultimate"], atol=1e-3)
    np.testing.assert_allclose(again.layers["penultimate"], band.layers["penultimate"], atol=1e-5)
    assert len(list((tmp_path / "c1").rglob("*.npz"))) == 4  # clean and band cached apart


def test_second_head_pair_averages_its_members_and_exports_as_built_in_layers():
    """--augment-as second-head: a HeadPair of the plain head and the chain head, each calibrated on its own;
    its probabilities are their mean, and the exported Keras layers give the same numbers."""
    import keras

    from training.musicnn_heads import HeadPair, head_layers, head_summary, input_matrix
    from training.train_musicnn_head import fit_recipe

    embedded, artists = _synthetic_embedded(artists_per_genre=3, tracks_per_artist=2)
    ids = sorted(artists)
    chain = _chain(embedded, 1.5, 4)
    params = {"C": 1.0, "gamma_scale": 0.1, "balanced": True}
    pair = fit_recipe(embedded, ids, "msd:penultimate", "svm", params, "genre", artists=artists, calibrate=True,
                      folds=3, augmented=(chain,), augment_as="second-head")
    assert isinstance(pair, HeadPair) and len(pair.members) == 2
    plain, chained = pair.members
    assert len(chained.model[0].support_) != len(plain.model[0].support_) or \
        not np.allclose(chained.mean, plain.mean)  # the second member was fitted on more rows
    x = input_matrix("msd:penultimate", embedded)
    np.testing.assert_allclose(pair.probabilities(x), (plain.probabilities(x) + chained.probabilities(x)) / 2)

    inp = keras.Input((x.shape[1],))
    model = keras.Model(inp, head_layers(inp, pair))
    assert model.output.name.startswith("genre") or model.layers[-1].name == "genre"
    np.testing.assert_allclose(np.asarray(model(x.astype(np.float32))), pair.probabilities(x), atol=1e-5)
    restored = keras.models.model_from_json(model.to_json())  # safe mode: built-in layers only
    restored.set_weights(model.get_weights())
    np.testing.assert_allclose(np.asarray(restored(x.astype(np.float32))), pair.probabilities(x), atol=1e-5)

    summary = head_summary(pair)
    assert summary["kind"] == "svm" and summary["C"] == 1.0 and len(summary["members"]) == 2
    assert [m["temperature"] for m in summary["members"]] == [round(plain.temperature, 6),
                                                             round(chained.temperature, 6)]
    # rows (the other way to use the chains) gives one head
    rows = fit_recipe(embedded, ids, "msd:penultimate", "svm", params, "genre", artists=artists, calibrate=False,
                      augmented=(chain,), augment_as="rows")
    assert not isinstance(rows, HeadPair)
