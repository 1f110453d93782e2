"""Unlearning by selective pruning (Pochinkov & Schoots 2023), as chapter-level experiments.

Built on :mod:`paragraph_planning.core.pruning`. A *pair* holds the data of one forget/retain task:

* :func:`text_pair` — two text tasks for a language model, tokenised into collection batches
  (train split) and evaluation batches (test split). A task is a corpus name with an optional
  label filter: ``"python-code"``, ``"wiki-en:Mathematics"`` (one wiki topic), ``"wiki-en:!Mathematics"``
  (every other topic), ``"bbc:sport,tech"``, ``"shakespeare:title:Hamlet"`` (see :func:`parse_task`).
  Forget and retain documents must not overlap.
* :func:`image_pair` — one image class to forget, the other classes to retain (Fashion-MNIST).

Experiments take ``(model, pair)`` and leave the model unchanged (masks are removed at the end);
each result is cached on disk (:func:`paragraph_planning.cache.cached`) under the model's name
and the pair's and experiment's parameters:

* :func:`neuron_moments` — forget and retain activation statistics of every neuron;
* :func:`run_unlearning` — the pruning loop; its ``history`` has one row per step;
* :func:`random_baseline` — random neurons pruned at given fractions;
* :func:`compare_scores` — score functions × neuron kinds at one fixed fraction (paper's exp2).

Summaries: :func:`drop_summary` (where forget accuracy reached a target, and the drop ratio
there), :func:`add_drops`, :func:`score_frame`, :func:`class_table`; charts: :func:`curve_chart`.
"""
from __future__ import annotations

import inspect
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..core.architectures import NEURON_SITES, layer_of, site_of
from ..core.hooks import HookedModel
from ..core.interventions import NeuronMasks
from ..core.pruning import PruningConfig, PruningResult, run_pruning, score_neurons, select_top
from ..data.corpora import line_pieces
from ..data.images import image_positions

SITE_LABELS: dict[str, str] = {"mlp.pre_out": "FF", "attn.pre_out": "attention"}
"""Short names of the neuron sites used in tables."""
LM_METRICS: tuple[str, ...] = ("loss", "top1", "top10", "skip50_top1")
"""Language-model metrics kept per side (``forget_top1``, ``retain_loss``, ...)."""

Collect = Callable[[HookedModel, str, list], Mapping[str, Any]]
Evaluate = Callable[[HookedModel], Mapping[str, float]]


# ============================================================================ statistics
@dataclass
class Moments:
    """Per-neuron statistics that the scores use (float64 ``[n_neurons]``), small enough to cache."""

    count: int
    mean: torch.Tensor
    std: torch.Tensor
    mean_abs: torch.Tensor
    mean_sqrt_abs: torch.Tensor
    rms: torch.Tensor
    frac_pos: torch.Tensor

    @classmethod
    def from_stats(cls, s: Any) -> "Moments":
        """From a :class:`~paragraph_planning.core.statistics.NeuronStats` (or anything with these fields)."""
        return cls(int(s.count), *(getattr(s, k).detach().double().cpu() for k in
                                   ("mean", "std", "mean_abs", "mean_sqrt_abs", "rms", "frac_pos")))


# ============================================================================ text tasks
@dataclass
class TextPair:
    """Token batches ``[n_batches, batch, seq]`` of a forget and a retain text task.

    ``*_collect`` come from the train split (statistics), ``*_eval`` from the test split; ``*_skip``
    are the 50 most common targets of each evaluation set (left out by the ``skip50`` metrics).
    """

    forget: str
    retain: str
    forget_collect: torch.Tensor
    retain_collect: torch.Tensor
    forget_eval: torch.Tensor
    retain_eval: torch.Tensor
    forget_skip: torch.Tensor
    retain_skip: torch.Tensor
    params: dict[str, Any] = field(default_factory=dict)


def pieces(texts: Sequence[str], max_chars: int) -> list[str]:
    """Every text cut at line ends into pieces of at most about ``max_chars`` characters (:func:`~.data.line_pieces`)."""
    return [p for t in texts for p in line_pieces(t, max_chars)]


