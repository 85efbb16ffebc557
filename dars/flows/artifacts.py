"""What a dars run shows in the Prefect UI besides its logs: artifacts and failure messages.

Pure functions build the rows and texts from what the stages return (tested without Prefect);
the ``publish_*`` functions and :class:`StageProgress` make the Prefect artifacts, one call each
in the flows. Outside a flow run (a flow's ``.fn`` in a test) they do nothing; an artifact the
API refuses is a warning in the run's log, never a failed run (artifacts are a view of the store,
not data). Every text is scrubbed of API keys first (:func:`dars.llm.scrub`).

Artifacts per run; ``<config>`` is the config's name as a key (:func:`artifact_key`), so the UI
lists the versions of one config together:

* collect: ``<config>-collect-partitions``, a table with one row per (dataset, split, model) of
  the plan: expected / done / failed / missing keys, the stored cost and the latest error of a
  still-failed key (``dars.tasks.collect.partition_table``);
* every stage: ``<config>-<stage>-progress``, the percentage of the stage's units finished
  (collect's shards, supervise's datasets, train's routers, evaluate's experiments), updated as
  they finish (at most every :data:`PROGRESS_EVERY_S` seconds, and at the end);
* evaluate: ``<config>-evaluate-main``, the ``main`` experiment's table (floats rounded);
* report: ``<config>-report-link``, a link to ``report/index.html`` (a ``file://`` URI), and
  ``<config>-report-summary``, a short Markdown note with both report files.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger

from dars.llm import remember_keys, scrub
from dars.progress import StageEvent, emit

if TYPE_CHECKING:
    import polars as pl

    from dars.config import Experiment

#: A progress artifact is updated at most this often (plus once when the stage ends).
PROGRESS_EVERY_S = 3.0
#: A stage's failure message names at most this many partitions.
MAX_PARTITIONS_NAMED = 8
#: Digits kept of the floats of a table artifact.
TABLE_DIGITS = 4


# --------------------------------------------------------------------------------------------
# pure: keys, rows, messages


def artifact_key(config_name: str, what: str) -> str:
    """The key of an artifact: ``<config>-<what>`` lowercased, every run of characters other
    than letters and digits one dash (Prefect accepts lowercase letters, digits and dashes),
    e.g. ``("Paper v2", "collect-partitions")`` → ``paper-v2-collect-partitions``."""
    slug = re.sub(r"[^a-z0-9]+", "-", f"{config_name}-{what}".lower()).strip("-")
    return slug or "dars"


def failed_partitions(shards: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The failed shards of one stage gathered per partition, for its failure message.

    ``shards``: one dict per failed shard, either its ``ShardReport.to_dict()`` (``errors``
    counts failed keys per cause, ``labels`` names the causes, ``blocked`` counts the keys not
    run per reason) or, for a shard task that raised anything else, ``dataset``, ``split``,
    ``model``, ``shard`` and ``exception`` (its class and message). Returns one dict per
    (dataset, split, model), in first-seen order: those three, ``shards`` (how many failed) and
    ``causes``, a list of (label, keys) with the most keys first."""
    parts: dict[tuple[Any, ...], dict[str, Any]] = {}
    for s in shards:
        where = (s.get("dataset"), s.get("split"), s.get("model"))
        part = parts.setdefault(
            where,
            {"dataset": where[0], "split": where[1], "model": where[2], "shards": 0, "_n": {}},
        )
        part["shards"] += 1
        counts: dict[str, int] = part["_n"]
        labels = s.get("labels") or {}
        for cause, n in (s.get("errors") or {}).items():
            label = labels.get(cause, cause)
            counts[label] = counts.get(label, 0) + int(n)
        unnamed = int(s.get("failed", 0)) - sum(int(n) for n in (s.get("errors") or {}).values())
        if unnamed > 0:
            counts["failed"] = counts.get("failed", 0) + unnamed
        for reason, n in (s.get("blocked") or {}).items():
            counts[f"not run: {reason}"] = counts.get(f"not run: {reason}", 0) + int(n)
        if s.get("exception"):
            counts[str(s["exception"])] = counts.get(str(s["exception"]), 0)
    out = []
    for part in parts.values():
        counts = part.pop("_n")
        part["causes"] = sorted(counts.items(), key=lambda kv: -kv[1])
        out.append(part)
    return out


