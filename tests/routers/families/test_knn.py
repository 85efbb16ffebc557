"""knn: inverse-distance weighted neighbours; exact batched fits."""

from __future__ import annotations

import numpy as np
import pytest

from dars.routers import RouterTags, Targets, get_router_class, make_router


def test_declares_the_default_tags():
    assert get_router_class("knn").tags == RouterTags()


def test_fewer_queries_than_neighbours_uses_them_all_and_an_exact_match_wins():
    X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    q = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    router = make_router("knn", random_state=0).fit(X, Targets(q=q, c=np.zeros((3, 2))))
    assert router.n_neighbors_ == 3
    # A query equal to a training query takes that query's targets only.
    np.testing.assert_array_equal(router.predict_stats(X[1:2]).q, q[1:2])


@pytest.mark.parametrize("param", [{"n_neighbors": 0}, {"n_neighbors": 2.5}])
def test_bad_hyperparameters_name_the_field(param, task):
    (name,) = param
    with pytest.raises(ValueError, match=f"knn: {name}"):
        make_router("knn", **param).fit(task.X_train, task.targets)
