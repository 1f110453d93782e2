"""Statistical inference shared by every chapter: intervals, tests, detectable effects, verdicts.

Every verdict in the book comes from here, so that "holds", "does not hold" and "undetermined at
this sample" mean the same thing in every chapter:

* :func:`bootstrap_mean` / :func:`paired_bootstrap`: percentile bootstrap interval of a mean (or a
  mean difference over paired units), resampling units, or whole clusters of units (e.g. all texts
  of one prompt) when ``clusters`` is given;
* :func:`bootstrap_difference`: the same for the difference between two subsets of the units;
* :func:`permutation_test`: a label-shuffling test, shuffling only within groups when given;
* :func:`wilson`: the Wilson score interval of a proportion;
* :func:`t_interval`: a mean with a Student-t interval (few seeds: a z quantile would be too narrow);
* :func:`bootstrap_stat`: a percentile bootstrap of any statistic of several independent samples'
  column means (e.g. a ratio of two drops);
* intervals for several means of the same units that hold all at once are in
  :mod:`~paragraph_planning.core.multiplicity` (single-step max-t);
* :func:`mde` / :func:`mde_paired` / :func:`power_paired`: the minimum detectable effect of a
  two-sided test at a given standard error (or s.d. and n), and the power for a given effect;
* :func:`verdict`: an interval read against a null value and, optionally, a smallest effect of
  interest: "holds" (the interval lies beyond the null in the claimed direction), "does not hold"
  (it lies on the other side, or entirely within ``margin`` of the null) or "undetermined at this
  sample" (anything else). A non-significant control is never evidence: "undetermined" says so;
* :func:`assess` / :class:`Finding` / :func:`findings_table`: a claim, its interval, its verdict and
  the minimum detectable effect, as one row of a chapter's verdict table.

Everything takes plain arrays and returns :class:`Interval` (a frozen dataclass that prints as
``0.123 [0.045, 0.201]``) or floats; nothing here knows about models.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np

HOLDS, ABSENT, UNDETERMINED = "holds", "does not hold", "undetermined at this sample"
"""The three verdicts."""
Direction = Literal["greater", "less", "two-sided"]


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval.

    ``n``: units (texts, seeds, documents, ...); ``n_clusters``: clusters resampled (None: units);
    ``se``: the standard error (bootstrap s.d. or the analytic one); ``method``: how it was made.

    Example:
        >>> i = pp.Interval(0.12, 0.05, 0.19, n=40, se=0.035, method="t")
        >>> print(i), i.fmt(".1%"), i.excludes(0.0)
        0.12 [0.05, 0.19]
        (None, '12.0% [5.0%, 19.0%]', True)
    """

    estimate: float
    lo: float
    hi: float
    level: float = 0.95
    n: int = 0
    se: float = math.nan
    n_clusters: int | None = None
    method: str = ""

    def __str__(self) -> str:
        return f"{self.estimate:.3g} [{self.lo:.3g}, {self.hi:.3g}]"

    def fmt(self, spec: str = ".3f") -> str:
        """``estimate [lo, hi]`` with a format spec, e.g. ``".1%"``."""
        return f"{self.estimate:{spec}} [{self.lo:{spec}}, {self.hi:{spec}}]"

    def excludes(self, value: float = 0.0) -> bool:
        """Whether ``value`` lies outside the interval."""
        return bool(self.lo > value or self.hi < value)

    def to_dict(self) -> dict[str, Any]:
        """Plain fields (for tables)."""
        return asdict(self)


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2))


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}.")


