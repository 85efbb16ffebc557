"""The run root given as a ``file://`` URI, and object-store roots refused (issue 13).

A tiny collect on ``root=file:///<tmp>/run`` writes its store and ledger under ``<tmp>/run``
(before the fix they went to a relative directory ``file:`` under the working directory), and
its flow runs are named and tagged with the root as given. ``s3://…`` fails at load, from the
CLI and from a flow, in one line saying why and what to do instead.
"""

from __future__ import annotations

import asyncio

import pytest
from typer.testing import CliRunner

from dars.cli import app
from dars.config import ConfigError, load_experiment
from dars.storage import RunLayout, scan_observations
from tests.flows.test_collect import tiny_demo_config
from tests.flows.test_run_names import _runs

pytestmark = pytest.mark.flow


def test_file_uri_root_collects_under_its_path_and_names_runs_as_given(
    prefect_harness, tmp_path, monkeypatch
):
    from dars.flows.collect import collect_flow

    monkeypatch.chdir(tmp_path)
    uri = f"file://{tmp_path}/run"
    config = tiny_demo_config(tmp_path / "tiny.yaml", tmp_path / "config-root")

    out = collect_flow(str(config), uri, workers=2)

    assert out["decode"]["failures"] == [] and out["decode"]["ok"] > 0
    layout = RunLayout(uri)
    assert layout.root == tmp_path / "run"
    assert layout.ledger_file().is_file()
    stores = {p.relative_to(tmp_path).parts[:2] for p in tmp_path.rglob("part-*.parquet")}
    assert stores == {("run", "observations"), ("run", "rewrites")}
    assert scan_observations(uri).collect().height == out["decode"]["ok"]
    # Nothing went to a relative "file:" directory, nor to the config's own root.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "tiny.yaml"]

    for stage in ("collect", "rewrite", "decode"):
        (run,) = asyncio.run(_runs(stage, uri))
        assert run.name == f"{stage} demo root={uri}"
        assert {"config:demo", f"root:{uri}"} <= set(run.tags)


def test_object_store_root_is_refused_in_one_line_by_the_cli_and_by_a_flow(
    prefect_harness, tmp_path, monkeypatch
):
    from dars.flows.collect import collect_flow

    monkeypatch.chdir(tmp_path)
    config = tiny_demo_config(tmp_path / "tiny.yaml", tmp_path / "run")

    result = CliRunner().invoke(app, ["collect", "-c", str(config), "--root", "s3://b/p", "--yes"])
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith("config error: --root: run root 's3://b/p': s3:// is not supported")
    assert "SQLite" in line and "file:// URI on a local or POSIX network filesystem" in line

    with pytest.raises(ConfigError, match=r"^--root: run root 's3://b/p'") as info:
        collect_flow(str(config), "s3://b/p", workers=2)
    assert "\n" not in str(info.value)
    # A loaded experiment handed to a flow with another root is checked the same way.
    with pytest.raises(ConfigError, match=r"^root: run root 'gs://b/p'"):
        collect_flow(load_experiment(config), "gs://b/p", workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]
