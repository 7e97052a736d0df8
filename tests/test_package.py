"""The installable package: ``pip install .`` gives ``import codeFeature``, the ``codefeature`` command and
the shipped models, with no optional extra imported; requirements.txt and pyproject.toml name the same libraries.

The wheel is built offline from a copy of the package's sources (``pip wheel --no-deps --no-build-isolation
--no-index``: setuptools and wheel from this interpreter) into which a scan's leftovers were planted, and
installed without its dependencies into a temporary virtual environment that sees this interpreter's
libraries (``--system-site-packages``). Everything installed runs from a folder outside the repository,
with no ``PYTHONPATH``, so only the installed copy can be imported.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
#: Files a model folder keeps (``int8/`` holds the calibrated int8 kernels of the musicnn models).
MODEL_FILES = ("manifest.json", "model.json", "model.weights.h5")
#: Libraries of the extras: importing the package, or listing its models, must load none of them.
OPTIONAL = ("mutagen", "tqdm", "pyarrow", "ray", "openvino", "streamlit", "streamlit_webrtc", "altair", "pandas",
            "matplotlib", "PIL", "sklearn", "pytest", "hypothesis", "playwright", "pydub")
#: Nor TensorFlow: it loads with the first model.
HEAVY = ("tensorflow", "keras")


def _requirements(lines) -> dict[str, Requirement]:
    found: dict[str, Requirement] = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        key = f"{canonicalize_name(requirement.name)}; {requirement.marker}"
        assert key not in found, f"{requirement.name} is listed twice"
        found[key] = requirement
    return found


def _package_requirements() -> dict[str, Requirement]:
    """The package's dependencies and every extra's, self-references (``codeFeature[app]``) followed."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    lines, todo, seen = list(PYPROJECT["project"]["dependencies"]), ["all"], set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for line in extras[extra]:
            requirement = Requirement(line)
            if canonicalize_name(requirement.name) == canonicalize_name(PYPROJECT["project"]["name"]):
                todo.extend(requirement.extras)
            elif line not in lines:
                lines.append(line)
    assert seen == set(extras), f"extras outside 'all': {sorted(set(extras) - seen)}"
    return _requirements(lines)


def test_requirements_txt_is_the_package_with_every_extra():
    listed = _requirements((REPO / "requirements.txt").read_text().splitlines())
    packaged = _package_requirements()
    assert set(listed) == set(packaged), (f"only in requirements.txt: {sorted(set(listed) - set(packaged))}; "
                                          f"only in pyproject.toml: {sorted(set(packaged) - set(listed))}")
    for key, requirement in listed.items():
        assert str(requirement) == str(packaged[key]), f"requirements.txt {requirement} != pyproject {packaged[key]}"


def test_every_subpackage_of_codeFeature_is_in_the_package_list():
    on_disk = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "codeFeature").rglob("__init__.py")}
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert on_disk - listed == set(), f"add {sorted(on_disk - listed)} to [tool.setuptools] packages"
    assert listed - on_disk == {"codeFeature.models"}


def test_the_console_command_is_the_cli_main():
    from codeFeature.__main__ import main

    module, _, name = PYPROJECT["project"]["scripts"]["codefeature"].partition(":")
    assert (module, name) == ("codeFeature.__main__", "main") and callable(main)


# ------------------------------------------------------------------ the wheel, built and installed once

