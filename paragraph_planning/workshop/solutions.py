"""Reference solutions of the workshop exercises, written as a learner would: short, plain torch/numpy.

Each function is shown (source and all) in the solution dropdown of its exercise, and its
signature and docstring make the exercise's stub, so what the book shows is what the tests check.
They use only ``torch``, ``numpy as np`` and the methods of the model object; none of them calls
the package function it is checked against.
"""
from __future__ import annotations

import numpy as np
import torch


# ============================================================================ 00 getting started
def record_resid(model, text, layer):
    """The residual stream entering block ``layer`` (site ``resid_pre``) at every
    position of ``text``.

    Returns a tensor ``[pos, d_model]`` (no batch dimension).
    """
    name = model.hook_names("resid_pre", [layer])[0]
    with model.record([name]) as cache:
        model(text)
    return cache[name][0]


def zero_ablation_hook(neurons):
    """A hook function ``fn(act, *, hook)`` that sets the given neurons (indices into
    the last dimension of ``act``) to zero at every position and leaves everything
    else alone.
    """
    def fn(act, *, hook):
        act = act.clone()
        act[..., neurons] = 0.0
        return act

    return fn


def patch_position(model, base, source, layer, pos):
    """Run ``base`` with the residual stream entering block ``layer`` at position
    ``pos`` replaced by its value on ``source`` (same number of tokens). Returns the
    logits ``[vocab]`` at the last position.
    """
    name = model.hook_names("resid_pre", [layer])[0]
    with model.record([name]) as cache:
        model(source)
    source_value = cache[name][:, pos]  # [1, d_model]

    def fn(act, *, hook):
        act = act.clone()
        act[:, pos] = source_value
        return act

    with model.hooks([(name, fn)]):
        logits = model(base)
    return logits[0, -1]


# ============================================================================ 01 paragraph planning
def break_positions(tokenizer, text):
    """Positions (in ``tokenizer(text)["input_ids"]``) of the tokens that make up the
    first ``"\\n\\n"`` of ``text``, as a list of ints in increasing order.
    """
    start = text.index("\n\n")
    end = start + 2
    offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
    return [i for i, (a, b) in enumerate(offsets) if b > a and a >= start and b <= end]


def transplant_break(model, donor_ids, break_pos, neutral_ids, layer):
    """Record the residual stream leaving block ``layer`` (``resid_post``) at the
    donor's break tokens (``break_pos``, positions in ``donor_ids``), write it into
    the **last** ``len(break_pos)`` positions of ``neutral_ids``, and return the
    next-token logits ``[vocab]`` of the patched neutral prompt.
    """
    name = model.hook_names("resid_post", [layer])[0]
    with model.record([name]) as cache:
        model(torch.tensor([donor_ids]))
    values = cache[name][0, break_pos]  # [k, d_model]
    k = len(break_pos)

    def fn(act, *, hook):
        act = act.clone()
        act[0, -k:] = values
        return act

    with model.hooks([(name, fn)]):
        logits = model(torch.tensor([neutral_ids]))
    return logits[0, -1]


