"""Test-time choices and "not sure" thresholds of a genre model, measured on valid.

For each ``--model`` (a model folder or a shipped name):

1. **Test-time choices**: on the valid tracks longer than one segment, the track accuracy of
   back-to-back 3 s segments (as served) against 3 s windows every 1.5 s, each with the
   majority vote and with the mean probability. A choice is adopted only if it wins by at least
   ``--min-gain`` tracks (default 2: with ~30 such tracks, one track is noise); otherwise the
   design's defaults stay (back-to-back segments, vote). Serving has no overlap option, so
   overlap could only be reported, and the aggregate goes into the manifest's ``decision``.
2. **Not-sure thresholds** (``min_confidence``, ``min_margin``): on all valid tracks, the pair
   that flags the most wrong answers while flagging at most ``--max-right-flagged`` (default
   10 %) of the right ones (ties: fewer right answers flagged, then the smaller thresholds).
   ``min_tag`` (models with musicnn tags): the largest value that flags no valid track at all,
   times ``--tag-safety`` (0.5), so that music is never called "not music" on valid.
3. **Firing rates**: how often the rule says "not sure" on valid and on a corpus of odd inputs
   built here (white and pink noise, clicks, silence, near-silence, a sine, a sweep, a square
   wave, mains hum).

Valid probabilities come from ``--select-with`` when given: for a model refit on train + valid,
pass its train-only twin (``runs/musicnn_genre_train_only``), whose valid answers are held out.

``--from-cv FILE`` fits the not-sure thresholds on the held-out answers of the recipe's repeated
artist-grouped cross-validation instead (``held_out_answers.json``, written by
``python -m training.head_cv_report``): every track of train + valid in all ten genres, each answered by
a head that never saw its artist, rather than the 98 valid tracks, which hold no hiphop or reggae
track. The criterion is the same; valid's answers are still reported beside it.

    python -m training.decision_thresholds --model runs/musicnn_genre --select-with runs/musicnn_genre_train_only
    python -m training.decision_thresholds --model models/musicnn_genre --select-with runs/musicnn_genre_train_only \\
        --write-manifest --write-report      # writes the decision key and reports/<model>/decision/

Results go to ``runs/decision/<model>/`` unless ``--write-report``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from codeFeature.runtime import prepare_process  # noqa: E402  (before TensorFlow and librosa)

prepare_process()

import numpy as np

from training.data import REPO_ROOT, RUNS_DIR, VALID_SPLIT, display_path, find_audio, read_split
from training.datasets import add_gtzan_argument, audio_data, exit_on_missing_data

log = logging.getLogger("training.decision_thresholds")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", nargs="+", required=True)
    p.add_argument("--select-with", nargs="+", help="model folders giving held-out valid answers, one per --model")
    add_gtzan_argument(p)
    p.add_argument("--data", nargs="+", type=Path,
                   help="GTZAN-layout audio folders (default: the audio of the dataset --gtzan finds)")
    p.add_argument("--valid-split", type=Path, default=VALID_SPLIT)
    p.add_argument("--from-cv", type=Path, metavar="FILE",
                   help="fit min_confidence and min_margin on these held-out cross-validation answers "
                        "(held_out_answers.json of python -m training.head_cv_report) instead of valid")
    p.add_argument("--max-right-flagged", type=float, default=0.10)
    p.add_argument("--tag-safety", type=float, default=0.5)
    p.add_argument("--min-gain", type=int, default=2, help="tracks a test-time choice must win by to be adopted")
    p.add_argument("--hop", type=float, default=1.5, help="overlapping windows' hop in seconds")
    p.add_argument("--write-manifest", action="store_true", help="write the 'decision' key into each model's manifest")
    p.add_argument("--write-report", action="store_true", help="write to reports/<model>/decision/ (tracked)")
    p.add_argument("--out", type=Path, default=RUNS_DIR / "decision")
    p.add_argument("--labelled", type=Path, metavar="DIR",
                   help="only measure, choose nothing: each model's answers on DIR's audio, labelled by DIR/labels.csv "
                        "(columns file,label; a label among the model's, or outside:<what>): accuracy when sure on "
                        "the in-genre files, and how many outside files it hedges; written to labelled.json")
    return p.parse_args(argv)


def read_labels(folder: Path) -> list[tuple[str, str]]:
    """``(file, label)`` rows of ``folder/labels.csv`` (a header row naming ``file`` and ``label``)."""
    import csv

    path = Path(folder) / "labels.csv"
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "file" not in rows[0] or "label" not in rows[0]:
        raise ValueError(f"{path} has no 'file' and 'label' columns")
    return [(r["file"], r["label"].strip()) for r in rows]


def labelled_check(model_ref: str, folder: Path) -> dict:
    """The answers of ``model_ref`` on a labelled folder, as the CLI gives them (its manifest's whole rule).

    In-genre files (label among the model's labels) give the accuracy when sure (right / answered as sure)
    and the accuracy of every answer; other labels (``outside:...``) count as hedged when the answer is not
    one sure genre. Nothing is fitted or chosen here: a small set of real recordings only checks.
    """
    from codeFeature.model_io import load_model
    from codeFeature.predict import predict_file

    model = load_model(model_ref)
    labels = set(model.labels)
    rows = []
    for name, label in read_labels(folder):
        row = {"file": name, "label": label}
        try:
            v = predict_file(Path(folder) / name, model=model).verdict
        except Exception as exc:  # a file that cannot be decoded is reported, not fatal
            row["error"] = f"{type(exc).__name__}: {exc}"
        else:
            row.update({"genre": v.genre, "confidence": round(float(v.confidence), 4), "not_sure": bool(v.not_sure),
                        "state": getattr(v, "state", "not_sure" if v.not_sure else "genre")})
        rows.append(row)
    ok = [r for r in rows if "error" not in r]
    inside = [r for r in ok if r["label"] in labels]
    sure = [r for r in inside if not r["not_sure"]]
    outside = [r for r in ok if r["label"] not in labels]
    return {"model": model.name, "folder": str(display_path(folder)), "files": len(rows),
            "errors": [r["file"] for r in rows if "error" in r],
            "in_genre": {"files": len(inside), "right": sum(r["genre"] == r["label"] for r in inside),
                         "sure": len(sure), "right_when_sure": sum(r["genre"] == r["label"] for r in sure),
                         "accuracy_when_sure": round(sum(r["genre"] == r["label"] for r in sure) / len(sure), 4)
                         if sure else None},
            "outside": {"files": len(outside), "hedged": sum(r["not_sure"] for r in outside)},
            "rows": rows}


# ------------------------------------------------------------------ odd inputs

def odd_inputs(sample_rate: int = 16000, seconds: float = 10.0) -> dict[str, np.ndarray]:
    """Signals that are not music in any of the ten genres (the odd-input corpus, synthesised)."""
    rng = np.random.default_rng(0)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    white = rng.normal(0, 0.3, n)
    spectrum = np.fft.rfft(rng.normal(size=n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    pink = np.fft.irfft(spectrum, n)
    clicks = np.zeros(n)
    clicks[:: sample_rate // 2] = 0.9
    signals = {
        "white noise": white,
        "pink noise": 0.3 * pink / np.abs(pink).max(),
        "clicks (2 a second)": clicks,
        "silence": np.zeros(n),
        "near-silence (-90 dBFS noise)": rng.normal(0, 10 ** (-90 / 20), n),
        "sine 440 Hz": 0.5 * np.sin(2 * np.pi * 440 * t),
        "sine sweep 50 Hz-8 kHz": 0.5 * np.sin(2 * np.pi * 50 * seconds / np.log(160) * (160 ** (t / seconds) - 1)),
        "square wave 110 Hz": 0.3 * np.sign(np.sin(2 * np.pi * 110 * t)),
        "mains hum 50 Hz": 0.3 * np.sin(2 * np.pi * 50 * t) + 0.1 * np.sin(2 * np.pi * 150 * t),
    }
    return {k: np.clip(v, -1, 1).astype(np.float32) for k, v in signals.items()}


# ------------------------------------------------------------------ valid answers

def valid_answers(model, data, split, hop: float | None):
    """Per valid segment: probabilities, tags (or None), track ids and genre index, cut as served (or overlapped)."""
    from codeFeature.audio import decode
    from codeFeature.config import GENRES
    from codeFeature.features import segment_features
    from training.data import file_segments
    from training.musicnn_embeddings import overlapping_segments

    tracks = find_audio(data)
    probs, tags, ids, ys = [], [], [], []
    for track in read_split(split):
        for path in tracks.get(track, []):
            if hop is None:
                segments = file_segments(path, model.config)
            else:
                segments = overlapping_segments(decode(path, sample_rate=model.config.sample_rate), model.config, hop)
            out = model.forward(segment_features(segments, model.config))
            probs.append(out[0])
            tags.append(out[1] if len(out) > 1 else np.zeros((len(out[0]), 0)))
            ids += [track] * len(out[0])
            ys += [GENRES.index(track.split(".")[0])] * len(out[0])
    return np.concatenate(probs), np.concatenate(tags), np.array(ids), np.array(ys)


def per_track(probs, tags, ids, ys, aggregate):
    from codeFeature.decision import winner_index

    rows = []
    for t in sorted(set(ids.tolist())):
        m = ids == t
        mean = probs[m].mean(axis=0)
        win = winner_index(probs[m], aggregate)
        runner = max((i for i in range(len(mean)) if i != win), key=lambda i: mean[i])
        rows.append({"track": t, "segments": int(m.sum()), "right": bool(win == ys[m][0]),
                     "confidence": float(mean[win]), "margin": float(mean[win] - mean[runner]),
                     "tag": float(tags[m].mean(axis=0).max()) if tags.shape[1] else None})
    return rows


def read_cv_answers(path: Path) -> tuple[list[dict], dict]:
    """The rows of a ``held_out_answers.json`` (``right``, ``confidence``, ``margin``; ``tag`` None) and its header."""
    data = json.loads(Path(path).read_text())
    try:
        rows = [{"track": a["track"], "repeat": int(a["repeat"]), "right": bool(a["right"]),
                 "confidence": float(a["confidence"]), "margin": float(a["margin"]), "tag": None}
                for a in data["answers"]]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path} is not a held_out_answers.json of python -m training.head_cv_report") from None
    if not rows:
        raise ValueError(f"{path} holds no answers")
    return rows, {k: v for k, v in data.items() if k != "answers"}


def choose_thresholds(rows, max_right_flagged: float) -> dict:
    right = [r for r in rows if r["right"]]
    wrong = [r for r in rows if not r["right"]]
    best = None
    for c in np.round(np.arange(0, 0.81, 0.01), 2):
        for m in np.round(np.arange(0, 0.51, 0.01), 2):
            flag = lambda r: r["confidence"] < c or r["margin"] < m  # noqa: E731
            fr = sum(map(flag, right))
            if fr > max_right_flagged * len(right):
                continue
            key = (sum(map(flag, wrong)), -fr, -(c + m))
            if best is None or key > best[0]:
                best = (key, float(c), float(m))
    return {"min_confidence": best[1], "min_margin": best[2]}


def firing(rows, rule) -> dict:
    def flag(r):
        return (r["confidence"] < rule["min_confidence"] or r["margin"] < rule["min_margin"]
                or (r["tag"] is not None and r["tag"] < rule.get("min_tag", 0)))

    right = [r for r in rows if r["right"]]
    wrong = [r for r in rows if not r["right"]]
    return {"tracks": len(rows), "flagged": sum(map(flag, rows)),
            "right": len(right), "right_flagged": sum(map(flag, right)),
            "wrong": len(wrong), "wrong_flagged": sum(map(flag, wrong)),
            "accuracy_when_sure": round(sum(not flag(r) for r in right) / max(1, sum(not flag(r) for r in rows)), 4)}


def test_time(model, args) -> dict:
    """Track accuracy on valid tracks longer than one segment: back-to-back vs overlapped, vote vs mean."""
    answers = {"back-to-back": valid_answers(model, args.data, args.valid_split, None),
               f"{args.hop:g} s hop": valid_answers(model, args.data, args.valid_split, args.hop)}
    plain_ids = answers["back-to-back"][2]
    long_tracks = sorted(t for t in set(plain_ids.tolist()) if (plain_ids == t).sum() > 1)
    table = {}
    for name, (p, g, ids, ys) in answers.items():
        m = np.isin(ids, long_tracks)
        for aggregate in ("vote", "mean"):
            rows = per_track(p[m], g[m], ids[m], ys[m], aggregate)
            table[f"{name}, {aggregate}"] = {"right": sum(r["right"] for r in rows), "tracks": len(rows),
                                             "track_accuracy": round(float(np.mean([r["right"] for r in rows])), 4)}
    base = table["back-to-back, vote"]["right"]
    mean_gain = table["back-to-back, mean"]["right"] - base
    overlap_gain = max(table[f"{args.hop:g} s hop, vote"]["right"], table[f"{args.hop:g} s hop, mean"]["right"]) - base
    return {"tracks_longer_than_one_segment": len(long_tracks), "table": table,
            "aggregate": "mean" if mean_gain >= args.min_gain else "vote",
            "overlap_adopted": False,
            "overlap_note": (f"overlap gains {overlap_gain:+d} tracks over back-to-back voting"
                             + (" (not adopted: serving cuts back-to-back segments; the gain is reported only)"
                                if overlap_gain >= args.min_gain else f" (below the {args.min_gain}-track bar: "
                                                                      "back-to-back stays the default)")),
            "answers": answers["back-to-back"]}


def odd_firing(model, rule_dict, outside=None) -> dict:
    """The answers on :func:`odd_inputs` under the thresholds of ``rule_dict``, with the manifest's
    ``outside`` rule (a dict, as in the manifest) when given: the whole rule a person's answer comes from."""
    from codeFeature.decision import DecisionRule, OutsideRule, decide
    from codeFeature.predict import predict_audio

    rule = DecisionRule(**{k: rule_dict[k] for k in ("aggregate", "min_confidence", "min_margin", "min_tag")},
                        outside=OutsideRule.from_dict(outside) if outside else None)
    out = {}
    for name, signal in odd_inputs(model.config.sample_rate).items():
        prediction = predict_audio(signal, model=model, sample_rate=model.config.sample_rate)
        v = decide(prediction.probabilities, model.labels, rule=rule, rms=prediction.rms,
                   tags=prediction.extras.get("tags"))
        out[name] = {"not_sure": v.not_sure, "headline": v.headline, "confidence": round(v.confidence, 3),
                     "reasons": list(v.reasons)}
    return out


def run_one(model_ref: str, select_ref: str | None, args) -> dict:
    from codeFeature.model_io import load_model, read_manifest, resolve_model_dir

    model = load_model(model_ref, precision="float32")
    selector = load_model(select_ref, precision="float32") if select_ref else model
    tt = test_time(selector, args)
    aggregate = tt.pop("aggregate")
    probs, tags, ids, ys = tt.pop("answers")
    rows = per_track(probs, tags, ids, ys, aggregate)
    cv = None
    if args.from_cv is not None:
        cv_rows, cv_info = read_cv_answers(args.from_cv)
        if aggregate != "vote":
            raise ValueError("the cross-validation answers are votes: --from-cv needs the 'vote' aggregate")
        cv = {"rows": cv_rows, "info": cv_info}
    rule = {"aggregate": aggregate, **choose_thresholds(cv["rows"] if cv else rows, args.max_right_flagged)}
    if tags.shape[1]:
        strongest = min(r["tag"] for r in rows)
        rule["min_tag"] = float(np.floor(strongest * args.tag_safety * 1000) / 1000)
    else:
        rule["min_tag"] = 0.0
    folder = resolve_model_dir(model_ref)
    command = ("python -m training.decision_thresholds --model " + str(display_path(folder))
               + (f" --select-with {display_path(resolve_model_dir(select_ref))}" if select_ref else "")
               + (f" --from-cv {display_path(args.from_cv)}" if cv else "")
               + " --write-manifest --write-report")
    if cv:
        n_tracks = len({r["track"] for r in cv["rows"]})
        fitted_on = (f"the {len(cv['rows'])} held-out answers of the recipe's artist-grouped cross-validation "
                     f"({n_tracks} tracks of train + valid, all ten genres, {cv['info'].get('reproduce', '?')})")
    else:
        fitted_on = f"the {len(rows)} valid tracks (answers of {selector.name}, fit without valid)"
    rule["source"] = (f"{command}: on {fitted_on}, the thresholds that flag the most wrong answers "
                      f"while flagging at most {args.max_right_flagged:.0%} of right ones; min_tag = "
                      f"{args.tag_safety:g} x the weakest valid track's strongest tag")
    result = {"model": model.name, "selected_with": selector.name, "rule": rule,
              "valid": firing(rows, rule), "test_time": tt,
              "odd_inputs": odd_firing(model, rule, (read_manifest(folder).get("decision") or {}).get("outside")),
              "criterion": rule["source"]}
    if cv:
        result["cross_validation"] = firing(cv["rows"], rule)
        result["cross_validation"]["tracks_distinct"] = n_tracks
        result["cross_validation"]["source"] = cv["info"].get("reproduce")
    result["odd_inputs_flagged"] = f"{sum(v['not_sure'] for v in result['odd_inputs'].values())}/{len(result['odd_inputs'])}"
    if args.write_manifest:
        manifest = read_manifest(folder)
        # the rule's own keys are replaced; the others (the "outside" rule, fitted by its own command) stay
        manifest["decision"] = {**rule, **{k: v for k, v in (manifest.get("decision") or {}).items()
                                           if k not in rule}}
        _write_atomic(folder / "manifest.json", json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    outs = [args.out / model.name] + ([REPO_ROOT / "reports" / model.name / "decision"] if args.write_report else [])
    for out in outs:
        out.mkdir(parents=True, exist_ok=True)
        (out / "decision.json").write_text(json.dumps(result, indent=1) + "\n")
        (out / "README.md").write_text(markdown(result, command))
    return result


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` beside ``path`` and rename it over: a kill never leaves a half-written manifest."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def markdown(r, command) -> str:
    v, rule = r["valid"], r["rule"]
    lines = [f"# {r['model']}: test-time choices and 'not sure' thresholds", "",
             f"Generated by `{command}`.", "",
             "## Test-time choices (valid tracks longer than one segment, answers of "
             f"{r['selected_with']})", "", "| segments, aggregate | right / tracks | track accuracy |", "|---|---|---|"]
    for k, t in r["test_time"]["table"].items():
        lines.append(f"| {k} | {t['right']}/{t['tracks']} | {t['track_accuracy']:.3f} |")
    lines += ["", f"Adopted aggregate: **{rule['aggregate']}**. {r['test_time']['overlap_note']}.", "",
              "## Not sure", "", f"Rule: min_confidence {rule['min_confidence']:g}, min_margin {rule['min_margin']:g}, "
              f"min_tag {rule['min_tag']:g}. Criterion: {rule['source'].split(': ', 1)[1]}.", "",
              f"On valid ({v['tracks']} tracks): says not sure on {v['flagged']} ({v['flagged'] / v['tracks']:.0%}): "
              f"{v['wrong_flagged']} of the {v['wrong']} wrong answers and {v['right_flagged']} of the {v['right']} "
              f"right ones; accuracy on the answers it is sure of: {v['accuracy_when_sure']:.1%}.", ""]
    c = r.get("cross_validation")
    if c:
        lines += [f"On the held-out answers of the artist-grouped cross-validation ({c['tracks']} answers, "
                  f"{c['tracks_distinct']} distinct tracks of all ten genres): says not sure on {c['flagged']} "
                  f"({c['flagged'] / c['tracks']:.0%}): {c['wrong_flagged']} of the {c['wrong']} wrong answers and "
                  f"{c['right_flagged']} of the {c['right']} right ones; accuracy on the answers it is sure of: "
                  f"{c['accuracy_when_sure']:.1%}.", ""]
    lines += [
              f"Odd inputs ({r['odd_inputs_flagged']} hedged by the whole rule, the manifest's 'outside' rule "
              "included when it has one):", "", "| input | answer | confidence | why |",
              "|---|---|---|---|"]
    for name, o in r["odd_inputs"].items():
        lines.append(f"| {name} | {o['headline']} | {o['confidence']:.0%} | {'; '.join(o['reasons']) or '-'} |")
    return "\n".join(lines) + "\n"


@exit_on_missing_data
def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    summary = {}
    if args.labelled is not None:
        try:
            read_labels(args.labelled)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        for model_ref in args.model:
            r = labelled_check(model_ref, args.labelled)
            r["reproduce"] = (f"python -m training.decision_thresholds --model {model_ref} --labelled DIR"
                              + (" --write-report" if args.write_report else ""))
            outs = [args.out / r["model"]] + ([REPO_ROOT / "reports" / r["model"] / "decision"]
                                              if args.write_report else [])
            for out in outs:
                out.mkdir(parents=True, exist_ok=True)
                _write_atomic(out / "labelled.json", json.dumps(r, indent=1) + "\n")
            summary[r["model"]] = {k: r[k] for k in ("files", "errors", "in_genre", "outside")}
        print(json.dumps(summary))
        return 0
    args.data = audio_data(args.data, args.gtzan)
    selects = args.select_with or [None] * len(args.model)
    if len(selects) != len(args.model):
        print("error: give one --select-with per --model", file=sys.stderr)
        return 2
    summary = {}
    for model_ref, select_ref in zip(args.model, selects):
        r = run_one(model_ref, select_ref if select_ref not in ("-", "none") else None, args)
        summary[r["model"]] = {"rule": {k: v for k, v in r["rule"].items() if k != "source"}, "valid": r["valid"],
                               "odd_inputs_flagged": r["odd_inputs_flagged"],
                               "test_time": r["test_time"]["table"]}
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