def _shipped() -> dict[str, list[str]]:
    """Model name -> the files of its folder, relative to ``models/``, as the repository ships them."""
    root = REPO / "models"
    return {folder.name: sorted(str(p.relative_to(root)) for p in folder.rglob("*") if p.is_file())
            for folder in sorted(root.iterdir()) if (folder / "manifest.json").is_file()}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("codeFeature", "models"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    # what a run, a cache or a data set might leave in the tree: none of it may reach the wheel
    planted = {"models/cnn_mfcc/song.wav": b"RIFF", "models/cnn_mfcc/openvino/model.blob": b"x",
               "models/gtzan/genres/blues/blues.00000.wav": b"RIFF", "models/cnn_mfcc/history.csv": b"x",
               "codeFeature/__pycache__/audio.cpython-311.pyc": b"x", "runs/cnn/model.weights.h5": b"x",
               "models/cnn_mfcc/report.png": b"x"}
    for name, data in planted.items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "--no-cache-dir", "--disable-pip-version-check", "--quiet", ".", "-w", str(out)],
                           cwd=source, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    (built,) = out.glob("codeFeature-*-py3-none-any.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict:
    """A virtual environment with the wheel installed; its python, its console command and a clean env."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                   check=True, timeout=120)
    python = venv / "bin" / "python"
    # this interpreter's pip, installing into the environment it runs in
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--no-cache-dir",
                              "--disable-pip-version-check", "--quiet", str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CODEFEATURE_MODELS",
                                                           "CODEFEATURE_MODEL_PATH", "PYTHONSAFEPATH")}
    elsewhere = tmp_path_factory.mktemp("elsewhere")  # the working folder: not the repository
    return {"venv": venv, "python": python, "command": venv / "bin" / "codefeature", "env": env, "cwd": elsewhere}


def _run(installed, *argv, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=installed["cwd"], env={**installed["env"], **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def test_the_wheel_holds_the_package_and_the_models_and_nothing_else(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    modules = {str(p.relative_to(REPO)) for p in (REPO / "codeFeature").rglob("*.py") if "__pycache__" not in p.parts}
    assert modules <= set(names), sorted(modules - set(names))
    shipped = [f"codeFeature/models/{f}" for files in _shipped().values() for f in files]
    assert {"codeFeature/models/default.txt", *shipped} <= set(names), sorted(set(shipped) - set(names))
    assert all(f"codeFeature/models/{model}/{f}" in names for model in _shipped() for f in MODEL_FILES)
    assert any(n.startswith("codeFeature/models/musicnn_genre/int8/") and n.endswith(".npy") for n in names)
    outside = [n for n in names if not n.startswith(("codeFeature/", "codeFeature-"))]
    assert outside == [], outside  # no app, tests, training, runs or data
    unwanted = [n for n in names if re.search(r"\.(wav|au|mp3|flac|ogg|png|webp|csv|pyc|blob|sqlite)$|/gtzan/|/runs/",
                                              n, re.I)]
    assert unwanted == [], unwanted
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))
    assert "codefeature = codeFeature.__main__:main" in entry_points.decode()


def test_installed_package_imports_from_site_packages_with_its_models_and_no_extra(installed):
    script = ("import json, codeFeature; from codeFeature import model_io; name = model_io.default_model_name(); "
              "manifest = model_io.read_manifest(model_io.resolve_model_dir(name)); "
              "print(json.dumps({'file': codeFeature.__file__, 'models': str(model_io.MODELS_DIR), 'default': name, "
              "'labels': manifest['labels'], 'names': model_io.list_models()}))")
    run = _run(installed, installed["python"], "-X", "importtime", "-c", script)
    assert run.returncode == 0, run.stderr[-2000:]
    told = json.loads(run.stdout.splitlines()[-1])
    venv = installed["venv"].resolve()
    assert Path(told["file"]).resolve().is_relative_to(venv), told["file"]  # the installed copy, not the repository
    assert Path(told["models"]) == Path(told["file"]).parent / "models"
    assert told["default"] == (REPO / "models" / "default.txt").read_text().strip()
    assert len(told["labels"]) == 10 and told["names"] == list(_shipped())
    imported = {line.split("|")[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert "codeFeature.model_io" in imported  # importtime really listed the imports
    loaded = sorted(n for n in imported if n.split(".")[0] in OPTIONAL + HEAVY)
    assert loaded == [], loaded[:10]


def test_console_command_lists_the_shipped_models_and_models_folder_can_be_replaced(installed, tmp_path):
    run = _run(installed, installed["command"], "--list-models")
    assert run.returncode == 0, run.stderr[-2000:]
    rows = {line[2:].split()[0]: line for line in run.stdout.splitlines() if line[:1] in ("*", " ") and line[2:3] != " "}
    assert list(rows) == list(_shipped()), run.stdout
    default = (REPO / "models" / "default.txt").read_text().strip()
    assert rows[default].startswith("* ") and "valid track accuracy" in rows[default]
    assert "inference here" in run.stdout
    # CODEFEATURE_MODELS still replaces the shipped folder
    mine = tmp_path / "mine"
    shutil.copytree(REPO / "models" / "cnn_mfcc_small", mine / "only_this")
    run = _run(installed, installed["command"], "--list-models", env={"CODEFEATURE_MODELS": str(mine)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert [line[2:].split()[0] for line in run.stdout.splitlines() if line.startswith("* ")] == ["only_this"]


def test_console_command_and_python_m_reach_every_subcommand(installed):
    for argv in ([installed["command"], "--help"], [installed["python"], "-m", "codeFeature", "--help"],
                 [installed["command"], "scan", "--help"], [installed["command"], "export", "--help"]):
        run = _run(installed, *argv)
        assert run.returncode == 0 and "usage:" in run.stdout, (argv, run.stderr[-2000:])


def test_console_command_lists_models_without_tensorflow_or_an_extra(installed):
    run = _run(installed, installed["python"], "-X", "importtime", installed["command"], "--list-models")
    assert run.returncode == 0, run.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert "codeFeature.__main__" in imported
    loaded = sorted(n for n in imported if n.split(".")[0] in OPTIONAL + HEAVY)
    assert loaded == [], loaded[:10]


def test_installed_model_probe_runs_its_child_on_the_installed_package(installed):
    """The probe's child finds the installed package with no PYTHONPATH, even from a folder holding a
    ``codeFeature`` of its own (which would shadow it if the child put its working folder on the path)."""
    decoy = installed["cwd"] / "codeFeature"
    decoy.mkdir(exist_ok=True)
    (decoy / "__init__.py").write_text("raise ImportError('the decoy in the working folder was imported')\n")
    script = ("from codeFeature import model_probe; r = model_probe.probe_model('cnn_mfcc_small', remember=False); "
              "print('PROBE', r.ok, r.returncode, repr(r.message)); print(r.detail)")
    run = _run(installed, installed["python"], "-P", "-c", script, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "PROBE True 0 ''" in run.stdout, run.stdout[-3000:]
