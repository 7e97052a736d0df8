"""Which engine runs a model's forward pass on this CPU, and the OpenVINO engine itself.

The model folder (``model.json`` + ``model.weights.h5`` + ``manifest.json``) stays the only source of
truth: every engine starts from the Keras model :func:`codeFeature.model_io.load_model` builds from it.

* **TensorFlow** (always there): float32, or the manifest's ``bfloat16_layers`` (musicnn's timbral
  convolutions) in bfloat16 under Keras's ``mixed_bfloat16`` policy.
* **OpenVINO** (the ``openvino`` wheel, optional at run time): the float32 Keras model converted at load
  time (``openvino.convert_model`` of the traced forward), cached in :func:`cache_dir` under a key of
  the folder's bytes and the OpenVINO version, so that a cached conversion runs without TensorFlow.
  ``auto`` runs it in float32 on every level without native bfloat16 (the same answers as TensorFlow's
  float32, faster), and with the heavy convolutions (the manifest's ``bfloat16_layers`` that are
  convolutions) in int8 where VNNI or AMX sums int8 exactly and the folder's calibration was judged on
  valid (:data:`AUTO_PATHS`): their input is fake-quantised per tensor over a fixed range and their
  kernels per output channel, GPTQ-rounded against the folder's int8 calibration
  (:func:`quantise_heavy_convolutions`, :mod:`codeFeature.quantise`), which OpenVINO runs as u8 x s8
  (AVX512-VNNI / AVX-VNNI / AMX-INT8 where present; 7-bit input below, :func:`int8_input_codes`).

:func:`isa_level` reads the CPU's flags once per process and honours ``ONEDNN_MAX_CPU_ISA`` (which both
TensorFlow's and OpenVINO's oneDNN obey), so a lower CPU can be emulated and every branch exercised;
:func:`plan` picks the engine and precision from those facts (a pure function of them, so that every
level's choice is tested); ``CODEFEATURE_ENGINE`` and ``CODEFEATURE_PRECISION`` override it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .errors import ConfigError

#: Instruction-set levels, lowest first, as this module tells them apart.
ISA_LEVELS = ("baseline", "avx2", "avx2_vnni", "avx512", "avx512_vnni", "avx512_bf16", "amx")
#: ``ONEDNN_MAX_CPU_ISA`` values -> the highest level they allow.
_ONEDNN_CAPS = {
    "SSE41": "baseline", "AVX": "baseline", "AVX2": "avx2", "AVX2_VNNI": "avx2_vnni", "AVX2_VNNI_2": "avx2_vnni",
    "AVX512_CORE": "avx512", "AVX512_CORE_VNNI": "avx512_vnni", "AVX512_CORE_BF16": "avx512_bf16",
    "AVX512_CORE_FP16": "avx512_bf16", "AVX10_1_512": "avx512_bf16", "AVX512_CORE_AMX": "amx",
    "AVX512_CORE_AMX_FP16": "amx", "AVX10_1_512_AMX": "amx", "AVX10_1_512_AMX_FP16": "amx",
    "DEFAULT": "amx", "ALL": "amx",
}
#: Engines :func:`plan` accepts; ``CODEFEATURE_ENGINE`` sets the default.
ENGINES = ("auto", "tensorflow", "openvino")
#: Log-mel range (``log10(1 + 10000 mel)``) the int8 timbral input covers; beyond it a value is clipped.
#: GTZAN's valid split reaches 6.4 (1 % of its values pass 5; clipping at 5 flipped 13 of its 253
#: segments, at 6.5 three, at 7.5 two, as many as bfloat16): the quantisation step is 7.5 / 255
#: (see :func:`quantise_heavy_convolutions`).
LOGMEL_RANGE = (0.0, 7.5)
#: OpenVINO's performance hint: ``THROUGHPUT`` (single-threaded streams, :class:`OpenVINORunner`)
#: classified 100 songs of 30 s 20 % faster than ``LATENCY`` (one stream on every core) on a 2-core
#: Zen 4, and a 5-minute song no slower (``bench/forward_options.py``).
PERFORMANCE_HINT = os.environ.get("CODEFEATURE_OPENVINO_HINT", "THROUGHPUT").strip().upper() or "THROUGHPUT"
#: Bumped when the conversion changes, so that stale cached conversions are not reused.
_CONVERSION_VERSION = "6"


def _cpuinfo(path: str = "/proc/cpuinfo") -> dict:
    """The ``key : value`` lines of ``/proc/cpuinfo``'s first processor (empty where it cannot be read)."""
    fields = {}
    try:
        with open(path, encoding="ascii", errors="replace") as info:
            for line in info:
                if not line.strip() and fields:
                    break  # one block per processor: on a many-core machine the rest is thousands of lines
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


@functools.lru_cache(maxsize=None)
def cpu_flags() -> frozenset:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where it cannot be read); read once."""
    return frozenset(_cpuinfo().get("flags", "").split())


def hardware_isa_level(flags: Optional[frozenset] = None) -> str:
    """The highest of :data:`ISA_LEVELS` the CPU's flags support."""
    flags = cpu_flags() if flags is None else flags
    if {"avx512f", "avx512bw", "avx512vl"} <= flags:
        if {"amx_bf16", "amx_tile"} <= flags:
            return "amx"
        if "avx512_bf16" in flags:
            return "avx512_bf16"
        return "avx512_vnni" if "avx512_vnni" in flags else "avx512"
    if {"avx2", "fma"} <= flags:
        return "avx2_vnni" if "avx_vnni" in flags else "avx2"
    return "baseline"


