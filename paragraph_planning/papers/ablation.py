"""Ablation methods compared (paper 2): zero, mean, peak (mode) and resample, on random neuron subsets.

Every method is the one mask of :func:`~paragraph_planning.core.interventions.mask_fn`,
``x·m + c·(1−m)``, with a different ``c``:

=============  ==============================================================================
method         replacement ``c`` of an ablated neuron
=============  ==============================================================================
``zero``       0
``mean``       its mean on a reference corpus (:class:`~paragraph_planning.core.statistics.NeuronStats`)
``peak``       its mode: the centre of the fullest of 100 histogram bins (``NeuronStats.peak``),
               the paper's estimator
``median``     its median on the reservoir sample (a cheap baseline; optional)
``peak-kde``   the mode of a Gaussian KDE of the reservoir sample (optional)
``resample``   per position: the value the same neuron had at the same absolute position of another
               input (random corpus text, random token ids, another image or random pixels); the
               source's activations are recorded with ``model.record`` on a same-shaped input
=============  ==============================================================================

Subsets: each hook site (``blocks.{i}.attn.pre_out`` by default, optionally ``mlp.pre_out``) gets its
own seeded random permutation of its neurons; at fraction ``f`` the first ``round(f·n)`` are ablated,
so the subsets grow cumulatively without replacement, and for one seed every method ablates the
same neurons (paired comparisons).

Example::

    stats = reference_stats(model, batches, ["attn.pre_out"])          # mean, peak, reservoir
    task = lm_task(token_batches("wiki-en", model.tokenizer, 4096, split="test"))
    df = run_ablation(model, task, stats, methods=METHODS, fracs=step_fracs(0.1, 10), seeds=[0, 1, 2],
                      resampler=Resampler("tokens", vocab_size=len(model.tokenizer)))
    ranking(df, frac=0.5)
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..core.architectures import layer_of, parse_name
from ..core.evaluation import classification_metrics, evaluate_lm
from ..core.hooks import HookedModel
from ..core.interventions import mask_fn
from ..core.peaks import hist_mode, kde_mode, skewness
from ..core.statistics import NeuronStats, collect_stats

METHODS: tuple[str, ...] = ("zero", "mean", "peak", "resample")
"""The paper's four methods."""
CONSTANT_METHODS: tuple[str, ...] = ("zero", "mean", "peak", "median", "peak-kde")
"""Methods whose replacement is one value per neuron."""
RESAMPLE_SOURCES: tuple[str, ...] = ("corpus", "tokens", "images", "pixels")
"""Where resampled activations come from: other text, random token ids, other images, random pixels."""


# ============================================================================ subsets
def _name_seed(seed: int, name: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63 - 1)


def neuron_order(sizes: Mapping[str, int], seed: int) -> dict[str, torch.Tensor]:
    """A seeded random permutation of each site's neurons (``{name: n_neurons}`` -> ``{name: perm}``).

    Each site's generator is seeded from ``seed`` and the site's name, so adding or removing a
    site leaves the others' orders unchanged.
    """
    return {name: torch.randperm(n, generator=torch.Generator().manual_seed(_name_seed(seed, name)))
            for name, n in sizes.items()}


def n_ablated(n: int, frac: float) -> int:
    """Neurons ablated at fraction ``frac`` of ``n``: ``round(frac·n)``, clipped to ``[0, n]``."""
    if not 0 <= frac <= 1 + 1e-9:
        raise ValueError(f"frac must lie in [0, 1], got {frac}.")
    return min(n, int(math.floor(frac * n + 0.5)))


