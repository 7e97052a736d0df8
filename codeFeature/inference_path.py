"""The choice of inference path: which engine and precision run a model's forward pass on a machine.

:func:`plan` is a pure function of the model's manifest, the choices asked for (the arguments, else the
settings' ``CODEFEATURE_ENGINE`` / ``CODEFEATURE_PRECISION``) and the machine's facts
(:class:`codeFeature.cpu.CpuFacts`), so that every CPU's choice is tested by passing its facts.
"Engine" means only what runs the forward pass: TensorFlow or OpenVINO (:mod:`codeFeature.engines`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from . import settings
from .cpu import BFLOAT16_LEVELS, INT8_EXACT_LEVELS, ISA_LEVELS, CpuFacts, describe_isa, machine_facts
from .errors import ConfigError

#: Compute precisions :func:`plan` (and :func:`codeFeature.model_io.load_model`) accept;
#: ``CODEFEATURE_PRECISION`` sets the default.
PRECISIONS = ("auto", "float32", "bfloat16", "int8")
#: Engines :func:`plan` accepts; ``CODEFEATURE_ENGINE`` sets the default.
ENGINES = ("auto", "tensorflow", "openvino")


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
        The level (:func:`codeFeature.cpu.isa_level`) it was chosen for.
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
#: model and machine allow. Every one keeps valid's answers: OpenVINO float32 is float32 (within 5e-5 of
#: TensorFlow's), bfloat16 is judged in the manifest's metrics, int8 by the folder's ``valid_check`` (8-bit
#: input) or ``valid_check_7bit`` (7-bit input, :func:`codeFeature.int8_rewrites.int8_input_codes`), whichever
#: the level runs. Why this order, with the measurements: docs/performance.md.
#:
#: * AMX, AVX512-BF16, AVX512-VNNI: OpenVINO's int8 heavy convolutions first; without a judged calibration,
#:   TensorFlow's bfloat16 heavy layers where bfloat16 is native.
#: * AVX-512 without VNNI, AVX2 with or without AVX-VNNI: OpenVINO's int8 heavy convolutions with 7-bit input,
#:   exact there (the same outputs as a VNNI CPU's), where the folder's ``valid_check_7bit`` kept every valid
#:   verdict; else OpenVINO float32 (TensorFlow's float32 answers, several times faster).
#: * Below AVX2: OpenVINO float32; int8 on SSE4.1 kernels was not judged.
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


def plan(manifest: dict, *, precision: Optional[str] = None, engine: Optional[str] = None,
         facts: Optional[CpuFacts] = None, level: Optional[str] = None, openvino: Optional[bool] = None) -> Plan:
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
    facts : CpuFacts, optional
        The machine's facts (default :func:`codeFeature.cpu.machine_facts`, this machine's).
    level : str, optional
        One of :data:`ISA_LEVELS`; overrides ``facts.level``.
    openvino : bool, optional
        Whether the OpenVINO engine is installed; overrides ``facts.openvino``.

    Returns
    -------
    Plan
        ``"auto"`` takes the first of :data:`AUTO_PATHS`'s paths for ``level`` that the model and machine
        allow: OpenVINO int8 needs OpenVINO and a folder carrying its int8 calibration (the manifest's
        ``int8_calibration``) that valid judged to keep the answers (its ``valid_check.passed``); OpenVINO
        float32 needs OpenVINO. An explicit ``"float32"`` or ``"bfloat16"`` with engine ``"auto"`` means
        TensorFlow's; an explicit ``"int8"`` without calibration rounds the kernels plainly.
    """
    if precision is None:
        precision = settings.current().precision
    if engine is None:
        engine = settings.current().engine
    if precision not in PRECISIONS:
        raise ConfigError(f"precision={precision!r}: use one of {', '.join(PRECISIONS)}")
    if engine not in ENGINES:
        raise ConfigError(f"engine={engine!r}: use one of {', '.join(ENGINES)}")
    if facts is None and (level is None or openvino is None):
        facts = machine_facts()
    level = facts.level if level is None else level
    if level not in ISA_LEVELS:
        raise ConfigError(f"level={level!r}: use one of {', '.join(ISA_LEVELS)}")
    has_openvino = facts.openvino if openvino is None else bool(openvino)
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
    if level in INT8_EXACT_LEVELS:
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
