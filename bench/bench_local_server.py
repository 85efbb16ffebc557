"""Benchmark: the whole pipeline against a real local model server (llama.cpp, two small models).

It starts one llama.cpp server per local model of the config (``bench/local_server.py``; the
server's Python comes from ``--server-python`` or ``$DARS_LOCAL_SERVER_PYTHON``), runs
``dars run -c <config> --root <tmp>`` against them in a subprocess, stops the servers, and reads
what landed in the run's store. It prints one table per question:

* calls: decode calls stored, ok / failed; prompt and completion tokens (sum and per ok call) as
  the server reported them; latency mean / p50 / p95 over ok calls (the store's ``latency_s``);
* per model: the same, plus the share of ok responses whose answer could be parsed
  (``parse_ok``) and the mean score per benchmark (a parse failure scores 0);
* wall time per stage: every Prefect flow run of the pipeline (pipeline, collect, rewrite,
  decode, supervise, train, evaluate, report), read from the run's own Prefect database
  (``PREFECT_HOME`` is a fresh directory per run), and the subprocess's wall time.

    python bench/bench_local_server.py                       # configs/local.yaml as it is
    python bench/bench_local_server.py --quick --out /tmp/local.json   # one benchmark, 3+2 queries

With ``--out`` it writes everything as JSON. When the server's Python, llama-cpp-python or a
model package is missing it prints a line starting ``SKIPPED:`` that says what to install, and
exits 0 (the bench needs a server venv that the project's own install does not make).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOCAL = ROOT / "configs" / "local.yaml"
sys.path.insert(0, str(HERE))

import local_server  # noqa: E402  (the sibling helper; bench/ is not a package)

# Quick mode: one benchmark, 3 train + 2 test queries, 1 rewrite x 1 decode on train, 1 x 1 and
# original x 1 on test (5 queries x 2 decode calls... per model), two cheap router families.
QUICK = {
    "benchmarks": [{"name": "demo_mc", "n_train": 3, "n_test": 2, "options": {"n_items": 5}}],
    "protocol": {
        "train_rewrites": 1,
        "train_decodes": 1,
        "test_rewrites": 1,
        "test_rewrite_decodes": 1,
        "test_decodes": 1,
    },
    "single_shot_draws": 5,
    "families": ["knn", "mirt"],
    "evaluation": {"n_boot": 50},
}


# --------------------------------------------------------------------------------------------
# the config


def served_models(data: dict[str, Any]) -> list[str]:
    """Pool models of a raw config that a local server answers: an ``openai/<name>`` route with
    an ``api_base``, and a name :data:`local_server.MODELS` knows how to serve."""
    return [
        m["name"]
        for m in data["pool"]["models"]
        if str(m.get("litellm_model", "")).startswith("openai/")
        and m.get("api_base")
        and m["name"] in local_server.MODELS
    ]


def bench_config(data: dict[str, Any], base_urls: dict[str, str], *, quick: bool) -> dict[str, Any]:
    """The config the bench runs: ``data`` with each served model's ``api_base`` pointed at its
    server (``base_urls``: name -> URL), shrunk to :data:`QUICK` with ``quick``."""
    out = json.loads(json.dumps(data))  # deep copy of plain YAML data
    for m in out["pool"]["models"]:
        if m["name"] in base_urls:
            m["api_base"] = base_urls[m["name"]]
    if quick:
        bench = QUICK["benchmarks"][0]["name"]
        out["benchmarks"] = [dict(b) for b in QUICK["benchmarks"]]
        out.setdefault("protocol", {}).update(QUICK["protocol"])
        tokens = out["protocol"].get("max_tokens") or {}
        out["protocol"]["max_tokens"] = {bench: tokens.get(bench, 256)}
        out.update({k: QUICK[k] for k in ("single_shot_draws", "families")})
        out.setdefault("evaluation", {}).update(QUICK["evaluation"])
    return out


# --------------------------------------------------------------------------------------------
# what landed in the store


def _percentile(values: list[float], q: float) -> float | None:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


def _calls_row(df: Any) -> dict[str, Any]:
    """Counts, tokens and latency of a frame of observation rows (tokens and latency: ok rows)."""
    import polars as pl

    ok = df.filter(pl.col("status") == "ok")
    n_ok = ok.height
    lat = ok["latency_s"].to_list()
    pt, ct = int(ok["prompt_tokens"].sum()), int(ok["completion_tokens"].sum())
    return {
        "calls": df.height,
        "ok": n_ok,
        "failed": df.height - n_ok,
        "prompt_tokens": pt,
        "completion_tokens": ct,
        "prompt_tokens_per_call": pt / n_ok if n_ok else None,
        "completion_tokens_per_call": ct / n_ok if n_ok else None,
        "latency_mean_s": sum(lat) / n_ok if n_ok else None,
        "latency_p50_s": _percentile(lat, 50),
        "latency_p95_s": _percentile(lat, 95),
        "parse_ok_share": float(ok["parse_ok"].mean()) if n_ok else None,
        "mean_score": float(ok["score"].mean()) if n_ok else None,
    }


def store_summary(root: str | Path) -> dict[str, Any]:
    """What the run's observation store holds, from the pool's decode calls.

    ``overall``: one row over every call. ``models``: one row per pool model (same columns).
    ``scores``: one row per (model, dataset) with ``calls`` (ok rows), ``parse_ok_share`` and
    ``mean_score`` (a parse failure is an ok row with score 0). ``parse_failures``: up to three
    (model, dataset, response) samples of responses the scorer could not parse.
    """
    import polars as pl

    from dars.storage import scan_observations

    cols = ["dataset", "model", "status", "parse_ok", "score", "response"]
    cols += ["prompt_tokens", "completion_tokens", "latency_s"]
    df = scan_observations(root).select(cols).collect().sort("model", "dataset")
    models = [
        {"model": m, **_calls_row(g)} for (m,), g in df.group_by("model", maintain_order=True)
    ]
    ok = df.filter(pl.col("status") == "ok")
    scores = (
        ok.group_by("model", "dataset", maintain_order=True)
        .agg(
            pl.len().alias("calls"),
            pl.col("parse_ok").mean().alias("parse_ok_share"),
            pl.col("score").mean().alias("mean_score"),
        )
        .to_dicts()
    )
    fails = (
        ok.filter(~pl.col("parse_ok"))
        .group_by("model", maintain_order=True)
        .head(1)
        .select("model", "dataset", "response")
        .to_dicts()
    )
    return {"overall": _calls_row(df), "models": models, "scores": scores, "parse_failures": fails}


# --------------------------------------------------------------------------------------------
# wall time per stage, from the run's Prefect database


def _parse_ts(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def stage_times(prefect_home: Path) -> list[dict[str, Any]]:
    """One row per Prefect flow run in ``prefect_home``'s database, in start order: ``flow``
    (name), ``state`` and ``wall_s`` (end - start). Empty when there is no database (a Prefect
    server other than the temporary one was used) or its tables are not the expected ones."""
    db = prefect_home / "prefect.db"
    if not db.is_file():
        return []
    try:
        with contextlib.closing(sqlite3.connect(db)) as con:
            rows = con.execute(
                "SELECT flow.name, flow_run.state_type, flow_run.start_time, flow_run.end_time "
                "FROM flow_run JOIN flow ON flow.id = flow_run.flow_id "
                "ORDER BY flow_run.start_time"
            ).fetchall()
    except sqlite3.Error:
        return []
    out = []
    for name, state, start, end in rows:
        t0, t1 = _parse_ts(start), _parse_ts(end)
        wall = (t1 - t0).total_seconds() if t0 and t1 else None
        out.append({"flow": name, "state": state, "wall_s": wall})
    return out


# --------------------------------------------------------------------------------------------
# the run


def run_pipeline(config: Path, root: Path, prefect_home: Path, log: Path, workers: int) -> dict:
    """``dars run -c config --root root`` in a subprocess with its own ``PREFECT_HOME``; its
    output goes to ``log`` and, line by line, to our stdout. Returns the exit code and wall."""
    code = "import sys; from dars.cli import app; sys.argv[0] = 'dars'; app(prog_name='dars')"
    cmd = [sys.executable, "-c", code, "run", "-c", str(config), "--root", str(root)]
    cmd += ["--workers", str(workers)]
    env = {
        **os.environ,
        "PREFECT_HOME": str(prefect_home),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep
        ),
        "COLUMNS": "160",  # rich tables at full width in a log file
    }
    env.pop("PREFECT_API_URL", None)  # the run's own temporary server, so its database is ours
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=ROOT,
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                out.write(line)
                sys.stdout.write("  | " + line)
                sys.stdout.flush()
            proc.wait()
        finally:
            if proc.poll() is None:  # interrupted: never leave the pipeline running
                proc.terminate()
                proc.wait(timeout=30)
    return {"returncode": proc.returncode, "wall_s": time.perf_counter() - t0}


# --------------------------------------------------------------------------------------------
# the tables


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return " ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), *(line(r) for r in rows)])


def format_report(result: dict[str, Any]) -> str:
    """The printed tables of a bench result (see :func:`main`)."""
    out: list[str] = []
    s = result["store"]
    header = ["model", "calls", "ok", "failed", "prompt tok", "/call", "compl tok", "/call"]
    header += ["lat mean s", "p50 s", "p95 s", "parse_ok"]
    rows = []
    for r in [*s["models"], {"model": "all", **s["overall"]}]:
        rows.append(
            [
                r["model"],
                str(r["calls"]),
                str(r["ok"]),
                str(r["failed"]),
                str(r["prompt_tokens"]),
                _fmt(r["prompt_tokens_per_call"], ".1f"),
                str(r["completion_tokens"]),
                _fmt(r["completion_tokens_per_call"], ".1f"),
                _fmt(r["latency_mean_s"], ".2f"),
                _fmt(r["latency_p50_s"], ".2f"),
                _fmt(r["latency_p95_s"], ".2f"),
                _fmt(r["parse_ok_share"], ".2f"),
            ]
        )
    out += ["decode calls (tokens and latency over ok calls)", _table(header, rows), ""]
    datasets = sorted({r["dataset"] for r in s["scores"]})
    models = list(dict.fromkeys(r["model"] for r in s["scores"]))
    by = {(r["model"], r["dataset"]): r for r in s["scores"]}
    rows = []
    for m in models:
        cells = [m]
        for d in datasets:
            r = by.get((m, d))
            cells.append("-" if r is None else f"{r['mean_score']:.2f} ({r['parse_ok_share']:.2f})")
        rows.append(cells)
    out += ["mean score per benchmark (parse_ok share)", _table(["model", *datasets], rows), ""]
    stages = result.get("stages") or []
    rows = [[st["flow"], st["state"] or "-", _fmt(st["wall_s"], ".1f")] for st in stages]
    rows.append(["dars run (subprocess)", "", _fmt(result["run"]["wall_s"], ".1f")])
    out += ["wall time per stage (Prefect flow runs)", _table(["flow", "state", "wall s"], rows)]
    srv = result.get("servers") or {}
    if srv:
        ready = ", ".join(f"{n} {v['startup_s']:.1f}s" for n, v in srv.items())
        out += ["", f"servers ready in: {ready} (llama-cpp-python {result.get('llama_cpp', '?')})"]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=LOCAL, help="default configs/local.yaml")
    parser.add_argument("--quick", action="store_true", help="one benchmark, 3+2 queries")
    parser.add_argument(
        "--server-python",
        default=None,
        help=f"the server venv's python (default ${local_server.SERVER_PYTHON_ENV})",
    )
    parser.add_argument("--workers", type=int, default=4, help="dars run --workers")
    parser.add_argument("--root", type=Path, default=None, help="keep the run here (default: tmp)")
    parser.add_argument("--out", type=Path, default=None, help="write JSON results here")
    args = parser.parse_args(argv)

    data = yaml.safe_load(args.config.read_text())
    names = served_models(data)
    if not names:
        parser.error(
            f"{args.config}: no pool model is an openai/<name> route with an api_base and a name "
            f"bench/local_server.py serves ({', '.join(local_server.MODELS)})"
        )
    try:
        python = local_server.server_python(args.server_python)
        paths = local_server.locate_models(python, names)
    except local_server.ServerUnavailable as exc:
        print(f"SKIPPED: {exc}")
        return {"skipped": str(exc)}

    result: dict[str, Any] = {
        "config": str(args.config),
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "llama_cpp": local_server.llama_cpp_version(python),
        "models": {n: str(p) for n, p in paths.items()},
    }
    with tempfile.TemporaryDirectory(prefix="bench-local-") as tmp:
        tmp_path = Path(tmp)
        root = args.root or tmp_path / "run"
        prefect_home = tmp_path / "prefect"
        prefect_home.mkdir()
        with local_server.serve(python, names, log_dir=tmp_path, model_paths=paths) as servers:
            result["servers"] = {
                n: {"startup_s": s.startup_s, "base_url": s.base_url} for n, s in servers.items()
            }
            cfg = bench_config(data, {n: s.base_url for n, s in servers.items()}, quick=args.quick)
            config = tmp_path / "local.yaml"
            config.write_text(yaml.safe_dump(cfg, sort_keys=False))
            print(f"servers up: {result['servers']}; running dars run on {config}", flush=True)
            result["run"] = run_pipeline(
                config, root, prefect_home, tmp_path / "dars-run.log", args.workers
            )
        result["stages"] = stage_times(prefect_home)
        result["store"] = store_summary(root)
        if result["run"]["returncode"] != 0:
            result["log_tail"] = (tmp_path / "dars-run.log").read_text().splitlines()[-30:]
    print()
    print(format_report(result))
    if result["run"]["returncode"] != 0:
        print(f"dars run FAILED with exit code {result['run']['returncode']}", file=sys.stderr)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str))
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    res = main()
    sys.exit(0 if res.get("skipped") or res["run"]["returncode"] == 0 else 1)
