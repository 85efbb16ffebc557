"""``dars`` command line (typer + rich).

Every command that touches a run takes ``--config`` (an experiment YAML) and ``--root`` (where the
store and every output of the run live; default: the config's ``root``, ``runs/demo`` for the demo
config). Every stage shows its progress: on a terminal, bars for the rewriter and decode calls
and one updating line per later stage; elsewhere, plain lines (see ``_StageDisplay``). Prefect's
own log lines are reduced to warnings on the terminal unless ``--verbose``; the Prefect server
still receives every INFO line (the UI keeps the full record).
"""

from __future__ import annotations

import math
import os
import re
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.main
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from dars.env import apply_offline_defaults
from dars.storage.layout import RunLayout

# Before anything imports litellm, Prefect or Hugging Face (they read these at import).
apply_offline_defaults()


class _ExperimentGroup(TyperGroup):
    """``dars experiment``: one command per registered experiment, taken from the experiment
    registry when the group is used — so the other commands never import the experiment modules,
    and an experiment added by a plug-in (entry point ``dars.experiments``) or registered at run
    time has its command without any change here."""

    def _sync(self) -> None:
        from dars.evaluation.experiments.base import experiments

        for spec in experiments():
            if spec.name not in self.commands:
                sub = typer.Typer(add_completion=False)
                sub.command(spec.name, help=spec.help)(_experiment_command(spec.name))
                self.commands[spec.name] = typer.main.get_command(sub)

    def list_commands(self, ctx: typer.Context) -> list[str]:
        self._sync()
        return super().list_commands(ctx)

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        self._sync()
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> Any:
        """An unknown experiment is one line naming the registered ones (exit 2)."""
        from dars.evaluation.experiments.base import check_experiments

        if args and not args[0].startswith("-") and self.get_command(ctx, args[0]) is None:
            try:
                check_experiments([args[0]])
            except ValueError as exc:
                raise Problem(str(exc), 2) from None
        return super().resolve_command(ctx, args)


#: Prefect's error when its temporary server does not answer in time (raised by
#: ``prefect.server.api.server.SubprocessASGIServer.start``, from the first flow call).
SERVER_TIMEOUT = "Timed out while attempting to connect to ephemeral Prefect API server"


def server_timeout_message(exc: BaseException) -> str | None:
    """One line for Prefect's temporary server not starting in time, saying what to set; None
    for any other error. Prefect's own message ends with the server's whole stdout/stderr."""
    text = str(exc)
    if not isinstance(exc, RuntimeError) or SERVER_TIMEOUT not in text:
        return None
    waited = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "20")
    code = re.search(r"exited with code (-?\d+)", text)
    why = f"its process exited with code {code.group(1)}" if code else f"no answer in {waited} s"
    return (
        f"Prefect's temporary server did not start ({why}); nothing was run. Wait longer with "
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=<seconds> (a busy machine can need "
        "minutes), or start a server once (`prefect server start`) and set "
        "PREFECT_API_URL=http://127.0.0.1:4200/api"
    )


#: Set by ``--verbose`` (:func:`_quiet_prefect`): errors then keep their traceback.
_VERBOSE = False


class Problem(Exception):
    """A mistake the user can fix (a bad name, a missing input, a missing key), found before
    Prefect starts: the error boundary prints its message as one line and exits ``code``
    (2: usage or config, 1: the run's inputs)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _one_line(exc: BaseException) -> str:
    """``exc``'s message on one line: its first line, and how many more -v shows."""
    lines = [ln for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
    more = f" (+{len(lines) - 1} more lines with -v)" if len(lines) > 1 else ""
    return lines[0].strip() + more


class _DarsGroup(TyperGroup):
    """The ``dars`` group, the CLI's one error boundary: an error a command meets is one line
    ``error: …`` and a non-zero exit, not a traceback (``-v`` keeps the traceback). Prefect's
    temporary server not starting in time says what to set (exit 3); a :class:`Problem` exits
    with its code (2 usage/config, 1 inputs); a mistyped sub-command or option is exit 2; any
    other error is exit 1."""

    def invoke(self, ctx: typer.Context) -> Any:
        from typer.exceptions import TyperException

        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - the boundary: one line unless -v
            message = server_timeout_message(exc)
            if message is not None:
                _error(message, "prefect server")
                raise typer.Exit(3) from None
            if _is_usage_error(exc):
                # A mistyped sub-command or option (Typer vendors Click: duck-typed).
                path = exc.ctx.command_path.split()[1:] if exc.ctx is not None else []
                where = " ".join(["dars", *path])
                _error(f"{exc.format_message()} (see `{where} --help`)", "error")
                raise typer.Exit(2) from None
            if _VERBOSE or isinstance(exc, TyperException):
                raise
            _error(_one_line(exc), "error")
            raise typer.Exit(exc.code if isinstance(exc, Problem) else 1) from None


def _is_usage_error(exc: BaseException) -> bool:
    return any(c.__name__ == "UsageError" for c in type(exc).__mro__) and hasattr(exc, "ctx")


app = typer.Typer(
    cls=_DarsGroup,
    add_completion=False,
    no_args_is_help=True,
    help="Distribution-aware routing supervision: collect, supervise, train, evaluate, report.",
)
bench_app = typer.Typer(no_args_is_help=True, help="Inspect and prepare benchmarks.")
app.add_typer(bench_app, name="benchmarks")
experiment_app = typer.Typer(
    cls=_ExperimentGroup,
    no_args_is_help=True,
    help="Run one evaluation experiment; its tables go to results/<table>.{parquet,json}.",
)
app.add_typer(experiment_app, name="experiment")
console = Console()

ConfigOpt = Annotated[
    Path, typer.Option("--config", "-c", help="Experiment YAML.", exists=False, dir_okay=False)
]
#: The config the commands use when none is given.
DEFAULT_CONFIG = Path("configs/demo.yaml")
RootOpt = Annotated[
    str | None, typer.Option("--root", help="Run directory (default: the config's `root`).")
]
WorkersOpt = Annotated[int, typer.Option("--workers", help="Shard tasks running at once.")]


def FilterOpt(name: str, allowed: str) -> Any:  # noqa: N802 - used like the *Opt aliases
    """A repeatable ``--NAME`` option whose values may also be comma lists."""
    return Annotated[
        list[str] | None,
        typer.Option(
            f"--{name}",
            metavar="<names>",
            help=f"Only these {allowed} of the config (repeatable or a,b).",
        ),
    ]


RunnerOpt = Annotated[
    str,
    typer.Option(
        "--runner",
        metavar="thread|process|dask",
        help="Where shard tasks run: thread (a thread pool, default), process (a process pool "
        "on this machine) or dask (a Dask LocalCluster of --workers processes, or the cluster "
        "at --dask-address).",
    ),
]
DaskAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--dask-address",
        metavar="tcp://HOST:PORT",
        help="Scheduler of an existing Dask cluster, with --runner dask (workers on other "
        "machines need the run root at the same path on a shared filesystem).",
    ),
]
ProcOpt = Annotated[
    bool | None,
    typer.Option(
        "--processes/--threads",
        help="Deprecated: same as --runner process / --runner thread.",
        show_default=False,
    ),
]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's log lines.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before spending.")]
DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run",
        help="Print the calls still to make and their cost bound, then stop (no call, no Prefect).",
    ),
]


