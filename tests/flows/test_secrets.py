"""API keys from Prefect ``Secret`` blocks (issue 13), against the session's Prefect test server
and the fake OpenAI-compatible server.

One model's key lives in a ``Secret`` block, another's in an environment variable; the whole DAG
(collect → supervise → train → evaluate → report) runs on them, the fake server checks each
model was sent its own key, and then every place a key could leak is searched for both keys:
the Prefect database file (flow/task runs, parameters, logs, artifacts, events), every log
record of the process, the run root (store, ledger, results, report; Parquet files read in
full, since their pages are compressed), the artifacts and the flow-run parameters read back
through the Prefect API. Also: a block is read once per process, and a missing block or an
unreachable API fails the model's calls in one line naming the model and the block.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import secrets
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

import dars.llm.keys as keys
from dars.config import ModelSpec
from dars.llm import GenParams, LLMCallError, LLMClient
from dars.storage import scan_observations
from tests.fakeserver import FakeOpenAIServer, bare_key, last_user_prompt

pytestmark = pytest.mark.flow

# Fresh per session, so that no earlier run's files can produce (or hide) a hit.
BLOCK_KEY = "sk-dars-block-" + secrets.token_hex(16)
ENV_KEY = "sk-dars-env-" + secrets.token_hex(16)
BLOCK = "dars-test-provider-key"
KEY_ENV = "DARS_TEST_SECRETS_ENV_KEY"
MESSAGES = [{"role": "user", "content": "What is 6 times 7?"}]
PARAMS = GenParams(max_tokens=16, timeout_s=10.0, max_retries=0)


@pytest.fixture(autouse=True)
def _fresh_key_cache() -> Iterator[None]:
    keys.forget_secrets()
    yield
    keys.forget_secrets()


@pytest.fixture
def block_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often each block was read through the Prefect API (the real read, counted)."""
    reads: Counter[str] = Counter()
    real = keys._load_block

    def counted(name: str) -> str:
        reads[name] += 1
        return real(name)

    monkeypatch.setattr(keys, "_load_block", counted)
    return reads


def save_block(name: str, value: str) -> None:
    from prefect.blocks.system import Secret

    Secret(value=value).save(name, overwrite=True)


def delete_block(name: str) -> None:
    from prefect.blocks.system import Secret

    try:
        Secret.delete(name)
    except ValueError:  # not there
        pass


def spec(server: FakeOpenAIServer, **over: Any) -> ModelSpec:
    fields = {
        "name": "m-block",
        "litellm_model": "openai/m-block",
        "api_base": server.base_url,
        "input_price_per_m": 1.0,
        "output_price_per_m": 2.0,
    }
    return ModelSpec(**{**fields, "api_key_secret": BLOCK, **over})


def call(s: ModelSpec) -> Any:
    return asyncio.run(LLMClient(backoff_base_s=0.01).generate(s, MESSAGES, PARAMS))


def test_block_key_is_sent_and_read_once_per_process(prefect_harness, block_reads):
    save_block(BLOCK, BLOCK_KEY)
    with FakeOpenAIServer() as srv:
        for _ in range(3):
            call(spec(srv))
        keys.remember_keys([spec(srv), None])
    assert [bare_key(h) for h in srv.headers] == [BLOCK_KEY] * 3
    assert block_reads == {BLOCK: 1}


def test_missing_block_fails_calls_in_one_line_until_it_exists(
    prefect_harness, block_reads, monkeypatch
):
    name = "dars-test-missing-key"
    delete_block(name)
    with FakeOpenAIServer() as srv:
        s = spec(srv, name="m-missing", api_key_secret=name)
        for _ in range(2):
            with pytest.raises(LLMCallError) as info:
                call(s)
            err = info.value
            assert err.kind == "missing_key" and err.attempts == 0 and "\n" not in str(err)
            assert str(err).startswith(
                f"missing_key after 0 attempts (m-missing): Prefect Secret "
                f"block '{name}' not found; create it with `prefect block "
                "create secret`"
            )
            assert f".save('{name}')" in str(err) and len(str(err)) < 300  # stored uncut
        # The second call did not ask the API again, and nothing reached the model's server.
        assert block_reads == {name: 1} and srv.total_requests == 0

        # Once the block exists, the next read (after the failure is forgotten) finds it.
        save_block(name, BLOCK_KEY)
        monkeypatch.setattr(keys, "SECRET_RETRY_S", 0.0)
        assert call(s).text and bare_key(srv.headers[-1]) == BLOCK_KEY
        assert block_reads == {name: 2}


