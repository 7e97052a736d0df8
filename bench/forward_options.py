"""What the forward pass costs under each TensorFlow option we considered, per model.

Each option runs in a fresh process (TensorFlow reads most of them once, at start, and a clean
process gives a clean peak-memory figure). For each it prints milliseconds per segment (the best
of several passes over 64 random inputs, after a warm-up pass), the process's peak resident memory,
and the largest difference in output from float32 with the library's settings::

    python -m bench.forward_options                       # musicnn_genre
    python -m bench.forward_options --model cnn_mfcc_small

Options:

* ``batch=N``: segments per forward call (the library uses ``LoadedModel.forward_batch``);
* ``pooled allocator``: oneDNN's own memory pool, TensorFlow's default, which the library turns
  off with ``TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1``;
* ``xla``: the traced forward compiled with ``jit_compile=True``;
* ``bf16``: TensorFlow's oneDNN auto-mixed-precision rewrite of the whole graph to bfloat16 (slow:
  it also rewrites the temporal convolutions, whose long kernels oneDNN runs badly in bfloat16);
* ``precision=bfloat16``: the library's own bfloat16 path (``load_model(precision="bfloat16")``,
  what ``"auto"`` picks on CPUs with AMX): only the manifest's
  ``bfloat16_layers`` (musicnn's timbral convolutions) compute in bfloat16;
* ``TF_SET_ONEDNN_FPMATH_MODE=BF16``: oneDNN may compute any float32 convolution or matmul in bfloat16;
* ``inter-op 1``: one inter-op thread, so that the front end's five branches run one after another;
* ``intra-op 1``: one thread per op (the CPU seconds per segment of a single core);
* ``engine=openvino ...``: the model converted to OpenVINO at load time (``codeFeature.engines``):
  float32, bfloat16 (the whole graph), or the heavy convolutions in int8 with float32 elsewhere, their
  kernels GPTQ-rounded against the folder's calibration or (``plain rounding``) rounded to nearest
  (then only the timbral ones are int8). ``timbral convolutions only`` keeps the temporal ones in
  float32 (the calibration before they joined); ``no polyphase / row stacking`` quantises every
  convolution as it is, without :func:`codeFeature.int8_rewrites.polyphase_int8` and ``stack_rows``;
  ``LATENCY hint`` compiles one stream on every core instead of single-threaded streams;
* ``auto``: what ``load_model()`` picks on this CPU (see ``LoadedModel.inference_path``).

Every row also gives the CPU milliseconds per segment (process time, all threads): on a machine
other jobs load, they move less than the wall time. ``--isa AVX512_CORE_BF16`` (or ``AVX512_CORE``,
``AVX2``) caps oneDNN's instruction set (``ONEDNN_MAX_CPU_ISA``) in every worker, which TensorFlow and
OpenVINO both obey: the way to measure a CPU without AMX on one that has it (an emulation: a real
Zen 4 double-pumps AVX-512 and may be slower). The inputs are uniform in [0, 5], the range of musicnn's
log-mel on music.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
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
    "precision=bfloat16 (TensorFlow, auto with AMX)": ({}, {"precision": "bfloat16"}),
    "precision=bfloat16, batch=2": ({}, {"precision": "bfloat16", "batch": 2}),
    "precision=bfloat16, batch=8": ({}, {"precision": "bfloat16", "batch": 8}),
    "intra-op 1, float32": ({}, {"intra_op": 1}),
    "intra-op 1, precision=bfloat16": ({}, {"intra_op": 1, "precision": "bfloat16"}),
    "engine=openvino float32": ({}, {"engine": "openvino", "precision": "float32"}),
    "engine=openvino bfloat16": ({}, {"engine": "openvino", "precision": "bfloat16"}),
    "engine=openvino int8 (GPTQ-rounded)": ({}, {"engine": "openvino", "precision": "int8"}),
    "engine=openvino int8, plain rounding": ({}, {"engine": "openvino", "precision": "int8", "uncalibrated": True}),
    "engine=openvino int8, timbral convolutions only": ({}, {"engine": "openvino", "precision": "int8",
                                                             "calibrated_layers": "timbral"}),
    "engine=openvino int8, no polyphase / row stacking": ({"CODEFEATURE_ENGINE_CACHE": ""},
                                                          {"engine": "openvino", "precision": "int8", "no_rewrites": True}),
    "engine=openvino int8, LATENCY hint (1 stream)": ({"CODEFEATURE_OPENVINO_HINT": "LATENCY"},
                                                      {"engine": "openvino", "precision": "int8"}),
    "engine=openvino int8, batch=16": ({}, {"engine": "openvino", "precision": "int8", "batch": 16}),
    "auto (load_model's choice here)": ({}, {"engine": "auto", "precision": "auto"}),
}


def _recalibrated_copy(model_name: str, keep: str | None = None) -> str:
    """A temporary copy of the model folder whose int8 calibration keeps only the layers whose name
    starts with ``keep``, or none (``None``: every kernel plainly rounded, the timbral ones only)."""
    import shutil
    import tempfile

    from codeFeature.model_io import resolve_model_dir

    folder = Path(tempfile.mkdtemp()) / model_name
    shutil.copytree(resolve_model_dir(model_name), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    if keep is None:
        manifest.pop("int8_calibration", None)
    else:
        layers = manifest["int8_calibration"]["layers"]
        manifest["int8_calibration"]["layers"] = {k: v for k, v in layers.items() if k.startswith(keep)}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return str(folder)


def worker(model_name: str, options: dict, reference: str | None) -> None:
    import time

    import numpy as np

    import codeFeature  # noqa: F401  (sets the allocator default before TensorFlow starts)
    import tensorflow as tf

    if options.get("inter_op"):
        tf.config.threading.set_inter_op_parallelism_threads(options["inter_op"])
    if options.get("intra_op"):
        tf.config.threading.set_intra_op_parallelism_threads(options["intra_op"])
    if options.get("bf16"):
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
    from codeFeature.model_io import load_model

    engine = options.get("engine")
    if options.get("uncalibrated"):
        model_name = _recalibrated_copy(model_name)
    if options.get("calibrated_layers"):
        model_name = _recalibrated_copy(model_name, options["calibrated_layers"])
    int8_options = None
    if options.get("no_rewrites"):  # int8 on the convolutions as they are (cached apart from the library's)
        from codeFeature.int8_rewrites import Int8Options

        int8_options = Int8Options(stack_rows=False, polyphase=False)
    model = load_model(model_name, precision=options.get("precision", "float32"), engine=engine or "tensorflow",
                       int8_options=int8_options)
    batch = options.get("batch") or model.forward_batch
    x = np.random.default_rng(0).uniform(0, 5, (N_SEGMENTS, *model.config.input_shape)).astype(np.float32)
    graph = tf.function(lambda a: model.keras_model(a, training=False), jit_compile=bool(options.get("xla")),
                        reduce_retracing=True,
                        input_signature=[tf.TensorSpec((None, *model.config.input_shape), tf.float32)])
    if engine:  # the library's own path, whatever engine: one call, batched (and spread over streams) inside
        model.__dict__["forward_batch"] = batch  # the cached property's value: segments per call

    def run():
        if engine:
            return np.asarray(model.forward(x)[0])
        outs = [graph(x[lo:lo + batch]) for lo in range(0, N_SEGMENTS, batch)]
        return np.concatenate([np.asarray(o[0] if isinstance(o, (list, tuple)) else o) for o in outs])

    out = run()  # warm-up: tracing, compilation, primitive creation
    times, cpu = [], []
    for _ in range(5):
        c0 = time.process_time()
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    peak = next(int(line.split()[1]) / 1024 for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    diff = None
    if reference is None:
        np.save(os.environ["FORWARD_REFERENCE"], out)
    else:
        diff = float(np.abs(out - np.load(reference)).max())
    print(MARK + json.dumps({"ms_per_segment": 1000 * min(times) / N_SEGMENTS, "peak_mb": peak,
                             "cpu_ms_per_segment": 1000 * min(cpu) / N_SEGMENTS, "path": model.inference_path,
                             "batch": batch, "max_abs_diff": diff}), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="musicnn_genre")
    parser.add_argument("--only", nargs="+", metavar="TEXT", help="run only the options whose name contains a TEXT "
                                                                   "(the float32 reference always runs)")
    parser.add_argument("--isa", metavar="ONEDNN_ISA", help="ONEDNN_MAX_CPU_ISA for every worker, e.g. AVX512_CORE_BF16")
    parser.add_argument("--_worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.isa:
        os.environ["ONEDNN_MAX_CPU_ISA"] = args.isa
    if args._worker:
        options, reference = json.loads(args._worker[0]), args._worker[1]
        worker(args.model, options, None if reference == "-" else reference)
        return 0
    import tempfile

    reference = Path(tempfile.mkdtemp()) / "reference.npy"
    from codeFeature import engines

    print(f"{args.model}: forward pass over {N_SEGMENTS} random inputs, best of 5, each option in a new process; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"CPU: {engines.cpu_model()}, {os.cpu_count()} CPUs, computing at {engines.describe_isa()}")
    print(f"figures: {engines.isa_provenance()}")
    print(f"{'option':50s} {'ms/segment':>10s} {'cpu ms':>7s} {'batch':>5s} {'peak MB':>8s} {'max |diff|':>10s}  path")
    for i, (name, (env, options)) in enumerate(OPTIONS.items()):
        if i and args.only and not any(text in name for text in args.only):
            continue
        command = [sys.executable, "-m", "bench.forward_options", "--model", args.model,
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
        print(f"{name:50s} {r['ms_per_segment']:10.1f} {r['cpu_ms_per_segment']:7.1f} {r['batch']:5d} "
              f"{r['peak_mb']:8.0f} {diff:>10s}  {r['path']}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    from codeFeature.runtime import prepare_process

    prepare_process()  # an entry point: before TensorFlow starts
    sys.exit(main())
