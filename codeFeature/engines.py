"""The engines that run a model's forward pass, TensorFlow and OpenVINO, and the OpenVINO engine itself.

The model folder (``model.json`` + ``model.weights.h5`` + ``manifest.json``) stays the only source of
truth: every engine starts from the Keras model :func:`codeFeature.model_io.load_model` builds from it.

* **TensorFlow** (always there): float32, or the manifest's ``bfloat16_layers`` (musicnn's timbral
  convolutions) in bfloat16 under Keras's ``mixed_bfloat16`` policy.
* **OpenVINO** (the ``openvino`` wheel, optional at run time): the float32 Keras model converted at load
  time (``openvino.convert_model`` of the traced forward), cached in :func:`cache_dir` under a key of
  the folder's bytes and the OpenVINO version, so that a cached conversion runs without TensorFlow; in
  int8, the heavy convolutions are rewritten first (:mod:`codeFeature.int8_rewrites`). This module holds
  the conversion, its cache and :class:`OpenVINORunner`.

Which engine and precision run where is chosen by :func:`codeFeature.inference_path.plan` from the facts
of :mod:`codeFeature.cpu`; the names below re-exported from those modules keep older imports working.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import Any, Optional

import numpy as np

from . import settings
# re-exported for callers that import them from here (the owners are codeFeature.cpu,
# codeFeature.inference_path and codeFeature.int8_rewrites)
from .cpu import (BFLOAT16_LEVELS, INT8_EXACT_LEVELS, ISA_LEVELS, CpuFacts, cpu_flags, cpu_model,  # noqa: F401
                  describe_isa, hardware_isa_level, isa_level, isa_provenance, machine_facts, openvino_available)
from .inference_path import AUTO_PATHS, ENGINES, PRECISIONS, Plan, plan  # noqa: F401
from .int8_rewrites import (DEFAULT_INT8_OPTIONS, LOGMEL_RANGE, POLYPHASE, TRANSPOSE_ROW_KERNELS_ON,  # noqa: F401
                            Int8Options, int8_input_codes, quantise_heavy_convolutions, rows_as_columns)

#: OpenVINO's default performance hint: ``THROUGHPUT`` (single-threaded streams, :class:`OpenVINORunner`)
#: classified 100 songs of 30 s 20 % faster than ``LATENCY`` (one stream on every core) on a 2-core
#: machine, and a 5-minute song no slower (``bench/forward_options.py``); ``CODEFEATURE_OPENVINO_HINT``
#: overrides it (:func:`performance_hint`).
PERFORMANCE_HINT = "THROUGHPUT"
#: Bumped when the conversion changes, so that stale cached conversions are not reused.
_CONVERSION_VERSION = "6"


def performance_hint() -> str:
    """OpenVINO's performance hint: the setting ``CODEFEATURE_OPENVINO_HINT``, else :data:`PERFORMANCE_HINT`."""
    return settings.current().openvino_hint or PERFORMANCE_HINT


def cache_dir() -> Optional[Path]:
    """Where converted models are kept: ``CODEFEATURE_ENGINE_CACHE``, else ``~/.cache/codefeature``; ``None``
    where ``CODEFEATURE_ENGINE_CACHE`` is empty (no cache)."""
    return settings.current().engine_cache_dir()


def _folder_key(folder: Path, plan_: Plan, heavy: list[str], moments: dict[str, np.ndarray],
                key_extra: str = "", options: Int8Options = DEFAULT_INT8_OPTIONS) -> str:
    import openvino

    digest = hashlib.sha256(key_extra.encode())
    for name in ("model.json", "model.weights.h5"):
        digest.update((folder / name).read_bytes())
    for layer in sorted(moments):
        digest.update(layer.encode() + np.ascontiguousarray(moments[layer], np.float64).tobytes())
    digest.update(repr((plan_.precision, sorted(heavy), LOGMEL_RANGE, openvino.__version__,
                        _CONVERSION_VERSION, options.transposes_rows(plan_.precision, plan_.isa),
                        options.codes(plan_.isa) if plan_.precision == "int8" else None)
                       + options.key()).encode())
    return digest.hexdigest()[:24]


#: The first inference in a process goes through OpenVINO's Python bindings alone. Their first copy of
#: an input (``InferRequest.infer``'s ``tensor.data``) initialises a C++ function-local static that
#: itself waits for the GIL (pybind11's ``gil_safe_call_once_and_store`` of the numpy API): a second
#: thread arriving meanwhile blocks on that static's guard while holding the GIL, and the process hangs
#: for good. Two streams' first calls met like that in about 1 in 15 runs of the CLI on 100 files (13
#: in 30 processes of a bare two-thread repro); ``tests/codeFeature/test_engines.py`` checks they no longer can.
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
                         moments: Optional[dict[str, np.ndarray]] = None, key_extra: str = "",
                         options: Int8Options = DEFAULT_INT8_OPTIONS) -> Optional[Path]:
    """Where the conversion of ``folder``'s network for ``plan_`` is cached (``.xml``, ``.bin`` and a
    ``.json`` of what the Keras model told), or ``None`` where there is no cache. ``key_extra`` adds what
    else the conversion must agree with (the manifest's shapes and labels)."""
    directory = cache_dir()
    if directory is None:
        return None
    moments = (moments or {}) if plan_.precision == "int8" else {}
    key = _folder_key(folder, plan_, heavy, moments, key_extra, options)
    return directory / f"openvino-{folder.name}-{tag}-{key}.xml"


