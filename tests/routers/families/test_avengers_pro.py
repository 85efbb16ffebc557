"""avengers_pro: per-cluster statistics of KMeans clusters; exact batched fits."""

from __future__ import annotations

import numpy as np
import pytest

from dars.routers import RouterTags, Targets, get_router_class, make_router


def test_declares_the_default_tags():
    assert get_router_class("avengers_pro").tags == RouterTags()


def test_fewer_queries_than_clusters_caps_the_clusters():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 3))
    targets = Targets(q=rng.uniform(size=(5, 2)), c=np.zeros((5, 2)))
    router = make_router("avengers_pro", random_state=0).fit(X, targets)
    assert router.centroids_.shape == (5, 3) and router.cluster_sizes_.sum() == 5
    assert router.route(X).shape == (5,)


@pytest.mark.parametrize("param", [{"top_k": 0}, {"n_clusters": 0}, {"n_init": True}])
def test_bad_hyperparameters_name_the_field(param, task):
    (name,) = param
    with pytest.raises(ValueError, match=f"avengers_pro: {name}"):
        make_router("avengers_pro", **param).fit(task.X_train, task.targets)
