"""What this CPU can do, as facts the choice of inference path is given (:mod:`codeFeature.inference_path`).

:func:`hardware_isa_level` reads the CPU's flags (``/proc/cpuinfo``, once per process);
:func:`isa_level` caps them by ``ONEDNN_MAX_CPU_ISA`` (which both TensorFlow's and OpenVINO's oneDNN obey,
so a lower CPU can be emulated and every branch exercised); :func:`machine_facts` gathers what the choice
needs into one :class:`CpuFacts`. Everything else here takes the facts as arguments, so that tests pass
the facts of any machine instead of patching this module.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from typing import Optional

from . import settings

#: Instruction-set levels, lowest first, as this module tells them apart.
ISA_LEVELS = ("baseline", "avx2", "avx2_vnni", "avx512", "avx512_vnni", "avx512_bf16", "amx")
#: ``ONEDNN_MAX_CPU_ISA`` values -> the highest level they allow.
ONEDNN_CAPS = {
    "SSE41": "baseline", "AVX": "baseline", "AVX2": "avx2", "AVX2_VNNI": "avx2_vnni", "AVX2_VNNI_2": "avx2_vnni",
    "AVX512_CORE": "avx512", "AVX512_CORE_VNNI": "avx512_vnni", "AVX512_CORE_BF16": "avx512_bf16",
    "AVX512_CORE_FP16": "avx512_bf16", "AVX10_1_512": "avx512_bf16", "AVX512_CORE_AMX": "amx",
    "AVX512_CORE_AMX_FP16": "amx", "AVX10_1_512_AMX": "amx", "AVX10_1_512_AMX_FP16": "amx",
    "DEFAULT": "amx", "ALL": "amx",
}
#: Levels whose int8 convolutions sum u8 x s8 products in 32 bits (AVX-512 VNNI, AMX), so that OpenVINO's int8
#: result on 8-bit input is the exact int8 convolution. Below them (``vpmaddubsw``) pairs of products saturate
#: at 16 bits: a tall kernel on several input channels (:func:`codeFeature.int8_rewrites.polyphase_int8`) was
#: off by 8 % on some outputs, so those levels get 7-bit input (:func:`codeFeature.int8_rewrites.int8_input_codes`).
#: AVX-VNNI (256-bit) is left out: no such CPU or emulation was at hand to show its 8-bit sums exact, and 7-bit
#: sums are exact whichever kernel oneDNN picks.
INT8_EXACT_LEVELS = ("amx", "avx512_bf16", "avx512_vnni")
#: Levels whose bfloat16 is native (elsewhere it is emulated, slower than float32, or refused).
BFLOAT16_LEVELS = ("amx", "avx512_bf16")


@dataclass(frozen=True)
class CpuFacts:
    """What the choice of inference path needs to know about the machine."""

    #: One of :data:`ISA_LEVELS`: the level this process computes at.
    level: str
    #: Whether the ``openvino`` package can be imported.
    openvino: bool


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
    """The highest of :data:`ISA_LEVELS` the CPU's flags (default: this CPU's) support."""
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


def isa_level(flags: Optional[frozenset] = None, *, cap: Optional[str] = None) -> str:
    """The level this process computes at: the CPU's (:func:`hardware_isa_level`), capped by ``cap``
    (an ``ONEDNN_MAX_CPU_ISA`` value; default the setting; an unknown value caps nothing)."""
    level = hardware_isa_level(flags)
    cap = settings.current().onednn_max_cpu_isa if cap is None else cap.strip().upper()
    capped = ONEDNN_CAPS.get(cap)
    if capped is not None and ISA_LEVELS.index(capped) < ISA_LEVELS.index(level):
        return capped
    return level


def describe_isa(level: Optional[str] = None) -> str:
    """Plain words for an ISA level, e.g. ``"AMX"``, ``"AVX512-BF16, no AMX"``."""
    level = isa_level() if level is None else level
    words = {"amx": "AMX", "avx512_bf16": "AVX512-BF16, no AMX", "avx512_vnni": "AVX512-VNNI, no bfloat16",
             "avx512": "AVX-512, no VNNI", "avx2_vnni": "AVX2 + AVX-VNNI", "avx2": "AVX2",
             "baseline": "no AVX2"}[level]
    cap = settings.current().onednn_max_cpu_isa_raw
    if cap:
        words += f"; capped by ONEDNN_MAX_CPU_ISA={cap}"
    return words


def isa_provenance() -> str:
    """Whether figures measured now are native or capped, for benchmarks to print beside them.

    ``ONEDNN_MAX_CPU_ISA`` caps TensorFlow's and OpenVINO's oneDNN kernels alike (OpenVINO picks its
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


def machine_facts() -> CpuFacts:
    """This machine's facts: :func:`isa_level` (capped as the settings say) and :func:`openvino_available`."""
    return CpuFacts(level=isa_level(), openvino=openvino_available())
