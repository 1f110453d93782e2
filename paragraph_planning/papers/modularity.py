"""Modularity (paper 3): do tasks own their neurons?

For each *task* (a forget set: one wiki topic, one BBC category, Python code, ...; or one
Fashion-MNIST class or group) we score every FF neuron (``mlp.pre_out``) with the selective-pruning
``abs`` score, ``mean|x|(task) / (mean|x|(retain) + eps)``, one shot, and take the global top
fraction as the task's neuron set. Then:

* :func:`overlap_table`: ``|A ∩ B| / k`` for every pair of tasks at several fractions (chance =
  the fraction), for a model and its random-init twin;
* :func:`cross_evaluation`: per task, the smallest pruning fraction that brings its own top-1 to
  ``target`` × unpruned (binary search), then every task's top-1 ratio at that fraction;
MoEfication lives in :mod:`.moefication`, the tasks and their documents in :mod:`.tasks`. Images:
statistics per class on training images, a task's retain set is every other class; evaluation on
test images.

Statistics, scores and clusterings are cached with :func:`paragraph_planning.cache.cached`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..cache import cached
from ..core.architectures import hook_name
from ..core.clustering import off_diagonal, overlap_matrix, similarity_order, smallest_fraction, top_fraction, top_pairs
from ..core.evaluation import classification_metrics
from ..core.hooks import HookedModel
from ..data.tasks import CHUNK_CHARS, RETAIN_CORPORA, Task, nested, retain_texts

SITE = "mlp.pre_out"
Scores = dict[str, torch.Tensor]  # task name -> [n_layers, d_mlp] float64 scores


# ============================================================================ models and statistics
@dataclass
class ModelRef:
    """A model named by what identifies it (for cache keys), loaded on first :meth:`get` only."""

    name: str
    random_init: bool = False
    seed: int = 0
    device: str | None = None
    _model: HookedModel | None = field(default=None, init=False, repr=False, compare=False)

    def fingerprint(self) -> dict[str, Any]:
        """The loaded model's fingerprint (what cache keys hold; loading takes seconds from the cache folder)."""
        return self.get().fingerprint()

    @property
    def label(self) -> str:
        return "random init" if self.random_init else "trained"

    def get(self) -> HookedModel:
        if self._model is None:
            from ..core.models import load_model

            self._model = load_model(self.name, random_init=self.random_init, seed=self.seed, device=self.device)
        return self._model


def _mean_abs(model: HookedModel, batches: Any) -> dict[str, Any]:
    """``{"mean_abs": [n_layers, d_mlp] float64, "count": tokens}`` of ``mlp.pre_out`` over ``batches``.

    Token batches go in as ``{"input_ids", "logits_to_keep": 1}`` where the model takes it: the
    statistics need no logits, and the unembedding is a quarter of SmolLM2's forward pass.
    """
    import inspect

    from ..core.statistics import collect_stats

    if model.cfg.kind == "causal-lm" and "logits_to_keep" in inspect.signature(model.hf.forward).parameters:
        batches = [{"input_ids": b, "logits_to_keep": 1} for b in batches]
    stats = collect_stats(model, batches, sites=(SITE,), bins=1, reservoir=0, progress=False)
    names = model.hook_names(SITE)
    return {"mean_abs": torch.stack([stats[n].mean_abs.cpu() for n in names]), "count": stats[names[0]].count}


def abs_scores(forget: torch.Tensor, retain: torch.Tensor) -> torch.Tensor:
    """Selective-pruning ``abs`` scores ``[n_layers, n]`` from mean ``|x|`` of forget and retain ``[n_layers, n]``."""
    from ..core.pruning import score_neurons

    names = [hook_name(i, SITE) for i in range(forget.shape[0])]
    wrap = lambda t: {n: SimpleNamespace(mean_abs=t[i]) for i, n in enumerate(names)}  # noqa: E731
    scores = score_neurons(wrap(forget), wrap(retain), "abs")
    return torch.stack([scores[n] for n in names])


