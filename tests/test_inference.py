"""The shared inference functions against scipy and closed forms."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from paragraph_planning.core import inference as inf
from paragraph_planning.core import multiplicity as mult


def test_wilson_matches_the_closed_form_and_statsmodels_values():
    # Wilson 95 % for 8/10: (0.4902, 0.9433) (Brown, Cai & DasGupta 2001, Table 1 style check)
    i = inf.wilson(8, 10)
    z = stats.norm.ppf(0.975)
    p, n = 0.8, 10
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert i.lo == pytest.approx(centre - half) and i.hi == pytest.approx(centre + half)
    assert i.lo == pytest.approx(0.4902, abs=1e-4) and i.hi == pytest.approx(0.9433, abs=1e-4)
    zero = inf.wilson(0, 20)
    assert zero.lo == 0 and 0.1 < zero.hi < 0.2 and zero.estimate == 0
    with pytest.raises(ValueError):
        inf.wilson(3, 2)


def test_t_interval_equals_scipy():
    x = np.array([1.0, 2.5, 0.7])
    i = inf.t_interval(x)
    lo, hi = stats.t.interval(0.95, df=2, loc=x.mean(), scale=stats.sem(x))
    assert (i.lo, i.hi) == pytest.approx((lo, hi))
    z_half = 1.96 * stats.sem(x)
    assert (i.hi - i.lo) / 2 / z_half == pytest.approx(stats.t.ppf(0.975, 2) / 1.96)  # 2.2x wider than z
    assert math.isnan(inf.t_interval([3.0]).lo)


def test_bootstrap_interval_covers_like_the_t_interval_for_normal_data():
    rng = np.random.default_rng(0)
    x = rng.normal(0.3, 1.0, size=400)
    b = inf.bootstrap_mean(x, n_boot=20_000, seed=1)
    t = inf.t_interval(x)
    assert b.estimate == pytest.approx(x.mean())
    assert b.lo == pytest.approx(t.lo, abs=0.02) and b.hi == pytest.approx(t.hi, abs=0.02)
    assert b.se == pytest.approx(stats.sem(x), rel=0.05)


def test_cluster_bootstrap_is_wider_when_units_are_correlated():
    rng = np.random.default_rng(1)
    clusters = np.repeat(np.arange(20), 10)
    x = rng.normal(size=20)[clusters] + 0.2 * rng.normal(size=200)  # units share their cluster's value
    plain, clustered = inf.bootstrap_mean(x), inf.bootstrap_mean(x, clusters)
    assert clustered.n_clusters == 20 and plain.n_clusters is None
    assert (clustered.hi - clustered.lo) > 2 * (plain.hi - plain.lo)
    # with one value per cluster, the cluster s.e. is the s.e. of the 20 cluster means
    assert clustered.se == pytest.approx(stats.sem(np.bincount(clusters, x) / 10) * math.sqrt(19 / 20), rel=0.1)


def test_paired_bootstrap_is_the_bootstrap_of_differences():
    a, b = np.arange(10.0), np.arange(10.0) * 0.5
    assert inf.paired_bootstrap(a, b, seed=3) == inf.bootstrap_mean(a - b, seed=3)
    with pytest.raises(ValueError, match="paired"):
        inf.paired_bootstrap(a, b[:5])


def test_bootstrap_difference_matches_welch_and_widens_with_clusters():
    rng = np.random.default_rng(4)
    in_a = np.arange(600) < 200
    x = np.where(in_a, rng.normal(0.5, 1.0, 600), rng.normal(0.2, 2.0, 600))
    d = inf.bootstrap_difference(x, in_a, n_boot=20_000, seed=1)
    welch = math.sqrt(x[in_a].var(ddof=1) / 200 + x[~in_a].var(ddof=1) / 400)
    assert d.estimate == pytest.approx(x[in_a].mean() - x[~in_a].mean())
    assert d.se == pytest.approx(welch, rel=0.05)
    assert d.lo == pytest.approx(d.estimate - 1.96 * welch, abs=0.03)
    assert d.hi == pytest.approx(d.estimate + 1.96 * welch, abs=0.03)
    clusters = np.arange(600) % 20  # clusters hold units of both subsets and shift them together
    y = rng.normal(size=20)[clusters] * np.where(in_a, 1.0, -1.0) + 0.1 * rng.normal(size=600)
    assert inf.bootstrap_difference(y, in_a, clusters).se > 2 * inf.bootstrap_difference(y, in_a).se
    with pytest.raises(ValueError, match="Both subsets"):
        inf.bootstrap_difference(x, np.ones(600, bool))


def test_permutation_test_within_groups():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(30), 4)
    labels = np.tile([0, 1, 2, 3], 30)

    def hit_rate(values, lab):  # share of groups whose label-0 unit has the largest value
        v = values.reshape(30, 4)
        return float((v.argmax(1) == lab.reshape(30, 4).argmin(1)).mean())

    noise = rng.normal(size=120)
    res = inf.permutation_test(noise, labels, hit_rate, groups, n_perm=2000)
    assert res["p"] > 0.05 and res["null_mean"] == pytest.approx(0.25, abs=0.02)
    signal = noise + 3 * (labels == 0)
    res = inf.permutation_test(signal, labels, hit_rate, groups, n_perm=2000)
    assert res["p"] < 0.001 and res["statistic"] > 0.9


def test_permutation_test_without_groups_matches_scipy_exact():
    """No groups: every label is shuffled across all units (two separated samples of 4: p = 1/70 exactly)."""
    values = np.array([5.1, 4.9, 5.3, 5.2, 3.0, 3.2, 2.9, 3.1, 4.0, 3.9])
    labels = np.array(["a"] * 4 + ["b"] * 6)

    def diff(v, lab):
        return v[lab == "a"].mean() - v[lab == "b"].mean()

    res = inf.permutation_test(values, labels, diff, n_perm=20_000, seed=1)
    exact = stats.permutation_test((values[:4], values[4:]), lambda x, y: x.mean() - y.mean(),
                                   permutation_type="independent", alternative="greater", n_resamples=np.inf).pvalue
    assert exact == pytest.approx(1 / 210)
    assert res["p"] == pytest.approx(exact, abs=0.002) and abs(res["null_mean"]) < 0.02


def test_mde_matches_the_normal_and_t_power_formulas():
    assert inf.mde(1.0) == pytest.approx(stats.norm.ppf(0.975) + stats.norm.ppf(0.8))  # 2.80
    sd, n = 0.24, 40
    m = inf.mde_paired(sd, n)
    assert m == pytest.approx((stats.t.ppf(0.975, n - 1) + stats.t.ppf(0.8, n - 1)) * sd / math.sqrt(n))
    assert inf.power_paired(m, sd, n) == pytest.approx(0.8, abs=0.02)
    # the example: a 0.04 difference at paired s.d. 0.24 needs ~280 texts for 80 % power
    n_needed = inf.n_for_mde(0.24, 0.04)
    assert inf.mde_paired(0.24, n_needed) <= 0.04 < inf.mde_paired(0.24, n_needed - 1)
    assert 270 < n_needed < 300


def test_verdicts_from_intervals():
    iv = lambda lo, hi: inf.Interval((lo + hi) / 2, lo, hi)
    assert inf.verdict(iv(0.1, 0.3)) == inf.HOLDS
    assert inf.verdict(iv(-0.1, 0.3)) == inf.UNDETERMINED  # a true effect inside the noise: undetermined
    assert inf.verdict(iv(-0.3, -0.1)) == inf.ABSENT
    assert inf.verdict(iv(-0.01, 0.02), margin=0.05) == inf.ABSENT  # entirely below the smallest effect of interest
    assert inf.verdict(iv(-0.3, -0.1), direction="less") == inf.HOLDS
    assert inf.verdict(iv(0.1, 0.3), direction="two-sided") == inf.HOLDS
    assert inf.verdict(iv(float("nan"), float("nan"))) == inf.UNDETERMINED


def test_synthetic_effects_get_the_right_verdicts():
    """A clear effect holds; a real but small effect at a small n is undetermined, never 'does not hold'."""
    rng = np.random.default_rng(5)
    clear = inf.assess("clear", inf.bootstrap_mean(rng.normal(0.5, 1, 200)))
    small = inf.assess("small", inf.bootstrap_mean(rng.normal(0.05, 1, 30)))
    assert clear.verdict == inf.HOLDS and small.verdict == inf.UNDETERMINED
    assert small.mde > 0.05  # the sample could not detect it, and says so
    table = inf.findings_table([clear, small])
    assert list(table.claim) == ["clear", "small"] and set(table.columns) >= {"estimate", "lo", "hi", "n", "mde", "verdict"}


def test_max_t_critical_matches_t_sidak_and_identical_columns():
    one = mult.max_t_critical([[1.0]], df=9, n_sim=400_000)
    assert one == pytest.approx(stats.t.ppf(0.975, 9), rel=0.01)
    assert mult.max_t_critical(np.ones((3, 3)), df=9, n_sim=400_000) == pytest.approx(one, rel=0.01)  # one comparison, thrice
    k = 6  # independent normal columns: Šidák's quantile exactly
    assert mult.max_t_critical(np.eye(k), n_sim=400_000) == pytest.approx(stats.norm.ppf(1 - (1 - 0.95 ** (1 / k)) / 2), rel=0.01)
    half = mult.max_t_critical(0.5 * np.eye(k) + 0.5, n_sim=200_000)  # correlated: between one column and Šidák
    assert stats.norm.ppf(0.975) < half < stats.norm.ppf(1 - (1 - 0.95 ** (1 / k)) / 2)
    with pytest.raises(ValueError):
        mult.max_t_critical(np.ones((2, 3)))


def test_simultaneous_t_covers_all_means_at_once():
    rng = np.random.default_rng(7)
    k, n, reps = 8, 30, 300
    cov = 0.6 * np.eye(k) + 0.4  # correlated comparisons of the same units
    truth = np.linspace(-1, 1, k)
    all_cover = 0
    for r in range(reps):
        x = rng.multivariate_normal(truth, cov, size=n)
        ivs = mult.simultaneous_t(x, n_sim=20_000, seed=r)
        all_cover += all(iv.lo <= t <= iv.hi for iv, t in zip(ivs, truth))
    assert 0.91 <= all_cover / reps <= 0.99  # about 95 %, where marginal intervals would cover all 8 far less often
    x = rng.multivariate_normal(truth, cov, size=n)
    ivs, t = mult.simultaneous_t(x), inf.t_interval(x[:, 0])
    bonferroni = stats.t.ppf(1 - 0.025 / k, n - 1) * t.se
    assert t.hi - t.estimate < ivs[0].hi - ivs[0].estimate < bonferroni  # wider than one interval, narrower than Bonferroni
    assert ivs[0].estimate == pytest.approx(x[:, 0].mean()) and ivs[0].se == pytest.approx(stats.sem(x[:, 0]))
    single = mult.simultaneous_t(x[:, :1], n_sim=400_000)[0]
    assert (single.lo, single.hi) == pytest.approx((t.lo, t.hi), rel=0.02)  # one column: the t interval
    flat = mult.simultaneous_t(np.column_stack([x[:, 0], np.zeros(n)]))
    assert flat[1].lo == flat[1].hi == 0.0  # a column without variance: a point, left out of c


def test_bootstrap_stat_matches_closed_form_standard_errors():
    """One sample: the s.e. of a mean; two samples: of a difference; a ratio of sums by the delta method."""
    rng = np.random.default_rng(7)
    x, y = rng.normal(1.0, 2.0, size=(500, 1)), rng.normal(3.0, 1.0, size=(300, 1))
    one = inf.bootstrap_stat(lambda m: m[:, 0], [x], seed=1)
    assert one.estimate == pytest.approx(x.mean()) and one.n == 500
    assert one.se == pytest.approx(stats.sem(x[:, 0]), rel=0.05)
    diff = inf.bootstrap_stat(lambda a, b: a[:, 0] - b[:, 0], [x, y], seed=2)
    assert diff.estimate == pytest.approx(x.mean() - y.mean()) and diff.n == 800
    assert diff.se == pytest.approx(math.sqrt(x.var(ddof=1) / 500 + y.var(ddof=1) / 300), rel=0.05)
    assert diff.lo == pytest.approx(diff.estimate - 1.96 * diff.se, abs=0.05)
    # paired columns stay paired: the s.e. of mean(a) / mean(b) is the delta-method one, not the unpaired one
    b = rng.uniform(1, 2, size=400)
    pair = np.stack([b + rng.normal(0, 0.05, 400), b], 1)
    ratio = inf.bootstrap_stat(lambda m: m[:, 0] / m[:, 1], [pair], seed=3)
    r = pair[:, 0].sum() / pair[:, 1].sum()
    delta = np.std(pair[:, 0] - r * pair[:, 1], ddof=1) / math.sqrt(400) / pair[:, 1].mean()
    assert ratio.estimate == pytest.approx(r) and ratio.se == pytest.approx(delta, rel=0.1)


def test_bootstrap_stat_on_binary_units_matches_the_binomial():
    """Many identical rows (0/1 hits of images) take the multinomial path: the same distribution."""
    rng = np.random.default_rng(3)
    before = (rng.random(3000) < 0.9).astype(float)
    after = before * (rng.random(3000) < 0.5)  # about half of the hits lost
    iv = inf.bootstrap_stat(lambda m: m[:, 0], [after[:, None]], seed=4)
    p = after.mean()
    assert iv.se == pytest.approx(math.sqrt(p * (1 - p) / 3000), rel=0.05)
    drop = inf.bootstrap_stat(lambda m: 1 - m[:, 1] / m[:, 0], [np.stack([before, after], 1)], seed=5)
    r = after.sum() / before.sum()  # binomial: lost hits out of the hits before
    assert drop.estimate == pytest.approx(1 - r) and drop.se == pytest.approx(math.sqrt(r * (1 - r) / before.sum()),
                                                                           rel=0.1)


def test_bootstrap_stat_infinite_values_and_errors():
    x = np.array([[1.0], [2.0], [3.0], [4.0]])
    inf_iv = inf.bootstrap_stat(lambda m: np.where(m[:, 0] > 2.4, np.inf, m[:, 0]), [x], n_boot=2000)
    assert inf_iv.hi == math.inf and math.isfinite(inf_iv.lo) and math.isnan(inf_iv.se)
    assert math.isnan(inf.bootstrap_stat(lambda m: m[:, 0], [x[:1]]).lo)  # one unit: no interval
    with pytest.raises(ValueError, match="NaN"):
        inf.bootstrap_stat(lambda m: m[:, 0] * np.nan, [x])
    with pytest.raises(ValueError, match="finite"):
        inf.bootstrap_stat(lambda m: m[:, 0], [np.array([[np.nan], [1.0]])])
