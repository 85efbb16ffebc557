"""Store integrity under damage: every corrupt-store case × every command that reads the store.

``measure(workdir, quick)`` collects one tiny simulated run (2 models, 84 keys) and then, for each
case of ``CASES`` (a truncated, zero-byte, wrong-schema part, a directory in place of one, bytes
flipped in a data page, an unreadable footer, …, and the strays: a backup copy, a junk file, a
stray directory) on a fresh copy of that store, runs ``dars status``, ``dars supervise``,
``dars collect`` and ``dars status --repair`` in process (typer's CliRunner) and checks:

* damaged data: exit ≠ 0, one line naming the damaged file and ``dars status --repair``, no
  traceback, the store's bytes unchanged; ``--repair`` moves the file (byte for byte) into
  ``quarantine/`` and lists the keys to collect again;
* strays: never read (``status`` lists each as a stray, the other commands warn with a count),
  exit 0, supervision identical to the clean store's, store unchanged.

Beside the table: flipped ``cost_usd`` bytes over 20 seeds (item 7: all caught, none returned),
lazy scans while a writer replaces shards (item 10: none fails), and the repair cycle
(``status --repair`` then ``collect``: 0 missing, the re-made rows equal the originals).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import random
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from tests.reliability.figures import Figure

TOPIC = "store integrity"
SHARD = ("dataset=demo_mc", "split=train", "model=cheap-math", "part-00001.parquet")
REWRITE_SHARD = ("dataset=demo_mc", "split=train", "part-00000.parquet")
COMMANDS = ("status", "supervise", "collect", "status --repair")
# Compared between a store and its repaired, re-collected copy (run_id, timestamps and latency
# legitimately differ).
SAME = ["query_id", "rewrite_id", "decode_id", "response", "score", "cost_usd", "status"]


def tiny_config(workdir: Path) -> Path:
    """A 2-model simulated experiment: 6 train + 3 test queries, 84 decode keys, shards of 4."""
    from tests.simstore import sim_experiment

    exp = sim_experiment(
        workdir / "base", n_train=6, n_items=9, train_rewrites=2, train_decodes=2, models=2
    )
    exp = exp.model_copy(update={"shard_size": 4, "encoder": "tfidf", "single_shot_draws": 5})
    path = workdir / "integrity.yaml"
    path.write_text(yaml.safe_dump(exp.model_dump(mode="json"), sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------------
# damage


def flip_bytes(path: Path, column: str, seed: int, n: int = 4) -> None:
    """XOR ``n`` random bytes in the second half of ``column``'s column chunk (its page data)."""
    rg = pq.ParquetFile(path).metadata.row_group(0)
    names = [rg.column(i).path_in_schema for i in range(rg.num_columns)]
    c = rg.column(names.index(column))
    start = c.dictionary_page_offset or c.data_page_offset
    end = start + c.total_compressed_size
    data = bytearray(path.read_bytes())
    rng = random.Random(seed)
    for _ in range(n):
        data[rng.randrange(start + (end - start) // 2, end)] ^= rng.randrange(1, 256)
    path.write_bytes(bytes(data))


def flipped_cost_store(root: Path, seed: int) -> Path:
    """One shard of 300 observations with distinct costs, then 4 bytes of its ``cost_usd`` pages
    flipped (seeded); returns the shard's path."""
    from dars.storage import RunLayout, write_observations
    from tests.storage.conftest import obs_row

    rows = [
        obs_row(f"q{i}", "a", 0, d, cost_usd=1e-4 * (i + 1) + d * 1e-6)
        for i in range(100)
        for d in range(3)
    ]
    write_observations(root, pl.DataFrame(rows), shard=0)
    path = RunLayout(root).observation_file("demo", "train", "a", 0)
    flip_bytes(path, "cost_usd", seed)
    return path


def _truncate(p: Path) -> Path:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return p


def _zero(p: Path) -> Path:
    p.write_bytes(b"")
    return p


def _wrong_schema(p: Path) -> Path:
    pq.write_table(pa.table({"query_id": ["q1"], "score": ["1.0"]}), p)
    return p


def _directory(p: Path) -> Path:
    p.unlink()
    p.mkdir()
    return p


def _flipped(p: Path) -> Path:
    flip_bytes(p, "cost_usd", seed=7)
    return p


def _footer(p: Path) -> Path:
    data = p.read_bytes()  # footer metadata and its length overwritten; magic bytes intact
    p.write_bytes(data[:-40] + b"\xff" * 36 + data[-4:])
    return p


def _not_parquet(p: Path) -> Path:
    p.write_text("query_id,score\nq1,1.0\n")
    return p


def _backup_copy(p: Path) -> Path:
    return Path(shutil.copy(p, p.parent / "backup.parquet"))


def _junk(p: Path) -> Path:
    junk = p.parent / "junk.parquet"
    junk.write_bytes(random.Random(0).randbytes(512))
    return junk


def _stray_dir(p: Path) -> Path:
    old = p.parent.parent / "old"
    old.mkdir()
    shutil.copy(p, old / p.name)
    return old


@dataclass(frozen=True)
class Case:
    """One way a store gets damaged: ``damage(shard_path) -> the path a user must be told``."""

    name: str
    damage: Callable[[Path], Path]
    stray: bool = False
    store: str = "observations"


CASES = (
    Case("truncated part", _truncate),
    Case("zero-byte part", _zero),
    Case("wrong-schema part", _wrong_schema),
    Case("directory in place of a part", _directory),
    Case("flipped bytes in a data page", _flipped),
    Case("unreadable footer", _footer),
    Case("text at a part's name", _not_parquet),
    Case("truncated rewrite part", _truncate, store="rewrites"),
    Case("stray copy (backup.parquet)", _backup_copy, stray=True),
    Case("junk.parquet", _junk, stray=True),
    Case("stray directory", _stray_dir, stray=True),
)


def store_hash(root: Path) -> str:
    """sha256 over every entry of the stores and quarantine/ (relative path, kind, bytes);
    hidden entries (the writers' lock files) are not data and are left out."""
    h = hashlib.sha256()
    for sub in ("observations", "rewrites", "quarantine"):
        base = root / sub
        if not base.exists():
            continue
        for p in sorted(base.rglob("*")):
            rel = p.relative_to(root)
            if any(part.startswith(".") for part in rel.parts):
                continue
            h.update(str(rel).encode() + (b"/" if p.is_dir() else b""))
            if p.is_file():
                h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------
# running the CLI in process


def _detach_prefect_console() -> None:
    """Drop Prefect's console handlers: they keep the stream of the CliRunner invocation that
    set them up, which is closed once it returns (an in-process artefact; a real ``dars``
    process has one stream)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger()] + [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for lg in loggers:
        for h in list(lg.handlers):
            if isinstance(h, PrefectConsoleHandler):
                lg.removeHandler(h)


def _prefect_server() -> contextlib.AbstractContextManager[object]:
    """A temporary Prefect server for the flows, unless one is configured already (e.g. the
    session harness of tests/flows when the whole suite runs): one server start is seconds."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    if PREFECT_API_URL.value():
        return contextlib.nullcontext()
    return prefect_test_harness(server_startup_timeout=120)


@dataclass(frozen=True)
class Outcome:
    exit_code: int
    output: str
    traceback: bool


def run_cli(args: list[str]) -> Outcome:
    from typer.testing import CliRunner

    from dars.cli import app

    result = CliRunner().invoke(app, args)
    _detach_prefect_console()
    exc = result.exception
    tb = (exc is not None and not isinstance(exc, SystemExit)) or "Traceback" in result.output
    return Outcome(result.exit_code, result.output, tb)


def _names_in_one_line(output: str, path: Path, *needles: str) -> bool:
    return any(
        str(path) in line and all(n in line for n in needles) for line in output.splitlines()
    )


def _supervision(root: Path) -> pl.DataFrame:
    return pl.read_parquet(root / "supervision" / "dataset=demo_mc" / "dars.parquet")


def _rows(root: Path) -> pl.DataFrame:
    from dars.storage import read_observations

    return read_observations(root).sort(["model", *SAME[:3]])


# ------------------------------------------------------------------------------------------------
# the figures


def _one(workdir: Path, cfg: Path, base: Path, case: Case, command: str, clean_sup) -> Figure:
    root = workdir / f"{case.name.replace(' ', '_')}-{command.replace(' ', '_')}"
    shutil.copytree(base, root)
    store = root / case.store
    target = store.joinpath(*(SHARD if case.store == "observations" else REWRITE_SHARD))
    named = case.damage(target)
    damaged_bytes = named.read_bytes() if named.is_file() else None
    before = store_hash(root)
    out = run_cli([*command.split(), "-c", str(cfg), "--root", str(root)])
    after = store_hash(root)
    notes = []
    if case.stray:
        if command.startswith("status"):
            seen = _names_in_one_line(out.output, named, "stray", "never read")
        else:
            seen = "stray file(s) under the store are not read" in out.output
        ok = out.exit_code == 0 and seen and not out.traceback and before == after
        if command == "supervise":
            same = _supervision(root).equals(clean_sup)
            ok &= same
            notes.append("supervision = clean store's" if same else "SUPERVISION DIFFERS")
        value = f"exit {out.exit_code}; " + ("stray reported" if seen else "stray NOT reported")
        target_txt = "exit 0; stray reported, never read; store unchanged"
    elif command == "status --repair":
        moved = root / "quarantine" / named.relative_to(root)
        # Moved, not rewritten: the quarantined file holds the damaged bytes, unchanged.
        kept = moved.is_dir() if damaged_bytes is None else moved.read_bytes() == damaged_bytes
        kept = kept and not named.exists()
        listed = "key(s) to collect again" in out.output and "dars collect --config" in out.output
        ok = out.exit_code == 1 and kept and listed and not out.traceback
        value = (
            f"exit {out.exit_code}; "
            + ("moved as is to quarantine/" if kept else "NOT moved")
            + ("; keys + command listed" if listed else "; keys NOT listed")
        )
        target_txt = "exit 1; file moved (not deleted) to quarantine/; keys to rerun listed"
    else:
        seen = _names_in_one_line(out.output, named, "dars status --repair")
        ok = out.exit_code != 0 and seen and not out.traceback and before == after
        value = f"exit {out.exit_code}; " + ("1 line names file" if seen else "file NOT named")
        target_txt = "exit ≠ 0; 1 line names file + fix; store unchanged"
    value += "; traceback" if out.traceback else "; no traceback"
    if command != "status --repair" or case.stray:
        value += "; store unchanged" if before == after else "; STORE CHANGED"
    if not ok:
        notes.append(out.output.strip().splitlines()[-1][:200] if out.output.strip() else "")
    shutil.rmtree(root)
    return Figure(f"corrupt store: {case.name}", command, value, target_txt, ok, "; ".join(notes))


def _flipped_cost_figure(workdir: Path, trials: int) -> Figure:
    """Item 7: 4 random bytes in ``cost_usd`` pages, ``trials`` seeds: caught or returned?"""
    from dars.storage import read_observations
    from dars.storage.files import DamagedFileError

    caught = silent = 0
    for seed in range(trials):
        root = workdir / f"flip-{seed}"
        path = flipped_cost_store(root, seed)
        try:
            read_observations(root, ["cost_usd"])
            silent += 1
        except DamagedFileError as exc:
            caught += str(path) in str(exc)
        shutil.rmtree(root)
    return Figure(
        TOPIC,
        "flipped cost_usd bytes caught (file named)",
        f"{caught} of {trials}",
        f"{trials} of {trials}",
        caught == trials and silent == 0,
        f"{silent} returned changed values; before page checksums 10 of 20 did, silently",
    )


def _concurrent_scan_figure(workdir: Path, versions: int) -> Figure:
    """Item 10: the budget estimate's lazy scans while a writer replaces every shard."""
    from dars.storage import scan_observations, scan_rewrites, write_observations, write_rewrites
    from tests.storage.conftest import obs_row, rewrite_row

    root = workdir / "concurrent"

    def version(d: int) -> None:
        for s in range(4):
            rows = [obs_row(f"q{s}-{i}", "a", 0, d) for i in range(10)]
            write_observations(root, pl.DataFrame(rows), shard=s)
        write_rewrites(root, [rewrite_row(f"q{d}", r) for r in range(2)], shard=d % 3)

    version(0)
    stop = threading.Event()
    written = []

    def writer() -> None:
        d = 0
        while not stop.is_set() and d < 10 * versions:
            d += 1
            version(d)
            written.append(d)

    th = threading.Thread(target=writer)
    th.start()
    scans = failures = 0
    try:
        while len(written) < versions and th.is_alive():
            scans += 1
            try:
                scan_observations(root).filter(pl.col("status") == "ok").select(
                    "dataset", "split", "query_id", "model", "rewrite_id", "decode_id"
                ).collect()
                scan_rewrites(root).select("query_id", "rewrite_id").collect()
            except Exception:  # noqa: BLE001 - counting every kind of failure is the point
                failures += 1
    finally:
        stop.set()
        th.join()
    shutil.rmtree(root)
    return Figure(
        TOPIC,
        "lazy scans failing while shards are replaced",
        f"{failures} of {scans}",
        "0",
        failures == 0 and scans > 0,
        f"{len(written)} store versions written meanwhile; before: 4 of 300 failed",
    )


def _repair_cycle_figure(workdir: Path, cfg: Path, base: Path) -> Figure:
    """Truncate a shard, ``status --repair``, ``collect``: the store is whole again and the
    re-made rows equal the ones that were lost (the simulated pool is deterministic)."""
    root = workdir / "repair-cycle"
    shutil.copytree(base, root)
    _truncate(root / "observations" / Path(*SHARD))
    args = ["-c", str(cfg), "--root", str(root)]
    repair = run_cli(["status", "--repair", *args])
    collect = run_cli(["collect", *args])
    status = run_cli(["status", *args])
    same = _rows(root).select("model", *SAME).equals(_rows(base).select("model", *SAME))
    ok = (
        repair.exit_code == 1
        and "8 key(s) to collect again" in repair.output
        and "collected 8 calls" in collect.output
        and status.exit_code == 0
        and "0 missing" in status.output
        and same
    )
    shutil.rmtree(root)
    return Figure(
        TOPIC,
        "repair then collect: keys re-made, store equal",
        "8 of 8; rows equal" if ok else "NO",
        "8 of 8; rows equal",
        ok,
        "status --repair lists the 8 keys of the quarantined shard; collect makes only those",
    )


def measure(workdir: Path, quick: bool) -> list[Figure]:
    """Every figure of the integrity topic (see the module docstring); ``quick`` runs fewer
    checksum seeds and store versions, the same case × command table."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = tiny_config(workdir)
    base = workdir / "base"
    figures = [
        _flipped_cost_figure(workdir, 20),
        _concurrent_scan_figure(workdir, 10 if quick else 40),
    ]
    with _prefect_server():
        first = run_cli(["collect", "-c", str(cfg), "--workers", "2"])
        if first.exit_code != 0:
            raise RuntimeError(f"the base store could not be collected:\n{first.output}")
        clean = workdir / "clean"
        shutil.copytree(base, clean)
        sup = run_cli(["supervise", "-c", str(cfg), "--root", str(clean)])
        if sup.exit_code != 0:
            raise RuntimeError(f"the clean store could not be supervised:\n{sup.output}")
        clean_sup = _supervision(clean)
        for case in CASES:
            for command in COMMANDS:
                figures.append(_one(workdir, cfg, base, case, command, clean_sup))
        figures.append(_repair_cycle_figure(workdir, cfg, base))
    return figures
