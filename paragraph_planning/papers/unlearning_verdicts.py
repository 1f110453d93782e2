"""Intervals and verdicts for the unlearning experiments, from their tidy per-unit frames.

Every number here is a statistic of totals over evaluation units (text rows or images) of one
side (``forget`` / ``retain``), compared with the same units before pruning. The relative **drop**
of a side is ``1 − Σ after / Σ before`` of the metric's hits (0.5: the metric halved). Intervals
are percentile bootstraps (:func:`paragraph_planning.core.inference.bootstrap_stat`) resampling
forget units and retain units independently (a unit's before and after values stay paired), and,
for a random baseline, its seeds as well, so the interval includes the spread over random draws.

Claims (each a :class:`~paragraph_planning.core.inference.Finding`: "holds", "does not hold" or
"undetermined at this sample"):

* :func:`forget_vs_retain`: the forget metric drops more than the retain metric (difference of
  drops > 0), and by at least ``ratio_target`` times as much (ratio of drops);
* :func:`beats_random`: selective pruning is more selective (forget drop − retain drop) than
  random pruning of the same number of neurons;
* :func:`forgotten` / :func:`kept`: the forget metric ends below a target (e.g. near chance), and
  the retain metric loses less than a margin.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from ..core.inference import Finding, Interval, assess, bootstrap_stat
from .unlearning import metric_denominator

SIDES: tuple[str, ...] = ("forget", "retain")
N_BOOT = 4000
"""Bootstrap resamples per interval (percentile bounds move by well under 0.1 of an s.e. between seeds)."""


# ============================================================================ aligning units
def side_matrix(frames: Sequence[pd.DataFrame], side: str, metric: str = "top1", denominator: bool = False) -> np.ndarray:
    """``[units, len(frames)]`` hits of ``metric`` on one side, one column per frame, aligned by unit.

    With ``denominator``, a first column holds each unit's targets (``n``, or ``kept`` for skip50).
    Every frame must hold the same units of that side.
    """
    cols = []
    units = None
    for f in frames:
        part = f[f.side == side].sort_values("unit")
        if units is None:
            units = part.unit.to_numpy()
            if denominator:
                cols.append(part[metric_denominator(metric)].to_numpy(dtype=float))
        elif not np.array_equal(part.unit.to_numpy(), units):
            raise ValueError(f"Frames hold different {side} units; compare results on the same evaluation data.")
        cols.append(part[metric].to_numpy(dtype=float))
    if units is None or len(units) == 0:
        raise ValueError(f"No {side} units to compare.")
    return np.stack(cols, 1)


def _drop(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(before > 0, 1 - after / np.where(before > 0, before, 1), 0.0)


def ratio_of_drops(forget_drop: np.ndarray, retain_drop: np.ndarray) -> np.ndarray:
    """``forget_drop / retain_drop``; ``+inf`` when retain did not drop but forget did, 0 when neither dropped."""
    f, r = np.asarray(forget_drop, dtype=float), np.asarray(retain_drop, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(r > 0, f / np.where(r > 0, r, 1), np.where(f > 0, np.inf, 0.0))
    return out


def _boot(stat: Any, samples: Sequence[np.ndarray], seed: int, n: int | None = None) -> Interval:
    return bootstrap_stat(stat, samples, n_boot=N_BOOT, seed=seed, n=n)


# ============================================================================ intervals
def point_drops(base: pd.DataFrame, after: pd.DataFrame, metric: str = "top1") -> dict[str, float]:
    """The forget and retain drops themselves (no interval)."""
    out = {}
    for side in SIDES:
        m = side_matrix([base, after], side, metric)
        out[side] = float(_drop(m[:, 0].sum(), m[:, 1].sum()))
    return out


def side_interval(units: pd.DataFrame, side: str, metric: str = "top1", seed: int = 0) -> Interval:
    """The metric on one side (total hits / total targets) with its interval over units."""
    m = side_matrix([units], side, metric, denominator=True)
    return _boot(lambda a: a[:, 1] / a[:, 0], [m], seed)


DROP_KEYS: tuple[str, ...] = ("forget", "retain", "difference", "ratio")


def drop_intervals(base: pd.DataFrame, after: pd.DataFrame, metric: str = "top1", seed: int = 0,
                   which: Sequence[str] = DROP_KEYS) -> dict[str, Interval]:
    """``forget`` and ``retain`` drops, their ``difference`` (forget − retain) and ``ratio`` (forget / retain).

    ``which``: the subset of :data:`DROP_KEYS` to compute.
    """
    f, r = (side_matrix([base, after], s, metric) for s in SIDES)

    def fd(a: np.ndarray) -> np.ndarray:
        return _drop(a[:, 0], a[:, 1])

    make = {
        "forget": lambda: _boot(fd, [f], seed),
        "retain": lambda: _boot(fd, [r], seed),
        "difference": lambda: _boot(lambda a, b: fd(a) - fd(b), [f, r], seed),
        "ratio": lambda: _boot(lambda a, b: ratio_of_drops(fd(a), fd(b)), [f, r], seed),
    }
    bad = set(which) - set(make)
    if bad:
        raise ValueError(f"Unknown drop intervals {sorted(bad)}. Valid: {', '.join(DROP_KEYS)}.")
    return {k: make[k]() for k in which}


def selectivity_vs_random(base: pd.DataFrame, after: pd.DataFrame, random: pd.DataFrame, metric: str = "top1",
                          seed: int = 0) -> dict[str, Interval]:
    """Selectivity (forget drop − retain drop) of ``after`` and of ``random`` (per ``seed`` column), and their gap.

    Returns ``selective``, ``random`` (the mean over seeds) and ``gap`` = selective − random; the
    random side's interval resamples its seeds as well as the units.
    """
    seeds = sorted(random.seed.unique())
    if len(seeds) < 2:
        raise ValueError(f"Need at least two random seeds for an interval over seeds, got {len(seeds)}.")
    frames = [base, after, *[random[random.seed == s] for s in seeds]]
    f, r = (side_matrix(frames, s, metric) for s in SIDES)
    w = np.eye(len(seeds))  # resampled seeds: their means are the seeds' bootstrap weights

    def sel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return _drop(a[:, 0], a[:, 1]) - _drop(b[:, 0], b[:, 1])

    def rnd(a: np.ndarray, b: np.ndarray, ws: np.ndarray) -> np.ndarray:
        per = np.stack([_drop(a[:, 0], a[:, 2 + i]) - _drop(b[:, 0], b[:, 2 + i]) for i in range(len(seeds))], 1)
        return (per * ws).sum(1)

    n = f.shape[0] + r.shape[0]
    return {
        "selective": _boot(sel, [f, r], seed, n),
        "random": _boot(rnd, [f, r, w], seed, n),
        "gap": _boot(lambda a, b, ws: sel(a, b) - rnd(a, b, ws), [f, r, w], seed, n),
        "seeds": len(seeds),
    }


def difference_interval(base: pd.DataFrame, a: pd.DataFrame, b: pd.DataFrame, metric: str = "top1",
                        seed: int = 0) -> Interval:
    """Selectivity of ``a`` minus that of ``b``, both from ``base`` on the same units (e.g. two positions policies)."""
    f, r = (side_matrix([base, a, b], s, metric) for s in SIDES)

    def stat(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (_drop(x[:, 0], x[:, 1]) - _drop(y[:, 0], y[:, 1])) - (_drop(x[:, 0], x[:, 2]) - _drop(y[:, 0], y[:, 2]))

    return _boot(stat, [f, r], seed)


def step_intervals(run: pd.DataFrame, metric: str = "top1", seed: int = 0) -> pd.DataFrame:
    """Per step of a run: each side's metric and drop with intervals (for curves with bands).

    Columns: ``step``, ``frac_ff``, ``frac_attn``, ``side``, ``value``/``value_lo``/``value_hi`` (the
    metric) and ``drop``/``drop_lo``/``drop_hi`` (relative to step 0).
    """
    base = run[run.step == 0]
    rows = []
    for step, part in run.groupby("step"):
        for side in SIDES:
            v = side_interval(part, side, metric, seed)
            m = side_matrix([base, part], side, metric)
            d = _boot(lambda a: _drop(a[:, 0], a[:, 1]), [m], seed) if step else Interval(0.0, 0.0, 0.0, n=m.shape[0])
            rows.append({"step": int(step), "frac_ff": float(part.frac_ff.iloc[0]),
                         "frac_attn": float(part.frac_attn.iloc[0]), "side": side, "metric": metric,
                         "value": v.estimate, "value_lo": v.lo, "value_hi": v.hi,
                         "drop": d.estimate, "drop_lo": d.lo, "drop_hi": d.hi})
    return pd.DataFrame(rows)


# ============================================================================ verdicts
def _units_note(base: pd.DataFrame, unit: str, seeds: int | None = None) -> str:
    n = {s: int((base.side == s).sum()) for s in SIDES}
    out = f"{n['forget']} forget + {n['retain']} retain {unit}"
    return out + (f", {seeds} random seeds" if seeds else "")


def forget_vs_retain(base: pd.DataFrame, after: pd.DataFrame, metric: str = "top1", ratio_target: float = 5.0,
                     setting: str = "", unit: str = "rows", seed: int = 0) -> list[Finding]:
    """Two claims: the forget drop exceeds the retain drop; and it is at least ``ratio_target`` times as large."""
    iv = drop_intervals(base, after, metric, seed, which=("difference", "ratio"))
    note = _units_note(base, unit)
    return [
        assess(f"{setting}forget {metric} drops more than retain {metric}", iv["difference"], unit="forget − retain drop",
               note=note),
        assess(f"{setting}forget drop ≥ {ratio_target:g}× retain drop", iv["ratio"], null=ratio_target,
               unit="ratio of drops", note=note),
    ]


def beats_random(base: pd.DataFrame, after: pd.DataFrame, random: pd.DataFrame, metric: str = "top1",
                 claim: str = "selective pruning beats random pruning", setting: str = "", unit: str = "rows",
                 seed: int = 0) -> Finding:
    """The claim that ``after`` is more selective (forget drop − retain drop) than ``random`` at the same budget."""
    iv = selectivity_vs_random(base, after, random, metric, seed)
    return assess(f"{setting}{claim}", iv["gap"], unit="selectivity gap", note=_units_note(base, unit, iv["seeds"]))


def forgotten(after: pd.DataFrame, target: float, metric: str = "top1", setting: str = "", unit: str = "images",
              seed: int = 0) -> Finding:
    """The claim that the forget side's metric after pruning lies below ``target`` (e.g. near chance)."""
    iv = side_interval(after, "forget", metric, seed)
    n = int((after.side == "forget").sum())
    return assess(f"{setting}forget {metric} falls below {target:.0%}", iv, null=target, direction="less",
                  unit=metric, note=f"{n} forget {unit}")


def kept(base: pd.DataFrame, after: pd.DataFrame, max_drop: float, metric: str = "top1", setting: str = "",
         unit: str = "images", seed: int = 0) -> Finding:
    """The claim that the retain side loses less than ``max_drop`` of its metric (relative drop)."""
    iv = drop_intervals(base, after, metric, seed, which=("retain",))["retain"]
    n = int((base.side == "retain").sum())
    return assess(f"{setting}retain {metric} drops by less than {max_drop:.0%}", iv, null=max_drop, direction="less",
                  unit="retain drop", note=f"{n} retain {unit}")
