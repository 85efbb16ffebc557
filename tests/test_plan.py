import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dars.benchmarks.base import Item
from dars.config import experiment_from_dict
from dars.plan import (
    PLAN_SCHEMA,
    STATUS_SCHEMA,
    build_plan,
    expected_rewrites,
    filter_keys,
    key_filter,
    status,
)


def _experiment(datasets=("demo_mc",), models=("m1", "m2"), shard_size=50, **protocol):
    return experiment_from_dict(
        {
            "benchmarks": [{"name": d} for d in datasets],
            "pool": {"models": [{"name": m, "litellm_model": f"dars-sim/{m}"} for m in models]},
            "rewriter": {"name": "rw", "litellm_model": "dars-sim/rw"},
            "protocol": protocol,
            "shard_size": shard_size,
        }
    )


def _items(*ids):
    return [Item(query_id=i, question=f"question {i}", gold="A", task_type="mc") for i in ids]


SMALL = dict(
    train_rewrites=2, train_decodes=2, test_rewrites=2, test_rewrite_decodes=1, test_decodes=3
)


def test_small_protocol_by_hand():
    exp = _experiment(**SMALL)
    splits = {"demo_mc": {"train": _items("a", "b"), "test": _items("t")}}
    plan = build_plan(exp, splits)
    assert dict(plan.schema) == PLAN_SCHEMA
    # train: 2 queries × 2 models × K=2 × M=2 = 16; test: 1 query × 2 models × (2×1 + 3) = 10
    assert plan.height == 26
    counts = plan.group_by("split", "view").len().sort("split", "view").rows()
    assert counts == [
        ("test", "test_decode", 6),
        ("test", "test_rewrite", 4),
        ("train", "train", 16),
    ]
    assert plan.head(5).select("split", "query_id", "model", "rewrite_id", "decode_id").rows() == [
        ("train", "a", "m1", 0, 0),
        ("train", "a", "m1", 0, 1),
        ("train", "a", "m1", 1, 0),
        ("train", "a", "m1", 1, 1),
        ("train", "b", "m1", 0, 0),
    ]
    test_m2 = plan.filter(pl.col("split") == "test", pl.col("model") == "m2")
    assert test_m2.select("view", "rewrite_id", "decode_id").rows() == [
        ("test_rewrite", 0, 0),
        ("test_rewrite", 1, 0),
        ("test_decode", -1, 0),
        ("test_decode", -1, 1),
        ("test_decode", -1, 2),
    ]
    assert plan.select(pl.struct(plan.columns[:7]).is_unique().all()).item()
    assert set(plan["shard"]) == {0}


def test_original_included_in_train_and_shards():
    exp = _experiment(shard_size=2, **SMALL, train_include_original=True)
    splits = {"demo_mc": {"train": _items("a", "b", "c"), "test": []}}
    plan = build_plan(exp, splits)
    assert plan.height == 3 * 2 * 3 * 2  # queries × models × (original + 2 rewrites) × decodes
    assert sorted(set(plan["rewrite_id"])) == [-1, 0, 1]
    shard_of = dict(plan.select("query_id", "shard").unique().rows())
    assert shard_of == {"a": 0, "b": 0, "c": 1}


def test_datasets_in_experiment_order_and_rewrites():
    exp = _experiment(datasets=("demo_math", "demo_mc"), shard_size=1, **SMALL)
    splits = {
        "demo_mc": {"train": _items("x"), "test": _items("y")},
        "demo_math": {"train": _items("p", "q"), "test": []},
    }
    plan = build_plan(exp, splits)
    assert plan["dataset"].unique(maintain_order=True).to_list() == ["demo_math", "demo_mc"]
    rw = expected_rewrites(exp, splits)
    assert rw.rows() == [
        ("demo_math", "train", "p", 0, 0),
        ("demo_math", "train", "p", 1, 0),
        ("demo_math", "train", "q", 0, 1),
        ("demo_math", "train", "q", 1, 1),
        ("demo_mc", "train", "x", 0, 0),
        ("demo_mc", "train", "x", 1, 0),
        ("demo_mc", "test", "y", 0, 0),
        ("demo_mc", "test", "y", 1, 0),
    ]


