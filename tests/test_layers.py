"""The layering of the package (docs/architecture.md), checked from the source."""

from __future__ import annotations

import textwrap

from dars._layers import cycles, import_graph, violations


def _tree(tmp_path, files: dict[str, str]):
    root = tmp_path / "dars"
    for rel, body in {"__init__.py": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body))
    return import_graph(root)


def test_the_package_keeps_its_layers():
    assert violations(import_graph()) == []


def test_graph_resolves_relative_submodule_and_lazy_imports(tmp_path):
    graph = _tree(
        tmp_path,
        {
            "storage/__init__.py": "from dars.storage.store import write\n",
            "storage/store.py": "import polars\n",
            "routers/__init__.py": "",
            "routers/base.py": "from . import targets\n",
            "routers/targets.py": "def f():\n    from dars.storage import store\n",
        },
    )
    assert graph["dars.storage"] == {"dars.storage.store"}
    assert graph["dars.routers.base"] == {"dars.routers.targets"}
    assert graph["dars.routers.targets"] == {"dars.storage.store"}  # lazy imports count
    assert violations(graph) == [
        "dars.routers.targets imports dars.storage.store: routers must not import storage"
    ]


def test_rules_for_sim_flows_and_the_cli(tmp_path):
    graph = _tree(
        tmp_path,
        {
            "llm/__init__.py": "",
            "llm/types.py": "",
            "llm/client.py": "from dars.sim import world\n",
            "sim/__init__.py": "",
            "sim/world.py": "from dars.llm import types\nfrom dars.llm.client import generate\n",
            "flows/__init__.py": "",
            "flows/x.py": "import dars.cli\n",
            "cli.py": "",
        },
    )
    assert violations(graph) == [
        "dars.flows.x imports dars.cli: flows must not import cli",
        "dars.llm.client imports dars.sim.world: llm must not import sim",
        "dars.sim.world imports dars.llm.client: sim uses llm through dars.llm.types only",
        "import cycle: dars.llm.client -> dars.sim.world",
    ]


def test_cycles_are_reported_once_per_component():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
