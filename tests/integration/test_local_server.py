"""The collect stage against a real local model server: llama.cpp (llama-cpp-python) serving
SmolLM2-135M and Gemma-3-270M, reached through litellm's ``openai/`` route with ``api_base``.

Marked ``integration``: excluded from the default run (pyproject's ``addopts``), because it needs
a server venv that the project's install does not make (llama-cpp-python compiles llama.cpp from
source, ~8 min on 2 cores). Run it with::

    DARS_LOCAL_SERVER_PYTHON=~/.venvs/dars-llama/bin/python pytest -m integration tests/integration

It skips, saying what is missing, when that variable, llama-cpp-python or a model package is
absent. Checks: the tokens and latency in the store are the server's (not the estimate the client
falls back to), no simulated provider answers a pool call, a response cut before its answer line
is an ok row with score 0 and parse_ok false, and a rerun requests nothing.
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from dars.config import experiment_from_dict
from dars.llm import get_litellm
from dars.llm.loop import run_sync
from dars.sim.world import SimWorld
from dars.storage import scan_observations, scan_rewrites
from dars.tasks.collect import (
    decode_shard,
    new_run_id,
    pending_decode_shards,
    pending_rewrite_shards,
    rewrite_shard,
)

pytestmark = pytest.mark.integration

BENCH = Path(__file__).resolve().parents[2] / "bench"
MODELS = ["smollm2-135m", "gemma3-270m"]
# demo_math gets 2 tokens: never enough for a "Final Answer:" line, so every answer is a parse
# failure; demo_mc gets enough to answer.
MAX_TOKENS = {"demo_mc": 128, "demo_math": 2}


def _load(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench_local() -> Any:
    return _load("bench_local_server")


@pytest.fixture(scope="module")
def servers(bench_local, tmp_path_factory) -> Any:
    ls = bench_local.local_server
    try:
        python = ls.server_python()
        paths = ls.locate_models(python, MODELS)
    except ls.ServerUnavailable as exc:
        pytest.skip(f"no local model server: {exc}")
    log_dir = tmp_path_factory.mktemp("servers")
    with ls.serve(python, MODELS, log_dir=log_dir, model_paths=paths) as running:
        yield running


@pytest.fixture
def wire(monkeypatch) -> dict[str, list]:
    """Every pool request litellm sends and the usage the server answered with; every model the
    simulator answers."""
    litellm = get_litellm()
    seen: dict[str, list] = {"requests": [], "usage": [], "simulated": []}
    real = litellm.acompletion

    async def counting(**kwargs: Any) -> Any:
        resp = await real(**kwargs)
        if kwargs["model"].startswith("openai/"):
            seen["requests"].append(kwargs["model"])
            seen["usage"].append((resp.usage.prompt_tokens, resp.usage.completion_tokens))
        return resp

    respond = SimWorld.respond

    def spy(self, model, *args, **kwargs):
        seen["simulated"].append(model)
        return respond(self, model, *args, **kwargs)

    monkeypatch.setattr(litellm, "acompletion", counting)
    monkeypatch.setattr(SimWorld, "respond", spy)
    return seen


def _experiment(root: Path, servers: dict) -> Any:
    def model(name: str, price: float) -> dict[str, Any]:
        return {
            "name": name,
            "litellm_model": f"openai/{name}",
            "api_base": servers[name].base_url,
            "input_price_per_m": price,
            "output_price_per_m": price,
            "max_concurrency": 1,
        }

    return experiment_from_dict(
        {
            "name": "local-it",
            "root": str(root),
            "benchmarks": [
                {"name": "demo_mc", "n_train": 2, "n_test": 1, "options": {"n_items": 3}},
                {"name": "demo_math", "n_train": 2, "n_test": 1, "options": {"n_items": 3}},
            ],
            "pool": {"models": [model("smollm2-135m", 0.135), model("gemma3-270m", 0.27)]},
            "rewriter": {"name": "rewriter", "litellm_model": "dars-sim/rewriter"},
            "protocol": {
                "train_rewrites": 1,
                "train_decodes": 1,
                "test_rewrites": 1,
                "test_rewrite_decodes": 1,
                "test_decodes": 1,
                "max_tokens": MAX_TOKENS,
            },
            "request_timeout_s": 120,
            "max_retries": 0,
            "encoder": "tfidf",
        }
    )


def _collect(exp: Any) -> list[Any]:
    run_id = new_run_id()
    for s in pending_rewrite_shards(exp)[0]:
        report = run_sync(rewrite_shard(exp, s["dataset"], s["split"], s["shard"], run_id=run_id))
        assert report.complete, report
    reports = []
    for d in ("train", "test"):
        for bench in ("demo_mc", "demo_math"):
            for model in MODELS:
                reports.append(run_sync(decode_shard(exp, bench, d, model, 0, run_id=run_id)))
    return reports


def test_collect_against_the_real_server(servers, wire, tmp_path) -> None:
    exp = _experiment(tmp_path / "run", servers)
    reports = _collect(exp)
    # 2 benchmarks x 2 models x (2 train x 1 + 1 test x 2) keys.
    assert sum(r.ok for r in reports) == 16 and sum(r.failed for r in reports) == 0
    assert scan_rewrites(exp.root).collect().height == 6

    # The pool was answered over HTTP only; the simulator answered the rewriter only.
    assert Counter(wire["requests"]) == {"openai/smollm2-135m": 8, "openai/gemma3-270m": 8}
    assert set(wire["simulated"]) == {"rewriter"}

    obs = scan_observations(exp.root).collect()
    assert obs.height == 16 and (obs["status"] == "ok").all()
    # Tokens are what the server counted (its tokenizer), for each call.
    stored = Counter(obs.select("prompt_tokens", "completion_tokens").iter_rows())
    assert stored == Counter(wire["usage"])
    assert (obs["prompt_tokens"] > 20).all() and (obs["completion_tokens"] >= 1).all()
    assert (obs["latency_s"] > 0).all()
    for bench, limit in MAX_TOKENS.items():
        assert (obs.filter(pl.col("dataset") == bench)["completion_tokens"] <= limit).all()
    # Cost from the nominal prices: tokens x price / 1e6.
    price = pl.when(pl.col("model") == "gemma3-270m").then(0.27).otherwise(0.135)
    expected = (pl.col("prompt_tokens") + pl.col("completion_tokens")) * price / 1e6
    assert obs.select((pl.col("cost_usd") - expected).abs().max()).item() < 1e-15

    # Two tokens hold no answer line: ok rows, score 0, parse_ok false.
    math = obs.filter(pl.col("dataset") == "demo_math")
    assert math.height == 8
    assert (~math["parse_ok"]).all() and (math["score"] == 0.0).all()
    assert math["parsed"].is_null().all() and math["error"].is_null().all()

    # A rerun finds every key stored ok and sends nothing.
    sent = len(wire["requests"])
    assert pending_decode_shards(exp)[0] == []
    again = _collect(exp)
    assert sum(r.ok + r.failed for r in again) == 0
    assert sum(r.already_done for r in again) == 16
    assert len(wire["requests"]) == sent
    assert scan_observations(exp.root).collect().height == 16


def test_bench_quick_runs_the_pipeline(servers, bench_local, tmp_path, capsys) -> None:
    """The bench script's quick mode, end to end (it starts its own servers on free ports)."""
    out = tmp_path / "local.json"
    result = bench_local.main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    assert result["run"]["returncode"] == 0, result.get("log_tail")
    assert "decode calls" in printed and "wall time per stage" in printed
    overall = result["store"]["overall"]
    # demo_mc, 3 train x 1 + 2 test x 2 keys per model.
    assert overall["calls"] == 2 * 7 and overall["failed"] == 0
    assert overall["completion_tokens"] > 0 and overall["latency_p50_s"] > 0
    flows = {st["flow"] for st in result["stages"]}
    assert {"pipeline", "collect", "decode", "supervise", "train", "evaluate", "report"} <= flows
    assert json.loads(out.read_text())["store"]["overall"]["calls"] == 14
