"""Validity checks of question rewrites (the paper's Table 5), pure functions.

A rewrite must keep the meaning, so the gold answer stays the same. We cannot prove that, but we
can check what is checkable and flag the rest for review:

* ``complete``: a non-empty text;
* ``dup_original`` / ``dup_rewrite``: identical (after case/space/punctuation normalisation) to the
  original question or to an earlier rewrite of the same query;
* ``numbers_ok``: every number of the original question appears in the rewrite (math and
  counting questions must keep every quantity; a spelled-out number counts as missing, which is
  why this is a review signal and not a rejection);
* ``struct_ok``: the structural constraint of the task holds: every rewrite is a question or
  instruction of at most 3× the original length, and the item's task type adds its own
  (``TaskType.rewrite_structure_ok``: multiple-choice rewrites contain no answer options of their
  own, as the choices are rendered from the item, untouched; span rewrites do not restate the
  passage, which is fixed);
* ``similarity``: cosine similarity of sentence embeddings, computed by the caller;
* ``review_flag``: any check failed or similarity below ``REVIEW_SIMILARITY``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import polars as pl

from dars.benchmarks.base import Item, task_type_of

REVIEW_SIMILARITY = 0.75
_NUM_RE = re.compile(r"(?<![A-Za-z])-?\d+(?:[.,]\d+)*(?:/\d+)?")


def normalise(text: str) -> str:
    """``text`` lower-cased with every run of non-word characters one space (what duplicate
    and passage-restatement checks compare)."""
    return re.sub(r"[^\w]+", " ", text.lower()).strip()


def numbers_in(text: str) -> list[str]:
    """Numeric tokens of ``text`` with thousands separators removed (``1,000`` → ``1000``)."""
    return [n.replace(",", "") for n in _NUM_RE.findall(text)]


def check_rewrites(
    item: Item, rewrites: Sequence[str], similarities: Sequence[float | None] | None = None
) -> list[dict[str, object]]:
    """One dict of validity columns per rewrite of ``item`` (same order as ``rewrites``)."""
    sims = list(similarities) if similarities is not None else [None] * len(rewrites)
    if len(sims) != len(rewrites):
        raise ValueError(f"{len(rewrites)} rewrites but {len(sims)} similarities")
    task = task_type_of(item)
    original = normalise(item.question)
    needed = numbers_in(item.question)
    seen: set[str] = set()
    out = []
    for text, sim in zip(rewrites, sims, strict=True):
        norm = normalise(text)
        complete = bool(norm)
        have = numbers_in(text)
        numbers_ok = all(have.count(n) >= needed.count(n) for n in set(needed))
        struct_ok = (
            complete
            and len(text) <= 3 * max(len(item.question), 40)
            and task.rewrite_structure_ok(item, text)
        )
        dup_original = norm == original
        dup_rewrite = norm in seen
        seen.add(norm)
        low_sim = sim is not None and sim < REVIEW_SIMILARITY
        out.append(
            {
                "complete": complete,
                "dup_original": dup_original,
                "dup_rewrite": dup_rewrite,
                "struct_ok": struct_ok,
                "similarity": None if sim is None else float(sim),
                "numbers_ok": numbers_ok,
                "review_flag": not (complete and struct_ok and numbers_ok)
                or dup_original
                or dup_rewrite
                or low_sim,
            }
        )
    return out


def rewrite_validity_table(rewrites: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """The paper's Table 5 from stored rewrites.

    ``rewrites``: one row per (dataset, split, query_id, rewrite_id) with the validity columns of
    the rewrite store. Returns one row per (dataset, split): records (distinct queries), rewrites,
    and the share of rewrites that are complete, duplicates of the original, duplicates among
    rewrites, the mean and 5th percentile of similarity, numbers preserved, structure kept and
    flagged for review.
    """
    return (
        rewrites.lazy()
        .group_by("dataset", "split")
        .agg(
            pl.col("query_id").n_unique().alias("records"),
            pl.len().alias("rewrites"),
            pl.col("complete").mean().alias("complete"),
            pl.col("dup_original").mean().alias("orig_dup"),
            pl.col("dup_rewrite").mean().alias("rew_dup"),
            pl.col("similarity").mean().alias("sim_mean"),
            pl.col("similarity").quantile(0.05, interpolation="linear").alias("sim_p05"),
            pl.col("numbers_ok").mean().alias("num_preserved"),
            pl.col("struct_ok").mean().alias("struct_pass"),
            pl.col("review_flag").mean().alias("review_flag"),
        )
        .sort("dataset", "split", descending=[False, True])
        .collect()
    )
