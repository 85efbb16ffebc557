"""Typed experiment configuration.

An experiment YAML is validated once, when it is loaded: every later stage receives an
``Experiment`` object and never re-reads raw dictionaries. Validation errors are turned into one
``ConfigError`` whose message names the file, the dotted field path and, where there is a closed
set, the allowed values.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dars.utility import DEFAULT_BETA, DEFAULT_LAM

# Authors' released defaults (see ARCHITECTURE.md, "Fixed decisions").
DEFAULT_MAX_TOKENS: dict[str, int] = {"gpqa": 768, "math500": 3072, "drop800": 512}
FALLBACK_MAX_TOKENS = 512

#: litellm route prefix of the simulated pool (``dars.sim``).
SIM_PREFIX = "dars-sim/"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message says where and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    """One LLM in the pool (or the rewriter).

    ``name`` is the short id used in partition paths and tables; ``litellm_model`` is what litellm
    is called with (``openrouter/qwen/qwen3-32b``, ``dars-sim/strong``, ``openai/gpt-4o`` …);
    None for a model whose observations were imported (``dars import``) and that is never called.
    ``label`` is how reports show the model when it differs from ``name`` (e.g. an imported
    name that was not path-safe, ``gpt-4o[json-schema]`` stored as ``gpt-4o-json-schema``).
    Prices are USD per one million tokens and, when set, override litellm's cost map.
    ``api_key_env`` names the environment variable holding the key: the key itself never appears
    in a config, a log or a file we write. A model with an ``api_base`` and no ``api_key_env`` is
    a keyless server (a local llama.cpp, vLLM or Ollama): it is sent a placeholder key, never one
    from the environment.
    """

    name: str
    litellm_model: str | None = None
    label: str | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    input_price_per_m: float | None = Field(default=None, ge=0)
    output_price_per_m: float | None = Field(default=None, ge=0)
    max_concurrency: int = Field(default=8, ge=1)
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    extra_params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name_is_path_safe(cls, v: str) -> str:
        # The name becomes a hive partition value (model=<name>), so keep it path-safe.
        if not _NAME_RE.match(v):
            raise ValueError(
                f"model name {v!r} must match {_NAME_RE.pattern} (letters, digits, '.', '_', '-')"
            )
        return v

    @field_validator("extra_params")
    @classmethod
    def _no_secrets_in_params(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key in v:
            low = key.lower()
            if low.endswith("key") or low.endswith("token") or "secret" in low or "password" in low:
                raise ValueError(
                    f"extra_params.{key} looks like a credential; put secrets in an environment "
                    "variable and name it in api_key_env"
                )
        return v


class Pool(_Strict):
    """The candidate models a router chooses among (order = model index everywhere)."""

    models: list[ModelSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> Pool:
        seen: set[str] = set()
        for m in self.models:
            if m.name in seen:
                raise ValueError(f"duplicate model name {m.name!r} in pool")
            seen.add(m.name)
        return self

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]

    @property
    def simulated(self) -> bool:
        """True when every model is served by the simulated provider (``dars-sim/<id>``)."""
        return all((m.litellm_model or "").startswith(SIM_PREFIX) for m in self.models)

    def get(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(f"unknown model {name!r}; pool has {self.names}")


class Protocol(_Strict):
    """How many observations are collected per query.

    Train: ``train_rewrites`` rewrites × ``train_decodes`` decodes per (query, model).
    Test, rewrite view: ``test_rewrites`` rewrites × ``test_rewrite_decodes`` decodes.
    Test, decode view: the original query × ``test_decodes`` decodes.
    """

    train_rewrites: int = Field(default=5, ge=1)
    train_decodes: int = Field(default=5, ge=1)
    train_include_original: bool = False
    test_rewrites: int = Field(default=3, ge=0)
    test_rewrite_decodes: int = Field(default=1, ge=1)
    test_decodes: int = Field(default=3, ge=0)
    temperature: float = Field(default=0.7, ge=0, le=2)
    top_p: float = Field(default=0.95, gt=0, le=1)
    max_tokens: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_MAX_TOKENS))

    def max_tokens_for(self, benchmark: str) -> int:
        return self.max_tokens.get(benchmark, FALLBACK_MAX_TOKENS)


class BenchmarkSpec(_Strict):
    """A dataset of the experiment and where its queries and observations come from.

    ``source: benchmark`` (default): ``name`` is a registered benchmark; its items are loaded
    (``path``, ``options``) and split (``n_train``, ``n_test``), and the collect stage asks the
    pool. ``source: store``: ``name`` is a dataset imported into the run's store with
    ``dars import`` (any path-safe name); its queries, their split and the observations come
    from the store — nothing is collected, and every stored decode and formulation of a train
    (query, model) pair is used. ``models``: the pool models this dataset is routed among
    (default: the whole pool), for data sets where not every model answered. ``label``: how
    reports show the dataset when it differs from ``name``.
    """

    # ``source`` comes first: the name's check depends on it.
    source: Literal["benchmark", "store"] = "benchmark"
    name: str
    label: str | None = None
    path: str | None = None  # local file (jsonl/parquet/json) instead of the hub or the cache
    n_train: int = Field(default=200, ge=1)
    n_test: int | None = Field(default=None, ge=1)  # None = all remaining items
    options: dict[str, Any] = Field(default_factory=dict)
    models: list[str] | None = Field(default=None, min_length=2)

    @field_validator("name")
    @classmethod
    def _known_name(cls, v: str, info: ValidationInfo) -> str:
        if info.data.get("source") == "store":
            if not _NAME_RE.match(v):
                raise ValueError(
                    f"dataset name {v!r} must match {_NAME_RE.pattern} (it is a partition value "
                    "of the store)"
                )
            return v
        from dars.benchmarks import available

        names = available()
        if v not in names:
            raise ValueError(
                f"unknown benchmark {v!r}; allowed values: {', '.join(names)} (for a dataset "
                "imported with `dars import`, add `source: store`)"
            )
        return v

    @model_validator(mode="after")
    def _store_fields(self) -> BenchmarkSpec:
        given = sorted({"path", "n_train", "n_test", "options"} & self.model_fields_set)
        if self.source == "store" and given:
            raise ValueError(
                f"{given} do not apply to source 'store': the imported queries and their split "
                "come from the store (dars import --test-fraction sets the split)"
            )
        return self


class Diagnostics(_Strict):
    """How the Figure-2 diagnostics are reported.

    Winner flip and single-vs-DA disagreement have two definitions
    (:data:`dars.supervision.diagnostics.DEFINITIONS`), and the supervise stage always computes
    both: ``paper`` (Appendix C.5: one observation slot (rewrite, decode) shared by all models,
    DA label argmax μ − λc̄) and ``draws`` (S seeded single-shot draws per model, DA label with
    −βσ). ``definition`` picks the default: the one the supervise summary, the CLI and Fig 2a
    show and the report marks. In YAML, ``diagnostics: draws`` is short for
    ``diagnostics: {definition: draws}``.
    """

    definition: str = "paper"

    @field_validator("definition")
    @classmethod
    def _known(cls, v: str) -> str:
        from dars.supervision.diagnostics import DEFINITIONS

        if v not in DEFINITIONS:
            raise ValueError(
                f"unknown diagnostics definition {v!r}; allowed values: {', '.join(DEFINITIONS)}"
            )
        return v


class Evaluation(_Strict):
    """Settings of the evaluation experiments (``dars experiment …``, the report).

    ``ablation_family``: the router family of the Table-2 ablation (the paper uses MIRT).
    ``sweep_families``: families of the sample-efficiency, β and Pareto experiments (None: the
    experiment's ``families``). ``lam_grid``: the λ values of the Pareto sweep (the train stage
    routes every test query at each). ``budgets``: mean normalised-cost budgets of the
    budget-constrained frontier. ``beta_grid``: the β values of the β sweep. ``n_boot``:
    bootstrap resamples for every confidence interval over test queries.
    """

    ablation_family: str = "mirt"
    sweep_families: list[str] | None = None
    lam_grid: list[float] = Field(
        default_factory=lambda: [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0], min_length=1
    )
    budgets: list[float] = Field(
        default_factory=lambda: [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0], min_length=1
    )
    beta_grid: list[float] = Field(
        default_factory=lambda: [0.0, 0.05, 0.1, 0.2, 0.5, 1.0], min_length=1
    )
    n_boot: int = Field(default=1000, ge=1)

    @field_validator("lam_grid", "beta_grid", "budgets")
    @classmethod
    def _finite_non_negative(cls, v: list[float]) -> list[float]:
        bad = [x for x in v if not math.isfinite(x) or x < 0]
        if bad:
            raise ValueError(f"values must be finite and >= 0, got {bad}")
        if len(set(v)) != len(v):
            raise ValueError(f"values must be distinct, got {v}")
        return sorted(v)


class Experiment(_Strict):
    """A whole run: benchmarks × pool × protocol, utility weights and where outputs go."""

    name: str = "experiment"
    benchmarks: list[BenchmarkSpec] = Field(min_length=1)
    pool: Pool
    # Asked for the rewrites of the collected benchmarks; not needed when every dataset comes
    # from the store.
    rewriter: ModelSpec | None = None
    protocol: Protocol = Field(default_factory=Protocol)
    seed: int = 0
    lam: float = Field(default=DEFAULT_LAM, ge=0)  # cost weight λ
    beta: float = Field(default=DEFAULT_BETA, ge=0)  # risk weight β
    single_shot_draws: int = Field(default=100, ge=1)
    root: str = "runs/default"
    request_timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    # An empty or whitespace-only completion: retried like a 5xx then stored as an error
    # (`retry`), or stored and scored as the answer (`accept`).
    empty_completion: Literal["retry", "accept"] = "retry"
    spend_cap_usd: float | None = Field(default=None, ge=0)
    shard_size: int = Field(default=50, ge=1)
    # Router families that `dars train` trains and the sweeps use by default.
    families: list[str] = Field(
        default_factory=lambda: [
            "mlp",
            "knn",
            "embedllm",
            "avengers_pro",
            "graph_router",
            "mirt",
            "rm_softmax",
        ]
    )
    encoder: str = "all-MiniLM-L6-v2"
    evaluation: Evaluation = Field(default_factory=Evaluation)
    diagnostics: Diagnostics = Field(default_factory=Diagnostics)

    @field_validator("diagnostics", mode="before")
    @classmethod
    def _definition_shorthand(cls, v: Any) -> Any:
        # `diagnostics: draws` reads better in a YAML than a one-key mapping.
        return {"definition": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _unique_benchmarks(self) -> Experiment:
        names = [b.name for b in self.benchmarks]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"benchmark listed twice: {sorted(dup)}")
        pool = set(self.pool.names)
        for b in self.benchmarks:
            unknown = [m for m in b.models or () if m not in pool]
            if unknown:
                raise ValueError(
                    f"benchmark {b.name!r}: models {unknown} are not in the pool {self.pool.names}"
                )
        if self.collected:
            if self.rewriter is None:
                raise ValueError(
                    "rewriter: field required (benchmarks with source 'benchmark' are collected, "
                    "and their rewrites come from the rewriter)"
                )
            rewriter = [self.rewriter] if self.rewriter.litellm_model is None else []
            who = [m.name for m in [*self.pool.models, *rewriter] if m.litellm_model is None]
            if who:
                raise ValueError(
                    f"models {who} have no litellm_model, but benchmarks "
                    f"{[b.name for b in self.collected]} are collected from the pool; give each a "
                    "litellm route, or use only imported datasets (source: store)"
                )
        return self

    @property
    def collected(self) -> list[BenchmarkSpec]:
        """The benchmarks the collect stage asks the pool about (source ``benchmark``)."""
        return [b for b in self.benchmarks if b.source == "benchmark"]

    def models_for(self, dataset: str) -> list[str]:
        """The pool models ``dataset`` is routed among, in pool order (its ``models``, else the
        whole pool)."""
        chosen = self.benchmark(dataset).models
        return [m for m in self.pool.names if chosen is None or m in chosen]

    def benchmark(self, name: str) -> BenchmarkSpec:
        for b in self.benchmarks:
            if b.name == name:
                return b
        raise KeyError(
            f"benchmark {name!r} not in experiment; have {[b.name for b in self.benchmarks]}"
        )


def _format_errors(err: ValidationError, source: str, model: type[BaseModel]) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            allowed = _allowed_fields(model, e["loc"][:-1])
            msg = "unknown field" + (f"; allowed fields: {', '.join(allowed)}" if allowed else "")
        elif e["type"] == "missing":
            msg = "field required"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def _allowed_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Walk ``loc`` through nested pydantic models to list the fields allowed at that place."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        nxt = None
        for cand in (ann, *getattr(ann, "__args__", ())):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                nxt = cand
                break
        if nxt is None:
            return []
        current = nxt
    return sorted(getattr(current, "model_fields", {}))


def experiment_from_dict(data: dict[str, Any], source: str = "<config>") -> Experiment:
    """Validate a raw mapping into an ``Experiment`` or raise one readable ``ConfigError``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping, got {type(data).__name__}")
    try:
        return Experiment.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source, Experiment)) from None


