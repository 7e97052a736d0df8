"""Does OpenVINO's int8 convolution compute the exact int8 sums at this CPU's level? Small graphs, not the model.

Each case is one convolution as the int8 path rewrites it (:mod:`codeFeature.engines`): the polyphase form
of a tall one-column kernel (musicnn's temporal convolutions), the rows of a wide kernel stacked as input
channels (its timbral ones) and a plain single-channel int8 convolution. Each runs through OpenVINO with u8
input of 255 codes (8 bits) and of 127 codes (7 bits, :func:`codeFeature.engines.int8_input_codes`), and is
compared with the exact int8 result computed in float64 by numpy (the same u8 and s8 grids, exact sums).
It prints, per case and code width, the largest error relative to the output's largest magnitude and the
kernel OpenVINO chose for the convolution (its runtime model's ``primitiveType``), so that a run shows
which instructions summed the products::

    python -m bench.int8_exactness                                  # this CPU's own kernels
    ONEDNN_MAX_CPU_ISA=AVX2 python -m bench.int8_exactness          # capped (does OpenVINO follow the cap?)
    qemu-x86_64 -cpu Haswell-v4 "$(python -c 'import sys; print(sys.executable)')" -m bench.int8_exactness
                                                                     # an emulated AVX2-only CPU (slow; exact, no speed)
    python -m bench.int8_exactness --save native.npz                # keep the outputs ...
    qemu-x86_64 -cpu Haswell-v4 ... -m bench.int8_exactness --compare native.npz   # ... and compare another run's

Under ``qemu-x86_64`` the program sees the emulated CPU's ``cpuid`` (the script prints what numpy detects)
while ``/proc/cpuinfo`` is still the host's. Exit status 1 when a 7-bit case is not exact (relative error
above :data:`EXACT`), so that the 7-bit claim can fail.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import numpy as np

#: Largest relative error (to the output's largest magnitude) still counted as the exact int8 sums: float32
#: dequantisation and bias rounding, several orders below a saturated sum's (a few per cent).
EXACT = 1e-5


def smooth_inputs(n: int = 6, rows: int = 24, cols: int = 30, seed: int = 0) -> np.ndarray:
    """Inputs whose neighbouring values are correlated, as a log-mel's are."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, rows, cols))
    for axis in (1, 2):
        x = (x + np.roll(x, 1, axis) + np.roll(x, 2, axis)) / 3
    return (x + 1.5).astype(np.float32)


def conv_pool_model(kernel: np.ndarray, rows: int, cols: int, pads: tuple[int, int] = (0, 0)) -> Any:
    """An OpenVINO model: single-channel Conv2D (OIHW ``kernel``, time padding ``pads``), bias, max over columns."""
    import openvino as ov
    from openvino import opset13 as ops

    x = ops.parameter([-1, 1, rows, cols], np.float32)
    y = ops.convolution(x, ops.constant(kernel), [1, 1], [pads[0], 0], [pads[1], 0], [1, 1])
    bias = np.linspace(-0.5, 0.5, kernel.shape[0], dtype=np.float32).reshape(1, -1, 1, 1)
    y = ops.add(y, ops.constant(bias))
    out_cols = cols - kernel.shape[3] + 1
    y = ops.max_pool(y, [1, 1], [1, 1], [0, 0], [0, 0], [1, out_cols]).output(0)
    return ov.Model([y], [x])


def compile_f32(model: Any) -> Any:
    import openvino as ov

    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def run(model: Any, x: np.ndarray) -> np.ndarray:
    compiled = compile_f32(model)
    return np.array(compiled.create_infer_request().infer([x])[compiled.outputs[0]])


def conv_kernels(model: Any) -> list[str]:
    """The ``primitiveType`` of each convolution OpenVINO compiled ``model`` into (e.g. ``jit_avx2_I8``)."""
    kinds = []
    for op in compile_f32(model).get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and info["layerType"].astype(str).startswith("Convolution"):
            kinds.append(info["primitiveType"].astype(str))
    return kinds