def test_unreachable_prefect_api_fails_in_one_line_naming_model_and_block(prefect_harness):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}/api"
    with FakeOpenAIServer() as srv, temporary_settings(updates={PREFECT_API_URL: dead}):
        with pytest.raises(LLMCallError) as info:
            call(spec(srv, name="m-offline"))
        assert srv.total_requests == 0
    msg = str(info.value)
    assert msg.startswith(
        f"missing_key after 0 attempts (m-offline): Prefect Secret block '{BLOCK}' cannot be "
        "read (ConnectError"
    )
    assert "PREFECT_API_URL" in msg and "\n" not in msg


# -- the whole DAG on one block key and one environment key ---------------------------------------


def _answer(body: dict[str, Any]) -> str:
    """Rewrites in the JSON the rewriter prompt asks for; answers that differ by model and query
    (a seeded letter), so the models differ and supervision has something to say."""
    prompt = last_user_prompt(body)
    if "JSON array of exactly" in prompt:
        question = prompt.split("Question: ", 1)[1].split("\n", 1)[0]
        n = int(prompt.split("JSON array of exactly ", 1)[1].split(" ", 1)[0])
        return json.dumps([f"Variant {i}: {question}" for i in range(n)])
    digest = hashlib.sha256(f"{body['model']}|{prompt}".encode()).digest()
    return f"Let me think.\nFinal Answer: {'ABCD'[digest[0] % 4]}"