def _as_1d(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError(f"{name} is empty.")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds NaN or inf values.")
    return a


def _cluster_index(clusters: Sequence[Any] | None, n: int) -> tuple[np.ndarray, int]:
    """Integer cluster ids ``[n]`` and the number of clusters (each unit its own cluster if None)."""
    if clusters is None:
        return np.arange(n), n
    c = np.asarray(clusters)
    if c.shape != (n,):
        raise ValueError(f"clusters must have one label per unit ({n}), got shape {c.shape}.")
    _, ids = np.unique(c, return_inverse=True)
    return ids.reshape(-1), int(ids.max()) + 1


def bootstrap_mean(
    x: Sequence[float] | np.ndarray, clusters: Sequence[Any] | None = None, *, level: float = 0.95,
    n_boot: int = 10_000, seed: int = 0, stat: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Interval:
    """Percentile bootstrap interval of the mean of ``x`` (units), resampling clusters when given.

    With ``clusters``, whole clusters are drawn with replacement and the statistic is the mean over
    the units of the drawn clusters (so a prompt's ten texts stay together). ``stat(sums, counts)``
    replaces the mean for ratio statistics: it receives per-resample sums and unit counts ``[n_boot]``.
    The estimate is the statistic on the sample itself; ``se`` is the s.d. of the bootstrap values.

    Example:
        >>> x = np.random.default_rng(0).normal(1.0, 1.0, size=200)
        >>> i = pp.bootstrap_mean(x)
        >>> bool(np.isclose(i.estimate, x.mean())), bool(i.lo < x.mean() < i.hi), i.method
        (True, True, 'bootstrap')
        >>> pp.bootstrap_mean([1, 2, 3, 10, 11, 12], clusters=["a", "a", "a", "b", "b", "b"]).n_clusters
        2
    """
    _check_level(level)
    a = _as_1d(x, "x")
    ids, k = _cluster_index(clusters, a.size)
    sums = np.bincount(ids, weights=a, minlength=k)
    counts = np.bincount(ids, minlength=k).astype(np.float64)
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, k, size=(n_boot, k))
    bs, bc = sums[draw].sum(1), counts[draw].sum(1)
    f = stat or (lambda s, c: s / c)
    boot = f(bs, bc)
    est = float(f(np.array([sums.sum()]), np.array([counts.sum()]))[0])
    if k < 2:
        return Interval(est, math.nan, math.nan, level, a.size, math.nan, k if clusters is not None else None,
                        "bootstrap (one cluster: no interval)")
    lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
    return Interval(est, float(lo), float(hi), level, int(a.size), float(boot.std(ddof=1)),
                    k if clusters is not None else None,
                    "cluster bootstrap" if clusters is not None else "bootstrap")


def paired_bootstrap(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, clusters: Sequence[Any] | None = None, *,
    level: float = 0.95, n_boot: int = 10_000, seed: int = 0,
) -> Interval:
    """Bootstrap interval of ``mean(a − b)`` over paired units (resampling units or clusters).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> before = rng.normal(3.0, 1.0, 100)
        >>> after = before + 0.5 + rng.normal(0, 0.2, 100)  # each unit measured twice
        >>> i = pp.paired_bootstrap(after, before)
        >>> 0.4 < i.lo < i.estimate < i.hi < 0.6
        True
    """
    x, y = _as_1d(a, "a"), _as_1d(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"a and b must be paired (same length), got {x.size} and {y.size}.")
    return bootstrap_mean(x - y, clusters, level=level, n_boot=n_boot, seed=seed)


def bootstrap_difference(
    x: Sequence[float] | np.ndarray, in_a: Sequence[bool] | np.ndarray, clusters: Sequence[Any] | None = None, *,
    level: float = 0.95, n_boot: int = 10_000, seed: int = 0,
) -> Interval:
    """Percentile bootstrap interval of ``mean(x[in_a]) − mean(x[~in_a])`` (two subsets of the units).

    With ``clusters``, whole clusters are resampled (a cluster may hold units of both subsets, e.g.
    the texts of one prompt), so the interval allows for the correlation within clusters.
    Resamples that miss a subset entirely are left out.
    """
    _check_level(level)
    a = _as_1d(x, "x")
    mask = np.asarray(in_a, dtype=bool).reshape(-1)
    if mask.shape != a.shape:
        raise ValueError(f"in_a must have one flag per unit ({a.size}), got {mask.size}.")
    if mask.all() or not mask.any():
        raise ValueError("Both subsets need at least one unit (in_a is all True or all False).")
    ids, k = _cluster_index(clusters, a.size)
    sa = np.bincount(ids, weights=a * mask, minlength=k)
    sb = np.bincount(ids, weights=a * ~mask, minlength=k)
    na = np.bincount(ids, weights=mask.astype(float), minlength=k)
    nb = np.bincount(ids, weights=(~mask).astype(float), minlength=k)
    est = float(sa.sum() / na.sum() - sb.sum() / nb.sum())
    draw = np.random.default_rng(seed).integers(0, k, size=(n_boot, k))
    ca, cb = na[draw].sum(1), nb[draw].sum(1)
    ok = (ca > 0) & (cb > 0)
    boot = sa[draw].sum(1)[ok] / ca[ok] - sb[draw].sum(1)[ok] / cb[ok]
    method = "cluster bootstrap of a difference" if clusters is not None else "bootstrap of a difference"
    if k < 2 or boot.size < 2:
        return Interval(est, math.nan, math.nan, level, int(a.size), math.nan, k if clusters is not None else None, method)
    lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
    return Interval(est, float(lo), float(hi), level, int(a.size), float(boot.std(ddof=1)),
                    k if clusters is not None else None, method)


def bootstrap_stat(
    stat: Callable[..., np.ndarray], samples: Sequence[np.ndarray], *, level: float = 0.95, n_boot: int = 10_000,
    seed: int = 0, n: int | None = None, chunk: int = 256,
) -> Interval:
    """Percentile bootstrap of a statistic of the column means of several independent samples.

    ``samples``: arrays ``[n_i, k_i]`` (units × columns, e.g. a text row's hits before and after
    pruning), each resampled with replacement on its own (rows stay together, so paired columns
    stay paired). ``stat(*means)`` gets the resampled column means ``[B, k_i]`` of every sample and
    returns ``[B]`` values; a ratio of means is a ratio of sums, so drops and ratios of totals are
    statistics of means. ``+inf``/``-inf`` values are allowed (e.g. a ratio over a zero denominator):
    the bounds are order statistics, and ``se`` is NaN unless every value is finite; NaN values are
    an error. ``n`` (default: all units) is reported in the interval.
    """
    _check_level(level)
    arrays = [np.asarray(s, dtype=np.float64) for s in samples]
    if not arrays:
        raise ValueError("bootstrap_stat needs at least one sample.")
    arrays = [a[:, None] if a.ndim == 1 else a for a in arrays]
    for i, a in enumerate(arrays):
        if a.ndim != 2 or a.shape[0] == 0 or not np.all(np.isfinite(a)):
            raise ValueError(f"sample {i} must be a finite [units, columns] array with units, got shape {a.shape}.")
    est = float(np.asarray(stat(*[a.mean(0, keepdims=True) for a in arrays])).reshape(-1)[0])
    units = int(sum(a.shape[0] for a in arrays)) if n is None else int(n)
    if any(a.shape[0] < 2 for a in arrays):
        return Interval(est, math.nan, math.nan, level, units, math.nan, None, "bootstrap (a sample of one: no interval)")
    rng = np.random.default_rng(seed)
    # units with identical rows (e.g. an image's 0/1 hits) are interchangeable: draw how many of each
    # distinct row a resample holds (a multinomial), which is the same distribution and far cheaper
    patterns = [np.unique(a, axis=0, return_counts=True) for a in arrays]
    values = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        means = []
        for a, (rows, freq) in zip(arrays, patterns):
            m = a.shape[0]
            if 4 * len(rows) <= m:
                counts = rng.multinomial(m, freq / m, size=b)
                means.append(counts @ rows / m)
                continue
            draw = rng.integers(0, m, size=(b, m)) + (np.arange(b) * m)[:, None]
            counts = np.bincount(draw.reshape(-1), minlength=b * m).reshape(b, m)
            means.append(counts @ a / m)
        values.append(np.asarray(stat(*means), dtype=np.float64).reshape(b))
    boot = np.sort(np.concatenate(values))
    if np.isnan(boot).any():
        raise ValueError("stat returned NaN for some resamples; map undefined values to +-inf or a number.")
    lo = boot[int(math.floor((0.5 - level / 2) * (n_boot - 1)))]
    hi = boot[int(math.ceil((0.5 + level / 2) * (n_boot - 1)))]
    se = float(boot.std(ddof=1)) if np.all(np.isfinite(boot)) else math.nan
    return Interval(est, float(lo), float(hi), level, units, se, None, "bootstrap")


def permutation_test(
    values: Sequence[float] | np.ndarray, labels: Sequence[Any], stat: Callable[[np.ndarray, np.ndarray], float],
    groups: Sequence[Any] | None = None, *, n_perm: int = 10_000, seed: int = 0, alternative: Direction = "greater",
) -> dict[str, float]:
    """Permutation test: ``stat(values, labels)`` against the same statistic with ``labels`` shuffled.

    With ``groups``, labels are shuffled only within each group (e.g. within a prompt). Returns the
    observed statistic, the permutation mean and the p-value ``(1 + #{as extreme}) / (1 + n_perm)``
    for ``alternative`` ``"greater"``, ``"less"`` or ``"two-sided"`` (distance from the permutation mean).

    Example:
        >>> values = np.array([5.1, 4.9, 5.3, 5.2, 3.0, 3.2, 2.9, 3.1])
        >>> labels = np.array(["a"] * 4 + ["b"] * 4)
        >>> diff = lambda v, lab: v[lab == "a"].mean() - v[lab == "b"].mean()
        >>> r = pp.permutation_test(values, labels, diff)
        >>> round(r["statistic"], 3), round(r["p"], 3)  # exactly: 1 of the 70 label splits is as extreme, p = 0.014
        (2.075, 0.015)
    """
    v = np.asarray(values)
    lab = np.asarray(labels)
    if len(v) != len(lab):
        raise ValueError(f"values and labels differ in length: {len(v)} vs {len(lab)}.")
    g_ids, k = _cluster_index(groups, len(lab)) if groups is not None else (np.zeros(len(lab), dtype=np.int64), 1)
    members = [np.flatnonzero(g_ids == g) for g in range(k)]
    rng = np.random.default_rng(seed)
    observed = float(stat(v, lab))
    null = np.empty(n_perm)
    perm = lab.copy()
    for i in range(n_perm):
        for m in members:
            if len(m) > 1:
                perm[m] = lab[m[rng.permutation(len(m))]]
        null[i] = stat(v, perm)
    centre = float(null.mean())
    if alternative == "greater":
        extreme = null >= observed - 1e-12
    elif alternative == "less":
        extreme = null <= observed + 1e-12
    elif alternative == "two-sided":
        extreme = np.abs(null - centre) >= abs(observed - centre) - 1e-12
    else:
        raise ValueError(f"alternative must be 'greater', 'less' or 'two-sided', got {alternative!r}.")
    return {"statistic": observed, "null_mean": centre, "p": float((1 + extreme.sum()) / (1 + n_perm)),
            "n_perm": n_perm}


def wilson(k: int, n: int, level: float = 0.95) -> Interval:
    """Wilson score interval of a proportion ``k / n`` (well behaved at 0 and 1, unlike ``p ± z·s.e.``).

    Example:
        >>> print(pp.wilson(8, 10))
        0.8 [0.49, 0.943]
        >>> print(pp.wilson(0, 20))  # no successes: still a sensible upper bound
        0 [0, 0.161]
    """
    _check_level(level)
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"Need 0 <= k <= n and n > 0, got k={k}, n={n}.")
    z = _z(level)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), level, n,
                    math.sqrt(p * (1 - p) / n), None, "Wilson")