def stage_message(
    stage: str, tasks: int, shards: Sequence[Mapping[str, Any]], *, model: str | None = None
) -> str:
    """The state message of a stage's subflow whose ``shards`` (see :func:`failed_partitions`)
    failed out of ``tasks``: ``"decode: 1 of 6 shards failed — model=m dataset=d split=train:
    HTTP 500 InternalServerError (16 calls)"``, partitions separated by ``; ``, at most
    :data:`MAX_PARTITIONS_NAMED` of them. ``model`` names the model of shards that have none
    (the rewriter's). Keys are counted as calls for decode, as rewrites for rewrite. Not
    scrubbed: see :func:`redact`."""
    unit = "rewrite" if stage == "rewrite" else "call"
    parts = failed_partitions(shards)
    named = []
    for p in parts[:MAX_PARTITIONS_NAMED]:
        causes = ", ".join(
            label if not n else f"{label} ({n} {unit}{'s' if n != 1 else ''})"
            for label, n in p["causes"]
        )
        named.append(
            f"model={p['model'] or model or '?'} dataset={p['dataset']} split={p['split']}: "
            f"{causes or 'incomplete'}"
        )
    more = len(parts) - len(named)
    tail = f"; … and {more} more partition(s)" if more > 0 else ""
    return f"{stage}: {len(shards)} of {tasks} shards failed — " + "; ".join(named) + tail


def redact(exp: Experiment, text: str) -> str:
    """``text`` without any API key of the experiment's models (read from the environment now,
    so keys that only another process used are known) or anything key-shaped."""
    remember_keys([*exp.pool.models, exp.rewriter])
    return scrub(text)


def table_rows(frame: pl.DataFrame, digits: int = TABLE_DIGITS) -> list[dict[str, Any]]:
    """The rows of ``frame`` as dicts for a table artifact: floats rounded to ``digits``
    decimals, NaN and infinities as None (JSON has neither), every other value as is."""

    def cell(v: Any) -> Any:
        if isinstance(v, float):
            return round(v, digits) if math.isfinite(v) else None
        return v

    return [{k: cell(v) for k, v in row.items()} for row in frame.iter_rows(named=True)]


def report_summary(exp: Experiment, html: Path, md: Path) -> str:
    """The Markdown note of a report run: where its files are."""
    return (
        f"# Report of `{exp.name}`\n\n"
        f"Run root `{exp.root}`.\n\n"
        f"- HTML (self-contained, figures embedded): [{html.name}]({html.resolve().as_uri()})\n"
        f"- Markdown, figures beside it: [{md.name}]({md.resolve().as_uri()})\n"
    )


# --------------------------------------------------------------------------------------------
# Prefect: thin calls, no-ops outside a flow run


def _in_flow_run() -> bool:
    from prefect.context import FlowRunContext

    ctx = FlowRunContext.get()
    return ctx is not None and ctx.flow_run is not None


def _create(make: Callable[..., Any], **kwargs: Any) -> Any:
    """``make(**kwargs)`` (a ``prefect.artifacts`` function) in a flow run; None outside one or
    when the API refuses it (a warning in the run's log)."""
    if not _in_flow_run():
        return None
    try:
        return make(**kwargs)
    except Exception as exc:  # noqa: BLE001 - an artifact is a view; the run goes on without it
        get_run_logger().warning(
            "artifact %s not created: %s: %s", kwargs.get("key"), type(exc).__name__, exc
        )
        return None


