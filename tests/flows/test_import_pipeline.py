"""Bring your own generations, end to end through the CLI: a realistic file of someone else's
scored generations (publisher's column names, a dataset and a model name that are not
path-safe, 5 to 10 decodes per pair, two models missing some questions, a split column) is
imported with its questions, and `dars run` supervises, trains, evaluates and reports from the
store alone — no benchmark loader, nothing collected."""

from __future__ import annotations

import json

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from dars.cli import app
from dars.storage import RunLayout, read_observations
from dars.storage.queries import read_queries
from dars.storage.supervision_store import read_supervision
from tests.generations import MODELS, write_generations

runner = CliRunner()
MAP = [
    "--map", "subject=dataset", "--map", "question_id=query_id", "--map", "model_name=model",
    "--map", "sample=decode_id", "--map", "correct=score", "--map", "answer=gold",
    "--map", "prompt_tokens=", "--map", "completion_tokens=",
]  # fmt: skip


def _ok(result):
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


@pytest.mark.flow
def test_imported_generations_run_the_whole_dag(tmp_path, prefect_harness, quiet_prefect_console):
    gens = write_generations(tmp_path / "gens.csv", n_questions=12)
    root, cfg = tmp_path / "run", tmp_path / "imported.yaml"
    args = ["import", str(gens), "--root", str(root), *MAP, "--slug-names", "--config-out"]
    out = _ok(runner.invoke(app, [*args, str(cfg)]))
    assert "'gpt-4o[json-schema]' stored as 'gpt-4o-json-schema'" in out
    assert "'college_mathematics/few' stored as 'college_mathematics-few'" in out
    manifest = json.loads(next(RunLayout(root).imports_dir().glob("*.json")).read_text())
    assert manifest["renamed_values"]["model"] == {"gpt-4o[json-schema]": "gpt-4o-json-schema"}

    config = yaml.safe_load(cfg.read_text())
    assert [b["source"] for b in config["benchmarks"]] == ["store", "store"]
    assert config["benchmarks"][0]["label"] == "college_mathematics/few"
    assert {m["name"] for m in config["pool"]["models"]} == {
        "gpt-4o-json-schema", "llama-3.1-8b", "mistral-7b", "qwen2.5-7b"
    }  # fmt: skip
    assert all("litellm_model" not in m for m in config["pool"]["models"])  # never called
    # A faster run than the defaults: fewer families and draws.
    config.update(
        families=["knn", "mirt"],
        single_shot_draws=8,
        encoder="tfidf",
        evaluation={"ablation_family": "knn", "n_boot": 50},
    )
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))

    queries = read_queries(root, "logical_deduction")
    assert queries.height == 12 and set(queries["split"]) == {"train", "test"}

    out = _ok(runner.invoke(app, ["run", "-c", str(cfg)]))
    assert "nothing to collect" in out
    assert "report:" in out
    layout = RunLayout(root)
    # Every decode of the uneven pairs was used: n_obs is the number imported per pair.
    obs = read_observations(root, ["dataset", "split", "query_id", "model", "score"])
    train = obs.filter((pl.col("split") == "train") & (pl.col("dataset") == "logical_deduction"))
    imported_per_pair = train.group_by("query_id", "model").len()
    dars = read_supervision(root, "logical_deduction", "dars")
    joined = dars.join(imported_per_pair, on=["query_id", "model"])
    assert joined.height == dars.height and (joined["n_obs"] == joined["len"]).all()
    assert joined["n_obs"].min() == 5 and joined["n_obs"].max() == 10
    # Queries a model never answered are dropped from supervision (and counted).
    summary = read_supervision(root, "logical_deduction", "summary")
    dropped = summary.filter(pl.col("metric") == "n_queries_dropped")["value"].item()
    assert dropped > 0
    assert dars["query_id"].n_unique() + dropped == train["query_id"].n_unique()
    # Routers were trained on the stored question texts and evaluated on the imported test split.
    assert (layout.model_dir("logical_deduction", "knn", "dars") / "router.json").is_file()
    main = pl.read_parquet(layout.results_file("main"))
    assert set(main["view"]) == {"test_decode"}  # decode-only data: no rewrite view
    assert main.filter(pl.col("supervision") == "dars")["U"].is_not_null().all()
    report = layout.report_file("index", "md").read_text()
    assert "imported generations" in report and "— (imported)" in report
    assert all(m in report for m in MODELS if m != "gpt-4o[json-schema]")
    # Diagnostics of imported data: the paper's slot definition (decode index shared by all
    # models) is the default, the draws variant beside it, both measured on this dataset.
    diag = pl.read_parquet(layout.results_file("diagnostics")).filter(
        (pl.col("dataset") == "logical_deduction") & pl.col("definition").is_not_null()
    )
    assert set(diag.filter(pl.col("is_default"))["definition"]) == {"paper"}
    assert set(diag["definition"]) == {"paper", "draws"}
    assert diag["value"].is_finite().all() and (diag["n_units"] > 0).all()