def t_interval(x: Sequence[float] | np.ndarray, level: float = 0.95) -> Interval:
    """Mean with a Student-t interval ``mean ± t(n−1)·s/√n`` (for a few seeds; NaN bounds for n < 2).

    Example:
        >>> i = pp.t_interval([0.61, 0.64, 0.58])  # three seeds
        >>> print(i), i.method
        0.61 [0.535, 0.685]
        (None, 't (2 d.o.f.)')
    """
    from scipy.stats import t

    _check_level(level)
    a = _as_1d(x, "x")
    n, m = a.size, float(a.mean())
    if n < 2:
        return Interval(m, math.nan, math.nan, level, n, math.nan, None, "t (one value: no interval)")
    se = float(a.std(ddof=1) / math.sqrt(n))
    half = float(t.ppf(0.5 + level / 2, n - 1)) * se
    return Interval(m, m - half, m + half, level, n, se, None, f"t ({n - 1} d.o.f.)")


def mde(se: float, *, alpha: float = 0.05, power: float = 0.8, df: int | None = None) -> float:
    """Minimum detectable effect of a two-sided test at standard error ``se``: ``(q(1−α/2) + q(power))·se``.

    ``q`` is the normal quantile, or Student's t with ``df`` degrees of freedom when given.

    Example:
        >>> round(pp.mde(0.01), 4)  # (1.96 + 0.84) x se
        0.028
    """
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"Need 0 < alpha < 1 and 0 < power < 1, got {alpha}, {power}.")
    if df is None:
        from scipy.stats import norm

        q = norm.ppf
    else:
        from scipy.stats import t

        def q(p: float) -> float:
            return t.ppf(p, df)
    return float((q(1 - alpha / 2) + q(power)) * se)


