"""Checks of the exercises of chapters 03 (modularity) and 04 (selective pruning for unlearning).

Each ``check_<name>(fn)`` runs the learner's function on the tiny random Llama (or small tensors)
and compares it with the package's own implementation; see :mod:`.checking`.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from ..core.clustering import smallest_fraction
from ..core.evaluation import evaluate_lm
from ..core.interventions import mask_fn
from ..core.pruning import score_neurons, select_top
from ..papers.modularity import overlaps
from .checking import TEXTS, Checker, check, logits_with, site_with, tiny_lm


def _scores(seed: int = 0) -> dict[str, torch.Tensor]:
    """Scores of 3 sites of 40 neurons whose scales differ by layer (so per-layer and global top-k differ)."""
    gen = torch.Generator().manual_seed(seed)
    return {f"blocks.{i}.mlp.pre_out": torch.rand(40, generator=gen, dtype=torch.float64) * scale
            for i, scale in enumerate((1.0, 3.0, 0.5))}


def _masks_close(c: Checker, what: str, expected: dict, got: Any, mistakes: dict[str, dict]) -> None:
    """Compare dicts of boolean masks site by site; name the first site and neuron that differ."""
    if not isinstance(got, dict) or list(got) != list(expected):
        c.fail(what, f"expected a dict with keys {list(expected)}, got "
                     f"{list(got) if isinstance(got, dict) else type(got).__name__}.")
    flat_e = torch.cat([expected[n].flatten().bool() for n in expected])
    try:
        flat_g = torch.cat([torch.as_tensor(got[n]).flatten().bool() for n in expected])
    except (TypeError, RuntimeError) as err:
        c.fail(what, f"every value should be a boolean tensor: {err}")
    if flat_g.shape == flat_e.shape and bool((flat_g == flat_e).all()):
        c.ok(what)
        return
    details = [] if int(flat_g.sum()) == int(flat_e.sum()) else [
        f"you selected {int(flat_g.sum())} neurons, expected {int(flat_e.sum())}."]
    for name in expected:
        e, g = expected[name].flatten().bool(), torch.as_tensor(got[name]).flatten().bool()
        if e.shape != g.shape:
            details.append(f"{name}: expected {e.numel()} entries, got {g.numel()}.")
            break
        if (e != g).any():
            i = int((e != g).nonzero()[0])
            details.append(f"first difference: {name}, neuron {i}: expected {bool(e[i])}, got {bool(g[i])} "
                           f"({int(e.sum())} vs {int(g.sum())} selected in this site).")
            break
    for desc, alt in mistakes.items():
        flat_a = torch.cat([alt[n].flatten().bool() for n in expected])
        if flat_a.shape == flat_g.shape and bool((flat_a == flat_g).all()):
            details.append(f"Your masks match {desc}.")
    c.fail(what, *details)


# ============================================================================ 03 modularity
@check("03.1")
def check_global_top_k(c: Checker, fn: Any) -> None:
    """``fn(scores, frac)`` equals :func:`~paragraph_planning.core.pruning.select_top` (one global ranking)."""
    scores = _scores()
    for frac in (0.1, 0.25):
        expected = select_top(scores, frac)
        got = c.call(f"global_top_k(scores, {frac})", fn, scores, frac)
        per_layer = {n: torch.zeros(40, dtype=torch.bool).index_fill(0, s.topk(int(frac * 40)).indices, True)
                     for n, s in scores.items()}
        lowest = select_top({n: -s for n, s in scores.items()}, frac)
        _masks_close(c, f"3 sites x 40 neurons, frac {frac}: the top {int(frac * 120)} of all 120",
                     expected, got, {"a top-k in EACH site separately: rank all sites together": per_layer,
                                     "the LOWEST scores: take the largest": lowest})


@check("03.2")
def check_overlap(c: Checker, fn: Any) -> None:
    """``fn(a, b)`` gives :func:`~paragraph_planning.papers.modularity.overlaps`' overlap and ``k / N``."""
    gen = torch.Generator().manual_seed(0)
    for n, k in ((100, 10), (1000, 50)):
        order = torch.randperm(n, generator=gen)
        a = torch.zeros(n, dtype=torch.bool).index_fill(0, order[:k], True)
        b = torch.zeros(n, dtype=torch.bool).index_fill(0, order[k // 3: k // 3 + k], True)  # shares k − k//3
        overlap = float(overlaps(torch.stack([a, b]))[0, 1])
        got = c.call(f"overlap_and_chance on sets of {k} of {n}", fn, a, b)
        inter, union = int((a & b).sum()), int((a | b).sum())
        mistakes = {"the Jaccard index |A∩B|/|A∪B|: divide by k, the size of one set": (inter / union, k / n),
                    "the count |A∩B|: divide it by k": (float(inter), k / n),
                    "chance (k/N)²: two random sets of size k share k·(k/N) neurons, an overlap of k/N":
                    (overlap, (k / n) ** 2)}
        c.close(f"{k} of {n} neurons, {inter} shared: overlap {overlap:.3f}, chance {k / n:.3f}",
                (overlap, k / n), got, dims=("value (overlap, chance)",), mistakes=mistakes)


@check("03.3")
def check_mean_abs(c: Checker, fn: Any) -> None:
    """``fn(acts, mask)`` equals ``collect_stats(...).mean_abs`` on a padded batch of the tiny model."""
    from ..core.statistics import collect_stats

    model = tiny_lm()
    batch = model.to_tokens(["Bees make honey.", "A dog ran past the old tree.", "Hi."])  # right-padded
    mask = batch["attention_mask"]
    for layer in range(model.cfg.n_layers):
        name = model.hook_names("mlp.pre_out", [layer])[0]
        with model.record([name]) as rec:
            model(**batch)
        acts = rec[name]
        expected = collect_stats(model, [batch], "mlp.pre_out", [layer], bins=1, reservoir=0, progress=False)[name].mean_abs
        got = c.call(f"mean_abs_unpadded(acts of {name}, mask)", fn, acts, mask)
        real = acts[mask.bool()]
        mistakes = {"the mean over ALL positions, padding included: keep only tokens whose mask is 1":
                    acts.abs().mean((0, 1)),
                    "the mean of x, not of |x|": real.mean(0),
                    "the sum of |x|, not its mean": real.abs().sum(0)}
        c.close(f"layer {layer}: 3 texts of {mask.sum(1).tolist()} tokens, padded to {mask.shape[1]}",
                expected, got, dims=("neuron",), mistakes=mistakes)


@check("03.4")
def check_smallest_fraction(c: Checker, fn: Any) -> None:
    """``fn(metric_at, target)`` finds what :func:`~paragraph_planning.core.clustering.smallest_fraction` finds."""
    cases = {"a metric falling linearly, 1 − 5·frac": lambda f: 1 - 5 * f,
             "a step: 0.9 below frac 0.07, 0.5 from there": lambda f: 0.9 if f < 0.07 else 0.5,
             "a metric that never reaches the target": lambda f: 0.95 - f}
    for what, metric in cases.items():
        expected = smallest_fraction(metric, 0.8)
        got = c.call(f"search_smallest_fraction on {what}", fn, metric, 0.8)
        try:
            got_f = float(got)
        except (TypeError, ValueError):
            c.fail(what, f"expected a fraction (a float), got {got!r}")
        if abs(got_f - expected) <= 0.002 + 1e-12 and (metric(got_f) <= 0.8 or expected == 0.128):
            c.ok(f"{what}: {got_f:.4f} (the package finds {expected:.4f})")
            continue
        why = [f"expected {expected:.4f} (within 0.002), got {got_f:.4f}."]
        if metric(got_f) > 0.8 and expected < 0.128:
            why.append(f"The metric at your fraction is {metric(got_f):.3f}, above the target 0.8: return the end "
                       "of the bracket that reaches the target (hi), not lo.")
        if expected == 0.128:
            why.append("Even the largest fraction (hi = 0.128) does not reach the target: return hi.")
        c.fail(what, *why)


# ============================================================================ 04 unlearning
@check("04.1")
def check_forget_retain_score(c: Checker, fn: Any) -> None:
    """``fn(forget, retain)`` equals :func:`~paragraph_planning.core.pruning.score_neurons` (the ``abs`` score)."""
    forget = torch.tensor([0.5, 0.2, 1.0, 0.3, 0.0], dtype=torch.float64)
    retain = torch.tensor([0.5, 0.4, 0.1, 0.0, 0.2], dtype=torch.float64)
    name = "blocks.0.mlp.pre_out"
    expected = score_neurons({name: SimpleNamespace(mean_abs=forget)}, {name: SimpleNamespace(mean_abs=retain)}, "abs")[name]
    got = c.call("forget_retain_score(forget, retain)", fn, forget, retain)
    with torch.no_grad():
        mistakes = {"forget / retain with no eps: a neuron silent on the retain set divides by zero; add eps":
                    forget / retain,
                    "retain / forget: the score is forget over retain": retain / (forget + 1e-3),
                    "forget − retain: the score is a ratio": forget - retain}
    c.close("5 neurons (one silent on the retain set): scores match score_neurons(..., 'abs')", expected, got,
            dims=("neuron",), mistakes=mistakes, atol=1e-6)


@check("04.2")
def check_prune_step(c: Checker, fn: Any) -> None:
    """``fn(scores, pruned, frac)`` equals :func:`~paragraph_planning.core.pruning.select_top` with ``pruned``."""
    scores = _scores(1)
    pruned = {n: torch.zeros(40, dtype=torch.bool) for n in scores}
    for step in range(1, 4):
        expected = select_top(scores, 0.05, pruned)
        copy = {n: p.clone() for n, p in pruned.items()}  # the learner may edit it
        got = c.call(f"prune_step(scores, pruned, 0.05), step {step}", fn, scores, copy, 0.05)
        mistakes = {"the top scores again, including neurons pruned in earlier steps: skip those": select_top(scores, 0.05),
                    "every neuron pruned so far plus the new ones: return only this step's": {
                        n: pruned[n] | expected[n] for n in scores}}
        left = int(sum(int((~p).sum()) for p in pruned.values()))
        mistakes["k as a fraction of the neurons LEFT: k = int(frac·N) of all N neurons"] = select_top(
            {n: s.masked_fill(pruned[n], float("-inf")) for n, s in scores.items()}, 0.05 * left / 120)
        _masks_close(c, f"step {step}: 6 new neurons of 120 ({int(sum(int(p.sum()) for p in pruned.values()))} "
                        "pruned before)", expected, got, mistakes)
        for n in scores:
            pruned[n] |= expected[n]


@check("04.3")
def check_delete_neurons(c: Checker, fn: Any) -> None:
    """After ``fn(model, layer, neurons)``, the block's MLP output equals the zero mask's (weights edited, no hook)."""
    for layer, neurons in ((1, [2, 7, 11]), (0, list(range(0, 48, 4)))):
        model = tiny_lm(fresh=True)
        name, out = model.hook_names("mlp.pre_out", [layer])[0], model.hook_names("mlp.out", [layer])[0]
        keep = torch.ones(model.cfg.d_mlp)
        keep[neurons] = 0
        expected = site_with(model, TEXTS[0], name, mask_fn(keep), read=out)
        before = site_with(model, TEXTS[0], name, read=out)
        c.call(f"delete_by_weights(model, {layer}, {len(neurons)} neurons)", fn, model, layer, neurons)
        got = site_with(model, TEXTS[0], name, read=out)
        mistakes = {"the unchanged model: edit the weights in place (with torch.no_grad())": before}
        c.close(f"layer {layer}, {len(neurons)} neurons deleted: the MLP output ({out}) matches the zero mask's",
                expected, got, dims=("row", "position", "dimension"), mistakes=mistakes,
                hint="Neuron i writes to the residual stream through row i of W_out (model.weights(layer)['W_out']).")
        c.close(f"layer {layer}: the logits match the zero mask's too",
                logits_with(tiny_lm(), TEXTS[0], [(name, mask_fn(keep))]), model(TEXTS[0]), dims=("row", "position", "token"))


@check("04.4")
def check_next_token_metrics(c: Checker, fn: Any) -> None:
    """``fn(logits, ids)`` equals :func:`~paragraph_planning.core.evaluation.evaluate_lm`'s ``loss`` and ``top1``."""
    model = tiny_lm()
    gen = torch.Generator().manual_seed(0)
    for rows, seq in ((2, 16), (3, 9)):
        ids = torch.randint(4, 130, (rows, seq), generator=gen)
        ref = evaluate_lm(model, ids, skip_ids=torch.zeros(0, dtype=torch.long))
        logits = model(ids)
        got = c.call(f"next_token_metrics(logits, ids) on {rows} x {seq} tokens", fn, logits, ids)
        flat = logits.reshape(-1, logits.shape[-1])
        same = torch.nn.functional.cross_entropy(flat, ids.reshape(-1))
        same_top1 = (logits.argmax(-1) == ids).float().mean()
        mistakes = {"comparing each position with its OWN token: position t predicts token t + 1 "
                    "(logits[:, :-1] against ids[:, 1:])": (float(same), float(same_top1))}
        c.close(f"{rows} rows x {seq} tokens: (loss, top1) = ({ref['loss']:.4f}, {ref['top1']:.4f})",
                (ref["loss"], ref["top1"]), got, dims=("value (loss, top1)",), mistakes=mistakes)
