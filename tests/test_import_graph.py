"""No import circles: the import graph of the project's own modules, built from the source with ``ast``.

Every ``import`` and ``from ... import`` counts, at module level and inside functions alike (a circle
hidden in a function-level import still means two modules that cannot be understood, or loaded, one
without the other); relative imports are resolved; ``from package import name`` counts as importing the
submodule ``package.name`` where there is one, else the package. Only the project's modules are nodes.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: What the graph covers: packages (every ``.py`` below them) and single files, relative to the repository.
ROOTS = ("codeFeature", "training", "bench", "webapp", "app.py")

#: Circles allowed, each named with its reason: none. A new circle fails the test.
KNOWN_CIRCLES: set[frozenset[str]] = set()


def _module_name(path: Path, repo: Path) -> str:
    parts = list(path.relative_to(repo).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules(repo: Path = REPO) -> dict[str, Path]:
    """Module name -> file, for every module under :data:`ROOTS`."""
    found = {}
    for root in ROOTS:
        path = repo / root
        if not path.exists():
            continue
        files = [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))
        for file in files:
            if "__pycache__" not in file.parts:
                found[_module_name(file, repo)] = file
    return found


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name a relative import of ``target`` at ``level`` in ``module`` refers to."""
    if level == 0:
        return target or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[:len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node, except the bodies of ``if TYPE_CHECKING:`` blocks: imports for annotations only, which
    never run and so cannot make a circle."""
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            pending.extend(node.orelse)
            pending.append(node.test)
            continue
        pending.extend(ast.iter_child_nodes(node))


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project's modules it imports (anywhere in its source)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, file in modules.items():
        is_package = file.name == "__init__.py"
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        for node in _runtime_nodes(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, is_package, node.level, node.module)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}" if base else alias.name
                    targets.append(submodule if submodule in modules else base)
            for target in targets:
                # ``import a.b.c`` names a.b.c; the closest enclosing project module is the one loaded
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _path_through(graph: dict[str, set[str]], component: list[str]) -> str:
    """One circle through the component's first module, as ``a -> b -> a``, for the failure message."""
    members = set(component)
    start = component[0]
    previous = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & members):
            if child == start:
                path = [node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return " -> ".join([*reversed(path), start])
            if child not in previous:
                previous[child] = node
                queue.append(child)
    return " <-> ".join(component)


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """The builder itself: module- and function-level imports, relative ones, submodules named by ``from``."""
    package = tmp_path / "codeFeature"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from .a import thing\n")
    (package / "a.py").write_text("import os\n\ndef f():\n    from .sub import b\n    return b\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text("from ..a import f\nimport codeFeature.sub\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n")
    modules = project_modules(tmp_path)
    graph = import_graph(modules)
    assert graph["codeFeature"] == {"codeFeature.a"}
    assert graph["codeFeature.a"] == {"codeFeature.sub.b"}  # inside a function, and a submodule by ``from``
    assert graph["codeFeature.sub.b"] == {"codeFeature.a", "codeFeature.sub"}
    assert circles(graph) == [["codeFeature.a", "codeFeature.sub.b"]]
    assert graph["codeFeature.c"] == set()  # an import for annotations only never runs


def test_no_import_circles():
    graph = import_graph(project_modules())
    assert "codeFeature.model_io" in graph and graph["codeFeature.model_io"]  # the source was really read
    unknown = [c for c in circles(graph) if frozenset(c) not in KNOWN_CIRCLES]
    assert not unknown, "import circles:\n" + "\n".join(_path_through(graph, c) for c in unknown)
