"""Unlearning verdicts on synthetic per-unit results with known answers (no model)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from paragraph_planning.core.inference import ABSENT, HOLDS, UNDETERMINED
from paragraph_planning.papers import unlearning_verdicts as V

TOKENS = 255  # targets per text row


def _units(rng, n_forget: int, n_retain: int, p_forget: float, p_retain: float, spread: float = 0.1) -> pd.DataFrame:
    """Per-row top-1 hits of an unpruned model: rows differ in difficulty (``spread``), so pairing matters."""
    rows = []
    for side, n, p in (("forget", n_forget, p_forget), ("retain", n_retain, p_retain)):
        for u in range(n):
            q = float(np.clip(p + spread * rng.normal(), 0.05, 0.95))
            rows.append({"side": side, "unit": u, "label": side, "n": TOKENS, "top1": rng.binomial(TOKENS, q)})
    return pd.DataFrame(rows)


def _after(rng, base: pd.DataFrame, keep_forget: float, keep_retain: float, noise: float = 0.0) -> pd.DataFrame:
    """The same rows after pruning: each row's rate times ``keep`` of its side, jittered by ``noise``."""
    keep = np.where(base.side == "forget", keep_forget, keep_retain)
    q = np.clip(base.top1 / base.n * keep * (1 + noise * rng.normal(size=len(base))), 0, 1)
    return base.assign(top1=rng.binomial(TOKENS, q))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_ratio_of_drops_conventions():
    out = V.ratio_of_drops(np.array([0.5, 0.5, -0.1, 0.0, -0.2]), np.array([0.1, 0.0, 0.2, 0.0, -0.1]))
    assert out[0] == pytest.approx(5) and out[1] == math.inf and out[2] == pytest.approx(-0.5)
    assert out[3] == 0 and out[4] == 0


def test_drop_intervals_recover_a_known_drop(rng):
    base = _units(rng, 200, 200, 0.5, 0.5)
    after = _after(rng, base, 0.5, 0.9)  # forget halves, retain loses 10 %
    iv = V.drop_intervals(base, after)
    assert iv["forget"].lo < 0.5 < iv["forget"].hi and iv["retain"].lo < 0.1 < iv["retain"].hi
    assert iv["difference"].estimate == pytest.approx(iv["forget"].estimate - iv["retain"].estimate)
    assert iv["ratio"].lo < 5 < iv["ratio"].hi
    with pytest.raises(ValueError, match="different forget units"):
        V.drop_intervals(base, after[after.unit < 100])


def test_forget_vs_retain_clear_effect_holds_and_small_effect_is_undetermined(rng):
    base = _units(rng, 64, 64, 0.5, 0.5)
    clear = _after(rng, base, 0.2, 0.98)
    diff, ratio = V.forget_vs_retain(base, clear, ratio_target=5)
    assert diff.verdict == HOLDS and ratio.verdict == HOLDS
    # a true but small difference (forget −2 %, retain −1 %) on 8 noisy rows: inside the noise
    b = _units(rng, 8, 8, 0.5, 0.5)
    small = _after(rng, b, 0.98, 0.99, noise=0.05)
    diff, ratio = V.forget_vs_retain(b, small, ratio_target=5)
    assert diff.verdict == UNDETERMINED and diff.mde > 0.01
    # retain drops as much as forget, clearly: the ratio target fails on the whole interval
    same = _after(rng, base, 0.5, 0.5)
    assert V.forget_vs_retain(base, same, ratio_target=5)[1].verdict == ABSENT
    assert diff.note == "8 forget + 8 retain rows"


