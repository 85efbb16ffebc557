import datetime as dt
import math

import polars as pl
import pyarrow as pa
import pytest

from dars.storage import (
    OBSERVATION_COLUMNS,
    OBSERVATION_POLARS_SCHEMA,
    OBSERVATION_SCHEMA,
    REWRITE_POLARS_SCHEMA,
    REWRITE_SCHEMA,
    StorageError,
    validate_observations,
    validate_rewrites,
)


def test_arrow_and_polars_schemas_agree():
    assert OBSERVATION_SCHEMA.names == list(OBSERVATION_POLARS_SCHEMA)
    assert REWRITE_SCHEMA.names == list(REWRITE_POLARS_SCHEMA)
    empty = pl.DataFrame(schema=OBSERVATION_POLARS_SCHEMA).to_arrow(
        compat_level=pl.CompatLevel.oldest()
    )
    assert empty.cast(OBSERVATION_SCHEMA).schema.equals(OBSERVATION_SCHEMA)
    assert OBSERVATION_SCHEMA.field("created_at").type == pa.timestamp("us", tz="UTC")
    nullable = {f.name for f in OBSERVATION_SCHEMA if f.nullable}
    assert nullable == {"response", "parsed", "score", "error"}
    assert [c.name for c in OBSERVATION_COLUMNS][:7] == [
        "dataset",
        "split",
        "query_id",
        "model",
        "view",
        "rewrite_id",
        "decode_id",
    ]


def test_valid_rows_are_normalised(make_obs):
    rows = [make_obs("q1", decode_id=0), make_obs("q1", decode_id=1, status="error")]
    df = validate_observations(list(reversed([dict(reversed(r.items())) for r in rows])))
    assert df.columns == list(OBSERVATION_POLARS_SCHEMA)
    assert dict(df.schema) == OBSERVATION_POLARS_SCHEMA
    assert df["decode_id"].to_list() == [1, 0]
    assert df["score"].to_list() == [None, 1.0]


def test_lossless_casts_applied(make_obs):
    df = pl.DataFrame([make_obs(score=1)]).with_columns(
        pl.col("created_at").dt.convert_time_zone("Europe/Paris").dt.cast_time_unit("ns"),
        pl.col("rewrite_id").cast(pl.Int8),
    )
    out = validate_observations(df)
    assert out["score"].dtype == pl.Float64
    assert out["rewrite_id"].dtype == pl.Int32
    assert out["created_at"].dtype == pl.Datetime("us", "UTC")
    assert out["created_at"][0] == dt.datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)


def _err(rows):
    with pytest.raises(StorageError) as exc:
        validate_observations(rows)
    return str(exc.value)


def test_missing_and_extra_columns_named(make_obs):
    row = make_obs()
    del row["latency_s"]
    row["temperature"] = 0.7
    msg = _err([row])
    assert "missing column(s): latency_s" in msg
    assert "unexpected column(s): temperature" in msg


def test_wrong_type_named(make_obs):
    msg = _err([make_obs(score="0.5")])
    assert "column 'score': expected Float64, got String" in msg


def test_overflowing_int_named(make_obs):
    df = pl.DataFrame([make_obs()]).with_columns(pl.lit(2**40).alias("attempts"))
    assert "column 'attempts': value 1099511627776 does not fit in Int32" in _err(df)


def test_naive_timestamp_rejected(make_obs):
    msg = _err([make_obs(created_at=dt.datetime(2025, 1, 1))])
    assert "column 'created_at': timestamps must be timezone-aware" in msg


def test_invalid_status_and_view_name_example_row(make_obs):
    rows = [
        make_obs("q1"),
        make_obs("q2", status="ok", view="valid"),
        make_obs("q3", status="done"),
    ]
    msg = _err(rows)
    assert (
        "column 'view': invalid value; allowed: train, test_rewrite, test_decode in 1 row(s)" in msg
    )
    assert "e.g. row 1 (dataset='demo', split='train', query_id='q2'" in msg
    assert "view='valid'" in msg
    assert "column 'status': invalid value; allowed: ok, error" in msg
    assert "status='done'" in msg


