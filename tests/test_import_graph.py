"""Facts about who imports whom, read from the source (every import statement, function-local ones included, so a
cycle hidden behind a deferred import still counts): no cycles; providers/ imports nothing of server/ or tools/;
server/ imports no simulator and no example, and tools/ only from server/app.py; nothing outside tests/ imports tests/."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("server", "tools", "providers", "simulators", "examples", "bench", "tests")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The project module an imported dotted name lands in (the longest prefix that is a module of ours)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imported_names(module: str, path: Path) -> Iterator[str]:
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            for alias in node.names:
                # `from package import module` imports that module; `from module import name` the module itself.
                yield f"{prefix}.{alias.name}" if _resolve(f"{prefix}.{alias.name}") == f"{prefix}.{alias.name}" else prefix


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = {_resolve(name) for name in _imported_names(module, path)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


GRAPH = _graph()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    advanced = True
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            if advanced:
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
    return found


def _edges_from(package: str, into: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{source} -> {target}"
        for source, targets in GRAPH.items()
        if source.split(".")[0] == package
        for target in targets
        if target.split(".")[0] in into
    )


def test_the_reader_sees_the_imports_it_should() -> None:
    # The facts below are only as good as the reader: check it on imports known to exist.
    assert "server.settings" in GRAPH["server.cli"]
    assert "providers.base" in GRAPH["providers.slack"]
    assert "simulators.base" in GRAPH["simulators.slack"]  # a relative import
    assert len(GRAPH) > 150


def test_no_import_cycles() -> None:
    assert _cycles(GRAPH) == []


def test_providers_import_nothing_of_server_or_tools() -> None:
    assert _edges_from("providers", ("server", "tools")) == []


def test_server_imports_no_simulator_and_no_example() -> None:
    assert _edges_from("server", ("simulators", "examples")) == []


def test_server_reaches_tools_only_from_its_composition_root() -> None:
    # server/app.py installs the tools on the MCP server; nothing else in server/ may depend on a tool.
    assert [edge for edge in _edges_from("server", ("tools",)) if not edge.startswith("server.app ->")] == []


def test_nothing_outside_tests_imports_tests() -> None:
    outside = [p for p in PACKAGES if p != "tests"]
    assert [edge for p in outside for edge in _edges_from(p, ("tests",))] == []