def text_pair(
    tokenizer: Any, forget: str, retain: str, collect_tokens: int = 16_384, eval_tokens: int = 8_192,
    seq_len: int = 256, batch_size: int = 8, seed: int = 0, piece_chars: int | None = 1000,
) -> TextPair:
    """Collection (train split) and evaluation (test split) batches of two disjoint text tasks.

    ``piece_chars``: documents are cut into pieces of about this many characters (see :func:`pieces`),
    which are shuffled with ``seed`` and joined with the eos token; None uses whole documents.
    """
    from datasets import Dataset

    from ..core.evaluation import most_common_tokens
    from ..data.corpora import token_batches
    from ..data.tasks import Task, check_disjoint

    tasks = {"forget": Task.parse(forget), "retain": Task.parse(retain)}
    check_disjoint(tasks["forget"], tasks["retain"])
    out: dict[str, torch.Tensor] = {}
    for side, task in tasks.items():
        for part, split, n in (("collect", "train", collect_tokens), ("eval", "test", eval_tokens)):
            docs = task.documents(split)
            if piece_chars:
                docs = Dataset.from_dict({"text": pieces(docs["text"], piece_chars)})
            out[f"{side}_{part}"] = token_batches(docs, tokenizer, n, seq_len, min(batch_size, -(-n // seq_len)),
                                                  seed=seed)
        out[f"{side}_skip"] = most_common_tokens(out[f"{side}_eval"])
    params = dict(forget=forget, retain=retain, collect_tokens=collect_tokens, eval_tokens=eval_tokens,
                  seq_len=seq_len, batch_size=batch_size, seed=seed, piece_chars=piece_chars)
    return TextPair(forget, retain, **out, params=params)


def _sites_of(names: Sequence[str]) -> list[str]:
    return sorted({site_of(n) for n in names})


def _head_kwargs(model: HookedModel) -> dict[str, Any]:
    """Ask a causal LM for the last position's logits only (collection never reads logits)."""
    if model.cfg.kind == "causal-lm" and "logits_to_keep" in inspect.signature(model.hf.forward).parameters:
        return {"logits_to_keep": 1}
    return {}


def _collect_batches(model: HookedModel, batches: Any) -> list[Any]:
    extra = _head_kwargs(model)
    if not extra:
        return list(batches)
    return [{"input_ids": x, **extra} for x in batches]


def collect_fn(pair: "TextPair | ImagePair", first: Mapping[str, Mapping[str, Moments]] | None = None) -> Collect:
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
        layers = sorted({layer_of(n) for n in names})
        positions = image_positions(pair.positions) if isinstance(pair, ImagePair) else None
        stats = collect_stats(model, _collect_batches(model, getattr(pair, f"{which}_collect")),
                              sites=_sites_of(names), layers=layers, bins=1, reservoir=0, progress=False,
                              positions=positions)
        return {n: Moments.from_stats(stats[n]) for n in names}

    return collect


def evaluate_fn(pair: "TextPair | ImagePair") -> Evaluate:
    """``evaluate(model) -> {"forget_top1": ..., "retain_top1": ..., ...}`` for either kind of pair."""
    if isinstance(pair, ImagePair):
        return _evaluate_images_fn(pair)
    from ..core.evaluation import evaluate_lm

    def evaluate(model: HookedModel) -> dict[str, float]:
        out = {}
        for side in ("forget", "retain"):
            r = evaluate_lm(model, getattr(pair, f"{side}_eval"), skip_ids=getattr(pair, f"{side}_skip"))
            out.update({f"{side}_{k}": float(r[k]) for k in LM_METRICS})
        return out

    return evaluate


# ============================================================================ image tasks
@dataclass
class ImagePair:
    """Pixel batches of one class to forget and the others to retain, plus an evaluation set.

    ``classes``: the classes the model predicts (a prefix of the data set's classes);
    ``forget_collect``/``retain_collect``: lists of ``[batch, channels, h, w]`` from the train split;
    ``eval_set``: test images of ``classes`` (a ``datasets.Dataset``), read with ``processor``;
    ``positions``: where statistics are collected, ``"cls"`` (the class token, position 0) or ``"all"``.
    """

    forget: str
    classes: tuple[str, ...]
    forget_collect: list[torch.Tensor]
    retain_collect: list[torch.Tensor]
    eval_set: Any
    processor: Any
    positions: str = "cls"
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def retain(self) -> str:
        """Label of the retain side: every other class."""
        return f"all but {self.forget}"


def image_pair(
    model: HookedModel, forget_class: str = "Bag", dataset: str = "fashion-mnist", collect_images: int = 1000,
    eval_per_class: int | None = None, batch_size: int = 250, seed: int = 0, positions: str = "cls",
) -> ImagePair:
    """Forget one class of an image classifier: train images for statistics, test images to evaluate.

    The retain side draws ``collect_images`` train images from the other classes. A model with
    fewer outputs than the data set has classes (a tiny test model) keeps the first classes only.
    ``eval_per_class``: test images per class (None: all). ``positions="cls"`` collects the neuron
    statistics at the class token only, the one position a ViT classifier reads its decision from;
    ``"all"`` uses every token (CLS and patches), as for language models.
    """
    image_positions(positions)  # raises on an unknown policy, naming the valid ones
    from ..data.corpora import load_corpus
    from ..data.images import images_array, labels_array, pixel_processor

    train, test = load_corpus(dataset, "train"), load_corpus(dataset, "test")
    names = tuple(train.features["label"].names)
    n_out = int(getattr(model.hf.config, "num_labels", len(names)))
    classes = names[:min(n_out, len(names))]
    if forget_class not in classes:
        raise ValueError(f"Unknown forget_class {forget_class!r} for this model. Classes: {', '.join(classes)}.")
    target = classes.index(forget_class)
    processor = pixel_processor(model)
    gen = torch.Generator().manual_seed(seed)
    y = labels_array(train)
    images = images_array(train)
    sides = {}
    for side, keep in (("forget", y == target), ("retain", (y != target) & (y < len(classes)))):
        idx = np.flatnonzero(keep)
        idx = idx[torch.randperm(len(idx), generator=gen).numpy()[:collect_images]]
        pixels = processor(images[np.sort(idx)])
        sides[f"{side}_collect"] = list(pixels.split(batch_size))
    y_test = labels_array(test)
    keep_test = np.flatnonzero(y_test < len(classes))
    if eval_per_class is not None:
        keep_test = np.concatenate([np.flatnonzero(y_test == c)[:eval_per_class] for c in range(len(classes))])
    params = dict(dataset=dataset, forget_class=forget_class, classes=list(classes), collect_images=collect_images,
                  eval_per_class=eval_per_class, batch_size=batch_size, seed=seed, processor=repr(processor),
                  positions=positions)
    return ImagePair(forget_class, classes, eval_set=test.select(np.sort(keep_test)), processor=processor,
                     positions=positions, params=params, **sides)


def _evaluate_images_fn(pair: ImagePair) -> Evaluate:
    from ..data.images import evaluate_images

    def evaluate(model: HookedModel) -> dict[str, float]:
        per = evaluate_images(model, pair.eval_set, processor=pair.processor)["per_class"].loc[list(pair.classes)]
        rest = per.drop(index=pair.forget)
        out = {"forget_top1": float(per.loc[pair.forget, "top1"]), "forget_loss": float(per.loc[pair.forget, "loss"]),
               "retain_top1": float((rest.top1 * rest.n).sum() / rest.n.sum()),
               "retain_loss": float((rest.loss * rest.n).sum() / rest.n.sum())}
        out.update({f"top1[{c}]": float(per.loc[c, "top1"]) for c in pair.classes})
        return out

    return evaluate


# ============================================================================ cached experiments
def _cached(kind: str, model: HookedModel, pair: Any, params: Mapping[str, Any], compute: Callable[[], Any],
            cache: bool) -> Any:
    if not cache:
        return compute()
    from ..cache import cached

    return cached(kind, {"pair": pair.params, **params}, compute, model=model)


def neuron_moments(model: HookedModel, pair: TextPair | ImagePair, sites: Sequence[str] = NEURON_SITES,
                   cache: bool = True) -> dict[str, dict[str, Moments]]:
    """``{"forget": {name: Moments}, "retain": {...}}`` on the unpruned model, every layer of ``sites``."""
    names = model.hook_names(list(sites))

    def compute() -> dict[str, dict[str, Moments]]:
        collect = collect_fn(pair)
        return {side: collect(model, side, names) for side in ("forget", "retain")}

    return _cached("unlearning-moments", model, pair, {"sites": sorted(sites)}, compute, cache)


def run_unlearning(
    model: HookedModel, pair: TextPair | ImagePair, config: PruningConfig,
    moments: Mapping[str, Mapping[str, Moments]] | None = None, cache: bool = True, progress: bool = False,
) -> PruningResult:
    """Selective pruning of ``pair.forget`` against ``pair.retain``; the model is left unpruned.

    ``moments`` (from :func:`neuron_moments`) replace the first collection. The result's
    ``masks`` can be re-installed with ``NeuronMasks(model).update(result.masks)``.
    """
    def compute() -> dict[str, Any]:
        res = run_pruning(model, collect_fn(pair, moments), evaluate_fn(pair), config, progress=progress)
        res.handle.remove()
        return {"history": res.history, "masks": res.masks, "scores": res.scores, "config": asdict(config)}

    blob = _cached("unlearning-run", model, pair, {"config": asdict(config)}, compute, cache)
    return PruningResult(blob["history"], blob["masks"], blob["scores"], PruningConfig(**blob["config"]))


def random_masks(model: HookedModel, fracs: Mapping[str, float], seed: int = 0) -> dict[str, torch.Tensor]:
    """Keep-masks pruning ``round(frac · N)`` uniformly random neurons of each site (over all layers)."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for site, frac in fracs.items():
        if not 0 <= frac <= 1:
            raise ValueError(f"Fraction for {site} must be in [0, 1], got {frac}.")
        names = model.hook_names(site)
        n = model.cfg.n_neurons(site)
        k = round(frac * n * len(names))
        pruned = torch.zeros(n * len(names), dtype=torch.bool)
        pruned[torch.randperm(n * len(names), generator=gen)[:k]] = True
        out.update({name: ~part for name, part in zip(names, pruned.split(n))})
    return out


def random_baseline(model: HookedModel, pair: TextPair | ImagePair, fracs: Mapping[str, float], seed: int = 0,
                    cache: bool = True) -> dict[str, float]:
    """Metrics with random neurons pruned at ``fracs`` (``{site: fraction}``), plus the fractions pruned."""
    fracs = {s: float(f) for s, f in fracs.items() if f > 0}

    def compute() -> dict[str, float]:
        keep = random_masks(model, fracs, seed)
        with NeuronMasks(model) as masks:
            masks.update(keep)
            metrics = dict(evaluate_fn(pair)(model))
        for site in fracs:
            k = torch.cat([keep[n] for n in model.hook_names(site)])
            metrics[f"frac_{site}"] = float((~k).double().mean())
        return metrics

    return _cached("unlearning-random", model, pair, {"fracs": fracs, "seed": seed}, compute, cache)


def compare_scores(
    model: HookedModel, pair: TextPair | ImagePair, moments: Mapping[str, Mapping[str, Moments]], frac: float,
    scores: Sequence[str] = ("abs", "freq", "rms", "std", "random"), sites: Sequence[str] = NEURON_SITES,
    seed: int = 0, cache: bool = True,
) -> pd.DataFrame:
    """Prune ``frac`` of one neuron kind, chosen by each score, in one shot; one row per (score, site).

    Columns: ``score``, ``neurons`` (FF / attention), ``site``, ``frac``, the metrics, ``seconds``.
    """
    def compute() -> pd.DataFrame:
        evaluate, rows = evaluate_fn(pair), []
        for site in sites:
            names = model.hook_names(site)
            f = {n: moments["forget"][n] for n in names}
            r = {n: moments["retain"][n] for n in names}
            for score in scores:
                t0 = time.perf_counter()
                sel = select_top(score_neurons(f, r, score, seed=seed), frac)
                with NeuronMasks(model) as masks:
                    masks.update({n: ~sel[n] for n in names})
                    metrics = evaluate(model)
                rows.append({"score": score, "neurons": SITE_LABELS.get(site, site), "site": site,
                             "frac": float(torch.cat(list(sel.values())).double().mean()), **metrics,
                             "seconds": time.perf_counter() - t0})
        return pd.DataFrame(rows)

    return _cached("unlearning-compare", model, pair,
                   {"frac": frac, "scores": list(scores), "sites": list(sites), "seed": seed}, compute, cache)


# ============================================================================ summaries
def _drop(base: float, value: float) -> float:
    return (base - value) / base if base else math.nan


def _ratio(forget_drop: float, retain_drop: float) -> float:
    if math.isnan(forget_drop) or math.isnan(retain_drop):
        return math.nan
    if retain_drop <= 0:
        return math.inf if forget_drop > 0 else math.nan
    return forget_drop / retain_drop


def add_drops(df: pd.DataFrame, base: Mapping[str, float], metric: str = "top1") -> pd.DataFrame:
    """Add ``forget_drop``/``retain_drop`` (relative to ``base``, e.g. the unpruned row) and their ``ratio``.

    A drop is ``(base − value) / base``: 0.5 means the metric halved. ``ratio`` is
    ``forget_drop / retain_drop`` (inf when retain did not drop at all).
    """
    out = df.copy()
    for side in ("forget", "retain"):
        out[f"{side}_drop"] = [_drop(base[f"{side}_{metric}"], v) for v in out[f"{side}_{metric}"]]
    out["ratio"] = [_ratio(f, r) for f, r in zip(out.forget_drop, out.retain_drop)]
    return out


def drop_summary(history: pd.DataFrame, metric: str = "top1", target: float | None = None,
                 fraction: float = 0.5) -> dict[str, Any]:
    """Where the forget metric first reached ``target`` (default: ``(1 − fraction)`` × its unpruned value).

    Returns ``reached`` (bool), ``step``, the pruned fractions ``frac_*`` there, the unpruned and
    reached values of both sides, their relative drops and ``ratio`` = forget drop / retain drop.
    If the target is never reached (or is not below the unpruned value), the numbers are those of the
    last step and ``reached`` is False.
    """
    h = history.sort_values("step").reset_index(drop=True)
    f0, r0 = float(h[f"forget_{metric}"].iloc[0]), float(h[f"retain_{metric}"].iloc[0])
    target = f0 * (1 - fraction) if target is None else float(target)
    hits = h.index[(h[f"forget_{metric}"] <= target) & (h.step > 0)] if target < f0 else h.index[:0]
    row = h.loc[hits[0]] if len(hits) else h.iloc[-1]
    f, r = float(row[f"forget_{metric}"]), float(row[f"retain_{metric}"])
    fd, rd = _drop(f0, f), _drop(r0, r)
    return {"metric": metric, "target": target, "reached": bool(len(hits)), "step": int(row.step),
            **{c: float(row[c]) for c in h.columns if c.startswith("frac_")},
            "forget_base": f0, "forget": f, "retain_base": r0, "retain": r,
            "forget_drop": fd, "retain_drop": rd, "ratio": _ratio(fd, rd)}


def score_frame(moments: Mapping[str, Mapping[str, Moments]], model: HookedModel, score: str = "abs",
                sites: Sequence[str] = NEURON_SITES, seed: int = 0) -> pd.DataFrame:
    """One row per neuron: ``site``, ``neurons`` (FF/attention), ``layer``, ``neuron``, ``head``, ``score``,
    ``forget_mean_abs``, ``retain_mean_abs``, and ``rank`` (1 = highest score within its site)."""
    frames = []
    for site in sites:
        names = [n for n in model.hook_names(site) if n in moments["forget"]]
        if not names:
            continue
        f = {n: moments["forget"][n] for n in names}
        r = {n: moments["retain"][n] for n in names}
        s = score_neurons(f, r, score, seed=seed)
        n = model.cfg.n_neurons(site)
        df = pd.DataFrame({
            "site": site, "neurons": SITE_LABELS.get(site, site),
            "layer": np.repeat([layer_of(x) for x in names], n),
            "neuron": np.tile(np.arange(n), len(names)),
            "score": torch.cat([s[x] for x in names]).numpy(),
            "forget_mean_abs": torch.cat([f[x].mean_abs for x in names]).numpy(),
            "retain_mean_abs": torch.cat([r[x].mean_abs for x in names]).numpy(),
        })
        if site == "attn.pre_out":
            df["head"] = df.neuron // model.cfg.d_head
        df["rank"] = df.score.rank(ascending=False, method="first").astype(int)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def class_table(history: pd.DataFrame, step: int, classes: Sequence[str], forget: str) -> pd.DataFrame:
    """Per-class top-1 before pruning and at ``step``, and the share kept (``after / before``)."""
    h = history.set_index("step")
    rows = [{"class": c, "forgotten": c == forget, "before": h.loc[0, f"top1[{c}]"],
             "after": h.loc[step, f"top1[{c}]"]} for c in classes]
    df = pd.DataFrame(rows)
    df["kept"] = df.after / df.before.where(df.before > 0)
    return df


def long_history(history: pd.DataFrame, metrics: Sequence[str] = ("top1", "loss")) -> pd.DataFrame:
    """Tidy history: ``step``, ``frac`` (pruned fraction, first site), ``side``, ``metric``, ``value``."""
    frac_cols = [c for c in history.columns if c.startswith("frac_")]
    rows = []
    for _, row in history.iterrows():
        for m in metrics:
            for side in ("forget", "retain"):
                if f"{side}_{m}" in history:
                    rows.append({"step": int(row.step), "frac": float(row[frac_cols[0]]) if frac_cols else math.nan,
                                 "side": side, "metric": m, "value": float(row[f"{side}_{m}"])})
    return pd.DataFrame(rows)


# ============================================================================ charts
def curve_chart(history: pd.DataFrame, metrics: Sequence[str] = ("top1", "loss"), title: str = "",
                width: int = 300) -> Any:
    """Forget vs retain metrics per pruning step, one panel per metric; hover a step to read its values."""
    import altair as alt

    df = long_history(history, metrics)
    hover = alt.selection_point(nearest=True, on="pointerover", fields=["step"], empty=False, clear="pointerout")
    base = alt.Chart().encode(x=alt.X("step:O", title="pruning step", axis=alt.Axis(labelAngle=0)))
    lines = base.mark_line(point=True).encode(
        y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
        color=alt.Color("side:N", title="data", scale=alt.Scale(domain=["forget", "retain"])))
    catcher = base.mark_rule(strokeWidth=14, opacity=0).encode(
        tooltip=[alt.Tooltip("step:Q"), alt.Tooltip("frac:Q", title="fraction pruned", format=".2%")],
    ).add_params(hover)
    rule = base.mark_rule(color="#777").transform_filter(hover)
    labels = lines.mark_text(align="left", dx=6, dy=-6, fontSize=11).encode(
        text=alt.Text("value:Q", format=".3f")).transform_filter(hover)
    chart = alt.layer(lines, rule, labels, catcher, data=df).properties(width=width, height=220).facet(
        column=alt.Column("metric:N", title=None, sort=list(metrics))).resolve_scale(y="independent")
    return chart.properties(title=title) if title else chart
