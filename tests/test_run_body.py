"""HookedModel.run_body, the early exit of statistics passes: same activations as a full pass, nothing left behind."""
from __future__ import annotations

import pytest
import torch

from paragraph_planning import load_model
from paragraph_planning.core.hooks import UnknownHookError
from paragraph_planning.core.models import TINY_MODELS
from paragraph_planning.core.statistics import NeuronStats, NonFiniteActivationError, collect_stats

FIELDS = ("count", "mean", "var", "std", "mean_abs", "mean_sqrt_abs", "rms", "frac_pos", "min", "max", "lo", "hi",
          "hist", "peak", "reservoir", "reservoir_index")


def _inputs(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    if model.cfg.kind == "image":
        c = model.hf.config
        return torch.randn(2, c.num_channels, c.image_size, c.image_size, generator=g)
    return torch.randint(4, 200, (2, 7), generator=g)


def _hooks(hf):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in hf.modules())


def _state(model):
    """Everything a forward pass could leave changed: hook counts, config, weights and buffers."""
    return _hooks(model.hf), model.hf.config.to_dict(), {k: v.clone() for k, v in model.hf.state_dict().items()}


def _assert_same_state(model, before):
    hooks, config, tensors = before
    assert _hooks(model.hf) == hooks
    assert model.hf.config.to_dict() == config
    now = model.hf.state_dict()
    assert now.keys() == tensors.keys() and all(torch.equal(now[k], v) for k, v in tensors.items())


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_run_body_sees_what_a_full_pass_sees_and_leaves_nothing_behind(name):
    model = load_model(name)
    x = _inputs(model)
    names = model.hook_names()
    with model.record(names) as full:
        logits = model(x)
    before = _state(model)
    for last in (0, None):
        with model.record(names) as body:
            assert model.run_body(x, last_layer=last) is None
        ran = [n for n in names if last is None or model.parse(n)[0] <= last]
        assert sorted(body) == sorted(ran)  # hooks after the last block do not run
        assert all(torch.equal(body[n], full[n]) for n in ran)
        _assert_same_state(model, before)
    assert torch.equal(model(x), logits)  # still a normal model


def test_run_body_that_raises_leaves_nothing_behind():
    model = load_model("tiny-llama")
    x = _inputs(model)
    logits = model(x)
    before = _state(model)

    def bad(act, *, hook):
        raise ValueError("inside hook")

    with pytest.raises(ValueError, match="inside hook"):
        with model.hooks([("blocks.0.attn.pre_out", bad)]):
            model.run_body(x, last_layer=1)
    _assert_same_state(model, before)
    assert torch.equal(model(x), logits)
    with pytest.raises(UnknownHookError, match="layers 0..1"):
        model.run_body(x, last_layer=2)
    _assert_same_state(model, before)


def _full_pass_stats(model, batches, names, **kw):
    """The reference: the same NeuronStats fed from hooks during ordinary forward passes (with logits)."""
    stats = {n: NeuronStats(model.cfg.n_neurons(model.parse(n)[1]), name=n, **kw) for n in names}

    def feed(s):
        def fn(act, *, hook):
            s.update(act.detach().reshape(-1, s.n_neurons))
        return fn

    with model.hooks([(n, feed(s)) for n, s in stats.items()]):
        for b in batches:
            model(b)
    return stats


def _assert_identical(a, b):
    for field in FIELDS:
        x, y = torch.as_tensor(getattr(a, field)), torch.as_tensor(getattr(b, field))
        assert torch.equal(x, y) or (field == "var" and torch.equal(x.isnan(), y.isnan())), (a.name, field)


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
@pytest.mark.parametrize("layers", [[0], None])
def test_collect_stats_with_early_exit_equals_statistics_of_full_passes(name, layers):
    model = load_model(name)
    batches = [_inputs(model, seed) for seed in range(2)]
    before = _state(model)
    got = collect_stats(model, batches, layers=layers, bins=13, reservoir=5, progress=False)
    _assert_same_state(model, before)
    ref = _full_pass_stats(model, batches, list(got), bins=13, reservoir=5)
    for n in got:
        _assert_identical(got[n], ref[n])


def test_collect_stats_that_raises_leaves_no_hooks():
    model = load_model("tiny-llama")
    before = _state(model)

    def poison(act, *, hook):
        return act.clone().fill_(float("nan"))

    with model.hooks([("blocks.0.mlp.pre_out", poison)]):
        with pytest.raises(NonFiniteActivationError):
            collect_stats(model, [_inputs(model)], layers=[0], progress=False)
    _assert_same_state(model, before)


def test_collect_stats_accepts_batches_that_ask_for_fewer_logits():
    model = load_model("tiny-llama")
    batches = [_inputs(model, seed) for seed in range(2)]
    plain = collect_stats(model, batches, bins=7, reservoir=3, progress=False)
    asked = collect_stats(model, [{"input_ids": b, "logits_to_keep": 1} for b in batches], bins=7, reservoir=3,
                          progress=False)
    for n in plain:
        _assert_identical(plain[n], asked[n])
