"""Print the models table of docs/models.md from the shipped models' manifests.

Every figure comes from a manifest that the model's own ``reproduce`` command wrote.

    python -m training.models_table
"""

from __future__ import annotations

import argparse

from codeFeature.model_io import default_model_name, list_models, read_manifest, resolve_model_dir
from training.compare import input_label


def table() -> str:
    default = default_model_name()
    rows = ["| model | task | input | parameters | valid tracks: accuracy (n) | valid segments: accuracy (n) "
            "| artist 5-fold CV: accuracy (n) | ECE, valid tracks | reproduce |", "|---|---|---|---|---|---|---|---|---|"]
    for name in list_models():
        m = read_manifest(resolve_model_dir(name))
        cfg = m["feature_config"]
        shown = f"**{name}** (default)" if name == default else name
        valid = m.get("metrics", {}).get("valid")
        if valid:
            tracks = f"{valid['track_accuracy']:.1%} ({valid['tracks']})"
            segments = f"{valid['segment_accuracy']:.1%} ({valid['segments']})"
        else:
            tracks = segments = "not a genre model" if m.get("task") != "genre" else "not measured"
        params = f"{m['parameters']:,}" if "parameters" in m else "–"
        cv = m.get("metrics", {}).get("cv_artist_5fold")
        cv_cell = f"{cv['track_accuracy']:.1%} ± {cv['track_accuracy_std']:.1%} ({cv['tracks']})" if cv else "–"
        ece = (valid or {}).get("ece")
        ece_cell = f"{ece['track']:.3f}" if isinstance(ece, dict) else "–"
        rows.append(f"| {shown} | {m.get('task', 'genre')} | {input_label(cfg, m['input_shape'])} | {params} "
                    f"| {tracks} | {segments} | {cv_cell} | {ece_cell} | `{m.get('reproduce', '')}` |")
    return "\n".join(rows)


def main(argv=None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    print(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