def _quiet_prefect(verbose: bool) -> None:
    """The terminal log level of every command that runs a flow, set first thing (before
    anything imports Prefect).

    Without ``verbose`` only the console handler drops below WARNING: the API handler still
    ships every INFO line to the server, so the Prefect UI has the run's full log. (Lowering
    ``PREFECT_LOGGING_LEVEL`` instead, as dars once did, filters at the loggers and the UI then
    showed 0 lines for a successful run.) Set before Prefect configures logging, which reads
    ``PREFECT_LOGGING_<path in logging.yml>`` overrides from the environment."""
    global _VERBOSE
    _VERBOSE = verbose
    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")


def _prefect_server() -> None:
    """Prefect's server, just before a command's first flow call (after its options, config
    and store were checked): a running server the user named (``PREFECT_API_URL``) is used as
    it is, and said so in one line; else the temporary server Prefect starts at that call dies
    with this process (a killed CLI leaves no orphan server, issue 12)."""
    from dars.procs import own_prefect_server

    url = own_prefect_server()
    if url is not None:
        console.print(f"using the Prefect server at {url}", soft_wrap=True)


def _runner(runner: str, dask_address: str | None, processes: bool | None) -> str:
    """The runner of ``--runner`` (see ``dars.flows.runners``), with the deprecated
    ``--processes/--threads`` spelling folded in; a bad combination is one line, exit 2."""
    from dars.flows.runners import RUNNERS, dask_address_problem

    problem = None
    if processes is not None:
        alias = "process" if processes else "thread"
        flag = "--processes" if processes else "--threads"
        if runner not in ("thread", alias):
            problem = (
                f"{flag} (deprecated) means --runner {alias}; it conflicts with --runner {runner}"
            )
        runner = alias
    if problem is None and runner not in RUNNERS:
        problem = f"--runner {runner!r} is not one of: {', '.join(RUNNERS)}"
    elif problem is None and dask_address is not None and runner != "dask":
        problem = f"--dask-address needs --runner dask (got --runner {runner})"
    elif problem is None and dask_address is not None:
        reason = dask_address_problem(dask_address)
        problem = None if reason is None else f"--dask-address {reason}"
    if problem is not None:
        _error(problem, "bad option")
        raise typer.Exit(2)
    return runner


def _load(config: Path, root: str | None) -> Any:
    from dars.config import ConfigError, load_experiment

    try:
        return load_experiment(config, root=root)
    except ConfigError as exc:
        _error(str(exc), "config error")
        raise typer.Exit(2) from None


def _frame_table(df: Any, title: str | None = None, floats: str = "{:.4f}") -> Table:
    table = Table(title=title, show_lines=False)
    for col in df.columns:
        table.add_column(col, justify="right" if df[col].dtype.is_numeric() else "left")
    for row in df.iter_rows():
        table.add_row(
            *[
                "" if v is None else floats.format(v) if isinstance(v, float) else str(v)
                for v in row
            ]
        )
    return table


def _error(message: str, title: str | None = None) -> None:
    """Print an error as one line per message line, ``title: message`` with the title in red,
    never wrapped (a path in it stays copyable) and never through Rich markup, which would eat
    bracketed names such as ``gpt-4o[json-schema]``."""
    if title:
        console.print(Text.assemble((f"{title}: ", "red"), message), soft_wrap=True)
    else:
        console.print(Text(message, style="red"), soft_wrap=True)


def _check(problem: str | None, code: int = 1) -> None:
    """Stop before Prefect starts when a pre-flight check found a ``problem`` (one line)."""
    if problem is not None:
        raise Problem(problem, code)


def _check_names(check: Any, *args: Any, **kw: Any) -> Any:
    """``check(*args, **kw)`` (a registry or name check); an unknown name is a usage error,
    exit 2."""
    try:
        return check(*args, **kw)
    except ValueError as exc:
        raise Problem(str(exc), 2) from None


def _or_exit(
    fn: Any, *args: Any, errors: tuple[type[Exception], ...] = (FileNotFoundError,), **kw: Any
) -> Any:
    """Run a stage's flow; an expected failure (missing inputs, bad names) is one red line,
    exit 1."""
    _prefect_server()
    try:
        with _StageDisplay():
            return fn(*args, **kw)
    except errors as exc:
        if server_timeout_message(exc) is not None:
            raise  # the group prints it (one line, what to set)
        _error(str(exc))
        raise typer.Exit(1) from None


# ------------------------------------------------------------------------------------------------
# benchmarks


@bench_app.command("list")
def bench_list() -> None:
    """List the registered benchmarks."""
    from dars.benchmarks import available, get

    table = Table("name", "task type")
    for name in available():
        table.add_row(name, get(name).task_type)
    console.print(table)


