"""Ablation methods (paper 2): replacement values, per-unit subsets and resample sources, the unit-by-unit evaluation."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from paragraph_planning import load_model
from paragraph_planning.core.architectures import hook_name, layer_of
from paragraph_planning.core.interventions import mask_fn
from paragraph_planning.core.peaks import hist_mode, kde_mode, kde_mode_scipy, skewness
from paragraph_planning.papers.ablation import (
    AblationConfig,
    AblationData,
    StatsConfig,
    peak_estimates,
    per_model,
    reference_stats,
    replacement_values,
    run_ablation,
    step_fracs,
)
from paragraph_planning.papers.ablation_eval import (
    ALL_LAYERS,
    EvalTask,
    Resampler,
    evaluate_units,
    image_task,
    lm_task,
    n_ablated,
    unit_keep,
    unit_ranks,
)

SITE = hook_name(0, "attn.pre_out")


@pytest.fixture(scope="module")
def model():
    return load_model("tiny-llama")


def _ids(n_rows: int, seq: int, seed: int) -> torch.Tensor:
    return torch.randint(4, 260, (n_rows, seq), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def ref(model):
    batches = _ids(24, 32, 0).view(3, 8, 32)
    cfg = StatsConfig(sites=("attn.pre_out", "mlp.pre_out"), extra_bins=(10,), reservoir=256)
    return reference_stats(model, batches, cfg), batches


def _recorded(model, batches, name):
    with model.record([name]) as rec:
        for b in batches:
            model(b)
    return torch.cat([h.reshape(-1, h.shape[-1] if h.dim() == 3 else h.shape[-2] * h.shape[-1])
                      for h in rec.history[name]]).double()


@pytest.mark.parametrize("method", ["zero", "mean", "peak", "median", "peak-kde"])
def test_constant_replacement_equals_its_definition(model, ref, method):
    ref, batches = ref
    for name in (SITE, hook_name(1, "mlp.pre_out")):
        x = _recorded(model, batches, name)  # [tokens, neurons], all reference activations
        s = ref.stats[name]
        if method == "zero":
            want = torch.zeros(x.shape[1], dtype=torch.float64)
        elif method == "mean":
            want = x.mean(0)
        elif method == "peak":  # argmax centre of a 100-bin histogram over the stats' fixed range
            edges = s.bin_edges.numpy()
            counts = np.stack([np.histogram(x[:, j].numpy(), bins=edges[j])[0] for j in range(x.shape[1])])
            top = counts.argmax(1)
            want = torch.from_numpy((edges[np.arange(len(top)), top] + edges[np.arange(len(top)), top + 1]) / 2)
        elif method == "median":
            want = s.reservoir.double().median(0).values
        else:  # the mode of scipy's gaussian_kde on the reservoir sample
            want = torch.tensor([kde_mode_scipy(s.reservoir[:, j].numpy()) for j in range(x.shape[1])], dtype=torch.float64)
        got = replacement_values(ref, method)[name].double()
        tol = 1e-4 * float(x.std()) + 1e-6
        if method == "peak-kde":  # both search grids resolve ~span / 4000
            tol = float((s.reservoir.max(0).values - s.reservoir.min(0).values).max()) / 1000
        torch.testing.assert_close(got, want, atol=tol, rtol=1e-5)
        if method in ("mean", "peak", "peak-kde"):
            assert got.abs().max() > 10 * (1e-4 * float(x.std()) + 1e-6)  # not trivially zero

        # during ablation, ablated neurons read exactly c; the others are untouched
        keep = unit_keep(unit_ranks({name: x.shape[1]}, 2, seed=3)[name], 0.5)  # [2, 1, n]: one subset per row
        probe = batches[0][:2]
        with model.record([name]) as clean:
            model(probe)
        with model.hooks([(name, mask_fn(keep, got.float()))]), model.record([name]) as rec:
            model(probe)
        a, c = rec[name].reshape(2, probe.shape[1], -1), clean[name].reshape(2, probe.shape[1], -1)
        for row in range(2):
            off = keep[row, 0] == 0
            torch.testing.assert_close(a[row][:, off], got.float()[off].expand(probe.shape[1], -1))
            torch.testing.assert_close(a[row][:, ~off], c[row][:, ~off])


def test_reference_stats_extra_bins_use_same_tokens(ref):
    ref, _ = ref
    s, e = ref.stats[SITE], ref.extra[10][SITE]
    assert e.count == s.count and e.bins == 10 and e.hist.sum(1).eq(s.count).all()
    # a 10-bin histogram over the same range is the 100-bin one summed in groups of 10
    torch.testing.assert_close(e.hist, s.hist.view(s.n_neurons, 10, 10).sum(-1), atol=2 * s.count // 100, rtol=0)


def test_resample_writes_the_same_position_of_each_units_own_source(model):
    task = lm_task(_ids(8, 16, 1))
    pool = _ids(20, 16, 2)
    names = [SITE, hook_name(1, "attn.pre_out")]
    res = Resampler("corpus", pool=pool)
    sources = res.sources(task, seed=5)
    assert all(any(torch.equal(s, p) for p in pool) for s in sources)  # whole pool rows
    assert torch.equal(sources, res.sources(task, seed=5)) and not torch.equal(sources, res.sources(task, seed=6))
    assert torch.equal(res.sources(lm_task(task.inputs[:3]), seed=5), sources[:3])  # a unit's source ignores later units
    ranks = unit_ranks({n: 32 for n in names}, task.n_units, seed=0)
    chunk = slice(4, 8)
    with model.record(names) as src:
        model(sources[chunk])
    keep = {n: unit_keep(ranks[n][chunk], 0.5) for n in names}
    assert not torch.equal(keep[SITE][0], keep[SITE][1])  # every unit its own subset
    hooks = [(n, mask_fn(keep[n], src[n])) for n in names]
    with model.record(names) as before, model.hooks(hooks), model.record(names) as after:
        model(task.inputs[chunk])
    for n in names:
        for row in range(4):
            off = (keep[n][row, 0] == 0).view(4, 8)  # [head, d_head]
            got, want = after[n][row][:, off], src[n][row][:, off]
            torch.testing.assert_close(got, want)  # same unit's source, same position, even in layer 1
            assert not torch.allclose(got[1:], want[:-1])  # a shifted position would not match
            # the neurons left alone keep the values they had on the way in
            torch.testing.assert_close(after[n][row][:, ~off], before[n][row][:, ~off], rtol=0, atol=0)
            assert not torch.allclose(after[n][row][:, off], before[n][row][:, off])  # the ablated ones changed


def test_units_score_the_same_alone_and_in_a_batch(model, ref):
    """Per-unit masks and sources line up with their rows: batch size changes nothing."""
    ref, _ = ref
    task = lm_task(_ids(6, 12, 3))
    names = [SITE, hook_name(1, "mlp.pre_out")]
    ranks = unit_ranks({n: ref.stats[n].n_neurons for n in names}, task.n_units, seed=1)
    sources = Resampler("tokens", vocab_size=260).sources(task, seed=1)
    values = {"mean": replacement_values(ref, "mean")}
    conds = [("mean", 0.5, ALL_LAYERS), ("resample", 0.7, ALL_LAYERS), ("mean", 1.0, 1)]
    batched = evaluate_units(model, task, values, ranks, conds, sources, batch_size=4)
    alone = evaluate_units(model, task, values, ranks, conds, sources, batch_size=1)
    cols = ["loss", "top1", "top10", "clean_loss"]
    np.testing.assert_allclose(batched[cols].to_numpy(), alone[cols].to_numpy(), rtol=1e-5, atol=1e-6)
    assert (batched.loss != batched.clean_loss).all()
    # a unit's loss is the mean over its own targets of the clean model
    one = EvalTask("lm", task.inputs[2:3])
    logits = model(one.inputs)[0, :-1]
    want = torch.nn.functional.cross_entropy(logits.float(), one.inputs[0, 1:]).item()
    assert batched[batched.unit == 2].clean_loss.iloc[0] == pytest.approx(want, rel=1e-5)


def test_random_token_source_keeps_bos_and_is_seeded():
    task = lm_task(torch.tensor([[2, 5, 6, 7], [9, 5, 6, 7]]))
    r = Resampler("tokens", vocab_size=50, bos_id=2)
    a = r.sources(task, 0)
    assert a[0, 0] == 2 and a[1, 0] != 9 and a.shape == task.inputs.shape and a.max() < 50
    assert torch.equal(a, r.sources(task, 0))
    with pytest.raises(ValueError, match="needs pool"):
        Resampler("corpus")
    with pytest.raises(ValueError, match="Valid: corpus"):
        Resampler("noise", pool=task.inputs)


def test_unit_subsets_grow_cumulatively_without_replacement_and_are_seeded():
    a0, a1, m0 = hook_name(0, "attn.pre_out"), hook_name(1, "attn.pre_out"), hook_name(0, "mlp.pre_out")
    sizes = {a0: 64, a1: 64, m0: 30}
    ranks = unit_ranks(sizes, 5, seed=7)
    for n, r in ranks.items():
        assert all(sorted(row.tolist()) == list(range(sizes[n])) for row in r)  # a permutation per unit
    assert not torch.equal(ranks[a0], ranks[a1])  # per site
    assert not torch.equal(ranks[a0][0], ranks[a0][1])  # per unit
    prev = {n: torch.zeros(5, s, dtype=torch.bool) for n, s in sizes.items()}
    for f in step_fracs(0.1, 10):
        for n, r in ranks.items():
            off = unit_keep(r, f)[:, 0] == 0
            assert (off.sum(1) == n_ablated(sizes[n], f)).all() and n_ablated(sizes[n], f) == min(sizes[n], round(f * sizes[n]))
            assert bool((off | ~prev[n]).all())  # a superset of the previous step's subset
            prev[n] = off
    assert all(p.all() for p in prev.values())  # 100 % at the last step
    assert step_fracs(0.1, 10)[-1] == 1.0 and len(step_fracs(0.25, 10)) == 4
    again = unit_ranks(sizes, 5, seed=7)
    assert all(torch.equal(ranks[n], again[n]) for n in sizes)
    assert not torch.equal(ranks[SITE], unit_ranks(sizes, 5, seed=8)[SITE])
    # a site's orders depend neither on the other sites nor on how many units follow
    alone = unit_ranks({a1: 64}, 3, seed=7)
    assert torch.equal(alone[a1], ranks[a1][:3])


def test_peak_estimators_agree_on_unimodal_and_find_mode_of_skewed():
    g = torch.Generator().manual_seed(0)
    normal = 2.0 + torch.randn(2, 100_000, generator=g)  # mode = mean = median = 2, std 1
    two = torch.full((2,), 2.0, dtype=torch.float64)
    for est in (kde_mode(normal[:, :20_000]), normal.median(1).values, normal.mean(1)):
        assert torch.allclose(est.double(), two, atol=0.1)
    # the argmax of a 100-bin histogram is noisier: the top of a bell is flat, bins hold ~3600 +- 60
    assert torch.allclose(hist_mode(normal, 100), two, atol=0.25)
    with torch.random.fork_rng():  # seeded here: the histogram's argmax varies by ~0.2 between samples
        torch.manual_seed(0)
        gamma = torch.distributions.Gamma(2.0, 1.0).sample((20_000,))[None]  # mode 1, median 1.68, mean 2
    kde, hist = float(kde_mode(gamma)), float(hist_mode(gamma, 100))
    assert abs(kde - 1.0) < 0.15 and abs(hist - 1.0) < 0.25
    assert abs(kde - 1) < abs(float(gamma.median()) - 1) < abs(float(gamma.mean()) - 1)
    assert 1.2 < float(skewness(gamma)) < 1.6  # theory: 2/sqrt(2) = 1.41
    # the batched KDE is scipy's gaussian_kde
    for bw in ("scott", 0.1):
        assert float(kde_mode(gamma[:, :3000], bw)) == pytest.approx(kde_mode_scipy(gamma[0, :3000].numpy(), bw), abs=5e-3)
    # histc convention: bins over [min, max], ties to the first bin, constant rows
    assert float(hist_mode(torch.tensor([0.0, 0.0, 1.0, 1.0, 4.0]), 4)) == 0.5
    assert float(hist_mode(torch.full((5,), 3.0), 10)) == 3.0 and float(kde_mode(torch.full((5,), 3.0))) == 3.0


def test_peak_estimates_table(ref):
    ref, _ = ref
    est = peak_estimates(ref, sample_bins=[20], names=[SITE])
    assert set(est.estimator) == {"mean", "hist100 (all)", "hist10 (all)", "hist20 (sample)", "kde (sample)",
                                  "median (sample)"}
    paper = est[est.estimator == "hist100 (all)"]
    assert (paper.dist_std == 0).all() and len(paper) == 32
    m = est[est.estimator == "mean"]
    np.testing.assert_allclose(m.dist_std, (m["mean"] - m["peak"]).abs() / m["std"])


def test_run_ablation_every_layer_and_one_layer_at_a_time(model, ref):
    ref, batches = ref
    task = lm_task(_ids(4, 16, 4))
    data = AblationData(task, ref, Resampler("corpus", pool=batches.reshape(-1, 32)[:, :16]))
    df = run_ablation(model, data, AblationConfig(fracs=(0.5, 1.0), seed=0, batch_size=3))
    assert list(df.columns[:5]) == ["model", "method", "frac", "layer", "unit"]
    assert len(df) == 4 * 3 * 4 and (df.layer == ALL_LAYERS).all()  # methods x (0, 0.5, 1) x units
    assert df[df.frac == 0].groupby("unit").loss.nunique().eq(1).all()  # the clean model, once per unit
    assert df[df.frac == 1].n_ablated.eq(2 * 32 + 2 * 48).all() and (df.unit_size == 15).all()
    other = run_ablation(model, data, AblationConfig(fracs=(0.5, 1.0), seed=1, batch_size=4))
    full, full1 = (d[d.frac == 1].set_index(["method", "unit"]).loss for d in (df, other))
    # at 100 % a constant method ablates the same neurons whatever the seed; resample's sources change
    pd.testing.assert_series_equal(full.loc["zero"], full1.loc["zero"], rtol=1e-5)
    assert not np.allclose(full.loc["resample"], full1.loc["resample"])
    # mean ablation of everything equals replacing every activation by its mean directly
    vals = replacement_values(ref, "mean")
    hooks = [(n, mask_fn(torch.zeros(len(v)), v)) for n, v in vals.items()]
    with model.hooks(hooks):
        logits = model(task.inputs[1:2])[0, :-1]
    want = torch.nn.functional.cross_entropy(logits.float(), task.inputs[1, 1:]).item()
    assert full.loc["mean"].loc[1] == pytest.approx(want, rel=1e-5)

    per = run_ablation(model, data, AblationConfig(methods=("zero", "mean"), fracs=(1.0,), per_layer=True))
    assert sorted(per.layer.unique()) == [0, 1] and len(per) == 2 * 2 * 4 and (per.frac == 1).all()
    assert per.n_ablated.eq(32 + 48).all()  # one layer's sites only
    zero_l1 = [(n, mask_fn(torch.zeros(len(v)), 0.0)) for n, v in vals.items() if layer_of(n) == 1]
    with model.hooks(zero_l1):
        logits = model(task.inputs[0:1])[0, :-1]
    want = torch.nn.functional.cross_entropy(logits.float(), task.inputs[0, 1:]).item()
    got = per[(per.layer == 1) & (per.method == "zero") & (per.unit == 0)].loss.iloc[0]
    assert got == pytest.approx(want, rel=1e-5)


def test_configs_reject_bad_values_naming_the_valid_ones():
    with pytest.raises(ValueError, match="Valid: zero, mean, peak"):
        AblationConfig(methods=("zero", "mode"))
    with pytest.raises(ValueError, match="fracs"):
        AblationConfig(fracs=(0.0, 0.5))
    with pytest.raises(ValueError, match="per_layer"):
        AblationConfig(layers=(1,))
    with pytest.raises(ValueError, match="kde_bw"):
        AblationConfig(kde_bw="wide")
    with pytest.raises(ValueError, match="Valid: attn.pre_out, mlp.pre_out"):
        StatsConfig(sites=("resid_post",))
    with pytest.raises(ValueError, match="Valid: all, cls"):
        StatsConfig(positions="patches")
    assert AblationConfig(fracs=[0.5, 0.1, 0.5]).fracs == (0.1, 0.5)  # sorted, distinct, hashable
    with pytest.raises(Exception):
        AblationConfig().seed = 3  # frozen


def test_resample_needs_a_resampler(model, ref):
    ref, _ = ref
    with pytest.raises(ValueError, match="resampler"):
        run_ablation(model, AblationData(lm_task(_ids(2, 8, 0)), ref), AblationConfig(fracs=(0.5,)))


def test_image_task_with_pixel_resampling():
    vit = load_model("tiny-vit-classifier")
    g = torch.Generator().manual_seed(0)
    pixels, labels = torch.randn(12, 1, 8, 8, generator=g), torch.randint(0, 3, (12,), generator=g)
    ref = reference_stats(vit, [pixels[:6], pixels[6:]], StatsConfig(reservoir=64))
    from paragraph_planning.data.images import pixel_processor

    data = AblationData(image_task(pixels, labels), ref, Resampler("pixels", processor=pixel_processor(vit)))
    df = run_ablation(vit, data, AblationConfig(fracs=(0.5,), batch_size=5))
    assert {"top1", "top5", "loss", "clean_top1"} <= set(df.columns) and df.unit.nunique() == 12
    assert set(df.top1.unique()) <= {0.0, 1.0} and (df.unit_size == 1).all()
    half = df[(df.frac == 0.5) & (df.method == "resample")]
    assert (half.loss != half.clean_loss).any()
    with pytest.raises(ValueError, match="class token"):
        reference_stats(load_model("tiny-llama"), [torch.zeros(1, 4, dtype=torch.long)], StatsConfig(positions="cls"))


def test_per_model_numbers_are_checked_before_any_model_runs():
    assert per_model("eval_images", 64, ["a", "b"]) == {"a": 64, "b": 64}
    assert per_model("eval_images", {"b": 2, "a": 1}, ["a", "b"]) == {"a": 1, "b": 2}
    with pytest.raises(ValueError, match=r"eval_images has no number for b\. Give every model of \['a', 'b'\]"):
        per_model("eval_images", {"a": 1}, ["a", "b"])
    with pytest.raises(ValueError, match=r"names c, which is not among the models.*\['a', 'b'\]"):
        per_model("eval_images", {"a": 1, "b": 1, "c": 1}, ["a", "b"])
    with pytest.raises(ValueError, match="at least 1"):
        per_model("eval_images", 0, ["a"])
