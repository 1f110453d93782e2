"""Selective pruning (Pochinkov & Schoots 2023): remove neurons far more important for a forget set.

Importance of a neuron is a statistic ``I`` of its activations; the score is
``I(forget) / (I(retain) + ε)``. Neurons are FF neurons (``mlp.pre_out``) and attention neurons
(``attn.pre_out``, one per head × d_head); each kind is selected by a **global** top fraction
across all layers. Pruning is a persistent zero mask (:class:`~.interventions.NeuronMasks`);
:func:`delete_neurons` zeroes the matching weights instead, with identical outputs.

Differences from the reference library, on purpose: ``std`` is the standard deviation (the
reference's ``std`` held the variance) and ``rms`` is ``sqrt(mean x²)`` (the reference computed
``sqrt(var² + mean²)``).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pandas as pd
import torch

from .architectures import NEURON_SITES, parse_name, site_of
from .hooks import HookedModel
from .interventions import NeuronMasks

Stats = Mapping[str, Any]  # hook name -> NeuronStats (fields: mean, std, mean_abs, ...)

DEFAULT_EPS: dict[str, float] = {"mlp.pre_out": 1e-3, "attn.pre_out": 1e-4}
"""ε of the score ratio per site (the papers' ``ff_eps`` and ``attn_eps``)."""


def _ratio(field_name: str) -> Callable[[Any, Any, float], torch.Tensor]:
    def score(forget: Any, retain: Any, eps: float) -> torch.Tensor:
        return getattr(forget, field_name) / (getattr(retain, field_name) + eps)

    score.__doc__ = f"{field_name}(forget) / ({field_name}(retain) + eps)"
    return score


SCORES: dict[str, Callable[[Any, Any, float], torch.Tensor]] = {
    "abs": _ratio("mean_abs"),
    "freq": _ratio("frac_pos"),
    "sqrt": _ratio("mean_sqrt_abs"),
    "rms": _ratio("rms"),
    "std": _ratio("std"),
    "mean_diff": lambda forget, retain, eps: (forget.mean - retain.mean).abs(),
}
"""Score functions; ``"random"`` (uniform scores from a seeded generator) is the baseline."""
SCORE_NAMES: tuple[str, ...] = (*SCORES, "random")


def score_neurons(
    forget: Stats, retain: Stats, score: str = "abs", eps: Mapping[str, float] | None = None, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Per-neuron scores ``{hook name: [n_neurons] float64}`` from forget and retain statistics."""
    if score not in SCORE_NAMES:
        raise ValueError(f"Unknown score {score!r}. Valid scores: {', '.join(SCORE_NAMES)}.")
    missing = sorted(set(forget) ^ set(retain))
    if missing:
        raise ValueError(f"Forget and retain statistics cover different sites: {missing[:4]}.")
    eps = {**DEFAULT_EPS, **(eps or {})}
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(forget, key=_site_order):
        site = site_of(name)
        if score == "random":
            out[name] = torch.rand(forget[name].mean.numel(), generator=gen, dtype=torch.float64)
        else:
            out[name] = SCORES[score](forget[name], retain[name], eps.get(site, 1e-3)).double().flatten()
    return out


def _site_order(name: str) -> tuple[str, int]:
    layer, site = parse_name(name) or (-1, name)
    return site, layer


def select_top(
    scores: Mapping[str, torch.Tensor],
    frac: float,
    pruned: Mapping[str, torch.Tensor] | None = None,
    heads: int | None = None,
) -> dict[str, torch.Tensor]:
    """Global top fraction: boolean masks ``{name: [n_neurons]}`` of the neurons to prune now.

    ``k = int(frac · N)`` over all the given sites together (pass one site kind at a time);
    neurons already in ``pruned`` are skipped. With ``heads`` (the number of heads per layer), whole
    heads are ranked by their mean neuron score and ``int(frac · n_heads_total)`` heads are chosen.
    """
    if not 0 <= frac <= 1:
        raise ValueError(f"frac must be in [0, 1], got {frac}.")
    names = list(scores)
    if not names or frac == 0:
        return {n: torch.zeros_like(scores[n], dtype=torch.bool) for n in names}
    if heads:
        per = {n: scores[n].view(heads, -1) for n in names}
        flat = torch.cat([per[n].mean(-1) for n in names])
        done = torch.cat([pruned[n].view(heads, -1).all(-1) if pruned and n in pruned else
                          torch.zeros(heads, dtype=torch.bool) for n in names])
        sizes, expand = [heads] * len(names), per[names[0]].shape[1]
    else:
        flat = torch.cat([scores[n] for n in names])
        done = torch.cat([pruned[n] if pruned and n in pruned else torch.zeros_like(scores[n], dtype=torch.bool)
                          for n in names])
        sizes, expand = [scores[n].numel() for n in names], 1
    k = int(frac * flat.numel())
    flat = flat.masked_fill(done, float("-inf"))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    k = min(k, int((~done).sum()))
    if k > 0:
        chosen[flat.topk(k).indices] = True
    return {n: part.repeat_interleave(expand) for n, part in zip(names, chosen.split(sizes))}


@dataclass
class PruningConfig:
    """Knobs of one selective-pruning run (``asdict`` feeds caches and chapter tables)."""

    ff_frac: float = 0.02
    attn_frac: float = 0.0
    n_steps: int = 5
    score: str = "abs"
    iterative: bool = True
    head_level: bool = False
    eps: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_EPS))
    seed: int = 0

    def __post_init__(self) -> None:
        if self.score not in SCORE_NAMES:
            raise ValueError(f"Unknown score {self.score!r}. Valid scores: {', '.join(SCORE_NAMES)}.")
        if self.n_steps < 1 or not (0 <= self.ff_frac <= 1 and 0 <= self.attn_frac <= 1):
            raise ValueError("n_steps must be >= 1 and fractions in [0, 1].")

    def fracs(self) -> dict[str, float]:
        """Fraction per neuron site (sites with fraction 0 are not scored)."""
        return {s: f for s, f in (("mlp.pre_out", self.ff_frac), ("attn.pre_out", self.attn_frac)) if f > 0}


@dataclass
class PruningResult:
    """History (one row per step, step 0 = unpruned), final masks and the last scores."""

    history: pd.DataFrame
    masks: dict[str, torch.Tensor]
    scores: dict[str, torch.Tensor]
    config: PruningConfig
    handle: NeuronMasks | None = None  # the masks installed on the model; ``handle.remove()`` undoes them

    def save(self, folder: str | Path) -> Path:
        """Write ``history.csv`` and ``masks_scores.pt`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.history.to_csv(folder / "history.csv", index=False)
        torch.save({"masks": self.masks, "scores": self.scores, "config": asdict(self.config)},
                   folder / "masks_scores.pt")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "PruningResult":
        """Read a result written by :meth:`save`."""
        folder = Path(folder)
        blob = torch.load(folder / "masks_scores.pt")
        return cls(pd.read_csv(folder / "history.csv"), blob["masks"], blob["scores"], PruningConfig(**blob["config"]))


def run_pruning(
    model: HookedModel,
    collect: Callable[[HookedModel, str, list[str]], Stats],
    evaluate: Callable[[HookedModel], Mapping[str, float]],
    config: PruningConfig,
    layers: Iterable[int] | None = None,
    progress: bool = True,
) -> PruningResult:
    """Selective pruning loop; the masks stay on ``model`` until ``result`` masks are removed.

    ``collect(model, "forget" | "retain", hook_names)`` returns statistics for those hook names
    on the (possibly already pruned) model; ``evaluate(model)`` returns flat metrics such as
    ``forget_top1`` and ``retain_top1``. Iterative mode re-collects after every step; one-shot mode
    collects once and prunes ``frac·(i+1)`` at step ``i``. The masks stay installed:
    ``result.handle.remove()`` restores the model.
    """
    from tqdm.auto import tqdm

    fracs = config.fracs()
    layer_ids = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    names = {s: model.hook_names(s, layer_ids) for s in fracs}
    all_names = [n for ns in names.values() for n in ns]
    masks = NeuronMasks(model)
    pruned = {n: torch.zeros(model.cfg.n_neurons(site_of(n)), dtype=torch.bool) for n in all_names}
    rows = [{"step": 0, **{f"frac_{s}": 0.0 for s in fracs}, **evaluate(model), "seconds": 0.0}]
    scores: dict[str, torch.Tensor] = {}
    for step in tqdm(range(1, config.n_steps + 1), desc="pruning", disable=not progress):
        t0 = time.time()
        if config.iterative or step == 1:
            forget, retain = collect(model, "forget", all_names), collect(model, "retain", all_names)
            scores = score_neurons(forget, retain, config.score, config.eps, seed=config.seed + step)
        for site, frac in fracs.items():
            site_scores = {n: scores[n] for n in names[site]}
            heads = model.cfg.n_heads if config.head_level and site == "attn.pre_out" else None
            if config.iterative:
                new = select_top(site_scores, frac, pruned, heads)
            else:  # one shot: the top frac·step of the same scores (a superset of the last step's)
                new = select_top(site_scores, min(1.0, frac * step), None, heads)
            for n in names[site]:
                pruned[n] |= new[n]
        masks.update({n: ~pruned[n] for n in all_names})
        row = {"step": step, **{f"frac_{s}": float(torch.cat([pruned[n] for n in names[s]]).double().mean())
                                for s in fracs}}
        rows.append({**row, **evaluate(model), "seconds": time.time() - t0})
    return PruningResult(pd.DataFrame(rows), {n: ~p for n, p in pruned.items()}, scores, config, masks)


def delete_neurons(model: HookedModel, keep: Mapping[str, torch.Tensor]) -> Callable[[], None]:
    """Zero the output weights of pruned neurons (``keep`` False); returns a function that restores them.

    A neuron's only path to the residual stream is its column of the down / output projection,
    so this is exactly the zero mask, without hooks.
    """
    saved: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    with torch.no_grad():
        for name, k in keep.items():
            layer, site = model.parse(name)
            if site not in NEURON_SITES:
                raise ValueError(f"Can only delete neurons at {NEURON_SITES}, not {site!r}.")
            w = model.weights(layer)["W_O" if site == "attn.pre_out" else "W_out"]  # [n, ..., d_model] view
            w = w.reshape(-1, w.shape[-1]) if site == "attn.pre_out" else w
            idx = (~k.flatten().bool()).nonzero().flatten()
            saved.append((w, idx, w[idx].clone()))
            w[idx] = 0

    def restore() -> None:
        with torch.no_grad():
            for w, idx, old in saved:
                w[idx] = old

    return restore