def cosine_distances(a, b):
    """Row-wise cosine distance ``1 − cos(a_i, b_i)`` of two arrays ``[n, dim]`` (any
    lengths). Returns ``[n]``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    cos = (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))
    return 1.0 - cos


def paired_bootstrap_ci(a, b, n_boot=10_000, seed=0, level=0.95):
    """Percentile bootstrap interval ``(lo, hi)`` of ``mean(a − b)`` over paired units
    (texts).
    """
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(n_boot, len(d)))
    means = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


# ============================================================================ 02 ablation
def peak_from_histogram(counts, edges):
    """Peak (mode) of each neuron from its histogram: the centre of the fullest bin
    (the first one on ties).

    ``counts``: ``[n_neurons, bins]``; ``edges``: ``[n_neurons, bins + 1]``. Returns
    ``[n_neurons]``.
    """
    counts = torch.as_tensor(counts)
    edges = torch.as_tensor(edges, dtype=torch.float64)
    top = counts.argmax(dim=1, keepdim=True)  # first fullest bin
    left = edges.gather(1, top)
    right = edges.gather(1, top + 1)
    return ((left + right) / 2)[:, 0]


def peak_ablation_hook(stats, neurons):
    """A hook function that replaces the given neurons by their peak value
    (``stats.peak``, one value per neuron of the site) at every position; other
    neurons are left alone.
    """
    peak = stats.peak.float()

    def fn(act, *, hook):
        act = act.clone()
        act[..., neurons] = peak[neurons].to(act.dtype)
        return act

    return fn


def resample_ablation_hook(neurons, source):
    """A hook function that replaces the given neurons by their values on another
    input: ``source`` ``[batch, pos, n_neurons]``, recorded at the same site, **at the
    same position** of the same row.
    """
    def fn(act, *, hook):
        act = act.clone()
        act[..., neurons] = source[:, : act.shape[1]][..., neurons].to(act.dtype)
        return act

    return fn


def t_interval_ci(x, level=0.95):
    """Mean of ``x`` (e.g. one value per seed) with a Student-t interval: returns
    ``(lo, hi)``.
    """
    from scipy import stats

    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    se = x.std(ddof=1) / np.sqrt(n)
    q = stats.t.ppf((1 + level) / 2, df=n - 1)
    return float(x.mean() - q * se), float(x.mean() + q * se)


def interval_verdict(lo, hi, null=0.0, direction="greater"):
    """Read an interval ``[lo, hi]`` against the claim "the effect is ``direction``
    than ``null``": ``"holds"``, ``"does not hold"`` or ``"undetermined at this
    sample"``.
    """
    if direction == "greater":
        if lo > null:
            return "holds"
        if hi < null:
            return "does not hold"
    else:  # "less"
        if hi < null:
            return "holds"
        if lo > null:
            return "does not hold"
    return "undetermined at this sample"


# ============================================================================ 03 modularity
def global_top_k(scores, frac):
    """Boolean masks ``{name: [n]}`` of the top ``int(frac * N)`` scores over **all**
    sites together (``N``: the number of neurons of all sites).
    """
    flat = torch.cat([s.flatten() for s in scores.values()])
    k = int(frac * flat.numel())
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    chosen[flat.topk(k).indices] = True
    sizes = [s.numel() for s in scores.values()]
    return dict(zip(scores, chosen.split(sizes)))


def overlap_and_chance(a, b):
    """Overlap ``|A ∩ B| / k`` of two boolean neuron sets ``[N]`` of equal size ``k``,
    and the overlap that two random sets of that size have on average. Returns
    ``(overlap, chance)``.
    """
    a = torch.as_tensor(a, dtype=torch.bool)
    b = torch.as_tensor(b, dtype=torch.bool)
    k = int(a.sum())
    return int((a & b).sum()) / k, k / a.numel()


def mean_abs_unpadded(acts, mask):
    """Mean ``|x|`` per neuron over the real (non-padding) tokens. ``acts``: ``[batch,
    pos, n]``; ``mask``: ``[batch, pos]`` with 1 for real tokens, 0 for padding.
    Returns ``[n]``.
    """
    real = acts[mask.bool()]  # [tokens, n]
    return real.abs().mean(dim=0)


def search_smallest_fraction(metric_at, target, lo=0.0, hi=0.128, tol=0.002):
    """The smallest pruning fraction whose metric is at most ``target`` (the metric
    falls as the fraction grows), found by binary search to within ``tol``; ``hi`` if
    even ``hi`` does not reach the target.
    """
    if metric_at(hi) > target:
        return hi
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if metric_at(mid) <= target:
            hi = mid
        else:
            lo = mid
    return hi


# ============================================================================ 04 unlearning
def forget_retain_score(forget, retain, eps=1e-3):
    """Selective-pruning score of each neuron: mean ``|x|`` on the forget set over
    mean ``|x|`` on the retain set plus ``eps``. ``forget`` and ``retain``: ``[n]``
    tensors. Returns ``[n]``.
    """
    return forget / (retain + eps)


def prune_step(scores, pruned, frac):
    """One step of iterative pruning: masks ``{name: [n]}`` of the ``int(frac * N)``
    best-scoring neurons over all sites that are **not** pruned yet (``pruned``:
    boolean masks, True = already pruned).
    """
    flat = torch.cat([s.flatten().double() for s in scores.values()])
    done = torch.cat([pruned[name].flatten() for name in scores])
    k = min(int(frac * flat.numel()), int((~done).sum()))
    flat = flat.masked_fill(done, float("-inf"))
    new = torch.zeros(flat.numel(), dtype=torch.bool)
    new[flat.topk(k).indices] = True
    return dict(zip(scores, new.split([s.numel() for s in scores.values()])))


def delete_by_weights(model, layer, neurons):
    """Delete MLP neurons of block ``layer`` by zeroing their output weights (in
    place, no hook).
    """
    w_out = model.weights(layer)["W_out"]  # [d_mlp, d_model]: the down projection
    with torch.no_grad():
        w_out[neurons] = 0.0


def next_token_metrics(logits, ids):
    """Mean next-token cross-entropy (nats) and top-1 accuracy of ``logits`` ``[batch,
    pos, vocab]`` on token ids ``[batch, pos]``: position ``t`` predicts token ``t +
    1``. Returns ``(loss, top1)``.
    """
    pred = logits[:, :-1].float()
    target = ids[:, 1:]
    vocab = pred.shape[-1]
    loss = torch.nn.functional.cross_entropy(pred.reshape(-1, vocab), target.flatten())
    top1 = (pred.argmax(-1) == target).float().mean()
    return float(loss), float(top1)
