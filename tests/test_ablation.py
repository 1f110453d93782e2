"""Ablation methods (paper 2): replacement values, resampling alignment, subsets, peak estimators, summaries."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from paragraph_planning import load_model
from paragraph_planning.core.interventions import mask_fn
from paragraph_planning.core.peaks import hist_mode, kde_mode, kde_mode_scipy, skewness
from paragraph_planning.papers.ablation import (
    EvalTask,
    Resampler,
    SourceActivations,
    _hooks,
    describe_order,
    evaluate_task,
    image_task,
    keep_masks,
    lm_task,
    n_ablated,
    neuron_order,
    order_check,
    peak_estimates,
    ranking,
    reference_stats,
    replacement_values,
    run_ablation,
    run_per_layer,
    step_fracs,
)

SITE = "blocks.0.attn.pre_out"


@pytest.fixture(scope="module")
def model():
    return load_model("tiny-llama")


def _ids(n_rows: int, seq: int, seed: int) -> torch.Tensor:
    return torch.randint(4, 260, (n_rows, seq), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def ref(model):
    batches = _ids(24, 32, 0).view(3, 8, 32)
    return reference_stats(model, batches, ["attn.pre_out", "mlp.pre_out"], extra_bins=[10], reservoir=256), batches


def _recorded(model, batches, name):
    with model.record([name]) as rec:
        for b in batches:
            model(b)
    return torch.cat([h.reshape(-1, h.shape[-1] if h.dim() == 3 else h.shape[-2] * h.shape[-1])
                      for h in rec.history[name]]).double()


@pytest.mark.parametrize("method", ["zero", "mean", "peak", "median", "peak-kde"])
def test_constant_replacement_equals_its_definition(model, ref, method):
    ref, batches = ref
    for name in (SITE, "blocks.1.mlp.pre_out"):
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
        keep = keep_masks(neuron_order({name: x.shape[1]}, seed=3), 0.5)[name]
        probe = batches[0][:2]
        with model.record([name]) as clean:
            model(probe)
        with model.hooks([(name, mask_fn(keep, got.float()))]), model.record([name]) as rec:
            model(probe)
        a, c = rec[name].reshape(2, probe.shape[1], -1), clean[name].reshape(2, probe.shape[1], -1)
        off = keep == 0
        torch.testing.assert_close(a[..., off], got.float()[off].expand_as(a[..., off]))
        torch.testing.assert_close(a[..., ~off], c[..., ~off])


def test_reference_stats_extra_bins_use_same_tokens(ref):
    ref, _ = ref
    s, e = ref.stats[SITE], ref.extra[10][SITE]
    assert e.count == s.count and e.bins == 10 and e.hist.sum(1).eq(s.count).all()
    # a 10-bin histogram over the same range is the 100-bin one summed in groups of 10
    torch.testing.assert_close(e.hist, s.hist.view(s.n_neurons, 10, 10).sum(-1), atol=2 * s.count // 100, rtol=0)


def test_resample_uses_same_position_of_the_other_input(model):
    task = lm_task(_ids(8, 16, 1), rows_per_chunk=4)
    pool = _ids(20, 16, 2)
    names = [SITE, "blocks.1.attn.pre_out"]
    res = Resampler("corpus", pool=pool)
    src = SourceActivations(model, task, res, names, seed=5)
    src(0)
    acts = src(1)  # chunk 1's source activations (after chunk 0's: the draw depends only on seed and chunk)
    # the source input is reproducible, and acts are the clean model's activations on it
    gen = torch.Generator().manual_seed(5 * 100_003 + 1)
    src_ids = res.inputs(task.chunks[1], gen)
    assert any(torch.equal(src_ids[0], p) for p in pool) and not torch.equal(src_ids, task.chunks[1])
    with model.record(names) as clean_src:
        model(src_ids)
    for n in names:
        torch.testing.assert_close(acts[n], clean_src[n])
    order = neuron_order({n: 32 for n in names}, seed=0)
    keep = keep_masks(order, 0.5)
    with model.hooks(_hooks(keep, acts)), model.record(names) as rec:
        model(task.chunks[1])
    for n in names:
        off = keep[n].view(4, 8) == 0  # [head, d_head]
        got, want = rec[n][:, :, off], clean_src[n][:, :, off]
        torch.testing.assert_close(got, want)  # same row, same position, even in layer 1 (after layer-0 ablation)
        assert not torch.allclose(got[:, 1:], want[:, :-1])  # a shifted position would not match
        torch.testing.assert_close(rec[n][:, :, ~off], rec[n][:, :, ~off])


def test_resample_evaluation_lines_rows_up(model):
    """evaluate_task with resample equals evaluating each row alone with its own source row."""
    task = lm_task(_ids(6, 12, 3), rows_per_chunk=3)
    names = [SITE]
    src = SourceActivations(model, task, Resampler("tokens", vocab_size=260), names, seed=0)
    keep = keep_masks(neuron_order({SITE: 32}, 0), 0.7)
    got = evaluate_task(model, task, lambda i: _hooks(keep, src(i)))
    losses = []
    for i, chunk in enumerate(task.chunks):
        for r in range(chunk.shape[0]):
            one = EvalTask("lm", [chunk[r:r + 1]])
            vals = {SITE: src(i)[SITE][r:r + 1]}
            losses.append(evaluate_task(model, one, lambda _: _hooks(keep, vals))["loss"])
    assert got["loss"] == pytest.approx(float(np.mean(losses)), rel=1e-5)
    assert got["loss"] != pytest.approx(evaluate_task(model, task)["loss"], rel=1e-4)


def test_random_token_source_keeps_bos_and_is_seeded():
    like = torch.tensor([[2, 5, 6, 7], [9, 5, 6, 7]])
    r = Resampler("tokens", vocab_size=50, bos_id=2)
    a = r.inputs(like, torch.Generator().manual_seed(0))
    assert a[0, 0] == 2 and a.shape == like.shape and a.max() < 50
    assert torch.equal(a, r.inputs(like, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="needs pool"):
        Resampler("corpus")
    with pytest.raises(ValueError, match="Valid: corpus"):
        Resampler("noise", pool=like)


def test_subsets_grow_cumulatively_without_replacement_and_are_seeded():
    sizes = {"blocks.0.attn.pre_out": 64, "blocks.1.attn.pre_out": 64, "blocks.0.mlp.pre_out": 30}
    order = neuron_order(sizes, seed=7)
    assert all(sorted(p.tolist()) == list(range(sizes[n])) for n, p in order.items())  # permutations
    assert not torch.equal(order["blocks.0.attn.pre_out"], order["blocks.1.attn.pre_out"])  # per layer
    prev = {n: torch.zeros(s, dtype=torch.bool) for n, s in sizes.items()}
    for f in step_fracs(0.1, 10):
        masks = keep_masks(order, f)
        for n, k in masks.items():
            off = k == 0
            assert int(off.sum()) == n_ablated(sizes[n], f) == min(sizes[n], round(f * sizes[n]))
            assert bool((off | ~prev[n]).all()) and bool((off & prev[n]).sum() == prev[n].sum())  # superset
            prev[n] = off
    assert all(p.all() for p in prev.values())  # 100 % at the last step
    assert step_fracs(0.1, 10)[-1] == 1.0 and len(step_fracs(0.25, 10)) == 4
    again = neuron_order(sizes, seed=7)
    assert all(torch.equal(order[n], again[n]) for n in sizes)
    other = neuron_order(sizes, seed=8)
    assert not torch.equal(order["blocks.0.attn.pre_out"], other["blocks.0.attn.pre_out"])
    # a site's order does not depend on which other sites exist
    alone = neuron_order({"blocks.1.attn.pre_out": 64}, seed=7)
    assert torch.equal(alone["blocks.1.attn.pre_out"], order["blocks.1.attn.pre_out"])
    only = keep_masks(order, 0.5, ["blocks.1.attn.pre_out"])
    assert list(only) == ["blocks.1.attn.pre_out"]


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


def test_run_ablation_and_per_layer(model, ref):
    ref, batches = ref
    task = lm_task(_ids(4, 16, 4), rows_per_chunk=2)
    res = Resampler("corpus", pool=batches.reshape(-1, 32)[:, :16])
    df = run_ablation(model, task, ref, fracs=[0.5, 1.0], seeds=[0, 1], resampler=res, model_name="tiny")
    assert list(df.columns[:5]) == ["model", "method", "frac", "seed", "n_ablated"]
    assert len(df) == 4 * 2 * 3 and df[df.frac == 0].loss.nunique() == 1
    assert df[df.frac == 1].n_ablated.eq(2 * 32 + 2 * 48).all()
    # at 100 % zero ablation every seed gives the same result; resample depends on the seed's source
    full = df[df.frac == 1].set_index(["method", "seed"]).loss
    assert full["zero", 0] == pytest.approx(full["zero", 1]) and full["resample", 0] != full["resample", 1]
    # mean ablation of everything equals replacing every activation by its mean directly
    vals = replacement_values(ref, "mean")
    hooks = [(n, mask_fn(torch.zeros(len(v)), v)) for n, v in vals.items()]
    assert full["mean", 0] == pytest.approx(evaluate_task(model, task, lambda i: hooks)["loss"], rel=1e-6)
    rk = ranking(df, 0.5)
    assert sorted(rk["rank"]) == [1, 2, 3, 4] and rk["mean"].is_monotonic_increasing
    assert "ranking at 50% ablated" in describe_order(df)
    per = run_per_layer(model, task, ref, frac=0.5, seeds=[0], resampler=res, model_name="tiny")
    assert sorted(per.layer.unique()) == [0, 1] and len(per) == 2 * 4 and per.damage.notna().all()


def test_image_task_with_pixel_resampling():
    vit = load_model("tiny-vit-classifier")
    g = torch.Generator().manual_seed(0)
    pixels, labels = torch.randn(12, 1, 8, 8, generator=g), torch.randint(0, 3, (12,), generator=g)
    ref = reference_stats(vit, [pixels[:6], pixels[6:]], ["attn.pre_out"], reservoir=64)
    task = image_task(pixels, labels, batch_size=5)
    from paragraph_planning.data.images import pixel_processor

    res = Resampler("pixels", processor=pixel_processor(vit))
    df = run_ablation(vit, task, ref, fracs=[0.5], seeds=[0], resampler=res)
    assert {"top1", "top5", "loss"} <= set(df.columns) and df.n.eq(12).all()
    assert df[(df.frac == 0.5) & (df.method == "resample")].loss.iloc[0] != df[df.frac == 0].loss.iloc[0]


def test_order_check_on_known_numbers():
    rows = []
    clean = 3.0
    for seed, noise in enumerate([0.0, 0.01, -0.01]):
        rows.append({"model": "m", "method": "peak", "frac": 0.0, "seed": seed, "loss": clean, "top1": 0.5})
        for method, dmg in {"peak": 0.1, "mean": 0.2, "zero": 0.5, "resample": 1.0}.items():
            rows.append({"model": "m", "method": method, "frac": 0.5, "seed": seed, "loss": clean + dmg + noise,
                         "top1": 0.4})
    df = pd.DataFrame(rows)
    chk = order_check(df)
    assert chk["claim"] and chk["peak_le_mean"] and chk["mean_le_zero"] and chk["resample_worst"]
    assert [p["b"] for p in chk["pairs"]] == ["mean", "zero", "zero"]
    assert all(p["significant"] for p in chk["pairs"])
    assert list(ranking(df).method) == ["peak", "mean", "zero", "resample"]
    df.loc[(df.method == "zero") & (df.frac == 0.5), "loss"] = clean + 0.05  # zero now beats peak and mean
    chk = order_check(df)
    assert not chk["claim"] and not chk["mean_le_zero"] and chk["peak_le_mean"]
    assert "does NOT hold" in describe_order(df)
