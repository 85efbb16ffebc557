"""The one utility u = q − λc − βσ: numpy and polars forms agree with hand values."""

from __future__ import annotations

import numpy as np
import polars as pl

from dars.utility import DEFAULT_BETA, DEFAULT_LAM, utility, utility_expr


def test_defaults_are_the_authors():
    assert (DEFAULT_LAM, DEFAULT_BETA) == (0.05, 0.2)


def test_numpy_form_by_hand():
    q, c, s = np.array([0.8, 0.4]), np.array([1.0, 0.0]), np.array([0.5, 0.0])
    np.testing.assert_allclose(utility(q, c, s), [0.8 - 0.05 - 0.1, 0.4])
    np.testing.assert_allclose(utility(q, c), [0.75, 0.4])  # no spread: no risk term
    np.testing.assert_allclose(utility(q, c, s, lam=1.0, beta=0.0), [-0.2, 0.4])


def test_numpy_form_broadcasts_a_lam_grid():
    q, c = np.array([[0.8, 0.4]]), np.array([[1.0, 0.0]])
    lams = np.array([0.0, 0.5])[:, None, None]
    np.testing.assert_allclose(utility(q, c, lam=lams)[:, 0, 0], [0.8, 0.3])


def test_polars_form_equals_numpy_form_bit_for_bit():
    rng = np.random.default_rng(0)
    q, c, s = rng.uniform(size=(3, 50))
    frame = pl.DataFrame({"q": q, "c": c, "s": s, "lam": rng.uniform(size=50)})
    got = frame.select(u=utility_expr("q", "c", "s", lam=0.3, beta=0.7))["u"].to_numpy()
    assert np.array_equal(got, utility(q, c, s, lam=0.3, beta=0.7))
    by_column = frame.select(u=utility_expr(pl.col("q"), "c", lam=pl.col("lam")))["u"]
    assert np.array_equal(by_column.to_numpy(), q - frame["lam"].to_numpy() * c)
