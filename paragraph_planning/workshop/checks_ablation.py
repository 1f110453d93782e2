"""Checks of the exercises of chapter 02 (ablation methods) and of reading intervals.

Each ``check_<name>(fn)`` runs the learner's function on the tiny random Llama (or small arrays)
and compares it with the package's own implementation; see :mod:`.checking`.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..core.inference import t_interval, verdict
from ..core.interventions import mask_fn
from ..core.statistics import NeuronStats
from .checking import TEXTS, Checker, check, site_with, tiny_lm, tiny_mlp_stats


def _skewed_stats(seed: int = 0) -> NeuronStats:
    """Streaming statistics of 6 synthetic neurons with skewed or two-peaked distributions."""
    gen = torch.Generator().manual_seed(seed)
    expo = -torch.rand(2000, 4, generator=gen).log()  # Exponential(1), from this generator only
    x = torch.cat([
        expo[:, :2],
        torch.randn(2000, 2, generator=gen) * 0.3 + torch.where(torch.rand(2000, 2, generator=gen) < 0.7, 2.0, -1.0),
        -(expo[:, 2:] + -torch.rand(2000, 2, generator=gen).log()),  # minus a Gamma(2, 1)
    ], dim=1)
    s = NeuronStats(6, bins=30, reservoir=0)
    s.update(x)
    return s


@check("02.1")
def check_peak_from_histogram(c: Checker, fn: Any) -> None:
    """``fn(counts, edges)`` equals :attr:`NeuronStats.peak` (centre of the fullest bin, first on ties)."""
    s = _skewed_stats()
    counts, edges = s.hist, s.bin_edges
    got = c.call("peak_from_histogram(stats.hist, stats.bin_edges)", fn, counts, edges)
    top = counts.argmax(1, keepdim=True)
    mistakes = {"the neurons' MEANS: the peak is the centre of the fullest bin, not the mean": s.mean,
                "the LEFT edge of the fullest bin: take its centre (half a bin further)": edges.gather(1, top)[:, 0],
                "the RIGHT edge of the fullest bin: take its centre": edges.gather(1, top + 1)[:, 0],
                "the index of the fullest bin: turn it into a value with the edges": top[:, 0].double()}
    c.close("6 skewed or two-peaked neurons, 30 bins: peaks match NeuronStats.peak", s.peak, got,
            dims=("neuron",), mistakes=mistakes)
    tie_counts = torch.tensor([[1, 4, 2, 4, 0], [0, 0, 0, 0, 9]])
    tie_edges = torch.tensor([[0.0, 1, 2, 3, 4, 5], [-1.0, -0.5, 0, 0.5, 1, 1.5]])
    got = c.call("peak_from_histogram on a histogram with a tie", fn, tie_counts, tie_edges)
    c.close("two bins equally full: the first one wins (as torch.argmax and NeuronStats.peak)",
            torch.tensor([1.5, 1.25]), got, dims=("neuron",),
            mistakes={"the LAST of the fullest bins on ties": torch.tensor([3.5, 1.25])})


def _ablation_case(c: Checker, fn: Any, build: Any, what: str, expected_values: Any, mistakes: dict[str, Any]) -> None:
    """Shared by peak and resample ablation: apply the learner's hook and compare the site's activation."""
    model = tiny_lm()
    name, neurons, base = build["name"], build["neurons"], build["inputs"]
    keep = torch.ones(model.cfg.d_mlp)
    keep[neurons] = 0
    expected = site_with(model, base, name, mask_fn(keep, expected_values))
    hook = c.call(what, fn, *build["args"])
    if not callable(hook):
        c.fail("your function should return a hook function", f"it returned a {type(hook).__name__}.")
    got = c.call(f"the model with your hook on {name}", site_with, model, base, name, hook)
    wrong = {desc: site_with(model, base, name, mask_fn(keep, v)) for desc, v in mistakes.items()}
    wrong["the clean model: nothing was replaced (return the changed activation)"] = site_with(model, base, name)
    c.close(f"{len(neurons)} of {model.cfg.d_mlp} neurons of {name} replaced: the site matches the package's mask",
            expected, got, dims=("row", "position", "neuron"), mistakes=wrong)


@check("02.2")
def check_peak_ablation(c: Checker, fn: Any) -> None:
    """``fn(stats, neurons)`` gives the logits of the package's peak ablation (``mask_fn`` with ``stats.peak``)."""
    model = tiny_lm()
    stats = tiny_mlp_stats(model)
    for layer, neurons in ((1, [1, 4, 9, 16, 25]), (0, list(range(0, model.cfg.d_mlp, 2)))):
        name = model.hook_names("mlp.pre_out", [layer])[0]
        s = stats[name]
        mistakes = {"MEAN ablation: replace with stats.peak, not stats.mean": s.mean.float(),
                    "ZERO ablation: replace with the peak value, not 0": torch.zeros(model.cfg.d_mlp),
                    "the MEDIAN: the peak is the histogram's mode (stats.peak)": s.reservoir.median(0).values}
        build = {"name": name, "neurons": neurons, "inputs": list(TEXTS), "args": (s, neurons)}
        _ablation_case(c, fn, build, f"peak_ablation_hook(stats[{name!r}], {len(neurons)} neurons)",
                       s.peak.float(), mistakes)


