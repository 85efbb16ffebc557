"""Every registered router family passes dars.routers.testing.check_router, and the checks catch
a family that breaks the contract."""

from __future__ import annotations

import numpy as np
import pytest

from dars.routers import RouterTags, Stats, available_routers, get_router_class, register_router
from dars.routers.testing import CHECKS, CheckData, RouterCheckError, check_router
from tests.routers.toy_family import BestFixedRouter

FAMILIES = available_routers()


def test_registry_lists_the_seven_families():
    assert set(FAMILIES) >= {
        "mlp",
        "knn",
        "embedllm",
        "avengers_pro",
        "graph_router",
        "mirt",
        "rm_softmax",
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_family_conforms(family):
    assert check_router(get_router_class(family)) == list(CHECKS)


def test_checks_run_on_given_data_and_hyperparameters(task):
    # An instance sets the hyperparameters (a short budget); data can be the caller's.
    data = CheckData.from_task(task, n_draws=2)
    router = get_router_class("mirt")(epochs=5, random_state=None)
    assert check_router(router, data=data, checks=["fit", "save_load"]) == ["fit", "save_load"]
    with pytest.raises(ValueError, match="valid: registered, constructor"):
        check_router(router, checks=["nope"])
    with pytest.raises(ValueError, match="sigma"):
        CheckData(task.X_train, task.single_shot(1).draw(0), task.single_shot(2), task.X_test)


def test_toy_third_party_family_conforms(scratch_registry):
    @register_router("best_fixed")
    class Toy(BestFixedRouter):
        pass

    assert "best_fixed" in available_routers()
    assert check_router(Toy) == list(CHECKS)
    assert check_router(Toy(shrink=0.5)) == list(CHECKS)


# ------------------------------------------------------------------------------------------------
# families that break one rule each, and the check that must catch it
# ------------------------------------------------------------------------------------------------
class StoresMore(BestFixedRouter):
    def __init__(self, *, shrink: float = 0.0, random_state: int | None = None) -> None:
        super().__init__(shrink=shrink, random_state=random_state)
        self.cache_ = {}  # learned state belongs in fit


class PositionalParam(BestFixedRouter):
    def __init__(self, shrink: float = 0.0, *, random_state: int | None = None) -> None:
        super().__init__(shrink=shrink, random_state=random_state)


class ClaimsNoStats(BestFixedRouter):
    tags = RouterTags(predicts_stats=False)  # yet predict_stats works


class ClaimsTorch(BestFixedRouter):
    tags = RouterTags(needs_torch=True)  # yet saves state.npz


class ClaimsFoldedBeta(BestFixedRouter):
    tags = RouterTags(folds_beta=True)  # no beta hyperparameter, answers at any β


class ForgetsSigma(BestFixedRouter):
    def _get_state(self):
        return {}, {"q": self.mean_q_, "c": self.mean_c_}  # σ lost on save


class Unseeded(BestFixedRouter):
    def _fit(self, X, targets):
        super()._fit(X, targets)
        self.mean_q_ = np.clip(self.mean_q_ + np.random.default_rng().normal(0, 0.1), 0, 1)


class UncheckedRoute(BestFixedRouter):
    def route(self, X, lam=0.05, beta=0.2):
        if not hasattr(self, "n_models_"):
            return np.zeros(len(X), dtype=np.int64)  # should raise NotFittedError
        return super().route(X, lam, beta)


class InconsistentUtility(BestFixedRouter):
    def predict_utility(self, X, lam=0.05, beta=0.2):
        return super().predict_utility(X, lam, beta) + 0.01  # not q − λc − βσ


class SloppyBatch(BestFixedRouter):
    def _fit_batched(self, X, targets, chunk_size, seeds):
        first = self.__class__(**self.get_params()).fit(X, targets.draw(0))
        return [first] * targets.n_draws  # claims exactness, reuses draw 0


class ConstantStatsBadShape(BestFixedRouter):
    def _predict_stats(self, X):
        return Stats(q=self.mean_q_[None, :], c=self.mean_c_[None, :])


BROKEN = [
    (StoresMore, "constructor"),
    (PositionalParam, "constructor"),
    (ClaimsNoStats, "tags"),
    (ClaimsNoStats, "predictions"),
    (ClaimsTorch, "save_load"),
    (ClaimsFoldedBeta, "tags"),
    (ClaimsFoldedBeta, "predictions"),
    (ForgetsSigma, "save_load"),
    (Unseeded, "same_seed"),
    (UncheckedRoute, "unfitted"),
    (InconsistentUtility, "predictions"),
    (SloppyBatch, "fit_many"),
    (ConstantStatsBadShape, "predictions"),
]


@pytest.mark.parametrize(("broken", "check"), BROKEN, ids=lambda v: getattr(v, "__name__", v))
def test_a_broken_family_is_caught_by_name(broken, check, scratch_registry):
    name = f"broken_{broken.__name__.lower()}"
    cls = register_router(name)(type(broken.__name__, (broken,), {}))
    with pytest.raises(RouterCheckError) as info:
        check_router(cls)
    err = info.value
    assert check in err.failures, err
    assert isinstance(err, AssertionError)
    assert str(err).startswith(f"router family '{name}' ({broken.__name__}) failed")
    # The toy it derives from passes the same check: the failure is the broken rule.
    base = register_router(f"{name}_base")(type("Base", (BestFixedRouter,), {}))
    check_router(base, checks=[check])


def test_unregistered_family_and_missing_random_state_are_named():
    class Unregistered(BestFixedRouter):
        pass

    with pytest.raises(RouterCheckError, match="registered: Unregistered has no family name"):
        check_router(Unregistered, checks=["registered"])
    with pytest.raises(RouterCheckError, match="save_load: raised TypeError: .*not a registered"):
        check_router(Unregistered, checks=["save_load"])

    class NoSeed(BestFixedRouter):
        def __init__(self, *, shrink: float = 0.0) -> None:
            self.shrink = shrink

    with pytest.raises(RouterCheckError, match="constructor: .*random_state"):
        check_router(NoSeed)
