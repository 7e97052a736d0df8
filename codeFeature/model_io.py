"""Save and load model folders: ``model.json`` + ``model.weights.h5`` + ``manifest.json``, and find them.

A model folder is the only model format the project reads. The architecture is
Keras 3 JSON, deserialised in safe mode (no Python code is loaded), the weights
are HDF5, and the manifest says what the model expects: its feature
configuration, its ordered output labels, its training data and its metrics.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from . import settings
from .config import FeatureConfig
from .errors import ConfigError, ModelError
# re-exported: the precisions load_model takes are the inference path's (codeFeature.inference_path)
from .inference_path import PRECISIONS  # noqa: F401

MODEL_JSON = "model.json"
WEIGHTS_FILE = "model.weights.h5"
MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


def shipped_models_dir() -> Path:
    """The shipped models: ``codeFeature/models`` in an installed package (the wheel carries the
    repository's ``models/`` there), else ``models/`` beside the package in a source checkout."""
    installed = resources.files(__package__).joinpath("models")
    if isinstance(installed, Path) and installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / "models"


def default_models_dir() -> Path:
    """The folder of shipped models: the setting ``CODEFEATURE_MODELS``, else :func:`shipped_models_dir`."""
    return Path(settings.current().models_dir or shipped_models_dir())


def __getattr__(name: str) -> Any:
    # MODELS_DIR was a constant read from the environment at import; it is read at each use now
    if name == "MODELS_DIR":
        return default_models_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Environment variable naming extra folders of model folders (``os.pathsep``-separated), searched
#: after :func:`default_models_dir` by :func:`list_models` and :func:`resolve_model_dir` (read by :mod:`codeFeature.settings`).
MODEL_PATH_ENV = "CODEFEATURE_MODEL_PATH"
DEFAULT_FILE = "default.txt"
#: Most segments per forward pass.
FORWARD_BATCH = 16
#: Bytes of layer outputs one forward pass may hold. musicnn's front end makes ~30 MB of
#: activations per 3 s segment (counted at float32), so it runs 4 segments at a time (the fastest of
#: 1-8 at either precision; 16 at once cost ~600 MB more at the peak and are slower); small networks
#: run :data:`FORWARD_BATCH` at a time.
FORWARD_BUDGET_BYTES = 128 * 2**20


@dataclass
class LoadedModel:
    """A model ready for inference, with what its manifest says about it.

    Attributes
    ----------
    name : str
        The model's name (its folder name unless the manifest says otherwise).
    path : pathlib.Path
        The model folder.
    keras_model : keras.Model
        The network; its input is ``config.input_shape`` per segment.
    manifest : dict
        The parsed ``manifest.json``.
    config : FeatureConfig
        Rebuilt from the manifest, never from defaults.
    labels : tuple of str
        Output labels in output order.
    precision : str
        ``"float32"``; ``"bfloat16"`` where the manifest's ``bfloat16_layers`` compute in bfloat16
        (TensorFlow) or the whole graph does (OpenVINO); ``"int8"`` where the heavy convolutions
        compute in int8 (OpenVINO). See :func:`load_model`.
    engine : str
        ``"tensorflow"`` or ``"openvino"``: what runs :meth:`forward` (:mod:`codeFeature.engines`).
    inference_path : str
        One line for people: engine, precision and the CPU level it was chosen for, e.g.
        ``"OpenVINO, int8 heavy convolutions, float32 elsewhere (AVX512-BF16, no AMX)"``.
    """

    name: str
    path: Path
    keras_model: Any
    manifest: dict
    config: FeatureConfig
    labels: tuple[str, ...]
    precision: str = "float32"
    engine: str = "tensorflow"
    inference_path: str = "TensorFlow oneDNN, float32"
    _graph: Any = field(default=None, repr=False, compare=False)
    _runner: Any = field(default=None, repr=False, compare=False)

    @functools.cached_property
    def forward_batch(self) -> int:
        """Segments per forward pass: :data:`FORWARD_BATCH`, fewer where that would hold more than
        :data:`FORWARD_BUDGET_BYTES` of layer outputs (:func:`forward_batch_of`; kept with a cached
        OpenVINO conversion, so that it needs no Keras model)."""
        told = getattr(self._runner, "forward_batch", None)
        return told if told else forward_batch_of(self.keras_model)

    @property
    def task(self) -> str:
        return self.manifest.get("task", "genre")

    @functools.cached_property
    def decision_rule(self):
        """How this model's segment probabilities become one answer (:class:`codeFeature.decision.DecisionRule`)."""
        from .decision import DecisionRule

        return DecisionRule.from_manifest(self.manifest)

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """Every output of the network for a batch of features.

        Parameters
        ----------
        x : np.ndarray, shape (n, *config.input_shape), float32

        Returns
        -------
        list of np.ndarray
            One array per output, each shape (n, output_size); the genre (or tag) output first.

        Notes
        -----
        Runs in batches of :attr:`forward_batch` through the compiled OpenVINO model, or one traced
        TensorFlow graph (traced on the first call, with the batch axis left free), which is faster
        than eager calls; either is safe to call from several threads.
        """
        parts: list[list[np.ndarray]] = []
        batch = self.forward_batch
        if self._runner is not None:
            parts = self._runner.run(x, batch)
        else:
            if self._graph is None:
                self._graph = _traced_forward(self.keras_model, self.config.input_shape)
            for lo in range(0, len(x), batch):
                result = self._graph(np.ascontiguousarray(x[lo:lo + batch], dtype=np.float32))
                outputs = result if isinstance(result, (list, tuple)) else [result]
                parts.append([np.asarray(o) for o in outputs])
        if not parts:
            return [np.zeros((0, int(t.shape[-1])), np.float32) for t in self.keras_model.outputs]
        return [np.concatenate(column) for column in zip(*parts)]


def library_versions() -> dict[str, str]:
    """Versions of the libraries that decide a model's numbers."""
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for dist in ("tensorflow", "tensorflow-cpu", "keras", "librosa", "numpy", "soundfile", "python_speech_features"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return versions


def save_model(model: Any, folder: str | os.PathLike, manifest: dict) -> Path:
    """Write ``model`` and ``manifest`` as a model folder.

    Parameters
    ----------
    model : keras.Model
        The network; ``model.to_json()`` must round-trip with built-in layers only.
    folder : path-like
        Created if missing; existing files of the three names are replaced.
    manifest : dict
        Must hold ``feature_config`` (a :meth:`FeatureConfig.to_dict`) and ``labels``.
        ``format_version``, ``input_shape``, ``output_size`` and ``versions`` are filled in.

    Returns
    -------
    pathlib.Path
        The folder.
    """
    folder = Path(folder)
    if "feature_config" not in manifest or "labels" not in manifest:
        raise ModelError("a manifest needs 'feature_config' and 'labels'")
    config = FeatureConfig.from_dict(manifest["feature_config"])
    labels = list(manifest["labels"])
    _check_shapes(model, config, labels, manifest.get("input_shape"), where=str(folder))
    _check_extra_outputs(model, manifest.get("extra_outputs", []), where=str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    full = {
        "format_version": FORMAT_VERSION,
        "name": manifest.get("name", folder.name),
        "task": manifest.get("task", "genre"),
        **manifest,
        "input_shape": list(_model_input_shape(model)),
        "output_size": len(labels),
        "versions": manifest.get("versions") or library_versions(),
    }
    (folder / MODEL_JSON).write_text(model.to_json(indent=1))
    model.save_weights(str(folder / WEIGHTS_FILE))
    (folder / MANIFEST_FILE).write_text(json.dumps(full, indent=2, sort_keys=False) + "\n")
    return folder


def read_manifest(folder: str | os.PathLike) -> dict:
    """Parse a folder's ``manifest.json``, with a clear error if it is missing or broken."""
    path = Path(folder) / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ModelError(f"{folder} has no {MANIFEST_FILE}; a model folder needs {MODEL_JSON}, "
                         f"{WEIGHTS_FILE} and {MANIFEST_FILE}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ModelError(f"{path} must hold a JSON object")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(f"{path} has format_version={version!r}; this library reads {FORMAT_VERSION}")
    for key in ("feature_config", "labels"):
        if key not in manifest:
            raise ModelError(f"{path} lacks the key {key!r}")
    return manifest


def model_search_path(models_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for model folders, in order.

    ``models_dir`` alone when given; otherwise :func:`default_models_dir` (``models/``, or
    ``$CODEFEATURE_MODELS``) followed by each folder of ``$CODEFEATURE_MODEL_PATH``
    (``os.pathsep``-separated, as the settings read it), so models trained elsewhere can be offered
    beside the shipped ones.
    """
    if models_dir is not None:
        return [Path(models_dir)]
    extra = [Path(p).expanduser() for p in settings.current().model_path]
    folders: list[Path] = []
    for folder in [default_models_dir(), *extra]:
        if folder not in folders:
            folders.append(folder)
    return folders


def model_locations(*, models_dir: str | os.PathLike | None = None, task: str | None = None) -> dict[str, Path]:
    """Model name -> its folder, over :func:`model_search_path`; the first folder holding a name wins.

    Optionally only models of one ``task`` (``"genre"`` or ``"tags"``; unreadable manifests are left out).
    """
    found: dict[str, Path] = {}
    for root in model_search_path(models_dir):
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if child.name in found or not (child / MANIFEST_FILE).is_file():
                continue
            if task is not None:
                try:
                    if read_manifest(child).get("task", "genre") != task:
                        continue
                except ModelError:
                    continue
            found[child.name] = child
    return found


def resolve_model_dir(name_or_dir: str | os.PathLike | None = None, *, models_dir: str | os.PathLike | None = None) -> Path:
    """Turn a model's name, or a folder path, into a model folder.

    ``None`` means the default shipped model (``models/default.txt``). A name is looked up in
    :func:`model_search_path`: ``models/`` first, then ``$CODEFEATURE_MODEL_PATH``.
    """
    if name_or_dir is None:
        name_or_dir = default_model_name(models_dir=models_dir)
    candidate = Path(name_or_dir)
    if (candidate / MANIFEST_FILE).is_file() or (candidate / MODEL_JSON).is_file():
        return candidate
    locations = model_locations(models_dir=models_dir)
    if str(name_or_dir) in locations:
        return locations[str(name_or_dir)]
    known = ", ".join(locations) or "none"
    where = ", ".join(str(f) for f in model_search_path(models_dir))
    raise ModelError(f"no model called {str(name_or_dir)!r} in {where}: give a model's name ({known}) "
                     f"or a folder holding {MODEL_JSON}, {WEIGHTS_FILE} and {MANIFEST_FILE}")


def list_models(*, models_dir: str | os.PathLike | None = None, task: str | None = None) -> list[str]:
    """Names of the model folders under ``models_dir``, else under ``models/`` then ``$CODEFEATURE_MODEL_PATH``.

    Shipped models come first, sorted, then each extra folder's, sorted; a name already seen is not
    repeated (``models/`` wins). Optionally only one ``task``.
    """
    return list(model_locations(models_dir=models_dir, task=task))


def default_model_name(*, models_dir: str | os.PathLike | None = None) -> str:
    """The app's and CLI's default model: the name in ``models/default.txt``."""
    root = Path(models_dir) if models_dir is not None else default_models_dir()
    try:
        name = (root / DEFAULT_FILE).read_text().strip()
    except OSError:
        genre_models = list_models(models_dir=root, task="genre")
        if not genre_models:
            raise ModelError(f"no models found in {root}") from None
        return genre_models[0]
    return name


def _with_bfloat16_layers(architecture: dict, names: list[str], where: str) -> dict:
    """``architecture`` with the named layers under Keras's ``mixed_bfloat16`` policy (bfloat16
    compute, float32 weights)."""
    layers = architecture.get("config", {}).get("layers", [])
    by_name = {layer.get("config", {}).get("name"): layer for layer in layers}
    missing = [name for name in names if name not in by_name]
    if missing:
        raise ModelError(f"{where}: bfloat16_layers names layers the model lacks: {', '.join(missing)}")
    for name in names:
        by_name[name]["config"]["dtype"] = {"module": "keras", "class_name": "DTypePolicy",
                                            "config": {"name": "mixed_bfloat16"}, "registered_name": None}
    return architecture


def load_model(name_or_dir: str | os.PathLike | None = None, *, models_dir: str | os.PathLike | None = None,
               precision: str | None = None, engine: str | None = None, facts: Any = None,
               int8_options: Any = None) -> LoadedModel:
    """Load a model folder for inference.

    Parameters
    ----------
    name_or_dir : str or path-like, optional
        A shipped model's name, a model folder, or ``None`` for the default model.
    models_dir : path-like, optional
        Where shipped models live (default: the repository's ``models/``).
    precision : {"auto", "float32", "bfloat16"}, optional
        Compute precision of the layers the manifest lists as ``bfloat16_layers`` (musicnn's
        timbral convolutions, ~80 % of its arithmetic); every other layer, and every model without
        such a list, computes in float32. ``"auto"`` (the default, or ``CODEFEATURE_PRECISION``)
        picks bfloat16 where the CPU has it natively: ~3x faster there, and the manifest's
        ``metrics`` give the valid figures at both precisions. Training and the parity tests use
        ``"float32"``. ``"int8"``: the heavy convolutions in int8 (OpenVINO engine), their kernels
        rounded against the folder's ``int8_calibration`` (:mod:`codeFeature.quantise`); ``"auto"``
        picks it on CPUs with AVX-512 VNNI and no AMX.
    engine : {"auto", "tensorflow", "openvino"}, optional
        What runs the forward pass (default ``CODEFEATURE_ENGINE`` or ``"auto"``). ``"auto"`` with
        precision ``"auto"`` picks the fastest path measured for this CPU
        (:func:`codeFeature.engines.plan`: OpenVINO where installed, for models listing heavy layers);
        an explicit ``"float32"`` or ``"bfloat16"`` with engine ``"auto"`` keeps TensorFlow. If OpenVINO
        cannot convert or compile the model, ``"auto"`` falls back to TensorFlow float32 and says so
        in :attr:`LoadedModel.inference_path`.
    facts : codeFeature.cpu.CpuFacts, optional
        The machine's facts the path is chosen for (default this machine's; tests pass others).
    int8_options : codeFeature.int8_rewrites.Int8Options, optional
        Which int8 rewrites an int8 OpenVINO conversion runs (default the library's; benchmarks pass others).

    Returns
    -------
    LoadedModel

    Raises
    ------
    ModelError
        If a file is missing, the JSON is not a safe Keras model, or the model's input or
        output shape disagrees with its manifest.
    """
    from . import engines, inference_path, quantise
    from .cpu import describe_isa
    from .int8_rewrites import DEFAULT_INT8_OPTIONS

    folder = resolve_model_dir(name_or_dir, models_dir=models_dir)
    manifest = read_manifest(folder)
    try:
        config = FeatureConfig.from_dict(manifest["feature_config"])
    except ConfigError as exc:
        raise ModelError(f"{folder / MANIFEST_FILE}: {exc}") from exc
    if precision is None:
        precision = settings.current().precision
    if engine is None:
        engine = settings.current().engine
    options = DEFAULT_INT8_OPTIONS if int8_options is None else int8_options
    plan = inference_path.plan(manifest, precision=precision, engine=engine, facts=facts)
    labels = tuple(str(label) for label in manifest["labels"])
    loaded = dict(name=str(manifest.get("name", folder.name)), path=folder, manifest=manifest, config=config,
                  labels=labels)
    heavy = list(manifest.get("bfloat16_layers", []))
    if plan.engine == "openvino":
        moments = quantise.read_calibration(folder, manifest)
        try:
            cached = engines.cached_openvino_path(folder, plan, heavy, moments=moments,
                                                  key_extra=_conversion_key(manifest), options=options)
        except OSError:  # a file of the folder is missing: the Keras path below says which, in words
            cached = None
        runner = engines.open_cached_openvino(cached, plan)
        if runner is not None and _runner_fits(runner, config, manifest):
            # converted before from these very files: no TensorFlow, and the Keras model only if asked for
            return LoadedModel(**loaded, keras_model=LazyKerasModel(folder, manifest, config), precision=plan.precision,
                               engine="openvino", inference_path=plan.description, _runner=runner)
    model = _build_keras_model(folder, manifest, config, plan.precision if plan.engine == "tensorflow" else "float32")
    runner = None
    path = plan.description
    if plan.engine == "openvino":
        try:
            # the cache was looked up above: convert, and keep the conversion where that lookup looked
            runner = engines.convert_openvino(model, cached, config.input_shape, plan, heavy, moments=moments,
                                              forward_batch=forward_batch_of(model), options=options)
        except Exception as exc:  # OpenVINO raises RuntimeError and others for a graph it cannot take
            if engine == "openvino":
                raise ModelError(f"OpenVINO could not run {folder}: {exc}") from exc
            path = (f"TensorFlow oneDNN, float32 ({describe_isa(plan.isa)}; OpenVINO failed: "
                    f"{str(exc).splitlines()[0][:120]})")
            plan = inference_path.Plan("tensorflow", "float32", plan.isa)
    return LoadedModel(**loaded, keras_model=model, precision=plan.precision, engine=plan.engine,
                       inference_path=path, _runner=runner)


def _build_keras_model(folder: Path, manifest: dict, config: FeatureConfig, precision: str) -> Any:
    """The folder's Keras model, checked against its manifest; ``precision`` ``"bfloat16"`` puts the
    manifest's ``bfloat16_layers`` under Keras's mixed policy."""
    import keras

    try:
        architecture = json.loads((folder / MODEL_JSON).read_text())
    except FileNotFoundError as exc:
        raise ModelError(f"{folder} has no {MODEL_JSON}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{folder / MODEL_JSON} is not valid JSON: {exc}") from exc
    if precision == "bfloat16":
        architecture = _with_bfloat16_layers(architecture, list(manifest["bfloat16_layers"]), str(folder))
    try:
        model = keras.saving.deserialize_keras_object(architecture, safe_mode=True)
    except Exception as exc:  # Keras raises many types for a bad config
        raise ModelError(f"{folder / MODEL_JSON} is not a Keras model this library can load safely: {exc}") from exc
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"{folder} has no {WEIGHTS_FILE}")
    try:
        model.load_weights(str(weights))
    except Exception as exc:  # h5py / Keras raise several types for a mismatch
        raise ModelError(f"{weights} does not fit the architecture in {MODEL_JSON}: {exc}") from exc
    labels = [str(label) for label in manifest["labels"]]
    _check_shapes(model, config, labels, manifest.get("input_shape"), where=str(folder))
    _check_extra_outputs(model, manifest.get("extra_outputs", []), where=str(folder))
    return model


def embedding_forward(model: Any, layer: str = "penultimate") -> Any:
    """``model`` answering with one of its inner representations, through the fast inference path.

    Parameters
    ----------
    model : LoadedModel
        A musicnn model folder loaded with :func:`load_model`.
    layer : str
        As for :func:`codeFeature.musicnn.embedding_model`.

    Returns
    -------
    LoadedModel
        Its ``forward(x)[0]`` is the embedding, shape (n, dim): one traced graph, run in batches that
        keep the front end's activations bounded, as for predictions (calling the Keras model on a
        whole song at once holds ~50 MB per segment).
    """
    import dataclasses

    from . import engines, quantise
    from .cpu import isa_level
    from .inference_path import Plan
    from .musicnn import embedding_model

    keras_model = embedding_model(model.keras_model, layer)
    runner = None
    if model.engine == "openvino":
        # the same engine and precision as the tagger's (converted once, then cached like it)
        plan = Plan("openvino", model.precision, isa_level())
        runner = engines.build_openvino(keras_model, model.path, model.config.input_shape, plan,
                                        list(model.manifest.get("bfloat16_layers", [])), tag=layer,
                                        moments=quantise.read_calibration(model.path, model.manifest))
    return dataclasses.replace(model, keras_model=keras_model, _graph=None, _runner=runner)


class LazyKerasModel:
    """A model folder's float32 Keras model, built on first use.

    A model whose OpenVINO conversion is read from the cache runs without TensorFlow (seconds less at
    start-up, ~0.5 GB less memory); code that wants the Keras model itself (embeddings, calibration,
    layer inspection) gets it through this stand-in, which builds it then and passes everything on.
    """

    def __init__(self, folder: Path, manifest: dict, config: FeatureConfig):
        self._folder = Path(folder)
        self._manifest = manifest
        self._config = config
        self._model = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = _build_keras_model(self._folder, self._manifest, self._config, "float32")
        return self._model

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._load(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._load()(*args, **kwargs)

    def __repr__(self) -> str:
        return f"LazyKerasModel({self._folder}, {'built' if self._model is not None else 'not built yet'})"


def _conversion_key(manifest: dict) -> str:
    """What of the manifest a cached conversion must agree with besides the model's own files."""
    return json.dumps({key: manifest.get(key) for key in ("labels", "input_shape", "extra_outputs", "feature_config",
                                                          "bfloat16_layers")}, sort_keys=True)


def _runner_fits(runner: Any, config: FeatureConfig, manifest: dict) -> bool:
    """Whether a cached conversion's shapes are the manifest's: input, and each output's size."""
    sizes = [len(manifest["labels"])] + [len(spec.get("labels", [])) for spec in manifest.get("extra_outputs", [])]
    try:
        got = [int(port.get_partial_shape()[-1].get_length()) for port in runner.outputs]
    except Exception:  # a dynamic output size: not one of ours
        return False
    return runner.input_shape == tuple(config.input_shape) and got == sizes and runner.forward_batch is not None


def forward_batch_of(keras_model: Any) -> int:
    """Segments per forward pass for ``keras_model``: :data:`FORWARD_BATCH`, fewer where that would hold
    more than :data:`FORWARD_BUDGET_BYTES` of layer outputs."""
    per_segment = 0
    for layer in keras_model.layers:
        outputs = layer.output if isinstance(layer.output, (list, tuple)) else [layer.output]
        per_segment += sum(4 * math.prod(int(d or 1) for d in o.shape[1:]) for o in outputs)
    return max(1, min(FORWARD_BATCH, FORWARD_BUDGET_BYTES // max(per_segment, 1)))


def _check_extra_outputs(model: Any, specs: list, where: str) -> None:
    outputs = model.outputs[1:]
    if len(outputs) != len(specs):
        raise ModelError(f"{where}: the model has {len(outputs)} outputs after the first but its manifest's "
                         f"extra_outputs lists {len(specs)}")
    for tensor, spec in zip(outputs, specs):
        if int(tensor.shape[-1]) != len(spec.get("labels", [])):
            raise ModelError(f"{where}: output {spec.get('name')!r} has {int(tensor.shape[-1])} values but the "
                             f"manifest lists {len(spec.get('labels', []))} labels")


def _traced_forward(keras_model: Any, input_shape: tuple[int, ...]):
    import keras

    if keras.backend.backend() != "tensorflow":
        return lambda x: keras.ops.convert_to_numpy(keras_model(x, training=False))
    import tensorflow as tf

    signature = [tf.TensorSpec((None, *input_shape), tf.float32)]
    return tf.function(lambda x: keras_model(x, training=False), input_signature=signature, reduce_retracing=True)


def _model_input_shape(model: Any) -> tuple[int, ...]:
    shape = model.inputs[0].shape if getattr(model, "inputs", None) else model.input_shape
    return tuple(int(d) for d in shape[1:])


def _model_output_size(model: Any) -> int:
    return int(model.outputs[0].shape[-1])


def _check_shapes(model: Any, config: FeatureConfig, labels: list[str], manifest_shape: Any, *, where: str) -> None:
    model_in = _model_input_shape(model)
    expected = tuple(config.input_shape)
    if model_in != expected:
        raise ModelError(f"{where}: the model takes input {model_in} but its manifest's feature_config "
                         f"produces {expected}")
    if manifest_shape is not None and tuple(manifest_shape) != model_in:
        raise ModelError(f"{where}: the model takes input {model_in} but its manifest says "
                         f"input_shape {tuple(manifest_shape)}")
    out = _model_output_size(model)
    if out != len(labels):
        raise ModelError(f"{where}: the model has {out} outputs but its manifest lists {len(labels)} labels")
