"""Unlearning by selective pruning (Pochinkov & Schoots 2023), as chapter-level experiments.

Built on :mod:`paragraph_planning.core.pruning`; the data are the pairs of
:mod:`.unlearning_data` (re-exported here). Every experiment has one calling convention: a frozen,
validated config and ``run_<experiment>(model, pair, cfg) -> tidy DataFrame``, cached on disk inside
(:func:`paragraph_planning.cache.cached`, keyed by the pair's and the config's parameters, this
code and the model), and leaves the model unpruned. The frames have one row per evaluation *unit*
(a text row of ``seq_len`` tokens, or an image) and side (``forget`` / ``retain``), so intervals
can resample units (:mod:`.unlearning_verdicts`). Unit columns: ``side``, ``unit``, ``label``
(the image's class; text: the task), ``n`` (targets in the unit), and sums over the unit: ``loss``,
``top1``, ``top10`` (images: ``top5``) and, for text, ``kept`` (targets outside the 50 most common)
with ``skip50_top1``/``skip50_top10`` among them.

* :func:`neuron_moments`: forget and retain statistics of every neuron of the unpruned model,
  shared by every score, run and comparison of a pair;
* :func:`base_units`: the unpruned model's evaluation, shared the same way (every drop is from it);
* :func:`run_unlearning` (:class:`~paragraph_planning.core.pruning.PruningConfig`): the pruning loop,
  one block of units per step (step 0 = unpruned);
* :func:`run_random` (:class:`RandomConfig`): random neurons pruned at fixed fractions, one block per seed;
* :func:`run_scores` (:class:`ScoresConfig`): one kind of neuron pruned in one shot by each score
  (the paper's exp2 grid), with the reference library's formulas as well where they differ;
* :func:`taker_overlap`: how much the reference formulas change each score's selection.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..core.architectures import NEURON_SITES, layer_of, site_of
from ..core.hooks import HookedModel
from ..core.interventions import NeuronMasks
from ..core.pruning import (
    SCORE_NAMES,
    PruningConfig,
    ScoreName,
    head_scores,
    run_pruning,
    score_neurons,
    select_top,
)
from ..data.images import image_positions
from .unlearning_data import ImagePair, TextPair, image_pair, pieces, text_pair  # noqa: F401  (the chapter's data)

SITE_LABELS: dict[str, str] = {"mlp.pre_out": "FF", "attn.pre_out": "attention"}
"""Short names of the neuron sites used in tables."""
FRAC_COLUMNS: dict[str, str] = {"mlp.pre_out": "frac_ff", "attn.pre_out": "frac_attn"}
"""Column of the pruned fraction of each site in the tidy frames."""
TAKER_DIFFERS: tuple[str, ...] = ("std", "rms")
"""Scores whose reference-library formula differs from this package's."""

Pair = TextPair | ImagePair
Collect = Callable[[HookedModel, str, list], Mapping[str, Any]]


# ============================================================================ statistics
@dataclass
class Moments:
    """Per-neuron statistics that the scores use (float64 ``[n_neurons]``), small enough to cache."""

    count: int
    mean: torch.Tensor
    var: torch.Tensor
    std: torch.Tensor
    mean_abs: torch.Tensor
    mean_sqrt_abs: torch.Tensor
    rms: torch.Tensor
    frac_pos: torch.Tensor

    @classmethod
    def from_stats(cls, s: Any) -> "Moments":
        """From a :class:`~paragraph_planning.core.statistics.NeuronStats` (or anything with these fields)."""
        return cls(int(s.count), *(getattr(s, k).detach().double().cpu() for k in
                                   ("mean", "var", "std", "mean_abs", "mean_sqrt_abs", "rms", "frac_pos")))


def collect_fn(pair: Pair, first: Mapping[str, Mapping[str, Moments]] | None = None) -> Collect:
    """``collect(model, "forget" | "retain", names) -> {name: Moments}`` for :func:`~.pruning.run_pruning`.

    ``first``: statistics already collected on the unpruned model (:func:`neuron_moments`),
    returned by the first call for each side instead of collecting again.
    """
    from ..core.statistics import collect_stats

    unused = {k: dict(v) for k, v in (first or {}).items()}

    def collect(model: HookedModel, which: str, names: list) -> dict[str, Moments]:
        ready = unused.pop(which, None)
        if ready is not None and set(names) <= set(ready):
            return {n: ready[n] for n in names}
        batches = list(getattr(pair, f"{which}_collect"))
        positions = image_positions(pair.positions) if isinstance(pair, ImagePair) else None
        stats = collect_stats(model, batches, sites=sorted({site_of(n) for n in names}),
                              layers=sorted({layer_of(n) for n in names}), bins=1, reservoir=0, progress=False,
                              positions=positions)
        return {n: Moments.from_stats(stats[n]) for n in names}

    return collect


