"""Failed shards make their stage's subflow Failed, naming the cause (issue 13), on the fake
server; read back through the Prefect API of the session's test server.

One model (fake-500) answers HTTP 500 to every train prompt, with the key echoed in the error
body: the decode subflow run is Failed and its state message names, per failed partition, the
model, dataset and split, the HTTP status and the exception class, without the key; the collect
run is Failed too and its partition table artifact carries the (scrubbed) error. Then
`dars rerun --failed --model fake-500 --yes` makes exactly the failed calls and completes. A
rewriter failure fails the rewrite subflow and the decode subflow still runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from dars.benchmarks.loading import load_splits
from dars.cli import app
from dars.config import Experiment, load_experiment
from dars.storage import scan_observations
from dars.tasks.collect import decode_shard_task, rewrite_shard_task
from dars.tasks.failures import CollectionIncomplete
from tests.fakeserver import FakeOpenAIServer, Status, last_user_prompt
from tests.flows.test_collect import KEY_ENV, _respond, fake_config
from tests.flows.test_run_names import _runs
from tests.tasks.test_collect import decode_prompts

pytestmark = pytest.mark.flow

runner = CliRunner()
KEY = "sk-test-" + "Q" * 24


async def _artifacts(flow_run_id) -> list:
    """The keyed artifacts the server holds for one flow run: those dars makes (the records
    of persisted results Prefect adds have no key)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async with get_client() as client:
        found = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return [a for a in found if a.key]


@contextlib.contextmanager
def _fake_run(tmp_path, monkeypatch) -> Iterator[tuple[FakeOpenAIServer, Path, Path, Experiment]]:
    """The fake server and fake_config's experiment on it (root ``tmp_path/run``); the models'
    key in the environment, Prefect's shard retries without their delays."""
    monkeypatch.setenv(KEY_ENV, KEY)
    for task in (decode_shard_task, rewrite_shard_task):
        monkeypatch.setattr(task, "retry_delay_seconds", [0, 0])
    with FakeOpenAIServer(responder=_respond) as srv:
        root = tmp_path / "run"
        config = fake_config(tmp_path / "fake.yaml", root, srv.base_url)
        yield srv, root, config, load_experiment(config)


def _errors(root, model: str) -> pl.DataFrame:
    obs = scan_observations(root).collect()
    return obs.filter((pl.col("model") == model) & (pl.col("status") == "error"))


def test_failed_decode_shards_fail_the_subflow_with_their_cause_and_a_rerun_fixes_them(
    prefect_harness, quiet_prefect_console, tmp_path, monkeypatch
):
    with _fake_run(tmp_path, monkeypatch) as (srv, root, config, exp):
        train = {it.question for it in load_splits(exp)["demo_mc"]["train"]}
        srv.add_rule(
            Status(500, echo_key=True),
            times=None,
            match=lambda b: (
                b["model"] == "fake-500" and any(q in last_user_prompt(b) for q in train)
            ),
        )
        first = runner.invoke(app, ["collect", "-c", str(config), "--yes"])
        assert first.exit_code == 1, first.output
        # The CLI's summary: the failed shard in one line, then the store's status.
        assert "collection incomplete: 1 shard(s) failed" in first.output
        assert "demo_mc/train/fake-500/shard 0: 16 failed" in first.output
        assert "total: 84 expected, 68 done, 16 failed, 0 missing" in first.output
        failed = _errors(root, "fake-500")
        assert set(failed["split"]) == {"train"} and failed.height == 16

        (rewrite,) = asyncio.run(_runs("rewrite", str(root)))
        (decode,) = asyncio.run(_runs("decode", str(root)))
        (collect,) = asyncio.run(_runs("collect", str(root)))
        assert rewrite.state.is_completed()
        assert decode.state.is_failed() and collect.state.is_failed()
        message = decode.state.message
        assert "decode: 1 of 6 shards failed" in message, message
        assert (
            "model=fake-500 dataset=demo_mc split=train: HTTP 500 InternalServerError (16 calls)"
        ) in message, message
        assert KEY not in message and KEY not in collect.state.message

        # The collect run's partition table: every partition of the plan, the failed one with
        # its error (scrubbed of the key).
        arts = {a.key: a for a in asyncio.run(_artifacts(collect.id))}
        assert set(arts) == {"fake-flow-collect-partitions"}
        table = json.loads(arts["fake-flow-collect-partitions"].data)
        assert list(table[0]) == [
            "dataset", "split", "model", "expected", "done", "failed", "missing", "cost_usd",
            "error",
        ]  # fmt: skip
        by_part = {(r["split"], r["model"]): r for r in table}
        assert len(by_part) == 6
        bad = by_part[("train", "fake-500")]
        assert (bad["expected"], bad["done"], bad["failed"]) == (16, 0, 16)
        assert bad["cost_usd"] == 0 and "server_error 500" in bad["error"]
        ok = by_part[("test", "fake-500")]
        assert (ok["failed"], ok["error"]) == (0, None) and ok["cost_usd"] > 0
        # The decode run's progress artifact ends at 100 % of its shards.
        (progress,) = asyncio.run(_artifacts(decode.id))
        assert (progress.key, progress.type) == ("fake-flow-decode-progress", "progress")
        assert float(progress.data) == 100.0 and progress.description.endswith(
            "6 of 6 shards finished"
        )
        for art in asyncio.run(_artifacts(collect.id)) + asyncio.run(_artifacts(decode.id)):
            assert KEY not in str(art.data) and KEY not in str(art.description)

        srv.clear_rules()
        srv.reset_counts()
        argv = ["rerun", "--failed", "-c", str(config), "--model", "fake-500", "--yes"]
        rerun = runner.invoke(app, argv)
        assert rerun.exit_code == 0, rerun.output

        # Exactly the failed calls: per prompt, as many requests as failed keys share it.
        assert srv.hits == decode_prompts(exp, root, failed)
        assert srv.total_requests == 16
        assert _errors(root, "fake-500").height == 0
        decodes = asyncio.run(_runs("decode", str(root)))
        assert len(decodes) == 2 and decodes[-1].state.is_completed()


def test_a_failed_rewrite_subflow_names_its_cause_and_decode_still_runs(
    prefect_harness, tmp_path, monkeypatch
):
    from dars.flows.collect import collect_flow

    with _fake_run(tmp_path, monkeypatch) as (srv, root, config, exp):
        q = load_splits(exp)["demo_mc"]["test"][0]
        srv.add_rule(
            Status(401),
            times=None,
            match=lambda b: b["model"] == "fake-rewriter" and q.question in last_user_prompt(b),
        )
        with pytest.raises(CollectionIncomplete):
            collect_flow(str(config), str(root), workers=4)

        (rewrite,) = asyncio.run(_runs("rewrite", str(root)))
        (decode,) = asyncio.run(_runs("decode", str(root)))
        assert rewrite.state.is_failed(), rewrite.state
        assert (
            "rewrite: 1 of 2 shards failed — model=fake-rewriter dataset=demo_mc split=test: "
            "HTTP 401 AuthenticationError (1 rewrite)"
        ) in rewrite.state.message, rewrite.state.message
        # Decode ran every key it could: the three models' keys of q's rewrite wait for it.
        assert decode.state.is_failed()
        assert "not run: rewrite missing (1 call)" in decode.state.message, decode.state.message
        obs = scan_observations(root).collect()
        assert Counter(obs["model"]) == {m: 28 - 1 for m in ("fake-ok", "fake-500", "fake-401")}