@bench_app.command("show")
def bench_show(
    name: str,
    n: Annotated[int, typer.Option(help="Items to show.")] = 2,
    path: Annotated[str | None, typer.Option(help="Local file to load from.")] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="Experiment YAML whose entry for this benchmark gives its options and path "
            "(default: configs/demo.yaml when it exists).",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Show items, their decode and rewrite prompts, and how sample answers are scored."""
    from dars.benchmarks import get

    options: dict[str, Any] = {}
    if config is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    if config is not None:
        spec = next((b for b in _load(config, None).benchmarks if b.name == name), None)
        if spec is not None:
            options, path = dict(spec.options), path or spec.path
    bench = _check_names(get, name, **options)
    items = bench.load(path)
    where = f", options {options} from {config}" if options else ""
    console.print(f"[bold]{name}[/bold]: {len(items)} items ({bench.task_type}{where})")
    for item in items[:n]:
        console.rule(item.query_id)
        for msg in bench.decode_messages(item):
            console.print(f"[cyan]{msg['role']}[/cyan]: {msg['content']}")
        console.print(
            f"[cyan]rewrite prompt[/cyan]: {bench.rewrite_messages(item, 3)[-1]['content']}"
        )
        gold = item.gold if isinstance(item.gold, str) else item.gold[0]
        for answer in (f"Reasoning…\nFinal Answer: {gold}", "Final Answer: 12345", "I am unsure."):
            sc = bench.score(answer, item)
            console.print(
                f"  score({answer.splitlines()[-1]!r}) = {sc.value:.2f}"
                f" parsed={sc.parsed!r} parse_ok={sc.parse_ok}"
            )


@bench_app.command("prepare")
def bench_prepare(
    name: str,
    path: Annotated[str | None, typer.Option(help="Local file to fill the cache from.")] = None,
) -> None:
    """Fill a hub benchmark's local cache (from --path, or the hub when online)."""
    from dars.benchmarks import get

    bench = _check_names(get, name)
    if not hasattr(bench, "prepare_cache"):
        console.print(f"{name} needs no cache (it is generated or read from your file)")
        return
    out = bench.prepare_cache(path)
    console.print(f"cached {name} at {out}")


# ------------------------------------------------------------------------------------------------
# collection


def elapsed_text(seconds: float) -> str:
    """``4 s``, ``1 min 53 s``, ``2 h 5 min``: a stage's wall time for its progress line."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s} s"
    h, m = divmod(m, 60)
    return f"{h} h {m} min"


def stage_counts(event: Any) -> str:
    """What a stage event (:class:`dars.progress.StageEvent`) has counted, e.g.
    ``147/147 routers`` or ``3/7 experiments, 1 failed``; a one-unit stage named as its unit
    (the report) is ``done`` once finished."""
    if event.total == 0:
        return "nothing to do"
    if event.total == 1 and event.unit == event.stage:
        text = "done" if event.finished else "running"
    else:
        text = f"{event.done}/{event.total} {event.unit}"
    return text + (f", {event.failed} failed" if event.failed else "")


#: Without a terminal, a stage still running prints its count at most this often.
PLAIN_EVERY_S = 15.0


class _StageDisplay:
    """The progress of a command's stages on the console, fed by the stage events of this
    process (:mod:`dars.progress`). On a terminal: a rich bar per stage that updates in place and
    stays as the stage's line (``train ━━━ 147/147 routers 0:01:53``); with ``collect``, two bars
    for the rewriter and decode calls, fed by the process-wide call counters (thread runner) or
    by polling the store (process and Dask runners, whose counters live in other processes: there
    the rewrite bar counts shards). Without a terminal (a pipe, a log file, CI): plain lines, one
    per stage when it finishes (``train: 147/147 routers (1 min 53 s)``) and one at most every
    :data:`PLAIN_EVERY_S` seconds while it runs; no bars."""

    def __init__(
        self,
        exp: Any = None,
        runner: str = "thread",
        only: dict[str, list[str]] | None = None,
        *,
        collect: bool = False,
    ) -> None:
        self.exp, self.polled = exp, runner != "thread"
        self.live = console.is_terminal
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started: dict[str, float] = {}
        self._printed: dict[str, float] = {}
        self._stage_task: dict[str, Any] = {}
        self._thread: threading.Thread | None = None
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
            console=console,
            # No stdout/stderr proxies: Prefect's log handlers write to those streams from
            # worker threads, and a proxy that re-enters the console can recurse.
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self.bars: dict[str, Any] = {}
        self._bar_started: set[str] = set()
        self.totals: dict[str, int] = {}
        if collect and self.live:
            self._add_call_bars(exp, only)

    # -- collection: call bars -----------------------------------------------------------------

    def _add_call_bars(self, exp: Any, only: dict[str, list[str]] | None) -> None:
        import polars as pl

        from dars.tasks.collect import estimate_budget

        est = estimate_budget(exp, only=only)
        rewriter = None if exp.rewriter is None else exp.rewriter.name
        is_rw = pl.col("model") == rewriter if rewriter else pl.lit(False)
        self.totals["rewrite"] = int(est.filter(is_rw)["calls"].sum())
        self.totals["decode"] = int(est.filter(~is_rw)["calls"].sum())
        for stage in ("rewrite", "decode") if rewriter else ("decode",):
            total = self.totals[stage]
            # Its clock starts with its stage (the decode bar does not count the rewrites' time).
            self.bars[stage] = self.progress.add_task(
                f"{stage} calls", total=total or 1, completed=0 if total else 1, start=False,
                counts=self._call_counts(0, total, 0, 0.0),
            )  # fmt: skip
        self._since = datetime.now(UTC)
        self._base = self._store_counts() if self.polled else (0, 0, 0.0)

    @staticmethod
    def _call_counts(done: int, total: int, failed: int, cost: float) -> str:
        return f"{done}/{total}  failed {failed}  cost ${cost:.4f}"

    def _store_counts(self) -> tuple[int, int, float]:
        """(ok rows, keys that failed since the bar started and have no ok row, cost of the ok
        rows): a key failed by one attempt and stored ok by a retry is not a failure."""
        import polars as pl

        from dars.plan import KEY
        from dars.storage import read_observations

        df = read_observations(self.exp.root, [*KEY, "status", "cost_usd", "created_at"])
        ok = df.filter(pl.col("status") == "ok")
        failed = (
            df.filter((pl.col("status") == "error") & (pl.col("created_at") >= self._since))
            .select(KEY)
            .unique()
            .join(ok.select(KEY), on=list(KEY), how="anti")
        )
        return ok.height, failed.height, float(ok["cost_usd"].sum())

    def _poll(self) -> None:
        from dars.tasks.collect import progress

        while not self._stop.wait(0.5):
            for stage, task in self.bars.items():
                if self.polled and stage == "rewrite":
                    continue  # shards, from the stage events
                if self.polled:
                    ok, failed, cost = self._store_counts()
                    ok, cost = ok - self._base[0], cost - self._base[2]
                else:
                    p = progress(stage)
                    ok, failed, cost = p.ok, p.failed, p.cost_usd
                total = self.totals[stage]
                self.progress.update(
                    task, completed=ok if total else 1,
                    counts=self._call_counts(ok, total, failed, cost),
                )  # fmt: skip

    # -- stage events ----------------------------------------------------------------------------

    def on_event(self, event: Any) -> None:
        """Show one stage event (called from the flow's threads)."""
        with self._lock:
            now = time.monotonic()
            if event.done == 0 or event.stage not in self._started:
                self._started[event.stage] = now
            elapsed = now - self._started[event.stage]
            if self.live:
                self._show_live(event)
                return
            last = self._printed.get(event.stage)
            if event.finished or event.done and (last is None or now - last >= PLAIN_EVERY_S):
                self._printed[event.stage] = now
                console.print(
                    f"{event.stage}: {stage_counts(event)} ({elapsed_text(elapsed)})",
                    soft_wrap=True, highlight=False,
                )  # fmt: skip
            if event.finished:
                self._printed.pop(event.stage, None)

    def _show_live(self, event: Any) -> None:
        if event.stage in self.bars:
            if event.stage not in self._bar_started:
                self._bar_started.add(event.stage)
                self.progress.start_task(self.bars[event.stage])
            if self.polled and event.stage == "rewrite":  # shard granularity
                self.progress.update(
                    self.bars["rewrite"], total=max(event.total, 1),
                    completed=event.done if event.total else 1,
                    counts=f"{stage_counts(event)} (shards of calls)",
                )  # fmt: skip
            return  # the call bar shows this stage
        if event.done == 0 or event.stage not in self._stage_task:
            # A new run of the stage: a fresh line (its clock starts now).
            self._stage_task[event.stage] = self.progress.add_task(
                event.stage, total=max(event.total, 1), counts=stage_counts(event)
            )
        self.progress.update(
            self._stage_task[event.stage],
            completed=event.done if event.total else 1,
            counts=stage_counts(event),
        )

    def __enter__(self) -> _StageDisplay:
        from dars.progress import subscribe

        self._unsubscribe = subscribe(self.on_event)
        if self.live:
            self.progress.start()
            if self.bars:
                self._thread = threading.Thread(target=self._poll, daemon=True)
                self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._unsubscribe()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.live:
            self.progress.stop()


def _print_budget(exp: Any, root: str, only: dict[str, list[str]] | None = None) -> float:
    import polars as pl

    from dars.tasks.collect import estimate_budget

    est = estimate_budget(exp, only=only)
    if est["calls"].sum() == 0:
        console.print("nothing to collect: every planned call is stored")
        return 0.0
    per_model = est.group_by("model", maintain_order=True).agg(
        pl.col("calls").sum(),
        pl.col("prompt_tokens").sum().cast(pl.Int64),
        pl.col("typical_cost_usd", "max_cost_usd").sum(),
    )
    console.print(_frame_table(per_model, "calls still to make and their cost (USD)"))
    upper = float(est["max_cost_usd"].sum())
    typical = float(est["typical_cost_usd"].sum())
    console.print(
        f"total: {int(est['calls'].sum())} calls, typical ${typical:.2f}, at most ${upper:.2f}"
        + (f"; spend cap ${exp.spend_cap_usd:.2f}" if exp.spend_cap_usd is not None else "")
    )
    return upper


def _interactive() -> bool:
    return sys.stdin.isatty()


def _confirm_spend(exp: Any, upper: float, yes: bool) -> None:
    """Ask before a real pool may spend ``upper`` USD when a terminal is attached; without
    one (a scheduled or piped run cannot answer) refuse unless --yes. The simulated pool
    costs nothing: no question."""
    if upper <= 0 or exp.pool.simulated or yes:
        return
    if not _interactive():
        raise Problem(
            f"this run may spend up to ${upper:.2f} and no terminal is attached to confirm; "
            "pass --yes to spend without asking (or --dry-run to see the plan)",
            2,
        )
    typer.confirm(f"spend up to ${upper:.2f}?", abort=True)


def _missing_keys(exp: Any, only: dict[str, list[str]] | None = None) -> list[str]:
    """The unset key variables of the pool when calls are still to make (none otherwise)."""
    from dars.tasks.collect import estimate_budget
    from dars.tasks.preflight import missing_keys

    missing = missing_keys(exp)
    if not missing or not int(estimate_budget(exp, only=only)["calls"].sum()):
        return []
    return missing


def _preflight(
    exp: Any, yes: bool, dry_run: bool, only: dict[str, list[str]] | None = None
) -> None:
    """Before Prefect starts, for the calls still to make: every missing API key at once
    (environment variables; a Prefect Secret block is read by its model's first call), the
    plan and its cost bound, then ``--dry-run`` stops (exit 0, no call) or the spend is
    confirmed (:func:`_confirm_spend`)."""
    missing = _missing_keys(exp, only)
    if missing and not dry_run:
        raise Problem(
            f"missing API key(s): set {', '.join(missing)} (environment variables named by "
            "the pool's `api_key_env`); nothing was called",
            2,
        )
    upper = _print_budget(exp, exp.root, only)
    if dry_run:
        if missing:
            _error(f"missing API key(s): {', '.join(missing)}", "warning")
        console.print("dry run: no call was made")
        raise typer.Exit(0)
    _confirm_spend(exp, upper, yes)


def _run_collect(
    exp: Any,
    workers: int,
    runner: str,
    dask_address: str | None,
    only: dict[str, list[str]] | None = None,
) -> dict[str, Any]:
    from dars.flows.collect import collect_flow
    from dars.tasks.collect import new_run_id

    run_id = new_run_id()
    _prefect_server()
    try:
        with _StageDisplay(exp, runner, only, collect=True):
            return collect_flow(exp, None, workers, runner, dask_address, run_id, only=only)
    finally:
        _print_spend(exp, run_id)


def _print_spend(exp: Any, run_id: str) -> None:
    """The ledger's spend of this run and of the root (every run, rewriter calls included)."""
    from dars.storage import ledger

    led = ledger(exp.root)
    run, root = led.summary(run_id), led.summary()
    cap = f" of the ${exp.spend_cap_usd:.2f} cap" if exp.spend_cap_usd is not None else ""
    lost = f"; {root.lost} calls lost in flight by killed runs" if root.lost else ""
    console.print(
        f"spend (ledger): ${run.billed_usd:.4f} this run ({run.calls} calls, run {run_id}), "
        f"${root.billed_usd:.4f}{cap} on this root{lost}"
    )


def _collection_failed(
    exc: RuntimeError, exp: Any, only: dict[str, list[str]] | None = None
) -> None:
    """Report a collection that did not finish: one line per failed shard (which shard, how many
    keys failed and why), then the store's status; exit 1. Prefect's temporary server not
    starting goes up to the group, which says what to set."""
    from dars.tasks.failures import CollectionIncomplete

    if server_timeout_message(exc) is not None:
        raise exc
    if isinstance(exc, CollectionIncomplete):
        _error(
            f"collection incomplete: {len(exc.failures)} shard(s) failed; every key that "
            "succeeded is stored, `dars rerun --failed` runs only the others:"
        )
        for line in exc.failures:
            _error("  " + " ".join(line.split()))
    else:
        _error(str(exc))
    _print_status(exp, only)
    raise typer.Exit(1) from None


def _print_status(exp: Any, only: dict[str, list[str]] | None = None) -> Any:
    import polars as pl

    from dars.tasks.pending import collection_status

    st = collection_status(exp, only)
    per = (
        st.filter(pl.col("dataset").is_not_null())
        .group_by("dataset", "split", "model", maintain_order=True)
        .agg(pl.len().alias("shards"), pl.col("expected", "done", "failed", "missing").sum())
    )
    total = st.filter(pl.col("dataset").is_null()).row(0, named=True)
    console.print(_frame_table(per, f"observation store {exp.root}"))
    console.print(
        f"total: {total['expected']} expected, {total['done']} done, "
        f"{total['failed']} failed, {total['missing']} missing"
    )
    return total


def _sound_store(root: str, *, list_strays: bool = False) -> Any:
    """Read every file of the run's stores (checksums verified) before a command uses them.

    A damaged file is one red line each (path, reason, what to do) and exit 1, so no command
    runs on a store that silently lacks data; strays are never read and only warned about
    (each one by ``dars status``, a count elsewhere). Returns the check."""
    from dars.storage.integrity import check_store

    check = check_store(root)
    if list_strays:
        for path in check.strays:
            console.print(
                Text(f"stray (not part of the store, never read): {path}", style="yellow"),
                soft_wrap=True,
            )
    elif check.strays:
        console.print(
            Text(
                f"warning: {len(check.strays)} stray file(s) under the store are not read "
                "(`dars status` lists them)",
                style="yellow",
            )
        )
    return check


def _exit_if_damaged(check: Any) -> None:
    for d in check.damaged:
        console.print(Text(d.message, style="red"), soft_wrap=True)
    if check.damaged:
        raise typer.Exit(1)


@app.command()
def collect(
    config: ConfigOpt = Path("configs/demo.yaml"),
    root: RootOpt = None,
    workers: WorkersOpt = 4,
    runner: RunnerOpt = "thread",
    dask_address: DaskAddressOpt = None,
    processes: ProcOpt = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    run_flow: Annotated[
        bool,
        typer.Option(
            "--run-flow",
            help="Start the collect flow even when nothing is left to collect (by default "
            "the command then stops before starting Prefect).",
        ),
    ] = False,
    verbose: VerboseOpt = False,
) -> None:
    """Collect rewrites and the observation matrix (Prefect flow `collect`)."""
    runner = _runner(runner, dask_address, processes)
    _quiet_prefect(verbose)
    exp = _load(config, root)
    _exit_if_damaged(_sound_store(exp.root))
    if not run_flow:
        from dars.tasks.pending import nothing_to_collect

        # Checked from the store before Prefect starts (its server and imports cost seconds to
        # minutes): a collect with nothing to do says so and stops.
        done = nothing_to_collect(exp)
        if done is not None:
            console.print(done, soft_wrap=True)
            _print_status(exp)
            return
    _preflight(exp, yes, dry_run)
    t0 = time.monotonic()
    try:
        result = _run_collect(exp, workers, runner, dask_address)
    except RuntimeError as exc:
        _collection_failed(exc, exp)
    dec = result["decode"]
    wall = time.monotonic() - t0
    console.print(
        f"collected {dec['ok']} calls (+{result['rewrite']['ok']} rewrites) in {wall:.1f}s"
        f" ({dec['ok'] / max(wall, 1e-9):.0f} calls/s)"
    )
    for stage in ("rewrite", "decode"):
        st = result[stage]
        if st.get("leased"):
            console.print(
                f"skipped {st['leased_shards']} {stage} shard(s) ({st['leased']} keys): "
                f"held by live run(s) {', '.join(st['leased_by'])} on this root"
            )
    _print_status(exp)


@app.command("status")
def status_cmd(
    config: ConfigOpt = Path("configs/demo.yaml"),
    root: RootOpt = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Move unreadable store files into <root>/quarantine/ and list the keys to "
            "collect again.",
        ),
    ] = False,
) -> None:
    """Per-partition done / failed / missing counts of the observation store; every store file
    is read and its checksums verified, strays and damaged files are listed."""
    exp = _load(config, root)
    check = _sound_store(exp.root, list_strays=True)
    to_rerun = 0
    if repair and check.damaged:
        to_rerun = _print_repair(exp, config, check.damaged)
    else:
        _exit_if_damaged(check)
    total = _print_status(exp)
    from dars.storage import ledger

    spent = ledger(exp.root).summary()
    if spent.calls or spent.lost:
        console.print(
            f"spend (ledger): ${spent.billed_usd:.4f} over {spent.calls} calls on this root"
            + (f"; {spent.lost} calls lost in flight by killed runs" if spent.lost else "")
        )
    complete = total["failed"] == 0 and total["missing"] == 0 and to_rerun == 0
    raise typer.Exit(0 if complete else 1)


