"""The import graph of the ``warden`` package, read from its source (nothing is imported).

One reading serves two users: the bundler ships each function only the modules its ``main.py``
reaches, and ``tests/test_layers.py`` holds the graph to the layers of ``warden/__init__.py``
(no cycle, no import pointing up a layer, no private name crossing a module).

Every import counts — module level and inside functions (a lazy import still runs in
production) — except those under ``if TYPE_CHECKING:``, which never run. A literal
``importlib.import_module("warden.x")`` counts too. Importing ``warden.a.b`` also runs the
package ``warden.a``'s ``__init__``, so it is an edge to both.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Import", "ModuleGraph", "read_graph"]


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported warden module (a module or package, never a name inside one)
    names: tuple[str, ...]  # names taken by ``from target import ...`` (empty for ``import``)
    line: int


def _module_name(package: Path, path: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """ast.walk in source order (depth first), minus the bodies of ``if TYPE_CHECKING:``.

    A stack, not recursive generators: those cost a frame per level for every node (a third of
    a bundle build's time went there)."""
    todo = list(ast.iter_child_nodes(node))
    todo.reverse()
    while todo:
        child = todo.pop()
        if isinstance(child, ast.If) and _type_checking(child.test):
            todo.extend(reversed(child.orelse))
            continue
        yield child
        children = list(ast.iter_child_nodes(child))
        children.reverse()
        todo.extend(children)


#: What one source text imports, before it is resolved against a package: ("import", name,
#: line), ("from", module, level, names, line) or ("call", literal, line), in source order.
_Fact = tuple[Any, ...]


def _facts(source: str, filename: str) -> tuple[_Fact, ...]:
    """The import statements of ``source``; a syntax error names ``filename``."""
    try:
        return _facts_of(source)
    except SyntaxError:
        ast.parse(source, filename)  # the same error, with the file's name
        raise


@functools.lru_cache(maxsize=1024)
def _facts_of(source: str) -> tuple[_Fact, ...]:
    """Parsed once per text: the bundler, the layer test and the bundle tests read the same
    files (or copies of them) many times over."""
    out: list[_Fact] = []
    for node in _walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend(("import", alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names = tuple(alias.name for alias in node.names)
            out.append(("from", node.module, node.level, names, node.lineno))
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called == "import_module" and node.args:
                arg = node.args[0]
                literal = arg.value if isinstance(arg, ast.Constant) else None
                if isinstance(literal, str):
                    out.append(("call", literal, node.lineno))
    return tuple(out)


@dataclass
class ModuleGraph:
    root: str  # top package name
    files: dict[str, Path]  # module name -> source file
    imports: list[Import]

    def is_module(self, name: str) -> bool:
        return name in self.files

    def edges(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {m: set() for m in self.files}
        for imp in self.imports:
            out[imp.source].add(imp.target)
        return out

    def closure(self, starts: Iterable[str]) -> set[str]:
        """Every module that importing ``starts`` runs (packages' ``__init__`` included)."""
        edges = self.edges()
        seen: set[str] = set()
        todo = [m for s in starts for m in _with_parents(s) if m in self.files]
        while todo:
            m = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            todo.extend(t for t in edges.get(m, ()) if t not in seen)
            todo.extend(p for p in _with_parents(m)[:-1] if p in self.files)  # its packages run
        return seen

    def cycles(self) -> list[list[str]]:
        """Strongly connected components with more than one module (or a self-import)."""
        edges = self.edges()
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on: set[str] = set()
        found: list[list[str]] = []

        def visit(v: str) -> None:  # Tarjan; the package is small enough for recursion
            index[v] = low[v] = len(index)
            stack.append(v)
            on.add(v)
            for w in sorted(edges[v]):
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in edges[v]:
                    found.append(sorted(comp))

        for v in sorted(edges):
            if v not in index:
                visit(v)
        return found


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _imports_of(
    module: str, source: str, filename: str, known: Mapping[str, Path], root: str
) -> list[Import]:
    is_package = known[module].name == "__init__.py"
    out: list[Import] = []

    # Packages this module sits in are already being imported when it runs: no edge to them.
    ancestors = set(_with_parents(module)[:-1] if not is_package else _with_parents(module))

    def add(target: str, names: tuple[str, ...], line: int) -> None:
        for parent in _with_parents(target)[1:]:  # ``warden`` itself is only an edge if named
            if parent in known and parent != module and parent not in ancestors:
                out.append(Import(module, parent, names if parent == target else (), line))
        if target == root and root in known and root != module:
            out.append(Import(module, root, names, line))

    for fact in _facts(source, filename):
        kind = fact[0]
        if kind == "import":
            _, name, line = fact
            if name == root or name.startswith(root + "."):
                add(name, (), line)
        elif kind == "from":
            _, from_module, level, names, line = fact
            if level:  # relative: resolve against this module's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (level - 1)]
                target = ".".join([*base, *(from_module.split(".") if from_module else [])])
            else:
                target = from_module or ""
            if not (target == root or target.startswith(root + ".")):
                continue
            plain = []
            for name in names:
                sub = f"{target}.{name}"
                if sub in known:  # ``from warden.jobs import backup``: a module
                    add(sub, (), line)
                else:
                    plain.append(name)
            if plain or not names:
                add(target, tuple(plain), line)
        else:
            _, literal, line = fact
            if (literal + ".").startswith(root + "."):
                add(literal, (), line)
    return out


def read_graph(package: Path) -> ModuleGraph:
    """The graph of the package folder ``package`` (e.g. ``shared/warden``)."""
    files = {
        _module_name(package, p): p
        for p in sorted(package.rglob("*.py"))
        if "__pycache__" not in p.parts
    }
    root = package.name
    imports: list[Import] = []
    for module, path in files.items():
        imports += _imports_of(module, path.read_text(), str(path), files, root)
    return ModuleGraph(root, files, imports)


def imports_of_file(path: Path, graph: ModuleGraph) -> set[str]:
    """The package modules a file outside the package (a function's main.py) imports."""
    files = dict(graph.files)
    files["__main__"] = path
    found = _imports_of("__main__", path.read_text(), str(path), files, graph.root)
    return {imp.target for imp in found}
