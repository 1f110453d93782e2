"""Selective pruning: scores, global selection, the loop, and weight deletion."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from paragraph_planning import load_model
from paragraph_planning.core.interventions import NeuronMasks
from paragraph_planning.core.pruning import (
    PruningConfig,
    PruningResult,
    delete_neurons,
    run_pruning,
    score_neurons,
    select_top,
)
from paragraph_planning.core.statistics import collect_stats


def _stats(x: torch.Tensor) -> SimpleNamespace:
    """Statistics computed directly from activations [tokens, neurons]."""
    x = x.double()
    return SimpleNamespace(mean=x.mean(0), std=x.std(0, unbiased=False), mean_abs=x.abs().mean(0),
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
        sites = sorted({n.split(".", 2)[2] for n in names})
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


def test_delete_neurons_equals_the_zero_mask():
    model = load_model("tiny-llama")
    res = _loop(model, True)
    masked = model("weights or masks")
    res.handle.remove()
    restore = delete_neurons(model, res.masks)
    torch.testing.assert_close(model("weights or masks"), masked, rtol=1e-5, atol=1e-6)
    restore()
    with NeuronMasks(model):
        assert not torch.allclose(model("weights or masks"), masked)
