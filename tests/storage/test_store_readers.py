"""The stores are plain hive Parquet: DuckDB and pyarrow.dataset read them with no custom code."""

import duckdb
import polars as pl
import pyarrow.dataset as ds
from polars.testing import assert_frame_equal

from dars.storage import (
    OBSERVATION_KEY,
    OBSERVATION_POLARS_SCHEMA,
    REWRITE_KEY,
    REWRITE_POLARS_SCHEMA,
    scan_observations,
    scan_rewrites,
    write_observations,
    write_rewrites,
)


def _normalise(df: pl.DataFrame, schema, key) -> pl.DataFrame:
    """Generic readers order columns their own way and DuckDB reports UTC as 'Etc/UTC'."""
    df = df.with_columns(pl.col("created_at").dt.convert_time_zone("UTC"))
    return df.select(list(schema)).cast(schema).sort(list(key))


def _duckdb(base) -> pl.DataFrame:
    sql = f"select * from read_parquet('{base}/**/*.parquet', hive_partitioning=true)"
    return duckdb.sql(sql).pl()


def _pyarrow(base) -> pl.DataFrame:
    return pl.from_arrow(ds.dataset(base, format="parquet", partitioning="hive").to_table())


def test_duckdb_pyarrow_and_polars_read_identical_observations(root, make_obs):
    rows = [
        make_obs(
            f"q{q}",
            m,
            r,
            d,
            status="error" if (q + d) % 3 == 0 else "ok",
            response=None if d == 2 else f"answer {q}{m}{r}{d}",
            latency_s=0.1 * d,
        )
        for q in range(4)
        for m in ("m1", "m2")
        for r in (-1, 0, 1)
        for d in range(3)
    ]
    rows += [make_obs("t1", "m1", -1, 0, split="test", dataset="gpqa")]
    write_observations(root, rows[:40], shard=0)
    write_observations(root, rows[40:], shard=1)
    ours = scan_observations(root).collect().sort(list(OBSERVATION_KEY))
    assert ours.height == len(rows)
    base = root / "observations"
    for other in (_duckdb(base), _pyarrow(base)):
        assert sorted(other.columns) == sorted(OBSERVATION_POLARS_SCHEMA)
        got = _normalise(other, OBSERVATION_POLARS_SCHEMA, OBSERVATION_KEY)
        assert_frame_equal(got, ours)


def test_duckdb_pyarrow_and_polars_read_identical_rewrites(root, make_rewrite):
    rows = [
        make_rewrite(f"q{q}", r, similarity=None if r == 1 else 0.5 + q / 10)
        for q in range(3)
        for r in range(3)
    ]
    rows.append(make_rewrite("t1", 0, split="test"))
    write_rewrites(root, rows, shard=0)
    ours = scan_rewrites(root).collect().sort(list(REWRITE_KEY))
    base = root / "rewrites"
    for other in (_duckdb(base), _pyarrow(base)):
        got = _normalise(other, REWRITE_POLARS_SCHEMA, REWRITE_KEY)
        assert_frame_equal(got, ours)


def test_duckdb_aggregates_like_polars(root, make_obs):
    rows = [
        make_obs(f"q{q}", m, 0, d, score=((q * 7 + d) % 5) / 4)
        for q in range(3)
        for m in ("m1", "m2")
        for d in range(4)
    ]
    write_observations(root, rows, shard=0)
    sql = (
        f"select model, avg(score) as q_mean from read_parquet("
        f"'{root}/observations/**/*.parquet', hive_partitioning=true) group by model order by model"
    )
    duck = duckdb.sql(sql).pl()
    ours = scan_observations(root).group_by("model").agg(pl.col("score").mean().alias("q_mean"))
    assert_frame_equal(duck, ours.sort("model").collect())