def text_scores(ref: ModelRef, tasks: Sequence[Task], *, retain: Sequence[str] = RETAIN_CORPORA,
                collect_tokens: int = 8192, retain_tokens: int | None = None, seq_len: int = 256,
                batch_size: int = 8, seed: int = 0) -> Scores:
    """Per text task, ``abs`` scores ``[n_layers, d_mlp]``; the retain statistics are collected once.

    Statistics are cached per task and per retain mix, so adding a task collects only that task.
    """
    from ..data.corpora import token_batches

    common = {"seq_len": seq_len, "batch_size": batch_size, "seed": seed, "chunk": CHUNK_CHARS}

    def collect(ds: Any, n: int) -> dict[str, Any]:
        model = ref.get()
        return _mean_abs(model, token_batches(ds, model.tokenizer, n, seq_len, batch_size, seed=seed))

    n_retain = retain_tokens or 2 * collect_tokens
    r = cached("modularity-text-stats", {**common, "retain": list(retain), "n_tokens": n_retain},
               lambda: collect(retain_texts(retain), n_retain), model=ref)
    out = {}
    for task in tasks:
        f = cached("modularity-text-stats", {**common, "task": asdict(task), "n_tokens": collect_tokens},
                   lambda task=task: collect(task.pieces("train", "forget"), collect_tokens), model=ref)
        out[task.name] = abs_scores(f["mean_abs"], r["mean_abs"])
    return out