def _print_repair(exp: Any, config: Path, damaged: Any) -> int:
    """Quarantine ``damaged``, print what moved and the keys to collect again; returns how
    many keys (rewrites included, which the observation status below does not count)."""
    from dars.tasks.repair import repair_store

    done = repair_store(exp, damaged)
    for m in done.moved:
        console.print(
            f"quarantined {m.source} -> {m.target} ({m.damaged.reason})",
            markup=False,
            soft_wrap=True,
        )
    keys = done.keys
    if keys.height:
        import polars as pl

        where = ["store", "dataset", "split", "model", "shard"]
        per = keys.group_by(where, maintain_order=True).agg(pl.len().alias("keys"))
        console.print(_frame_table(per, f"{keys.height} key(s) to collect again"))
        for k in keys.head(20).iter_rows(named=True):
            cell = f"rewrite {k['rewrite_id']}" + (
                "" if k["decode_id"] is None else f" decode {k['decode_id']}"
            )
            model = "" if k["model"] is None else f"/{k['model']}"
            console.print(
                f"  {k['store']} {k['dataset']}/{k['split']}{model}: {k['query_id']} {cell}",
                markup=False,
                soft_wrap=True,
            )
        if keys.height > 20:
            console.print(f"  … and {keys.height - 20} more")
        console.print(
            f"collect them again with: dars collect --config {config} --root {exp.root}",
            markup=False,
            soft_wrap=True,
        )
    elif done.moved:
        console.print("no planned key is missing after the repair")
    return keys.height


