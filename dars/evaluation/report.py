"""The report: ``report/index.{md,html}`` laid out from the result tables (no I/O here).

:func:`build_report` lays the report out as a :class:`~dars.evaluation.document.Document`:
section 1 (setup: the run, its config, the result tables read) is this module's own, then one
section per registered experiment in ``order`` (:func:`~dars.evaluation.experiments.experiments`),
numbered from 2 and filled by the experiment's ``section``. Every number printed comes from a
result table; the paper's own numbers are shown beside ours, labelled as the paper's, for the
dataset of the same task type. A section whose result is missing (``main`` included) says so
and names the command that writes it.

The document is rendered twice: :func:`render_markdown` (figures referenced as PNG files beside
it) and :func:`render_html`, one self-contained page through the Jinja2 template
``templates/report.html.j2`` (autoescaped; CSS in the template; figures as base64 ``data:``
URIs) that can be mailed on its own. The report stage (:mod:`dars.tasks.report`) reads the
results and writes the files.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
import yaml
from jinja2 import Environment, PackageLoader
from markupsafe import Markup, escape

from dars.evaluation.document import (
    DASH,
    Code,
    Document,
    Figure,
    Heading,
    Note,
    ReportRun,
    Table,
    Text,
    ci,
    fmt,
    text_table,
)
from dars.evaluation.experiments.base import ExperimentSpec, experiments, table_producers
from dars.evaluation.experiments.main import single_shot_comparison
from dars.evaluation.metrics import VIEW_SHORT, bootstrap_ci
from dars.evaluation.paper import paper_dataset, paper_figures

__all__ = [
    "APPENDIX_TITLE",
    "FINDINGS_TITLE",
    "SETUP_TITLE",
    "dars_vs_single_shot",
    "build_report",
    "render_html",
    "render_markdown",
    "result_names",
    "section_titles",
]

#: Title of section 1, which the report owns; the experiments' sections follow it.
SETUP_TITLE = "Setup"
#: The unnumbered summary that opens the report, and the appendix that closes it.
FINDINGS_TITLE = "Findings"
APPENDIX_TITLE = "Appendix: configuration"
_PAPER_NOTE = (
    "Columns or rows marked *paper* are the numbers reported by Lai, Hu, Chen, Li and Ye (2026), "
    "“From Sampled Outcomes to Capability Distributions: Rethinking Supervision for LLM "
    "Routing”, measured on their pool ({pool}) and benchmarks; each of our datasets is set "
    "beside the paper's dataset of the same task type ({mapping})."
)


def section_titles() -> list[str]:
    """The report's level-2 headings, in order: "Findings", "1. Setup", then "<n>. <title>" of
    every registered experiment, then the configuration appendix."""
    titles = [FINDINGS_TITLE, f"1. {SETUP_TITLE}"]
    titles += [f"{n}. {spec.title}" for n, spec in enumerate(experiments(), start=2)]
    return [*titles, APPENDIX_TITLE]


def result_names() -> tuple[str, ...]:
    """Every result table the report reads, in the order they appear."""
    return tuple(table_producers())


# ------------------------------------------------------------------------------------------------
# layout
# ------------------------------------------------------------------------------------------------
def _datasets(
    results: Mapping[str, pl.DataFrame | None], ctx: Mapping[str, Any] | None
) -> list[str]:
    """The datasets of ``main`` (of every result with a ``dataset`` column when ``main`` is
    missing): those of the config in its order, then any other one sorted."""
    main = results.get("main")
    frames = [main] if main is not None else [f for f in results.values() if f is not None]
    present = [d for f in frames if "dataset" in f.columns for d in f["dataset"].unique().to_list()]
    ordered = [b["name"] for b in (ctx or {}).get("benchmarks", []) if b["name"] in present]
    return ordered + sorted(set(present) - set(ordered))


def _settings_differ(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Names of the settings on which two run contexts differ: the config's top-level fields
    when both recorded the config (the other context keys derive from it), else the context's
    own keys; the write time and the run directory (``root``: a copied run keeps its results)
    never count."""
    if isinstance(a.get("config"), dict) and isinstance(b.get("config"), dict):
        a, b = a["config"], b["config"]
    return sorted(k for k in (set(a) | set(b)) - _NOT_SETTINGS if a.get(k) != b.get(k))


#: Context keys that are not settings of the results (see :func:`_settings_differ`).
_NOT_SETTINGS = frozenset({"written_at", "root"})


