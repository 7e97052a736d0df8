"""Snapshot every output of the signal path, to prove a refactor changed no answer, bit for bit.

    python -m bench.signal_path_snapshot record OUT.npz [SONG ...]
    python -m bench.signal_path_snapshot compare BEFORE.npz AFTER.npz

``record`` stores, for two synthesised files (44.1 kHz stereo wav, 48 kHz flac) and the SONGs given:
``load_audio`` at 16 and 22.05 kHz; ``predict_file`` probabilities (and tags) of every shipped model;
``predict_audio`` of a signal at 44.1, 22.05 and 16 kHz; a live ``StreamClassifier`` fed 44.1 kHz stereo
frames; the GTZAN table's features and the spectrogram pictures at three rates; and the command line's
``--json`` output for the files. Run it on the commit before and the commit after (``git worktree add``),
then ``compare``: it lists every array that differs in shape, dtype or any bit, and exits 1 if one does.
Nothing is written but OUT.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _synth(folder: Path) -> tuple[np.ndarray, list[str]]:
    import soundfile as sf

    rng = np.random.default_rng(7)
    t = np.arange(int(44100 * 9.3)) / 44100
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t)),
                       0.2 * np.sin(2 * np.pi * 220 * t)], axis=1).astype(np.float32)
    sf.write(folder / "synth44k.wav", stereo, 44100, subtype="PCM_16")
    sf.write(folder / "synth48k.flac", stereo[:, 0], 48000)
    return stereo, [str(folder / "synth44k.wav"), str(folder / "synth48k.flac")]


def record(out: Path, songs: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="codefeature-snapshot-") as tmp:
        stereo, files = _synth(Path(tmp))
        files += songs
        res: dict[str, np.ndarray] = {}
        cli = subprocess.run([sys.executable, "-m", "codeFeature", "--json", *files], capture_output=True, text=True)
        # the synthesised files' names carry the temporary folder: keep the lines' content, not the folder
        res["cli_json"] = np.array(cli.stdout.replace(tmp, "TMP"))
        import codeFeature as cf
        from codeFeature.gtzan_features import gtzan_features, gtzan_features_batch
        from codeFeature.spectrogram_image import render_spectrogram_image, spectrogram_image_for_model
        from codeFeature.stream import StreamClassifier

        for f in files:
            for sr in (16000, 22050):
                res[f"load_audio:{Path(f).name}:{sr}"] = cf.load_audio(f, sample_rate=sr).samples
        for name in cf.list_models():
            model = cf.load_model(name)
            for f in files:
                p = cf.predict_file(f, model=model)
                res[f"file:{name}:{Path(f).name}"] = p.probabilities
                for key, value in p.extras.items():
                    res[f"file:{name}:{Path(f).name}:{key}"] = value
            for sr in (44100, 22050, 16000):
                res[f"audio:{name}:{sr}"] = cf.predict_audio(stereo[:, 0], model=model, sample_rate=sr).probabilities
            live = StreamClassifier(model)
            for lo in range(0, len(stereo), 4410):
                live.feed(stereo[lo: lo + 4410], sample_rate=44100)
                live.process()
            res[f"stream:{name}"] = live.finish().probabilities
        for sr in (22050, 44100, 16000):
            y = stereo[: sr * 6, 0]
            res[f"gtzan_features:{sr}"] = gtzan_features(y[: sr * 3], sample_rate=sr)
            res[f"gtzan_batch:{sr}"] = gtzan_features_batch(y.reshape(2, -1), sample_rate=sr)
            res[f"specimg:{sr}"] = np.asarray(render_spectrogram_image(y[: sr * 3], sample_rate=sr))
            res[f"specimg_model:{sr}"] = np.asarray(spectrogram_image_for_model(y[: sr * 3], sample_rate=sr))
    np.savez(out, **res)
    print(f"{len(res)} arrays written to {out}")
    return 0


def compare(before: Path, after: Path) -> int:
    a, b = np.load(before), np.load(after)
    missing = sorted(set(a.files) ^ set(b.files))
    differ = [k for k in sorted(set(a.files) & set(b.files))
              if not (a[k].shape == b[k].shape and a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]))]
    print(f"{len(set(a.files) & set(b.files))} arrays compared; in one file only: {missing or 'none'}; "
          f"different: {differ or 'none'}")
    return 1 if missing or differ else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="write a snapshot")
    rec.add_argument("out", type=Path)
    rec.add_argument("songs", nargs="*", help="further audio files")
    cmp_ = sub.add_parser("compare", help="compare two snapshots")
    cmp_.add_argument("before", type=Path)
    cmp_.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    if args.command == "record":
        return record(args.out, args.songs)
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
