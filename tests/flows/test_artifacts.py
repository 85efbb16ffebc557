"""What a run shows in the Prefect UI (dars.flows.artifacts, issue 13).

The pure parts on hand-written inputs (keys, failure messages, table rows, the store's partition
table); the ``publish_*`` calls do nothing outside a flow run; and, through the session's test
server, the artifacts of an evaluate run (the main table) and a report run (a link to
``report/index.html``). The collect run's partition table is checked on a failing collection in
tests/flows/test_failed_stages.py.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import polars as pl

from dars.benchmarks.loading import load_splits
from dars.flows.artifacts import (
    StageProgress,
    artifact_key,
    failed_partitions,
    publish_collect,
    publish_evaluate,
    publish_report,
    redact,
    stage_message,
    table_rows,
)
from dars.llm import LLMCallError
from dars.storage import write_observations
from dars.tasks.collect import PARTITION_TABLE_SCHEMA, ShardReport, error_label, partition_table
from tests.evaluation.hand_example import TRAINED
from tests.flows.test_failed_stages import _artifacts
from tests.simstore import T0, observation_rows, sim_experiment


def test_artifact_keys_are_lowercase_dashes_from_the_config_name():
    assert artifact_key("demo", "collect-partitions") == "demo-collect-partitions"
    assert artifact_key("Paper v2_final", "report-link") == "paper-v2-final-report-link"
    assert artifact_key("--x--", "decode-progress") == "x-decode-progress"


def _report(model, split, **kw) -> dict:
    return ShardReport("decode", "d", split, model, 0, **kw).to_dict()


def test_failed_shards_are_named_per_partition_with_their_causes():
    shards = [
        _report(
            "m1",
            "train",
            failed=12,
            errors={"server_error 500": 10, "timeout": 2},
            labels={"server_error 500": "HTTP 500 InternalServerError", "timeout": "timeout"},
        ),
        # a second shard of the same partition adds up; its label of a cause is the same
        _report(
            "m1",
            "train",
            failed=1,
            errors={"server_error 500": 1},
            labels={"server_error 500": "HTTP 500 InternalServerError"},
        ),
        _report("m2", "test", not_run=3, blocked={"spend cap reached": 3}),
        {"dataset": "d", "split": "test", "model": "m3", "shard": 1, "exception": "KeyError: 'x'"},
    ]
    parts = failed_partitions(shards)
    assert [(p["model"], p["shards"]) for p in parts] == [("m1", 2), ("m2", 1), ("m3", 1)]
    assert parts[0]["causes"] == [("HTTP 500 InternalServerError", 11), ("timeout", 2)]
    assert stage_message("decode", 9, shards) == (
        "decode: 4 of 9 shards failed — "
        "model=m1 dataset=d split=train: HTTP 500 InternalServerError (11 calls), "
        "timeout (2 calls); "
        "model=m2 dataset=d split=test: not run: spend cap reached (3 calls); "
        "model=m3 dataset=d split=test: KeyError: 'x'"
    )
    # Rewrite shards carry no model: the rewriter's name is given; keys count as rewrites.
    rw = ShardReport("rewrite", "d", "test", None, 0, failed=1, errors={"auth 401": 1}).to_dict()
    assert stage_message("rewrite", 2, [rw], model="rw") == (
        "rewrite: 1 of 2 shards failed — model=rw dataset=d split=test: auth 401 (1 rewrite)"
    )


def test_failure_messages_and_artifact_texts_lose_the_keys(monkeypatch, tmp_path):
    key = "Zk" * 12  # not key-shaped: only the remembered value can catch it
    monkeypatch.setenv("DARS_TEST_ARTIFACT_KEY", key)
    exp = sim_experiment(tmp_path / "r")
    spec = exp.pool.models[0].model_copy(update={"api_key_env": "DARS_TEST_ARTIFACT_KEY"})
    exp = exp.model_copy(update={"pool": exp.pool.model_copy(update={"models": [spec]})})
    assert (
        redact(exp, f"HTTP 500 ({key}) Bearer abc123") == "HTTP 500 ([REDACTED]) Bearer [REDACTED]"
    )


def test_error_labels_name_the_http_status_and_the_exception_class():
    def label(kind: str, detail: str, status: int | None = None) -> str:
        return error_label(LLMCallError(kind, detail, model="m", status_code=status))

    assert label("server_error", "InternalServerError: litellm.X: boom", 500) == (
        "HTTP 500 InternalServerError"
    )
    assert label("auth", "AuthenticationError: bad key", 401) == "HTTP 401 AuthenticationError"
    assert label("timeout", "Timeout: litellm.Timeout: 10 s") == "timeout (Timeout)"
    assert label("missing_key", "environment variable K is not set") == "missing_key"
    assert label("malformed", "response has no choices/message") == "malformed"


def test_table_rows_round_floats_and_drop_non_finite_values():
    frame = pl.DataFrame(
        {"m": ["a", "b"], "U": [0.123456789, math.nan], "n": [1, None], "c": [1.0, math.inf]}
    )
    assert table_rows(frame) == [
        {"m": "a", "U": 0.1235, "n": 1, "c": 1.0},
        {"m": "b", "U": None, "n": None, "c": None},
    ]


def test_partition_table_counts_keys_cost_and_the_latest_error_of_a_failed_key(tmp_path):
    """One train query of demo_mc, one model (sim), 2 rewrites x 1 decode: two keys. Rewrite
    0 failed then worked; rewrite 1 failed twice (the later error is the one shown)."""
    exp = sim_experiment(
        tmp_path / "r", n_train=1, n_items=4, train_rewrites=2, train_decodes=1, models=1
    )
    model = exp.pool.models[0].name
    (item,) = load_splits(exp)["demo_mc"]["train"]
    cells = [(0, "error", "e1"), (0, "ok", None), (1, "error", "old"), (1, "error", "new")]
    frame = pl.DataFrame(
        {
            "dataset": "demo_mc",
            "query_id": item.query_id,
            "model": model,
            "rewrite_id": [c[0] for c in cells],
            "decode_id": 0,
            "score": 1.0,
            "cost_usd": 0.25,
            "status": [c[1] for c in cells],
        }
    )
    rows = observation_rows(frame).with_columns(
        pl.Series("error", [c[2] for c in cells], pl.String),
        pl.Series("created_at", [T0.replace(minute=i) for i in range(4)]),
    )
    # In time order, except that the newer error of rewrite 1 is written before the older one
    # (which lands in another shard, as an imported row may): the newer one is shown.
    for i, shard in ((0, 0), (1, 0), (3, 0), (2, 1)):
        write_observations(exp.root, rows.slice(i, 1), shard=shard)
    table = partition_table(exp)
    assert table.schema == pl.Schema(PARTITION_TABLE_SCHEMA)
    train = table.filter(pl.col("split") == "train").row(0, named=True)
    assert train == {
        "dataset": "demo_mc",
        "split": "train",
        "model": model,
        "expected": 2,
        "done": 1,
        "failed": 1,
        "missing": 0,
        "cost_usd": 0.25,
        "error": "new",
    }


def test_publishing_outside_a_flow_run_does_nothing(monkeypatch, tmp_path):
    import prefect.artifacts as pa

    def refuse(**_):
        raise AssertionError("an artifact was created outside a flow run")

    for name in (
        "create_table_artifact",
        "create_link_artifact",
        "create_markdown_artifact",
        "create_progress_artifact",
        "update_progress_artifact",
    ):
        monkeypatch.setattr(pa, name, refuse)
    exp = sim_experiment(tmp_path / "r")
    publish_collect(exp)  # would read the store through a task: returns first
    publish_evaluate(exp, {"main": {"main": pl.DataFrame({"U": [1.0]})}})
    publish_report(exp, tmp_path / "index.html", tmp_path / "index.md")
    progress = StageProgress(exp, "decode", 3, every_s=0.0)
    progress.advance(3)
    assert progress.done == 3


def test_evaluate_and_report_runs_carry_the_main_table_and_a_report_link(prefect_harness, tmp_path):
    from dars.flows.evaluate import evaluate_flow, report_flow
    from tests.tasks.test_evaluate import _exp, _write_routes, _write_test_store

    root = tmp_path / "run"
    _write_test_store(root)
    for sup, draws in TRAINED.items():
        _write_routes(root, "mirt", sup, draws)
    exp = _exp(root)

    tables = evaluate_flow(exp, experiments=["main"], workers=1)
    md = report_flow(exp)

    from tests.flows.test_run_names import _runs

    (ev,) = asyncio.run(_runs("evaluate", str(root)))
    (rep,) = asyncio.run(_runs("report", str(root)))
    arts = {a.key: a for a in asyncio.run(_artifacts(ev.id))}
    assert set(arts) == {"t-evaluate-main", "t-evaluate-progress"}
    assert arts["t-evaluate-main"].type == "table"
    # Every stage has its progress artifact, here in experiments: 1 of 1 finished.
    assert float(arts["t-evaluate-progress"].data) == 100.0
    assert arts["t-evaluate-progress"].description == "evaluate: 1 of 1 experiments finished"
    main = json.loads(arts["t-evaluate-main"].data)
    expected = tables["main"]["main"]
    assert len(main) == expected.height and list(main[0]) == expected.columns
    assert [r["supervision"] for r in main] == expected["supervision"].to_list()
    assert main[0]["U"] == round(expected["U"][0], 4)

    arts = {a.key: a for a in asyncio.run(_artifacts(rep.id))}
    assert set(arts) == {"t-report-link", "t-report-summary", "t-report-progress"}
    assert float(arts["t-report-progress"].data) == 100.0
    html = Path(md).with_suffix(".html")
    # Prefect stores a link artifact as Markdown: [text](link).
    assert html.is_file()
    assert arts["t-report-link"].data == f"[t report]({html.resolve().as_uri()})"
    assert arts["t-report-summary"].type == "markdown"
    assert html.resolve().as_uri() in arts["t-report-summary"].data
