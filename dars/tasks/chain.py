"""When a collect run starts the rest of the DAG (the deployment trigger chain).

The rule: a collect run that completed starts supervise → train → evaluate → report when it
wrote new rows (rewrites or observations stored ok, journaled rows of a killed run included) OR
when the outputs after collection are not up to date with the store
(:func:`dars.storage.freshness.outputs_behind_store`: no supervision or report yet, or one older
than what it is computed from — a stage that failed or never ran). Otherwise it "changed
nothing" and the chain stops there. The collect flow says which by the name of its final state
(:func:`dars.flows.collect.collect_flow`).
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from dars.config import Experiment
from dars.storage.freshness import outputs_behind_store

#: The counts of a stage summary (:func:`dars.flows.collect._summarise`) that are new store rows.
NEW_ROW_COUNTS = ("ok", "recovered")


def new_rows(*summaries: dict[str, Any]) -> int:
    """Rows the stages summarised in ``summaries`` stored: keys run ok plus rows recovered from
    the journal of a killed run."""
    return sum(int(s.get(k, 0)) for s in summaries for k in NEW_ROW_COUNTS)


def unchanged_message(exp: Experiment, *summaries: dict[str, Any]) -> str | None:
    """None when the stages after collect must run on ``exp.root`` (see the module docstring);
    else one line saying why they need not: nothing new was stored and the supervision and
    report are up to date with the store."""
    if new_rows(*summaries) > 0 or outputs_behind_store(exp.root) is not None:
        return None
    return (
        f"no new rows on {exp.root} and its supervision and report are up to date with the "
        "store: the stages after collect are not started"
    )


@task(name="chain-rule", cache_policy=NO_CACHE)
def unchanged_task(exp: Experiment, rewrite: dict[str, Any], decode: dict[str, Any]) -> str | None:
    """:func:`unchanged_message` of a collect run's ``rewrite`` and ``decode`` summaries, as the
    collect flow's task: it reads the root's file times, which flows never do themselves."""
    return unchanged_message(exp, rewrite, decode)


__all__ = ["NEW_ROW_COUNTS", "new_rows", "unchanged_message", "unchanged_task"]