def class_images(split: str, per_class: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``{class: uint8 [n, 28, 28]}``: up to ``per_class`` Fashion-MNIST images per class (seeded choice)."""
    from ..data.images import FASHION_CLASSES, images_array, labels_array, load_fashion_mnist

    ds = load_fashion_mnist(split)
    images, labels = images_array(ds), labels_array(ds)
    rng = np.random.default_rng(seed)
    return {c: images[np.sort(rng.permutation(np.flatnonzero(labels == i))[:per_class])]
            for i, c in enumerate(FASHION_CLASSES)}


def image_scores(ref: ModelRef, tasks: Sequence[Task], *, images_per_class: int = 500, batch_size: int = 250,
                 seed: int = 0) -> Scores:
    """Per image task, ``abs`` scores ``[n_layers, d_mlp]``: the task's classes vs every other class.

    Statistics are collected once per class (training images); a task's forget and retain
    statistics are token-weighted means over its classes and over the other classes.
    """
    from ..data.images import pixel_processor

    def compute() -> dict[str, dict[str, Any]]:
        model = ref.get()
        proc = pixel_processor(model)
        out = {}
        for c, imgs in class_images("train", images_per_class, seed).items():
            out[c] = _mean_abs(model, [proc(imgs[i:i + batch_size]) for i in range(0, len(imgs), batch_size)])
        return out

    per_class = cached("modularity-image-stats", {"images_per_class": images_per_class, "seed": seed},
                       compute, model=ref)

    def pooled(classes: Sequence[str]) -> torch.Tensor:
        n = torch.tensor([float(per_class[c]["count"]) for c in classes], dtype=torch.float64)
        return torch.einsum("c,cln->ln", n / n.sum(), torch.stack([per_class[c]["mean_abs"] for c in classes]))

    out = {}
    for task in tasks:
        others = [c for c in per_class if c not in task.classes]
        out[task.name] = abs_scores(pooled(task.classes), pooled(others))
    return out


# ============================================================================ overlap
def _layer_dict(s: torch.Tensor) -> dict[str, torch.Tensor]:
    return {hook_name(i, SITE): s[i] for i in range(s.shape[0])}


def overlap_table(scores: Mapping[str, Scores], fracs: Sequence[float]) -> pd.DataFrame:
    """Long table of ``|A ∩ B| / k`` for ``{weights label: {task: scores}}`` at each fraction.

    Columns: ``weights``, ``frac``, ``task_a``, ``task_b``, ``overlap``, ``count`` (``|A ∩ B|``),
    ``k`` (set size), ``chance`` (= the fraction, the expected overlap of random sets).
    """
    rows = []
    for weights, by_task in scores.items():
        for frac in fracs:
            sets = {t: top_fraction(_layer_dict(s), frac) for t, s in by_task.items()}
            m = overlap_matrix(sets)
            n = next(iter(sets.values())).numel()
            for a in m.index:
                k = int(sets[a].sum())
                for b in m.columns:
                    rows.append({"weights": weights, "frac": float(frac), "task_a": a, "task_b": b,
                                 "overlap": float(m.at[a, b]), "count": int(round(m.at[a, b] * k)), "k": k,
                                 "chance": k / n})
    return pd.DataFrame(rows)


def overlap_matrix_of(table: pd.DataFrame, weights: str, frac: float) -> pd.DataFrame:
    """The task × task matrix of one ``weights`` label and fraction from :func:`overlap_table`."""
    part = table[(table.weights == weights) & np.isclose(table.frac, frac)]
    if part.empty:
        raise ValueError(f"No overlaps for weights={weights!r}, frac={frac}.")
    order = list(dict.fromkeys(part.task_a))
    return part.pivot(index="task_a", columns="task_b", values="overlap").loc[order, order]


def _pair_masks(tasks: Sequence[Task], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Boolean ``[n, n]`` masks over off-diagonal, non-nested pairs: same family, different family."""
    by = {t.name: t for t in tasks}
    ts = [by[n] for n in names]
    same = np.array([[a.family == b.family for b in ts] for a in ts])
    ok = ~np.eye(len(ts), dtype=bool) & ~np.array([[nested(a, b) for b in ts] for a in ts])
    return same & ok, ~same & ok


def overlap_summary(table: pd.DataFrame, tasks: Sequence[Task]) -> pd.DataFrame:
    """Per weights and fraction: mean off-diagonal overlap vs chance, within vs between families."""
    rows = []
    for (weights, frac), _ in table.groupby(["weights", "frac"], sort=False):
        m = overlap_matrix_of(table, weights, frac)
        off = off_diagonal(m)
        within, between = _pair_masks(tasks, list(m.index))
        chance = float(table[(table.weights == weights) & (table.frac == frac)].chance.iloc[0])
        rows.append({"weights": weights, "frac": frac, "chance": chance, "mean_offdiag": off.mean(),
                     "times_chance": off.mean() / chance, "max_offdiag": off.max(),
                     "within_family": m.values[within].mean() if within.any() else math.nan,
                     "between_family": m.values[between].mean() if between.any() else math.nan})
    return pd.DataFrame(rows)


def pattern_correlation(table: pd.DataFrame, a: str = "trained", b: str = "random init") -> pd.DataFrame:
    """Per fraction, the Spearman correlation of the pairwise overlaps of two weight labels."""
    from scipy.stats import spearmanr

    rows = []
    for frac in sorted(table.frac.unique()):
        ma, mb = overlap_matrix_of(table, a, frac), overlap_matrix_of(table, b, frac)
        mb = mb.loc[ma.index, ma.columns]
        iu = np.triu_indices(len(ma), 1)
        rho = spearmanr(ma.values[iu], mb.values[iu]).statistic if len(iu[0]) > 2 else math.nan
        rows.append({"frac": frac, "spearman": float(rho)})
    return pd.DataFrame(rows)


def overlap_top_pairs(table: pd.DataFrame, tasks: Sequence[Task], weights: str, frac: float, n: int = 5) -> pd.DataFrame:
    """The ``n`` task pairs with the highest overlap (nested pairs, a class and its own group, left out)."""
    m = overlap_matrix_of(table, weights, frac)
    by = {t.name: t for t in tasks}
    pairs = top_pairs(m, len(m) * len(m))
    pairs = pairs[[not nested(by[a], by[b]) for a, b in zip(pairs.task_a, pairs.task_b)]].head(n)
    return pairs.assign(times_chance=pairs.overlap / frac).reset_index(drop=True)


def task_order(table: pd.DataFrame, weights: str = "trained", frac: float | None = None) -> list[str]:
    """Tasks ordered so that tasks with overlapping neuron sets sit together (at ``frac``, default the median)."""
    fracs = sorted(table.frac.unique())
    return similarity_order(overlap_matrix_of(table, weights, fracs[len(fracs) // 2] if frac is None else frac))


# ============================================================================ cross-evaluation
Evaluate = Callable[[str | None, float, Sequence[str]], Mapping[str, float]]


def cross_evaluation(tasks: Sequence[str], evaluate: Evaluate, *, target: float = 0.8, lo: float = 0.001,
                     hi: float = 0.128, tol: float = 1.25) -> pd.DataFrame:
    """Per task, the smallest fraction that brings its own metric to ``target`` × unpruned; then all tasks there.

    ``evaluate(prune_for, frac, on)`` returns ``{task: metric}`` for the tasks ``on`` with the top
    ``frac`` neurons of ``prune_for`` pruned (``None``/0: unpruned). The binary search
    (:func:`~.clustering.smallest_fraction`) runs on ``log(frac)`` between ``lo`` and ``hi`` and
    stops when the bracket's ratio is at most ``tol``, so small fractions are resolved as finely
    as large ones. Returns one row per (``pruned_for``, ``evaluated_on``) with ``frac``,
    ``reached`` (False: even ``hi`` did not get there), ``base``, ``pruned`` and ``ratio`` =
    pruned / base (NaN where base is 0).
    """
    if not (0 < lo < hi and tol > 1):
        raise ValueError(f"Need 0 < lo < hi and a relative tolerance tol > 1; got lo={lo}, hi={hi}, tol={tol}.")
    tasks = list(tasks)
    base = dict(evaluate(None, 0.0, tasks))
    rows = []
    for t in tasks:
        memo: dict[float, float] = {}

        def own(frac: float, t: str = t) -> float:
            if frac not in memo:
                memo[frac] = float(evaluate(t, frac, [t])[t])
            return memo[frac] / base[t]

        if not base[t] > 0:  # nothing to lose: no search
            frac, reached, res = math.nan, False, {u: math.nan for u in tasks}
        else:
            u = smallest_fraction(lambda u: own(math.exp(u)), target, math.log(lo), math.log(hi), math.log(tol))
            frac = math.exp(u)
            reached = own(frac) <= target
            res = dict(evaluate(t, frac, [u for u in tasks if u != t]))
            res[t] = memo[frac]
        for u in tasks:
            b = base[u]
            rows.append({"pruned_for": t, "evaluated_on": u, "frac": frac, "reached": reached, "base": b,
                         "pruned": res[u], "ratio": res[u] / b if b > 0 else math.nan})
    return pd.DataFrame(rows)


def _masks(model: HookedModel, s: torch.Tensor, frac: float) -> Any:
    from ..core.interventions import NeuronMasks
    from ..core.pruning import select_top

    sel = select_top(_layer_dict(s), frac)
    return NeuronMasks(model).update({n: ~m for n, m in sel.items()})


def eval_rows(task: Task, tokenizer: Any, n_tokens: int, seq_len: int, spread: int = 8, seed: int = 0) -> torch.Tensor:
    """Test token rows ``[rows, seq_len]`` covering ``n_tokens``, every ``spread``-th row of a longer stream.

    Consecutive rows would come from one or two documents; spacing them samples more of the task.
    """
    from ..data.corpora import token_batches

    rows = token_batches(task.pieces("test"), tokenizer, n_tokens * spread, seq_len, 1, seed=seed)
    rows = rows.reshape(-1, seq_len)
    n = max(1, -(-n_tokens // seq_len))
    return rows[torch.linspace(0, len(rows) - 1, n).round().long().unique()]


def text_evaluator(ref: ModelRef, tasks: Sequence[Task], scores: Scores, *, eval_tokens: int = 256,
                   seq_len: int = 64, seed: int = 0) -> Evaluate:
    """``evaluate(prune_for, frac, on)`` → next-token top-1 on each task's test rows (:func:`eval_rows`)."""
    from ..core.evaluation import evaluate_lm

    model = ref.get()
    by = {t.name: t for t in tasks}
    batches: dict[str, torch.Tensor] = {}

    def evaluate(prune_for: str | None, frac: float, on: Sequence[str]) -> dict[str, float]:
        for u in on:
            if u not in batches:
                batches[u] = eval_rows(by[u], model.tokenizer, eval_tokens, seq_len, seed=seed)
        if prune_for is None or frac <= 0:
            return {u: evaluate_lm(model, batches[u])["top1"] for u in on}
        with _masks(model, scores[prune_for], frac):
            return {u: evaluate_lm(model, batches[u])["top1"] for u in on}

    return evaluate


def image_evaluator(ref: ModelRef, tasks: Sequence[Task], scores: Scores, *, eval_images: int = 200,
                    seed: int = 0) -> Evaluate:
    """``evaluate(prune_for, frac, on)`` → top-1 accuracy on each task's test images (each class run once)."""
    from ..data.images import FASHION_CLASSES, pixel_processor

    model = ref.get()
    proc = pixel_processor(model)
    imgs = class_images("test", eval_images, seed)
    by = {t.name: t for t in tasks}

    def run(classes: set[str]) -> dict[str, torch.Tensor]:
        return {c: classification_metrics(model(proc(imgs[c])), torch.full((len(imgs[c]),), FASHION_CLASSES.index(c))
                                          )["top1"].float() for c in classes}

    def evaluate(prune_for: str | None, frac: float, on: Sequence[str]) -> dict[str, float]:
        classes = {c for u in on for c in by[u].classes}
        if prune_for is None or frac <= 0:
            hits = run(classes)
        else:
            with _masks(model, scores[prune_for], frac):
                hits = run(classes)
        return {u: float(torch.cat([hits[c] for c in by[u].classes]).mean()) for u in on}

    return evaluate


def cross_evaluate(ref: ModelRef, tasks: Sequence[Task], scores: Scores, *, eval_size: int, target: float = 0.8,
                   lo: float = 0.001, hi: float = 0.128, tol: float = 1.25, seq_len: int = 64,
                   seed: int = 0) -> pd.DataFrame:
    """Cached :func:`cross_evaluation` of a language model (``eval_size`` tokens per task) or image
    classifier (``eval_size`` test images per class)."""
    kind = tasks[0].kind
    params = {"tasks": [asdict(t) for t in tasks], "eval_size": eval_size, "target": target, "lo": lo, "hi": hi,
              "tol": tol, "seq_len": seq_len, "seed": seed,
              "scores": torch.stack([scores[t.name] for t in tasks])}

    def compute() -> pd.DataFrame:
        if kind == "text":
            ev = text_evaluator(ref, tasks, scores, eval_tokens=eval_size, seq_len=seq_len, seed=seed)
        else:
            ev = image_evaluator(ref, tasks, scores, eval_images=eval_size, seed=seed)
        return cross_evaluation([t.name for t in tasks], ev, target=target, lo=lo, hi=hi, tol=tol)

    return cached("modularity-cross-eval", params, compute, model=ref)


def cross_summary(cross: pd.DataFrame) -> pd.DataFrame:
    """Per pruned-for task: the fraction needed, its own ratio, and the other tasks' mean and worst ratio."""
    rows = []
    for t, part in cross.groupby("pruned_for", sort=False):
        own = part[part.evaluated_on == t].iloc[0]
        others = part[part.evaluated_on != t].dropna(subset=["ratio"])
        worst = others.loc[others.ratio.idxmin()] if len(others) else None
        rows.append({"pruned_for": t, "frac": own.frac, "reached": own.reached, "own_ratio": own.ratio,
                     "others_mean_ratio": others.ratio.mean() if len(others) else math.nan,
                     "most_hit": worst.evaluated_on if worst is not None else "",
                     "most_hit_ratio": worst.ratio if worst is not None else math.nan})
    return pd.DataFrame(rows)


# ============================================================================ the paper's claims, checked
def overlap_claims(summary: pd.DataFrame, corr: pd.DataFrame, frac: float, model: str) -> list[dict[str, str]]:
    """Verdicts on the overlap claims at ``frac``, worded from the measured numbers."""
    at = summary[np.isclose(summary.frac, frac)].set_index("weights")
    tr, ri = at.loc["trained"], at.loc["random init"] if "random init" in at.index else None
    rows = []
    r = tr.times_chance
    rows.append({"model": model, "claim": "task neuron sets overlap more than chance",
                 "measured": f"mean off-diagonal overlap {tr.mean_offdiag:.3f} vs chance {tr.chance:.3f} ({r:.1f}×)",
                 "verdict": "yes" if r >= 1.5 else "weakly" if r >= 1.1 else "no"})
    w, b = tr.within_family, tr.between_family
    rows.append({"model": model, "claim": "related tasks (same family) share more neurons",
                 "measured": (f"within-family {w:.3f} vs between-family {b:.3f}" if not math.isnan(w)
                              else "no family with 2+ tasks"),
                 "verdict": "n/a" if math.isnan(w) or math.isnan(b) else "yes" if w >= 1.2 * b else
                 "weakly" if w > b else "no"})
    if ri is not None:
        rho = float(corr.loc[np.isclose(corr.frac, frac), "spearman"].iloc[0])
        share = (ri.times_chance - 1) / (r - 1) if r > 1 else math.nan
        ct, cr = tr.within_family / tr.between_family, ri.within_family / ri.between_family
        if ri.times_chance < 1.1 and not rho >= 0.3:
            verdict = "no: random-init sets overlap at about chance, without the trained pattern"
        elif share >= 0.9 and rho >= 0.7 and not cr < 0.8 * ct:
            verdict = "yes, nearly all of it: the level, the pattern and the family structure"
        else:
            why = ["the overall excess over chance is there" if share >= 0.9 else f"{share:.0%} of the excess is there"]
            if not rho >= 0.7:
                why.append(f"the pair pattern differs (ρ = {rho:.2f})")
            if cr < 0.8 * ct:
                why.append("related tasks stand out less")
            verdict = "partly: " + ", ".join(why)
        rows.append({"model": model, "claim": "the overlap structure is partly present at random init",
                     "measured": f"random init {ri.mean_offdiag:.3f} ({ri.times_chance:.1f}× chance, {share:.0%} of the "
                                 f"trained excess); pair pattern vs trained: Spearman ρ = {rho:.2f}; within/between "
                                 f"family {cr:.2f}× (trained {ct:.2f}×)",
                     "verdict": verdict})
    return rows


# ============================================================================ charts
def overlap_chart(table: pd.DataFrame, order: Sequence[str], title: str = "", size: int = 300) -> Any:
    """Task × task overlap heatmaps, trained and random init side by side, with a fraction menu.

    Hover a cell for the two tasks, ``|A ∩ B|``, ``k`` and the overlap vs chance. The diagonal
    (always 1) is left blank so the colour scale shows the off-diagonal range.
    """
    import altair as alt

    df = table[table.task_a != table.task_b].copy()
    df["times_chance"] = df.overlap / df.chance
    fracs = sorted(float(f) for f in df.frac.unique())
    pick = alt.param(name="frac_shown", value=fracs[len(fracs) // 2],
                     bind=alt.binding_select(options=fracs, labels=[f"{f:.0%}" for f in fracs],
                                             name="top fraction of neurons per task: "))
    chart = alt.Chart(df).mark_rect().encode(
        x=alt.X("task_b:N", sort=list(order), title=None),
        y=alt.Y("task_a:N", sort=list(order), title=None),
        color=alt.Color("overlap:Q", title="|A∩B| / k", scale=alt.Scale(scheme="viridis")),
        tooltip=[alt.Tooltip("task_a:N", title="task A"), alt.Tooltip("task_b:N", title="task B"),
                 alt.Tooltip("count:Q", title="|A∩B|"), alt.Tooltip("k:Q", title="k"),
                 alt.Tooltip("overlap:Q", format=".3f"), alt.Tooltip("chance:Q", format=".3f"),
                 alt.Tooltip("times_chance:Q", title="× chance", format=".2f")],
    ).add_params(pick).transform_filter(alt.datum.frac == pick).properties(width=size, height=size)
    weights = list(dict.fromkeys(df.weights))
    return chart.facet(column=alt.Column("weights:N", sort=weights, title=None), title=title)


def cross_chart(cross: pd.DataFrame, order: Sequence[str], title: str = "", size: int = 340) -> Any:
    """Heatmap of top-1 ratio (pruned / unpruned): rows = task pruned for, columns = task evaluated."""
    import altair as alt

    df = cross.dropna(subset=["ratio"]).copy()
    return alt.Chart(df, title=title).mark_rect().encode(
        x=alt.X("evaluated_on:N", sort=list(order), title="evaluated on"),
        y=alt.Y("pruned_for:N", sort=list(order), title="pruned for"),
        color=alt.Color("ratio:Q", title="top-1 ratio", scale=alt.Scale(scheme="redyellowblue", domain=[0.5, 1.0],
                                                                          clamp=True)),
        tooltip=[alt.Tooltip("pruned_for:N", title="pruned for"), alt.Tooltip("evaluated_on:N", title="evaluated on"),
                 alt.Tooltip("frac:Q", title="fraction pruned", format=".3f"),
                 alt.Tooltip("base:Q", title="top-1 unpruned", format=".3f"),
                 alt.Tooltip("pruned:Q", title="top-1 pruned", format=".3f"), alt.Tooltip("ratio:Q", format=".3f")],
    ).properties(width=size, height=size)