def test_duplicate_keys_named(make_obs):
    rows = [make_obs("q1"), make_obs("q2"), make_obs("q1", run_id="other"), make_obs("q2", "m2")]
    msg = _err(rows)
    assert "1 key(s) occur more than once, e.g. rows 0, 2 share" in msg
    assert "query_id='q1', model='m1', rewrite_id=0, decode_id=0" in msg


@pytest.mark.parametrize(
    ("col", "value", "problem"),
    [
        ("score", math.nan, "NaN/inf not allowed"),
        ("score", 1.5, "must be in [0, 1]"),
        ("cost_usd", math.inf, "NaN/inf not allowed"),
        ("cost_usd", -0.1, "must be >= 0"),
        ("latency_s", math.nan, "NaN/inf not allowed"),
        ("prompt_tokens", -1, "must be >= 0"),
        ("attempts", 0, "must be >= 1"),
        ("rewrite_id", -2, "must be >= -1"),
        ("decode_id", -1, "must be >= 0"),
        ("run_id", None, "null not allowed"),
        ("dataset", "a/b", "not usable in a path"),
        ("model", "_hidden", "not usable in a path"),
        ("split", "dev", "invalid value; allowed: train, test"),
    ],
)
def test_bad_values_named(make_obs, col, value, problem):
    msg = _err([make_obs("q0"), make_obs("q9", **{col: value})])
    assert f"column '{col}': {problem}" in msg
    assert "in 1 row(s), e.g. row 1 (" in msg
    assert msg.count("\n") == 1  # exactly one problem line


def test_status_and_score_consistency(make_obs):
    assert "status 'ok' needs a score" in _err([make_obs(score=None)])
    assert "status 'error' must have a null score" in _err([make_obs(status="error", score=0.0)])
    assert "status 'error' needs an error message" in _err([make_obs(status="error", error=None)])


def test_view_must_match_split_and_rewrite(make_obs):
    assert "view 'train' goes with split 'train'" in _err([make_obs(split="test", view="train")])
    msg = _err([make_obs(split="test", rewrite_id=0, view="test_decode")])
    assert "view 'test_decode' uses the original query" in msg
    msg = _err([make_obs(split="test", rewrite_id=-1, view="test_rewrite")])
    assert "view 'test_rewrite' needs a rewrite" in msg


def test_api_key_in_error_message_rejected(make_obs):
    row = make_obs(status="error", error="AuthenticationError: bad key sk-abcdefghijklmnopqrstuvwx")
    assert "looks like it contains an API key" in _err([row])


def test_every_problem_reported_at_once(make_obs):
    msg = _err([make_obs(score=math.nan, cost_usd=-1.0, view="bogus")])
    assert msg.count("\n") == 3


def test_rewrites_validation(make_rewrite):
    ok = validate_rewrites([make_rewrite("q1", 0), make_rewrite("q1", 1, similarity=None)])
    assert dict(ok.schema) == REWRITE_POLARS_SCHEMA
    with pytest.raises(StorageError, match="column 'rewrite_id': must be >= 0"):
        validate_rewrites([make_rewrite("q1", -1)])
    with pytest.raises(StorageError, match="NaN/inf not allowed"):
        validate_rewrites([make_rewrite(similarity=math.nan)])
    with pytest.raises(StorageError, match="duplicate key"):
        validate_rewrites([make_rewrite("q1", 0), make_rewrite("q1", 0, text="other")])
    with pytest.raises(StorageError, match="missing column"):
        validate_rewrites([{k: v for k, v in make_rewrite().items() if k != "text"}])


def test_empty_row_list_rejected():
    with pytest.raises(StorageError, match="no rows given"):
        validate_observations([])