def dars_vs_single_shot(main: pl.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pl.DataFrame:
    """DARS − mean single-shot test utility per (dataset, view), across router families.

    ``main``: the ``main`` result. Per (dataset, view, family) with both supervisions, delta =
    U(dars) − mean U over the single-shot draws (:func:`~dars.evaluation.experiments.main.
    single_shot_comparison`). One row per (dataset, view) and a last row with both "all":
    ``n_families`` (cells), ``n_above`` (delta > 0), ``delta`` (mean over the cells) and
    ``ci_low``/``ci_high``, a 95 % percentile bootstrap over the cells (families are resampled;
    :func:`~dars.evaluation.metrics.bootstrap_ci`, ``n_boot`` resamples, ``seed``). The CI is
    of the mean over these families, not over test queries.
    """
    cmp = single_shot_comparison(main)
    rows = []
    groups = [((d, v), g) for (d, v), g in cmp.group_by("dataset", "view", maintain_order=True)]
    groups.sort(key=lambda kv: kv[0])
    for (d, v), g in [*groups, (("all", "all"), cmp)]:
        if g.height == 0:
            continue
        lo, hi = bootstrap_ci(g["delta"].to_numpy(), n_boot=n_boot, seed=seed)
        rows.append(
            {
                "dataset": d,
                "view": v,
                "n_families": g.height,
                "n_above": int((g["delta"] > 0).sum()),
                "delta": float(g["delta"].mean()),
                "ci_low": lo,
                "ci_high": hi,
            }
        )
    schema = {
        "dataset": pl.String,
        "view": pl.String,
        "n_families": pl.Int64,
        "n_above": pl.Int64,
        "delta": pl.Float64,
        "ci_low": pl.Float64,
        "ci_high": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)


def _ci_by_dataset(
    frame: pl.DataFrame, run: ReportRun, key: str, keys: Sequence[str], value: str
) -> pl.DataFrame:
    """One display row per ``key`` value of ``keys``, one column per dataset: "value [ci_low,
    ci_high]" of the frame's row (the first when several), "—" when there is none."""
    ds = run.present(frame)
    rows = []
    for k in keys:
        row = {key: f"`{k}`"}
        for d in ds:
            hit = frame.filter((pl.col(key) == k) & (pl.col("dataset") == d))
            r = hit.row(0, named=True) if hit.height else None
            row[d] = f"{fmt(r[value])} {ci(r['ci_low'], r['ci_high'])}" if r else DASH
        rows.append(row)
    return text_table(rows, [key, *ds])


def _findings(doc: Document, run: ReportRun) -> None:
    """The summary that opens the report: what DARS changed and where, with CIs, from the
    ``main``, ``diagnostics`` and ``recovery`` results (each skipped with a note when missing)."""
    results = run.results
    main = results.get("main")
    if main is not None and main.height:
        cmp = dars_vs_single_shot(main)
        if cmp.height:
            total = cmp.row(cmp.height - 1, named=True)
            doc.p(
                f"**DARS vs single-shot supervision.** Across router families, the DARS router's "
                f"test utility is above the mean of the single-shot routers in "
                f"**{total['n_above']} of {total['n_families']}** (family, dataset, view) cells; "
                f"mean difference **{total['delta']:+.3f}** (95 % CI "
                f"{ci(total['ci_low'], total['ci_high'])}, bootstrap over cells)."
            )
            doc.table(
                text_table(
                    [
                        {
                            "dataset": r["dataset"],
                            "view": VIEW_SHORT.get(r["view"], r["view"]),
                            "DARS above single-shot": f"{r['n_above']} of {r['n_families']}",
                            "mean ΔU": f"{r['delta']:+.3f}",
                            "95 % CI": ci(r["ci_low"], r["ci_high"]),
                        }
                        for r in cmp.iter_rows(named=True)
                    ],
                    ["dataset", "view", "DARS above single-shot", "mean ΔU", "95 % CI"],
                ),
                caption="ΔU = U(DARS router) − mean U(single-shot routers) of the same family; "
                "CI: percentile bootstrap over the families of the row (Table 1 has each cell).",
            )
    else:
        doc.note("Result `main` is missing: no DARS vs single-shot summary.")
    diag = results.get("diagnostics")
    if diag is not None and diag.height:
        # Older results have one definition per metric and no is_default column.
        heads = diag.filter(pl.col("is_default")) if "is_default" in diag.columns else diag
        doc.p(
            "**Why single-shot labels mislead** (diagnostics of the training supervision, value "
            "and 95 % CI; the Diagnostics section defines each):"
        )
        metrics = heads["metric"].unique(maintain_order=True).to_list()
        doc.table(_ci_by_dataset(heads, run, "metric", metrics, "value"))
    rec = results.get("recovery")
    if rec is not None and rec.height and "k" in rec.columns:
        head = rec.filter(pl.col("k").is_null() & pl.col("m").is_null())
        sups = [s for s in ("single_shot", "full_dars") if s in set(head["supervision"])]
        if sups:
            doc.p(
                "**Label recovery** (simulated pool: share of training queries whose label is "
                "the truly best model, 95 % CI):"
            )
            doc.table(_ci_by_dataset(head, run, "supervision", sups, "recovery"))
    doc.p(
        "Tables and figures follow; the configuration is in the appendix at the end. Notes "
        "(yellow) flag missing or inconsistent results and departures from the paper."
    )


_COST_SCOPES = {
    "train": "min–max over the train observations",
    "all": "min–max over train and test observations (the authors' choice)",
}


def _setup(doc: Document, run: ReportRun, *, root: str, written_at: str) -> None:
    """Section 1: what the run was (pool, protocol, λ, β, benchmarks, the whole config), which
    result tables the report read and whether they were written with the same settings."""
    ctx, contexts, results, mapping = run.context, run.contexts, run.results, run.paper
    doc.p(f"Report written {written_at} from the result tables in `{root}/results`.")
    if ctx is None:
        doc.note(
            "The run context (pool, protocol, λ, β) was not recorded with these results: they "
            "were written by an older version of dars. Rerun `dars experiment main` to record it."
        )
    else:
        proto = ctx.get("protocol", {})
        train = f"{proto.get('train_rewrites')} rewrites × {proto.get('train_decodes')} decodes"
        if proto.get("train_include_original"):
            train += " (plus the original query)"
        imported = [b["name"] for b in ctx.get("benchmarks", []) if b.get("source") == "store"]
        if imported:
            train += (
                f"; imported datasets ({', '.join(imported)}): every stored formulation and decode"
            )
        collected_any = len(imported) < len(ctx.get("benchmarks", []))
        rows = [
            ("experiment", f"`{ctx.get('experiment')}`"),
            (
                "pool",
                "simulated (litellm provider `dars-sim`, known ground truth)"
                if ctx.get("simulated")
                else "real LLMs through litellm"
                if collected_any
                else "imported generations (`dars import`): read from the store, never called",
            ),
            (
                "rewriter",
                f"`{ctx.get('rewriter')}`" if ctx.get("rewriter") else "— (nothing collected)",
            ),
            ("training protocol (K × M per query and model)", train),
            (
                "test views",
                f"rewrite view (`_rew`): {proto.get('test_rewrites')} rewrites × "
                f"{proto.get('test_rewrite_decodes')} decode; decode view (`_dec`): original "
                f"query × {proto.get('test_decodes')} decodes",
            ),
            ("decoding", f"temperature {proto.get('temperature')}, top_p {proto.get('top_p')}"),
            ("λ (cost weight)", fmt(ctx.get("lam"), 3)),
            ("β (risk weight)", fmt(ctx.get("beta"), 3)),
            ("single-shot draws", fmt(ctx.get("single_shot_draws"))),
            (
                "router presets",
                ", ".join(f"{f}: `{p}`" for f, p in ctx["router_presets"].items())
                if ctx.get("router_presets")
                else DASH,
            ),
            ("training cost scale", _COST_SCOPES.get(ctx.get("cost_scope"), DASH)),
            ("seed", fmt(ctx.get("seed"))),
        ]
        doc.table(text_table([{"setting": k, "value": v} for k, v in rows], ["setting", "value"]))
        pool = ctx.get("pool", {})
        doc.table(
            text_table(
                [
                    {"model": m, "litellm route": f"`{route}`" if route else "— (imported)"}
                    for m, route in pool.items()
                ],
                ["model", "litellm route"],
            ),
            caption=f"Pool ({len(pool)} models).",
        )
    sizes = {b["name"]: b for b in (ctx or {}).get("benchmarks", [])}
    doc.table(
        text_table(
            [
                {
                    "benchmark": d,
                    "n_train": "imported split"
                    if sizes.get(d, {}).get("source") == "store"
                    else fmt(sizes.get(d, {}).get("n_train")),
                    "n_test": "imported split"
                    if sizes.get(d, {}).get("source") == "store"
                    else fmt(sizes.get(d, {}).get("n_test")),
                    "paper's counterpart": mapping.get(d) or DASH,
                }
                for d in run.datasets
            ],
            ["benchmark", "n_train", "n_test", "paper's counterpart"],
        ),
        caption="Benchmarks (n_test: all remaining items when —).",
    )
    used = []
    for name, producer in run.producers.items():
        frame = results.get(name)
        c = contexts.get(name)
        used.append(
            {
                "result": f"`{name}`",
                "rows": fmt(frame.height) if frame is not None else "missing",
                "written (UTC)": (c or {}).get("written_at", DASH),
                "produced by": f"`dars experiment {producer}`",
            }
        )
    doc.table(
        text_table(used, ["result", "rows", "written (UTC)", "produced by"]),
        caption="Result tables read by this report.",
    )
    if ctx is not None:
        for name, c in contexts.items():
            if c is None or c is ctx:
                continue
            differs = _settings_differ(ctx, c)
            if differs:
                doc.note(
                    f"Result `{name}` was written with settings that differ from `main` "
                    f"({', '.join(differs)}): rerun the experiments for one consistent report."
                )
    paper = paper_figures()["setup"]
    pairs = [f"{d} ≙ {p}" for d, p in mapping.items() if p]
    if pairs:
        text = _PAPER_NOTE.format(pool=", ".join(paper["pool"]), mapping=", ".join(pairs))
        if ctx is None or ctx.get("simulated"):
            text += (
                " Our pool is simulated, so the paper's numbers are a reference for scale and "
                "direction, not a target this run reproduces."
            )
        doc.p(text)


def _configuration(doc: Document, ctx: Mapping[str, Any] | None) -> None:
    """The appendix: the whole configuration the results were produced with, collapsed."""
    doc.h(2, APPENDIX_TITLE)
    config = (ctx or {}).get("config")
    if config is None:
        doc.p("No configuration was recorded with these results (written by an older version).")
        return
    doc.p(
        "The experiment configuration these results were produced with (as loaded, defaults "
        "filled in; API keys are never part of it, only the names of their variables)."
    )
    doc.code(
        yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
        "yaml",
        summary="Configuration (YAML)",
    )


def _figure_patterns(spec: ExperimentSpec) -> list[re.Pattern[str]]:
    dataset = re.escape("{dataset}")
    return [
        re.compile(re.escape(stem).replace(dataset, "[A-Za-z0-9._-]+") + "$")
        for stem in spec.figures
    ]


def _check_figures(spec: ExperimentSpec, blocks: Sequence[Any], drawn: set[str]) -> None:
    """A section draws only the figures its spec declares, and no figure another section drew
    (they would overwrite each other's PNG file)."""
    patterns = _figure_patterns(spec)
    for block in blocks:
        if not isinstance(block, Figure):
            continue
        if not any(p.match(block.name) for p in patterns):
            raise ValueError(
                f"experiment {spec.name!r} drew figure {block.name!r}, which its spec does not "
                f"declare (figures: {list(spec.figures)})"
            )
        if block.name in drawn:
            raise ValueError(f"figure {block.name!r} is drawn twice in the report")
        drawn.add(block.name)


def build_report(
    results: Mapping[str, pl.DataFrame | None],
    contexts: Mapping[str, Mapping[str, Any] | None],
    *,
    root: str,
    written_at: str,
) -> Document:
    """Lay out the report. ``results``: result name → table, or None when missing (names not
    given count as missing; each missing result is a note, ``main`` included); ``contexts``:
    result name → the run context stored with it, or None when the result or its context is
    missing; ``root`` and ``written_at`` are printed in the setup."""
    ctx = contexts.get("main") or next((c for c in contexts.values() if c), None)
    datasets = _datasets(results, ctx)
    run = ReportRun(
        results=dict(results),
        contexts=dict(contexts),
        context=ctx,
        datasets=tuple(datasets),
        paper={d: paper_dataset(d) for d in datasets},
        producers=table_producers(),
    )
    doc = Document(f"DARS report — {ctx['experiment']}" if ctx else "DARS report")
    doc.h(2, FINDINGS_TITLE)
    _findings(doc, run)
    doc.h(2, f"1. {SETUP_TITLE}")
    _setup(doc, run, root=root, written_at=written_at)
    drawn: set[str] = set()
    for number, spec in enumerate(experiments(), start=2):
        doc.h(2, f"{number}. {spec.title}")
        start = len(doc.blocks)
        spec.section(doc, run)
        _check_figures(spec, doc.blocks[start:], drawn)
    _configuration(doc, ctx)
    return doc


# ------------------------------------------------------------------------------------------------
# rendering
# ------------------------------------------------------------------------------------------------
_NUMERIC = re.compile(r"^[-+±\[]?\s*\d")


def _is_numeric_column(values: Sequence[str]) -> bool:
    cells = [v for v in values if v != DASH]
    return bool(cells) and all(_NUMERIC.match(v) for v in cells)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(frame: pl.DataFrame) -> str:
    head = "| " + " | ".join(_md_cell(c) for c in frame.columns) + " |"
    align = (
        "|"
        + "|".join(
            "---:" if _is_numeric_column(frame[c].to_list()) else "---" for c in frame.columns
        )
        + "|"
    )
    body = ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in frame.rows()]
    return "\n".join([head, align, *body])


