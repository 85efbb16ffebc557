"""Expected failures of a collection, and keeping their tracebacks out of Prefect's log.

A shard whose keys failed after every retry (a provider's 500s, a wrong key, the spend cap) is
an *expected* failure: the store records each failed key, the shard task fails so that Prefect
retries it and marks the run, and ``dars rerun --failed`` fills exactly those keys. Prefect logs
every failed task with a traceback at ERROR level, which for these says nothing the one-line
message does not (the traceback is our own ``raise``), and buries the line that matters. So
:func:`quiet_expected_failures` installs a filter on Prefect's run loggers that turns the
records of an :class:`ExpectedFailure` into one INFO line without a traceback; the CLI prints
one line per failed shard itself. Any other exception keeps its traceback.
"""

from __future__ import annotations

import logging
from typing import Any

#: Prefect's loggers that report task and flow run failures.
PREFECT_RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs", "prefect.engine")


class ExpectedFailure(RuntimeError):
    """A failure the run reports as data (failed keys in the store), not as a bug: its message
    is one line that says what failed and what to do."""


class CollectionIncomplete(ExpectedFailure):
    """Some shards of a collection failed; ``failures`` has one line per failed shard (which
    shard, how many keys failed and why), the message a summary."""

    def __init__(self, message: str, failures: list[str]) -> None:
        super().__init__(message)
        self.failures = list(failures)

    def __reduce__(self) -> tuple[type[CollectionIncomplete], tuple[str, list[str]]]:
        # Prefect pickles a flow's exception into its result store.
        return (type(self), (str(self), self.failures))


class StageIncomplete(ExpectedFailure):
    """Some shards of one stage's subflow (rewrite or decode) failed: raised by the subflow
    after every shard ran, so its run is Failed with the message (which partitions failed and
    why). ``summary`` is what the subflow returns when it completes; ``collect`` reads it from
    here and goes on with the next stage."""

    def __init__(self, message: str, summary: dict[str, Any]) -> None:
        super().__init__(message)
        self.summary = dict(summary)

    def __reduce__(self) -> tuple[type[StageIncomplete], tuple[str, dict[str, Any]]]:
        return (type(self), (str(self), self.summary))


def _expected_names() -> tuple[str, ...]:
    names, todo = set(), [ExpectedFailure]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return tuple(sorted(names))


class _QuietExpectedFailures(logging.Filter):
    """Rewrites Prefect's record of an expected failure as one INFO line without traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ExpectedFailure):
            line = f"{type(exc).__name__}: {exc}"
        elif record.levelno >= logging.ERROR and exc is None:
            # "Finished in state Failed('… ShardIncomplete: …')": no traceback, but ERROR.
            try:
                line = record.getMessage()
            except (TypeError, ValueError):  # a malformed record: leave it to the handler
                return True
            if not any(name in line for name in _expected_names()):
                return True
        else:
            return True
        record.msg, record.args = " ".join(line.split()), None
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        record.levelno, record.levelname = logging.INFO, "INFO"
        # The logger's level was checked against ERROR; check it again for the new level.
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


_FILTER = _QuietExpectedFailures()


def quiet_expected_failures() -> None:
    """Install the filter on Prefect's run loggers (idempotent). Called when
    ``dars.tasks.collect`` is imported, so process-pool workers, which log their own task runs,
    install it too."""
    for name in PREFECT_RUN_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