def mde_paired(sd: float, n: int, *, alpha: float = 0.05, power: float = 0.8, design_effect: float = 1.0) -> float:
    """Minimum detectable mean difference of a paired design: ``n`` pairs whose differences have s.d. ``sd``.

    ``design_effect`` (>= 1) inflates the variance for clustered units (``1 + (m − 1)·ICC`` for
    clusters of ``m``); the t quantile with ``n − 1`` d.o.f. is used.

    Example:
        >>> round(pp.mde_paired(sd=1.0, n=100), 3)  # 100 pairs detect about 0.28 s.d.
        0.283
    """
    if n < 2:
        return math.inf
    return mde(sd * math.sqrt(design_effect / n), alpha=alpha, power=power, df=n - 1)


def power_paired(effect: float, sd: float, n: int, *, alpha: float = 0.05) -> float:
    """Power of a two-sided paired t-test (normal approximation of the noncentral t) to detect ``effect``.

    Example:
        >>> round(pp.power_paired(effect=0.283, sd=1.0, n=100), 2)  # the MDE has 80 % power
        0.8
    """
    from scipy.stats import norm, t

    if n < 2 or sd <= 0:
        return math.nan
    se = sd / math.sqrt(n)
    crit = t.ppf(1 - alpha / 2, n - 1)
    shift = abs(effect) / se
    return float(norm.cdf(shift - crit) + norm.cdf(-shift - crit))


