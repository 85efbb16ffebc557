"""Hypothesis: store content depends only on which rows were written, not on order or batching,
and repeated writes follow the merge rules of a slow dictionary reference."""

import tempfile

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from dars.storage import OBSERVATION_KEY, scan_observations, write_observations

KEY = list(OBSERVATION_KEY)
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# (query, model, rewrite, decode) cells of a tiny protocol; shard is a function of the query,
# as in the plan.
CELLS = [(q, m, r, d) for q in range(3) for m in ("m1", "m2") for r in (-1, 0) for d in (0, 1)]
SHARD = {0: 0, 1: 0, 2: 1}


def _write_batches(make_obs, batches) -> pl.DataFrame:
    with tempfile.TemporaryDirectory() as root:
        for batch in batches:
            for shard in sorted({SHARD[c[0][0]] for c in batch}):
                rows = [
                    make_obs(
                        f"q{q}",
                        m,
                        r,
                        d,
                        status=status,
                        attempts=att,
                        score=None if status == "error" else score,
                    )
                    for (q, m, r, d), status, att, score in batch
                    if SHARD[q] == shard
                ]
                write_observations(root, rows, shard=shard)
        return scan_observations(root).collect().sort(KEY)


distinct_rows = st.lists(
    st.tuples(
        st.sampled_from(CELLS),
        st.sampled_from(["ok", "error"]),
        st.integers(1, 3),
        st.sampled_from([0.0, 0.5, 1.0]),
    ),
    min_size=1,
    max_size=16,
    unique_by=lambda r: r[0],
)


@SETTINGS
@given(rows=distinct_rows, data=st.data())
def test_order_and_batching_do_not_change_the_store(make_obs, rows, data):
    one_go = _write_batches(make_obs, [rows])
    shuffled = data.draw(st.permutations(rows))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(rows) - 1)), max_size=4)))
    batches = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(rows)], strict=True)]
    batches = [b for b in batches if b]
    assert_frame_equal(_write_batches(make_obs, batches), one_go)


def _reference(batches):
    """Slow, obvious model of the merge rules: key -> (status, attempts, score)."""
    store: dict = {}
    for batch in batches:
        for cell, status, att, score in batch:
            old = store.get(cell)
            if old is None:
                store[cell] = (status, att, score if status == "ok" else None)
            elif old[0] == "error":
                store[cell] = (status, old[1] + att, score if status == "ok" else None)
    return store


@SETTINGS
@given(batches=st.lists(distinct_rows, min_size=1, max_size=4))
def test_repeated_writes_follow_the_reference(make_obs, batches):
    got = _write_batches(make_obs, batches)
    ref = _reference(batches)
    assert got.height == len(ref)  # one row per key, never two
    actual = {
        (int(r["query_id"][1:]), r["model"], r["rewrite_id"], r["decode_id"]): (
            r["status"],
            r["attempts"],
            r["score"],
        )
        for r in got.iter_rows(named=True)
    }
    assert actual == ref