def load_experiment(path: str | Path, **overrides: Any) -> Experiment:
    """Load and validate an experiment YAML; ``overrides`` replace top-level fields (e.g. root)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return experiment_from_dict(data, source=str(p))


def resolve_experiment(config: str | Path | Experiment, root: str | None = None) -> Experiment:
    """The experiment a flow runs: ``config`` is a YAML path (loaded and validated here, once
    per flow run) or an already loaded ``Experiment`` (what the pipeline hands its stages);
    ``root``, when given, replaces the run directory."""
    if isinstance(config, Experiment):
        return (
            config
            if root is None or root == config.root
            else config.model_copy(update={"root": str(root)})
        )
    return load_experiment(config, root=root)


def store_experiment(
    root: str | Path,
    models_by_dataset: dict[str, list[str]],
    *,
    name: str = "imported",
    labels: dict[str, dict[str, str]] | None = None,
) -> tuple[Experiment, dict[str, str]]:
    """An experiment over datasets imported into the store at ``root`` (``dars import
    --config-out``): one ``source: store`` benchmark per dataset routed among the models it has
    (``models`` set when that is not the whole pool), a pool of every such model (imported, so
    never called: no litellm route, no prices), and the original names as labels
    (``labels``: {"dataset" | "model": {stored name: original}}).

    A dataset with fewer than two models cannot be routed: it is left out, and the second value
    returned says why ({dataset: reason}).
    """
    labels = labels or {}
    kept = {d: sorted(set(ms)) for d, ms in models_by_dataset.items() if len(set(ms)) >= 2}
    left_out = {
        d: f"only {len(set(ms))} model(s) ({', '.join(sorted(set(ms)))}): routing needs two"
        for d, ms in models_by_dataset.items()
        if d not in kept
    }
    if not kept:
        raise ConfigError(
            "no imported dataset has at least two models: "
            + "; ".join(f"{d}: {why}" for d, why in left_out.items())
        )
    pool = sorted({m for ms in kept.values() for m in ms})
    model_labels, dataset_labels = labels.get("model", {}), labels.get("dataset", {})
    data: dict[str, Any] = {
        "name": name,
        "root": str(root),
        "benchmarks": [
            {
                "name": d,
                "source": "store",
                **({"label": dataset_labels[d]} if d in dataset_labels else {}),
                **({"models": ms} if ms != pool else {}),
            }
            for d, ms in kept.items()
        ],
        "pool": {
            "models": [
                {"name": m, **({"label": model_labels[m]} if m in model_labels else {})}
                for m in pool
            ]
        },
    }
    return experiment_from_dict(data, source="dars import --config-out"), left_out
