"""The package's shape holds: no import cycle, imports point down the layers of
``warden/__init__.py``, no private name crosses a module, each room has a face.

The graph is read from source by :mod:`warden_local.imports` (every import, lazy ones included,
except under ``if TYPE_CHECKING:``), the same reading the bundler ships by.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from warden_local.imports import Import, ModuleGraph, read_graph

PACKAGE = Path(__file__).resolve().parents[1] / "shared/warden"

#: Layer of each room, lowest first; a module may import its own layer or lower. The longest
#: matching prefix decides (``warden.alerts.router`` is a use case, ``warden.alerts`` core).
LAYERS: dict[str, int] = {
    # foundation
    "warden": 0,
    "warden.errors": 0,
    "warden.settings": 0,
    "warden.logs": 0,
    "warden.web": 0,
    "warden.retry": 0,
    # pure core
    "warden.config": 1,
    "warden.ml": 1,
    "warden.report": 1,
    "warden.factories": 1,
    "warden.alerts": 1,
    "warden.alerts.inputs": 1,
    "warden.alerts.rules": 1,
    # adapters
    "warden.clients": 2,
    "warden.store": 2,
    "warden.telemetry": 2,
    "warden.alerts.state": 2,
    "warden.alerts.receivers": 2,
    # wiring
    "warden.runtime": 3,
    # serving applications' client: adapters and the foundation only (no config, no use case)
    "warden.serving": 3,
    # use cases
    "warden.jobs": 4,
    "warden.alerts.router": 4,
    # the operator's command line: nothing imports it
    "warden.cli": 5,
}
PURE = 1
#: Third-party roots the pure core may not import, even lazily: no I/O clients in the core.
IO_ROOTS = ("google", "requests", "functions_framework", "flask", "urllib3")


def layer(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if (prefix := ".".join(parts[:n])) in LAYERS:
            return LAYERS[prefix]
    raise AssertionError(f"{module}: not in any layer of tests/test_layers.py")


@pytest.fixture(scope="module")
def graph() -> ModuleGraph:
    return read_graph(PACKAGE)


def test_every_module_has_a_layer(graph: ModuleGraph) -> None:
    for module in graph.files:
        layer(module)


def test_no_import_cycle(graph: ModuleGraph) -> None:
    assert graph.cycles() == []


def _room(module: str) -> str:
    return module if module.count(".") < 1 else ".".join(module.split(".")[:2])


def test_imports_point_down_the_layers(graph: ModuleGraph) -> None:
    up = [
        f"{i.source} (layer {layer(i.source)}) imports {i.target} (layer {layer(i.target)}), "
        f"line {i.line}"
        for i in graph.imports
        if layer(i.target) > layer(i.source)
    ]
    assert up == []


def test_use_cases_do_not_import_each_other_across_rooms(graph: ModuleGraph) -> None:
    # jobs may use jobs (housekeeping runs a backup); the router and the jobs stay apart.
    crossing = [
        i
        for i in graph.imports
        if layer(i.source) == layer(i.target) == 4 and _room(i.source) != _room(i.target)
    ]
    assert crossing == []


def _third_party_imports(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_pure_core_imports_no_io_client(graph: ModuleGraph) -> None:
    offenders = {
        module: sorted(r for r in _third_party_imports(path) if r in IO_ROOTS)
        for module, path in graph.files.items()
        if layer(module) == PURE
    }
    assert {m: r for m, r in offenders.items() if r} == {}


def _private(imp: Import) -> list[str]:
    return [n for n in imp.names if n.startswith("_") and not n.startswith("__")]


def test_no_private_name_crosses_a_module(graph: ModuleGraph) -> None:
    crossing = [f"{i.source} takes {_private(i)} from {i.target}" for i in graph.imports]
    assert [c for c, i in zip(crossing, graph.imports, strict=True) if _private(i)] == []
    # ...nor through an attribute: ``registry._read_json`` on an imported module.
    attrs = []
    for module, path in graph.files.items():
        tree = ast.parse(path.read_text())
        aliases = {
            a.asname or a.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("warden")
            for a in node.names
            if f"{node.module}.{a.name}" in graph.files
        }
        attrs += [
            f"{module}: {node.value.id}.{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ]
    assert attrs == []


def test_each_room_says_what_it_holds_and_shows_its_face(graph: ModuleGraph) -> None:
    packages = [m for m, p in graph.files.items() if p.name == "__init__.py" and m != "warden"]
    assert {"warden.config", "warden.store", "warden.ml", "warden.alerts", "warden.jobs"} <= set(
        packages
    )
    for name in packages:
        module = importlib.import_module(name)
        assert (module.__doc__ or "").strip(), f"{name}: no docstring"
        assert isinstance(getattr(module, "__all__", None), list), f"{name}: no __all__"
        for public in module.__all__:
            # a name it defines or re-exports, or one of its submodules
            assert hasattr(module, public) or f"{name}.{public}" in graph.files, (name, public)


def test_the_reader_sees_lazy_imports_and_skips_type_checking_ones(tmp_path: Path) -> None:
    pkg = tmp_path / "warden"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub/__init__.py").write_text("")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from warden.b import B\n"
        "def f():\n    from warden.sub import c\n"
        "def g():\n    import importlib\n    return importlib.import_module('warden.b')\n"
    )
    (pkg / "b.py").write_text("from warden.a import _helper\n")
    (pkg / "sub/c.py").write_text("")
    g = read_graph(pkg)
    edges = g.edges()
    assert edges["warden.a"] == {"warden.sub", "warden.sub.c", "warden.b"}
    assert g.cycles() == [["warden.a", "warden.b"]]  # through the import_module call
    assert [i.names for i in g.imports if i.source == "warden.b"] == [("_helper",)]
    assert g.closure(["warden.sub.c"]) == {"warden", "warden.sub", "warden.sub.c"}