# ============================================================================ evaluation per unit
@torch.no_grad()
def evaluate_units(model: HookedModel, pair: Pair, batch_size: int = 500) -> pd.DataFrame:
    """The model's results per evaluation unit and side (the unit columns of the module docstring)."""
    if isinstance(pair, ImagePair):
        from ..core.evaluation import classification_metrics

        parts = [classification_metrics(model(x), y) for x, y in
                 zip(pair.eval_pixels.split(batch_size), pair.eval_labels.split(batch_size))]
        m = {k: torch.cat([p[k] for p in parts]).double().numpy() for k in parts[0]}
        labels = pair.eval_labels.numpy()
        out = pd.DataFrame({"side": np.where(labels == pair.classes.index(pair.forget), "forget", "retain"),
                            "unit": np.arange(len(labels)), "label": np.asarray(pair.classes)[labels], "n": 1,
                            **m})
        return out.sort_values(["side", "unit"], kind="stable").reset_index(drop=True)
    from ..core.evaluation import evaluate_lm_rows

    frames = []
    for side in ("forget", "retain"):
        rows = evaluate_lm_rows(model, getattr(pair, f"{side}_eval"), skip_ids=getattr(pair, f"{side}_skip"))
        frames.append(rows.rename(columns={"row": "unit", "tokens": "n"}).assign(side=side, label=getattr(pair, side)))
    out = pd.concat(frames, ignore_index=True)
    return out[["side", "unit", "label", *[c for c in out.columns if c not in ("side", "unit", "label")]]]


def metric_denominator(metric: str) -> str:
    """The unit column a metric's sum is divided by: ``kept`` for the skip50 metrics, else ``n``."""
    return "kept" if metric.startswith("skip50_") else "n"


def side_means(units: pd.DataFrame, metric: str = "top1") -> dict[str, float]:
    """``{"forget_<metric>": ..., "retain_<metric>": ...}``: the metric over all units of each side."""
    den = metric_denominator(metric)
    g = units.groupby("side")[[metric, den]].sum()
    return {f"{side}_{metric}": float(g.loc[side, metric] / g.loc[side, den]) if g.loc[side, den] else math.nan
            for side in g.index}


# ============================================================================ shared, cached computations
def _cached(kind: str, model: HookedModel, pair: Pair, params: Mapping[str, Any], compute: Callable[[], Any]) -> Any:
    from ..cache import cached

    return cached(kind, {"pair": pair.params, **params}, compute, model=model)


def neuron_moments(model: HookedModel, pair: Pair, sites: Sequence[str] = NEURON_SITES) -> dict[str, dict[str, Moments]]:
    """``{"forget": {name: Moments}, "retain": {...}}`` on the unpruned model, every layer of ``sites``."""
    names = model.hook_names(list(sites))

    def compute() -> dict[str, dict[str, Moments]]:
        collect = collect_fn(pair)
        return {side: collect(model, side, names) for side in ("forget", "retain")}

    return _cached("unlearning-moments", model, pair, {"sites": sorted(sites)}, compute)


def base_units(model: HookedModel, pair: Pair) -> pd.DataFrame:
    """:func:`evaluate_units` of the unpruned model (cached; every experiment's step 0)."""
    return _cached("unlearning-base", model, pair, {}, lambda: evaluate_units(model, pair))


def _with(frame: pd.DataFrame, **columns: Any) -> pd.DataFrame:
    """``frame`` with constant ``columns`` in front."""
    out = frame.copy()
    for i, (k, v) in enumerate(columns.items()):
        out.insert(i, k, v)
    return out


# ============================================================================ pruned counts
def site_size(model: HookedModel, site: str) -> int:
    """Neurons of one site over all layers."""
    return model.cfg.n_neurons(site) * model.cfg.n_layers