def open_cached_openvino(cached: Optional[Path], plan_: Plan) -> Optional["OpenVINORunner"]:
    """The cached conversion at ``cached`` compiled for this CPU, or ``None`` where it is not there (or not
    whole). Needs no TensorFlow: a model read from the cache runs without importing it."""
    if cached is None or not all(cached.with_suffix(s).is_file() for s in (".xml", ".bin", ".json")):
        return None
    import openvino as ov

    try:
        told = json.loads(cached.with_suffix(".json").read_text())
        return compile_openvino(ov.Core().read_model(str(cached)), plan_, int(told["outputs"]),
                                told.get("forward_batch"))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged cache entry: convert again


def build_openvino(keras_model: Any, folder: Path, input_shape: tuple[int, ...], plan_: Plan,
                   heavy: list[str], *, tag: str = "model",
                   moments: Optional[dict[str, np.ndarray]] = None, forward_batch: Optional[int] = None,
                   key_extra: str = "", options: Int8Options = DEFAULT_INT8_OPTIONS) -> OpenVINORunner:
    """Convert (or read the cached conversion of) ``keras_model`` and compile it for this CPU.

    ``tag`` names what of the folder's network ``keras_model`` is (``"model"``, or an embedding layer);
    ``moments`` is the folder's int8 calibration (used by ``plan_.precision == "int8"``);
    ``forward_batch`` (the Keras model's segments per call) is kept with the cached conversion, so
    that a model read from the cache needs no Keras model (:func:`open_cached_openvino`); ``options``
    chooses the int8 rewrites (:class:`codeFeature.int8_rewrites.Int8Options`).

    Raises
    ------
    RuntimeError
        Whatever OpenVINO raises when it cannot convert or compile; :func:`codeFeature.model_io.load_model`
        then falls back to TensorFlow.
    """
    cached = cached_openvino_path(folder, plan_, heavy, tag=tag, moments=moments, key_extra=key_extra,
                                  options=options)
    runner = open_cached_openvino(cached, plan_)
    if runner is not None and len(runner.outputs) == len(keras_model.outputs):
        return runner
    return convert_openvino(keras_model, cached, input_shape, plan_, heavy, moments=moments,
                            forward_batch=forward_batch, options=options)


def openvino_graph(keras_model: Any, input_shape: tuple[int, ...], plan_: Plan, heavy: list[str], *,
                   moments: Optional[dict[str, np.ndarray]] = None,
                   options: Int8Options = DEFAULT_INT8_OPTIONS) -> Any:
    """``keras_model`` converted (through TensorFlow) to an OpenVINO graph for ``plan_``, not compiled: in
    int8 with its heavy convolutions rewritten as ``options`` says. Benchmarks read the graph from here."""
    import openvino as ov
    import tensorflow as tf

    moments = (moments or {}) if plan_.precision == "int8" else {}
    function = tf.function(lambda x: keras_model(x, training=False),
                           input_signature=[tf.TensorSpec((None, *input_shape), tf.float32)])
    ov_model = ov.convert_model(function.get_concrete_function())
    if plan_.precision == "int8" and not quantise_heavy_convolutions(
            ov_model, keras_model, heavy, moments, input_codes=options.codes(plan_.isa),
            stack=options.stack_rows, polyphase=options.polyphase):
        raise RuntimeError("no heavy convolution found to quantise")
    if options.transposes_rows(plan_.precision, plan_.isa):
        rows_as_columns(ov_model)
    return ov_model


def convert_openvino(keras_model: Any, cached: Optional[Path], input_shape: tuple[int, ...], plan_: Plan,
                     heavy: list[str], *, moments: Optional[dict[str, np.ndarray]] = None,
                     forward_batch: Optional[int] = None,
                     options: Int8Options = DEFAULT_INT8_OPTIONS) -> OpenVINORunner:
    """Convert ``keras_model`` (:func:`openvino_graph`), keep the conversion at ``cached`` (the
    :func:`cached_openvino_path`; ``None``: keep nothing) and compile it for this CPU. Raises as
    :func:`build_openvino` does."""
    import openvino as ov

    n_outputs = len(keras_model.outputs)
    ov_model = openvino_graph(keras_model, input_shape, plan_, heavy, moments=moments, options=options)
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
    return compile_openvino(ov_model, plan_, n_outputs, forward_batch)


def compile_openvino(ov_model: Any, plan_: Plan, n_outputs: int, forward_batch: Optional[int]) -> OpenVINORunner:
    """``ov_model`` compiled for this CPU at ``plan_``'s precision, with the :func:`performance_hint`."""
    import openvino as ov

    hint = "bf16" if plan_.precision == "bfloat16" else "f32"
    compiled = ov.Core().compile_model(ov_model, "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                         "PERFORMANCE_HINT": performance_hint()})
    if len(compiled.outputs) != n_outputs:
        raise RuntimeError(f"the converted model has {len(compiled.outputs)} outputs, the Keras model {n_outputs}")
    return OpenVINORunner(compiled, n_outputs, forward_batch=forward_batch)