@check("02.3")
def check_resample_ablation(c: Checker, fn: Any) -> None:
    """``fn(neurons, source)`` gives the logits of the package's resampling (per-position ``mask_fn`` values)."""
    model = tiny_lm()
    base = ["The cat sat on the mat", "Bees make honey daily."]  # same length: no padding
    other = ["A dog ran past a tree.", "Rain fell on the roof."]
    for layer, neurons in ((1, [0, 3, 8, 30, 47]), (0, list(range(0, model.cfg.d_mlp, 3)))):
        name = model.hook_names("mlp.pre_out", [layer])[0]
        with model.record([name]) as rec:
            model(other)
        source = rec[name]  # [2, pos, d_mlp]
        mistakes = {"the source's value at position 0 everywhere: use the SAME position":
                    source[:, :1].expand_as(source),
                    "the source's mean over positions: use the value at the same position":
                    source.mean(1, keepdim=True).expand_as(source),
                    "the source shifted by one position": torch.cat([source[:, :1], source[:, :-1]], 1),
                    "the other row's source: row i takes row i of the source": source.flip(0)}
        build = {"name": name, "neurons": neurons, "inputs": base, "args": (neurons, source)}
        _ablation_case(c, fn, build, f"resample_ablation_hook({len(neurons)} neurons, source)", source, mistakes)


@check("02.4")
def check_t_interval(c: Checker, fn: Any) -> None:
    """``fn(x)`` equals :func:`~paragraph_planning.core.inference.t_interval`'s ``(lo, hi)``."""
    from scipy import stats

    cases = {"3 seeds": [0.21, 0.35, 0.30], "5 seeds": [1.0, 1.4, 0.9, 1.2, 1.6],
             "30 values": list(np.random.default_rng(0).normal(2, 1, 30))}
    for what, x in cases.items():
        ref = t_interval(x)
        got = c.call(f"t_interval_ci on {what}", fn, x)
        arr = np.asarray(x)
        n, mean, sd = len(arr), arr.mean(), arr.std(ddof=1)
        q = stats.t.ppf(0.975, n - 1)
        mistakes = {f"a NORMAL quantile (1.96·s.e.): with n = {n} use Student's t with {n - 1} d.o.f. ({q:.2f})":
                    (mean - 1.96 * sd / np.sqrt(n), mean + 1.96 * sd / np.sqrt(n)),
                    "the s.d. with ddof=0: the sample s.d. divides by n − 1":
                    (mean - q * arr.std() / np.sqrt(n), mean + q * arr.std() / np.sqrt(n)),
                    "± t·s.d.: the interval of a mean uses the standard ERROR, s.d./√n": (mean - q * sd, mean + q * sd)}
        c.close(f"{what}: ({ref.lo:.4f}, {ref.hi:.4f})", (ref.lo, ref.hi), got, dims=("end",), mistakes=mistakes)


INTERVALS = ((0.1, 0.5, "greater"), (-0.2, 0.3, "greater"), (-0.6, -0.1, "greater"), (-0.5, -0.2, "less"),
             (-0.1, 0.4, "less"), (0.2, 0.6, "less"), (0.0, 0.3, "greater"))


@check("02.5")
def check_verdict(c: Checker, fn: Any) -> None:
    """``fn(lo, hi, null, direction)`` equals :func:`~paragraph_planning.core.inference.verdict` on 7 intervals."""
    from ..core.inference import Interval

    for lo, hi, direction in INTERVALS:
        expected = verdict(Interval((lo + hi) / 2, lo, hi), null=0.0, direction=direction)
        got = c.call(f"interval_verdict({lo}, {hi}, 0.0, {direction!r})", fn, lo, hi, 0.0, direction)
        hint = (("The interval contains the null: the data cannot tell. A non-significant result is not "
                 "evidence that the effect is absent, so this is 'undetermined at this sample'.")
                if expected.startswith("undetermined") else
                f"The claim is that the effect is {direction} than the null: read the interval in that direction.")
        c.equal(f"interval [{lo}, {hi}], claim '{direction} than 0': {expected!r}", expected, got, hint=hint)
