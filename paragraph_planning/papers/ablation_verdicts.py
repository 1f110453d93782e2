"""What the ablation runs say about paper 2's claims, with intervals over units (rows or images).

The paper's abstract claims that each method gives the lowest damage in some regime, that
resampling usually damages most, and that peak ablation is often the best. Here a *regime* is an
ablated fraction (or, in the one-layer experiment, a layer) of one model. Damage is the loss
increase over the clean model (language models) or the top-1 drop (image classifiers), per unit.

Units are independent replicates (each has its own input, neuron subsets and resample source: see
:mod:`.ablation_eval`), so intervals are Student-t intervals over units of a method's mean damage
or of a paired difference between two methods; the unit-to-unit spread holds both the evaluation
noise and the noise of the random subsets and sources, with ``n − 1`` degrees of freedom.

Decisions about which method is least or most damaging use **simultaneous** intervals: all
pairwise comparisons of every regime of one model are made at once (single-step max-t over their
correlation, :func:`~paragraph_planning.core.multiplicity.simultaneous_t`), each model at level
``level^(1/M)`` for ``M`` models, so every "decided" in the chapter holds at once with probability
``level``. For one regime and method:

* *best* "holds" when every other method's damage exceeds its own (each interval above 0), "does
  not hold" when some other method does decidedly less damage, "undetermined" otherwise;
* *worst* likewise. The number of regimes a method wins is then known to lie between the regimes
  where it is decidedly best and those where it is not decidedly beaten: that is the interval of
  a share claim, read by :func:`~paragraph_planning.core.inference.verdict` against its null.
"""
from __future__ import annotations

import itertools
import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..core.inference import (
    ABSENT,
    HOLDS,
    UNDETERMINED,
    Finding,
    Interval,
    assess,
    group_summary,
    mde,
    t_interval,
)
from ..core.multiplicity import simultaneous_t
from .ablation_eval import ALL_LAYERS

UNITS: dict[str, str] = {"loss": "nats", "top1": "points"}
"""What a damage of each metric is measured in (top-1 drops in percentage points)."""
DAMAGE: dict[str, str] = {"loss": "loss increase", "top1": "top-1 drop"}