def keep_masks(order: Mapping[str, torch.Tensor], frac: float, names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """Float keep-masks (1 keeps, 0 ablates) with the first ``round(frac·n)`` neurons of each order ablated.

    ``names`` restricts ablation to some sites (the per-layer experiment); the others are left out.
    """
    out = {}
    for name in (order if names is None else names):
        perm = order[name]
        keep = torch.ones(len(perm))
        keep[perm[: n_ablated(len(perm), frac)]] = 0.0
        out[name] = keep
    return out


def step_fracs(frac_step: float = 0.1, n_steps: int = 10) -> list[float]:
    """Cumulative fractions ``frac_step·i`` for ``i = 1..n_steps`` (capped at 1, rounded to 1e-9)."""
    if frac_step <= 0 or n_steps < 1:
        raise ValueError(f"Need frac_step > 0 and n_steps >= 1, got {frac_step}, {n_steps}.")
    return sorted({round(min(1.0, frac_step * i), 9) for i in range(1, n_steps + 1)})


@dataclass
class ReferenceStats:
    """Statistics of the reference corpus: the paper's 100-bin :class:`NeuronStats` per site, plus
    histograms with other bin counts from the same tokens (``extra[bins][name]``, no reservoir)."""

    stats: dict[str, NeuronStats]
    extra: dict[int, dict[str, NeuronStats]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain tensors (for :func:`paragraph_planning.cache.cached`)."""
        return {"stats": {k: s.to_dict() for k, s in self.stats.items()},
                "extra": {b: {k: s.to_dict() for k, s in d.items()} for b, d in self.extra.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ReferenceStats":
        """Inverse of :meth:`to_dict`."""
        return cls({k: NeuronStats.from_dict(v) for k, v in d["stats"].items()},
                   {int(b): {k: NeuronStats.from_dict(v) for k, v in e.items()} for b, e in d["extra"].items()})


def reference_stats(model: HookedModel, batches: Iterable[torch.Tensor], sites: Sequence[str] = ("attn.pre_out",),
                    *, bins: int = 100, extra_bins: Sequence[int] = (), reservoir: int = 2048, seed: int = 0,
                    progress: bool = False) -> ReferenceStats:
    """One pass over ``batches``: :func:`collect_stats` (``bins``, ``reservoir``) and extra-bin histograms."""
    names = model.hook_names(sites)
    extra = {int(b): {n: NeuronStats(model.cfg.n_neurons(model.parse(n)[1]), bins=int(b), reservoir=0, name=n)
                      for n in names} for b in extra_bins if int(b) != bins}

    def feed(name: str) -> Callable[..., None]:
        def fn(act: torch.Tensor, *, hook: Any) -> None:
            x = act.detach().reshape(-1, model.cfg.n_neurons(hook.site))
            for d in extra.values():
                d[name].update(x)
        return fn

    with model.hooks([(n, feed(n)) for n in names] if extra else []):
        stats = collect_stats(model, batches, sites, bins=bins, reservoir=reservoir, seed=seed, progress=progress)
    return ReferenceStats(stats, extra)


def peak_estimates(ref: ReferenceStats, sample_bins: Sequence[int] = (100,), kde: bool = True,
                   bw_method: str | float = "scott", names: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-neuron location estimates, one row per neuron and estimator.

    Columns: ``name, layer, site, neuron, mean, std, skew, peak`` (the paper's: 100-bin histogram on
    all reference tokens), ``estimator``, ``value``, ``dist_std = |value − peak| / std``.
    Estimators: ``mean``; ``hist{b} (all)`` for each extra bin count of ``ref`` and the paper's own
    ``hist100 (all)``; ``hist{b} (sample)`` for ``sample_bins`` on the reservoir; ``kde (sample)``;
    ``median (sample)``. Skewness is that of the reservoir sample.
    """
    frames = []
    for name in names or list(ref.stats):
        s = ref.stats[name]
        sample = s.reservoir.T.double()  # [n_neurons, S]
        layer, site = parse_name(name)
        peak, std = s.peak.double().cpu(), s.std.double().cpu()
        est: dict[str, torch.Tensor] = {"mean": s.mean.double().cpu(), f"hist{s.bins} (all)": peak}
        for b, d in sorted(ref.extra.items()):
            est[f"hist{b} (all)"] = d[name].peak.double().cpu()
        for b in sample_bins:
            est[f"hist{b} (sample)"] = hist_mode(sample, b)
        if kde:
            est["kde (sample)"] = kde_mode(sample, bw_method)
        est["median (sample)"] = sample.median(1).values  # lower median, as torch defines it
        base = {"name": name, "layer": layer, "site": site, "neuron": np.arange(s.n_neurons),
                "mean": est["mean"].numpy(), "std": std.numpy(), "skew": skewness(sample).numpy(), "peak": peak.numpy()}
        for key, v in est.items():
            frames.append(pd.DataFrame({**base, "estimator": key, "value": v.numpy(),
                                        "dist_std": ((v - peak).abs() / std.clamp_min(1e-12)).numpy()}))
    return pd.concat(frames, ignore_index=True)


def estimator_agreement(estimates: pd.DataFrame) -> pd.DataFrame:
    """Per estimator: how far it lies from the paper's peak, in units of each neuron's std."""
    g = estimates.groupby("estimator", sort=False)["dist_std"]
    return pd.DataFrame({"median": g.median(), "mean": g.mean(), "p90": g.quantile(0.9),
                         "within_0.1_std": g.apply(lambda d: float((d <= 0.1).mean())), "n_neurons": g.size()})


def replacement_values(ref: ReferenceStats | Mapping[str, NeuronStats], method: str,
                       bw_method: str | float = "scott") -> dict[str, torch.Tensor]:
    """Per-neuron replacement ``c`` (float32 ``[n_neurons]``) of a constant method, per site."""
    stats = ref.stats if isinstance(ref, ReferenceStats) else ref
    if method not in CONSTANT_METHODS:
        raise ValueError(f"Unknown constant method {method!r}. Valid: {', '.join(CONSTANT_METHODS)}"
                         " (resample is per position: see Resampler).")
    out = {}
    for name, s in stats.items():
        if method == "zero":
            v = torch.zeros(s.n_neurons)
        elif method == "mean":
            v = s.mean
        elif method == "peak":
            v = s.peak
        elif method == "median":
            v = s.reservoir.median(0).values
        else:
            v = kde_mode(s.reservoir.T, bw_method)
        out[name] = v.float().cpu()
    return out


# ============================================================================ evaluation tasks
@dataclass
class EvalTask:
    """Inputs in chunks (one forward pass each) and how to score them.

    ``kind="lm"``: ``chunks`` are token ids ``[rows, seq]``; metrics ``loss``, ``top1``, ``top10``
    (next-token, via :func:`~paragraph_planning.core.evaluation.evaluate_lm`). ``kind="image"``: chunks are
    pixels ``[b, c, h, w]`` with ``labels``; metrics ``loss``, ``top1``, ``top5``.
    """

    kind: str
    chunks: list[torch.Tensor]
    labels: list[torch.Tensor] | None = None

    @property
    def n(self) -> int:
        """Number of scored items (targets or images)."""
        if self.kind == "lm":
            return sum(c.shape[0] * (c.shape[1] - 1) for c in self.chunks)
        return sum(c.shape[0] for c in self.chunks)


def lm_task(batches: torch.Tensor, rows_per_chunk: int = 4) -> EvalTask:
    """An LM task from token ids ``[n_batches, batch, seq]`` or ``[rows, seq]``."""
    rows = batches.reshape(-1, batches.shape[-1])
    return EvalTask("lm", list(rows.split(rows_per_chunk)))


def image_task(pixels: torch.Tensor, labels: torch.Tensor, batch_size: int = 128) -> EvalTask:
    """An image-classification task from pixels ``[n, c, h, w]`` and labels ``[n]``."""
    return EvalTask("image", list(pixels.split(batch_size)), list(torch.as_tensor(labels).split(batch_size)))


@torch.no_grad()
def _score_chunk(model: HookedModel, task: EvalTask, i: int) -> dict[str, float]:
    x = task.chunks[i]
    if task.kind == "lm":
        vocab = int(model.hf.get_output_embeddings().weight.shape[0])
        # one micro-batch per chunk, so per-position resample values line up with the rows
        r = evaluate_lm(model, x, skip_ids=torch.zeros(0, dtype=torch.long),
                        max_logit_bytes=x.shape[0] * x.shape[1] * vocab * 4)
        n = r["n_tokens"]
        return {"loss": r["loss"] * n, "top1": r["top1"] * n, "top10": r["top10"] * n, "n": n}
    m = classification_metrics(model(x), task.labels[i])  # type: ignore[index]
    k = next(key for key in m if key not in ("top1", "loss"))
    return {"loss": float(m["loss"].sum()), "top1": float(m["top1"].sum()), "top5": float(m[k].sum()), "n": len(m["loss"])}


def evaluate_task(model: HookedModel, task: EvalTask,
                  hooks_for: Callable[[int], list[tuple[str, Callable]]] | None = None) -> dict[str, float]:
    """Mean metrics over every chunk; ``hooks_for(i)`` gives chunk ``i``'s hooks (None: clean model)."""
    sums: dict[str, float] = {}
    for i in range(len(task.chunks)):
        with model.hooks(hooks_for(i) if hooks_for else []):
            r = _score_chunk(model, task, i)
        for k, v in r.items():
            sums[k] = sums.get(k, 0.0) + v
    n = sums.pop("n")
    return {**{k: v / n for k, v in sums.items()}, "n": int(n)}


# ============================================================================ resampling
@dataclass
class Resampler:
    """Builds the source input whose activations replace the ablated ones, one per chunk.

    ``source``: ``"corpus"``/``"images"`` draw rows of ``pool`` (token ids ``[R, seq]`` or pixels
    ``[N, c, h, w]``) at random; ``"tokens"`` draws ids uniformly from ``[0, vocab_size)`` (a row
    that starts with ``bos_id`` keeps it, so position 0 stays the attention sink); ``"pixels"``
    draws uniform grey levels 0–255 on 28×28 and passes them through ``processor``.
    """

    source: str
    pool: torch.Tensor | None = None
    vocab_size: int | None = None
    bos_id: int | None = None
    processor: Callable[[Any], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.source not in RESAMPLE_SOURCES:
            raise ValueError(f"Unknown resample source {self.source!r}. Valid: {', '.join(RESAMPLE_SOURCES)}.")
        need = {"corpus": "pool", "images": "pool", "tokens": "vocab_size", "pixels": "processor"}[self.source]
        if getattr(self, need) is None:
            raise ValueError(f"Resample source {self.source!r} needs {need}.")

    def inputs(self, like: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """A source input shaped like ``like`` (the chunk being evaluated)."""
        b = like.shape[0]
        if self.source in ("corpus", "images"):
            pool = self.pool  # type: ignore[assignment]
            if pool.shape[1:] != like.shape[1:]:
                raise ValueError(f"Resample pool rows {tuple(pool.shape[1:])} differ from inputs {tuple(like.shape[1:])}.")
            return pool[torch.randperm(len(pool), generator=gen)[:b]] if len(pool) >= b else \
                pool[torch.randint(len(pool), (b,), generator=gen)]
        if self.source == "tokens":
            ids = torch.randint(int(self.vocab_size), tuple(like.shape), generator=gen)  # type: ignore[arg-type]
            if self.bos_id is not None:
                ids[:, 0] = torch.where(like[:, 0] == self.bos_id, like[:, 0], ids[:, 0])
            return ids
        grey = torch.randint(0, 256, (b, 28, 28), generator=gen, dtype=torch.uint8)
        return self.processor(grey)  # type: ignore[misc]


class SourceActivations:
    """Clean-model activations of each chunk's resample source, at ``names``; kept in memory."""

    def __init__(self, model: HookedModel, task: EvalTask, resampler: Resampler, names: Sequence[str], seed: int):
        self.model, self.task, self.resampler, self.names, self.seed = model, task, resampler, list(names), seed
        self._cache: dict[int, dict[str, torch.Tensor]] = {}

    def __call__(self, i: int) -> dict[str, torch.Tensor]:
        if i not in self._cache:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + i)
            src = self.resampler.inputs(self.task.chunks[i], gen)
            with self.model.record(self.names) as rec:
                self.model(src)
            self._cache[i] = {n: rec[n] for n in self.names}
        return self._cache[i]


# ============================================================================ experiments
def _hooks(keep: Mapping[str, torch.Tensor], values: Mapping[str, torch.Tensor]) -> list[tuple[str, Callable]]:
    return [(n, mask_fn(k, values[n])) for n, k in keep.items() if bool((k < 1).any())]


def _condition(model: HookedModel, task: EvalTask, keep: Mapping[str, torch.Tensor], method: str,
               values: Mapping[str, Mapping[str, torch.Tensor]], source: SourceActivations | None) -> dict[str, float]:
    if method == "resample":
        return evaluate_task(model, task, lambda i: _hooks(keep, source(i)))  # type: ignore[misc]
    return evaluate_task(model, task, lambda i: _hooks(keep, values[method]))


def _check_methods(methods: Sequence[str], resampler: Resampler | None) -> None:
    bad = [m for m in methods if m not in (*CONSTANT_METHODS, "resample")]
    if bad:
        raise ValueError(f"Unknown method(s) {bad}. Valid: {', '.join((*CONSTANT_METHODS, 'resample'))}.")
    if "resample" in methods and resampler is None:
        raise ValueError("The resample method needs a Resampler.")


def run_ablation(model: HookedModel, task: EvalTask, ref: ReferenceStats, *, methods: Sequence[str] = METHODS,
                 fracs: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5), seeds: Sequence[int] = (0, 1, 2),
                 resampler: Resampler | None = None, model_name: str | None = None, bw_method: str | float = "scott",
                 progress: bool = False) -> pd.DataFrame:
    """Ablate growing random subsets of every site in ``ref`` with each method; one row per condition.

    Columns: ``model, method, frac, seed, n_ablated`` (total over sites), the task's metrics, ``n``.
    Fraction 0 (the clean model) is included once per method and seed.
    """
    _check_methods(methods, resampler)
    names = list(ref.stats)
    sizes = {n: ref.stats[n].n_neurons for n in names}
    values = {m: replacement_values(ref, m, bw_method) for m in methods if m != "resample"}
    clean = evaluate_task(model, task)
    rows = []
    from tqdm.auto import tqdm

    bar = tqdm(total=len(seeds) * len(methods) * len(fracs), disable=not progress, desc=f"ablation {model_name or ''}")
    for seed in seeds:
        order = neuron_order(sizes, seed)
        source = SourceActivations(model, task, resampler, names, seed) if "resample" in methods else None
        for method in methods:
            rows.append({"method": method, "frac": 0.0, "seed": seed, "n_ablated": 0, **clean})
            for frac in fracs:
                keep = keep_masks(order, frac)
                r = _condition(model, task, keep, method, values, source)
                rows.append({"method": method, "frac": float(frac), "seed": seed,
                             "n_ablated": int(sum(int((k < 1).sum()) for k in keep.values())), **r})
                bar.update(1)
        del source
    bar.close()
    return pd.DataFrame(rows).assign(model=model_name or model.name)[["model", *rows[0]]]


def run_per_layer(model: HookedModel, task: EvalTask, ref: ReferenceStats, *, frac: float = 0.5,
                  methods: Sequence[str] = METHODS, seeds: Sequence[int] = (0,), resampler: Resampler | None = None,
                  layers: Iterable[int] | None = None, model_name: str | None = None,
                  bw_method: str | float = "scott", progress: bool = False) -> pd.DataFrame:
    """Ablate ``frac`` of one layer's sites at a time; one row per (layer, method, seed), plus the clean score.

    Columns: ``model, layer, method, frac, seed``, metrics, and ``damage`` (loss increase over the
    clean model; for image tasks too, with ``top1_drop``).
    """
    _check_methods(methods, resampler)
    names = list(ref.stats)
    by_layer: dict[int, list[str]] = {}
    for n in names:
        by_layer.setdefault(layer_of(n), []).append(n)
    wanted = sorted(by_layer) if layers is None else list(layers)
    values = {m: replacement_values(ref, m, bw_method) for m in methods if m != "resample"}
    clean = evaluate_task(model, task)
    rows = []
    from tqdm.auto import tqdm

    bar = tqdm(total=len(seeds) * len(wanted) * len(methods), disable=not progress, desc="per layer")
    for seed in seeds:
        order = neuron_order({n: ref.stats[n].n_neurons for n in names}, seed)
        # one clean recording of the sources per seed, shared by every layer
        source = SourceActivations(model, task, resampler, names, seed) if "resample" in methods else None
        for layer in wanted:
            keep = keep_masks(order, frac, by_layer[layer])
            for method in methods:
                r = _condition(model, task, keep, method, values, source)
                rows.append({"layer": layer, "method": method, "frac": frac, "seed": seed, **r})
                bar.update(1)
    bar.close()
    df = pd.DataFrame(rows).assign(model=model_name or model.name)
    df["damage"] = df["loss"] - clean["loss"]
    df["top1_drop"] = clean["top1"] - df["top1"]
    return df[["model", *[c for c in df.columns if c != "model"]]]


# ============================================================================ summaries
def bands(df: pd.DataFrame, by: Sequence[str], value: str, z: float = 1.96) -> pd.DataFrame:
    """Mean over seeds with a ``mean ± z·s.e.`` band (``lo``, ``hi``), ``sd`` and ``n`` per group."""
    g = df.groupby(list(by), sort=True, observed=True)[value]
    out = g.agg(mean="mean", sd="std", n="count").reset_index()
    half = z * out["sd"].fillna(0.0) / np.sqrt(out["n"])
    return out.assign(lo=out["mean"] - half, hi=out["mean"] + half)


def with_damage(df: pd.DataFrame) -> pd.DataFrame:
    """Adds ``damage`` (loss increase over the clean model) and ``top1_drop`` per model (and seed)."""
    clean = df[df.frac == 0].groupby("model")[["loss", "top1"]].mean()
    out = df.copy()
    out["damage"] = out["loss"] - out["model"].map(clean["loss"])
    out["top1_drop"] = out["model"].map(clean["top1"]) - out["top1"]
    return out


def nearest_frac(df: pd.DataFrame, frac: float) -> float:
    """The measured fraction closest to ``frac``."""
    fr = np.array(sorted(df.frac.unique()))
    return float(fr[np.abs(fr - frac).argmin()])


def ranking(df: pd.DataFrame, frac: float = 0.5, metric: str = "damage") -> pd.DataFrame:
    """Methods ranked by ``metric`` (``damage`` = loss increase, or ``top1_drop``) at ``frac``, per model.

    Columns: ``model, rank`` (1 = least damage), ``method, frac, mean, lo, hi`` (``mean ± 1.96·s.e.``
    over seeds), ``n`` seeds.
    """
    df = with_damage(df) if metric in ("damage", "top1_drop") and metric not in df else df
    parts = []
    for model, part in df.groupby("model", sort=False):
        f = nearest_frac(part, frac)
        b = bands(part[np.isclose(part.frac, f)], ["method"], metric).sort_values("mean", kind="stable")
        parts.append(b.assign(model=model, frac=f, rank=np.arange(1, len(b) + 1)))
    return pd.concat(parts, ignore_index=True)[["model", "rank", "method", "frac", "mean", "lo", "hi", "n"]]


def paired_difference(df: pd.DataFrame, a: str, b: str, frac: float = 0.5, metric: str = "damage") -> dict[str, float]:
    """``metric(a) − metric(b)`` paired by seed at ``frac`` (one model): mean and a t-based 95 % interval."""
    from scipy import stats as st

    df = with_damage(df) if metric not in df else df
    f = nearest_frac(df, frac)
    at = df[np.isclose(df.frac, f)].pivot_table(index="seed", columns="method", values=metric)
    d = (at[a] - at[b]).dropna().to_numpy()
    mean = float(d.mean())
    half = float(st.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return {"a": a, "b": b, "frac": f, "diff": mean, "lo": mean - half, "hi": mean + half, "n": len(d)}


def order_check(df: pd.DataFrame, frac: float = 0.5, metric: str = "damage") -> dict[str, Any]:
    """Is ``peak ≤ mean ≤ zero`` in damage, and is resample the worst? For one model's runs.

    Returns the paired differences (peak−mean, mean−zero, resample−worst other) with 95 % t-intervals,
    and booleans on the seed means: ``peak_le_mean``, ``mean_le_zero``, ``resample_worst``, ``claim``
    (all three), plus ``significant`` per comparison (its interval excludes 0).
    """
    r = ranking(df, frac, metric).set_index("method")["mean"]
    out: dict[str, Any] = {"frac": nearest_frac(df, frac), "metric": metric}
    pairs = []
    if {"peak", "mean"} <= set(r.index):
        out["peak_le_mean"] = bool(r["peak"] <= r["mean"])
        pairs.append(("peak", "mean"))
    if {"mean", "zero"} <= set(r.index):
        out["mean_le_zero"] = bool(r["mean"] <= r["zero"])
        pairs.append(("mean", "zero"))
    if "resample" in r.index and len(r) > 1:
        others = r.drop("resample")
        out["resample_worst"] = bool(r["resample"] >= others.max())
        pairs.append(("resample", str(others.idxmax())))
    out["claim"] = all(out.get(k, False) for k in ("peak_le_mean", "mean_le_zero", "resample_worst"))
    out["pairs"] = [paired_difference(df, a, b, frac, metric) for a, b in pairs]
    for p in out["pairs"]:
        p["significant"] = bool(p["lo"] > 0 or p["hi"] < 0)
    return out


def describe_order(df: pd.DataFrame, frac: float = 0.5, metric: str = "damage") -> str:
    """A printable ranking and order check for each model in ``df``."""
    unit = {"damage": "loss increase (nats)", "top1_drop": "top-1 drop"}.get(metric, metric)
    lines = []
    for model, part in df.groupby("model", sort=False):
        rk = ranking(part, frac, metric)
        chk = order_check(part, frac, metric)
        lines.append(f"{model}: ranking at {chk['frac']:.0%} ablated, by {unit} (least damage first)")
        for _, row in rk.iterrows():
            lines.append(f"  {row['rank']}. {row['method']:<9} {row['mean']:+.4f}  [{row['lo']:+.4f}, {row['hi']:+.4f}]"
                         f"  ({row['n']} seeds)")
        yes = lambda b: "yes" if b else "NO"  # noqa: E731
        lines.append(f"  peak <= mean: {yes(chk.get('peak_le_mean'))};  mean <= zero: {yes(chk.get('mean_le_zero'))};"
                     f"  resample worst: {yes(chk.get('resample_worst'))}  ->  paper's ordering "
                     f"{'holds' if chk['claim'] else 'does NOT hold'} here")
        for p in chk["pairs"]:
            lines.append(f"    {p['a']} - {p['b']}: {p['diff']:+.4f}  (95% t-interval over {p['n']} seeds "
                         f"[{p['lo']:+.4f}, {p['hi']:+.4f}]; {'significant' if p['significant'] else 'within noise'})")
    return "\n".join(lines)


def winners(df: pd.DataFrame, metric: str = "damage") -> pd.DataFrame:
    """Per model and ablated fraction: the least damaging method, the runner-up, and whether the gap is real.

    Columns: ``model, frac, best, runner_up, best_mean, gap`` (runner-up minus best, paired over
    seeds) ``gap_lo, gap_hi`` (95 % t-interval) and ``clear`` (the interval excludes 0).
    """
    df = with_damage(df) if metric not in df else df
    rows = []
    for model, part in df.groupby("model", sort=False):
        for f in sorted(part.frac.unique()):
            if f == 0:
                continue
            r = ranking(part, f, metric)
            if len(r) < 2:
                continue
            p = paired_difference(part, r.method.iloc[1], r.method.iloc[0], f, metric)
            rows.append({"model": model, "frac": f, "best": r.method.iloc[0], "runner_up": r.method.iloc[1],
                         "best_mean": r["mean"].iloc[0], "gap": p["diff"], "gap_lo": p["lo"], "gap_hi": p["hi"],
                         "clear": bool(p["lo"] > 0)})
    return pd.DataFrame(rows)
