"""Selective pruning (Pochinkov & Schoots 2023): remove neurons far more important for a forget set.

Importance of a neuron is a statistic ``I`` of its activations; the score is
``I(forget) / (I(retain) + ε)``. Neurons are FF neurons (``mlp.pre_out``) and attention neurons
(``attn.pre_out``, one per head × d_head); each kind is selected by a **global** top fraction
across all layers. Pruning is a persistent zero mask (:class:`~.interventions.NeuronMasks`);
:func:`delete_neurons` zeroes the matching weights instead, with identical outputs.

Differences from the reference library (the authors' ``taker``), on purpose: ``std`` is the
standard deviation (the reference's ``std`` held the variance, so its ``std`` score is a variance
ratio), ``rms`` is ``sqrt(mean x²)`` (the reference computed ``sqrt(var² + mean²)``), and whole heads
are ranked by the mean of their neurons' scores (the reference's default head score is the median
over ``d_head``). ``taker_compatible=True`` (in :func:`score_neurons`, :func:`head_scores` and
:class:`PruningConfig`) reproduces the reference's formulas, so its selections can be compared with
the corrected ones.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping, get_args

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
ScoreName = Literal["abs", "freq", "sqrt", "rms", "std", "mean_diff", "random"]
SCORE_NAMES: tuple[str, ...] = get_args(ScoreName)


def variance(s: Any) -> torch.Tensor:
    """The sample variance of statistics ``s`` (its ``var``, or ``std²`` when it has none)."""
    var = getattr(s, "var", None)
    return var if var is not None else s.std.square()


def _taker_rms(s: Any) -> torch.Tensor:
    return (variance(s).square() + s.mean.square()).sqrt()


TAKER_SCORES: dict[str, Callable[[Any, Any, float], torch.Tensor]] = {
    "std": lambda forget, retain, eps: variance(forget) / (variance(retain) + eps),
    "rms": lambda forget, retain, eps: _taker_rms(forget) / (_taker_rms(retain) + eps),
}
"""The reference library's formulas where they differ from :data:`SCORES`: its ``std`` statistic held
the variance (so the score is a variance ratio) and its ``rms`` was ``sqrt(var² + mean²)``."""


def score_neurons(
    forget: Stats, retain: Stats, score: str = "abs", eps: Mapping[str, float] | None = None, seed: int = 0,
    taker_compatible: bool = False,
) -> dict[str, torch.Tensor]:
    """Per-neuron scores ``{hook name: [n_neurons] float64}`` from forget and retain statistics.

    ``taker_compatible``: use the reference library's formulas (:data:`TAKER_SCORES`) for ``std``
    and ``rms``; the other scores are the same either way.

    Example:
        >>> model = pp.load_model("tiny-llama")
        >>> forget = pp.collect_stats(model, [model.to_tokens("def f(x): return x + 1")], "mlp.pre_out", progress=False)
        >>> retain = pp.collect_stats(model, [model.to_tokens("Bees make honey in hives.")], "mlp.pre_out", progress=False)
        >>> scores = pp.score_neurons(forget, retain, score="abs")  # mean|x| on forget / (mean|x| on retain + eps)
        >>> list(scores), scores["blocks.0.mlp.pre_out"].shape
        (['blocks.0.mlp.pre_out', 'blocks.1.mlp.pre_out'], torch.Size([48]))
    """
    if score not in SCORE_NAMES:
        raise ValueError(f"Unknown score {score!r}. Valid scores: {', '.join(SCORE_NAMES)}.")
    missing = sorted(set(forget) ^ set(retain))
    if missing:
        raise ValueError(f"Forget and retain statistics cover different sites: {missing[:4]}.")
    eps = {**DEFAULT_EPS, **(eps or {})}
    gen = torch.Generator().manual_seed(seed)
    fn = TAKER_SCORES.get(score) if taker_compatible else None
    fn = fn or SCORES.get(score)
    out = {}
    for name in sorted(forget, key=_site_order):
        site = site_of(name)
        if fn is None:  # random
            out[name] = torch.rand(forget[name].mean.numel(), generator=gen, dtype=torch.float64)
        else:
            out[name] = fn(forget[name], retain[name], eps.get(site, 1e-3)).double().flatten()
    return out


HeadAggregate = Literal["mean", "median"]
HEAD_AGGREGATES: tuple[str, ...] = get_args(HeadAggregate)


def head_scores(scores: Mapping[str, torch.Tensor], heads: int, agg: str = "mean") -> dict[str, torch.Tensor]:
    """Each neuron's score replaced by its head's aggregate over ``d_head`` (``[n_neurons]`` per site).

    ``agg="mean"`` is this package's head score; ``"median"`` is the reference library's default
    (torch's median: the lower of the two middle values when ``d_head`` is even). Passing the result
    to :func:`select_top` with ``heads`` ranks whole heads by that aggregate.
    """
    if agg not in HEAD_AGGREGATES:
        raise ValueError(f"Unknown head aggregate {agg!r}. Valid: {', '.join(HEAD_AGGREGATES)}.")
    out = {}
    for name, s in scores.items():
        per = s.view(heads, -1)
        value = per.mean(-1) if agg == "mean" else per.median(-1).values
        out[name] = value.repeat_interleave(per.shape[1])
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
    :func:`selection_table` lists the chosen neurons as a table.

    Example:
        >>> scores = {"blocks.0.mlp.pre_out": torch.tensor([0.1, 0.9, 0.3]),
        ...           "blocks.1.mlp.pre_out": torch.tensor([0.8, 0.2, 0.4])}
        >>> chosen = pp.select_top(scores, frac=0.34)  # int(0.34 * 6) = 2 neurons over both layers
        >>> {name: m.tolist() for name, m in chosen.items()}
        {'blocks.0.mlp.pre_out': [False, True, False], 'blocks.1.mlp.pre_out': [True, False, False]}
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


@dataclass(frozen=True)
class PruningConfig:
    """Knobs of one selective-pruning run (frozen; ``asdict`` feeds caches and chapter tables).

    ``ff_frac``/``attn_frac``: fraction of all FF / attention neurons pruned at each step (0: that
    kind is not pruned); ``n_steps``: pruning steps; ``score``: the importance statistic
    (:data:`SCORE_NAMES`); ``iterative``: re-collect statistics on the pruned model before each step
    (False: collect once and prune ``frac·step`` at step ``step``); ``head_level``: prune whole
    attention heads; ``ff_eps``/``attn_eps``: ε of the score ratio; ``seed``: of the random score;
    ``taker_compatible``: the reference library's ``std``/``rms`` formulas and median head score.
    """

    ff_frac: float = 0.02
    attn_frac: float = 0.0
    n_steps: int = 5
    score: ScoreName = "abs"
    iterative: bool = True
    head_level: bool = False
    ff_eps: float = DEFAULT_EPS["mlp.pre_out"]
    attn_eps: float = DEFAULT_EPS["attn.pre_out"]
    seed: int = 0
    taker_compatible: bool = False

    def __post_init__(self) -> None:
        if self.score not in SCORE_NAMES:
            raise ValueError(f"Unknown score {self.score!r}. Valid scores: {', '.join(SCORE_NAMES)}.")
        for name in ("ff_frac", "attn_frac"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}.")
        if self.ff_frac == 0 and self.attn_frac == 0:
            raise ValueError("Nothing to prune: ff_frac and attn_frac are both 0 (set at least one in (0, 1]).")
        if not isinstance(self.n_steps, int) or isinstance(self.n_steps, bool) or self.n_steps < 1:
            raise ValueError(f"n_steps must be an integer >= 1, got {self.n_steps!r}.")
        for name in ("ff_eps", "attn_eps"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}.")
        for name in ("iterative", "head_level", "taker_compatible"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}.")

    @property
    def eps(self) -> dict[str, float]:
        """ε of the score ratio per site."""
        return {"mlp.pre_out": self.ff_eps, "attn.pre_out": self.attn_eps}

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
            scores = score_neurons(forget, retain, config.score, config.eps, seed=config.seed + step,
                                   taker_compatible=config.taker_compatible)
        for site, frac in fracs.items():
            site_scores = {n: scores[n] for n in names[site]}
            heads = model.cfg.n_heads if config.head_level and site == "attn.pre_out" else None
            if heads:  # rank heads by the mean (reference library: the median) of their neurons' scores
                site_scores = head_scores(site_scores, heads, "median" if config.taker_compatible else "mean")
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

    Example:
        >>> model = pp.load_model("tiny-llama")
        >>> keep = {"blocks.1.mlp.pre_out": torch.arange(48) >= 4}  # delete MLP neurons 0..3 of layer 1
        >>> with pp.NeuronMasks(model).update(keep):
        ...     masked = model("Bees make honey.")
        >>> restore = pp.delete_neurons(model, keep)
        >>> torch.allclose(model("Bees make honey."), masked, atol=1e-6)
        True
        >>> restore()
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


# ----------------------------------------------------------------------------- selections as tables
SELECTION_COLUMNS: tuple[str, ...] = ("site", "layer", "neuron", "score")
"""Columns of :func:`selection_table`."""


def selection_table(
    scores: Mapping[str, torch.Tensor], selected: Mapping[str, torch.Tensor] | None = None
) -> pd.DataFrame:
    """The selected neurons as a tidy table: ``site``, ``layer``, ``neuron``, ``score``, best score first.

    ``scores``: ``{hook name: [n_neurons]}`` (:func:`score_neurons`); ``selected``: boolean masks of
    the same shapes, True for a selected neuron (:func:`select_top`); None lists every scored neuron.
    Attention neurons are numbered ``head * d_head + i``. Ties keep site, layer and neuron order.
    :func:`selection_masks` turns the table back into masks; :func:`prune` takes either.

    Example:
        >>> model = pp.load_model("tiny-llama")
        >>> forget = pp.collect_stats(model, [model.to_tokens("def f(x): return x + 1")], "mlp.pre_out", progress=False)
        >>> retain = pp.collect_stats(model, [model.to_tokens("Bees make honey in hives.")], "mlp.pre_out", progress=False)
        >>> scores = pp.score_neurons(forget, retain)
        >>> table = pp.selection_table(scores, pp.select_top(scores, frac=0.05))
        >>> table.columns.tolist(), len(table)  # 5 % of 2 layers x 48 neurons
        (['site', 'layer', 'neuron', 'score'], 4)
        >>> bool(table.score.is_monotonic_decreasing)
        True
    """
    frames = []
    for name, s in scores.items():
        parsed = parse_name(name)
        if parsed is None:
            raise ValueError(f"Scores are keyed by hook names 'blocks.{{i}}.{{site}}', got {name!r}.")
        s = torch.as_tensor(s).detach().flatten().cpu()
        if selected is None:
            idx = torch.arange(s.numel())
        else:
            if name not in selected:
                raise ValueError(f"No selection mask for {name!r}: pass the masks that select_top returned.")
            m = torch.as_tensor(selected[name]).flatten().cpu()
            if m.numel() != s.numel():
                raise ValueError(f"Mask for {name} has {m.numel()} entries; its scores have {s.numel()}.")
            idx = m.bool().nonzero().flatten()
        frames.append(pd.DataFrame({"site": parsed[1], "layer": parsed[0], "neuron": idx.numpy(),
                                    "score": s[idx].double().numpy()}))
    if selected is not None and set(selected) - set(scores):
        raise ValueError(f"Masks for sites without scores: {sorted(set(selected) - set(scores))[:4]}.")
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(SELECTION_COLUMNS, (str, int, int, float))})
    table = pd.concat(frames, ignore_index=True).astype({"layer": int, "neuron": int})
    table = table.sort_values(["site", "layer", "neuron"], kind="stable")
    return table.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def selection_masks(selection: pd.DataFrame, model: HookedModel) -> dict[str, torch.Tensor]:
    """The inverse of :func:`selection_table`: ``{hook name: [n_neurons] bool}``, True where selected.

    One mask per (layer, site) that appears in ``selection`` (a table with at least ``site``,
    ``layer`` and ``neuron``), sized by ``model``; neurons out of range raise.

    Example:
        >>> model = pp.load_model("tiny-llama")
        >>> table = pd.DataFrame({"site": ["mlp.pre_out"] * 2, "layer": [1, 1], "neuron": [5, 7]})
        >>> masks = pp.selection_masks(table, model)
        >>> list(masks), masks["blocks.1.mlp.pre_out"].nonzero().flatten().tolist()
        (['blocks.1.mlp.pre_out'], [5, 7])
    """
    missing = [c for c in SELECTION_COLUMNS[:3] if c not in selection.columns]
    if missing:
        raise ValueError(f"A selection table needs the columns {', '.join(SELECTION_COLUMNS[:3])}; "
                         f"missing {', '.join(missing)}.")
    masks: dict[str, torch.Tensor] = {}
    for (site, layer), rows in selection.groupby(["site", "layer"], sort=False):
        name = model.hook_names(str(site), [int(layer)])[0]  # raises on an unknown site or layer
        n = model.cfg.n_neurons(str(site))
        idx = torch.as_tensor(rows["neuron"].tolist(), dtype=torch.long)
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise ValueError(f"Neuron index out of range for {name}: it has neurons 0..{n - 1}.")
        masks[name] = torch.zeros(n, dtype=torch.bool)
        masks[name][idx] = True
    return masks


def prune(
    model: HookedModel,
    selection: pd.DataFrame | Mapping[str, torch.Tensor],
    values: Mapping[str, torch.Tensor | float] | None = None,
) -> NeuronMasks:
    """Prune the selected neurons: install removable zero masks and return them (:class:`NeuronMasks`).

    ``selection``: a :func:`selection_table` or masks ``{hook name: bool}`` that are True for the
    neurons to remove (what :func:`select_top` returns). ``values``: per-site replacement values
    instead of zero (e.g. the neurons' means). The model stays pruned until ``.remove()``; as a
    context manager the masks come off at the end of the ``with`` block.

    Example:
        >>> model = pp.load_model("tiny-llama")
        >>> table = pd.DataFrame({"site": ["mlp.pre_out"] * 3, "layer": [0, 0, 1], "neuron": [1, 2, 3]})
        >>> before = model("Bees make honey.")
        >>> with pp.prune(model, table) as masks:
        ...     print(masks.n_masked())
        ...     changed = not torch.equal(model("Bees make honey."), before)
        {'blocks.0.mlp.pre_out': 2, 'blocks.1.mlp.pre_out': 1}
        >>> changed, torch.equal(model("Bees make honey."), before)
        (True, True)
    """
    chosen = selection_masks(selection, model) if isinstance(selection, pd.DataFrame) else dict(selection)
    keep = {}
    for name, m in chosen.items():
        m = torch.as_tensor(m)
        if m.dtype != torch.bool:
            raise TypeError(f"Selection mask for {name} must be boolean (True = prune), got {m.dtype}.")
        keep[name] = ~m.flatten()
    return NeuronMasks(model).update(keep, values)