class StageProgress:
    """The progress of one stage run: ``total`` units (``unit``: shards, datasets, routers,
    experiments) and how many finished. Each change is a :class:`dars.progress.StageEvent` for
    the CLI's display (also outside a flow run), and the stage's Prefect progress artifact,
    created when the stage has units to run and updated by :meth:`advance` at most every
    ``every_s`` seconds and when the last unit finishes (nothing outside a flow run)."""

    def __init__(
        self,
        exp: Experiment,
        stage: str,
        total: int,
        every_s: float = PROGRESS_EVERY_S,
        unit: str = "shards",
    ) -> None:
        from prefect.artifacts import create_progress_artifact

        self.stage, self.total, self.done, self.every_s = stage, total, 0, every_s
        self.unit, self.failed = unit, 0
        self._last = time.monotonic()
        self._id = None
        self._emit()
        if total:
            self._id = _create(
                create_progress_artifact,
                progress=0.0,
                key=artifact_key(exp.name, f"{stage}-progress"),
                description=self._describe(),
            )

    def _emit(self) -> None:
        emit(StageEvent(self.stage, self.done, self.total, self.unit, self.failed))

    def _describe(self) -> str:
        return f"{self.stage}: {self.done} of {self.total} {self.unit} finished"

    def advance(self, n: int = 1, failed: int = 0) -> None:
        """Count ``n`` more finished units, ``failed`` of them failed."""
        from prefect.artifacts import update_progress_artifact

        self.done += n
        self.failed += failed
        self._emit()
        now = time.monotonic()
        if self._id is None or (now - self._last < self.every_s and self.done < self.total):
            return
        self._last = now
        _create(
            update_progress_artifact,
            artifact_id=self._id,
            progress=100.0 * self.done / self.total,
            description=self._describe(),
        )


def future_failed(future: Any) -> int:
    """1 when a finished task future ended failed (its result would raise), else 0."""
    try:
        return int(future.state.is_failed())
    except Exception:  # noqa: BLE001 - unknown: counted as not failed; the flow reads results
        return 0


def publish_collect(exp: Experiment, only: Mapping[str, Sequence[str]] | None = None) -> None:
    """The collect run's partition table (``dars.tasks.collect.partition_table``, read by its
    task; errors scrubbed), for the keys ``only`` keeps (all by default)."""
    from prefect.artifacts import create_table_artifact

    from dars.tasks.collect import partition_table_task

    if not _in_flow_run():
        return
    try:
        partitions = partition_table_task(exp, dict(only) if only else None)
    except Exception as exc:  # noqa: BLE001 - the table is a view; the collect's outcome stands
        get_run_logger().warning("no partition table: %s: %s", type(exc).__name__, exc)
        return
    rows = table_rows(partitions)
    for r in rows:
        if r.get("error") is not None:
            r["error"] = redact(exp, str(r["error"]))[:300]
    scope = f" (filter {dict(only)})" if only else ""
    failed = sum(1 for r in rows if r.get("failed") or r.get("missing"))
    _create(
        create_table_artifact,
        table=rows,
        key=artifact_key(exp.name, "collect-partitions"),
        description=redact(
            exp,
            f"{exp.name} on {exp.root}{scope}: {len(rows)} partitions, "
            f"{failed} with failed or missing keys",
        ),
    )


def publish_evaluate(exp: Experiment, tables: Mapping[str, Mapping[str, pl.DataFrame]]) -> None:
    """The ``main`` experiment's table of an evaluate run (``tables``: what the flow returns,
    experiment → table name → frame); nothing when ``main`` was not run."""
    from prefect.artifacts import create_table_artifact

    main = (tables.get("main") or {}).get("main")
    if main is None:
        return
    _create(
        create_table_artifact,
        table=table_rows(main),
        key=artifact_key(exp.name, "evaluate-main"),
        description=redact(exp, f"main table of {exp.name} on {exp.root} ({main.height} rows)"),
    )


def publish_report(exp: Experiment, html: Path, md: Path) -> None:
    """A link to the report's ``index.html`` and a Markdown note with both report files."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact

    _create(
        create_link_artifact,
        link=html.resolve().as_uri(),
        link_text=f"{exp.name} report",
        key=artifact_key(exp.name, "report-link"),
        description=redact(exp, f"report of {exp.name} on {exp.root}"),
    )
    _create(
        create_markdown_artifact,
        markdown=redact(exp, report_summary(exp, html, md)),
        key=artifact_key(exp.name, "report-summary"),
        description=redact(exp, f"report of {exp.name} on {exp.root}"),
    )
