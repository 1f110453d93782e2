"""Streaming neuron statistics against direct computations on the same activations."""
import math
from pathlib import Path

import pytest
import torch

from paragraph_planning import load_model
from paragraph_planning.core import fused
from paragraph_planning.core import statistics as st
from paragraph_planning.core.hooks import UnknownHookError
from paragraph_planning.core.statistics import (
    NeuronStats,
    NonFiniteActivationError,
    collect_stats,
    load_stats,
    save_stats,
    stats_frame,
)
from paragraph_planning.util import torch_threads

SITES = ("attn.pre_out", "mlp.pre_out")


def _data(n=3000, seed=0):
    """[n, 6] activations: offsets far larger than the spread, a constant neuron, a ReLU-like one."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g) * torch.tensor([1.0, 0.01, 3, 1, 1, 1]) + torch.tensor([0.0, 1e3, -5, 0, 0, 2])
    x[:, 3] = x[:, 3].clamp_min(0)
    x[:, 4] = 0.5
    u = torch.rand(n, generator=g) - 0.5
    x[:, 5] = 2 - 0.3 * u.sign() * torch.log1p(-2 * u.abs())  # Laplace(2, 0.3): mode = mean = 2
    return x


def _fed(x, sizes, **kw):
    s = NeuronStats(x.shape[1], **kw)
    for part in x.split(sizes):
        s.update(part)
    return s


def _assert_matches(s, x, atol=1e-9):
    """Every moment statistic of ``s`` equals the direct float64 computation on ``x`` [n, neurons].

    ``atol``: for data whose float32 rounding (ulp) is larger than that of values near 1.
    """
    xd = x.double()
    close = dict(rtol=1e-6, atol=atol)
    assert s.count == x.shape[0]
    torch.testing.assert_close(s.mean, xd.mean(0), **close)
    torch.testing.assert_close(s.var, xd.var(0), rtol=1e-5, atol=atol)
    torch.testing.assert_close(s.std, xd.std(0), rtol=1e-5, atol=atol)
    torch.testing.assert_close(s.mean_abs, xd.abs().mean(0), **close)
    torch.testing.assert_close(s.mean_sqrt_abs, xd.abs().sqrt().mean(0), **close)
    torch.testing.assert_close(s.rms, xd.square().mean(0).sqrt(), **close)
    torch.testing.assert_close(s.frac_pos, (xd > 0).double().mean(0), rtol=0, atol=0)
    torch.testing.assert_close(s.min, xd.amin(0), rtol=0, atol=0)
    torch.testing.assert_close(s.max, xd.amax(0), rtol=0, atol=0)


def _reference_hist(s, x):
    """Per-neuron torch.histc over the stats' own range; values outside it counted in the edge bins."""
    lo, hi = s.lo, s.hi
    cols = [torch.histc(x[:, i].double().clamp(lo[i], hi[i]), s.bins, lo[i].item(), hi[i].item())
            for i in range(x.shape[1])]
    return torch.stack(cols).long()


@pytest.mark.parametrize("sizes", [3000, 700, 1, 1234])
def test_every_statistic_matches_direct_computation(sizes):
    x = _data()
    s = _fed(x, sizes, bins=50)
    _assert_matches(s, x)
    assert s.var[1] > 0 and s.var[4] == 0  # a tiny spread around 1000 is not lost; constant is exactly 0


def test_var_is_the_variance_and_std_its_square_root():
    s = _fed(torch.tensor([[1.0], [2.0], [3.0], [4.0]]), 4)
    assert s.var.item() == pytest.approx(5 / 3)  # sum of squared deviations 5, over n - 1
    assert s.std.item() == pytest.approx(math.sqrt(5 / 3))
    assert s.rms.item() == pytest.approx(math.sqrt(30 / 4))
    assert torch.isnan(_fed(torch.ones(1, 1), 1).var).all()  # one token: no sample variance