def isa_level(flags: Optional[frozenset] = None) -> str:
    """The level this process computes at: the CPU's (:func:`hardware_isa_level`), capped by
    ``ONEDNN_MAX_CPU_ISA`` where set (an unknown value caps nothing)."""
    level = hardware_isa_level(flags)
    cap = _ONEDNN_CAPS.get(os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper())
    if cap is not None and ISA_LEVELS.index(cap) < ISA_LEVELS.index(level):
        return cap
    return level


def describe_isa(level: Optional[str] = None) -> str:
    """Plain words for an ISA level, e.g. ``"AMX"``, ``"AVX512-BF16, no AMX"``."""
    level = isa_level() if level is None else level
    words = {"amx": "AMX", "avx512_bf16": "AVX512-BF16, no AMX", "avx512_vnni": "AVX512-VNNI, no bfloat16",
             "avx512": "AVX-512, no VNNI", "avx2_vnni": "AVX2 + AVX-VNNI", "avx2": "AVX2",
             "baseline": "no AVX2"}[level]
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        words += f"; capped by ONEDNN_MAX_CPU_ISA={os.environ['ONEDNN_MAX_CPU_ISA']}"
    return words


def isa_provenance() -> str:
    """Whether figures measured now are native or capped, for benchmarks to print beside them.

    ``ONEDNN_MAX_CPU_ISA`` caps TensorFlow's and OpenVINO's oneDNN kernels alike (OpenVINO 2026.4 picks its
    ``jit_avx2_I8`` / ``brgconv_avx2_f32`` primitives under ``AVX2`` on an AVX-512 CPU): the lower level's
    real code paths and answers, at this CPU's speed, which is not an older CPU's. Under ``qemu-x86_64
    -cpu <model>`` the kernels follow the emulated CPU's cpuid while ``/proc/cpuinfo`` is still the host's:
    set ``ONEDNN_MAX_CPU_ISA`` to the emulated level there too, and read no speed from it."""
    hardware, level = hardware_isa_level(), isa_level()
    if level == hardware:
        return f"native ({describe_isa(level)})"
    return (f"capped by ONEDNN_MAX_CPU_ISA: {describe_isa(level).split(';')[0]} kernels on a "
            f"{describe_isa(hardware).split(';')[0]} CPU "
            "(the lower level's code paths at this CPU's speed, not an older CPU's)")


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name from ``/proc/cpuinfo`` with its family and model numbers, which tell the generation
    where a virtual machine shows only a generic name (``"Intel(R) Xeon(R) Processor (family 6, model 207)"``);
    ``"unknown CPU"`` where it cannot be read."""
    fields = _cpuinfo(cpuinfo)
    if "model name" not in fields:
        return "unknown CPU"
    if "cpu family" in fields and "model" in fields:
        return f"{fields['model name']} (family {fields['cpu family']}, model {fields['model']})"
    return fields["model name"]


def openvino_available() -> bool:
    """Whether the ``openvino`` package can be imported (checked without importing it)."""
    return importlib.util.find_spec("openvino") is not None


@dataclass(frozen=True)
class Plan:
    """How a model's forward pass runs.

    Attributes
    ----------
    engine : str
        ``"tensorflow"`` or ``"openvino"``.
    precision : str
        ``"float32"``, ``"bfloat16"`` (the heavy layers in TensorFlow; the whole graph in OpenVINO) or
        ``"int8"`` (the heavy convolutions in int8, the rest float32; OpenVINO only).
    isa : str
        The :func:`isa_level` it was chosen for.
    """

    engine: str
    precision: str
    isa: str

    @property
    def description(self) -> str:
        """One line for people, e.g. ``"OpenVINO, int8 timbral convolutions, float32 elsewhere (AVX512-BF16, no AMX)"``."""
        if self.engine == "openvino":
            what = {"float32": "float32", "bfloat16": "bfloat16",
                    "int8": "int8 heavy convolutions, float32 elsewhere"}[self.precision]
            name = "OpenVINO"
        else:
            what = {"float32": "float32", "bfloat16": "bfloat16 heavy convolutions, float32 elsewhere",
                    "int8": "int8"}[self.precision]
            name = "TensorFlow oneDNN"
        return f"{name}, {what} ({describe_isa(self.isa)})"


#: The paths ``auto`` may pick, per :func:`isa_level`, fastest first; :func:`plan` takes the first this
#: model and machine allow. Every one keeps valid's answers: OpenVINO float32 is float32 (within 1e-5 of
#: TensorFlow's), bfloat16 is judged in the manifest's metrics, int8 by the folder's ``valid_check`` (8-bit
#: input) or ``valid_check_7bit`` (7-bit input, :func:`int8_input_codes`), whichever the level runs.
#: Measured with ``bench/forward_options.py`` (``bench/README.md``, ``bench/results/``):
#:
#: * AMX, AVX512-BF16, AVX512-VNNI: OpenVINO's int8 heavy convolutions first (4.2 against 6.8 ms a segment for
#:   TensorFlow's bfloat16 with AMX, 7.4 against 14.3 on a Zen 4); without a judged calibration, TensorFlow's
#:   bfloat16 heavy layers where bfloat16 is native.
#: * AVX-512 without VNNI, AVX2 with or without AVX-VNNI: OpenVINO's int8 heavy convolutions with 7-bit
#:   input, exact there (``bench/int8_exactness.py``: the same outputs as a VNNI CPU's, capped at AVX2 and
#:   AVX512_CORE and under qemu), where the folder's ``valid_check_7bit`` kept every valid verdict; OpenVINO's
#:   int8 kernels took less time than its float32 on a Zen 3 (15.3 against 25.7 ms a segment) and capped at
#:   AVX2 (26.7 against 41.1 CPU ms) and AVX512_CORE (19.5 against 29.7) on a Zen 4; else OpenVINO float32
#:   (on a Zen 3, 25.7 against 66 ms a segment for TensorFlow's float32, the same answers to 9e-6).
#: * Below AVX2: OpenVINO float32; int8 with oneDNN's SSE4.1 kernels was not judged.
#: * TensorFlow float32 last: always there.
AUTO_PATHS = {
    "amx": (("openvino", "int8"), ("tensorflow", "bfloat16"), ("tensorflow", "float32")),
    "avx512_bf16": (("openvino", "int8"), ("tensorflow", "bfloat16"), ("tensorflow", "float32")),
    "avx512_vnni": (("openvino", "int8"), ("openvino", "float32"), ("tensorflow", "float32")),
    "avx512": (("openvino", "int8"), ("openvino", "float32"), ("tensorflow", "float32")),
    "avx2_vnni": (("openvino", "int8"), ("openvino", "float32"), ("tensorflow", "float32")),
    "avx2": (("openvino", "int8"), ("openvino", "float32"), ("tensorflow", "float32")),
    "baseline": (("openvino", "float32"), ("tensorflow", "float32")),
}
#: Levels whose int8 convolutions sum u8 x s8 products in 32 bits (VNNI, AMX), so that OpenVINO's int8 result
#: is the exact int8 convolution. Below them (``vpmaddubsw``) pairs of products saturate at 16 bits: a tall
#: kernel on several input channels (:func:`_polyphase_int8`) was off by 8 % on some outputs.
INT8_EXACT_LEVELS = ("amx", "avx512_bf16", "avx512_vnni", "avx2_vnni")
#: Levels whose bfloat16 is native (elsewhere it is emulated, slower than float32, or refused).
BFLOAT16_LEVELS = ("amx", "avx512_bf16")


def plan(manifest: dict, *, precision: Optional[str] = None, engine: Optional[str] = None,
         level: Optional[str] = None, openvino: Optional[bool] = None) -> Plan:
    """The fastest honest way to run a model here.

    A pure function of the model's manifest, the choices asked for and the machine's facts (``level``,
    ``openvino``), which default to this machine's.

    Parameters
    ----------
    manifest : dict
        The model's manifest; only models listing ``bfloat16_layers`` (their heavy layers) get anything
        but TensorFlow float32.
    precision : {"auto", "float32", "bfloat16", "int8"}, optional
        Default ``CODEFEATURE_PRECISION`` or ``"auto"``.
    engine : {"auto", "tensorflow", "openvino"}, optional
        Default ``CODEFEATURE_ENGINE`` or ``"auto"``.
    level : str, optional
        One of :data:`ISA_LEVELS` (default :func:`isa_level`, this CPU's, capped by ``ONEDNN_MAX_CPU_ISA``).
    openvino : bool, optional
        Whether the OpenVINO engine is installed (default :func:`openvino_available`).

    Returns
    -------
    Plan
        ``"auto"`` takes the first of :data:`AUTO_PATHS`'s paths for ``level`` that the model and machine
        allow: OpenVINO int8 needs OpenVINO and a folder carrying its int8 calibration (the manifest's
        ``int8_calibration``) that valid judged to keep the answers (its ``valid_check.passed``); OpenVINO
        float32 needs OpenVINO. An explicit ``"float32"`` or ``"bfloat16"`` with engine ``"auto"`` means
        TensorFlow's; an explicit ``"int8"`` without calibration rounds the kernels plainly.
    """
    from .model_io import PRECISIONS

    if precision is None:
        precision = os.environ.get("CODEFEATURE_PRECISION", "auto").strip().lower() or "auto"
    if engine is None:
        engine = os.environ.get("CODEFEATURE_ENGINE", "auto").strip().lower() or "auto"
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: use one of {', '.join(PRECISIONS)}")
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r}: use one of {', '.join(ENGINES)}")
    level = isa_level() if level is None else level
    if level not in ISA_LEVELS:
        raise ValueError(f"level={level!r}: use one of {', '.join(ISA_LEVELS)}")
    has_openvino = openvino_available() if openvino is None else bool(openvino)
    if engine == "openvino" and not has_openvino:
        raise ConfigError("engine='openvino' needs the openvino package: pip install openvino")
    if engine == "auto" and precision in ("float32", "bfloat16"):
        engine = "tensorflow"  # an explicit precision without an engine: TensorFlow's, as before engines
    if not manifest.get("bfloat16_layers"):
        return Plan("openvino" if engine == "openvino" else "tensorflow", "float32", level)
    # OpenVINO's int8 heavy convolutions, plainly rounded, changed one of the default model's 98 valid
    # tracks, GPTQ-rounded against the folder's calibration none: only a calibrated folder that valid
    # judged to keep its answers at the input width this level runs gets them automatically
    # (training.int8_calibration: valid_check at 8 bits, valid_check_7bit at 7 bits for the same layers)
    calibration = manifest.get("int8_calibration") or {}
    if int8_input_codes(level) == 255:
        check = calibration.get("valid_check") or {}
        same_layers = True
    else:
        check = calibration.get("valid_check_7bit") or {}
        same_layers = sorted(check.get("layers") or []) == sorted(calibration.get("layers") or {})
    int8_ready = bool(calibration.get("layers")) and check.get("passed") is True and same_layers

    def allowed(path: tuple[str, str]) -> bool:
        engine_, precision_ = path
        if engine not in ("auto", engine_) or precision not in ("auto", precision_):
            return False
        if engine_ == "openvino" and not has_openvino:
            return False
        if precision_ == "int8":
            return int8_ready
        return precision_ != "bfloat16" or level in BFLOAT16_LEVELS

    if precision == "auto":
        chosen = next((path for path in AUTO_PATHS[level] if allowed(path)), None)
        if chosen is not None:
            return Plan(*chosen, level)
        if engine == "openvino":  # asked for OpenVINO: its float32 (bfloat16 where native and nothing else fits)
            return Plan("openvino", "bfloat16" if level == "amx" and not int8_ready else "float32", level)
        return Plan("tensorflow", "bfloat16" if level in BFLOAT16_LEVELS else "float32", level)
    if precision == "int8":
        if engine == "tensorflow" or not has_openvino:
            raise ConfigError("precision='int8' runs on the OpenVINO engine: pip install openvino, or use "
                              "float32 / bfloat16")
        return Plan("openvino", "int8", level)
    if precision == "bfloat16" and level not in BFLOAT16_LEVELS and engine == "openvino":
        precision = "float32"  # OpenVINO refuses a bfloat16 hint on CPUs without it
    return Plan(engine, precision, level)


def cache_dir() -> Optional[Path]:
    """Where converted models are kept: ``CODEFEATURE_ENGINE_CACHE``, else ``~/.cache/codefeature``; ``None``
    where ``CODEFEATURE_ENGINE_CACHE`` is empty (no cache)."""
    value = os.environ.get("CODEFEATURE_ENGINE_CACHE")
    if value is not None:
        return Path(value) if value.strip() else None
    return Path.home() / ".cache" / "codefeature"


def _folder_key(folder: Path, plan_: Plan, heavy: list[str], moments: dict[str, np.ndarray],
                key_extra: str = "") -> str:
    import openvino

    digest = hashlib.sha256(key_extra.encode())
    for name in ("model.json", "model.weights.h5"):
        digest.update((folder / name).read_bytes())
    for layer in sorted(moments):
        digest.update(layer.encode() + np.ascontiguousarray(moments[layer], np.float64).tobytes())
    digest.update(repr((plan_.precision, sorted(heavy), LOGMEL_RANGE, openvino.__version__,
                        _CONVERSION_VERSION, _transposes_rows(plan_),
                        int8_input_codes(plan_.isa) if plan_.precision == "int8" else None)).encode())
    return digest.hexdigest()[:24]


def _transposes_rows(plan_: Plan) -> bool:
    """Whether the conversion for ``plan_`` runs :func:`_rows_as_columns` (int8 on :data:`TRANSPOSE_ROW_KERNELS_ON`)."""
    return plan_.precision == "int8" and plan_.isa in TRANSPOSE_ROW_KERNELS_ON


def int8_input_codes(level: str) -> int:
    """The largest u8 code the int8 input uses at ``level``: 255 where AVX-512 VNNI or AMX sums u8 x s8
    products in 32 bits, else 127. Without VNNI two products are added into a saturating 16-bit lane
    (``vpmaddubsw``): ``255 * 127 * 2`` overflows it, ``127 * 127 * 2 = 32258`` does not, so 7-bit input
    keeps every sum exact there (``python -m bench.int8_exactness``). AVX-VNNI (256-bit) gets 7 bits too:
    whichever of its kernels oneDNN picks, 7-bit sums are exact, and neither an AVX-VNNI CPU nor its
    emulation was at hand to show 8-bit ones are."""
    return 255 if level in ("amx", "avx512_bf16", "avx512_vnni") else 127


def _quantise_input(source: Any, low: float, step: float, codes: int) -> Any:
    """``source`` fake-quantised to the u8 codes ``0..codes`` of ``low + k * step`` (clipped to that range).

    The quantiser keeps OpenVINO's 256 levels, so that its low-precision transformations run the
    convolution in u8; below 255 codes a clamp keeps the values on the lower ``codes + 1`` of them."""
    from openvino import opset13 as ops

    low, high = np.float32(low), np.float32(low + 255 * step)
    if codes < 255:
        source = ops.clamp(source, float(low), float(low + codes * step))
    return ops.fake_quantize(source, low, high, low, high, 256)


def quantise_heavy_convolutions(ov_model: Any, keras_model: Any, layer_names: list[str],
                                moments: Optional[dict[str, np.ndarray]] = None, *, input_codes: int = 255) -> int:
    """Run the heavy convolutions of an OpenVINO model in int8, in place.

    The layers are ``layer_names`` and every layer ``moments`` calibrates (the model folder's int8
    calibration, :func:`codeFeature.quantise.read_calibration`: for musicnn its five front-end
    convolutions). Each is found by its weights: the OpenVINO ``Convolution`` whose constant kernel
    equals the named Keras ``Conv2D``'s (transposed to OIHW). Its input is quantised per tensor to 256
    levels over the image of :data:`LOGMEL_RANGE` by the model's ``input_bn`` batch norm (0 included:
    the time padding; ``input_codes + 1`` levels, :func:`int8_input_codes`), its kernel symmetrically per
    output channel to 255 levels; OpenVINO's low-precision transformations then run it as u8 x s8 with
    int32 accumulation. A calibrated layer
    has its kernel rounded by GPTQ (:func:`codeFeature.quantise.gptq_round`), the others by plain
    rounding. A tall one-column kernel on one input channel (musicnn's temporal convolutions) is
    rewritten polyphase first (:func:`_polyphase_int8`), which int8 kernels run far better.

    Returns
    -------
    int
        How many convolutions were quantised.
    """
    from openvino import opset13 as ops

    from .quantise import gptq_round, kernel_scales

    moments = moments or {}
    kernels = {}
    for name in dict.fromkeys([*layer_names, *moments]):
        try:
            layer = keras_model.get_layer(name)
        except ValueError:
            continue
        if type(layer).__name__ == "Conv2D":
            kernels[name] = np.transpose(np.asarray(layer.kernel.numpy(), np.float32), (3, 2, 0, 1))
    low, high = _input_range(keras_model)
    # the time padding's zeros must stay exact: put 0 on the u8 grid
    step = (high - low) / input_codes
    low = -round(-low / step) * step
    done = 0
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() != "Convolution":
            continue
        weights = op.input(1).get_source_output().get_node()
        if weights.get_type_name() != "Constant":
            continue
        data = weights.get_data()
        name = next((n for n, k in kernels.items() if k.shape == data.shape and np.array_equal(k, data)), None)
        if name is None:
            continue
        rounded = gptq_round(data, moments[name]) if name in moments else data  # GPTQ's taps are on the grid
        if _polyphase_int8(ov_model, op, rounded, (low, low + input_codes * step), input_codes=input_codes):
            done += 1
            continue
        source, rounded = _stack_rows(op, rounded)
        op.input(0).replace_source_output(_quantise_input(source, low, step, input_codes).output(0))
        amax = kernel_scales(rounded).reshape(-1, 1, 1, 1)
        fqw = ops.fake_quantize(ops.constant(rounded), -amax, amax, -amax, amax, 255)
        op.input(1).replace_source_output(fqw.output(0))
        done += 1
    ov_model.validate_nodes_and_infer_types()
    return done


def _stride_1_unpadded(conv: Any) -> bool:
    """Whether ``conv`` slides by 1 with no dilation and no padding (its output is its input less the kernel)."""
    attributes = conv.get_attributes()
    return list(attributes["strides"]) == [1, 1] and list(attributes["dilations"]) == [1, 1] \
        and not any(attributes["pads_begin"]) and not any(attributes["pads_end"])


def _stack_rows(conv: Any, kernel: np.ndarray) -> tuple[Any, np.ndarray]:
    """The input and kernel of ``conv`` with its kernel rows made input channels, when it has one
    input channel, a ``(kh, kw)`` kernel of several rows and columns, stride 1 and no padding.

    Row ``i`` of the kernel reads the input shifted down by ``i`` rows, so ``kh`` shifted copies of
    the input stacked as channels, convolved with the ``(kh, 1, kw)`` kernel, give the same sums: the
    int8 kernels then have ``kh`` channels to sum at a time instead of one (musicnn's 7 x 67 timbral
    convolution: 17 % faster on a Zen 4, the 7 x 38 one unchanged). Otherwise both come back as they were.
    """
    from openvino import opset13 as ops

    out_channels, in_channels, height, width = kernel.shape
    source = conv.input(0).get_source_output()
    shape = conv.get_input_partial_shape(0)
    if in_channels != 1 or height < 2 or width < 2 or not _stride_1_unpadded(conv) \
            or shape.rank.get_length() != 4 or not shape[2].is_static:
        return source, kernel
    out_rows = shape[2].get_length() - height + 1

    def const(values):
        return ops.constant(np.asarray(values, np.int64))

    rows = [ops.slice(source, const([i]), const([i + out_rows]), const([1]), const([2])) for i in range(height)]
    return ops.concat(rows, 1).output(0), np.ascontiguousarray(kernel[:, 0, :, None, :])


#: ISA levels where :func:`_rows_as_columns` runs. With AMX-INT8 kernels musicnn's 7 x 38 timbral convolution
#: took 5.2-5.3 ms a segment as it is and 2.5-2.8 transposed (its 7 x 67 twin 2.0-2.2 and 1.5-2.0); with
#: AVX512-VNNI ones transposing made both slower (3.0-3.8 -> 4.2-4.4 ms, 2.7-3.2 -> 3.6-3.8).
#: ``python -m bench.openvino_layers [--isa AVX512_CORE_BF16] [--rows-as-columns on|off]``, one thread,
#: Xeon family 6 model 207, 2026-12-05.
TRANSPOSE_ROW_KERNELS_ON = ("amx",)


def _rows_as_columns(ov_model: Any) -> int:
    """Transpose every int8 convolution whose kernel is one row wide, pooled along that row only, in place.

    Such a convolution (musicnn's timbral ones once :func:`_stack_rows` made their kernel rows input channels:
    a ``(1, kw)`` kernel over frequency, max-pooled over all of frequency) is computed on the input with its
    last two axes swapped, with the kernel and the pooling window swapped alike, and the pooled result
    swapped back. Every sum has the same integer terms, so the outputs are bit-identical; only the layout the
    int8 kernels see changes. Returns how many convolutions were rewritten.
    """
    from openvino import opset1, opset13 as ops

    def levels(fq):  # a FakeQuantize's ranges and levels, to quantise another tensor alike
        return [fq.input(i).get_source_output() for i in range(1, 5)] + [fq.get_attributes()["levels"]]

    swap = ops.constant(np.array([0, 1, 3, 2], np.int64))
    done = 0
    for conv in ov_model.get_ordered_ops():
        if conv.get_type_name() != "Convolution":
            continue
        data, weights = (conv.input(i).get_source_output().get_node() for i in range(2))
        if data.get_type_name() != "FakeQuantize" or weights.get_type_name() != "FakeQuantize":
            continue
        kernel = weights.input(0).get_source_output().get_node()
        if kernel.get_type_name() != "Constant" or kernel.get_output_partial_shape(0).rank.get_length() != 4 \
                or kernel.get_data().shape[2] != 1 or not _stride_1_unpadded(conv):
            continue
        consumers = list(conv.output(0).get_target_inputs())
        add = consumers[0].get_node() if len(consumers) == 1 else None
        if add is None or add.get_type_name() != "Add":
            continue
        bias = add.input(1 - consumers[0].get_index()).get_source_output()
        pools = list(add.output(0).get_target_inputs())
        pool = pools[0].get_node() if len(pools) == 1 else None
        if bias.get_node().get_type_name() != "Constant" or bias.get_partial_shape().rank.get_length() != 4 \
                or list(bias.get_shape())[2:] != [1, 1] or pool is None or pool.get_type_name() != "MaxPool":
            continue
        window = pool.get_attributes()
        if list(window["kernel"])[0] != 1 or list(window["strides"])[0] != 1 \
                or list(window.get("dilations", [1, 1])) != [1, 1] \
                or any(window["pads_begin"]) or any(window["pads_end"]) \
                or (pool.get_output_size() > 1 and pool.output(1).get_target_inputs()):
            continue
        x = ops.fake_quantize(ops.transpose(data.input(0).get_source_output(), swap), *levels(data))
        w = ops.fake_quantize(ops.constant(np.ascontiguousarray(kernel.get_data().transpose(0, 1, 3, 2))),
                              *levels(weights))
        y = ops.add(ops.convolution(x, w, [1, 1], [0, 0], [0, 0], [1, 1], "valid"), bias)
        pooled = opset1.max_pool(y, list(window["strides"])[::-1], [0, 0], [0, 0], list(window["kernel"])[::-1],
                                 window["rounding_type"], window["auto_pad"])
        back = ops.transpose(pooled.output(0), swap)
        for target in list(pool.output(0).get_target_inputs()):
            target.replace_source_output(back.output(0))
        done += 1
    ov_model.validate_nodes_and_infer_types()
    return done


#: Phases of the polyphase rewrite (:func:`_polyphase_int8`): 4 was the fastest of 4, 8 and 16 on a Zen 4.
POLYPHASE = 4


def _polyphase_int8(ov_model: Any, conv: Any, kernel: np.ndarray, input_range: tuple[float, float], *,
                    input_codes: int = 255) -> bool:
    """Rewrite ``conv -> Add(bias) [-> Relu] -> MaxPool over every column`` as an int8 polyphase
    convolution, in place, when ``conv`` has a tall ``(k, 1)`` kernel on one input channel.

    One input channel leaves int8 kernels nothing to sum four at a time, so such a convolution runs
    no faster in int8 than in float32. Cut into :data:`POLYPHASE` phases, time step ``t = P b + j`` of
    the input becomes channel ``j`` of row ``b``: ``out[P a + r] = sum_{m, j} in[a + m, j] W_r[m, j]``
    with ``W_r[m, j] = w[P m + j - r]`` (zero outside the kernel), one convolution of ``P`` input and
    ``P x out`` output channels, ``(k + P - 1) / k`` of the multiply-adds. It is pooled over the columns
    before the phases are put back in time order. Integer sums are exact, so the result is the int8
    direct convolution's.

    Returns
    -------
    bool
        Whether ``conv`` was rewritten (``False``: the pattern did not match; nothing changed).
    """
    from openvino import opset13 as ops

    from .quantise import kernel_scales

    out_channels, in_channels, height, width = kernel.shape
    attributes = conv.get_attributes()
    if in_channels != 1 or width != 1 or height < 2 * POLYPHASE:
        return False
    if list(attributes["strides"]) != [1, 1] or list(attributes["dilations"]) != [1, 1] \
            or attributes["pads_begin"][1] or attributes["pads_end"][1]:
        return False
    shape = conv.get_input_partial_shape(0)
    if shape.rank.get_length() != 4 or not (shape[2].is_static and shape[3].is_static):
        return False
    rows, columns = shape[2].get_length(), shape[3].get_length()

    def only_consumer(node):
        targets = list(node.output(0).get_target_inputs())
        return targets[0] if len(targets) == 1 else None

    add_input = only_consumer(conv)
    if add_input is None or add_input.get_node().get_type_name() != "Add":
        return False
    add = add_input.get_node()
    bias = add.input(1 - add_input.get_index()).get_source_output().get_node()
    if bias.get_type_name() != "Constant" or bias.get_data().size != out_channels:
        return False
    tail = add
    relu = False
    following = only_consumer(tail)
    if following is not None and following.get_node().get_type_name() == "Relu":
        tail, relu = following.get_node(), True
        following = only_consumer(tail)
    if following is None or following.get_node().get_type_name() != "MaxPool":
        return False
    pool = following.get_node()
    pool_attributes = pool.get_attributes()
    if list(pool_attributes["kernel"]) != [1, columns] or any(pool_attributes["pads_begin"]) \
            or any(pool_attributes["pads_end"]):
        return False

    phases = POLYPHASE
    pad_before, pad_after = int(attributes["pads_begin"][0]), int(attributes["pads_end"][0])
    out_rows = rows + pad_before + pad_after - height + 1
    blocks_out = -(-out_rows // phases)
    taps = -(-(height + phases - 1) // phases)
    blocks_in = blocks_out + taps - 1
    w = kernel[:, 0, :, 0]  # (out, k)
    poly = np.zeros((phases, out_channels, phases, taps, 1), np.float32)  # r, c, j, m
    for r in range(phases):
        for m in range(taps):
            for j in range(phases):
                k = phases * m + j - r
                if 0 <= k < height:
                    poly[r, :, j, m, 0] = w[:, k]
    poly = poly.reshape(phases * out_channels, phases, taps, 1)

    def const(values, dtype=np.int64):
        return ops.constant(np.asarray(values, dtype))

    low, high = input_range
    x = ops.pad(conv.input(0).get_source_output(), const([0, 0, pad_before, 0]),
                const([0, 0, blocks_in * phases - rows - pad_before, 0]), "constant")
    x = ops.reshape(x, const([-1, blocks_in, phases, columns]), False)
    x = ops.transpose(x, const([0, 2, 1, 3]))  # (n, phase j, block, column)
    x = _quantise_input(x, low, (high - low) / input_codes, input_codes)
    amax = np.tile(kernel_scales(kernel), phases).reshape(-1, 1, 1, 1)
    w_q = ops.fake_quantize(ops.constant(poly), -amax, amax, -amax, amax, 255)
    y = ops.convolution(x, w_q, [1, 1], [0, 0], [0, 0], [1, 1])  # (n, r * out + c, block, column)
    y = ops.add(y, ops.constant(np.tile(bias.get_data().reshape(-1), phases).reshape(1, -1, 1, 1)
                                .astype(np.float32)))
    if relu:
        y = ops.relu(y)
    y = ops.max_pool(y, [1, 1], [1, 1], [0, 0], [0, 0], [1, columns]).output(0)
    y = ops.reshape(y, const([-1, phases, out_channels, blocks_out]), False)
    y = ops.transpose(y, const([0, 2, 3, 1]))  # (n, c, block, phase r): time order
    y = ops.reshape(y, const([-1, out_channels, blocks_out * phases, 1]), False)
    y = ops.slice(y, const([0]), const([out_rows]), const([1]), const([2]))
    for target in list(pool.output(0).get_target_inputs()):
        target.replace_source_output(y.output(0))
    return True


def _input_range(keras_model: Any) -> tuple[float, float]:
    """The range of the input batch norm's output over :data:`LOGMEL_RANGE`, 0 included."""
    try:
        bn = keras_model.get_layer("input_bn")
    except ValueError:
        return LOGMEL_RANGE
    gamma, beta, mean, variance = (np.asarray(w.numpy(), np.float64) for w in bn.weights)
    scale = gamma / np.sqrt(variance + bn.epsilon)
    ends = np.stack([(x - mean) * scale + beta for x in LOGMEL_RANGE])
    return float(min(ends.min(), 0.0)), float(max(ends.max(), 0.0))


#: The first inference in a process goes through OpenVINO's Python bindings alone. Their first copy of
#: an input (``InferRequest.infer``'s ``tensor.data``) initialises a C++ function-local static that
#: itself waits for the GIL (pybind11's ``gil_safe_call_once_and_store`` of the numpy API): a second
#: thread arriving meanwhile blocks on that static's guard while holding the GIL, and the process hangs
#: for good. Two streams' first calls met like that in about 1 in 15 runs of the CLI on 100 files (13
#: in 30 processes of a bare two-thread repro); ``tests/test_engines.py`` checks they no longer can.
_first_infer = threading.Lock()
_bindings_warm = threading.Event()


class OpenVINORunner:
    """A compiled OpenVINO model called like the traced TensorFlow forward.

    It is compiled for throughput: one single-threaded stream per core or so (OpenVINO's
    ``THROUGHPUT`` hint), each fed by its own infer request on its own thread. :meth:`run` spreads a
    call's batches over the streams, so one long song keeps every core busy without oneDNN's
    per-layer thread synchronisation, and several files classified at once (the CLI, library scans)
    share the same streams. Safe to call from several threads.
    """

    def __init__(self, compiled: Any, n_outputs: int, *, forward_batch: Optional[int] = None):
        self._compiled = compiled
        self._outputs = list(compiled.outputs)[:n_outputs]
        #: segments per call the Keras model it was converted from asks for (None: ask that model)
        self.forward_batch = forward_batch
        self._local = threading.local()
        try:
            self.streams = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        except Exception:  # an older OpenVINO without the property
            self.streams = 1
        self._pool = None
        self._pool_lock = threading.Lock()

    @property
    def outputs(self) -> list:
        """The compiled model's outputs (OpenVINO ports: ``.get_partial_shape()``), genre first."""
        return self._outputs

    @property
    def input_shape(self) -> tuple:
        """The compiled model's input shape without the batch axis (``None`` where dynamic)."""
        shape = self._compiled.inputs[0].get_partial_shape()
        return tuple(d.get_length() if d.is_static else None for d in list(shape)[1:])

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        if not _bindings_warm.is_set():
            with _first_infer:  # the process's first inference runs alone (see _first_infer)
                if not _bindings_warm.is_set():
                    outputs = self._infer(request, x)
                    _bindings_warm.set()
                    return outputs
        return self._infer(request, x)

    def _infer(self, request: Any, x: np.ndarray) -> list[np.ndarray]:
        result = request.infer([x])  # releases the GIL while it runs
        return [np.array(result[o], dtype=np.float32) for o in self._outputs]

    def run(self, x: np.ndarray, batch: int) -> list[list[np.ndarray]]:
        """The outputs of ``x`` in consecutive batches of at most ``batch``, in order: as many batches
        as fill every stream the same number of times, of near-equal sizes (10 segments on 2 streams:
        3, 3, 2 and 2, so that each stream runs 5)."""
        if len(x) == 0:
            return []
        rounds = -(-len(x) // (self.streams * max(1, batch)))
        n_chunks = min(len(x), rounds * self.streams)
        chunks = [np.ascontiguousarray(part, dtype=np.float32) for part in np.array_split(x, n_chunks)]
        if self.streams == 1 or len(chunks) == 1:
            return [self(chunk) for chunk in chunks]
        return list(self._executor().map(self, chunks))

    def _executor(self):
        from concurrent.futures import ThreadPoolExecutor

        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.streams, thread_name_prefix="openvino-stream")
            return self._pool


def cached_openvino_path(folder: Path, plan_: Plan, heavy: list[str], *, tag: str = "model",
                         moments: Optional[dict[str, np.ndarray]] = None, key_extra: str = "") -> Optional[Path]:
    """Where the conversion of ``folder``'s network for ``plan_`` is cached (``.xml``, ``.bin`` and a
    ``.json`` of what the Keras model told), or ``None`` where there is no cache. ``key_extra`` adds what
    else the conversion must agree with (the manifest's shapes and labels)."""
    directory = cache_dir()
    if directory is None:
        return None
    moments = (moments or {}) if plan_.precision == "int8" else {}
    return directory / f"openvino-{folder.name}-{tag}-{_folder_key(folder, plan_, heavy, moments, key_extra)}.xml"


def open_cached_openvino(cached: Optional[Path], plan_: Plan) -> Optional["OpenVINORunner"]:
    """The cached conversion at ``cached`` compiled for this CPU, or ``None`` where it is not there (or not
    whole). Needs no TensorFlow: a model read from the cache runs without importing it."""
    if cached is None or not all(cached.with_suffix(s).is_file() for s in (".xml", ".bin", ".json")):
        return None
    import openvino as ov

    try:
        told = json.loads(cached.with_suffix(".json").read_text())
        return _compile(ov.Core().read_model(str(cached)), plan_, int(told["outputs"]), told.get("forward_batch"))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged cache entry: convert again


def build_openvino(keras_model: Any, folder: Path, input_shape: tuple[int, ...], plan_: Plan,
                   heavy: list[str], *, tag: str = "model",
                   moments: Optional[dict[str, np.ndarray]] = None, forward_batch: Optional[int] = None,
                   key_extra: str = "") -> OpenVINORunner:
    """Convert (or read the cached conversion of) ``keras_model`` and compile it for this CPU.

    ``tag`` names what of the folder's network ``keras_model`` is (``"model"``, or an embedding layer);
    ``moments`` is the folder's int8 calibration (used by ``plan_.precision == "int8"``);
    ``forward_batch`` (the Keras model's segments per call) is kept with the cached conversion, so
    that a model read from the cache needs no Keras model (:func:`open_cached_openvino`).

    Raises
    ------
    RuntimeError
        Whatever OpenVINO raises when it cannot convert or compile; :func:`codeFeature.model_io.load_model`
        then falls back to TensorFlow.
    """
    cached = cached_openvino_path(folder, plan_, heavy, tag=tag, moments=moments, key_extra=key_extra)
    runner = open_cached_openvino(cached, plan_)
    if runner is not None and len(runner.outputs) == len(keras_model.outputs):
        return runner
    return convert_openvino(keras_model, cached, input_shape, plan_, heavy, moments=moments,
                            forward_batch=forward_batch)


def convert_openvino(keras_model: Any, cached: Optional[Path], input_shape: tuple[int, ...], plan_: Plan,
                     heavy: list[str], *, moments: Optional[dict[str, np.ndarray]] = None,
                     forward_batch: Optional[int] = None) -> OpenVINORunner:
    """Convert ``keras_model`` (through TensorFlow), keep the conversion at ``cached`` (the
    :func:`cached_openvino_path`; ``None``: keep nothing) and compile it for this CPU. Raises as
    :func:`build_openvino` does."""
    import openvino as ov
    import tensorflow as tf

    moments = (moments or {}) if plan_.precision == "int8" else {}
    n_outputs = len(keras_model.outputs)

    function = tf.function(lambda x: keras_model(x, training=False),
                           input_signature=[tf.TensorSpec((None, *input_shape), tf.float32)])
    ov_model = ov.convert_model(function.get_concrete_function())
    if plan_.precision == "int8" and not quantise_heavy_convolutions(ov_model, keras_model, heavy, moments,
                                                                     input_codes=int8_input_codes(plan_.isa)):
        raise RuntimeError("no heavy convolution found to quantise")
    if _transposes_rows(plan_):
        _rows_as_columns(ov_model)
    if cached is not None:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(cached.stem + f".tmp{os.getpid()}.xml")
            ov.save_model(ov_model, str(tmp), compress_to_fp16=False)
            tmp.with_suffix(".bin").replace(cached.with_suffix(".bin"))
            tmp.replace(cached)
            told = cached.with_name(cached.stem + f".tmp{os.getpid()}.json")
            told.write_text(json.dumps({"outputs": n_outputs, "forward_batch": forward_batch,
                                        "input_shape": list(input_shape)}))
            told.replace(cached.with_suffix(".json"))  # last: a reader never sees a .json without the model
        except OSError:
            pass  # a read-only home: convert again next time
    return _compile(ov_model, plan_, n_outputs, forward_batch)


def _compile(ov_model: Any, plan_: Plan, n_outputs: int, forward_batch: Optional[int]) -> OpenVINORunner:
    import openvino as ov

    hint = "bf16" if plan_.precision == "bfloat16" else "f32"
    compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                         "PERFORMANCE_HINT": PERFORMANCE_HINT})
    if len(compiled.outputs) != n_outputs:
        raise RuntimeError(f"the converted model has {len(compiled.outputs)} outputs, the Keras model {n_outputs}")
    return OpenVINORunner(compiled, n_outputs, forward_batch=forward_batch)
