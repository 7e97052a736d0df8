"""musicnn embeddings of every GTZAN file, computed once and cached on disk.

The head search (:mod:`training.musicnn_head_search`), the head training
(:mod:`training.train_musicnn_head`), artist-grouped cross-validation and the
not-sure thresholds all fit small heads on the same frozen musicnn outputs.
The network is the expensive part (~1.4 G multiply-adds a segment), so every
file's outputs are computed once per pretrained base and cached: one ``.npz``
per file and base under ``.cache/musicnn_embeddings/``, keyed by the file's
path, size and mtime, the base's weights and the segmentation. An interrupted
run keeps the files it finished.

Each file's record holds, per segment, the four layers a head may read:
``penultimate`` (200), ``mean_pool`` (753), ``max_pool`` (753) and
``taggram`` (the 50 tag outputs). Segments are cut exactly as serving cuts
them (``hop=None``: back-to-back 3 s segments, :func:`codeFeature.segments.segment_array`)
or, to measure test-time overlap, with a shorter hop.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from codeFeature.config import GENRES
from training.data import REPO_ROOT, find_audio, file_segments

log = logging.getLogger(__name__)

EMBEDDING_CACHE = REPO_ROOT / ".cache" / "musicnn_embeddings"
#: The layers cached for every segment, in this order.
LAYERS = ("penultimate", "mean_pool", "max_pool", "taggram")


@dataclass
class Embedded:
    """One base's outputs for every segment of a set of tracks.

    Attributes
    ----------
    layers : dict of str -> np.ndarray, shape (n_segments, dim), float32
    y : np.ndarray, shape (n_segments,)
        Genre index (into :data:`GENRES`).
    tracks : np.ndarray of str, shape (n_segments,)
    """

    layers: dict
    y: np.ndarray
    tracks: np.ndarray

    def subset(self, track_ids: Sequence[str]) -> "Embedded":
        mask = np.isin(self.tracks, list(track_ids))
        return Embedded({k: v[mask] for k, v in self.layers.items()}, self.y[mask], self.tracks[mask])

    @property
    def n_tracks(self) -> int:
        return len(set(self.tracks.tolist()))


def overlapping_segments(samples: np.ndarray, config, hop_seconds: float) -> np.ndarray:
    """3 s windows every ``hop_seconds`` inside the signal (a signal shorter than one window: as serving cuts it)."""
    from codeFeature.segments import segment_array

    seg, hop = config.segment_samples, int(round(hop_seconds * config.sample_rate))
    if len(samples) <= seg:
        return segment_array(samples, config)[0]
    starts = range(0, len(samples) - seg + 1, hop)
    return np.stack([samples[s:s + seg] for s in starts]).astype(np.float32)


def _weights_digest(model) -> str:
    weights = Path(model.path) / "model.weights.h5"
    stat = weights.stat()
    return f"{weights.resolve()}|{stat.st_size}|{int(stat.st_mtime)}"


def _multi_output(model):
    """``model`` (a loaded musicnn tagger) answering with :data:`LAYERS` through the traced forward path."""
    import keras

    tagger = model.keras_model
    outputs = [tagger.get_layer(name).output for name in LAYERS[:-1]] + [tagger.output]
    return dataclasses.replace(model, keras_model=keras.Model(tagger.inputs, outputs, name=f"{tagger.name}_layers"),
                               _graph=None)


def embed_files(base: str, data: Sequence[str | Path], *, track_ids: Sequence[str] | None = None,
                hop_seconds: float | None = None, cache_dir: Path = EMBEDDING_CACHE,
                precision: str = "float32", augment: str | None = None) -> Embedded:
    """The cached musicnn outputs of every file of ``track_ids`` (default: every track of ``data``).

    Parameters
    ----------
    base : str
        A musicnn tagger model folder or name (``musicnn_msd``, ``musicnn_mtt``).
    data : sequence of path
        GTZAN-layout audio folders.
    track_ids : sequence of str, optional
    hop_seconds : float, optional
        ``None``: back-to-back segments exactly as served. Else windows every ``hop_seconds``.
    cache_dir : Path
    precision : str
        ``float32`` (training's default) or ``bfloat16``.
    augment : str, optional
        A recording chain of :func:`training.recording_chain.degrade` (``band``, ``shellac``, ``noise10``):
        every file as that chain would give it, seeded by the file's name, cut as served. ``None``: as it is.
    """
    from codeFeature.features import segment_features
    from codeFeature.model_io import load_model

    model = load_model(base, precision=precision)
    tracks = find_audio(data)
    ids = list(tracks) if track_ids is None else [t for t in track_ids if t in tracks]
    forward = None
    digest = _weights_digest(model)
    parts: dict[str, list] = {k: [] for k in LAYERS}
    ys, ts = [], []
    for track in ids:
        for path in tracks[track]:
            stat = path.stat()
            fields = [str(path.resolve()), stat.st_size, int(stat.st_mtime), digest, model.config.to_dict(),
                      hop_seconds, precision] + ([augment] if augment else [])  # the clean key is unchanged
            key = hashlib.sha1(json.dumps(fields).encode()).hexdigest()
            cached = Path(cache_dir) / model.name / f"{key}.npz"
            if cached.exists():
                with np.load(cached) as record:
                    outs = [record[k] for k in LAYERS]
            else:
                if forward is None:
                    forward = _multi_output(model)
                if hop_seconds is None and not augment:
                    segments = file_segments(path, model.config)
                else:
                    from codeFeature.audio import decode
                    from codeFeature.segments import segment_array

                    samples = decode(path, sample_rate=model.config.sample_rate)
                    if augment:
                        from training.recording_chain import degrade

                        seed = zlib.crc32(f"{path.name}|{path.parent.parent.name}|{augment}".encode())
                        samples = degrade(samples, augment, model.config.sample_rate, seed)
                    segments = (segment_array(samples, model.config)[0] if hop_seconds is None
                                else overlapping_segments(samples, model.config, hop_seconds))
                outs = forward.forward(segment_features(segments, model.config))
                cached.parent.mkdir(parents=True, exist_ok=True)
                tmp = cached.with_suffix(".tmp.npz")
                with open(tmp, "wb") as handle:
                    np.savez(handle, **dict(zip(LAYERS, outs)))
                tmp.replace(cached)  # atomic: an interrupted run never leaves a half-written record
            for k, v in zip(LAYERS, outs):
                parts[k].append(np.asarray(v, np.float32))
            n = len(outs[0])
            ys.append(np.full(n, GENRES.index(track.split(".")[0])))
            ts.append(np.full(n, track, dtype=object))
    if not ys:
        raise ValueError("no audio for the requested tracks")
    return Embedded({k: np.concatenate(v) for k, v in parts.items()}, np.concatenate(ys),
                    np.concatenate(ts).astype(str))


def main(argv=None) -> int:
    """Fill the cache: ``python -m training.musicnn_embeddings --gtzan DIR`` (both bases, back-to-back and 1.5 s hop)."""
    import argparse
    import time

    from training.datasets import add_gtzan_argument, audio_data

    parser = argparse.ArgumentParser(description="Compute and cache musicnn embeddings of GTZAN audio")
    add_gtzan_argument(parser)
    parser.add_argument("--data", nargs="+", type=Path,
                        help="GTZAN-layout audio folders (default: the audio of the dataset --gtzan finds)")
    parser.add_argument("--bases", nargs="+", default=["musicnn_msd", "musicnn_mtt"])
    parser.add_argument("--hops", nargs="+", type=float, default=[0.0, 1.5], help="0 = back-to-back")
    parser.add_argument("--cache", type=Path, default=EMBEDDING_CACHE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args.data = audio_data(args.data, args.gtzan)
    for base in args.bases:
        for hop in args.hops:
            t0 = time.perf_counter()
            e = embed_files(base, args.data, hop_seconds=hop or None, cache_dir=args.cache)
            print(f"{base} hop={hop or 'none'}: {len(e.y)} segments of {e.n_tracks} tracks "
                  f"in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    from codeFeature.runtime import prepare_process

    prepare_process()  # an entry point: before TensorFlow starts
    from training.datasets import exit_on_missing_data

    raise SystemExit(exit_on_missing_data(main)())
