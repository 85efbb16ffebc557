"""Registry behaviour: lazy torch imports, duplicates, unknown names, custom routers."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dars.routers import (
    BUILTIN_FAMILIES,
    TORCH_FAMILIES,
    Router,
    Stats,
    available_routers,
    get_router_class,
    make_router,
    register_router,
)
from dars.routers import registry as registry_module


def test_unknown_name_lists_valid_routers():
    with pytest.raises(ValueError, match="unknown router 'nope'; valid routers: .*knn.*mirt"):
        get_router_class("nope")


def test_duplicate_and_reserved_names_are_rejected(monkeypatch):
    knn = get_router_class("knn")
    with pytest.raises(ValueError, match="already registered by dars.routers.knn.KNNRouter"):
        register_router("knn")(knn)
    # A built-in name not imported yet belongs to its module only.
    monkeypatch.setitem(registry_module.BUILTIN_FAMILIES, "future_family", "dars.routers.future")
    with pytest.raises(ValueError, match="reserved for the built-in dars.routers.future"):

        @register_router("future_family")
        class Impostor(knn):
            pass

    assert "future_family" not in registry_module._REGISTRY


def test_register_requires_a_router_subclass():
    with pytest.raises(TypeError, match="Router subclass"):
        register_router("not_a_router")(dict)


def test_custom_router_registers_and_builds(task):
    @register_router("best_fixed")
    class BestFixed(Router):
        """Routes every query to the model with the best mean training utility."""

        def __init__(self, *, random_state=None):
            self.random_state = random_state

        def _fit(self, X, targets):
            self.mean_q_ = targets.q.mean(axis=0)
            self.mean_c_ = targets.c.mean(axis=0)

        def _predict_stats(self, X):
            n = X.shape[0]
            return Stats(q=np.tile(self.mean_q_, (n, 1)), c=np.tile(self.mean_c_, (n, 1)))

        def _get_state(self):
            return {}, {"q": self.mean_q_, "c": self.mean_c_}

        def _set_state(self, meta, arrays):
            self.mean_q_, self.mean_c_ = arrays["q"], arrays["c"]

    try:
        assert "best_fixed" in available_routers()
        router = make_router("best_fixed").fit(task.X_train, task.targets)
        assert router.name == "best_fixed"
        assert len(set(router.route(task.X_test).tolist())) == 1
    finally:
        registry_module._REGISTRY.pop("best_fixed", None)


def test_torch_families_are_the_declared_ones():
    assert TORCH_FAMILIES <= set(BUILTIN_FAMILIES)
    for family in BUILTIN_FAMILIES:
        assert (get_router_class(family).state_format == "pt") == (family in TORCH_FAMILIES)


_SKLEARN_ONLY = textwrap.dedent(
    """
    import sys
    import numpy as np
    from dars.routers import available_routers, make_router, Targets
    from dars.routers.synthetic import make_synthetic_task

    task = make_synthetic_task(n_train=40, n_test=10, n_features=8, n_models=3)
    assert len(available_routers()) >= 7
    for family in ("knn", "avengers_pro", "mlp"):
        params = {"max_iter": 5} if family == "mlp" else {}
        r = make_router(family, random_state=0, **params).fit(task.X_train, task.targets)
        r.route(task.X_test)
    print("torch" in sys.modules)
    make_router("{torch_family}")
    print("torch" in sys.modules)
    """
)


@pytest.mark.parametrize("torch_family", sorted(TORCH_FAMILIES)[:1])
def test_sklearn_only_run_never_imports_torch(torch_family):
    code = _SKLEARN_ONLY.replace("{torch_family}", torch_family)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    # Before: no torch; after asking for a torch family: torch (so the check can fail).
    assert out.stdout.split() == ["False", "True"]