def test_splits_must_match_experiment():
    exp = _experiment(**SMALL)
    with pytest.raises(ValueError, match=r"missing \['demo_mc'\], not in experiment \['gpqa'\]"):
        build_plan(exp, {"gpqa": {"train": _items("a")}})
    with pytest.raises(ValueError, match="unknown split"):
        build_plan(exp, {"demo_mc": {"train": _items("a"), "dev": []}})
    with pytest.raises(ValueError, match="query_id 'a' appears twice"):
        build_plan(exp, {"demo_mc": {"train": _items("a"), "test": _items("a")}})


def _obs(plan_rows, status_value):
    return [
        dict(
            zip(
                ("dataset", "split", "query_id", "model", "rewrite_id", "decode_id"), r, strict=True
            )
        )
        | {"status": status_value}
        for r in plan_rows
    ]


def test_status_done_failed_missing():
    exp = _experiment(shard_size=1, **SMALL)
    splits = {"demo_mc": {"train": _items("a", "b"), "test": _items("t")}}
    plan = build_plan(exp, splits)
    key = ["dataset", "split", "query_id", "model", "rewrite_id", "decode_id"]
    a_m1 = plan.filter(pl.col("query_id") == "a", pl.col("model") == "m1").select(key).rows()
    observed = pl.DataFrame(
        _obs(a_m1[:3], "ok")  # 3 done
        + _obs(a_m1[3:], "error")  # 1 failed
        + _obs(a_m1[:1], "error")  # an old error next to an ok row: still done
        + _obs([("demo_mc", "train", "zzz", "m1", 0, 0)], "ok")  # not planned: ignored
    )
    st_ = status(plan, observed.lazy())
    assert dict(st_.schema) == STATUS_SCHEMA
    rows = {r[:4]: r[4:] for r in st_.rows()}
    assert rows[("demo_mc", "train", "m1", 0)] == (4, 3, 1, 0)
    assert rows[("demo_mc", "train", "m1", 1)] == (4, 0, 0, 4)
    assert rows[("demo_mc", "test", "m2", 0)] == (5, 0, 0, 5)
    assert rows[(None, None, None, None)] == (26, 3, 1, 22)
    assert st_.height == 2 * 2 + 2 + 1  # train: 2 models × 2 shards, test: 2 models × 1, total
    assert st_.row(0)[:4] == ("demo_mc", "train", "m1", 0)  # plan order
    assert st_.row(-1)[:4] == (None, None, None, None)


def test_status_of_empty_store():
    exp = _experiment(**SMALL)
    plan = build_plan(exp, {"demo_mc": {"train": _items("a"), "test": []}})
    empty = pl.DataFrame(
        schema={
            **{k: PLAN_SCHEMA[k] for k in PLAN_SCHEMA if k not in ("view", "shard")},
            "status": pl.String,
        }
    )
    out = status(plan, empty)
    assert out.row(-1)[4:] == (8, 0, 0, 8)