def render_markdown(doc: Document) -> str:
    """The report as Markdown; figures are referenced as ``<name>.png`` beside the file."""
    out = [f"# {doc.title}", ""]
    for b in doc.blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Text):
            out += [b.text, ""]
        elif isinstance(b, Note):
            out += [f"> **Note:** {b.text}", ""]
        elif isinstance(b, Code):
            fence = [f"```{b.lang}", b.text.rstrip("\n"), "```", ""]
            if b.summary:
                fence = [f"<details><summary>{escape(b.summary)}</summary>", "", *fence]
                fence += ["</details>", ""]
            out += fence
        elif isinstance(b, Table):
            out += [_md_table(b.frame), ""]
            if b.caption:
                out += [f"*{b.caption}*", ""]
        elif isinstance(b, Figure):
            out += [f"![{b.caption}]({b.name}.png)", "", f"*{b.caption}*", ""]
    return "\n".join(out).rstrip() + "\n"


def _inline_html(text: str) -> Markup:
    """The Markdown subset of :class:`~dars.evaluation.document.Text` as HTML: the text is
    escaped first, so only the markup added here is live."""
    s = str(escape(text))
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    return Markup(re.sub(r"(?<![*\w])\*(?!\s)(.+?)(?<!\s)\*(?![*\w])", r"<em>\1</em>", s))


