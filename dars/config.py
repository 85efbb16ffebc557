"""Typed experiment configuration.

An experiment YAML is validated once, when it is loaded: every later stage receives an
``Experiment`` object and never re-reads raw dictionaries. Validation errors are turned into one
``ConfigError`` whose message names the file, the dotted field path and, where there is a closed
set, the allowed values.

What :func:`load_experiment` checks, so that nothing knowable at load fails later (after money
was spent): the file is UTF-8 and YAML without duplicate keys; every field's type and range
(numbers finite, ``max_tokens`` ≥ 1); names that refer to registries (benchmarks, router
families, the diagnostics definition, the pool's models); the run root is a path or a
``file://`` URI and not a file; a model names at most one key source; and, for
each collected benchmark, whatever its data tells without a network (:func:`check_sources`:
``path`` exists, ``options`` are accepted, ``n_train`` + ``n_test`` fit the items). A hub
benchmark without a local copy (no ``path``, nothing cached) is sized when collect loads it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable
from pathlib import Path
from typing import Annotated, Any, Literal

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

from dars.presets import PRESETS, split_router_name
from dars.utility import DEFAULT_BETA, DEFAULT_LAM

# Authors' released defaults (see docs/architecture.md).
DEFAULT_MAX_TOKENS: dict[str, int] = {"gpqa": 768, "math500": 3072, "drop800": 512}
FALLBACK_MAX_TOKENS = 512

#: litellm route prefix of the simulated pool (``dars.sim``).
SIM_PREFIX = "dars-sim/"

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_BLOCK_NAME_RE = re.compile(r"^[a-z0-9-]+$")


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message says where and what is allowed."""