@settings(max_examples=30, deadline=None)
@given(
    n_train=st.integers(0, 4),
    n_test=st.integers(0, 3),
    k=st.integers(1, 3),
    m=st.integers(1, 3),
    orig=st.booleans(),
    kt=st.integers(0, 2),
    mt=st.integers(1, 2),
    md=st.integers(0, 3),
    shard_size=st.integers(1, 3),
)
def test_plan_matches_nested_loops(n_train, n_test, k, m, orig, kt, mt, md, shard_size):
    exp = _experiment(
        shard_size=shard_size,
        train_rewrites=k,
        train_decodes=m,
        train_include_original=orig,
        test_rewrites=kt,
        test_rewrite_decodes=mt,
        test_decodes=md,
    )
    train = _items(*[f"tr{i}" for i in range(n_train)])
    test = _items(*[f"te{i}" for i in range(n_test)])
    plan = build_plan(exp, {"demo_mc": {"train": train, "test": test}})
    expected = set()
    for split, items in (("train", train), ("test", test)):
        for pos, it in enumerate(items):
            for model in ("m1", "m2"):
                if split == "train":
                    cells = [
                        ("train", r, d)
                        for r in ([-1] if orig else []) + list(range(k))
                        for d in range(m)
                    ]
                else:
                    cells = [("test_rewrite", r, d) for r in range(kt) for d in range(mt)]
                    cells += [("test_decode", -1, d) for d in range(md)]
                for view, r, d in cells:
                    expected.add(
                        ("demo_mc", split, it.query_id, model, view, r, d, pos // shard_size)
                    )
    assert set(plan.rows()) == expected
    assert plan.height == len(expected)


# --------------------------------------------------------------------------------------------
# the rerun filter (`dars rerun --failed --dataset/--model/--split`)


def test_key_filter_takes_repeated_values_and_comma_lists():
    exp = _experiment(datasets=("demo_mc", "demo_span"), models=("m1", "m2", "m3"))
    assert key_filter(exp) == {}
    got = key_filter(exp, model=["m3,m1", " m2 ", "m1"], split=["test"], dataset=[])
    assert got == {"model": ["m3", "m1", "m2"], "split": ["test"]}
    assert key_filter(exp, dataset=["demo_span"]) == {"dataset": ["demo_span"]}


def test_key_filter_names_every_unknown_value_and_the_allowed_ones_in_one_line():
    exp = _experiment(datasets=("demo_mc", "demo_span"), models=("m1", "m2"))
    with pytest.raises(ValueError) as info:
        key_filter(exp, dataset=["demo_mc,gpqa"], model=["m9", "m1"], split=["val"])
    assert str(info.value) == (
        "unknown dataset 'gpqa' (allowed: demo_mc, demo_span); "
        "unknown model 'm9' (allowed: m1, m2); "
        "unknown split 'val' (allowed: train, test)"
    )
    with pytest.raises(ValueError, match=r"^unknown model 'rw' \(allowed: m1, m2\)$"):
        key_filter(exp, model=["rw"])  # the rewriter is not a pool model


def test_filter_keys_narrows_by_the_columns_a_frame_has():
    obs = pl.DataFrame(
        {
            "dataset": ["a", "a", "b"],
            "split": ["train", "test", "train"],
            "model": ["m1", "m2", "m1"],
            "n": [1, 2, 3],
        }
    )
    assert filter_keys(obs, {"model": ["m1"]})["n"].to_list() == [1, 3]
    assert filter_keys(obs, {"model": ["m1"], "split": ["train"], "dataset": ["b"]})[
        "n"
    ].to_list() == [3]
    assert filter_keys(obs, {})["n"].to_list() == [1, 2, 3]
    assert filter_keys(obs, None)["n"].to_list() == [1, 2, 3]
    # Rewrites have no model column: a model filter keeps them all (every model needs them).
    rewrites = obs.drop("model").lazy()
    kept = filter_keys(rewrites, {"model": ["m2"], "split": ["train"]})
    assert isinstance(kept, pl.LazyFrame)
    assert kept.collect()["n"].to_list() == [1, 3]


def test_a_filtered_plan_has_the_filtered_status():
    exp = _experiment(models=("m1", "m2"), **SMALL)
    splits = {"demo_mc": {"train": _items("a", "b"), "test": _items("t")}}
    plan = build_plan(exp, splits)
    key = ["dataset", "split", "query_id", "model", "rewrite_id", "decode_id"]
    test_keys = plan.filter(pl.col("split") == "test").select(key).rows()  # m1's 5, then m2's
    observed = pl.DataFrame(_obs(test_keys[:5], "error") + _obs(test_keys[5:7], "ok"))
    only = key_filter(exp, model=["m2"], split=["test"])
    st_ = status(filter_keys(plan, only), observed)
    # m1's failures and every train key are outside the filter: not counted, not rerun.
    assert st_.select("split", "model", "expected", "done", "failed", "missing").rows() == [
        ("test", "m2", 5, 2, 0, 3),
        (None, None, 5, 2, 0, 3),
    ]
