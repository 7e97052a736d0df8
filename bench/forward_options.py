"""What the forward pass costs under each TensorFlow option we considered, per model.

Each option runs in a fresh process (TensorFlow reads most of them once, at start, and a clean
process gives a clean peak-memory figure). For each it prints milliseconds per segment (the best
of several passes over 64 random inputs, after a warm-up pass), the process's peak resident memory,
and the largest difference in output from float32 with the library's settings::

    python bench/forward_options.py                       # musicnn_genre
    python bench/forward_options.py --model cnn_mfcc_small

Options:

* ``batch=N``: segments per forward call (the library uses ``LoadedModel.forward_batch``);
* ``pooled allocator``: oneDNN's own memory pool, TensorFlow's default, which the library turns
  off with ``TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1``;
* ``xla``: the traced forward compiled with ``jit_compile=True``;
* ``bf16``: TensorFlow's oneDNN auto-mixed-precision rewrite of the whole graph to bfloat16 (slow:
  it also rewrites the temporal convolutions, whose long kernels oneDNN runs badly in bfloat16);
* ``precision=bfloat16``: the library's own bfloat16 path (``load_model(precision="bfloat16")``,
  what ``"auto"`` picks on CPUs with AMX-BF16 / AVX512-BF16): only the manifest's
  ``bfloat16_layers`` (musicnn's timbral convolutions) compute in bfloat16;
* ``TF_SET_ONEDNN_FPMATH_MODE=BF16``: oneDNN may compute any float32 convolution or matmul in bfloat16;
* ``inter-op 1``: one inter-op thread, so that the front end's five branches run one after another.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
MARK = "RESULT "
N_SEGMENTS = 64

#: name -> (environment, worker options)
OPTIONS = {
    "float32 (batch 4 for musicnn, system allocator)": ({}, {}),
    "batch=1": ({}, {"batch": 1}),
    "batch=4": ({}, {"batch": 4}),
    "batch=16": ({}, {"batch": 16}),
    "batch=16, pooled allocator": ({"TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "0"}, {"batch": 16}),
    "pooled allocator": ({"TF_ONEDNN_USE_SYSTEM_ALLOCATOR": "0"}, {}),
    "xla": ({}, {"xla": True}),
    "bf16 (oneDNN auto mixed precision)": ({}, {"bf16": True}),
    "bf16, batch=4": ({}, {"bf16": True, "batch": 4}),
    "inter-op 1": ({}, {"inter_op": 1}),
    "TF_SET_ONEDNN_FPMATH_MODE=BF16": ({"TF_SET_ONEDNN_FPMATH_MODE": "BF16"}, {}),
    "precision=bfloat16 (auto on this CPU)": ({}, {"precision": "bfloat16"}),
    "precision=bfloat16, batch=2": ({}, {"precision": "bfloat16", "batch": 2}),
    "precision=bfloat16, batch=8": ({}, {"precision": "bfloat16", "batch": 8}),
}


def worker(model_name: str, options: dict, reference: str | None) -> None:
    import time

    import numpy as np

    import codeFeature  # noqa: F401  (sets the allocator default before TensorFlow starts)
    import tensorflow as tf

    if options.get("inter_op"):
        tf.config.threading.set_inter_op_parallelism_threads(options["inter_op"])
    if options.get("bf16"):
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    from codeFeature.model_io import load_model

    model = load_model(model_name, precision=options.get("precision", "float32"))
    batch = options.get("batch") or model.forward_batch
    x = np.random.default_rng(0).standard_normal((N_SEGMENTS, *model.config.input_shape)).astype(np.float32)
    graph = tf.function(lambda a: model.keras_model(a, training=False), jit_compile=bool(options.get("xla")),
                        reduce_retracing=True,
                        input_signature=[tf.TensorSpec((None, *model.config.input_shape), tf.float32)])

    def run():
        outs = [graph(x[lo:lo + batch]) for lo in range(0, N_SEGMENTS, batch)]
        return np.concatenate([np.asarray(o[0] if isinstance(o, (list, tuple)) else o) for o in outs])

    out = run()  # warm-up: tracing, compilation, primitive creation
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    peak = next(int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    diff = None
    if reference is None:
        np.save(os.environ["FORWARD_REFERENCE"], out)
    else:
        diff = float(np.abs(out - np.load(reference)).max())
    print(MARK + json.dumps({"ms_per_segment": 1000 * min(times) / N_SEGMENTS, "peak_mb": peak,
                             "batch": batch, "max_abs_diff": diff}), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="musicnn_genre")
    parser.add_argument("--only", nargs="+", metavar="TEXT", help="run only the options whose name contains a TEXT "
                                                                   "(the float32 reference always runs)")
    parser.add_argument("--_worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._worker:
        options, reference = json.loads(args._worker[0]), args._worker[1]
        worker(args.model, options, None if reference == "-" else reference)
        return 0
    import tempfile

    reference = Path(tempfile.mkdtemp()) / "reference.npy"
    print(f"{args.model}: forward pass over {N_SEGMENTS} random inputs, best of 5, each option in a new process; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'option':50s} {'ms/segment':>10s} {'batch':>5s} {'peak MB':>8s} {'max |diff|':>10s}")
    for i, (name, (env, options)) in enumerate(OPTIONS.items()):
        if i and args.only and not any(text in name for text in args.only):
            continue
        command = [sys.executable, str(Path(__file__).resolve()), "--model", args.model,
                   "--_worker", json.dumps(options), "-" if i == 0 else str(reference)]
        result = subprocess.run(command, capture_output=True, text=True, cwd=REPO,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "FORWARD_REFERENCE": str(reference),
                                     **env})
        lines = [line for line in result.stdout.splitlines() if line.startswith(MARK)]
        if result.returncode != 0 or not lines:
            print(f"{name:50s} failed: {result.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(lines[-1][len(MARK):])
        diff = "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}"
        print(f"{name:50s} {r['ms_per_segment']:10.1f} {r['batch']:5d} {r['peak_mb']:8.0f} {diff:>10s}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
