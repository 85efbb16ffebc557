"""Issue 11's observations of `dars import`, kept as regression tests (no Prefect server)."""

from __future__ import annotations

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from dars.cli import app
from dars.config import BenchmarkSpec, ConfigError, Experiment, ModelSpec, Pool, load_experiment
from dars.tasks.supervise import supervise_dataset
from tests.flows.test_import_pipeline import MAP
from tests.generations import write_generations

runner = CliRunner()


def test_unsafe_names_are_shown_whole_and_the_hint_speaks_cli(tmp_path):
    gens = write_generations(tmp_path / "gens.csv", n_questions=4)
    result = runner.invoke(app, ["import", str(gens), "--root", str(tmp_path / "r"), *MAP])
    assert result.exit_code == 1
    out = " ".join(result.output.split())  # undo the terminal's line wrapping
    # Rich markup used to eat "[json-schema]" and show (got 'gpt-4o').
    assert "(got 'gpt-4o[json-schema]')" in out
    assert "--rename-values model:OLD=NEW" in out and "--slug-names" in out
    assert "mapping={" not in out.split("Python")[0]
    assert not (tmp_path / "r" / "observations").exists()


def test_unknown_columns_hint_speaks_cli(tmp_path):
    path = tmp_path / "g.csv"
    pl.DataFrame({"qid": ["q"], "model": ["m"], "score": [1.0]}).write_csv(path)
    result = runner.invoke(
        app,
        ["import", str(path), "--root", str(tmp_path / "r"), "--dataset", "d", "--split", "train"],
    )
    out = " ".join(result.output.split())
    assert result.exit_code == 1 and "--map YOURS=OURS" in out and "--map YOURS=" in out


def test_rename_values_and_a_seeded_split(tmp_path):
    gens = write_generations(tmp_path / "gens.csv", n_questions=8)
    frame = pl.read_csv(gens).drop("split")
    frame.write_csv(gens)
    root = tmp_path / "r"
    result = runner.invoke(
        app,
        [
            "import", str(gens), "--root", str(root), *MAP,
            "--rename-values", "model:gpt-4o[json-schema]=gpt-4o-js",
            "--rename-values", "dataset:college_mathematics/few=college_math",
            "--test-fraction", "0.25", "--seed", "3",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    from dars.storage.queries import read_queries

    q = read_queries(root, "college_math")
    assert set(q["split"]) == {"train", "test"} and q.height == 8
    again = tmp_path / "r2"
    runner.invoke(
        app,
        [
            "import", str(gens), "--root", str(again), *MAP,
            "--rename-values", "model:gpt-4o[json-schema]=gpt-4o-js",
            "--rename-values", "dataset:college_mathematics/few=college_math",
            "--test-fraction", "0.25", "--seed", "3",
        ],
    )  # fmt: skip
    assert read_queries(again, "college_math").equals(q)  # the seeded split is reproducible


def test_unregistered_dataset_names_point_to_source_store(tmp_path):
    cfg = {
        "benchmarks": [{"name": "logical_deduction"}],
        "pool": {"models": [{"name": "a", "litellm_model": "openai/a"}, {"name": "b"}]},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="unknown benchmark 'logical_deduction'.*source: store"):
        load_experiment(path)
    cfg["benchmarks"] = [{"name": "logical_deduction", "source": "store", "n_train": 10}]
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match=r"\['n_train'\] do not apply to source 'store'"):
        load_experiment(path)


def test_imported_original_query_rows_under_a_benchmark_config_get_a_useful_error(tmp_path):
    """Rows imported under a registered benchmark's name answer the original query (-1), which
    the default protocol does not supervise: the error says so and how to fix it, instead of
    'collect observations first'."""
    gens = write_generations(tmp_path / "gens.csv", n_questions=8)
    frame = pl.read_csv(gens).filter(pl.col("subject") == "logical_deduction")
    frame.with_columns(subject=pl.lit("demo_mc")).write_csv(gens)
    root = tmp_path / "r"
    result = runner.invoke(app, ["import", str(gens), "--root", str(root), *MAP, "--slug-names"])
    assert result.exit_code == 0, result.output
    names = ("gpt-4o-json-schema", "llama-3.1-8b", "mistral-7b")
    exp = Experiment(
        root=str(root),
        benchmarks=[BenchmarkSpec(name="demo_mc", n_train=6)],
        pool=Pool(models=[ModelSpec(name=n, litellm_model=f"openai/{n}") for n in names]),
        rewriter=ModelSpec(name="rw", litellm_model="openai/rw"),
    )
    with pytest.raises(FileNotFoundError, match="none inside the protocol's train grid"):
        supervise_dataset(exp, "demo_mc", n_boot=10)
    # Declared as imported, the same rows are supervised, every decode of every pair included.
    store = exp.model_copy(
        update={"benchmarks": [BenchmarkSpec(name="demo_mc", source="store")], "rewriter": None}
    )
    result = supervise_dataset(store, "demo_mc", n_boot=10)
    n_obs = pl.read_parquet(result.files["dars"])["n_obs"]
    assert n_obs.min() == 5 and n_obs.max() == 10
    assert any("uneven observations" in w for w in result.warnings)
    assert any("dropped" in w and "mistral-7b (1)" in w for w in result.warnings)
