"""One GTZAN track's segment probabilities under TensorFlow float32 and another path, and each one's vote.

Shows why a path moves a track's verdict (a near tie in float32, or a real change)::

    ONEDNN_MAX_CPU_ISA=AVX2 python -m bench.track_margin models/musicnn_genre_lr disco.00004 --precision int8
    python -m bench.track_margin musicnn_genre blues.00012 --gtzan /path/to/gtzan

Under ``ONEDNN_MAX_CPU_ISA=AVX2`` the int8 path has 7-bit input codes, as on an AVX2 CPU.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv=None) -> int:
    from training.datasets import add_gtzan_argument, audio_data, exit_on_missing_data

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a model name or folder")
    parser.add_argument("track", help="a GTZAN track id, e.g. disco.00004")
    parser.add_argument("--precision", default="int8", help="the other path's precision (default int8)")
    parser.add_argument("--engine", default="auto", help="the other path's engine (default auto)")
    add_gtzan_argument(parser)
    args = parser.parse_args(argv)

    @exit_on_missing_data
    def run() -> int:
        from codeFeature.config import FeatureConfig
        from codeFeature.errors import ConfigError, ModelError
        from codeFeature.model_io import load_model, read_manifest, resolve_model_dir
        from training.data import load_set
        from training.metrics import track_votes

        try:
            manifest = read_manifest(resolve_model_dir(args.model))
        except ModelError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:  # the audio first: a wrong track id is told before two models are loaded
            data = load_set(audio_data(None, args.gtzan), [args.track],
                            FeatureConfig.from_dict(manifest["feature_config"]))
        except ValueError as exc:
            print(f"error: {args.track}: {exc}", file=sys.stderr)
            return 2
        try:
            reference = load_model(args.model, precision="float32", engine="tensorflow")
            other = load_model(args.model, precision=args.precision, engine=args.engine)
        except (ConfigError, ModelError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        np.set_printoptions(precision=3, suppress=True, linewidth=150)
        print("labels:", ", ".join(reference.labels))
        for name, model in (("float32 (TensorFlow)", reference), (other.inference_path, other)):
            probs = model.forward(data.x)[0]
            vote = track_votes(probs, data.y, data.tracks)[1][0]
            print(f"{name}: vote {reference.labels[vote]}")
            for row in probs:
                print("   ", row)
        return 0

    return run()


if __name__ == "__main__":
    sys.exit(main())
