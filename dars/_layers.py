"""The layering of the package, checked from the source (``python -m dars._layers``).

Rules (docs/architecture.md):

* the maths packages — ``supervision``, ``routers``, ``evaluation`` — are leaves: frames in,
  frames out; they import none of ``storage``, ``llm``, ``sim``, ``tasks``, ``flows``, ``cli``;
* ``storage`` imports no maths (``supervision``, ``routers``, ``evaluation``) and no ``llm``,
  ``sim``, ``tasks``, ``flows``, ``cli``;
* ``llm`` imports no ``storage`` and no ``sim`` (the simulator plugs in as a litellm provider
  through an entry point); ``sim`` uses ``llm`` through ``dars.llm.types`` only;
* ``flows`` wire tasks: they import no ``storage`` and no maths package;
* nothing but ``cli`` imports ``cli``; no import cycle between modules.

Every ``import`` statement counts, also those inside functions (a lazy import is still a
dependency). ``from pkg import name`` is an edge to the submodule ``pkg.name`` when that is a
module, else to ``pkg`` itself.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "dars"
MATHS = ("supervision", "routers", "evaluation")
IO_AND_WIRING = ("storage", "llm", "sim", "tasks", "flows", "cli")

#: (layer, layers it must not import)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    **{m: IO_AND_WIRING for m in MATHS},
    "storage": (*MATHS, "llm", "sim", "tasks", "flows", "cli"),
    "llm": ("storage", "sim", "tasks", "flows", "cli"),
    "sim": ("storage", "tasks", "flows", "cli"),
    "flows": ("storage", *MATHS, "cli"),
    "tasks": ("flows", "cli"),
}
#: The only modules of ``llm`` that ``sim`` may import.
SIM_MAY_USE_FROM_LLM = ("dars.llm.types",)


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _resolve(name: str, module: str, is_package: bool, level: int) -> str:
    if level == 0:
        return name
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def import_graph(root: Path | None = None) -> dict[str, set[str]]:
    """Module → the ``dars`` modules it imports (see the module docstring)."""
    root = root or Path(__file__).resolve().parent
    mods = _modules(root)
    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", mod, is_pkg, node.level)
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names
                ]
            else:
                continue
            for t in targets:
                while t and t not in mods:  # `import dars.x.y` of a name inside a module
                    t = t.rpartition(".")[0]
                if t.split(".")[0] == PACKAGE and t != mod:
                    edges.add(t)
        graph[mod] = edges
    return graph


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every broken rule, one line each (empty when the layering holds)."""
    out = []
    for mod, deps in sorted(graph.items()):
        layer = _layer(mod)
        for dep in sorted(deps):
            dl = _layer(dep)
            if dl == layer:
                continue
            if dl in FORBIDDEN.get(layer, ()):
                out.append(f"{mod} imports {dep}: {layer} must not import {dl}")
            elif layer == "sim" and dl == "llm" and dep not in SIM_MAY_USE_FROM_LLM:
                out.append(f"{mod} imports {dep}: sim uses llm through dars.llm.types only")
            elif dl == "cli":
                out.append(f"{mod} imports {dep}: only the CLI imports the CLI")
    out += [f"import cycle: {' -> '.join(c)}" for c in cycles(graph)]
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def main() -> int:
    problems = violations(import_graph())
    for line in problems:
        print(line)
    print(f"{len(problems)} layering problem(s)" if problems else "layering holds")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
