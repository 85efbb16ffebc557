"""`dars rerun --failed` narrowed by --dataset/--model/--split (issue 13), on the fake server.

Two models fail some keys; `dars rerun --failed --model X --yes` requests exactly X's failed
calls (server hits counted per prompt) and leaves the other model's failures in the store;
without --yes it asks before spending; a bad filter value is one line and exit 2."""

from __future__ import annotations

from collections import Counter

import polars as pl
import pytest
from typer.testing import CliRunner

from dars.benchmarks.loading import load_splits
from dars.cli import app
from dars.config import load_experiment
from dars.storage import scan_observations
from dars.tasks.collect import decode_shard_task
from tests.fakeserver import FakeOpenAIServer, Status, last_user_prompt
from tests.flows.test_cli import _tiny_config
from tests.flows.test_collect import KEY_ENV, _respond, fake_config
from tests.tasks.test_collect import decode_prompts

pytestmark = pytest.mark.flow

runner = CliRunner()


def _lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.strip()]


def _errors(root, model: str) -> pl.DataFrame:
    obs = scan_observations(root).collect()
    return obs.filter((pl.col("model") == model) & (pl.col("status") == "error"))


def test_rerun_failed_for_one_model_makes_exactly_its_failed_calls(
    prefect_harness, quiet_prefect_console, tmp_path, monkeypatch
):
    monkeypatch.setenv(KEY_ENV, "sk-test-" + "Y" * 24)
    monkeypatch.setattr(decode_shard_task, "retry_delay_seconds", [0, 0])
    with FakeOpenAIServer(responder=_respond) as srv:
        root = tmp_path / "run"
        config = fake_config(tmp_path / "fake.yaml", root, srv.base_url)
        exp = load_experiment(config)
        splits = load_splits(exp)["demo_mc"]
        # fake-500 fails every decode of one train query, fake-401 of one test query: two
        # models with some failed keys each (fake-ok and the rewriter answer everything).
        q500, q401 = splits["train"][1], splits["test"][2]
        srv.add_rule(
            Status(500),
            times=None,
            match=lambda b: b["model"] == "fake-500" and q500.question in last_user_prompt(b),
        )
        srv.add_rule(
            Status(401),
            times=None,
            match=lambda b: b["model"] == "fake-401" and q401.question in last_user_prompt(b),
        )
        first = runner.invoke(app, ["collect", "-c", str(config), "--yes"])
        assert first.exit_code == 1, first.output
        failed_500, failed_401 = _errors(root, "fake-500"), _errors(root, "fake-401")
        assert set(failed_500["query_id"]) == {q500.query_id} and failed_500.height == 4
        assert set(failed_401["query_id"]) == {q401.query_id} and failed_401.height == 3

        srv.clear_rules()
        srv.reset_counts()
        # Without --yes a terminal is asked before spending; "n" aborts before any request.
        monkeypatch.setattr("dars.cli._interactive", lambda: True)
        asked = runner.invoke(
            app, ["rerun", "--failed", "-c", str(config), "--model", "fake-500"], input="n\n"
        )
        assert asked.exit_code == 1 and "spend up to $" in asked.output, asked.output
        assert srv.total_requests == 0

        argv = ["rerun", "--failed", "-c", str(config), "--model", "fake-500", "--yes"]
        rerun = runner.invoke(app, argv)
        assert rerun.exit_code == 0, rerun.output

        # Exactly fake-500's failed calls, once per key: per prompt, as many requests as the
        # failed keys that share it (decode ids of one rewrite share a prompt); nothing else.
        assert {b["model"] for b in srv.requests} == {"fake-500"}
        got = Counter(last_user_prompt(b) for b in srv.requests)
        assert got == decode_prompts(exp, root, failed_500)
        assert srv.total_requests == failed_500.height
        # fake-401's failures are untouched; fake-500 has none left.
        assert _errors(root, "fake-500").height == 0
        still = _errors(root, "fake-401")
        assert (
            still.sort("rewrite_id", "decode_id")["run_id"].to_list()
            == failed_401.sort("rewrite_id", "decode_id")["run_id"].to_list()
        )
        assert still.height == 3
        # The status printed is the filter's: fake-500 only, complete.
        assert "fake-401" not in rerun.output
        assert _lines(rerun.output)[-1].startswith("total: 28 expected, 28 done, 0 failed")


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--model", "nope"], "bad filter: unknown model 'nope' (allowed: "),
        (["--dataset", "demo_mc,gpqa"], "bad filter: unknown dataset 'gpqa' (allowed: demo_mc)"),
        (["--split", "val", "--model", "nope"], "bad filter: unknown model 'nope'"),
    ],
)
def test_a_bad_filter_value_is_one_line_and_exit_2(tmp_path, argv, line):
    result = runner.invoke(app, ["rerun", "--failed", "-c", str(_tiny_config(tmp_path)), *argv])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert len(_lines(result.output)) == 1 and _lines(result.output)[0].startswith(line)
    assert "allowed: train, test" in result.output or "--split" not in argv
    assert not (tmp_path / "run").exists()  # nothing ran, no store was made