def damage(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows of :func:`~.ablation.run_ablation` with ``damage`` and ``metric``: the loss increase over the
    clean model (nats), or the top-1 drop (percentage points: 100 for an image that turns wrong)."""
    if metric not in DAMAGE:
        raise ValueError(f"Unknown metric {metric!r}. Valid: {', '.join(DAMAGE)}.")
    d = 100 * (df[f"clean_{metric}"] - df[metric]) if metric == "top1" else df[metric] - df[f"clean_{metric}"]
    return df.assign(damage=d, metric=metric)


def bands(dmg: pd.DataFrame, by: Sequence[str] = ("model", "layer", "method", "frac"), level: float = 0.95) -> pd.DataFrame:
    """Mean damage per group with a Student-t interval over units (``mean, sd, n, lo, hi``)."""
    return group_summary(dmg, list(by), "damage", level)


def nearest(values: Sequence[float], x: float) -> float:
    """The value of ``values`` closest to ``x`` (e.g. the measured fraction nearest 50 %)."""
    if not len(values):
        raise ValueError("values is empty.")
    return float(min(values, key=lambda v: abs(v - x)))


def pairwise(dmg: pd.DataFrame, level: float = 0.95, simultaneous: bool = True, *, n_sim: int = 100_000,
             seed: int = 0) -> pd.DataFrame:
    """Paired differences ``damage(a) − damage(b)`` over units, for every ordered pair of methods and regime.

    One row per (model, metric, layer, frac, a, b): ``diff, lo, hi, se, n``, ``mde`` (the smallest
    difference the comparison detects with 80 % power at its critical value), ``crit`` (that value)
    and ``level``. With ``simultaneous``, all comparisons of one model (every regime and pair, on the
    same units) hold at once with probability ``level_m = level^(1/M)`` for ``M`` models
    (:func:`~paragraph_planning.core.multiplicity.simultaneous_t`, max-t over their correlation; the
    models' units are independent, so all models together hold at ``level``: ``family_level``).
    Otherwise each interval is a marginal t-interval at ``level``. ``family``: the model's comparisons.
    """
    from scipy.stats import t as student

    keys = ["model", "metric", "layer", "frac"]
    dmg = dmg[dmg.frac > 0]
    each = level ** (1 / dmg.model.nunique()) if simultaneous else level
    rows = []
    for model, g in dmg.groupby("model", sort=False):
        cols, index = [], None
        for key, h in g.groupby(keys, sort=False):
            wide = h.pivot_table(index="unit", columns="method", values="damage", sort=False).sort_index()
            if index is not None and not wide.index.equals(index):
                raise ValueError(f"{model}: every regime must be measured on the same units.")
            index = wide.index
            cols += [(key, a, b, (wide[a] - wide[b]).to_numpy()) for a, b in itertools.combinations(wide.columns, 2)]
        x = np.column_stack([c[3] for c in cols])
        ivs = simultaneous_t(x, each, n_sim=n_sim, seed=seed) if simultaneous else [t_interval(c[3], level) for c in cols]
        for (key, a, b, _), iv in zip(cols, ivs):
            df = max(1, iv.n - 1)
            crit = (iv.hi - iv.estimate) / iv.se if iv.se > 0 else math.nan
            m = mde(iv.se, alpha=2 * float(student.sf(crit, df)), df=df) if math.isfinite(crit) else math.nan
            base = {**dict(zip(keys, key)), "se": iv.se, "n": iv.n, "mde": m, "crit": crit, "level": each,
                    "family": len(cols), "family_level": level}
            rows.append({**base, "a": a, "b": b, "diff": iv.estimate, "lo": iv.lo, "hi": iv.hi})
            rows.append({**base, "a": b, "b": a, "diff": -iv.estimate, "lo": -iv.hi, "hi": -iv.lo})
    cols_order = [*keys, "a", "b", "diff", "lo", "hi", "se", "n", "mde", "crit", "level", "family", "family_level"]
    return pd.DataFrame(rows)[cols_order]


def _status(beaten_by: pd.DataFrame) -> str:
    """From the rows ``other − m`` (positive: the other does more damage): is ``m`` decidedly below all?"""
    if (beaten_by.lo > 0).all():
        return HOLDS
    if (beaten_by.hi < 0).any():
        return ABSENT
    return UNDETERMINED


def method_status(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per regime and method: ``mean`` damage (relative order), whether it is ``best`` (least damage)
    and ``worst``, each "holds" / "does not hold" / "undetermined at this sample", and ``point_best`` /
    ``point_worst`` (lowest / highest mean damage, no decision)."""
    keys = ["model", "metric", "layer", "frac"]
    rows = []
    for key, g in pairs.groupby(keys, sort=False):
        methods = list(dict.fromkeys(g.a))
        # mean damage relative to the first method: diff(m, first); the first gets 0
        rel = {m: 0.0 if m == methods[0] else float(g[(g.a == m) & (g.b == methods[0])]["diff"].iloc[0]) for m in methods}
        lo_m, hi_m = min(rel, key=rel.get), max(rel, key=rel.get)
        for m in methods:
            others_minus_m = g[g.b == m]  # rows (a = other, b = m): other − m
            m_minus_others = g[g.a == m]
            rows.append({**dict(zip(keys, key)), "method": m, "rel_mean": rel[m],
                         "best": _status(others_minus_m), "worst": _status(m_minus_others),
                         "point_best": m == lo_m, "point_worst": m == hi_m})
    return pd.DataFrame(rows)


def regimes(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per regime (model, layer, frac): the least and the most damaging method by mean, whether each is
    decided (simultaneous intervals), the interval of the margin (smallest gap to any other method)
    and the methods not decidedly beaten (``tied_best``) or not decidedly milder (``tied_worst``)."""
    keys = ["model", "metric", "layer", "frac"]
    by_key = dict(list(pairs.groupby(keys, sort=False)))
    rows = []
    for key, g in method_status(pairs).groupby(keys, sort=False):
        best, worst = g[g.point_best].method.iloc[0], g[g.point_worst].method.iloc[0]
        p = by_key[key]
        gb = p[p.b == best]  # other − best
        gw = p[p.a == worst]  # worst − other
        rows.append({**dict(zip(keys, key)), "best": best, "best_margin": float(gb["diff"].min()),
                     "best_lo": float(gb.lo.min()), "best_hi": float(gb.hi.min()),
                     "best_decided": bool(g[g.method == best].best.iloc[0] == HOLDS),
                     "tied_best": ", ".join(g[g.best != ABSENT].method),
                     "worst": worst, "worst_margin": float(gw["diff"].min()), "worst_lo": float(gw.lo.min()),
                     "worst_hi": float(gw.hi.min()), "worst_decided": bool(g[g.method == worst].worst.iloc[0] == HOLDS),
                     "tied_worst": ", ".join(g[g.worst != ABSENT].method), "n": int(p.n.iloc[0]),
                     "level": float(p.level.iloc[0])})
    return pd.DataFrame(rows)


def win_counts(pairs: pd.DataFrame, role: str = "best", by: Sequence[str] = ("model",)) -> pd.DataFrame:
    """Per group and method: regimes where it is ``role`` (``"best"`` or ``"worst"``): ``decided`` (holds),
    ``point`` (by mean), ``possible`` (not decidedly excluded) and ``regimes`` (how many there are)."""
    if role not in ("best", "worst"):
        raise ValueError(f"Unknown role {role!r}. Valid: best, worst.")
    st = method_status(pairs)
    g = st.groupby([*by, "method"], sort=False)
    return pd.DataFrame({"decided": g[role].apply(lambda s: int((s == HOLDS).sum())),
                         "point": g[f"point_{role}"].sum().astype(int),
                         "possible": g[role].apply(lambda s: int((s != ABSENT).sum())),
                         "regimes": g.size()}).reset_index()


def share_interval(counts: pd.Series | Mapping[str, int], pairs: pd.DataFrame) -> Interval:
    """A share of regimes (``counts``: ``decided``, ``point``, ``possible``, ``regimes``) as an
    :class:`Interval`: the share is known to lie between the decided and the possible regimes."""
    k = int(counts["regimes"])
    return Interval(counts["point"] / k, counts["decided"] / k, counts["possible"] / k,
                    float(pairs.family_level.iloc[0]), int(pairs.n.min()), math.nan, None,
                    f"share of {k} regimes; each decided by simultaneous intervals "
                    f"(max-t over {int(pairs.family.iloc[0])} comparisons)")


def _mde_of(pairs: pd.DataFrame) -> float:
    m = pairs.mde.replace([np.inf, -np.inf], np.nan).dropna()
    return float(m.median()) if len(m) else math.nan


def claim_findings(pairs: pd.DataFrame, focus_frac: float = 0.5) -> list[Finding]:
    """The paper's claims, per model, from simultaneous pairwise intervals (:func:`pairwise`), plus
    "each method wins somewhere" over all models together.

    Per model: which method does the least and the most damage at ``focus_frac`` (decided or not);
    "resampling usually does the most damage" (its share of fractions as worst, against 1/2);
    "peak is often the best" (its share of fractions as best, against 1/M for M methods: what one of
    M interchangeable methods would get); "each method does the least damage somewhere" (the
    smallest number of fractions any method wins, against 0). Intervals of shares come from
    :func:`share_interval`; the MDE is the median smallest detectable difference of the pairs involved.
    """
    if (pairs.layer != ALL_LAYERS).any():
        raise ValueError("claim_findings reads the every-layer sweep; pass pairs of rows with layer == ALL_LAYERS.")
    out: list[Finding] = []
    every = pairs
    for model, p in every.groupby("model", sort=False):
        metric = p.metric.iloc[0]
        unit = UNITS[metric]
        n = int(p.n.min())
        methods = list(dict.fromkeys(p.a))
        fracs = sorted(p.frac.unique())
        f = nearest(fracs, focus_frac)
        reg = regimes(p[p.frac == f]).iloc[0]
        for role, word in (("best", "least"), ("worst", "most")):
            who = reg[role]
            iv = Interval(reg[f"{role}_margin"], reg[f"{role}_lo"], reg[f"{role}_hi"], float(p.family_level.iloc[0]), n, math.nan,
                          None, "smallest paired gap to the other methods, simultaneous max-t")
            mine = p[(p.frac == f) & ((p.a == who) | (p.b == who))]
            out.append(assess(f"{model}: at {f:.0%} ablated, {who} does the {word} damage", iv,
                              mde_value=_mde_of(mine), unit=unit,
                              note=f"{DAMAGE[metric]}; n = {n} units per condition"))
        wins_worst = win_counts(p, "worst").set_index("method")
        wins_best = win_counts(p, "best").set_index("method")
        if "resample" in methods:
            iv = share_interval(wins_worst.loc["resample"], p)
            out.append(assess(f"{model}: resampling does the most damage at most fractions", iv, null=0.5,
                              mde_value=_mde_of(p[(p.a == "resample") | (p.b == "resample")]), unit=unit,
                              note=f"share of {len(fracs)} fractions; null 1/2"))
        if "peak" in methods:
            iv = share_interval(wins_best.loc["peak"], p)
            out.append(assess(f"{model}: peak does the least damage at more than 1/{len(methods)} of fractions", iv,
                              null=1 / len(methods), mde_value=_mde_of(p[(p.a == "peak") | (p.b == "peak")]), unit=unit,
                              note=f"share of {len(fracs)} fractions; null 1/{len(methods)}"))
        out.append(_each_wins(wins_best, p, f"{model}: each method does the least damage at some fraction", unit))
    if every.model.nunique() > 1:
        wins = win_counts(every, "best", by=()).set_index("method")
        units = ", ".join(sorted({UNITS[m] for m in every.metric.unique()}))
        out.append(_each_wins(wins, every, "all models: each method does the least damage in some regime (model, fraction)",
                              units, mde_value=math.nan))  # no one detectable gap across damage units
    return out


CLAIM_KINDS: dict[str, str] = {
    "resampling does the most damage": "resample usually worst", "peak does the least damage": "peak often best",
    "each method does the least damage": "each method wins somewhere"}
"""Claim texts of :func:`claim_findings` (their start after the model) and the claim each tests."""


def claim_kind(claim: str) -> tuple[str, str]:
    """``(model, kind)`` of a claim of :func:`claim_findings`; kind is one of :data:`CLAIM_KINDS`' values,
    ``"least at focus"`` or ``"most at focus"``."""
    model, _, text = claim.partition(": ")
    for start, kind in CLAIM_KINDS.items():
        if text.startswith(start):
            return model, kind
    if text.startswith("at "):
        return model, "least at focus" if "least" in text else "most at focus"
    raise ValueError(f"Not a claim of claim_findings: {claim!r}.")


def _each_wins(wins: pd.DataFrame, p: pd.DataFrame, claim: str, unit: str, mde_value: float | None = None) -> Finding:
    """Holds when every method is decidedly best somewhere; does not hold when one is decidedly beaten everywhere."""
    low = wins.sort_values(["possible", "decided", "point"]).iloc[0]
    iv = Interval(float(wins.point.min()), float(wins.decided.min()), float(wins.possible.min()),
                  float(p.family_level.iloc[0]), int(p.n.min()), math.nan, None,
                  "fewest regimes any method wins: decided to possible")
    note = "regimes won, decided–possible: " + "; ".join(f"{m} {r.decided}–{r.possible}" for m, r in wins.iterrows())
    return assess(claim, iv, null=0.5, mde_value=_mde_of(p) if mde_value is None else mde_value, unit=unit,
                  note=f"{note} (weakest: {low.name})")


def chain(dmg: pd.DataFrame, frac: float = 0.5, level: float = 0.95) -> pd.DataFrame:
    """The strict order ``peak ≤ mean ≤ zero`` and "resample worst" at ``frac``, per model, as paired
    differences with (marginal) t-intervals: a description, not a verdict (the paper claims no chain)."""
    rows = []
    for model, g in dmg[dmg.frac > 0].groupby("model", sort=False):
        f = nearest(g.frac.unique(), frac)
        wide = g[(g.frac == f) & (g.layer == g.layer.min())].pivot_table(index="unit", columns="method", values="damage")
        pairs = [(a, b) for a, b in (("peak", "mean"), ("mean", "zero")) if {a, b} <= set(wide.columns)]
        if "resample" in wide.columns and len(wide.columns) > 1:
            pairs.append(("resample", str(wide.drop(columns="resample").mean().idxmax())))
        for a, b in pairs:
            iv = t_interval((wide[a] - wide[b]).to_numpy(), level)
            rows.append({"model": model, "frac": f, "comparison": f"{a} − {b}", "diff": iv.estimate, "lo": iv.lo,
                         "hi": iv.hi, "n": iv.n, "excludes_0": iv.excludes(0.0)})
    return pd.DataFrame(rows)


def ranking(dmg: pd.DataFrame, frac: float = 0.5, level: float = 0.95) -> pd.DataFrame:
    """Methods ranked by mean damage at ``frac`` (1 = least), per model, with marginal t-intervals."""
    parts = []
    for model, g in dmg[dmg.layer == dmg.layer.min()].groupby("model", sort=False):
        f = nearest(g.frac.unique(), frac)
        b = bands(g[g.frac == f], ["method"], level).sort_values("mean", kind="stable")
        parts.append(b.assign(model=model, frac=f, rank=np.arange(1, len(b) + 1)))
    return pd.concat(parts, ignore_index=True)[["model", "rank", "method", "frac", "mean", "lo", "hi", "n"]]
