"""Every `dars` command, run through typer's CliRunner on a tiny simulated experiment."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
import yaml
from typer.testing import CliRunner

from dars.cli import app

runner = CliRunner()
SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _tiny_config(tmp_path: Path) -> Path:
    from dars.sim import default_sim_specs, sim_rewriter_spec

    specs = [s.model_dump(mode="json") for s in default_sim_specs()[:2]]
    cfg = {
        "name": "tiny",
        "root": str(tmp_path / "run"),
        "benchmarks": [{"name": "demo_mc", "n_train": 6, "n_test": 3, "options": {"n_items": 9}}],
        "protocol": {
            "train_rewrites": 2,
            "train_decodes": 2,
            "test_rewrites": 1,
            "test_rewrite_decodes": 1,
            "test_decodes": 2,
        },
        "pool": {"models": specs},
        "rewriter": sim_rewriter_spec().model_dump(mode="json"),
        "single_shot_draws": 5,
        "shard_size": 4,
        "encoder": "tfidf",
        "families": ["knn", "avengers_pro", "mirt"],
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _ok(result):
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_benchmarks_list_and_show():
    out = _ok(runner.invoke(app, ["benchmarks", "list"]))
    for name in ("gpqa", "math500", "drop800", "demo_mc", "demo_math", "demo_span", "jsonl"):
        assert name in out
    out = _ok(runner.invoke(app, ["benchmarks", "show", "demo_math", "--n", "1"]))
    assert "Final Answer" in out
    assert "= 1.00" in out and "= 0.00" in out  # gold scores 1, a wrong number 0


def test_benchmarks_show_uses_the_configs_options(tmp_path):
    config = _tiny_config(tmp_path)  # demo_mc with n_items 9
    show = ["benchmarks", "show", "-c", str(config), "--n", "0"]
    out = _ok(runner.invoke(app, [*show, "demo_mc"]))
    assert out.startswith("demo_mc: 9 items (mc, options {'n_items': 9}")
    # A benchmark the config does not list: its own defaults.
    out = _ok(runner.invoke(app, [*show, "demo_math"]))
    assert out.startswith("demo_math: 100 items (math)")


@pytest.mark.skipif(not (SHARED / "math500_test.jsonl").exists(), reason="shared data absent")
def test_benchmarks_prepare_fills_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DARS_CACHE_DIR", str(tmp_path / "cache"))
    out = _ok(
        runner.invoke(
            app, ["benchmarks", "prepare", "math500", "--path", str(SHARED / "math500_test.jsonl")]
        )
    )
    assert "cached math500" in out
    assert list((tmp_path / "cache").rglob("*.parquet"))


def test_bad_config_names_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("benchmarks: [{name: nope}]\npool: {models: []}\nrewriter: {}\n")
    result = runner.invoke(app, ["status", "-c", str(bad)])
    assert result.exit_code == 2
    assert "benchmarks.0.name" in result.output and "allowed values" in result.output


def test_collect_status_rerun_supervise_run(tmp_path, prefect_harness, quiet_prefect_console):
    cfg = _tiny_config(tmp_path)
    root = tmp_path / "run"
    # Nothing collected yet: status reports everything missing and exits 1.
    result = runner.invoke(app, ["status", "-c", str(cfg)])
    assert result.exit_code == 1 and "0 done" in result.output

    out = _ok(runner.invoke(app, ["collect", "-c", str(cfg), "--workers", "2"]))
    # 6 train × 2 models × 2×2 + 3 test × 2 models × (1 + 2) = 48 + 18
    assert "collected 66 calls" in out
    # Not a terminal: a plain line per collection stage, with its count and wall time.
    assert re.search(r"^rewrite: (\d+)/\1 shards \(\d+ s\)$", out, re.M), out
    assert re.search(r"^decode: (\d+)/\1 shards \(\d+ s\)$", out, re.M), out
    assert "66 expected, 66 done, 0 failed, 0 missing" in out
    # The cost line is the ledger's: this run's spend (rewriter calls included) and the root's.
    flat = re.sub(r"\s+", " ", out)  # the console wraps long lines
    assert re.search(r"spend \(ledger\): \$[0-9.]+ this run \(75 calls, run \S+\), \$", flat)
    out = _ok(runner.invoke(app, ["status", "-c", str(cfg)]))
    flat = re.sub(r"\s+", " ", out)
    assert "0 missing" in out and "spend (ledger): $" in flat and "over 75 calls" in flat
    out = _ok(runner.invoke(app, ["rerun", "--failed", "-c", str(cfg)]))
    assert "nothing to rerun" in out

    out = _ok(runner.invoke(app, ["supervise", "-c", str(cfg)]))
    assert "winner_flip_rate" in out
    assert re.search(r"^supervise: 1/1 datasets \(\d+ s\)$", out, re.M), out
    assert "paper definition" in out  # the default definition of the diagnostics is named
    assert (root / "supervision" / "dataset=demo_mc" / "dars.parquet").is_file()

    out = _ok(
        runner.invoke(app, ["train", "-c", str(cfg), "--family", "knn", "--supervision", "dars"])
    )
    assert "routers trained" in out
    assert re.search(r"^train: 1/1 routers \(\d+ s\)$", out, re.M), out
    assert (root / "models" / "dataset=demo_mc" / "family=knn" / "supervision=dars").is_dir()
    result = runner.invoke(app, ["train", "-c", str(cfg), "--family", "nope"])
    assert result.exit_code == 2 and "knn" in result.output  # a usage error listing the families

    out = _ok(runner.invoke(app, ["experiment", "main", "-c", str(cfg)]))
    assert "oracle" in out and "knn" in out
    assert re.search(r"^evaluate: 1/1 experiments \(\d+ s\)$", out, re.M), out
    main = pl.read_parquet(root / "results" / "main.parquet")
    for (_, _), g in main.group_by("dataset", "view"):
        oracle = g.filter(pl.col("supervision") == "oracle")["U"].item()
        # Robust facts only: no router and no fixed model beats the per-query oracle.
        assert (g["U"] <= oracle + 1e-12).all()
        # The best fixed model is at least as good as picking a model at random.
        best = g.filter(pl.col("supervision") == "best_fixed")["U"].item()
        assert best >= g.filter(pl.col("supervision") == "random")["U"].item() - 1e-12

    # Only knn/dars is trained: the ablation (mirt) fails naming the command that fixes it, and
    # an unknown experiment lists the valid ones.
    result = runner.invoke(app, ["experiment", "ablation", "-c", str(cfg)])
    assert result.exit_code == 1 and "dars train" in result.output
    result = runner.invoke(app, ["evaluate", "-c", str(cfg), "-e", "nope"])
    assert result.exit_code == 2 and "sample_efficiency" in result.output

    # The pipeline on a complete store makes no call, rewrites the supervision, trains every
    # configured family on every default supervision and evaluates them.
    out = _ok(runner.invoke(app, ["run", "-c", str(cfg)]))
    assert "nothing to collect" in out and "pipeline finished" in out
    # Every stage of the pipeline has its line, in DAG order; no bar without a terminal.
    stages = [
        r"rewrite: nothing to do",
        r"decode: nothing to do",
        r"supervise: 1/1 datasets",
        r"train: (\d+)/\1 routers",
        r"evaluate: (\d+)/\2 experiments",
        r"report: done",
    ]
    found = re.search(r" \(\d+ s\)\n.*?".join(f"^{s}" for s in stages), out, re.M | re.S)
    assert found, out
    assert not re.search(r"^(rewrite calls|decode calls|supervise|train|evaluate)\s+━", out, re.M)
    # ... and records its wall time, machine and load for `dars readme-numbers`.
    out = _ok(
        runner.invoke(app, ["readme-numbers", "-c", str(cfg), "--out", str(tmp_path / "n.md")])
    )
    assert "`dars run` wall time: " in (tmp_path / "n.md").read_text()
    for family in ("knn", "avengers_pro", "mirt"):
        for sup in ("single_shot", "dars", "without_risk"):
            mdir = root / "models" / "dataset=demo_mc" / f"family={family}" / f"supervision={sup}"
            assert (mdir / "routes.parquet").is_file()
    main = pl.read_parquet(root / "results" / "main.parquet")
    assert set(main.filter(pl.col("supervision") == "single_shot")["family"]) == {
        "knn",
        "avengers_pro",
        "mirt",
    }
    assert (main.filter(pl.col("supervision") == "single_shot")["n_draws"] == 5).all()
    assert (root / "results" / "main.json").is_file()

    # One experiment alone, then the report from the results on disk.
    out = _ok(runner.invoke(app, ["experiment", "validity", "-c", str(cfg)]))
    assert "scoring_validity" in out and "wrote" in out
    out = _ok(runner.invoke(app, ["report", "-c", str(cfg)]))
    assert "index.html" in out and (root / "report" / "index.html").is_file()
    assert re.search(r"^report: done \(\d+ s\)$", out, re.M), out


def test_rerun_needs_the_flag(tmp_path):
    result = runner.invoke(app, ["rerun", "-c", str(_tiny_config(tmp_path))])
    assert result.exit_code == 2 and "--failed" in result.output


def test_import_validates_then_writes(tmp_path):
    good = tmp_path / "gens.csv"
    pl.DataFrame(
        {
            "qid": ["q1", "q1", "q2"],
            "model": ["m-a", "m-b", "m-a"],
            "correct": [1.0, 0.0, 0.5],
            "cost_usd": [0.01, 0.02, 0.01],
        }
    ).write_csv(good)
    root = tmp_path / "run"
    out = _ok(
        runner.invoke(
            app,
            [
                "import", str(good), "--root", str(root), "--dataset", "mine",
                "--split", "train", "--map", "qid=query_id", "--map", "correct=score",
            ],
        )
    )  # fmt: skip
    assert "imported 3 rows" in out
    stored = list((root / "observations" / "dataset=mine" / "split=train").rglob("*.parquet"))
    assert len(stored) == 2  # one partition per model

    bad = tmp_path / "bad.csv"
    bad.write_text("query_id,model,score\nq1,m-a,1.5\n")
    result = runner.invoke(
        app,
        ["import", str(bad), "--root", str(tmp_path / "r2"), "--dataset", "d", "--split", "train"],
    )
    assert result.exit_code == 1
    assert "row 1" in result.output and "score" in result.output
    assert not (tmp_path / "r2" / "observations").exists()


@pytest.mark.parametrize("width", [60, 80, 120])
def test_experiment_pareto_view_is_short_and_untruncated(monkeypatch, width):
    # Issue 15 reported a 799-line table of truncated cells from `dars experiment pareto`; its
    # view is the budget frontier, one small table per dataset, whatever the terminal width.
    import io

    from rich.console import Console

    import dars.cli as cli
    from tests.evaluation.sample_results import make_results

    tables = make_results()
    rec = Console(file=io.StringIO(), width=width, record=True)
    monkeypatch.setattr(cli, "console", rec)
    cli._print_views("pareto", {n: tables[n] for n in ("pareto", "pareto_budget")})
    out = rec.export_text()
    budget = tables["pareto_budget"]
    # One row per budget and a title, header and spacing per dataset (the full `pareto` table
    # printed instead would be ~4 times longer).
    assert len(out.splitlines()) <= budget["dataset"].n_unique() * (budget["budget"].n_unique() + 8)
    assert "…" not in out, out
