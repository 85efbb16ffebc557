"""Expected collection failures (:mod:`dars.tasks.failures`): Prefect's records of them are one
INFO line without a traceback, other errors keep theirs; the progress counters count keys that
end failed; the flow's exception carries one line per failed shard."""

from __future__ import annotations

import logging
import pickle

import pytest

from dars.tasks.collect import CollectProgress, ShardIncomplete, ShardReport
from dars.tasks.failures import CollectionIncomplete, quiet_expected_failures


def _record(logger: logging.Logger, level: int, msg: str, exc: BaseException | None):
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logger.makeRecord(logger.name, level, __file__, 1, msg, None, exc_info)


def _raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as caught:  # noqa: BLE001 - only to attach a traceback
        return caught


@pytest.fixture
def task_logger():
    quiet_expected_failures()
    logger = logging.getLogger("prefect.task_runs")
    level = logger.level
    yield logger
    logger.setLevel(level)


def test_an_expected_failure_becomes_one_info_line_without_traceback(task_logger):
    report = ShardReport("decode", "d", "train", "m", 0, failed=3, errors={"server_error 500": 3})
    exc = _raised(ShardIncomplete(report))
    task_logger.setLevel(logging.DEBUG)
    rec = _record(task_logger, logging.ERROR, "Task run failed with exception: %r", exc)
    assert task_logger.filter(rec)
    assert rec.levelno == logging.INFO and rec.exc_info is None
    assert rec.getMessage() == f"ShardIncomplete: {exc}"
    assert "\n" not in rec.getMessage() and "3 × server_error 500" in rec.getMessage()


def test_quiet_mode_drops_it_and_other_errors_keep_their_traceback(task_logger):
    task_logger.setLevel(logging.WARNING)  # what `dars` sets without --verbose
    exc = _raised(ShardIncomplete(ShardReport("decode", "d", "train", "m", 0, failed=1)))
    assert not task_logger.filter(_record(task_logger, logging.ERROR, "failed", exc))
    finished = "Finished in state Failed('Task run encountered an exception ShardIncomplete: x')"
    assert not task_logger.filter(_record(task_logger, logging.ERROR, finished, None))
    bug = _raised(ValueError("a bug"))
    rec = _record(task_logger, logging.ERROR, "Task run failed with exception", bug)
    assert task_logger.filter(rec)
    assert rec.levelno == logging.ERROR and rec.exc_info is not None
    other = _record(task_logger, logging.ERROR, "Finished in state Failed('ValueError')", None)
    assert task_logger.filter(other) and other.levelno == logging.ERROR


def test_flow_and_engine_loggers_are_quieted_too():
    quiet_expected_failures()
    quiet_expected_failures()  # idempotent
    for name in ("prefect.task_runs", "prefect.flow_runs", "prefect.engine"):
        filters = logging.getLogger(name).filters
        assert sum(type(f).__name__ == "_QuietExpectedFailures" for f in filters) == 1


def test_progress_counts_keys_that_end_failed():
    prog = CollectProgress()
    key, other = ("d", "train", "q1", "m", 0, 0), ("d", "train", "q2", "m", 0, 0)
    prog.add(failed=1, key=key)
    prog.add(failed=1, key=key)  # the same key failing again in a retry of its shard
    prog.add(failed=1, key=other)
    assert prog.failed == 2
    prog.add(ok=1, cost=0.5, key=key)  # the retry made it
    assert (prog.failed, prog.ok, prog.cost_usd) == (1, 1, 0.5)
    prog.add(failed=1)  # without a key every failure counts, as before
    assert prog.failed == 2


def test_collection_incomplete_keeps_its_lines_through_pickling():
    exc = CollectionIncomplete("collection incomplete: 2 shards", ["a: 1 failed", "b: 2 failed"])
    back = pickle.loads(pickle.dumps(exc))
    assert isinstance(back, RuntimeError) and back.failures == exc.failures
    assert str(back) == str(exc)


def test_shard_incomplete_names_its_causes_most_frequent_first():
    report = ShardReport(
        "decode", "d", "test", "gpt", 2, failed=5, errors={"timeout": 1, "rate_limit 429": 4}
    )
    assert str(ShardIncomplete(report)).startswith(
        "d/test/gpt/shard 2: 5 failed, 0 not run (4 × rate_limit 429; 1 × timeout); "
    )