class _Strict(BaseModel):
    # ``allow_inf_nan=False``: YAML reads ``.inf`` and ``.nan`` as floats, and no weight, price
    # or timeout of a run is meaningful as either (λ = inf would make every router pick the
    # cheapest model without a word).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelSpec(_Strict):
    """One LLM in the pool (or the rewriter).

    ``name`` is the short id used in partition paths and tables; ``litellm_model`` is what litellm
    is called with (``openrouter/qwen/qwen3-32b``, ``dars-sim/strong``, ``openai/gpt-4o`` …);
    None for a model whose observations were imported (``dars import``) and that is never called.
    ``label`` is how reports show the model when it differs from ``name`` (e.g. an imported
    name that was not path-safe, ``gpt-4o[json-schema]`` stored as ``gpt-4o-json-schema``).
    Prices are USD per one million tokens and, when set, override litellm's cost map.
    The key comes from one of two places, never from the config itself: ``api_key_env`` names
    the environment variable holding it, ``api_key_secret`` the Prefect ``Secret`` block (read
    through the Prefect API once per process, :mod:`dars.llm.keys`); a model may name one of
    them, not both. Either way the key never appears in a config, a flow parameter, a log or a
    file we write. A model with an ``api_base`` and neither is a keyless server (a local
    llama.cpp, vLLM or Ollama): it is sent a placeholder key, never one from the environment.

    ``transport`` is how calls reach the model (:mod:`dars.llm.client`): ``auto`` (default)
    calls an in-process provider that offers a direct path (the simulated pool) in process and
    everything else through litellm; ``litellm`` sends every call through ``litellm.acompletion``
    (the simulated pool included); ``http`` posts straight to an OpenAI-compatible
    ``/chat/completions`` endpoint (``openai/<model>`` routes only: vLLM, llama.cpp, OpenAI;
    ``api_base`` defaults to OpenAI's) with one shared HTTP session per process, the same
    retries, limits and error classes, and litellm's cost map still pricing the tokens.
    """

    name: str
    litellm_model: str | None = None
    label: str | None = None
    api_base: str | None = None
    api_key_env: str | None = None
    api_key_secret: str | None = None
    input_price_per_m: float | None = Field(default=None, ge=0)
    output_price_per_m: float | None = Field(default=None, ge=0)
    max_concurrency: int = Field(default=8, ge=1)
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    extra_params: dict[str, Any] = Field(default_factory=dict)
    transport: Literal["auto", "litellm", "http"] = "auto"

    @field_validator("name")
    @classmethod
    def _name_is_path_safe(cls, v: str) -> str:
        # The name becomes a hive partition value (model=<name>), so keep it path-safe.
        if not _NAME_RE.match(v):
            raise ValueError(
                f"model name {v!r} must match {_NAME_RE.pattern} (letters, digits, '.', '_', '-')"
            )
        return v

    @field_validator("api_key_secret")
    @classmethod
    def _block_name(cls, v: str | None) -> str | None:
        # Prefect's rule for block document names (prefect.types.names.BlockDocumentName),
        # checked here so a typo fails at load, not at the first call of the model.
        if v is not None and not _BLOCK_NAME_RE.match(v):
            raise ValueError(
                f"{v!r} is not a Prefect block name: it must match {_BLOCK_NAME_RE.pattern} "
                "(lowercase letters, digits and dashes)"
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
                    "variable named in api_key_env, or a Prefect Secret block named in "
                    "api_key_secret"
                )
        return v

    @model_validator(mode="after")
    def _http_needs_openai_route(self) -> ModelSpec:
        if self.transport == "http" and not (self.litellm_model or "").startswith("openai/"):
            raise ValueError(
                f"model {self.name!r}: transport 'http' speaks the OpenAI chat-completions "
                f"protocol and needs an 'openai/<model>' litellm_model, got "
                f"{self.litellm_model!r}; use transport 'litellm' (or 'auto') for other routes"
            )
        return self

    @model_validator(mode="after")
    def _one_key_source(self) -> ModelSpec:
        if self.api_key_env is not None and self.api_key_secret is not None:
            raise ValueError(
                f"model {self.name!r} sets both api_key_env and api_key_secret; keep one "
                "(the environment variable or the Prefect Secret block holding its key)"
            )
        return self


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
    # Per benchmark name; a benchmark not listed gets FALLBACK_MAX_TOKENS.
    max_tokens: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=lambda: dict(DEFAULT_MAX_TOKENS)
    )

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

    @field_validator("ablation_family")
    @classmethod
    def _known_family(cls, v: str) -> str:
        return _check_families([v])[0]

    @field_validator("sweep_families")
    @classmethod
    def _known_families(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _check_families(v)

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
    # Observations whose cost range min-max normalises the training costs: `train` (the train
    # split only) or `all` (train and test, as the paper's code does; the test views are always
    # scaled over train and test).
    cost_scope: Literal["train", "all"] = "train"
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
    # Hyperparameter set of every family (`tuned`: dars's designs; `paper`: the DARS authors'
    # routers), per family overridable; a `families` entry `<family>-<preset>` names one
    # explicitly (dars.presets).
    router_preset: str = "tuned"
    family_presets: dict[str, str] = Field(default_factory=dict)
    encoder: str = "all-MiniLM-L6-v2"
    evaluation: Evaluation = Field(default_factory=Evaluation)
    diagnostics: Diagnostics = Field(default_factory=Diagnostics)

    @field_validator("families")
    @classmethod
    def _known_families(cls, v: list[str]) -> list[str]:
        return _check_families(v)

    @field_validator("router_preset")
    @classmethod
    def _known_preset(cls, v: str) -> str:
        return _check_preset(v)

    @field_validator("family_presets")
    @classmethod
    def _known_preset_families(cls, v: dict[str, str]) -> dict[str, str]:
        _check_families(list(v), presets=False)
        for preset in v.values():
            _check_preset(preset)
        return v

    def router_preset_of(self, name: str) -> str:
        """The preset ``families`` entry ``name`` is trained with: its explicit suffix
        (``mlp-paper``), else ``family_presets[family]``, else ``router_preset``."""
        family, preset = split_router_name(name)
        return preset or self.family_presets.get(family, self.router_preset)

    @field_validator("root")
    @classmethod
    def _root_is_a_path_or_file_uri(cls, v: str) -> str:
        # Kept as given (flow-run names and tags show it); RunLayout turns it into a path.
        from dars.storage.layout import StorageError, root_path

        try:
            root_path(v)
        except StorageError as exc:
            raise ValueError(str(exc)) from None
        return v

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
            raise ValueError(f"benchmarks: listed twice: {sorted(dup)}")
        pool = set(self.pool.names)
        for i, b in enumerate(self.benchmarks):
            unknown = [m for m in b.models or () if m not in pool]
            if unknown:
                raise ValueError(
                    f"benchmarks.{i}.models: models {unknown} are not in the pool; allowed "
                    f"values: {', '.join(self.pool.names)}"
                )
        # A typo in a max_tokens key would silently give that benchmark the fallback.
        from dars.benchmarks import available

        known = set(available()) | set(names)
        stray = sorted(set(self.protocol.max_tokens) - known)
        if stray:
            raise ValueError(
                f"protocol.max_tokens: {stray} name no benchmark of this experiment nor a "
                f"registered one; allowed keys: {', '.join(sorted(known))}"
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
                    f"pool.models: models {who} have no litellm_model, but benchmarks "
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


def router_families() -> list[str]:
    """Every router family name a config may use, without importing the routers package.

    ``dars.routers`` pulls in scikit-learn (seconds on a busy machine), and most commands that
    load a config (status, collect, supervise) never fit a router. So, unless it is imported
    already (then its registry also knows families registered at run time), the names are the
    built-in family modules (listed, not imported) and the ``dars.routers`` entry points, the
    same sources the registry reads.
    """
    import importlib.util
    import pkgutil
    import sys
    from importlib.metadata import entry_points

    if "dars.routers.registry" in sys.modules:
        return sys.modules["dars.routers.registry"].available_routers()
    spec = importlib.util.find_spec("dars")
    assert spec is not None and spec.submodule_search_locations is not None
    families = [str(Path(p) / "routers" / "families") for p in spec.submodule_search_locations]
    names = {m.name for m in pkgutil.iter_modules(families)}
    names |= {ep.name for ep in entry_points(group="dars.routers")}
    return sorted(names)


def _check_preset(v: str) -> str:
    if v not in PRESETS:
        raise ValueError(f"unknown router preset {v!r}; allowed values: {', '.join(PRESETS)}")
    return v


def _check_families(v: list[str], *, presets: bool = True) -> list[str]:
    """``v`` when every entry is a router family (or, with ``presets``, ``<family>-<preset>``,
    dars.presets), else ValueError naming the unknown ones and the allowed values."""
    allowed = router_families()
    unknown = [f for f in v if (split_router_name(f)[0] if presets else f) not in allowed]
    if unknown:
        also = f" (each optionally suffixed -{' or -'.join(PRESETS)})" if presets else ""
        raise ValueError(
            f"unknown router famil{'y' if len(unknown) == 1 else 'ies'} "
            f"{', '.join(map(repr, unknown))}; allowed values: {', '.join(allowed)}{also}"
        )
    return v


def _format_errors(err: ValidationError, source: str, model: type[BaseModel]) -> str:
    lines = []
    for e in err.errors():
        # A check of the whole experiment (loc empty) names its fields in the message.
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            allowed = _allowed_fields(model, e["loc"][:-1])
            msg = "unknown field" + (f"; allowed fields: {', '.join(allowed)}" if allowed else "")
        elif e["type"] == "missing":
            msg = "field required"
        elif e["type"] == "value_error":
            msg = str(e["ctx"]["error"]) if "error" in e.get("ctx", {}) else msg
        lines.append(f"{source}: {loc}: {msg}" if loc else f"{source}: {msg}")
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


class _DuplicateKeyError(yaml.YAMLError):
    """A mapping of the YAML names a key twice (the message says which, and the lines)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a mapping with the same key twice: PyYAML keeps the last
    value silently, so ``lam: 0.05`` … ``lam: 5`` further down would win without a word."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if isinstance(key, Hashable):
                if key in seen:
                    raise _DuplicateKeyError(
                        f"line {line}: duplicate key {key!r} (first at line {seen[key]}); "
                        "keep one of them"
                    )
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> Any:
    """The YAML document in ``path``; ``ConfigError`` (one line, naming the file and the line)
    when it is not UTF-8, not YAML, or has a duplicate key."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}: line {line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start}); save the file as UTF-8"
        ) from None
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKeyError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"{problem} ({context})" if context else problem
        raise ConfigError(f"{path}: {where}not valid YAML: {detail}") from None


def check_root(root: str | Path, field: str = "root") -> None:
    """Raise ``ConfigError`` when the run directory ``root`` cannot be one: a URI other than
    ``file://`` + an absolute path (:func:`dars.storage.layout.root_path`), or it, or the
    nearest of its parents that exists, is not a directory (``--root /etc/hostname`` would
    otherwise read as an empty store: "everything missing")."""
    from dars.storage.layout import StorageError, root_path

    try:
        p = root_path(root)
    except StorageError as exc:
        raise ConfigError(f"{field}: {exc}") from None
    for q in (p, *p.parents):
        if q.exists():
            if not q.is_dir():
                what = "is" if q == p else f"is inside {q}, which is"
                raise ConfigError(
                    f"{field}: {p} {what} a file, not a directory; pick a run directory"
                )
            return


def check_benchmark_spec(spec: BenchmarkSpec) -> tuple[str, str] | None:
    """The first problem of a collected benchmark entry that shows without a network, as
    (field, message), or None: ``path`` is not a file; the benchmark refuses its ``options``;
    its items cannot be read (the message names the file, the row and the field); or there are
    fewer items than ``n_train`` + ``n_test``. Items are only loaded when that is local
    (:meth:`dars.benchmarks.Benchmark.loads_offline`); a hub benchmark without a copy is sized
    when collect loads it."""
    if spec.path is not None and not Path(spec.path).expanduser().is_file():
        what = "a directory" if Path(spec.path).expanduser().is_dir() else "not found"
        return "path", f"benchmark file {spec.path} is {what}; give an existing .jsonl/.parquet"
    from dars.benchmarks import get

    try:
        bench = get(spec.name, **spec.options)
    except ValueError as exc:  # unknown option names, or a value the benchmark refuses
        return "options", str(exc)
    if not bench.loads_offline(spec.path):
        return None
    try:
        items = bench.load(spec.path)
    except FileNotFoundError as exc:  # e.g. a user-file benchmark without `path`
        return "path", " ".join(str(exc).split())
    except ValueError as exc:  # malformed rows (BenchmarkDataError), bad option values
        field = "options" if spec.path is None else "path"
        return field, " ".join(str(exc).split())
    need = spec.n_train + (spec.n_test or 0)
    if len(items) < need:
        field = "n_train" if len(items) < spec.n_train else "n_test"
        asked = f"n_train={spec.n_train}" + (f" + n_test={spec.n_test}" if spec.n_test else "")
        return field, (
            f"{asked} needs {need} items, but benchmark {spec.name!r} has {len(items)}"
            + (f" (options {spec.options})" if spec.options else "")
            + "; lower it or use a larger benchmark"
        )
    return None


def check_sources(exp: Experiment, source: str) -> None:
    """Check each collected benchmark against its data, as far as that needs no network:
    ``path`` exists, the benchmark accepts its ``options``, and its items (generated, read from
    ``path`` or from the local cache) hold ``n_train`` + ``n_test``. Raises one ``ConfigError``
    line naming the file, the field and what is allowed."""
    for i, b in enumerate(exp.benchmarks):
        if b.source != "benchmark":
            continue
        problem = check_benchmark_spec(b)
        if problem is not None:
            field, message = problem
            raise ConfigError(f"{source}: benchmarks.{i}.{field}: {message}")


def load_experiment(path: str | Path, **overrides: Any) -> Experiment:
    """Load and validate an experiment YAML; ``overrides`` replace top-level fields (e.g. root).

    Everything knowable at load is checked here (see the module docstring); every problem is a
    ``ConfigError`` naming the file and the field."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    data = read_yaml(p)
    if data is None:
        raise ConfigError(f"{p}: the file is empty; an experiment needs `benchmarks` and `pool`")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    if overrides.get("root") is not None:
        check_root(overrides["root"], "--root")
    data.update({k: v for k, v in overrides.items() if v is not None})
    exp = experiment_from_dict(data, source=str(p))
    check_root(exp.root, "--root" if overrides.get("root") is not None else f"{p}: root")
    check_sources(exp, str(p))
    return exp


def resolve_experiment(config: str | Path | Experiment, root: str | None = None) -> Experiment:
    """The experiment a flow runs: ``config`` is a YAML path (loaded and validated here, once
    per flow run) or an already loaded ``Experiment`` (what the pipeline hands its stages);
    ``root``, when given, replaces the run directory."""
    if isinstance(config, Experiment):
        if root is None or root == config.root:
            return config
        check_root(root, "root")  # model_copy validates nothing
        return config.model_copy(update={"root": str(root)})
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