def _config(path: Path, root: Path, base_url: str) -> Path:
    def model(name: str, **key: str) -> dict[str, Any]:
        return {
            "name": name,
            "litellm_model": f"openai/{name}",
            "api_base": base_url,
            "input_price_per_m": 1.0 if "block" in name else 3.0,
            "output_price_per_m": 2.0 if "block" in name else 6.0,
            "max_concurrency": 4,
            **key,
        }

    data = {
        "name": "secrets",
        "root": str(root),
        "benchmarks": [{"name": "demo_mc", "n_train": 8, "n_test": 6, "options": {"n_items": 14}}],
        "pool": {
            "models": [
                model("m-block", api_key_secret=BLOCK),
                model("m-env", api_key_env=KEY_ENV),
            ]
        },
        "rewriter": model("rw-block", api_key_secret=BLOCK),
        "protocol": {
            "train_rewrites": 2,
            "train_decodes": 2,
            "test_rewrites": 1,
            "test_decodes": 2,
            "max_tokens": {"demo_mc": 32},
        },
        "request_timeout_s": 10,
        "max_retries": 0,
        "shard_size": 8,
        "encoder": "tfidf",
        "single_shot_draws": 8,
        "families": ["knn"],
        "evaluation": {
            "ablation_family": "knn",
            "n_boot": 20,
            "lam_grid": [0.0, 0.5],
            "beta_grid": [0.0, 0.2],
            "budgets": [0.5, 1.0],
        },
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class _Records(logging.Handler):
    """Every log record of the process, at every level, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


async def _flow_runs_and_artifacts() -> tuple[list, list]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await client.read_flow_runs(limit=200), await client.read_artifacts(limit=200)


def _database_files() -> list[Path]:
    """The Prefect server's SQLite database and its journal files (WAL, shared memory)."""
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url
    url = url.get_secret_value() if hasattr(url, "get_secret_value") else str(url)
    assert url.startswith("sqlite"), url
    db = Path(url.split(":///", 1)[1])
    assert db.is_file(), db
    return sorted(db.parent.glob(db.name + "*"))


def _hits(data: bytes, needles: dict[str, bytes]) -> list[str]:
    return [name for name, needle in needles.items() if needle in data]


@pytest.fixture(scope="module")
def dag_run(prefect_harness, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """Run the whole DAG once on one block key and one environment key; yield what to search."""
    from prefect.logging.handlers import APILogWorker

    from dars.flows.pipeline import pipeline_flow

    tmp = tmp_path_factory.mktemp("secrets")
    handler = _Records()
    root_logger = logging.getLogger()
    old_level = root_logger.level
    root_logger.addHandler(handler)
    root_logger.setLevel(logging.DEBUG)
    printed = io.StringIO()  # litellm prints its debug output (curl lines) instead of logging
    mp = pytest.MonkeyPatch()
    mp.setenv(KEY_ENV, ENV_KEY)
    keys.forget_secrets()
    try:
        save_block(BLOCK, BLOCK_KEY)
        with (
            FakeOpenAIServer(responder=_answer) as srv,
            contextlib.redirect_stdout(printed),
            contextlib.redirect_stderr(printed),
        ):
            root = tmp / "run"
            config = _config(tmp / "secrets.yaml", root, srv.base_url)
            out = pipeline_flow(str(config), str(root), workers=2)
            sent = Counter(
                (b["model"], bare_key(h)) for b, h in zip(srv.requests, srv.headers, strict=True)
            )
        APILogWorker.drain_all(timeout=60)  # the run's logs reach the database before the search
        flow_runs, artifacts = asyncio.run(_flow_runs_and_artifacts())
        yield {
            "out": out,
            "root": root,
            "config": config,
            "sent": sent,
            "logs": handler.lines,
            "printed": printed.getvalue(),
            "flow_runs": flow_runs,
            "artifacts": artifacts,
        }
    finally:
        root_logger.removeHandler(handler)
        root_logger.setLevel(old_level)
        mp.undo()


NEEDLES = {"block key": BLOCK_KEY.encode(), "env key": ENV_KEY.encode()}


def test_dag_ran_and_each_model_was_sent_its_own_key(dag_run):
    assert dag_run["out"]["collect"]["decode"]["failures"] == []
    assert (dag_run["root"] / "report" / "index.html").is_file()
    obs = scan_observations(dag_run["root"]).collect()
    assert set(obs["status"]) == {"ok"} and set(obs["model"]) == {"m-block", "m-env"}
    sent = dag_run["sent"]
    assert set(sent) == {("rw-block", BLOCK_KEY), ("m-block", BLOCK_KEY), ("m-env", ENV_KEY)}
    assert sent[("m-block", BLOCK_KEY)] == obs.filter(pl.col("model") == "m-block").height


def test_no_key_in_the_prefect_database(dag_run):
    files = _database_files()
    data = b"".join(f.read_bytes() for f in files)
    # The search sees what the run wrote: its flow-run names, its model names, the block's name.
    run_wrote = (b"collect secrets root=", b"Finished in state Completed", b"m-env", BLOCK.encode())
    for seen in (*run_wrote, KEY_ENV.encode()):
        assert seen in data, seen
    assert _hits(data, NEEDLES) == [], [f.name for f in files]


def test_no_key_in_any_log_record_or_printed_line(dag_run):
    logs = "\n".join(dag_run["logs"])
    assert "m-block" in logs and len(dag_run["logs"]) > 100  # DEBUG records of the whole run
    assert _hits(logs.encode(), NEEDLES) == []
    printed = dag_run["printed"]
    assert "Authorization: [REDACTED]" in printed  # litellm's curl lines, printed at DEBUG
    assert _hits(printed.encode(), NEEDLES) == []


def test_no_key_anywhere_under_the_run_root(dag_run):
    root = dag_run["root"]
    files = [p for p in root.rglob("*") if p.is_file()]
    names = {p.relative_to(root).parts[0] for p in files}
    assert {"observations", "rewrites", "ledger.sqlite", "supervision", "results", "report"} <= (
        names
    )
    for path in files:
        assert _hits(path.read_bytes(), NEEDLES) == [], path
        if path.suffix == ".parquet":  # compressed pages: search the decoded values too
            text = json.dumps(pl.read_parquet(path).to_dicts(), default=str)
            assert _hits(text.encode(), NEEDLES) == [], path


def test_no_key_in_artifacts_or_flow_run_parameters(dag_run):
    runs = dag_run["flow_runs"]
    stages = {r.name.split(" ", 1)[0] for r in runs if "root=" in r.name}
    assert {"pipeline", "collect", "decode", "supervise", "train", "evaluate", "report"} <= stages
    params = json.dumps([r.parameters for r in runs], default=str)
    # Parameters name where keys come from, never a key.
    assert BLOCK in params and KEY_ENV in params and str(dag_run["config"]) in params
    assert _hits(params.encode(), NEEDLES) == []
    arts = json.dumps([a.model_dump(mode="json") for a in dag_run["artifacts"]], default=str)
    assert _hits(arts.encode(), NEEDLES) == []
