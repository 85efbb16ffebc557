"""Prefect tasks of the collection stage: one task run per partition shard, never per call.

The bodies only call ``dars.collect``; retries live on the decorators (no cache: see
``_CACHE``). A shard with failed calls raises ``ShardIncomplete`` after storing what succeeded,
so Prefect retries it when some failure was transient (the retry fills only the failed keys); a
shard blocked by the spend cap or by missing rewrites, or whose calls failed for good (auth, bad
request), is not retried, since repeating it cannot help.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from dars.collect import ShardIncomplete, decode_shard, embedding_similarity, rewrite_shard
from dars.config import Experiment
from dars.llm.loop import run_sync


def _retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry only shards with calls that failed for a transient reason (429, 5xx, timeout,
    connection, malformed body); not shards blocked by the spend cap or missing rewrites, nor
    shards whose calls failed for good (auth, bad request), since the retry would repeat them."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, ShardIncomplete) and exc.report.transient_failed > 0


# No Prefect cache: the store is the cache. A shard's work is its rows in the store, not its
# return value; every run re-reads the store (keys stored ok are never requested again) and the
# flows submit no task for a complete partition. So a cache hit could only ever happen after
# data was lost (a shard file deleted to redo it), and would then wrongly skip the work.
# ``done_before`` stays as a parameter: the Prefect UI shows how far the shard was.
_CACHE = NO_CACHE


@task(
    name="rewrite-shard",
    task_run_name="rewrite {dataset}/{split}/shard-{shard}",
    retries=2,
    retry_delay_seconds=[2, 20],
    retry_condition_fn=_retry_transient,
    cache_policy=_CACHE,
)
def rewrite_shard_task(
    exp: Experiment,
    root: str,
    dataset: str,
    split: str,
    shard: int,
    done_before: int,
    run_id: str,
) -> dict[str, Any]:
    similarity = embedding_similarity(exp.encoder)
    report = run_sync(
        rewrite_shard(exp, root, dataset, split, shard, run_id=run_id, similarity=similarity)
    )
    if not report.complete:
        raise ShardIncomplete(report)
    return report.to_dict()


@task(
    name="decode-shard",
    task_run_name="decode {dataset}/{split}/{model}/shard-{shard}",
    retries=2,
    retry_delay_seconds=[2, 20],
    retry_condition_fn=_retry_transient,
    cache_policy=_CACHE,
)
def decode_shard_task(
    exp: Experiment,
    root: str,
    dataset: str,
    split: str,
    model: str,
    shard: int,
    done_before: int,
    run_id: str,
) -> dict[str, Any]:
    report = run_sync(decode_shard(exp, root, dataset, split, model, shard, run_id=run_id))
    if not report.complete:
        raise ShardIncomplete(report)
    return report.to_dict()