def n_for_mde(sd: float, effect: float, *, alpha: float = 0.05, power: float = 0.8,
              design_effect: float = 1.0, n_max: int = 1_000_000) -> int:
    """Smallest ``n`` whose paired MDE (:func:`mde_paired`) is at most ``effect``.

    Example:
        >>> pp.n_for_mde(sd=1.0, effect=0.2)  # pairs needed to detect 0.2 s.d.
        199
    """
    if effect <= 0 or sd < 0:
        raise ValueError(f"Need effect > 0 and sd >= 0, got {effect}, {sd}.")
    n = 2
    while mde_paired(sd, n, alpha=alpha, power=power, design_effect=design_effect) > effect:
        n *= 2
        if n > n_max:
            return n_max
    lo, hi = n // 2, n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mde_paired(sd, mid, alpha=alpha, power=power, design_effect=design_effect) <= effect:
            hi = mid
        else:
            lo = mid
    return max(2, hi)


def verdict(interval: Interval, *, null: float = 0.0, direction: Direction = "greater",
            margin: float | None = None) -> str:
    """Read an interval as a verdict on the claim "the effect is ``direction`` than ``null``".

    * ``"holds"``: the whole interval lies beyond ``null`` in the claimed direction (two-sided:
      on either side);
    * ``"does not hold"``: the whole interval lies on the wrong side of ``null`` or, with
      ``margin`` (the smallest effect that would matter, > 0), entirely within ``null ± margin``
      or below ``null + margin`` for ``"greater"`` (above ``null − margin`` for ``"less"``);
    * ``"undetermined at this sample"``: anything else, including a missing interval.

    Example:
        >>> pp.verdict(pp.Interval(0.3, 0.1, 0.5))
        'holds'
        >>> pp.verdict(pp.Interval(0.05, -0.1, 0.2))
        'undetermined at this sample'
        >>> pp.verdict(pp.Interval(0.01, -0.02, 0.04), margin=0.05)  # excludes every effect that would matter
        'does not hold'
    """
    lo, hi = interval.lo, interval.hi
    if math.isnan(lo) or math.isnan(hi):
        return UNDETERMINED
    if margin is not None and margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}.")
    m = margin or 0.0
    if direction == "greater":
        if lo > null:
            return HOLDS
        if hi < null or (margin is not None and hi < null + m):
            return ABSENT
    elif direction == "less":
        if hi < null:
            return HOLDS
        if lo > null or (margin is not None and lo > null - m):
            return ABSENT
    elif direction == "two-sided":
        if lo > null or hi < null:
            return HOLDS
        if margin is not None and lo > null - m and hi < null + m:
            return ABSENT
    else:
        raise ValueError(f"direction must be 'greater', 'less' or 'two-sided', got {direction!r}.")
    return UNDETERMINED


