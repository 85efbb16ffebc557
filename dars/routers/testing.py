"""Conformance checks for router families: ``check_router(MyRouter)``.

Every family of the registry passes them (``tests/routers/test_conformance.py``), and a family
written elsewhere can be held to the same contract from its own tests::

    from dars.routers.testing import check_router

    def test_my_router_conforms():
        check_router(MyRouter(epochs=20))   # a class, or an unfitted instance to set params

The checks (:data:`CHECKS`, in the order they run):

``registered``
    The class is registered under its ``name`` (``@register_router`` or a ``dars.routers``
    entry point): saved routers are found again by that name.
``constructor``
    ``__init__`` takes keyword-only hyperparameters with defaults, ``random_state`` among
    them, and only stores them (no other attribute, nothing fitted); ``get_params`` returns
    them as given.
``tags``
    ``tags`` is a :class:`~dars.routers.RouterTags`; a family that folds β takes a ``beta``
    and a λ-conditioned family a ``lam_grid`` hyperparameter (the train stage sets them).
``unfitted``
    Predicting or saving before ``fit`` raises ``NotFittedError`` naming the family.
``fit``
    ``fit`` returns ``self`` and sets ``n_features_in_``, ``n_models_``, ``models_`` and
    ``has_sigma_`` (true with a spread in the targets, false without).
``predictions``
    ``route`` is an int64 (n_queries,) argmax of ``predict_utility`` (n_queries, n_models),
    finite. ``tags.predicts_stats`` ⇔ ``predict_stats`` works: its q, c (and σ ≥ 0) have that
    shape and, unless ``tags.lam_conditioned``, ``predict_utility`` is q − λc − βσ; otherwise
    it raises NotImplementedError.
    ``tags.folds_beta`` ⇔ a router fitted with a spread refuses another β. Without a spread β
    changes nothing.
``clone``
    ``sklearn.base.clone`` gives an unfitted router with the same hyperparameters;
    ``set_params`` changes the clone only; ``cls(**get_params())`` rebuilds it.
``same_seed``
    Two fits with the same ``random_state`` predict the same utilities and routes.
``save_load``
    ``save`` writes ``router.json`` and ``state.pt`` when ``tags.needs_torch``, else
    ``state.npz``; ``load_router`` and ``cls.load`` give back the hyperparameters and the same
    predictions, for routers fitted with and without a spread.
``input_validation``
    ``fit`` and prediction reject mismatched rows, non-finite or non-2-D X, wrong targets,
    a bad ``random_state``, a wrong feature width and a negative λ, naming the problem.
``fit_many``
    ``fit_many`` returns one fitted router per draw and leaves ``self`` unfitted; router s
    carries ``random_state = draw_seed(seed, s)`` and, with ``tags.batched_fit_exact``, equals
    the independent fit with that seed (same routes, utilities within ``atol``);
    ``fit_many(exact=True)`` always does. ``route_many`` and
    ``route_lam_grid`` agree with each router's own ``route`` at every λ (the λ-sweep shortcut
    for families that predict λ-free statistics is valid).

The data is a small seeded synthetic routing task (:mod:`dars.routers.synthetic`) unless
``data`` is given. Failures raise :class:`RouterCheckError` (an ``AssertionError``) naming the
family and every failed check.
"""

from __future__ import annotations

import inspect
import math
import re
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone

from dars.routers.base import NotFittedError, Router, RouterTags, draw_seed, route_many
from dars.routers.registry import get_router_class, load_router
from dars.routers.synthetic import SyntheticTask, make_synthetic_task
from dars.routers.targets import BatchedTargets, Targets
from dars.routers.training import route_lam_grid
from dars.utility import DEFAULT_BETA, DEFAULT_LAM

__all__ = ["CHECKS", "CheckData", "RouterCheckError", "check_router", "default_data"]

#: λ values the checks route at: 0, the default and a large one.
LAMS = (0.0, DEFAULT_LAM, 0.3)


