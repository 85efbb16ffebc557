"""The one utility: u = q − λ·c − β·σ, and its defaults.

``q`` is quality in [0, 1] (a score, a mean score or a predicted one), ``c`` the cost min-max
normalised within a dataset, ``σ`` the spread of quality (ddof = 1); without a spread (a single
observation, single-shot labels, a test view) the risk term is absent. Every stage computes the
utility through :func:`utility` (numpy) or :func:`utility_expr` (polars), so changing the
formula changes this file only.
"""

from __future__ import annotations

from typing import Any

import polars as pl

#: Cost weight λ and risk weight β of the authors' released code.
DEFAULT_LAM = 0.05
DEFAULT_BETA = 0.2


def utility(q: Any, c: Any, sigma: Any = None, *, lam: Any = DEFAULT_LAM, beta: Any = DEFAULT_BETA):
    """u = q − λc − βσ elementwise on numpy arrays (or floats); σ None drops the risk term.
    ``lam`` and ``beta`` may be arrays that broadcast against ``q`` (a λ grid, say)."""
    u = q - lam * c
    if sigma is not None:
        u = u - beta * sigma
    return u


def utility_expr(
    q: str | pl.Expr,
    c: str | pl.Expr,
    sigma: str | pl.Expr | None = None,
    *,
    lam: float | pl.Expr = DEFAULT_LAM,
    beta: float | pl.Expr = DEFAULT_BETA,
) -> pl.Expr:
    """The same utility as a polars expression over columns (names or expressions)."""
    u = _col(q) - lam * _col(c)
    if sigma is not None:
        u = u - beta * _col(sigma)
    return u


def _col(x: str | pl.Expr) -> pl.Expr:
    return pl.col(x) if isinstance(x, str) else x