@dataclass(frozen=True)
class Finding:
    """One tested claim: what is claimed, the interval that tests it, the verdict, and what n could detect.

    ``mde``: the minimum detectable effect of this test at this sample (80 % power, two-sided 5 %);
    ``unit``: how the estimate reads (``"nats"``, ``"cosine distance"``, ...); ``note``: anything the
    reader needs to interpret it (e.g. the control it is compared with).

    Example:
        >>> f = pp.Finding("pruning hurts code more than prose", pp.Interval(0.2, 0.1, 0.3, n=50), "holds")
        >>> f.row()["claim"], f.row()["lo"], f.row()["verdict"]
        ('pruning hurts code more than prose', 0.1, 'holds')
    """

    claim: str
    interval: Interval
    verdict: str
    mde: float = math.nan
    unit: str = ""
    note: str = ""

    def row(self) -> dict[str, Any]:
        """A flat row for a verdict table."""
        i = self.interval
        return {"claim": self.claim, "estimate": i.estimate, "lo": i.lo, "hi": i.hi, "n": i.n,
                "clusters": i.n_clusters, "mde": self.mde, "unit": self.unit, "verdict": self.verdict,
                "method": i.method, "note": self.note}


def assess(claim: str, interval: Interval, *, null: float = 0.0, direction: Direction = "greater",
               margin: float | None = None, mde_value: float | None = None, unit: str = "",
               note: str = "") -> Finding:
    """:func:`verdict` of ``interval`` as a :class:`Finding`; the MDE defaults to ``mde(interval.se)``.

    Example:
        >>> rng = np.random.default_rng(1)
        >>> diff = rng.normal(0.3, 1.0, 400)  # per-text loss differences, pruned minus clean
        >>> f = pp.assess("pruning raises the loss", pp.bootstrap_mean(diff), unit="nats")
        >>> f.verdict, round(f.mde, 2)
        ('holds', 0.13)
    """
    m = mde_value if mde_value is not None else (mde(interval.se) if math.isfinite(interval.se) else math.nan)
    return Finding(claim, interval, verdict(interval, null=null, direction=direction, margin=margin), m, unit, note)


def findings_table(findings: Sequence[Finding]) -> "Any":
    """A DataFrame with one row per :class:`Finding` (claim, estimate, lo, hi, n, mde, verdict, ...).

    Example:
        >>> a = pp.assess("forget loss rises", pp.Interval(0.5, 0.3, 0.7, se=0.1))
        >>> b = pp.assess("retain loss rises", pp.Interval(0.02, -0.05, 0.09, se=0.035))
        >>> pp.findings_table([a, b])[["claim", "verdict"]].values.tolist()
        [['forget loss rises', 'holds'], ['retain loss rises', 'undetermined at this sample']]
    """
    import pandas as pd

    return pd.DataFrame([f.row() for f in findings])


def group_summary(df: "Any", by: str | Sequence[str], value: str, level: float = 0.95) -> "Any":
    """Per group of ``df``: ``mean``, ``sd``, ``n`` and a Student-t interval ``lo``/``hi`` of the mean.

    The t quantile (``n − 1`` d.o.f.) keeps bands honest for a few seeds (with 3 seeds it is 2.2×
    the normal one); a group of one gets ``lo = hi = mean``.

    Example:
        >>> df = pd.DataFrame({"score": ["abs", "abs", "abs", "random"], "drop": [0.30, 0.34, 0.32, 0.05]})
        >>> pp.group_summary(df, "score", "drop").round(3).values.tolist()
        [['abs', 0.32, 0.02, 3, 0.27, 0.37], ['random', 0.05, nan, 1, 0.05, 0.05]]
    """
    from scipy.stats import t

    _check_level(level)
    by = [by] if isinstance(by, str) else list(by)
    out = df.groupby(by, sort=True, observed=True)[value].agg(mean="mean", sd="std", n="count").reset_index()
    q = t.ppf(0.5 + level / 2, (out["n"] - 1).clip(lower=1))
    half = (q * out["sd"].fillna(0.0) / np.sqrt(out["n"])).where(out["n"] > 1, 0.0)
    out["lo"], out["hi"] = out["mean"] - half, out["mean"] + half
    return out