class RouterCheckError(AssertionError):
    """A router family broke the Router contract.

    ``family`` is the family's name (or class name), ``failures`` maps each failed check to
    what went wrong.
    """

    def __init__(self, family: str, failures: dict[str, str], n_run: int) -> None:
        self.family = family
        self.failures = dict(failures)
        lines = [f"  {check}: {why}" for check, why in failures.items()]
        super().__init__(
            f"router family {family} failed {len(failures)} of {n_run} conformance check(s):\n"
            + "\n".join(lines)
        )


@dataclass(frozen=True)
class CheckData:
    """What the checks fit and predict on.

    ``X_train`` (n_train, n_features) with ``targets`` for the same rows (with a spread σ, as
    DARS supervision has); ``draws``: single-shot targets for the same rows (S ≥ 2 draws, no
    spread); ``X_test`` (n_test, n_features) to predict on.
    """

    X_train: np.ndarray
    targets: Targets
    draws: BatchedTargets
    X_test: np.ndarray

    @classmethod
    def from_task(cls, task: SyntheticTask, n_draws: int = 3) -> CheckData:
        """The checks' data from a synthetic task (its DARS-style targets and ``n_draws``
        single-shot draws)."""
        return cls(task.X_train, task.targets, task.single_shot(n_draws, seed=1), task.X_test)

    def __post_init__(self) -> None:
        if self.targets.sigma is None:
            raise ValueError("CheckData.targets needs a spread (sigma) to check risk handling")
        if self.draws.sigma is not None or self.draws.n_draws < 2:
            raise ValueError("CheckData.draws must be single-shot: >= 2 draws, no sigma")
        n = len(self.X_train)
        for name, t in (("targets", self.targets), ("draws", self.draws)):
            if t.n_queries != n:
                raise ValueError(f"CheckData.{name} has {t.n_queries} rows, X_train has {n}")


def default_data() -> CheckData:
    """60 training and 30 test queries, 8 features, 3 models, 3 single-shot draws."""
    task = make_synthetic_task(n_train=60, n_test=30, n_features=8, n_models=3, seed=0)
    return CheckData.from_task(task)


class _Skipped(Exception):
    """A check could not run because an earlier step it needs failed."""


class _Run:
    """One family under check: its prototype, the data, and fits shared between checks."""

    def __init__(self, proto: Router, data: CheckData, atol: float) -> None:
        self.proto, self.data, self.atol = proto, data, atol
        self.cls = type(proto)
        self.tags: RouterTags = self.cls.tags
        self._fits: dict[str, Router | Exception] = {}
        # The β a router fitted with a spread answers at: its own when it folds β in.
        self.beta = float(proto.get_params().get("beta", DEFAULT_BETA))
        if not getattr(self.tags, "folds_beta", False):
            self.beta = DEFAULT_BETA

    def new(self, **params: Any) -> Router:
        return clone(self.proto).set_params(**params) if params else clone(self.proto)

    def fit_or_error(self, kind: str) -> Router | Exception:
        """The prototype fitted on the targets with a spread (``dars``) or on draw 0
        (``single``), or what its fit raised; fitted once, shared by the checks."""
        if kind not in self._fits:
            targets = self.data.targets if kind == "dars" else self.data.draws.draw(0)
            try:
                self._fits[kind] = self.new().fit(self.data.X_train, targets)
            except Exception as exc:  # reported by the 'fit' check; the others skip
                self._fits[kind] = exc
        return self._fits[kind]

    def fitted(self, kind: str) -> Router:
        """:meth:`fit_or_error`'s router; checks that need it are skipped when it failed."""
        got = self.fit_or_error(kind)
        if isinstance(got, Exception):
            raise _Skipped(f"fitting failed ({type(got).__name__}: {got}; see 'fit')")
        return got


def _expect(ok: bool, message: str) -> None:
    if not ok:
        raise AssertionError(message)