def final_counts(model: HookedModel, cfg: PruningConfig) -> dict[str, int]:
    """Neurons of each site that :func:`run_unlearning` has pruned after its last step (known in advance)."""
    out = {}
    for site, frac in cfg.fracs().items():
        n = site_size(model, site)
        if cfg.head_level and site == "attn.pre_out":
            heads = model.cfg.n_heads * model.cfg.n_layers
            step, total, unit = int(frac * heads), heads, n // heads
        else:
            step, total, unit = int(frac * n), n, 1
        chosen = min(total, step * cfg.n_steps) if cfg.iterative else int(min(1.0, frac * cfg.n_steps) * total)
        out[site] = chosen * unit
    return out


def frac_for(count: int, total: int) -> float:
    """The smallest fraction ``f`` with ``int(f · total) == count`` (and ``round(f · total) == count``)."""
    if not 0 <= count <= total:
        raise ValueError(f"Need 0 <= count <= total, got {count} and {total}.")
    f = count / total
    while int(f * total) < count:
        f = math.nextafter(f, 2.0)
    return f


def final_fracs(model: HookedModel, cfg: PruningConfig) -> dict[str, float]:
    """:func:`final_counts` as fractions of each site (what a random baseline at the same budget prunes)."""
    return {s: frac_for(k, site_size(model, s)) for s, k in final_counts(model, cfg).items()}


# ============================================================================ experiments
def run_unlearning(model: HookedModel, pair: Pair, cfg: PruningConfig) -> pd.DataFrame:
    """Selective pruning of ``pair.forget`` against ``pair.retain``: units per step (step 0 = unpruned).

    Columns: ``step``, ``frac_ff``, ``frac_attn`` (fractions pruned so far), then the unit columns.
    The first statistics and the step-0 evaluation are the shared :func:`neuron_moments` and
    :func:`base_units`. The model is left unpruned.
    """
    if not isinstance(cfg, PruningConfig):
        raise TypeError(f"cfg must be a PruningConfig, got {type(cfg).__name__}.")
    moments, base = neuron_moments(model, pair), base_units(model, pair)

    def compute() -> pd.DataFrame:
        blocks: list[pd.DataFrame] = []

        def evaluate(m: HookedModel) -> dict[str, float]:
            units = base if not blocks else evaluate_units(m, pair)
            blocks.append(units)
            return side_means(units)

        res = run_pruning(model, collect_fn(pair, moments), evaluate, cfg, progress=False)
        res.handle.remove()
        h = res.history
        out = []
        for step, units in enumerate(blocks):
            row = h.loc[h.step == step].iloc[0]
            fr = {c: float(row.get(f"frac_{s}", 0.0)) for s, c in FRAC_COLUMNS.items()}
            out.append(_with(units, step=step, **fr))
        return pd.concat(out, ignore_index=True)

    return _cached("unlearning-run", model, pair, {"config": asdict(cfg)}, compute)


def _check_frac(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}.")


@dataclass(frozen=True)
class RandomConfig:
    """Random pruning: ``ff_frac``/``attn_frac`` of all neurons of each kind, drawn anew for each of ``seeds``."""

    ff_frac: float = 0.0
    attn_frac: float = 0.0
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)

    def __post_init__(self) -> None:
        _check_frac("ff_frac", self.ff_frac)
        _check_frac("attn_frac", self.attn_frac)
        if self.ff_frac == 0 and self.attn_frac == 0:
            raise ValueError("Nothing to prune: ff_frac and attn_frac are both 0.")
        seeds = tuple(self.seeds)
        if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) for s in seeds):
            raise ValueError(f"seeds must be distinct integers (at least one), got {self.seeds!r}.")
        object.__setattr__(self, "seeds", seeds)

    def fracs(self) -> dict[str, float]:
        """Fraction per neuron site (sites with fraction 0 are left out)."""
        return {s: float(f) for s, f in (("mlp.pre_out", self.ff_frac), ("attn.pre_out", self.attn_frac)) if f > 0}

    @classmethod
    def matching(cls, model: HookedModel, cfg: PruningConfig, seeds: Sequence[int] = (0, 1, 2, 3, 4)) -> "RandomConfig":
        """The random baseline at the budget ``cfg`` reaches after its last step (:func:`final_fracs`)."""
        f = final_fracs(model, cfg)
        return cls(f.get("mlp.pre_out", 0.0), f.get("attn.pre_out", 0.0), tuple(seeds))