def test_histogram_sums_to_count_and_peak_is_the_fullest_bins_centre():
    x = _data()
    s = _fed(x, 3000, bins=40)  # one update: the pilot saw everything
    hist = s.hist
    assert hist.shape == (6, 40) and (hist.sum(1) == 3000).all()
    ref = _reference_hist(s, x)
    assert torch.equal(hist, ref)
    edges = s.bin_edges
    assert edges.shape == (6, 41)
    torch.testing.assert_close(edges[:, 0], s.lo)
    torch.testing.assert_close(edges[:, -1], s.hi)
    centres = (edges[:, :-1] + edges[:, 1:]) / 2
    torch.testing.assert_close(s.peak, centres.gather(1, ref.argmax(1, keepdim=True)).squeeze(1))
    assert abs(s.peak[4].item() - 0.5) <= (s.hi[4] - s.lo[4]).item() / 40  # constant neuron: peak at it
    assert abs(s.peak[5].item() - 2.0) < 0.1  # Laplace(2, 0.3): sharp mode at 2


def test_pilot_range_then_out_of_range_values_go_to_the_edge_bins():
    x = _data()
    s = _fed(x, 500, bins=30)  # the range comes from the first 500 tokens only
    pilot = x[:500].double()
    span = pilot.amax(0) - pilot.amin(0)
    pad = 0.01 * torch.where(span > 0, span, pilot.amax(0).abs().clamp_min(1))
    torch.testing.assert_close(s.lo, pilot.amin(0) - pad)
    torch.testing.assert_close(s.hi, pilot.amax(0) + pad)
    outside = ((x.double() < s.lo) | (x.double() > s.hi)).sum()
    assert outside > 0  # the test exercises the edge bins
    assert (s.hist.sum(1) == 3000).all() and torch.equal(s.hist, _reference_hist(s, x))


def test_peak_is_not_the_mean_on_skewed_data():
    x = -torch.rand(20000, 1, generator=torch.Generator().manual_seed(1)).log()  # Exp(1): mode 0, mean 1
    s = _fed(x, 20000)
    assert s.peak.item() < 0.1 < 0.9 < s.mean.item()