def _raises(
    kind: type[BaseException], match: str, call: Callable[..., Any], *args: Any, **kw: Any
) -> None:
    """``call(*args, **kw)`` must raise ``kind`` with ``match`` (a regex) in its message."""
    what = getattr(call, "__name__", "call")
    try:
        call(*args, **kw)
    except kind as exc:
        _expect(
            re.search(match, str(exc)) is not None,
            f"{what} raised {kind.__name__} without {match!r} in its message: {exc}",
        )
        return
    except Exception as exc:
        raise AssertionError(
            f"{what} raised {type(exc).__name__}, expected {kind.__name__}: {exc}"
        ) from exc
    raise AssertionError(f"{what} did not raise {kind.__name__} ({match!r})")


def _same(a: np.ndarray, b: np.ndarray, what: str, atol: float = 0.0) -> None:
    a, b = np.asarray(a), np.asarray(b)
    _expect(a.shape == b.shape, f"{what}: shapes {a.shape} and {b.shape} differ")
    diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
    _expect(diff <= atol, f"{what}: differ by up to {diff:.3g} (allowed {atol:g})")


# ------------------------------------------------------------------------------------------------
# the checks
# ------------------------------------------------------------------------------------------------
def _check_registered(run: _Run) -> None:
    name = run.cls.name
    _expect(bool(name), f"{run.cls.__name__} has no family name: register it")
    _expect(get_router_class(name) is run.cls, f"family {name!r} is registered to another class")