def _slug(text: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, i = base, 2
    while slug in used:
        slug, i = f"{base}-{i}", i + 1
    used.add(slug)
    return slug


_TEMPLATES = Environment(
    loader=PackageLoader("dars.evaluation", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_TEMPLATES.filters["inline"] = _inline_html


def _html_block(block: Any, used: set[str]) -> dict[str, Any]:
    """What the template needs of one block."""
    if isinstance(block, Heading):
        return {
            "kind": "heading",
            "level": block.level,
            "id": _slug(block.text, used),
            "text": block.text,
        }
    if isinstance(block, Table):
        frame = block.frame
        numeric = [_is_numeric_column(frame[c].to_list()) for c in frame.columns]
        rows = [list(zip(row, numeric, strict=True)) for row in frame.rows()]
        return {"kind": "table", "caption": block.caption, "columns": frame.columns, "rows": rows}
    if isinstance(block, Figure):
        data = base64.b64encode(block.png).decode("ascii")
        return {"kind": "figure", "caption": block.caption, "data": data}
    if isinstance(block, Code):
        return {"kind": "code", "text": block.text, "summary": block.summary}
    kind = {Text: "text", Note: "note"}[type(block)]
    return {"kind": kind, "text": block.text}


def render_html(doc: Document) -> str:
    """The report as one self-contained HTML page: CSS in the page, tables as HTML tables,
    figures embedded as base64 ``data:`` URIs (no reference to any other file)."""
    used: set[str] = set()
    blocks = [_html_block(b, used) for b in doc.blocks]
    toc = [b for b in blocks if b["kind"] == "heading" and b["level"] == 2]
    return _TEMPLATES.get_template("report.html.j2").render(title=doc.title, toc=toc, blocks=blocks)
