"""Selective pruning: scores, global selection, the loop, and weight deletion."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from paragraph_planning import load_model
from paragraph_planning.core.architectures import site_of
from paragraph_planning.core.interventions import NeuronMasks
from paragraph_planning.core.pruning import (
    PruningConfig,
    PruningResult,
    delete_neurons,
    head_scores,
    run_pruning,
    score_neurons,
    select_top,
)
from paragraph_planning.core.statistics import collect_stats


def _stats(x: torch.Tensor) -> SimpleNamespace:
    """Statistics computed directly from activations [tokens, neurons]."""
    x = x.double()
    return SimpleNamespace(mean=x.mean(0), var=x.var(0), std=x.std(0, unbiased=False), mean_abs=x.abs().mean(0),
                           mean_sqrt_abs=x.abs().sqrt().mean(0), rms=x.pow(2).mean(0).sqrt(),
                           frac_pos=(x > 0).double().mean(0))


def test_scores_are_forget_over_retain_plus_eps():
    torch.manual_seed(0)
    f, r = torch.randn(200, 6), torch.randn(200, 6) * 0.1
    forget, retain = {"blocks.0.mlp.pre_out": _stats(f)}, {"blocks.0.mlp.pre_out": _stats(r)}
    s = score_neurons(forget, retain, "abs")["blocks.0.mlp.pre_out"]
    torch.testing.assert_close(s, f.double().abs().mean(0) / (r.double().abs().mean(0) + 1e-3))
    s = score_neurons(forget, retain, "rms", eps={"mlp.pre_out": 0.5})["blocks.0.mlp.pre_out"]
    torch.testing.assert_close(s, f.double().pow(2).mean(0).sqrt() / (r.double().pow(2).mean(0).sqrt() + 0.5))
    s = score_neurons(forget, retain, "std")["blocks.0.mlp.pre_out"]  # the standard deviation, not the variance
    torch.testing.assert_close(s, f.double().std(0, unbiased=False) / (r.double().std(0, unbiased=False) + 1e-3))
    a = score_neurons(forget, retain, "random", seed=1)["blocks.0.mlp.pre_out"]
    assert torch.equal(a, score_neurons(forget, retain, "random", seed=1)["blocks.0.mlp.pre_out"])
    with pytest.raises(ValueError, match="Valid scores: abs, freq"):
        score_neurons(forget, retain, "l2")


def test_taker_compatible_scores_are_the_reference_formulas():
    """std: a variance ratio; rms: sqrt(var² + mean²); the other scores unchanged."""
    name = "blocks.0.mlp.pre_out"
    forget = {name: SimpleNamespace(mean=torch.tensor([1.0, -2.0, 0.5]), var=torch.tensor([4.0, 0.25, 1.0]),
                                    std=torch.tensor([2.0, 0.5, 1.0]), mean_abs=torch.tensor([1.5, 2.0, 0.8]),
                                    mean_sqrt_abs=torch.tensor([1.1, 1.3, 0.7]), rms=torch.tensor([2.2, 2.1, 1.1]),
                                    frac_pos=torch.tensor([0.6, 0.1, 0.5]))}
    retain = {name: SimpleNamespace(mean=torch.tensor([0.0, 1.0, 3.0]), var=torch.tensor([1.0, 9.0, 0.0]),
                                    std=torch.tensor([1.0, 3.0, 0.0]), mean_abs=torch.tensor([0.5, 1.0, 3.0]),
                                    mean_sqrt_abs=torch.tensor([0.6, 1.0, 1.7]), rms=torch.tensor([1.0, 3.2, 3.0]),
                                    frac_pos=torch.tensor([0.5, 0.7, 1.0]))}
    eps = 1e-3

    def taker(score):
        return score_neurons(forget, retain, score, taker_compatible=True)[name]

    # by hand: var 4 / (1 + eps), 0.25 / (9 + eps), 1 / (0 + eps)
    torch.testing.assert_close(taker("std"), torch.tensor([4 / 1.001, 0.25 / 9.001, 1 / 0.001], dtype=torch.float64))
    # rms: sqrt(var² + mean²) on each side: forget sqrt(17), sqrt(4.0625), sqrt(1.25); retain 1, sqrt(82), 3
    want = torch.tensor([17 ** 0.5 / 1.001, 4.0625 ** 0.5 / (82 ** 0.5 + eps), 1.25 ** 0.5 / 3.001], dtype=torch.float64)
    torch.testing.assert_close(taker("rms"), want)
    # the package's own formulas differ: a standard-deviation ratio and the true root mean square
    torch.testing.assert_close(score_neurons(forget, retain, "std")[name],
                               torch.tensor([2 / 1.001, 0.5 / 3.001, 1 / 0.001], dtype=torch.float64))
    torch.testing.assert_close(score_neurons(forget, retain, "rms")[name],
                               torch.tensor([2.2 / 1.001, 2.1 / 3.201, 1.1 / 3.001], dtype=torch.float64))
    for score in ("abs", "freq", "sqrt", "mean_diff"):
        assert torch.equal(taker(score), score_neurons(forget, retain, score)[name])
    # statistics without a var field: the variance is std²
    no_var = {name: SimpleNamespace(**{k: v for k, v in vars(forget[name]).items() if k != "var"})}
    torch.testing.assert_close(score_neurons(no_var, retain, "std", taker_compatible=True)[name], taker("std"))


def test_head_score_is_the_mean_or_the_reference_median():
    name = "blocks.0.attn.pre_out"
    # 2 heads of d_head 4: head 0 has one huge neuron (mean 2.75, median 0.5), head 1 is steady (mean = median = 1.5)
    scores = {name: torch.tensor([10.0, 0.5, 0.5, 0.0, 1.5, 1.5, 1.5, 1.5])}
    mean, median = head_scores(scores, 2, "mean")[name], head_scores(scores, 2, "median")[name]
    assert mean.tolist() == [2.75] * 4 + [1.5] * 4
    assert median.tolist() == [0.5] * 4 + [1.5] * 4  # torch's median of (0, 0.5, 0.5, 10): the lower middle, 0.5
    assert select_top(head_scores(scores, 2, "mean"), 0.5, heads=2)[name].tolist() == [True] * 4 + [False] * 4
    assert select_top(head_scores(scores, 2, "median"), 0.5, heads=2)[name].tolist() == [False] * 4 + [True] * 4
    assert head_scores({name: torch.tensor([3.0, 1.0, 2.0, 0.0])}, 1, "median")[name].tolist() == [1.0] * 4
    with pytest.raises(ValueError, match="Valid: mean, median"):
        head_scores(scores, 2, "max")


@pytest.mark.parametrize("taker", [False, True])
def test_head_level_loop_ranks_heads_by_mean_or_reference_median(taker):
    model = load_model("tiny-llama")  # 2 layers x 4 heads x d_head 8
    names = model.hook_names("attn.pre_out")
    forget_abs = {n: torch.ones(32, dtype=torch.float64) for n in names}
    forget_abs[names[0]][:8] = torch.tensor([50.0] + [0.5] * 7, dtype=torch.float64)  # L0 head 0: mean 6.7, median 0.5
    forget_abs[names[1]][16:24] = 3.0  # L1 head 2: mean = median = 3

    def collect(m, which, hook_names):
        value = forget_abs if which == "forget" else {n: torch.ones(32, dtype=torch.float64) for n in names}
        return {n: SimpleNamespace(mean_abs=value[n], mean=value[n]) for n in hook_names}

    cfg = PruningConfig(ff_frac=0.0, attn_frac=1 / 8, n_steps=1, head_level=True, taker_compatible=taker)
    res = run_pruning(model, collect, lambda m: {}, cfg, progress=False)
    res.handle.remove()
    pruned = {n: (~res.masks[n]).view(4, 8).all(-1).tolist() for n in names}
    want = {names[0]: [False] * 4, names[1]: [False, False, True, False]} if taker else \
        {names[0]: [True, False, False, False], names[1]: [False] * 4}
    assert pruned == want


def test_pruning_config_is_frozen_and_validated():
    cfg = PruningConfig(ff_frac=0.01, attn_frac=0.005)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.ff_frac = 0.1
    assert cfg.fracs() == {"mlp.pre_out": 0.01, "attn.pre_out": 0.005}
    assert cfg.eps == {"mlp.pre_out": 1e-3, "attn.pre_out": 1e-4}
    assert not cfg.taker_compatible and hash(cfg) == hash(PruningConfig(ff_frac=0.01, attn_frac=0.005))
    for bad, match in (({"score": "l2"}, "Valid scores: abs, freq"), ({"ff_frac": 1.5}, r"ff_frac must be a number in \[0, 1\]"),
                       ({"n_steps": 0}, "n_steps must be an integer >= 1"), ({"ff_frac": 0.0}, "Nothing to prune"),
                       ({"iterative": "yes"}, "iterative must be True or False"), ({"ff_eps": -1.0}, "ff_eps must be >= 0")):
        with pytest.raises(ValueError, match=match):
            PruningConfig(**bad)


def test_selection_is_global_across_layers_and_skips_pruned():
    scores = {"blocks.0.mlp.pre_out": torch.tensor([9.0, 1, 2, 3]), "blocks.1.mlp.pre_out": torch.tensor([8.0, 7, 0, 6])}
    sel = select_top(scores, 0.5)  # k = 4 of 8: 9, 8, 7, 6
    assert sel["blocks.0.mlp.pre_out"].tolist() == [True, False, False, False]
    assert sel["blocks.1.mlp.pre_out"].tolist() == [True, True, False, True]
    again = select_top(scores, 0.25, pruned=sel)  # k = 2 among the rest: 3, 2
    assert again["blocks.0.mlp.pre_out"].tolist() == [False, False, True, True]
    assert not again["blocks.1.mlp.pre_out"].any()


def test_head_level_selection_takes_whole_heads():
    scores = {"blocks.0.attn.pre_out": torch.tensor([1.0, 1, 5, 5, 0, 0]),
              "blocks.1.attn.pre_out": torch.tensor([4.0, 4, 0, 0, 9, 0])}
    sel = select_top(scores, 2 / 6, heads=3)  # 6 heads of 2 neurons; head means 1,5,0 | 4,0,4.5
    assert sel["blocks.0.attn.pre_out"].tolist() == [False, False, True, True, False, False]
    assert sel["blocks.1.attn.pre_out"].tolist() == [False, False, False, False, True, True]


def _loop(model, iterative, score="abs"):
    tok = model.tokenizer
    forget = [tok(["def f(x): return x * 2  # code"] * 4, return_tensors="pt").input_ids]
    retain = [tok(["The river runs to the sea again."] * 4, return_tensors="pt").input_ids]
    data = {"forget": forget, "retain": retain}

    def collect(m, which, names):
        sites = sorted({site_of(n) for n in names})
        return collect_stats(m, data[which], sites=sites, progress=False, reservoir=4)

    def evaluate(m):
        return {f"{k}_loss": float(torch.nn.functional.cross_entropy(
            m(v[0])[:, :-1].flatten(0, 1), v[0][:, 1:].flatten())) for k, v in data.items()}

    cfg = PruningConfig(ff_frac=0.1, attn_frac=0.05, n_steps=3, score=score, iterative=iterative)
    return run_pruning(model, collect, evaluate, cfg, progress=False)


@pytest.mark.parametrize("iterative", [True, False])
def test_pruning_loop_prunes_cumulatively_and_can_be_removed(iterative, tmp_path):
    model = load_model("tiny-llama")
    clean = model("check")
    res = _loop(model, iterative)
    h = res.history
    assert h["step"].tolist() == [0, 1, 2, 3]
    n_ff = 2 * model.cfg.d_mlp
    assert h["frac_mlp.pre_out"].tolist() == pytest.approx([0, int(0.1 * n_ff) / n_ff, 2 * int(0.1 * n_ff) / n_ff,
                                                            3 * int(0.1 * n_ff) / n_ff], abs=2 / n_ff)
    assert h["frac_mlp.pre_out"].is_monotonic_increasing and h["frac_attn.pre_out"].iloc[-1] > 0
    assert not torch.equal(model("check"), clean)
    res.handle.remove()
    assert torch.equal(model("check"), clean)
    back = PruningResult.load(res.save(tmp_path))
    assert back.history.equals(h) or (back.history.values == h.values).all()
    assert all(torch.equal(back.masks[n], res.masks[n]) for n in res.masks)


def test_delete_neurons_equals_the_zero_mask_and_restores_the_weights():
    model = load_model("tiny-llama")
    clean = model("weights or masks")
    res = _loop(model, True)
    masked = model("weights or masks")
    res.handle.remove()
    restore = delete_neurons(model, res.masks)
    torch.testing.assert_close(model("weights or masks"), masked, rtol=1e-5, atol=1e-6)
    restore()
    assert torch.equal(model("weights or masks"), clean)  # the original weights are back, bit for bit
    assert not torch.allclose(clean, masked)  # and pruning had changed the output
    with NeuronMasks(model) as masks:  # the saved masks still reproduce the pruned model
        masks.update(res.masks)
        torch.testing.assert_close(model("weights or masks"), masked)
