"""Paper 2's verdicts on synthetic runs with known answers: clear effects hold, effects inside the noise stay undetermined."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from paragraph_planning.core.inference import ABSENT, HOLDS, UNDETERMINED
from paragraph_planning.core.multiplicity import simultaneous_t
from paragraph_planning.papers.ablation_eval import ALL_LAYERS
from paragraph_planning.papers.ablation_verdicts import (
    chain,
    claim_findings,
    damage,
    method_status,
    pairwise,
    ranking,
    regimes,
    win_counts,
)

METHODS = ("zero", "mean", "peak", "resample")


def synthetic(means: dict[float, dict[str, float]], n: int = 200, sd: float = 0.05, seed: int = 0,
              model: str = "m", unit_sd: float = 0.3, layer: int = ALL_LAYERS, top1: bool = False) -> pd.DataFrame:
    """Rows shaped like run_ablation's: per fraction, method and unit, loss = clean + mean damage + noise
    (``top1``: the same numbers as a top-1 drop in points instead, with loss unchanged).

    Every unit has its own clean loss and its own sensitivity (shared by all methods: the paired design)."""
    rng = np.random.default_rng(seed)
    clean = 3.0 + rng.normal(0, 0.5, n)
    rows = []
    for f, by_method in means.items():
        shared = rng.normal(0, unit_sd, n)  # unit effects common to every method at this fraction
        for m, mu in by_method.items():
            d = mu + shared + rng.normal(0, sd, n)
            rows.append(pd.DataFrame({"model": model, "method": m, "frac": f, "layer": layer, "unit": np.arange(n),
                                      "loss": clean if top1 else clean + d, "clean_loss": clean,
                                      "top1": 0.5 - d / 100 if top1 else 0.5, "clean_top1": 0.5}))
    return pd.concat(rows, ignore_index=True)


def clear_run(**kw) -> pd.DataFrame:
    order = {"peak": 0.1, "mean": 0.2, "zero": 0.5, "resample": 1.0}
    return synthetic({f: {m: v * f * 10 for m, v in order.items()} for f in (0.1, 0.5, 1.0)}, **kw)


def test_damage_is_the_loss_increase_or_the_top1_drop():
    df = pd.DataFrame({"loss": [3.5], "clean_loss": [3.0], "top1": [0.25], "clean_top1": [0.75]})
    assert damage(df, "loss").damage.iloc[0] == pytest.approx(0.5)
    assert damage(df, "top1").damage.iloc[0] == pytest.approx(50.0)  # percentage points
    with pytest.raises(ValueError, match="Valid: loss, top1"):
        damage(df, "perplexity")


def test_pairwise_intervals_are_simultaneous_over_each_models_comparisons():
    dmg = damage(clear_run(n=50), "loss")
    p = pairwise(dmg)
    assert len(p) == 3 * 12 and (p.family == 3 * 6).all() and (p.level == 0.95).all()  # 3 fractions x 6 pairs
    w = {f: dmg[dmg.frac == f].pivot_table(index="unit", columns="method", values="damage") for f in (0.1, 0.5, 1.0)}
    methods = list(dict.fromkeys(dmg.method))
    x = np.column_stack([w[f][a] - w[f][b] for f in (0.1, 0.5, 1.0) for i, a in enumerate(methods) for b in methods[i + 1:]])
    assert methods == ["peak", "mean", "zero", "resample"]
    want = simultaneous_t(x, 0.95)[6 + 1]  # fraction 0.5, its second pair: peak − zero
    row = p[(p.frac == 0.5) & (p.a == "peak") & (p.b == "zero")].iloc[0]
    assert (row["diff"], row.lo, row.hi) == pytest.approx((want.estimate, want.lo, want.hi))
    flipped = p[(p.frac == 0.5) & (p.a == "zero") & (p.b == "peak")].iloc[0]
    assert (flipped["diff"], flipped.lo, flipped.hi) == pytest.approx((-row["diff"], -row.hi, -row.lo))
    marginal = pairwise(dmg, simultaneous=False)
    m = marginal[(marginal.frac == 0.5) & (marginal.a == "peak") & (marginal.b == "zero")].iloc[0]
    d = (w[0.5]["peak"] - w[0.5]["zero"]).to_numpy()
    assert (m.lo, m.hi) == pytest.approx(stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d)))
    assert (marginal.hi - marginal.lo).mean() < (p.hi - p.lo).mean()
    # two models: each at 0.95^(1/2), so that both hold at once with 95 %
    two = pairwise(damage(pd.concat([clear_run(model="a"), clear_run(model="b", seed=1)]), "loss"))
    assert two.level.iloc[0] == pytest.approx(0.95 ** 0.5) and (two.family == 18).all()


def test_clear_effects_hold_and_each_method_winning_does_not():
    dmg = damage(clear_run(), "loss")
    p = pairwise(dmg)
    r = regimes(p)
    assert list(r.best) == ["peak"] * 3 and r.best_decided.all() and list(r.worst) == ["resample"] * 3
    assert r.worst_decided.all() and (r.tied_best == "peak").all()
    findings = {f.claim.split(": ", 1)[1]: f for f in claim_findings(p)}
    assert findings["at 50% ablated, peak does the least damage"].verdict == HOLDS
    assert findings["at 50% ablated, resample does the most damage"].verdict == HOLDS
    worst = findings["resampling does the most damage at most fractions"]
    assert worst.verdict == HOLDS and (worst.interval.lo, worst.interval.hi) == (1.0, 1.0)
    assert findings["peak does the least damage at more than 1/4 of fractions"].verdict == HOLDS
    each = findings["each method does the least damage at some fraction"]
    assert each.verdict == ABSENT and each.interval.hi == 0  # zero, mean, resample are beaten everywhere
    assert all(math.isfinite(f.mde) and f.mde > 0 for f in findings.values())
    assert findings["at 50% ablated, peak does the least damage"].interval.n == 200


def test_a_true_difference_inside_the_noise_is_undetermined():
    # peak is truly better than mean by 0.01, but the per-unit noise is 0.5 with 40 units
    means = {0.5: {"peak": 0.20, "mean": 0.21, "zero": 0.8, "resample": 2.0}}
    dmg = damage(synthetic(means, n=40, sd=0.5), "loss")
    p = pairwise(dmg)
    st = method_status(p).set_index("method")
    assert st.loc["peak", "best"] == UNDETERMINED and st.loc["mean", "best"] == UNDETERMINED
    assert st.loc["zero", "best"] == ABSENT and st.loc["resample", "worst"] == HOLDS
    findings = {f.claim.split(": ", 1)[1]: f for f in claim_findings(p)}
    best = [f for c, f in findings.items() if "least damage" in c and "50%" in c][0]
    assert best.verdict == UNDETERMINED and best.interval.lo < 0 < best.interval.hi
    assert best.mde > 0.01  # the sample cannot detect the true 0.01 difference, and says so
    assert regimes(p).tied_best.iloc[0] in ("peak, mean", "mean, peak")


def test_each_method_wins_somewhere_holds_when_every_method_clearly_wins_one_regime():
    base = {"zero": 1.0, "mean": 1.0, "peak": 1.0, "resample": 1.0}
    means = {f: {**base, m: 0.2} for f, m in zip((0.1, 0.4, 0.7, 1.0), METHODS)}
    p = pairwise(damage(synthetic(means), "loss"))
    findings = {f.claim.split(": ", 1)[1]: f for f in claim_findings(p)}
    each = findings["each method does the least damage at some fraction"]
    assert each.verdict == HOLDS and each.interval.lo == 1
    wins = win_counts(p, "best").set_index("method")
    assert (wins.decided == 1).all() and (wins.point == 1).all() and (wins.regimes == 4).all()
    # resample is the worst nowhere by a decided margin here: the three others tie at 1.0 in three regimes
    assert findings["resampling does the most damage at most fractions"].verdict != HOLDS


def test_resample_worst_at_a_minority_of_fractions_does_not_hold():
    fr = (0.1, 0.2, 0.3, 0.4, 0.5)
    means = {f: ({"zero": 0.3, "mean": 0.2, "peak": 0.1, "resample": 1.0} if i < 2 else
                 {"zero": 1.5, "mean": 0.2, "peak": 0.1, "resample": 0.6}) for i, f in enumerate(fr)}
    p = pairwise(damage(synthetic(means), "loss"))
    f = {x.claim.split(": ", 1)[1]: x for x in claim_findings(p)}["resampling does the most damage at most fractions"]
    assert f.verdict == ABSENT and f.interval.hi == pytest.approx(0.4) and f.interval.lo == pytest.approx(0.4)


def test_pooled_claim_over_models_and_per_layer_regimes():
    a = clear_run(model="a")
    b = synthetic({0.5: {"zero": 0.2, "mean": 1.0, "peak": 1.0, "resample": 0.1}}, model="b")
    p = pairwise(damage(pd.concat([a, b]), "loss"))
    assert set(p.family) == {3 * 6, 6} and p.level.iloc[0] == pytest.approx(0.95 ** 0.5)  # a family per model
    pooled = [f for f in claim_findings(p) if f.claim.startswith("all models")][0]
    assert pooled.verdict == ABSENT  # mean never wins anywhere
    # one layer at a time: the layers are the regimes
    layers = pd.concat([synthetic({1.0: {"zero": 0.1 + 0.5 * (layer == 1), "mean": 0.3, "peak": 0.3, "resample": 1.0}},
                                  layer=layer, seed=layer) for layer in (0, 1)])
    lp = pairwise(damage(layers, "loss"))
    r = regimes(lp).set_index("layer")
    assert r.loc[0, "best"] == "zero" and r.loc[0, "best_decided"] and not r.loc[1, "best"] == "zero"
    with pytest.raises(ValueError, match="ALL_LAYERS"):
        claim_findings(lp)


def test_chain_and_ranking_describe_without_deciding():
    dmg = damage(clear_run(n=30), "loss")
    c = chain(dmg, 0.5).set_index("comparison")
    assert list(c.index) == ["peak − mean", "mean − zero", "resample − zero"]
    assert c.loc["peak − mean", "diff"] == pytest.approx(-0.5, abs=0.05) and c.excludes_0.all()
    r = ranking(dmg, 0.5)
    assert list(r.method) == ["peak", "mean", "zero", "resample"] and (r["rank"] == [1, 2, 3, 4]).all()
