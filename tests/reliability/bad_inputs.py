"""Bad inputs, table-driven: broken experiment configs and broken ``dars import`` files.

Each case writes one bad file (or passes one bad option) and runs one ``dars`` command on it
through typer's ``CliRunner`` (a few also as a real subprocess, ``--subprocess`` cases), next to
a store that already holds data (an import of a small valid CSV). A case holds when:

* the command exits non-zero;
* no exception escaped (no traceback: ``CliRunner`` keeps an escaped exception in
  ``result.exception``; a subprocess would print "Traceback");
* its output is ONE line naming what is wrong: every string of the case's ``expect`` appears in
  it (the file, and the field, row or line);
* the store's files (every file under the run root, by sha256) are unchanged.

``measure(workdir, quick)`` returns the figures: cases, one-line errors, non-zero exits,
tracebacks, store changes, and a control (the valid config and import file pass).
"""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.reliability.figures import Figure

TOPIC = "bad inputs"
REPO = Path(__file__).resolve().parents[2]

BASE_CONFIG: dict[str, Any] = {
    "name": "tiny",
    "seed": 0,
    "lam": 0.05,
    "beta": 0.2,
    "shard_size": 4,
    "encoder": "tfidf",
    "families": ["knn", "mirt"],
    "benchmarks": [{"name": "demo_mc", "n_train": 6, "n_test": 3, "options": {"n_items": 9}}],
    "protocol": {
        "train_rewrites": 2,
        "train_decodes": 2,
        "test_rewrites": 1,
        "test_decodes": 2,
        "max_tokens": {"demo_mc": 64},
    },
    "rewriter": {"name": "rewriter", "litellm_model": "dars-sim/rewriter"},
    "pool": {
        "models": [
            {"name": "cheap-weak", "litellm_model": "dars-sim/cheap-weak"},
            {"name": "mid", "litellm_model": "dars-sim/mid"},
        ]
    },
}

GOOD_CSV_HEADER = "query_id,model,score,question,cost_usd"
GOOD_CSV_ROWS = [
    "q1,alpha,1,What is 2+2?,0.001",
    "q1,beta,0,What is 2+2?,0.0002",
    "q2,alpha,0.5,Name a prime.,0.001",
    "q2,beta,1,Name a prime.,0.0002",
]

# The commands a config case is run with, in turn: every one validates the config first.
CONFIG_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("status",),
    ("collect", "--yes"),
    ("supervise",),
    ("train",),
    ("evaluate",),
    ("report",),
    ("rerun", "--failed"),
    ("run",),
)


@dataclass(frozen=True)
class Case:
    """One bad input: ``make(case_dir, root)`` writes its files and returns the ``dars`` argv;
    ``expect``: strings the one error line must contain (the file, the field or row)."""

    name: str
    kind: str  # "config" | "import"
    make: Callable[[Path, Path], list[str]]
    expect: tuple[str, ...]
    subprocess: bool = False


@dataclass
class Outcome:
    case: Case
    exit_code: int
    output: str
    traceback: bool
    store_changed: bool
    lines: list[str] = field(default_factory=list)

    @property
    def one_line(self) -> bool:
        return len(self.lines) == 1 and all(e in self.lines[0] for e in self.case.expect)