def test_beats_random_with_seed_spread(rng):
    base = _units(rng, 48, 48, 0.5, 0.5)
    selective = _after(rng, base, 0.4, 0.97)
    random = pd.concat([_after(rng, base, 0.9, 0.9).assign(seed=s) for s in range(5)])
    f = V.beats_random(base, selective, random)
    assert f.verdict == HOLDS and "5 random seeds" in f.note
    # a selection no better than random: the gap's interval straddles zero
    like_random = _after(rng, base, 0.9, 0.9)
    assert V.beats_random(base, like_random, random).verdict in (UNDETERMINED, ABSENT)
    # the random side's interval covers the spread over seeds: seeds that disagree widen it
    spread = pd.concat([_after(rng, base, 0.9 + 0.05 * (s - 2), 0.9).assign(seed=s) for s in range(5)])
    tight = V.selectivity_vs_random(base, selective, random)["random"]
    wide = V.selectivity_vs_random(base, selective, spread)["random"]
    assert (wide.hi - wide.lo) > 2 * (tight.hi - tight.lo)
    with pytest.raises(ValueError, match="two random seeds"):
        V.selectivity_vs_random(base, selective, random[random.seed == 0])


def _images(rng, n_forget, n_retain, acc_forget, acc_retain):
    rows = [{"side": side, "unit": u, "label": side, "n": 1, "top1": int(rng.random() < acc)}
            for side, n, acc in (("forget", n_forget, acc_forget), ("retain", n_retain, acc_retain)) for u in range(n)]
    return pd.DataFrame(rows)


def test_forgotten_and_kept_verdicts(rng):
    base = _images(rng, 1000, 3000, 0.9, 0.9)
    after = _images(rng, 1000, 3000, 0.05, 0.88)
    assert V.forgotten(after, 0.15).verdict == HOLDS
    assert V.kept(base, after, 0.1).verdict == HOLDS
    broken = _images(rng, 1000, 3000, 0.5, 0.6)
    assert V.forgotten(broken, 0.15).verdict == ABSENT and V.kept(base, broken, 0.1).verdict == ABSENT
    near = _images(rng, 60, 60, 0.15, 0.9)  # right at the target, on few images
    assert V.forgotten(near, 0.15).verdict == UNDETERMINED


def test_step_intervals_and_difference(rng):
    base = _units(rng, 16, 16, 0.5, 0.5)
    steps = [base.assign(step=0)]
    for s, keep in ((1, 0.8), (2, 0.6)):
        steps.append(_after(rng, base, keep, 1.0).assign(step=s))
    run = pd.concat(steps).assign(frac_ff=lambda d: d.step * 0.01, frac_attn=0.0)
    out = V.step_intervals(run)
    assert len(out) == 6 and set(out.side) == {"forget", "retain"}
    f = out[out.side == "forget"].set_index("step")
    assert f.loc[0, "drop"] == 0 and f.loc[2, "drop"] > f.loc[1, "drop"] > 0
    assert (out.value_lo <= out.value).all() and (out.value <= out.value_hi).all()
    a, b = run[run.step == 2], run[run.step == 1]
    d = V.difference_interval(base, a, b)
    assert d.estimate > 0 and d.lo < d.estimate < d.hi


def test_power_prose_names_the_sample_that_would_detect_the_smallest_effect():
    from paragraph_planning.core.inference import Finding, Interval
    from paragraph_planning.papers.unlearning_report import power_prose

    def finding(claim, mde, n):
        return Finding(claim, Interval(0.1, 0.0, 0.2, n=n), UNDETERMINED, mde=mde, unit="forget − retain drop")

    # MDE ∝ 1/√n: an MDE of 0.04 on 100 units reaches 0.02 at 4 × 100 units
    p = power_prose([finding("a", 0.04, 100), finding("b", 0.01, 50)], 0.02)
    assert p.values["fine"] == 1 and p.values["units"] == 100 and p.values["needed"] == 400
    assert "(a, 100 evaluation units) detects 4.0%" in str(p) and "about 400 units" in str(p)
    # every claim sensitive enough: no sample size to ask for
    p = power_prose([finding("b", 0.01, 50)], 0.02)
    assert "needed" not in p.values and "would need" not in str(p)
    # no claim about a difference of drops: nothing to say
    other = Finding("c", Interval(0.0, 0.0, 0.0, n=5), UNDETERMINED, mde=0.01, unit="ratio of drops")
    assert str(power_prose([other], 0.02)) == ""