def _check_constructor(run: _Run) -> None:
    sig = inspect.signature(run.cls.__init__)
    params = [p for p in sig.parameters.values() if p.name != "self"]
    positional = [p.name for p in params if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    _expect(not positional, f"__init__ parameters must be keyword-only, not {positional}")
    no_default = [p.name for p in params if p.default is inspect.Parameter.empty]
    _expect(not no_default, f"__init__ parameters need defaults: {no_default}")
    names = sorted(p.name for p in params)
    _expect("random_state" in names, "__init__ takes no random_state")
    default = run.cls()
    stored = sorted(vars(default))
    _expect(stored == names, f"__init__ must store exactly its parameters {names}, stores {stored}")
    _expect(sorted(default.get_params()) == names, "get_params does not list the parameters")
    given = run.proto.get_params()
    rebuilt = run.cls(**given).get_params()
    _expect(rebuilt == given, f"__init__ changed its arguments: {given} became {rebuilt}")


def _check_tags(run: _Run) -> None:
    tags = run.tags
    _expect(isinstance(tags, RouterTags), f"tags must be a RouterTags, got {tags!r}")
    params = run.proto.get_params()
    if tags.folds_beta:
        _expect("beta" in params, "tags.folds_beta but no 'beta' hyperparameter")
    if tags.lam_conditioned:
        _expect("lam_grid" in params, "tags.lam_conditioned but no 'lam_grid' hyperparameter")
    if not tags.routes_by_stats:
        _expect(
            run.cls.predict_utility is not Router.predict_utility,
            "tags say utilities are not Stats.utility of λ-free statistics (predicts_stats "
            "False or lam_conditioned), but predict_utility is Router's, which is: the family "
            "must implement predict_utility",
        )


def _check_unfitted(run: _Run) -> None:
    router = run.new()
    X = run.data.X_test
    calls: list[Callable[..., Any]] = [router.route, router.predict_utility]
    if run.tags.predicts_stats:
        calls.append(router.predict_stats)
    for call in calls:
        _raises(NotFittedError, re.escape(run.cls.name), call, X)
    with tempfile.TemporaryDirectory() as tmp:
        _raises(NotFittedError, "", router.save, Path(tmp) / "never")
        _expect(not (Path(tmp) / "never").exists(), "an unfitted save created its directory")


def _check_fit(run: _Run) -> None:
    d = run.data
    n = 20
    router = run.new()
    unnamed = Targets(q=d.targets.q[:n], c=d.targets.c[:n], sigma=d.targets.sigma[:n])
    _expect(router.fit(d.X_train[:n], unnamed) is router, "fit must return self")
    m = d.targets.n_models
    _expect(router.models_ == tuple(f"m{j}" for j in range(m)), "unnamed models are m0, m1, …")
    for kind in ("dars", "single"):
        got = run.fit_or_error(kind)
        if isinstance(got, Exception):
            raise AssertionError(f"fit on the {kind} targets raised {type(got).__name__}: {got}")
    fitted = run.fitted("dars")
    _expect(fitted.n_features_in_ == d.X_train.shape[1], "n_features_in_ is not X's width")
    _expect(fitted.n_models_ == m, f"n_models_ is {fitted.n_models_}, targets have {m}")
    _expect(fitted.models_ == d.targets.models, "models_ does not name the targets' models")
    _expect(fitted.has_sigma_ is True, "has_sigma_ is not True after targets with sigma")
    _expect(run.fitted("single").has_sigma_ is False, "has_sigma_ is not False without sigma")


def _check_predictions(run: _Run) -> None:
    X = run.data.X_test
    shape = (X.shape[0], run.data.targets.n_models)
    for kind in ("dars", "single"):
        fitted = run.fitted(kind)
        routes = fitted.route(X)
        _expect(routes.shape == shape[:1], f"{kind}: route shape {routes.shape}, not {shape[:1]}")
        _expect(routes.dtype == np.int64, f"{kind}: route dtype {routes.dtype}, not int64")
        u = fitted.predict_utility(X, DEFAULT_LAM, run.beta)
        _expect(u.shape == shape, f"{kind}: predict_utility shape {u.shape}, not {shape}")
        _expect(bool(np.isfinite(u).all()), f"{kind}: predict_utility has non-finite values")
        _same(routes, np.argmax(fitted.predict_utility(X), axis=1), f"{kind}: route vs argmax")
        if not run.tags.predicts_stats:
            _raises(NotImplementedError, "", fitted.predict_stats, X)
        else:
            stats = fitted.predict_stats(X)
            _expect(stats.q.shape == shape and stats.c.shape == shape, f"{kind}: stats shape")
            if stats.sigma is not None:
                _expect(stats.sigma.shape == shape, f"{kind}: sigma shape {stats.sigma.shape}")
                _expect(bool((stats.sigma >= 0).all()), f"{kind}: predicted sigma < 0")
            for lam in LAMS if run.tags.routes_by_stats else ():
                sigma = 0.0 if stats.sigma is None else stats.sigma
                expected = stats.q - lam * stats.c - run.beta * sigma
                got = fitted.predict_utility(X, lam, run.beta)
                _same(got, expected, f"{kind}: predict_utility vs q - λc - βσ at λ={lam}", 1e-9)
    other = run.beta + 0.3
    dars = run.fitted("dars")
    if run.tags.folds_beta:
        _raises(ValueError, "beta", dars.predict_utility, X, DEFAULT_LAM, other)
    else:
        dars.predict_utility(X, DEFAULT_LAM, other)  # must answer at any β
    single = run.fitted("single")
    _same(
        single.predict_utility(X, DEFAULT_LAM, 0.0),
        single.predict_utility(X, DEFAULT_LAM, 0.9),
        "without a spread, β must not change predict_utility",
    )


def _check_clone(run: _Run) -> None:
    fitted = run.fitted("dars")
    fresh = clone(fitted)
    _expect(fresh.get_params() == fitted.get_params(), "clone changed the hyperparameters")
    _expect(not hasattr(fresh, "n_models_"), "a clone is fitted")
    seed = fitted.random_state
    fresh.set_params(random_state=seed + 7)
    _expect(fresh.random_state == seed + 7, "set_params did not set random_state")
    _expect(fitted.random_state == seed, "set_params on a clone changed the original")
    again = run.cls(**fitted.get_params())
    _expect(again.get_params() == fitted.get_params(), "cls(**get_params()) differs")


def _check_same_seed(run: _Run) -> None:
    X = run.data.X_test
    first = run.fitted("dars")
    again = run.new().fit(run.data.X_train, run.data.targets)
    _same(again.predict_utility(X), first.predict_utility(X), "utilities of two seeded fits")
    _same(again.route(X), first.route(X), "routes of two seeded fits")


def _check_save_load(run: _Run) -> None:
    X = run.data.X_test
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("dars", "single"):
            fitted = run.fitted(kind)
            path = fitted.save(Path(tmp) / kind)
            _expect((path / "router.json").is_file(), f"{kind}: no router.json saved")
            state = "state.pt" if run.tags.needs_torch else "state.npz"
            unused = "state.npz" if run.tags.needs_torch else "state.pt"
            _expect(
                (path / state).is_file() and not (path / unused).exists(),
                f"{kind}: tags.needs_torch={run.tags.needs_torch} but the state saved is "
                f"{sorted(p.name for p in path.glob('state.*'))}, not [{state!r}]",
            )
            for loaded in (load_router(path), run.cls.load(path)):
                _expect(type(loaded) is run.cls, f"{kind}: loaded a {type(loaded).__name__}")
                _expect(loaded.get_params() == fitted.get_params(), f"{kind}: params differ")
                _expect(
                    loaded.models_ == fitted.models_ and loaded.has_sigma_ == fitted.has_sigma_,
                    f"{kind}: models_/has_sigma_ differ after loading",
                )
                for lam in LAMS:
                    _same(
                        loaded.predict_utility(X, lam, run.beta),
                        fitted.predict_utility(X, lam, run.beta),
                        f"{kind}: utilities after loading (λ={lam})",
                    )
                _same(loaded.route(X), fitted.route(X), f"{kind}: routes after loading")


def _check_input_validation(run: _Run) -> None:
    d = run.data
    t = d.targets
    router = run.new()
    _raises(ValueError, "rows must be the same queries", router.fit, d.X_train[:-1], t)
    bad = d.X_train.copy()
    bad[5, 0] = np.nan
    _raises(ValueError, "row 5", router.fit, bad, t)
    _raises(ValueError, "2-D", router.fit, d.X_train[0], t)
    _raises(TypeError, "Targets", router.fit, d.X_train, {"q": t.q})
    _raises(ValueError, "random_state", run.new(random_state=-1).fit, d.X_train, t)
    _expect(not hasattr(router, "n_models_"), "a rejected fit left the router fitted")
    fitted = run.fitted("dars")
    width = d.X_train.shape[1]
    _raises(ValueError, f"fitted on {width}", fitted.route, d.X_test[:, : width - 1])
    _raises(ValueError, "lam", fitted.route, d.X_test, lam=-1.0)


def _check_fit_many(run: _Run) -> None:
    d = run.data
    X = d.X_test
    template = run.new()
    batched = template.fit_many(d.X_train, d.draws)
    _expect(not hasattr(template, "n_models_"), "fit_many fitted its template")
    _expect(len(batched) == d.draws.n_draws, f"{len(batched)} routers for {d.draws.n_draws} draws")
    params = template.get_params()
    seeds = [draw_seed(params["random_state"], s) for s in range(d.draws.n_draws)]
    for r, seed in zip(batched, seeds, strict=True):
        same = r.get_params() == {**params, "random_state": seed}
        _expect(type(r) is run.cls and same, "fit_many changed the family or the draw seeds")
        _expect(r.n_models_ == d.draws.n_models and not r.has_sigma_, "fit_many: fitted attrs")
    sequential = [
        run.new(random_state=seed).fit(d.X_train, d.draws.draw(s)) for s, seed in enumerate(seeds)
    ]
    exact = run.new().fit_many(d.X_train, d.draws, exact=True)
    if run.tags.batched_fit_exact:
        # exact=True takes the batched path too: both within atol of independent fits.
        pairs = [("fit_many with tags.batched_fit_exact", batched, run.atol)]
        pairs.append(("fit_many(exact=True)", exact, run.atol))
    else:
        pairs = [("fit_many(exact=True) of an inexact batched fit", exact, 0.0)]
    for what, routers, atol in pairs:
        for s, (r, ref) in enumerate(zip(routers, sequential, strict=True)):
            _same(r.predict_utility(X), ref.predict_utility(X), f"{what}, draw {s}", atol)
            _same(r.route(X), ref.route(X), f"{what}: routes of draw {s}")
    own = np.stack([r.route(X, DEFAULT_LAM, run.beta) for r in batched])
    _same(route_many(batched, X, DEFAULT_LAM, run.beta), own, "route_many vs each route")
    grid = route_lam_grid(batched, X, list(LAMS), run.beta)
    for i, lam in enumerate(LAMS):
        own = np.stack([r.route(X, lam, run.beta) for r in batched])
        _same(grid[i], own, f"route_lam_grid vs each route at λ={lam}")


_CHECKS: dict[str, Callable[[_Run], None]] = {
    "registered": _check_registered,
    "constructor": _check_constructor,
    "tags": _check_tags,
    "unfitted": _check_unfitted,
    "fit": _check_fit,
    "predictions": _check_predictions,
    "clone": _check_clone,
    "same_seed": _check_same_seed,
    "save_load": _check_save_load,
    "input_validation": _check_input_validation,
    "fit_many": _check_fit_many,
}
#: Names of the conformance checks, in the order they run.
CHECKS: tuple[str, ...] = tuple(_CHECKS)


def check_router(
    router: Router | type[Router],
    *,
    data: CheckData | None = None,
    checks: Iterable[str] | None = None,
    atol: float = 1e-5,
) -> list[str]:
    """Hold a router family to the Router contract (see the module docstring).

    ``router``: the family's class (checked with default hyperparameters and
    ``random_state=0``) or an unfitted instance (its hyperparameters are used, e.g. a short
    training budget; ``random_state`` None becomes 0). ``data``: what to fit on (default: a
    small synthetic task, :func:`default_data`). ``checks``: a subset of :data:`CHECKS`
    (default all). ``atol``: how far batched fits may differ from independent ones in predicted
    utility (float32 torch training), for families with ``tags.batched_fit_exact``.

    Returns the names of the checks run, all passed; raises :class:`RouterCheckError` naming
    the family and each failed check with what went wrong.
    """
    if isinstance(router, type):
        if not issubclass(router, Router):
            raise TypeError(f"check_router needs a Router subclass or instance, got {router!r}")
        try:
            proto = router(random_state=0)
        except TypeError as exc:
            why = f"{router.__name__}(random_state=0) raised TypeError: {exc}"
            raise RouterCheckError(router.__name__, {"constructor": why}, 1) from exc
    elif isinstance(router, Router):
        proto = clone(router)
        if getattr(proto, "random_state", None) is None:
            proto.set_params(random_state=0)  # same seed → same output needs a seed
    else:
        raise TypeError(f"check_router needs a Router subclass or instance, got {router!r}")
    names = list(CHECKS if checks is None else checks)
    unknown = [n for n in names if n not in _CHECKS]
    if unknown or not names:
        raise ValueError(f"unknown or no check(s) {unknown}; valid: {', '.join(CHECKS)}")
    if not (isinstance(atol, int | float) and math.isfinite(atol) and atol >= 0):
        raise ValueError(f"atol must be a finite number >= 0, got {atol!r}")

    run = _Run(proto, data if data is not None else default_data(), float(atol))
    failures: dict[str, str] = {}
    for name in names:
        try:
            _CHECKS[name](run)
        except _Skipped as exc:
            failures[name] = f"not run: {exc}"
        except AssertionError as exc:
            failures[name] = str(exc)
        except Exception as exc:  # a crash is a failed check too; report it with the others
            failures[name] = f"raised {type(exc).__name__}: {exc}"
    if failures:
        label = f"{run.cls.name!r} ({run.cls.__name__})" if run.cls.name else run.cls.__name__
        raise RouterCheckError(label, failures, len(names))
    return names
