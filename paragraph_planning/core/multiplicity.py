"""Simultaneous intervals for several comparisons of the same units: the single-step max-t method.

:func:`simultaneous_t` gives intervals for ``K`` column means that all cover at once with the chosen
probability; :func:`max_t_critical` is its critical value, computed by Monte Carlo from the columns'
correlation (narrower than Bonferroni when comparisons are correlated).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .inference import Interval, _check_level


def max_t_critical(corr: Sequence[Sequence[float]] | np.ndarray, df: float | None = None, level: float = 0.95, *,
                   n_sim: int = 100_000, seed: int = 0) -> float:
    """Two-sided simultaneous critical value ``c``: ``P(max_k |T_k| <= c) = level`` for ``T`` multivariate
    Student-t with correlation ``corr`` ``[K, K]`` and ``df`` degrees of freedom (None: normal).

    Computed by Monte Carlo (``n_sim`` draws; a singular ``corr`` is fine). One column gives the
    t quantile; ``K`` independent normal columns give Šidák's ``z(1 − (1 − level^(1/K))/2)``;
    correlated columns give less, which is what single-step max-t procedures (``multcomp``) use.
    """
    _check_level(level)
    r = np.atleast_2d(np.asarray(corr, dtype=np.float64))
    if r.shape[0] != r.shape[1] or r.shape[0] == 0:
        raise ValueError(f"corr must be a square [K, K] matrix, got shape {r.shape}.")
    w, v = np.linalg.eigh((r + r.T) / 2)
    root = v * np.sqrt(np.clip(w, 0.0, None))  # corr = root @ root.T
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n_sim, r.shape[0])) @ root.T
    if df is not None:
        if df <= 0:
            raise ValueError(f"df must be > 0, got {df}.")
        z /= np.sqrt(rng.chisquare(df, n_sim) / df)[:, None]
    return float(np.quantile(np.abs(z).max(1), level))


def simultaneous_t(x: Sequence[Sequence[float]] | np.ndarray, level: float = 0.95, *, n_sim: int = 100_000,
                   seed: int = 0) -> list[Interval]:
    """Simultaneous intervals for the ``K`` column means of ``x`` ``[n, K]`` (the same ``n`` units in every
    column, e.g. paired differences of several comparisons): ``mean_k ± c·se_k``, all covering at once
    with probability ``level``.

    ``c`` is :func:`max_t_critical` of the columns' sample correlation with ``n − 1`` degrees of
    freedom (the single-step max-t method): narrower than Bonferroni when the comparisons are
    correlated, equal to the t interval for one column. A column without variance gets the
    interval ``[mean, mean]`` and is left out of ``c``.
    """
    _check_level(level)
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 2 or a.shape[1] < 1:
        raise ValueError(f"x must be [n >= 2 units, K >= 1 columns], got shape {a.shape}.")
    if not np.all(np.isfinite(a)):
        raise ValueError("x holds NaN or inf values.")
    n = a.shape[0]
    mean, sd = a.mean(0), a.std(0, ddof=1)
    se = sd / math.sqrt(n)
    live = sd > 1e-12 * np.maximum(1.0, np.abs(a).max(0))
    c = max_t_critical(np.corrcoef(a[:, live], rowvar=False), n - 1, level, n_sim=n_sim, seed=seed) if live.any() else 0.0
    method = f"simultaneous max-t over {int(live.sum())} comparisons ({n - 1} d.o.f., c = {c:.3g})"
    return [Interval(float(m), float(m - c * s), float(m + c * s), level, n, float(s), None, method)
            if ok else Interval(float(m), float(m), float(m), level, n, 0.0, None, method)
            for m, s, ok in zip(mean, se, live)]
