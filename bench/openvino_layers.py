"""Where the OpenVINO forward pass spends its time, layer by layer (OpenVINO's ``PERF_COUNT``).

    python -m bench.openvino_layers                              # musicnn_genre as load_model runs it here
    python -m bench.openvino_layers --isa AVX512_CORE_BF16       # the same, capped to a CPU without AMX
    python -m bench.openvino_layers --model musicnn_genre_lr --top 20
    python -m bench.openvino_layers --isa AVX512_CORE_BF16 --rows-as-columns on   # the AMX rewrite without AMX

The model is loaded as ``load_model`` loads it (its OpenVINO conversion, int8 where the folder's valid check
allows), then compiled once more with per-layer counters on one thread, one stream (so that each layer's time
is a single core's), and fed the same random segments repeatedly. It prints the CPU milliseconds per segment by
kernel kind (the ``exec type`` names the instruction set: ``brgconv_avx512_amx_I8`` is an AMX int8 convolution,
``brgconv_avx512_I8`` an AVX512-VNNI one) and by layer, with each layer's input and kernel shapes. Run it with
and without ``--isa`` to see which layers an instruction set helps, and with ``--rows-as-columns on`` or ``off``
to run the conversion with or without :func:`codeFeature.int8_rewrites.rows_as_columns` whatever the CPU (by
default it runs where ``int8_rewrites.TRANSPOSE_ROW_KERNELS_ON`` says; the choice is an ``Int8Options``
argument of ``load_model``). The inputs are uniform in [0, 5], the range
of musicnn's log-mel on music.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="musicnn_genre")
    parser.add_argument("--isa", metavar="ONEDNN_ISA", help="ONEDNN_MAX_CPU_ISA for this run, e.g. AVX512_CORE_BF16")
    parser.add_argument("--batch", type=int, default=3, help="segments per call (10 segments on 2 streams: 3)")
    parser.add_argument("--segments", type=int, default=60, help="segments timed per pass")
    parser.add_argument("--passes", type=int, default=3, help="passes; the fastest is printed")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--rows-as-columns", choices=("auto", "on", "off"), default="auto",
                        help="transpose the one-row int8 convolutions (int8_rewrites.rows_as_columns): "
                             "auto = where the library does")
    args = parser.parse_args(argv)
    if args.isa:
        os.environ["ONEDNN_MAX_CPU_ISA"] = args.isa  # before OpenVINO loads oneDNN
    from codeFeature.runtime import prepare_process

    prepare_process(tf_log_level="3")
    import numpy as np
    import openvino as ov

    from codeFeature import engines, quantise
    from codeFeature.cpu import cpu_model, describe_isa, isa_level
    from codeFeature.inference_path import Plan
    from codeFeature.int8_rewrites import Int8Options
    from codeFeature.model_io import load_model

    options = Int8Options(rows_as_columns=None if args.rows_as_columns == "auto" else args.rows_as_columns == "on")
    model = load_model(args.model, int8_options=options)
    if model.engine != "openvino":
        print(f"{args.model} runs on {model.inference_path} here, not OpenVINO: nothing to count")
        return 1
    # the graph load_model compiled, converted once more (its float32 Keras model is built for that)
    plan = Plan(model.engine, model.precision, isa_level())
    graph = engines.openvino_graph(model.keras_model, model.config.input_shape, plan,
                                   list(model.manifest.get("bfloat16_layers", [])),
                                   moments=quantise.read_calibration(model.path, model.manifest), options=options)
    compiled = ov.Core().compile_model(graph, "CPU", {
        "INFERENCE_PRECISION_HINT": "bf16" if model.precision == "bfloat16" else "f32",
        "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": 1, "PERF_COUNT": True})
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).uniform(0, 5, (args.batch, *model.config.input_shape)).astype(np.float32)
    request.infer([x])  # warm-up: primitive creation

    best = None
    for _ in range(args.passes):
        by_kind, by_layer = collections.Counter(), collections.Counter()
        n, c0 = 0, time.process_time()
        while n < args.segments:
            request.infer([x])
            n += len(x)
            for counter in request.profiling_info:
                us = counter.real_time.total_seconds() * 1e6
                by_kind[(counter.node_type, counter.exec_type)] += us
                by_layer[counter.node_name] += us
        cpu = 1000 * (time.process_time() - c0) / n
        if best is None or cpu < best[0]:
            best = (cpu, {k: v / n / 1000 for k, v in by_kind.items()}, {k: v / n / 1000 for k, v in by_layer.items()})
    cpu, by_kind, by_layer = best
    counted = sum(by_kind.values())
    print(f"{args.model}: {model.inference_path}; one thread, batch {args.batch}, fastest of {args.passes} passes "
          f"of {args.segments} segments; load average {os.getloadavg()[0]:.1f}")
    print(f"CPU: {cpu_model()}, computing at {describe_isa()}; one-row int8 convolutions "
          f"transposed: {'yes' if options.transposes_rows(plan.precision, plan.isa) else 'no'}")
    print(f"{cpu:.2f} CPU ms a segment ({counted:.2f} in counted layers)\n")
    print(f"{'ms/segment':>10s} {'share':>6s}  layer kind, kernel")
    for (kind, exec_type), ms in sorted(by_kind.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"{ms:10.3f} {100 * ms / counted:5.1f}%  {kind}, {exec_type}")
    ops = {op.get_friendly_name(): op for op in compiled.get_runtime_model().get_ordered_ops()}
    print(f"\n{'ms/segment':>10s} {'share':>6s}  layer: input shapes")
    for name, ms in sorted(by_layer.items(), key=lambda kv: -kv[1])[:args.top]:
        op = ops.get(name)
        shapes = "" if op is None else " x ".join(str(op.input(i).get_partial_shape())
                                                  for i in range(min(2, op.get_input_size())))
        print(f"{ms:10.3f} {100 * ms / counted:5.1f}%  {name}: {shapes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