@app.command()
def rerun(
    config: ConfigOpt = Path("configs/demo.yaml"),
    root: RootOpt = None,
    failed: Annotated[
        bool, typer.Option("--failed", help="Rerun partitions with failed or missing keys.")
    ] = False,
    dataset: FilterOpt("dataset", "datasets") = None,
    model: FilterOpt("model", "pool models") = None,
    split: FilterOpt("split", "splits (train, test)") = None,
    workers: WorkersOpt = 4,
    runner: RunnerOpt = "thread",
    dask_address: DaskAddressOpt = None,
    processes: ProcOpt = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Rerun only the partitions with failed or missing keys, as a new `collect` flow run;
    --dataset/--model/--split keep those of some datasets, models or splits."""
    if not failed:
        console.print("nothing to do: pass --failed to rerun failed or missing keys")
        raise typer.Exit(2)
    runner = _runner(runner, dask_address, processes)
    _quiet_prefect(verbose)
    exp = _load(config, root)
    only = _key_filter(exp, dataset, model, split)
    _exit_if_damaged(_sound_store(exp.root))
    if not dry_run and _missing_keys(exp, only):
        _preflight(exp, yes, dry_run, only)  # one line naming every missing key
    before = _print_status(exp, only)
    if before["failed"] == 0 and before["missing"] == 0:
        console.print("every key is stored ok; nothing to rerun")
        return
    _preflight(exp, yes, dry_run, only)
    try:
        _run_collect(exp, workers, runner, dask_address, only)
    except RuntimeError as exc:
        _collection_failed(exc, exp, only)
    _print_status(exp, only)


def _key_filter(
    exp: Any, dataset: list[str] | None, model: list[str] | None, split: list[str] | None
) -> dict[str, list[str]]:
    """The --dataset/--model/--split filter checked against the config (``dars.plan.key_filter``);
    an unknown value is one line listing the allowed ones, exit 2."""
    from dars.plan import key_filter

    try:
        return key_filter(exp, dataset=dataset or [], model=model or [], split=split or [])
    except ValueError as exc:
        _error(str(exc), "bad filter")
        raise typer.Exit(2) from None


@app.command("import")
def import_cmd(
    path: Annotated[Path, typer.Argument(help="CSV, JSONL or Parquet file of generations.")],
    root: Annotated[str, typer.Option("--root", help="Run directory to import into.")],
    dataset: Annotated[str | None, typer.Option(help="Dataset for rows without one.")] = None,
    split: Annotated[str | None, typer.Option(help="Split for rows without one.")] = None,
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", help="Column mapping FILE_COL=OUR_COL (OUR_COL empty = drop)."),
    ] = None,
    rename_values: Annotated[
        list[str] | None,
        typer.Option(
            "--rename-values",
            help="New name for a dataset or model value: COLUMN:OLD=NEW (repeatable), e.g. "
            "model:gpt-4o[json-schema]=gpt-4o-json.",
        ),
    ] = None,
    slug_names: Annotated[
        bool,
        typer.Option(
            "--slug-names",
            help="Give every dataset/model value that is not path-safe a slug "
            "(college_mathematics/few -> college_mathematics-few); originals are recorded.",
        ),
    ] = False,
    test_fraction: Annotated[
        float | None,
        typer.Option(help="Without a split column or --split: share of queries sent to test."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the --test-fraction split.")] = 0,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Take model prices from this pool.")
    ] = None,
    config_out: Annotated[
        Path | None,
        typer.Option(
            "--config-out",
            help="Write an experiment YAML for the imported datasets (source: store), ready for "
            "`dars run`.",
        ),
    ] = None,
) -> None:
    """Import your own scored generations into the store (validated first; nothing is written
    if any row is bad). With a `question` column the queries are stored too, so the dataset can
    be supervised, trained, evaluated and reported on from the store alone."""
    from dars.benchmarks import TASK_TYPES
    from dars.config import ConfigError, check_root
    from dars.storage import StorageError, import_generations

    try:
        check_root(root, "--root")
    except ConfigError as exc:
        _error(str(exc), "import failed, nothing written")
        raise typer.Exit(1) from None

    mapping: dict[str, str | None] = {}
    for m in map_ or []:
        if "=" not in m:
            _error(f"--map {m!r}: expected FILE_COL=OUR_COL")
            raise typer.Exit(2)
        src, dst = m.split("=", 1)
        mapping[src] = dst or None
    renames: dict[str, dict[str, str]] = {}
    for r in rename_values or []:
        col, sep, rest = r.partition(":")
        old, eq, new = rest.rpartition("=")
        if not sep or not eq or not old or not new:
            _error(f"--rename-values {r!r}: expected COLUMN:OLD=NEW (COLUMN: dataset or model)")
            raise typer.Exit(2)
        renames.setdefault(col, {})[old] = new
    prices = None
    if config is not None:
        exp = _load(config, root)
        prices = {
            m.name: (m.input_price_per_m or 0.0, m.output_price_per_m or 0.0)
            for m in exp.pool.models
        }
    try:
        res = import_generations(
            path,
            root,
            mapping or None,
            dataset=dataset,
            split=split,
            prices=prices,
            rename_values=renames or None,
            slug_names=slug_names,
            test_fraction=test_fraction,
            seed=seed,
            task_types=TASK_TYPES.names(),
        )
    except StorageError as exc:
        msg = str(exc)
        _error(msg if msg.startswith("import failed") else f"import failed, nothing written: {msg}")
        raise typer.Exit(1) from None
    console.print(
        f"imported {res.rows} rows from {path} into {root} (run_id {res.run_id}): "
        f"{res.counts.written_ok} written, {res.counts.skipped_ok} already stored",
        soft_wrap=True,
    )
    for col, names in res.renamed.items():
        for old, new in names.items():
            console.print(Text(f"  {col} {old!r} stored as {new!r}"))
    table = Table("dataset", "models", "train / test queries", "decodes per pair", "queries")
    for d, info in res.datasets.items():
        q = info["queries"]
        lo, hi = info["decodes_per_pair"]
        table.add_row(
            Text(d),
            Text(", ".join(info["models"])),
            f"{q.get('train', 0)} / {q.get('test', 0)}",
            f"{lo}" if lo == hi else f"{lo}–{hi} (uneven: every decode is used)",
            "stored" if info["queries_stored"] else "none (add a question column)",
        )
    console.print(table)
    if config_out is not None:
        _write_store_config(root, config_out, res)


def _write_store_config(root: str, out: Path, res: Any) -> None:
    """Write an experiment YAML for the datasets of ``root`` that have imported queries."""
    import yaml

    from dars.config import ConfigError, store_experiment
    from dars.storage import scan_observations
    from dars.storage.queries import queries_exist

    pairs = scan_observations(root).select("dataset", "model").unique().collect()
    models: dict[str, list[str]] = {}
    for d, m in pairs.sort("dataset", "model").iter_rows():
        models.setdefault(d, []).append(m)
    no_queries = sorted(d for d in models if not queries_exist(root, d))
    for d in no_queries:
        models.pop(d)
        _error(f"  {d}: left out of {out}: no queries stored (import a question column)")
    labels = {col: {new: old for old, new in names.items()} for col, names in res.renamed.items()}
    try:
        exp, left_out = store_experiment(
            root, models, name=RunLayout(root).root.name, labels=labels
        )
    except ConfigError as exc:
        _error(str(exc), f"no config written to {out}")
        raise typer.Exit(1) from None
    for d, why in left_out.items():
        _error(f"  {d}: left out of {out}: {why}")
    data = exp.model_dump(mode="json", exclude_defaults=True)
    data["root"] = exp.root  # always explicit, even when it equals the default
    out.write_text(
        "# Written by `dars import --config-out`: the imported datasets of this run, read from\n"
        "# the store (source: store); the pool's models are never called (no litellm route).\n"
        + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    )
    console.print(f"config for the imported datasets: {out}", soft_wrap=True)


# ------------------------------------------------------------------------------------------------
# supervision and the pipeline


def _fmt_metric(value: float | None, metric: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if metric.startswith("n_"):
        return f"{int(value):,}"
    return f"{value:.3f}"


def _summary_table(
    summary: Any, *, title: str = "Supervision summary", definition: str | None = None
) -> Table:
    """The supervise stage's summary (one row per (dataset, metric)) with the value and its 95%
    bootstrap CI ("—" where there is none); ``definition``, when given, is the configured
    definition of winner flip and disagreement, named in the caption."""
    caption = None
    if definition is not None:
        from dars.supervision.diagnostics import DEFINITIONS

        others = ", ".join(d for d in DEFINITIONS if d != definition)
        caption = (
            f"winner flip and single-vs-DA disagreement: {definition} definition "
            f"(config `diagnostics`); the {others} variant is in each dataset's "
            "diagnostics.parquet and the report"
        )
    table = Table(title=title, caption=caption)
    table.add_column("dataset")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% CI", justify="right")
    previous = None
    for row in summary.iter_rows(named=True):
        metric = row["metric"]
        lo, hi = row["ci_low"], row["ci_high"]
        ci = (
            "—"
            if lo is None or hi is None or math.isnan(lo) or math.isnan(hi)
            else f"[{_fmt_metric(lo, metric)}, {_fmt_metric(hi, metric)}]"
        )
        # Print each dataset name once and separate datasets by a rule, for readability.
        first = row["dataset"] != previous
        if first and previous is not None:
            table.add_section()
        table.add_row(
            row["dataset"] if first else "", metric, _fmt_metric(row["value"], metric), ci
        )
        previous = row["dataset"]
    return table


@app.command()
def supervise(
    config: ConfigOpt = Path("configs/demo.yaml"),
    root: RootOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Aggregate the store into DARS supervision, ablations, single-shot draws and diagnostics."""
    _quiet_prefect(verbose)
    exp = _load(config, root)
    _exit_if_damaged(_sound_store(exp.root))
    from dars.tasks.preflight import supervise_problem

    _check(supervise_problem(exp, str(config)))
    from dars.flows.supervise import supervise_flow
    from dars.storage import StorageError

    summary = _or_exit(supervise_flow, exp, errors=(FileNotFoundError, StorageError))
    console.print(_summary_table(summary, definition=exp.diagnostics.definition))
    console.print(f"supervision written under {RunLayout(exp.root).supervision_dir()}")


@app.command()
def train(
    config: ConfigOpt = Path("configs/demo.yaml"),
    root: RootOpt = None,
    family: Annotated[
        list[str] | None,
        typer.Option(
            "--family", help="Router family (repeatable; default: the config's `families`)."
        ),
    ] = None,
    supervision: Annotated[
        list[str] | None,
        typer.Option(
            "--supervision",
            help="Supervision to train on (repeatable; default: single_shot, dars and the five "
            "ablations).",
        ),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Routers trained at once.")] = 2,
    verbose: VerboseOpt = False,
) -> None:
    """Train router families × supervisions from supervision/ into models/ (flow `train`)."""
    _quiet_prefect(verbose)
    exp = _load(config, root)
    from dars.tasks.preflight import train_problem
    from dars.tasks.train import check_training

    _check_names(check_training, exp, family, supervision)
    _check(train_problem(exp, str(config)))
    from dars.flows.train import train_flow

    report = _or_exit(
        train_flow,
        exp,
        families=family,
        supervisions=supervision,
        workers=workers,
        errors=(ValueError, FileNotFoundError, RuntimeError),
    )
    _print_train(report)
    console.print(f"routers written under {RunLayout(exp.root).models_dir()}")


def _print_train(report: Any) -> None:
    import polars as pl

    per = report.group_by("family", maintain_order=True).agg(
        pl.len().alias("routers"), pl.col("n_draws").sum().alias("fits"), pl.col("fit_s").sum()
    )
    console.print(_frame_table(per, "routers trained", floats="{:.1f}"))


@app.command()
def evaluate(
    config: ConfigOpt = Path("configs/demo.yaml"),
    root: RootOpt = None,
    experiment: Annotated[
        list[str] | None,
        typer.Option("--experiment", "-e", help="Experiment to run (repeatable; default all)."),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help="Experiments run at once.")] = 2,
    verbose: VerboseOpt = False,
) -> None:
    """Run the evaluation experiments into results/ (flow `evaluate`; see `dars experiment`)."""
    _run_experiments(config, root, verbose, experiment, workers)


def _print_views(name: str, tables: Any) -> None:
    """Experiment ``name``'s terminal view of its tables (the full tables are in results/)."""
    from dars.evaluation.experiments.base import EXPERIMENTS

    for title, frame in EXPERIMENTS.get(name).view(tables):
        out = _frame_table(frame, title, floats="{:.3f}")
        # No vertical rules: the main table then fits an 80-column terminal.
        out.box = box.SIMPLE_HEAD
        console.print(out)


def _run_experiments(
    config: Path, root: str | None, verbose: bool, names: list[str] | None, workers: int
) -> None:
    """Run experiments through the evaluate flow, print each one's view and the files written."""
    _quiet_prefect(verbose)
    exp = _load(config, root)
    from dars.evaluation.experiments.base import EXPERIMENTS, check_experiments

    _check_names(check_experiments, names)
    from dars.tasks.preflight import evaluate_problem

    _check(evaluate_problem(exp, str(config)))
    from dars.flows.evaluate import evaluate_flow

    out = _or_exit(
        evaluate_flow,
        exp,
        experiments=names,
        workers=workers,
        errors=(ValueError, FileNotFoundError, RuntimeError),
    )
    layout = RunLayout(exp.root)
    for name in check_experiments(names):
        _print_views(name, out[name])
        for table in EXPERIMENTS.get(name).tables:
            if layout.results_file(table).is_file():
                console.print(f"wrote {layout.results_file(table)}", soft_wrap=True)


def _experiment_command(name: str) -> Any:
    def command(
        config: ConfigOpt = Path("configs/demo.yaml"),
        root: RootOpt = None,
        verbose: VerboseOpt = False,
    ) -> None:
        _run_experiments(config, root, verbose, [name], workers=1)

    return command


@app.command()
def report(
    config: ConfigOpt = Path("configs/demo.yaml"),
    root: RootOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Write report/index.{md,html} and PNG figures from results/ (flow `report`)."""
    _quiet_prefect(verbose)
    exp = _load(config, root)
    from dars.evaluation.experiments.base import table_producers
    from dars.tasks.preflight import report_problem

    _check(report_problem(exp, list(table_producers()), str(config)))
    from dars.flows.evaluate import report_flow

    _or_exit(report_flow, exp, errors=(FileNotFoundError, RuntimeError))
    _print_report_paths(exp.root)


@app.command("readme-numbers")
def readme_numbers(
    config: ConfigOpt = Path("configs/demo.yaml"),
    root: RootOpt = None,
    out: Annotated[
        Path, typer.Option("--out", help="Markdown file to write (the README points to it).")
    ] = Path("docs/demo_numbers.md"),
    fact: Annotated[
        list[str] | None,
        typer.Option(
            "--fact",
            help="A run fact 'label=text' for the file's Run section, e.g. "
            "--fact 'wall time=16 min 51 s' --fact 'load=1.5'; repeatable.",
        ),
    ] = None,
) -> None:
    """Write the demo's headline figures (the README's list) from results/ to --out."""
    from dars.storage.results import ResultMissingError
    from dars.tasks.headline import recorded_facts, write_headline

    exp = _load(config, root)
    facts = recorded_facts(exp.root)  # timing.json of the last `dars run`, when there is one
    for item in fact or []:
        label, sep, text = item.partition("=")
        if not sep or not label.strip():
            _error(f"--fact {item!r}: expected 'label=text'")
            raise typer.Exit(2)
        facts[label.strip()] = text.strip()
    try:
        path = write_headline(exp.root, out, facts)
    except ResultMissingError as exc:
        _error(str(exc))
        raise typer.Exit(1) from None
    console.print(f"headline numbers: {path}", soft_wrap=True)


def _print_report_paths(root: str) -> None:
    layout = RunLayout(root)
    # soft_wrap: a path must stay one copyable line, whatever the terminal width.
    html, md = layout.report_file("index", "html"), layout.report_file("index", "md")
    console.print(f"report: {html} (self-contained)", soft_wrap=True)
    console.print(f"        {md} (Markdown, figures beside it)", soft_wrap=True)


@app.command()
def run(
    config: ConfigOpt = Path("configs/demo.yaml"),
    root: RootOpt = None,
    workers: WorkersOpt = 4,
    runner: RunnerOpt = "thread",
    dask_address: DaskAddressOpt = None,
    processes: ProcOpt = None,
    yes: YesOpt = False,
    dry_run: DryRunOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Run the whole pipeline (flow `pipeline`): collect, supervise, train, evaluate, report."""
    runner = _runner(runner, dask_address, processes)
    _quiet_prefect(verbose)
    exp = _load(config, root)
    from dars.flows.pipeline import pipeline_flow

    t0, load0 = time.monotonic(), os.getloadavg()[0]
    _exit_if_damaged(_sound_store(exp.root))
    _preflight(exp, yes, dry_run)
    _prefect_server()
    try:
        with _StageDisplay(exp, runner, collect=True):
            out = pipeline_flow(exp, None, workers, runner, dask_address)
    except RuntimeError as exc:
        _collection_failed(exc, exp)
    _print_status(exp)
    console.print(_summary_table(out["supervise"], definition=exp.diagnostics.definition))
    _print_train(out["train"])
    _print_views("main", out["evaluate"]["main"])
    from dars.tasks.headline import record_timing

    record_timing(exp.root, time.monotonic() - t0, load0)  # for `dars readme-numbers`
    console.print(f"pipeline finished in {time.monotonic() - t0:.0f}s; outputs under {exp.root}")
    _print_report_paths(exp.root)