def exact_int8_conv_pool(x: np.ndarray, kernel: np.ndarray, pads: tuple[int, int], low: float, step: float,
                         codes: int) -> np.ndarray:
    """What an int8 engine must compute for :func:`conv_pool_model`: the input on the u8 grid ``low + k step``
    (``k`` in ``0..codes``), the kernel on its s8 grid per output channel, the sums in float64 (exact for
    these integers)."""
    from numpy.lib.stride_tricks import sliding_window_view

    from codeFeature.quantise import kernel_scales

    xq = np.clip(np.round((x[:, 0].astype(np.float64) - low) / step), 0, codes) * step + low
    amax = kernel_scales(kernel).astype(np.float64).reshape(-1, 1, 1)
    wq = np.round(kernel[:, 0].astype(np.float64) / amax * 127) / 127 * amax  # (out, kh, kw)
    padded = np.pad(xq, ((0, 0), pads, (0, 0)))
    windows = sliding_window_view(padded, kernel.shape[2:], axis=(1, 2))  # n, R', C', kh, kw
    y = np.einsum("nrcij,oij->norc", windows, wq)
    y += np.linspace(-0.5, 0.5, kernel.shape[0]).reshape(1, -1, 1, 1)
    return y.max(axis=3, keepdims=True)


def polyphase_case(height: int, codes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The polyphase rewrite of a tall one-column kernel: its output, the exact int8 one, float32's, its kernels."""
    from codeFeature import int8_rewrites, quantise

    rng = np.random.default_rng(height)
    rows, cols = 37, 11
    kernel = quantise.plain_round(rng.normal(0, 0.2, (6, 1, height, 1)).astype(np.float32))
    pads = ((height - 1) // 2, height - 1 - (height - 1) // 2)
    x = smooth_inputs(n=3, rows=rows, cols=cols)[:, None]
    low, high = 0.0, 4.0
    model = conv_pool_model(kernel, rows, cols, pads)
    conv = next(op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution")
    if not int8_rewrites.polyphase_int8(model, conv, kernel, (low, high), input_codes=codes):
        raise AssertionError("the polyphase rewrite did not match its own pattern")
    model.validate_nodes_and_infer_types()
    if any(op is conv for op in model.get_ordered_ops()):
        raise AssertionError("the original convolution is still there")
    got = run(model, x)
    exact = exact_int8_conv_pool(x, kernel, pads, low, (high - low) / codes, codes)
    return got, exact, run(conv_pool_model(kernel, rows, cols, pads), x), conv_kernels(model)


def _fake_quantised(model: Any, conv: Any, source: Any, kernel: np.ndarray, low: float, step: float,
                    codes: int) -> Any:
    """``conv`` reading ``source`` through the int8 path's input quantiser and ``kernel`` on its s8 grid."""
    from openvino import opset13 as ops

    from codeFeature import int8_rewrites, quantise

    conv.input(0).replace_source_output(int8_rewrites.quantise_input(source, low, step, codes).output(0))
    amax = quantise.kernel_scales(kernel).reshape(-1, 1, 1, 1)
    conv.input(1).replace_source_output(
        ops.fake_quantize(ops.constant(kernel), -amax, amax, -amax, amax, 255).output(0))
    model.validate_nodes_and_infer_types()
    return model


def stacked_rows_case(codes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """A wide kernel (musicnn's timbral shape, 7 rows) with its rows stacked as input channels, in int8."""
    from codeFeature import int8_rewrites, quantise

    rng = np.random.default_rng(7)
    rows, cols = 20, 60
    kernel = quantise.plain_round(rng.normal(0, 0.2, (8, 1, 7, 38)).astype(np.float32))
    x = smooth_inputs(n=2, rows=rows, cols=cols)[:, None]
    low, high = 0.0, 4.0
    model = conv_pool_model(kernel, rows, cols)
    conv = next(op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution")
    source, stacked = int8_rewrites.stack_rows(conv, kernel)
    if stacked.shape != (8, 7, 1, 38):
        raise AssertionError(f"rows not stacked: {stacked.shape}")
    _fake_quantised(model, conv, source, stacked, low, (high - low) / codes, codes)
    exact = exact_int8_conv_pool(x, kernel, (0, 0), low, (high - low) / codes, codes)
    return run(model, x), exact, run(conv_pool_model(kernel, rows, cols), x), conv_kernels(model)


def direct_case(codes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """A plain single-channel int8 convolution (one input channel: no pairs of channels to saturate)."""
    from codeFeature import quantise

    rng = np.random.default_rng(11)
    rows, cols = 20, 60
    kernel = quantise.plain_round(rng.normal(0, 0.2, (8, 1, 7, 38)).astype(np.float32))
    x = smooth_inputs(n=2, rows=rows, cols=cols)[:, None]
    low, high = 0.0, 4.0
    model = conv_pool_model(kernel, rows, cols)
    conv = next(op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution")
    _fake_quantised(model, conv, conv.input(0).get_source_output(), kernel, low, (high - low) / codes, codes)
    exact = exact_int8_conv_pool(x, kernel, (0, 0), low, (high - low) / codes, codes)
    return run(model, x), exact, run(conv_pool_model(kernel, rows, cols), x), conv_kernels(model)


CASES = {
    "polyphase_33": lambda codes: polyphase_case(33, codes),
    "polyphase_64": lambda codes: polyphase_case(64, codes),
    "stacked_rows_7x38": stacked_rows_case,
    "direct_7x38": direct_case,
}


def detected_features() -> dict:
    """What numpy's runtime dispatch detected (from ``cpuid``, so an emulated CPU's under qemu)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_features__ as features
    return {name: bool(features.get(name)) for name in ("AVX2", "FMA3", "AVX512F", "AVX512_SKX", "AVX512VNNI",
                                                        "AVXVNNI")}


def measure(cases: list[str], codes_list: tuple[int, ...] = (255, 127)) -> dict:
    """Per case and code width: relative error against the exact int8 sums, the kernels chosen, the outputs."""
    results = {}
    for name in cases:
        for codes in codes_list:
            got, exact, float32, kernels = CASES[name](codes)
            scale = float(np.abs(exact).max())
            results[f"{name}/{codes}"] = {
                "error": float(np.abs(got - exact).max() / scale),
                "differs_from_float32": bool(np.abs(got - float32).max() > 0),
                "kernels": kernels,
                "output": got,
            }
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(CASES), help="cases to run (default: all)")
    parser.add_argument("--save", metavar="NPZ", help="write every case's output to this file")
    parser.add_argument("--compare", metavar="NPZ", help="also print the largest difference from a saved run's outputs")
    parser.add_argument("--json", action="store_true", help="one JSON line instead of the table")
    args = parser.parse_args(argv)
    try:
        import openvino
    except ImportError:
        print("error: this benchmark needs the openvino package (pip install openvino)", file=sys.stderr)
        return 2
    from codeFeature import engines

    saved = None
    if args.compare:
        try:
            with np.load(args.compare) as data:
                saved = {key: data[key] for key in data.files}
        except (OSError, ValueError) as exc:
            print(f"error: cannot read {args.compare}: {exc}", file=sys.stderr)
            return 2
    results = measure(args.only or list(CASES))
    header = {"openvino": openvino.__version__, "numpy_detects": detected_features(),
              "cpu (/proc/cpuinfo, the host's under qemu)": engines.cpu_model(),
              "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA", "")}
    for key, row in results.items():
        if saved is not None and key.replace("/", "_") in saved:
            row["vs_saved"] = float(np.abs(row["output"] - saved[key.replace("/", "_")]).max())
    if args.save:
        np.savez(args.save, **{key.replace("/", "_"): row["output"] for key, row in results.items()})
    if args.json:
        print(json.dumps({**header, "cases": {k: {f: v for f, v in row.items() if f != "output"}
                                              for k, row in results.items()}}))
    else:
        for key, value in header.items():
            print(f"{key}: {value}")
        print(f"{'case/input codes':28} {'rel. error vs exact int8':>24} {'vs saved run':>13}  kernels")
        for key, row in results.items():
            vs = f"{row['vs_saved']:.3g}" if "vs_saved" in row else "-"
            print(f"{key:28} {row['error']:24.3g} {vs:>13}  {', '.join(row['kernels'])}")
    bad = [key for key, row in results.items() if key.endswith("/127") and row["error"] > EXACT]
    if bad:
        print(f"7-bit input NOT exact: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