def random_masks(model: HookedModel, fracs: Mapping[str, float], seed: int = 0) -> dict[str, torch.Tensor]:
    """Keep-masks pruning ``round(frac · N)`` uniformly random neurons of each site (over all layers)."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for site, frac in fracs.items():
        _check_frac(f"fraction of {site}", frac)
        names = model.hook_names(site)
        n = model.cfg.n_neurons(site)
        pruned = torch.zeros(n * len(names), dtype=torch.bool)
        pruned[torch.randperm(n * len(names), generator=gen)[:round(frac * n * len(names))]] = True
        out.update({name: ~part for name, part in zip(names, pruned.split(n))})
    return out


def _masked_units(model: HookedModel, pair: Pair, keep: Mapping[str, torch.Tensor]) -> tuple[pd.DataFrame, dict]:
    with NeuronMasks(model) as masks:
        masks.update(keep)
        units = evaluate_units(model, pair)
    fr = {c: 0.0 for c in FRAC_COLUMNS.values()}
    for site, c in FRAC_COLUMNS.items():
        k = [keep[n] for n in model.hook_names(site) if n in keep]
        if k:
            fr[c] = float((~torch.cat(k)).double().mean())
    return units, fr


def run_random(model: HookedModel, pair: Pair, cfg: RandomConfig) -> pd.DataFrame:
    """Random pruning at ``cfg``'s fractions: ``seed``, ``frac_ff``, ``frac_attn`` and the unit columns.

    Each seed is cached on its own, so more seeds reuse the ones already computed.
    """
    if not isinstance(cfg, RandomConfig):
        raise TypeError(f"cfg must be a RandomConfig, got {type(cfg).__name__}.")
    blocks = []
    for seed in cfg.seeds:
        def compute(seed: int = seed) -> pd.DataFrame:
            units, fr = _masked_units(model, pair, random_masks(model, cfg.fracs(), seed))
            return _with(units, seed=seed, **fr)

        blocks.append(_cached("unlearning-random", model, pair, {"fracs": cfg.fracs(), "seed": seed}, compute))
    return pd.concat(blocks, ignore_index=True)


@dataclass(frozen=True)
class ScoresConfig:
    """One-shot pruning of one kind of neuron by each score (the paper's exp2 grid).

    ``ff_frac``/``attn_frac``: the fraction of that kind pruned (0: kind left out); ``scores``: from
    :data:`~paragraph_planning.core.pruning.SCORE_NAMES` (use :func:`run_random` for the random
    baseline); ``taker``: also the reference library's formulas for the scores where they differ
    (:data:`TAKER_DIFFERS`); ``seed``: of the ``random`` score, if listed.
    """

    ff_frac: float = 0.05
    attn_frac: float = 0.05
    scores: tuple[ScoreName, ...] = ("abs", "freq", "sqrt", "rms", "std")
    taker: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        _check_frac("ff_frac", self.ff_frac)
        _check_frac("attn_frac", self.attn_frac)
        scores = tuple(self.scores)
        bad = [s for s in scores if s not in SCORE_NAMES]
        if bad or not scores:
            raise ValueError(f"Unknown scores {bad} (need at least one). Valid scores: {', '.join(SCORE_NAMES)}.")
        object.__setattr__(self, "scores", scores)
        if not isinstance(self.taker, bool):
            raise ValueError(f"taker must be True or False, got {self.taker!r}.")

    def fracs(self) -> dict[str, float]:
        """Fraction per neuron site (sites with fraction 0 are left out)."""
        return {s: float(f) for s, f in (("mlp.pre_out", self.ff_frac), ("attn.pre_out", self.attn_frac)) if f > 0}

    def cells(self) -> list[tuple[str, str, bool]]:
        """``(site, score, taker_compatible)`` of every one-shot pruning to evaluate."""
        return [(site, score, taker) for site in self.fracs() for score in self.scores
                for taker in ((False, True) if self.taker and score in TAKER_DIFFERS else (False,))]


def _site_scores(moments: Mapping[str, Mapping[str, Moments]], model: HookedModel, site: str, score: str,
                 taker: bool = False, seed: int = 0) -> dict[str, torch.Tensor]:
    names = model.hook_names(site)
    return score_neurons({n: moments["forget"][n] for n in names}, {n: moments["retain"][n] for n in names}, score,
                         seed=seed, taker_compatible=taker)


def run_scores(model: HookedModel, pair: Pair, cfg: ScoresConfig) -> pd.DataFrame:
    """One-shot pruning by each score: ``score``, ``formula`` (``"package"`` or ``"taker"``), ``neurons``,
    ``site``, ``frac_ff``, ``frac_attn`` and the unit columns. Scores come from :func:`neuron_moments`.

    Each evaluation is cached under the set of neurons it prunes, so two formulas that select the
    same neurons (e.g. ``std`` with and without ``taker``) are evaluated once.
    """
    import hashlib

    if not isinstance(cfg, ScoresConfig):
        raise TypeError(f"cfg must be a ScoresConfig, got {type(cfg).__name__}.")
    moments = neuron_moments(model, pair)
    blocks = []
    for site, score, taker in cfg.cells():
        sel = select_top(_site_scores(moments, model, site, score, taker, cfg.seed), cfg.fracs()[site])
        keep = {n: ~m for n, m in sel.items()}
        digest = hashlib.sha256(torch.cat([sel[n] for n in sorted(sel)]).numpy().tobytes()).hexdigest()[:32]

        def compute(keep: Mapping[str, torch.Tensor] = keep) -> pd.DataFrame:
            units, fr = _masked_units(model, pair, keep)
            return _with(units, **fr)

        units = _cached("unlearning-pruned", model, pair, {"site": site, "pruned": digest}, compute)
        blocks.append(_with(units, score=score, formula="taker" if taker else "package", neurons=SITE_LABELS[site],
                            site=site))
    return pd.concat(blocks, ignore_index=True)


def taker_overlap(model: HookedModel, moments: Mapping[str, Mapping[str, Moments]], fracs: Mapping[str, float],
                  scores: Sequence[str] = ("abs", "freq", "sqrt", "rms", "std"), head_level: bool = True) -> pd.DataFrame:
    """Overlap of the top-k selections with the reference library's formulas and with this package's.

    One row per score and neuron kind: ``score``, ``neurons``, ``selection`` (``"neurons"`` or
    ``"heads"``), ``k`` (neurons selected), ``shared`` and ``overlap`` = shared / k (1: the same set).
    With ``head_level``, attention also gets whole-head selections: mean (package) against median
    (reference) of each head's neuron scores, both with this package's score formulas.
    """
    rows = []
    for site, frac in fracs.items():
        for score in scores:
            a, b = (select_top(_site_scores(moments, model, site, score, taker), frac) for taker in (False, True))
            rows.append(_overlap_row(score, site, "neurons", a, b))
        if head_level and site == "attn.pre_out":
            heads = model.cfg.n_heads
            for score in scores:
                s = _site_scores(moments, model, site, score)
                a, b = (select_top(head_scores(s, heads, agg), frac, heads=heads) for agg in ("mean", "median"))
                rows.append(_overlap_row(score, site, "heads", a, b))
    return pd.DataFrame(rows)


def _overlap_row(score: str, site: str, selection: str, a: Mapping[str, torch.Tensor],
                 b: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    x, y = torch.cat(list(a.values())), torch.cat(list(b.values()))
    k, shared = int(x.sum()), int((x & y).sum())
    return {"score": score, "neurons": SITE_LABELS[site], "selection": selection, "k": k, "shared": shared,
            "overlap": shared / k if k else math.nan}


def score_frame(moments: Mapping[str, Mapping[str, Moments]], model: HookedModel, score: str = "abs",
                sites: Sequence[str] = NEURON_SITES, seed: int = 0) -> pd.DataFrame:
    """One row per neuron: ``site``, ``neurons`` (FF/attention), ``layer``, ``neuron``, ``head``, ``score``,
    ``forget_mean_abs``, ``retain_mean_abs``, and ``rank`` (1 = highest score within its site)."""
    frames = []
    for site in sites:
        names = [n for n in model.hook_names(site) if n in moments["forget"]]
        if not names:
            continue
        s = _site_scores(moments, model, site, score, seed=seed)
        n = model.cfg.n_neurons(site)
        df = pd.DataFrame({
            "site": site, "neurons": SITE_LABELS.get(site, site),
            "layer": np.repeat([layer_of(x) for x in names], n),
            "neuron": np.tile(np.arange(n), len(names)),
            "score": torch.cat([s[x] for x in names]).numpy(),
            "forget_mean_abs": torch.cat([moments["forget"][x].mean_abs for x in names]).numpy(),
            "retain_mean_abs": torch.cat([moments["retain"][x].mean_abs for x in names]).numpy(),
        })
        if site == "attn.pre_out":
            df["head"] = df.neuron // model.cfg.d_head
        df["rank"] = df.score.rank(ascending=False, method="first").astype(int)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