def test_reservoir_rows_are_real_vectors_sampled_uniformly_and_independent_of_update_sizes():
    x = torch.arange(10000, dtype=torch.float32)[:, None] * torch.tensor([[1.0, -1.0]])
    a = _fed(x, 977, reservoir=500, seed=3)
    b = _fed(x, 10000, reservoir=500, seed=3)
    c = _fed(x, 977, reservoir=500, seed=4)
    assert a.reservoir.shape == (500, 2)
    assert torch.equal(a.reservoir, x[a.reservoir_index])  # each row is the activation of its token
    assert len(set(a.reservoir_index.tolist())) == 500
    assert torch.equal(a.reservoir, b.reservoir) and not torch.equal(a.reservoir, c.reservoir)
    late = (a.reservoir_index >= 5000).float().mean().item()
    assert 0.4 < late < 0.6  # uniform over the stream, not the first tokens
    # Sequential algorithm R with the same draws gives the same reservoir.
    draws = torch.rand(10000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    slots = list(range(500))
    for i in range(500, 10000):
        j = int(draws[i].item() * (i + 1))
        if j < 500:
            slots[j] = i
    assert a.reservoir_index.tolist() == slots


def test_reservoir_smaller_than_k_and_zero():
    x = _data(30)
    assert _fed(x, 7, reservoir=100).reservoir.shape == (30, 6)
    assert _fed(x, 7, reservoir=0).reservoir.shape == (0, 6)


def test_nan_or_inf_raises_and_leaves_the_state_unchanged():
    s = NeuronStats(3, name="blocks.2.mlp.pre_out")
    s.update(torch.ones(4, 3))
    bad = torch.ones(4, 3)
    bad[1, 2] = float("inf")
    with pytest.raises(NonFiniteActivationError, match=r"blocks\.2\.mlp\.pre_out \(layer 2, site 'mlp\.pre_out'\)"):
        s.update(bad)
    bad[1, 2] = float("nan")
    with pytest.raises(NonFiniteActivationError, match=r"neurons \[2\]"):
        s.update(bad)
    assert s.count == 4 and s.mean.tolist() == [1.0, 1.0, 1.0]


def test_zero_tokens_raise():
    with pytest.raises(ValueError, match="zero tokens"):
        NeuronStats(3).mean
    model = load_model("tiny-llama")
    with pytest.raises(ValueError, match="zero tokens"):
        collect_stats(model, [], progress=False)
    padding = {"input_ids": torch.ones(2, 5, dtype=torch.long), "attention_mask": torch.zeros(2, 5, dtype=torch.long)}
    with pytest.raises(ValueError, match="zero tokens"):
        collect_stats(model, [padding], progress=False)


def test_bad_shapes_and_arguments_raise():
    with pytest.raises(ValueError, match=r"\[n_tokens, 3\]"):
        NeuronStats(3).update(torch.ones(2, 4))
    with pytest.raises(ValueError, match="bins"):
        NeuronStats(3, bins=0)


def _token_batches(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(4, 200, (3, 11), generator=g) for _ in range(n)]


def test_collect_stats_matches_recorded_activations():
    model = load_model("tiny-llama")
    batches = _token_batches()
    names = [f"blocks.{i}.{s}" for i in range(model.cfg.n_layers) for s in SITES]
    with model.record(names) as cache:
        for b in batches:
            model(b)
    stats = collect_stats(model, batches, bins=20, reservoir=16, progress=False)
    assert list(stats) == names
    for name in names:
        x = torch.cat([a.reshape(-1, stats[name].n_neurons) for a in cache.history[name]])
        s = stats[name]
        _assert_matches(s, x)
        assert torch.equal(s.hist, _reference_hist(s, x))
        assert torch.equal(s.reservoir, x[s.reservoir_index])
    first = stats[names[0]].reservoir_index
    assert all(torch.equal(s.reservoir_index, first) for s in stats.values())  # same tokens at every site
    again = collect_stats(model, batches, bins=20, reservoir=16, progress=False)
    assert all(torch.equal(again[n].reservoir, stats[n].reservoir) for n in names)  # seeded


def test_collect_stats_excludes_padding():
    model = load_model("tiny-llama")
    enc = model.to_tokens(["a short one", "a much longer second text here", "mid length"])
    name = "blocks.1.mlp.pre_out"
    with model.record([name]) as cache:
        model(**enc)
    keep = enc["attention_mask"].bool()
    x = cache[name][keep]
    s = collect_stats(model, [enc], sites="mlp.pre_out", layers=[1], progress=False)[name]
    assert s.count == int(keep.sum()) < keep.numel()
    _assert_matches(s, x)
    assert torch.equal(s.reservoir, x[s.reservoir_index])


def test_collect_stats_at_chosen_positions_with_padding():
    model = load_model("tiny-llama")
    enc = model.to_tokens(["a short one", "a much longer second text here", "mid length"])  # left padded
    name = "blocks.1.mlp.pre_out"
    with model.record([name]) as cache:
        model(**enc)
    pos = [0, enc["input_ids"].shape[1] - 1]
    keep = enc["attention_mask"][:, pos].bool()
    x = cache[name][:, pos][keep]
    s = collect_stats(model, [enc], sites="mlp.pre_out", layers=[1], progress=False, positions=pos)[name]
    assert s.count == int(keep.sum()) == 4  # the first position is padding in two rows
    _assert_matches(s, x)


def test_collect_stats_names_the_site_and_layer_of_a_nan():
    model = load_model("tiny-llama")

    def poison(act, *, hook):
        return act.clone().fill_(float("nan"))

    with model.hooks([("blocks.1.attn.pre_out", poison)]):
        with pytest.raises(NonFiniteActivationError, match=r"layer 1, site 'attn\.pre_out'"):
            collect_stats(model, _token_batches(), progress=False)


def test_unknown_site_or_layer_raises():
    model = load_model("tiny-llama")
    with pytest.raises(UnknownHookError, match="mlp.pre_out"):
        collect_stats(model, _token_batches(), sites=["mlp.preout"], progress=False)
    with pytest.raises(UnknownHookError):
        collect_stats(model, _token_batches(), layers=[7], progress=False)


def test_vision_model_counts_every_patch():
    model = load_model("tiny-vit-classifier")
    images = [torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    stats = collect_stats(model, images, reservoir=4, progress=False)
    assert stats["blocks.0.mlp.pre_out"].count == 2 * 2 * 5  # 4 patches + CLS per image


def test_save_load_round_trip_and_continue(tmp_path):
    x = _data()
    s = _fed(x[:2000], 400, bins=25, reservoir=64, seed=5, name="blocks.0.mlp.pre_out")
    save_stats({"blocks.0.mlp.pre_out": s}, tmp_path / "stats.pt")
    t = load_stats(tmp_path / "stats.pt")["blocks.0.mlp.pre_out"]
    for key in ("mean", "var", "peak", "hist", "reservoir", "reservoir_index", "lo", "hi"):
        assert torch.equal(getattr(s, key), getattr(t, key)), key
    for part in x[2000:].split(300):
        s.update(part)
        t.update(part)
    full = _fed(x, 400, bins=25, reservoir=64, seed=5)
    for key in ("count", "hist", "reservoir_index"):
        assert torch.equal(torch.as_tensor(getattr(t, key)), torch.as_tensor(getattr(full, key))), key
    torch.testing.assert_close(t.var, full.var)


def test_stats_frame_is_one_row_per_neuron():
    model = load_model("tiny-llama")
    stats = collect_stats(model, _token_batches(), progress=False)
    df = stats_frame(stats)
    n = sum(s.n_neurons for s in stats.values())
    assert len(df) == n
    row = df[(df.layer == 1) & (df.site == "mlp.pre_out") & (df.neuron == 5)].iloc[0]
    s = stats["blocks.1.mlp.pre_out"]
    assert row["std"] == pytest.approx(s.std[5].item()) and row["peak"] == pytest.approx(s.peak[5].item())


# ---------------------------------------------------------------- the same numbers as before issue 17
GOLDEN = Path(__file__).parent / "data" / "stats_before_issue17.pt"
EXACT = ("count", "frac_pos", "min", "max", "lo", "hi", "hist", "peak", "reservoir", "reservoir_index")
ROUNDED = ("mean", "var", "std", "mean_abs", "mean_sqrt_abs", "rms")  # float32 chunk sums: equal to rounding
# Work layouts. Fused (compiled) kernel: tokens per chunk, neurons per block. Unfused path: chunk
# values, values per binning piece, neurons per column group, reduction threads.
UNFUSED = {"fused.FUSED": False}
LAYOUTS = {"default": {},  # fused where the kernel builds (here it must: "fused" layouts require it)
           "fused, small chunks and ragged groups": {"fused.FUSED": True, "fused.ROWS": 7, "fused.COLUMNS": 64},
           "fused, narrow ragged groups": {"fused.FUSED": True, "fused.ROWS": 32, "fused.COLUMNS": 7},
           "fused, rows split between calls": {"fused.FUSED": True, "fused.ROWS": 7, "fused._MAX_ROWS": 22},
           "unfused": UNFUSED, "unfused, two threads": {**UNFUSED, "REDUCTION_THREADS": 2},
           "unfused, small chunks, pieces and groups": {**UNFUSED, "_CHUNK": 600, "_PIECE": 400, "_GROUP": 16},
           "unfused, ragged groups, three threads": {**UNFUSED, "_CHUNK": 1000, "_PIECE": 9000, "_GROUP": 64,
                                                     "REDUCTION_THREADS": 3}}


def _golden_inputs():
    """[2600, 150] fixed activations, exact in float32: mixed offsets and spreads, |mean| >> std, constant, ReLU-like."""
    g = torch.Generator().manual_seed(17)
    n, t = 150, 2600
    ints = torch.randint(-(1 << 14), 1 << 14, (t, n), generator=g).float() / 4096
    x = ints * ((torch.arange(n) + 1) / 64) + (torch.arange(n) - 75) / 16
    x[:, 7] = 1000 + ints[:, 7] / 256
    x[:, 8] = 0.5
    x[:, 9] = ints[:, 9].clamp_min(0)
    return x


def _compiler_here():
    try:
        return bool(fused._compiler())
    except RuntimeError:
        return False


def _layout(monkeypatch, name):
    if LAYOUTS[name].get("fused.FUSED") and not _compiler_here():
        pytest.skip("no C compiler here: the fused kernel cannot be built")
    for key, value in LAYOUTS[name].items():
        module, attr = (fused, key[6:]) if key.startswith("fused.") else (st, key)
        monkeypatch.setattr(module, attr, value)


def _same_state(a, b):
    """Two ``NeuronStats.to_dict()`` results are equal bit for bit."""
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k], k


def _golden_run():
    s = NeuronStats(150, bins=37, reservoir=50, pilot=2, seed=3)
    for part in _golden_inputs().split([700, 1, 1234, 665]):
        s.update(part)
    return s


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_field_equals_the_implementation_before_issue_17(monkeypatch, layout):
    """``tests/data/stats_before_issue17.pt``: the fields computed on these inputs by the code of commit 5696324."""
    _layout(monkeypatch, layout)
    s, before = _golden_run(), torch.load(GOLDEN)
    for key in EXACT:
        assert torch.equal(torch.as_tensor(getattr(s, key)), before[key]), key
    for key in ROUNDED:
        torch.testing.assert_close(getattr(s, key), before[key], rtol=1e-6, atol=1e-6, msg=key)  # ulp of ~10
    x = _golden_inputs()
    _assert_matches(s, x, atol=1e-6)  # values up to ~10 (float32 ulp ~1e-6); the mean-1000 neuron is relative
    assert torch.equal(s.hist, _reference_hist(s, x))


def test_threads_do_not_change_a_bit(monkeypatch):
    runs = {}
    for layout in ("unfused", "unfused, two threads"):
        with monkeypatch.context() as m:
            _layout(m, layout)
            runs[layout] = _golden_run().to_dict()
    _same_state(runs["unfused"], runs["unfused, two threads"])  # same chunks, other threads: bit for bit
    monkeypatch.setattr(fused, "FUSED", True)
    for threads in (1, 2):
        with torch_threads(threads):
            runs[threads] = _golden_run().to_dict()
    _same_state(runs[1], runs[2])


def test_fused_kernel_falls_back_with_a_warning_where_it_cannot_be_built(monkeypatch):
    def no_compiler():
        raise RuntimeError("no C compiler found (install gcc, or set $CC)")

    monkeypatch.setattr(fused, "_lib", None)
    monkeypatch.setattr(fused, "_broken", None)
    monkeypatch.setattr(fused, "_compiler", no_compiler)
    with pytest.warns(RuntimeWarning, match="fused statistics kernel is unavailable here .*no C compiler"):
        s = _golden_run()
    assert not fused.active(torch.zeros(1))
    with monkeypatch.context() as m:
        _layout(m, "unfused")
        _same_state(s.to_dict(), _golden_run().to_dict())  # the fallback is the unfused path, bit for bit
    monkeypatch.setattr(fused, "FUSED", True)
    with pytest.raises(RuntimeError, match="no C compiler"):  # required: the error propagates
        _golden_run()


@pytest.mark.skipif(not _compiler_here(), reason="no C compiler here")
def test_a_compiler_error_is_named(monkeypatch, tmp_path):
    bad = tmp_path / "fused.c"
    bad.write_text("this is not C\n")
    monkeypatch.setattr(fused, "SOURCE", bad)
    monkeypatch.setenv("PARAGRAPH_PLANNING_CACHE", str(tmp_path / "cache"))
    with pytest.raises(RuntimeError, match="failed to compile fused.c"):
        fused.build()
    assert not list((tmp_path / "cache" / "kernels").iterdir())  # no half-written library left behind


@pytest.mark.parametrize("layout", [k for k in LAYOUTS if k.startswith("fused")])
def test_fused_kernel_reads_strided_rows_and_float64_as_float32(monkeypatch, layout):
    _layout(monkeypatch, layout)
    x = _golden_inputs()
    want = _golden_run().to_dict()
    for other in (torch.cat([x, -x], 1)[:, :150], x.double()):  # rows 300 floats apart; float64 of the same values
        s = NeuronStats(150, bins=37, reservoir=50, pilot=2, seed=3)
        for part in other.split([700, 1, 1234, 665]):
            s.update(part)
        _same_state(s.to_dict(), want)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("row", [0, 7, 699])  # the first row of the update, of a later chunk, the last row
def test_fused_kernel_raises_on_a_non_finite_value_anywhere_in_a_block(monkeypatch, value, row):
    _layout(monkeypatch, "fused, small chunks and ragged groups")  # chunks of 7 rows
    x = _golden_inputs()
    s = _fed(x[:1000], 500, bins=20, reservoir=8)
    before = s.to_dict()
    bad = x[1000:1700].clone()
    bad[row, 149] = value
    with pytest.raises(NonFiniteActivationError, match=r"neurons \[149\]"):
        s.update(bad)
    _same_state(s.to_dict(), before)


def test_bins_beyond_float32_indices_are_refused():
    with pytest.raises(ValueError, match="bins <= 16,777,216"):
        NeuronStats(3, bins=(1 << 24) + 1)


def test_many_bins_take_narrower_blocks_and_the_same_counts(monkeypatch):
    """3,000 bins: the fused kernel's blocks shrink to 21 neurons (its counters stay small); counts as unfused."""
    x = _golden_inputs()[:900]
    runs = {}
    for layout in ("fused, small chunks and ragged groups", "unfused"):
        with monkeypatch.context() as m:
            _layout(m, layout)
            runs[layout] = _fed(x, [300, 600], bins=3000, reservoir=0).hist
    assert torch.equal(*runs.values()) and int(runs["unfused"].sum()) == x.numel()


def test_reduction_threads_leave_the_callers_torch_threads_alone(monkeypatch):
    monkeypatch.setattr(st, "REDUCTION_THREADS", 3)
    before = torch.get_num_threads()
    _golden_run()
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("layout", LAYOUTS)
def test_nan_in_a_later_block_raises_and_changes_nothing(monkeypatch, layout):
    _layout(monkeypatch, layout)
    x = _golden_inputs()
    s = _fed(x[:1000], 500, bins=20, reservoir=8)
    before = s.to_dict()
    bad = x[1000:2000].clone()
    bad[950, 140] = float("nan")
    with pytest.raises(NonFiniteActivationError, match=r"neurons \[140\]"):
        s.update(bad)
    _same_state(s.to_dict(), before)


@pytest.mark.parametrize("layout", ["unfused, small chunks, pieces and groups", "fused, small chunks and ragged groups"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_activations_match_direct_computation(monkeypatch, dtype, layout):
    _layout(monkeypatch, layout)
    x = _golden_inputs()[:, 10:].to(dtype)  # leave out the columns that half precision cannot hold
    s = _fed(x, 700, bins=25)
    _assert_matches(s, x.float(), atol=1e-6)
    assert torch.equal(s.hist, _reference_hist(s, x.float()))


def test_one_bin_counts_every_token():
    x = _golden_inputs()
    s = _fed(x, [700, 1, 1899], bins=1, pilot=2)
    assert torch.equal(s.hist, torch.full((150, 1), 2600))
    _assert_matches(s, x, atol=1e-6)