# --------------------------------------------------------------------------------------------
# building the cases


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.0.c`` in nested dicts/lists (``...DEL`` removes the key)."""
    parts = dotted.split(".")
    cur: Any = data
    for p in parts[:-1]:
        cur = cur[int(p)] if isinstance(cur, list) else cur[p]
    last = parts[-1]
    if isinstance(cur, list):
        cur[int(last)] = value
    elif value is ...:
        cur.pop(last, None)
    else:
        cur[last] = value


def _config_case(
    name: str,
    changes: dict[str, Any],
    expect: tuple[str, ...],
    *,
    extra_args: tuple[str, ...] = (),
    root_arg: bool = True,
    sub: bool = False,
) -> Case:
    """A config that is the base with ``changes`` ({dotted field: value}) applied."""

    def make(d: Path, root: Path) -> list[str]:
        data = copy.deepcopy(BASE_CONFIG)
        data["root"] = str(root)
        for k, v in changes.items():
            _set(data, k, v)
        path = d / "config.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return ["-c", str(path), *(["--root", str(root)] if root_arg else []), *extra_args]

    return Case(name, "config", make, ("config.yaml", *expect), sub)


def _config_text_case(
    name: str, text: Callable[[str], bytes], expect: tuple[str, ...], sub: bool = False
) -> Case:
    """A config whose text is ``text(base YAML text)`` (duplicate keys, bad bytes, …)."""

    def make(d: Path, root: Path) -> list[str]:
        data = copy.deepcopy(BASE_CONFIG)
        data["root"] = str(root)
        path = d / "config.yaml"
        path.write_bytes(text(yaml.safe_dump(data, sort_keys=False)))
        return ["-c", str(path), "--root", str(root)]

    return Case(name, "config", make, ("config.yaml", *expect), sub)


def _bench_file_case(
    name: str, content: bytes, expect: tuple[str, ...], field: str = "path"
) -> Case:
    """A config whose benchmark is a user file (``jsonl``) holding ``content``; the error
    names ``benchmarks.0.<field>``."""

    def make(d: Path, root: Path) -> list[str]:
        bench = d / "items.jsonl"
        bench.write_bytes(content)
        data = copy.deepcopy(BASE_CONFIG)
        data["root"] = str(root)
        data["benchmarks"] = [{"name": "jsonl", "path": str(bench), "n_train": 1, "n_test": 1}]
        data["protocol"]["max_tokens"] = {"jsonl": 64}
        path = d / "config.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return ["-c", str(path), "--root", str(root)]

    return Case(name, "config", make, ("config.yaml", f"benchmarks.0.{field}", *expect))


def _import_case(
    name: str,
    content: bytes | None,
    expect: tuple[str, ...],
    *,
    suffix: str = ".csv",
    args: tuple[str, ...] = ("--dataset", "d1", "--split", "train"),
    root_override: Callable[[Path, Path], str] | None = None,
    sub: bool = False,
) -> Case:
    """``dars import`` of a file holding ``content`` (None: no file at all)."""

    def make(d: Path, root: Path) -> list[str]:
        path = d / f"gen{suffix}"
        if content is not None:
            path.write_bytes(content)
        target = root_override(d, root) if root_override else str(root)
        return ["import", str(path), "--root", target, *args]

    return Case(name, "import", make, expect, sub)


def _csv(*rows: str, header: str = GOOD_CSV_HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


def _good_rows_with(row: str) -> bytes:
    return _csv(*GOOD_CSV_ROWS, row)


def _jsonl(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def _dup_top_key(text: str) -> bytes:
    return (text + "seed: 3\n").encode()


def _dup_nested_key(text: str) -> bytes:
    return text.replace(
        "  train_rewrites: 2\n", "  train_rewrites: 2\n  train_rewrites: 4\n"
    ).encode()


def _bad_utf8(text: str) -> bytes:
    return text.encode() + b"# caf\xe9 latin-1\n"


def _not_yaml(text: str) -> bytes:
    return (text + "families: [knn, mirt\n").encode()


def _file_root(d: Path, root: Path) -> str:
    f = d / "a-file"
    f.write_text("not a directory\n")
    return str(f)


def cases() -> list[Case]:
    """The table: every bad input with what its error must name."""
    bench = "benchmarks.0"
    model = "pool.models.0"
    c = _config_case
    out: list[Case] = [
        # -- experiment fields: types, ranges, names ------------------------------------------
        c("unknown top-level field", {"lamda": 0.1}, ("lamda", "unknown field", "allowed")),
        c("unknown benchmark", {f"{bench}.name": "nope"}, (f"{bench}.name", "allowed values")),
        c(
            "benchmark path missing",
            {f"{bench}.name": "jsonl", f"{bench}.path": "/no/such.jsonl", f"{bench}.options": ...},
            (f"{bench}.path", "/no/such.jsonl"),
        ),
        c(
            "user-file benchmark without path",
            {f"{bench}.name": "jsonl", f"{bench}.options": ...},
            (f"{bench}.path",),
        ),
        c(
            "benchmark path is a directory",
            {f"{bench}.name": "jsonl", f"{bench}.path": "/tmp", f"{bench}.options": ...},
            (f"{bench}.path", "directory"),
        ),
        c(
            "generated benchmark given a path",
            {f"{bench}.path": str(REPO / "pyproject.toml")},
            (f"{bench}.path", "takes no path"),
        ),
        c("n_train above the items", {f"{bench}.n_train": 50}, (f"{bench}.n_train", "has 9")),
        c("n_test above the rest", {f"{bench}.n_test": 10}, (f"{bench}.n_test", "has 9")),
        c("n_train zero", {f"{bench}.n_train": 0}, (f"{bench}.n_train",)),
        c("n_train a word", {f"{bench}.n_train": "many"}, (f"{bench}.n_train", "integer")),
        c(
            "unknown benchmark option",
            {f"{bench}.options": {"n_itemz": 9}},
            (f"{bench}.options", "n_itemz", "valid options"),
        ),
        c(
            "option of the wrong type",
            {f"{bench}.options": {"n_items": "lots"}},
            (f"{bench}.options", "n_items"),
        ),
        c(
            "negative option",
            {f"{bench}.options": {"n_items": -3}},
            (f"{bench}.options", "n_items"),
        ),
        c("options not a mapping", {f"{bench}.options": [1, 2]}, (f"{bench}.options",)),
        c(
            "gpqa config option unknown",
            {f"{bench}.name": "gpqa", f"{bench}.options": {"config": "gpqa_huge"}},
            (f"{bench}.options", "allowed"),
        ),
        c(
            "drop800 n_items zero",
            {f"{bench}.name": "drop800", f"{bench}.options": {"n_items": 0}},
            (f"{bench}.options", "n_items"),
        ),
        c(
            "benchmark listed twice",
            {"benchmarks": [BASE_CONFIG["benchmarks"][0]] * 2},
            ("listed twice",),
        ),
        c(
            "store dataset with a path",
            {f"{bench}.source": "store", f"{bench}.path": "x.jsonl"},
            (bench, "source 'store'"),
        ),
        c(
            "max_tokens negative",
            {"protocol.max_tokens": {"demo_mc": -5}},
            ("protocol.max_tokens.demo_mc", "greater than or equal to 1"),
        ),
        c(
            "max_tokens zero",
            {"protocol.max_tokens": {"demo_mc": 0}},
            ("protocol.max_tokens.demo_mc",),
        ),
        c(
            "max_tokens a word",
            {"protocol.max_tokens": {"demo_mc": "lots"}},
            ("protocol.max_tokens.demo_mc",),
        ),
        c(
            "max_tokens key misspelt",
            {"protocol.max_tokens": {"demo_mcq": 64}},
            ("protocol.max_tokens", "demo_mcq", "allowed keys"),
        ),
        c("lam infinite", {"lam": float("inf")}, ("lam", "finite")),
        c("lam NaN", {"lam": float("nan")}, ("lam", "finite")),
        c("lam a word", {"lam": "high"}, ("lam", "number")),
        c("beta negative", {"beta": -1}, ("beta", "greater than or equal to 0")),
        c("beta infinite", {"beta": float("-inf")}, ("beta",)),
        c("temperature above 2", {"protocol.temperature": 5}, ("protocol.temperature",)),
        c("top_p zero", {"protocol.top_p": 0}, ("protocol.top_p",)),
        c("train_rewrites zero", {"protocol.train_rewrites": 0}, ("protocol.train_rewrites",)),
        c("unknown protocol field", {"protocol.decodes": 3}, ("protocol.decodes", "unknown field")),
        c("request timeout zero", {"request_timeout_s": 0}, ("request_timeout_s",)),
        c("spend cap negative", {"spend_cap_usd": -1}, ("spend_cap_usd",)),
        c("spend cap infinite", {"spend_cap_usd": float("inf")}, ("spend_cap_usd", "finite")),
        c("shard size zero", {"shard_size": 0}, ("shard_size",)),
        c("seed a word", {"seed": "abc"}, ("seed", "integer")),
        c(
            "unknown router family",
            {"families": ["bogus"]},
            ("families", "bogus", "allowed values"),
        ),
        c("one family unknown", {"families": ["knn", "knnn"]}, ("families", "knnn")),
        c(
            "ablation family unknown",
            {"evaluation": {"ablation_family": "mirtt"}},
            ("evaluation.ablation_family", "allowed values"),
        ),
        c(
            "sweep family unknown",
            {"evaluation": {"sweep_families": ["knn", "nope"]}},
            ("evaluation.sweep_families", "nope"),
        ),
        c(
            "lam grid NaN",
            {"evaluation": {"lam_grid": [0.0, float("nan")]}},
            ("evaluation.lam_grid",),
        ),
        c(
            "diagnostics definition unknown",
            {"diagnostics": "nope"},
            ("diagnostics.definition", "allowed values"),
        ),
        # -- the pool and the rewriter --------------------------------------------------------
        c("model name with a slash", {f"{model}.name": "gpt/4o"}, (f"{model}.name", "must match")),
        c("duplicate model name", {"pool.models.1.name": "cheap-weak"}, ("pool", "duplicate")),
        c("empty pool", {"pool.models": []}, ("pool.models",)),
        c(
            "credential in extra_params",
            {f"{model}.extra_params": {"api_key": "x"}},
            (f"{model}.extra_params", "credential"),
        ),
        c("negative price", {f"{model}.input_price_per_m": -1}, (f"{model}.input_price_per_m",)),
        c(
            "infinite price",
            {f"{model}.output_price_per_m": float("inf")},
            (f"{model}.output_price_per_m", "finite"),
        ),
        c("max_concurrency zero", {f"{model}.max_concurrency": 0}, (f"{model}.max_concurrency",)),
        c("rewriter missing", {"rewriter": ...}, ("rewriter", "field required")),
        c(
            "model without a route",
            {f"{model}.litellm_model": ...},
            ("pool.models", "litellm_model", "cheap-weak"),
        ),
        c(
            "benchmark routed among unknown models",
            {f"{bench}.models": ["mid", "ghost"]},
            (f"{bench}.models", "ghost", "allowed values"),
        ),
        # -- the run directory ----------------------------------------------------------------
        c(
            "config root is a file",
            {"root": "/etc/hostname"},
            ("root", "/etc/hostname", "a file"),
            root_arg=False,
        ),
        c(
            "config root inside a file",
            {"root": "/etc/hostname/run"},
            ("root", "a file"),
            root_arg=False,
        ),
        Case(
            "--root is a file",
            "config",
            lambda d, root: ["-c", str(_write_base(d, root)), "--root", _file_root(d, root)],
            ("--root", "a-file", "a file"),
            subprocess=True,
        ),
        # -- the file itself ------------------------------------------------------------------
        _config_text_case(
            "duplicate top-level key", _dup_top_key, ("duplicate key 'seed'", "first at line")
        ),
        _config_text_case(
            "duplicate nested key", _dup_nested_key, ("duplicate key 'train_rewrites'", "line")
        ),
        _config_text_case("invalid UTF-8", _bad_utf8, ("not valid UTF-8", "line"), sub=True),
        _config_text_case("not YAML", _not_yaml, ("not valid YAML", "line")),
        _config_text_case(
            "top level a list", lambda t: b"- a\n- b\n", ("top level must be a mapping",)
        ),
        _config_text_case("empty file", lambda t: b"", ("empty",)),
        _config_text_case(
            "float overflow",
            lambda t: t.replace("lam: 0.05", "lam: 1e400").encode(),
            ("lam", "finite"),
        ),
        Case(
            "config file missing",
            "config",
            lambda d, root: ["-c", str(d / "missing.yaml"), "--root", str(root)],
            ("config file not found", "missing.yaml"),
        ),
        # -- a user benchmark file named by the config ----------------------------------------
        _bench_file_case(
            "benchmark file bad JSON",
            _jsonl('{"question": "a", "answer": "1"}', "{not json"),
            ("line 2", "invalid JSON"),
        ),
        _bench_file_case(
            "benchmark row without question",
            _jsonl('{"question": "a", "answer": "1"}', '{"answer": "2"}'),
            ("row 2", "question"),
        ),
        _bench_file_case(
            "benchmark file invalid UTF-8",
            _jsonl('{"question": "a", "answer": "1"}') + b'{"question": "\xff"}\n',
            ("line 2", "UTF-8"),
        ),
        _bench_file_case(
            "benchmark file too small",
            _jsonl('{"question": "a", "answer": "1"}'),
            ("has 1",),
            field="n_test",
        ),
    ]

    i = _import_case
    rows = GOOD_CSV_ROWS
    out += [
        i(
            "missing score column",
            _csv("q1,alpha,What?", header="query_id,model,question"),
            ("gen.csv", "missing required column", "score"),
        ),
        i(
            "missing query_id column",
            _csv("alpha,1", header="model,score"),
            ("gen.csv", "query_id"),
        ),
        i(
            "score above 1",
            _good_rows_with("q3,alpha,1.5,Why?,0.001"),
            ("gen.csv", "row 5", "'score'", "[0, 1]"),
        ),
        i("score negative", _good_rows_with("q3,alpha,-0.1,Why?,0.001"), ("row 5", "'score'")),
        i(
            "score a word",
            _good_rows_with("q3,alpha,good,Why?,0.001"),
            ("row 5", "'score'", "not a number"),
        ),
        i("score NaN", _good_rows_with("q3,alpha,NaN,Why?,0.001"), ("row 5", "'score'", "finite")),
        i("score infinite", _good_rows_with("q3,alpha,inf,Why?,0.001"), ("row 5", "'score'")),
        i("score empty", _good_rows_with("q3,alpha,,Why?,0.001"), ("row 5", "'score'")),
        i("model with a slash", _good_rows_with("q3,gpt/4o,1,Why?,0.001"), ("row 5", "'model'")),
        i(
            "model with a path escape",
            _good_rows_with("q3,../../etc,1,Why?,0.001"),
            ("row 5", "'model'"),
        ),
        i(
            "dataset with a path escape",
            _csv("q1,alpha,1,../x", header="query_id,model,score,dataset"),
            ("row 1", "'dataset'"),
            args=("--split", "train"),
        ),
        i("query_id empty", _good_rows_with(",alpha,1,Why?,0.001"), ("row 5", "'query_id'")),
        i(
            "misspelt column",
            _csv("q1,alpha,1,0.1", header="query_id,model,score,cost_ud"),
            ("gen.csv", "cost_ud", "importable"),
        ),
        i(
            "split not train/test",
            _csv("q1,alpha,1,validation", header="query_id,model,score,split"),
            ("row 1", "'split'"),
            args=("--dataset", "d1"),
        ),
        i(
            "rewrite_id a word",
            _csv("q1,alpha,1,x", header="query_id,model,score,rewrite_id"),
            ("row 1", "'rewrite_id'", "integer"),
        ),
        i(
            "rewrite_id below -1",
            _csv("q1,alpha,1,-4", header="query_id,model,score,rewrite_id"),
            ("row 1", "'rewrite_id'"),
        ),
        i(
            "decode_id fractional",
            _csv("q1,alpha,1,1.5", header="query_id,model,score,decode_id"),
            ("row 1", "'decode_id'"),
        ),
        i("cost negative", _good_rows_with("q3,alpha,1,Why?,-0.5"), ("row 5", "'cost_usd'")),
        i(
            "tokens negative",
            _csv("q1,alpha,1,-3,0.1", header="query_id,model,score,prompt_tokens,cost_usd"),
            ("row 1", "'prompt_tokens'"),
        ),
        i(
            "parse_ok not a boolean",
            _csv("q1,alpha,1,maybe", header="query_id,model,score,parse_ok"),
            ("row 1", "'parse_ok'", "boolean"),
        ),
        i(
            "view unknown",
            _csv("q1,alpha,1,sideways", header="query_id,model,score,view"),
            ("row 1", "'view'"),
        ),
        i(
            "duplicate key rows",
            _csv("q1,alpha,1,0", "q1,alpha,0,0", header="query_id,model,score,decode_id"),
            ("gen.csv", "rows 1, 2", "same key"),
        ),
        i("no dataset anywhere", _csv(*rows), ("gen.csv", "dataset"), args=("--split", "train")),
        i("no split anywhere", _csv(*rows), ("gen.csv", "split"), args=("--dataset", "d1")),
        i(
            "CSV invalid UTF-8",
            _csv(*rows) + b"q9,alpha,1,caf\xe9,0.1\n",
            ("gen.csv", "row 5", "UTF-8"),
        ),
        i("CSV ragged row", _csv(*rows, "q9,alpha,1,Why?,0.1,extra,more"), ("gen.csv",)),
        i("header only", _csv(), ("gen.csv", "no rows")),
        i("empty import file", b"", ("gen.csv",)),
        i(
            "JSONL bad JSON",
            _jsonl('{"query_id": "q1", "model": "a", "score": 1}', "{oops"),
            ("gen.jsonl", "row 2", "not valid JSON"),
            suffix=".jsonl",
        ),
        i(
            "JSONL line a list",
            _jsonl("[1, 2, 3]"),
            ("gen.jsonl", "row 1", "JSON object"),
            suffix=".jsonl",
        ),
        i(
            "JSONL nested value",
            _jsonl('{"query_id": "q1", "model": "a", "score": {"v": 1}}'),
            ("gen.jsonl", "row 1", "'score'", "nested"),
            suffix=".jsonl",
        ),
        i(
            "JSONL invalid UTF-8",
            _jsonl('{"query_id": "q1", "model": "a", "score": 1}')
            + b'{"query_id": "q\xff", "model": "a", "score": 1}\n',
            ("gen.jsonl", "row 2", "UTF-8"),
            suffix=".jsonl",
        ),
        i(
            "unsupported extension",
            b"query_id,model,score\n",
            ("gen.txt", "unsupported"),
            suffix=".txt",
        ),
        i("file missing", None, ("gen.csv", "not found")),
        i(
            "corrupt Parquet",
            b"PAR1\x00\x01garbage-not-a-footer",
            ("gen.parquet",),
            suffix=".parquet",
        ),
        i(
            "task_type unknown",
            _csv("q7,alpha,1,What?,oracle", header="query_id,model,score,question,task_type"),
            ("gen.csv", "row 1", "task_type", "oracle"),
            args=("--dataset", "d2", "--split", "train"),
        ),
        i(
            "--map without =",
            _csv(*rows),
            ("--map", "score"),
            args=("--dataset", "d1", "--split", "train", "--map", "score"),
        ),
        i(
            "--map of a missing column",
            _csv(*rows),
            ("gen.csv", "mapping", "nope"),
            args=("--dataset", "d1", "--split", "train", "--map", "nope=score"),
        ),
        i(
            "--rename-values malformed",
            _csv(*rows),
            ("--rename-values",),
            args=("--dataset", "d1", "--split", "train", "--rename-values", "model-alpha"),
        ),
        i(
            "--test-fraction above 1",
            _csv(*rows),
            ("test fraction",),
            args=("--dataset", "d1", "--test-fraction", "1.5"),
        ),
        i(
            "import --root is a file",
            _csv(*rows),
            ("--root", "a-file", "a file"),
            root_override=_file_root,
            sub=True,
        ),
    ]
    return out


def _write_base(d: Path, root: Path) -> Path:
    data = copy.deepcopy(BASE_CONFIG)
    data["root"] = str(root)
    path = d / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --------------------------------------------------------------------------------------------
# running them


def store_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path → hex digest)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def make_store(workdir: Path) -> Path:
    """A run root holding data: the import of a small valid CSV (observations, queries, a
    manifest). Returns the root."""
    from typer.testing import CliRunner

    from dars.cli import app

    root = workdir / "store"
    good = workdir / "good.csv"
    good.write_bytes(_csv(*GOOD_CSV_ROWS))
    res = CliRunner().invoke(
        app, ["import", str(good), "--root", str(root), "--dataset", "d1", "--split", "train"]
    )
    if res.exit_code != 0:
        raise RuntimeError(f"could not build the store: {res.output}{res.exception!r}")
    return root


def _lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.strip()]


def run_case(case: Case, index: int, workdir: Path, root: Path, *, as_subprocess: bool) -> Outcome:
    """Run one case (in process, or as ``python -c 'dars.cli.app()'``) and judge it."""
    from typer.testing import CliRunner

    from dars.cli import app

    d = workdir / f"case-{index:03d}{'-sub' if as_subprocess else ''}"
    d.mkdir(parents=True)
    argv = case.make(d, root)
    if case.kind == "config":
        argv = [*CONFIG_COMMANDS[index % len(CONFIG_COMMANDS)], *argv]
    before = store_hashes(root)
    if as_subprocess:
        env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"}
        proc = subprocess.run(
            [sys.executable, "-c", "from dars.cli import app; app()", *argv],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            cwd=d,
        )
        output = proc.stdout + proc.stderr
        code, traceback = proc.returncode, "Traceback" in output
    else:
        res = CliRunner().invoke(app, argv)
        output, code = res.output, res.exit_code
        traceback = res.exception is not None and not isinstance(res.exception, SystemExit)
        if traceback:
            output += f"\n{type(res.exception).__name__}: {res.exception}"
    return Outcome(case, code, output, traceback, store_hashes(root) != before, _lines(output))


def control(workdir: Path, root: Path) -> list[str]:
    """The valid base config loads and the valid import file imports (again: nothing new):
    what the cases break is what makes them fail. Returns problems (none expected)."""
    from typer.testing import CliRunner

    from dars.cli import app

    d = workdir / "control"
    d.mkdir()
    problems = []
    res = CliRunner().invoke(app, ["status", "-c", str(_write_base(d, root)), "--root", str(root)])
    escaped = res.exception is not None and not isinstance(res.exception, SystemExit)
    # Exit 1 is fine: status says the plan's keys are missing (nothing was collected).
    if res.exit_code not in (0, 1) or escaped:
        problems.append(f"base config: exit {res.exit_code}: {res.output[-300:]}")
    good = d / "good.csv"
    good.write_bytes(_csv(*GOOD_CSV_ROWS))
    res = CliRunner().invoke(
        app, ["import", str(good), "--root", str(root), "--dataset", "d1", "--split", "train"]
    )
    if res.exit_code != 0:
        problems.append(f"good import: exit {res.exit_code}: {res.output[-300:]}")
    return problems


def run_all(workdir: Path, quick: bool = True) -> list[Outcome]:
    """Every case in process, and the ``subprocess`` ones (not ``quick``: also every 10th case)
    as a real process too."""
    root = make_store(workdir)
    outcomes = []
    table = cases()
    for n, case in enumerate(table):
        outcomes.append(run_case(case, n, workdir, root, as_subprocess=False))
    for n, case in enumerate(table):
        # A real process costs seconds of imports: the marked cases, and every 10th in full.
        if case.subprocess or (not quick and n % 10 == 0):
            outcomes.append(run_case(case, n, workdir, root, as_subprocess=True))
    return outcomes


def figures_of(outcomes: list[Outcome], control_problems: list[str]) -> list[Figure]:
    """The topic's figures from the outcomes (see the module docstring)."""
    n = len(outcomes)
    distinct = {o.case.name: o.case.kind for o in outcomes}
    kinds = {k: sum(v == k for v in distinct.values()) for k in ("config", "import")}
    subs = n - len(distinct)

    def names(bad: list[Outcome]) -> str:
        return "; ".join(f"{o.case.name}: {(o.lines[:2] or ['<no output>'])}" for o in bad[:4]) + (
            " …" if len(bad) > 4 else ""
        )

    not_one = [o for o in outcomes if not o.one_line]
    zero_exit = [o for o in outcomes if o.exit_code == 0]
    tracebacks = [o for o in outcomes if o.traceback]
    changed = [o for o in outcomes if o.store_changed]
    return [
        Figure(
            TOPIC,
            "cases",
            f"{len(distinct)} ({kinds['config']} config, {kinds['import']} import); {n} runs, "
            f"{subs} of them as a subprocess",
            ">= 60",
            len(distinct) >= 60,
        ),
        Figure(
            TOPIC,
            "one-line errors naming file/row/field",
            f"{n - len(not_one)} of {n}",
            "all",
            not not_one,
            names(not_one),
        ),
        Figure(
            TOPIC,
            "non-zero exits",
            f"{n - len(zero_exit)} of {n}",
            "all",
            not zero_exit,
            names(zero_exit),
        ),
        Figure(TOPIC, "tracebacks", str(len(tracebacks)), "0", not tracebacks, names(tracebacks)),
        Figure(TOPIC, "store changes", str(len(changed)), "0", not changed, names(changed)),
        Figure(
            TOPIC,
            "valid inputs accepted (control)",
            f"{2 - len(control_problems)} of 2",
            "2 of 2",
            not control_problems,
            "; ".join(control_problems),
        ),
    ]


def measure(workdir: Path, quick: bool) -> list[Figure]:
    """Run every bad input against a store holding data; see the module docstring."""
    outcomes = run_all(workdir, quick)
    root = workdir / "store"
    return figures_of(outcomes, control(workdir, root))
