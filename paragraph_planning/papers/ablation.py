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
               input (random corpus text, random token ids, another image or random pixels)
=============  ==============================================================================

Subsets: every evaluation unit (a row of tokens, an image) draws its own random order of each
site's neurons (:func:`~.ablation_eval.unit_ranks`); at fraction ``f`` the first ``round(f·n)`` are
ablated, so subsets grow cumulatively without replacement, and within a unit every method ablates
the same neurons (paired comparisons). Units are therefore independent replicates of (input,
subset, resample source), and intervals over units include both sources of noise.

One calling convention: frozen, validated configs and ``run_...(model, data, cfg)``, cached inside::

    ref = reference_stats(model, batches, StatsConfig(sites=("attn.pre_out",)))
    data = AblationData(lm_task(rows), ref, Resampler("tokens", vocab_size=len(model.tokenizer)))
    df = run_ablation(model, data, AblationConfig(fracs=step_fracs(0.1, 10)))   # one row per unit and condition
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, Sequence, get_args

import numpy as np
import pandas as pd
import torch

from ..cache import cached
from ..core.architectures import layer_of, parse_name
from ..core.hooks import HookedModel
from ..core.peaks import hist_mode, kde_mode, skewness
from ..core.statistics import NeuronStats, collect_stats
from ..data.images import image_positions, pixel_processor
from .ablation_eval import (
    ALL_LAYERS,
    EvalTask,
    Resampler,
    evaluate_units,
    image_inputs,
    image_task,
    lm_task,
    n_ablated,
    tensor_digest,
    text_inputs,
    unit_ranks,
)

METHODS: tuple[str, ...] = ("zero", "mean", "peak", "resample")
"""The paper's four methods."""
CONSTANT_METHODS: tuple[str, ...] = ("zero", "mean", "peak", "median", "peak-kde")
"""Methods whose replacement is one value per neuron."""
ALL_METHODS: tuple[str, ...] = (*CONSTANT_METHODS, "resample")
Positions = Literal["all", "cls"]

__all__ = ["ALL_LAYERS", "METHODS", "CONSTANT_METHODS", "AblationConfig", "AblationData", "ReferenceStats",
           "StatsConfig", "estimator_agreement", "image_data", "n_ablated", "peak_estimates", "reference_stats",
           "replacement_values", "run_ablation", "step_fracs", "text_data"]


def step_fracs(frac_step: float = 0.1, n_steps: int = 10) -> list[float]:
    """Cumulative fractions ``frac_step·i`` for ``i = 1..n_steps`` (capped at 1, rounded to 1e-9)."""
    if frac_step <= 0 or n_steps < 1:
        raise ValueError(f"Need frac_step > 0 and n_steps >= 1, got {frac_step}, {n_steps}.")
    return sorted({round(min(1.0, frac_step * i), 9) for i in range(1, n_steps + 1)})


def _check_choice(name: str, value: Any, valid: Sequence[Any]) -> None:
    if value not in valid:
        raise ValueError(f"Unknown {name} {value!r}. Valid: {', '.join(map(str, valid))}.")


def per_model(name: str, value: int | Mapping[str, int], models: Sequence[str]) -> dict[str, int]:
    """``{model: number}`` from a parameter that is one number for every model or a dict by model name.

    Raises ValueError, naming the parameter and the models, for a dict that leaves out one of ``models``
    or names another, and for numbers below 1; call it before any model runs.

        >>> per_model("eval_images", {"vit": 500, "dino": 200}, ["vit", "dino"])
        {'vit': 500, 'dino': 200}
        >>> per_model("eval_images", 1000, ["vit", "dino"])
        {'vit': 1000, 'dino': 1000}
    """
    if isinstance(value, Mapping):
        missing, unknown = [m for m in models if m not in value], [str(k) for k in value if k not in models]
        if missing or unknown:
            problems = ([f"has no number for {', '.join(missing)}"] if missing else []) + (
                [f"names {', '.join(unknown)}, which is not among the models"] if unknown else [])
            raise ValueError(f"{name} {' and '.join(problems)}. Give every model of {list(models)} a number, "
                             f"or one number for all.")
        out = {m: int(value[m]) for m in models}
    else:
        out = {m: int(value) for m in models}
    bad = {m: v for m, v in out.items() if v < 1}
    if bad:
        raise ValueError(f"{name} must be at least 1, got {bad}.")
    return out


def _check_kde_bw(bw: str | float) -> None:
    if not (bw in ("scott", "silverman") or (isinstance(bw, (int, float)) and not isinstance(bw, bool) and bw > 0)):
        raise ValueError(f"kde_bw must be 'scott', 'silverman' or a positive number, got {bw!r}.")


# ============================================================================ reference statistics
@dataclass(frozen=True)
class StatsConfig:
    """How the reference statistics are collected.

    ``sites``: the neuron sites ablated later (``attn.pre_out``, ``mlp.pre_out``); ``bins``: the
    paper's histogram (100 bins, its peak is the fullest bin's centre); ``extra_bins``: histograms
    with other bin counts from the same tokens; ``reservoir``: activations kept per neuron (a
    uniform sample, for the KDE, the median and the skewness); ``positions``: image models only,
    ``"all"`` (every token, matching ablation at every position; the default) or ``"cls"``.
    """

    sites: tuple[str, ...] = ("attn.pre_out",)
    bins: int = 100
    extra_bins: tuple[int, ...] = ()
    reservoir: int = 2048
    positions: Positions = "all"
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "sites", tuple(self.sites))
        object.__setattr__(self, "extra_bins", tuple(int(b) for b in self.extra_bins))
        for s in self.sites:
            _check_choice("site", s, ("attn.pre_out", "mlp.pre_out"))
        if not self.sites:
            raise ValueError("sites is empty. Valid: attn.pre_out, mlp.pre_out.")
        if self.bins < 2 or any(b < 2 for b in self.extra_bins) or self.reservoir < 0:
            raise ValueError(f"Need bins >= 2, extra_bins >= 2 and reservoir >= 0, got {self.bins}, "
                             f"{self.extra_bins}, {self.reservoir}.")
        _check_choice("positions", self.positions, get_args(Positions))


@dataclass
class ReferenceStats:
    """Statistics of the reference data: the paper's 100-bin :class:`NeuronStats` per site, plus
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

    @functools.cached_property
    def digest(self) -> str:
        """A content hash of everything a replacement value depends on (cache keys)."""
        return tensor_digest(*[t for s in self.stats.values() for t in (s.mean, s.hist, s.lo, s.hi, s.reservoir)])

    @property
    def sizes(self) -> dict[str, int]:
        """Neurons per site."""
        return {n: s.n_neurons for n, s in self.stats.items()}


def reference_stats(model: HookedModel, batches: Sequence[torch.Tensor] | torch.Tensor, cfg: StatsConfig,
                    progress: bool = False) -> ReferenceStats:
    """One pass over ``batches``: :func:`collect_stats` and the extra-bin histograms; cached by the
    batches' content, ``cfg`` and the model."""
    batches = list(batches)
    if cfg.positions == "cls" and getattr(model.cfg, "kind", "") != "image":
        raise ValueError("positions='cls' is for image models (a ViT's class token); use 'all' for language models.")

    def compute() -> dict[str, Any]:
        names = model.hook_names(cfg.sites)
        extra = {b: {n: NeuronStats(model.cfg.n_neurons(model.parse(n)[1]), bins=b, reservoir=0, name=n) for n in names}
                 for b in cfg.extra_bins if b != cfg.bins}
        pos = image_positions(cfg.positions) if getattr(model.cfg, "kind", "") == "image" else None

        def feed(name: str) -> Callable[..., None]:
            def fn(act: torch.Tensor, *, hook: Any) -> None:
                a = act.detach() if pos is None else act.detach()[:, pos]
                x = a.reshape(-1, model.cfg.n_neurons(hook.site))
                for d in extra.values():
                    d[name].update(x)
            return fn

        with model.hooks([(n, feed(n)) for n in names] if extra else []):
            stats = collect_stats(model, batches, cfg.sites, bins=cfg.bins, reservoir=cfg.reservoir, seed=cfg.seed,
                                  positions=pos, progress=progress)
        return ReferenceStats(stats, extra).to_dict()

    key = {"data": tensor_digest(*batches), "cfg": cfg}
    return ReferenceStats.from_dict(cached("ablation-stats", key, compute, model=model))


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


# ============================================================================ the experiment
@dataclass(frozen=True)
class AblationConfig:
    """One ablation experiment.

    ``methods``: any of :data:`ALL_METHODS`; ``fracs``: ablated fractions of each site's neurons,
    in (0, 1]; ``per_layer``: ablate one layer at a time (each of ``layers``, default all) instead of
    every layer at once; ``seed``: the units' neuron orders and resample sources; ``kde_bw``: the
    KDE bandwidth of ``peak-kde``; ``batch_size``: units per forward pass.
    """

    methods: tuple[str, ...] = METHODS
    fracs: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    per_layer: bool = False
    layers: tuple[int, ...] | None = None
    seed: int = 0
    kde_bw: str | float = "scott"
    batch_size: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "fracs", tuple(sorted({round(float(f), 9) for f in self.fracs})))
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(x) for x in self.layers))
        if not self.methods or len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods must be distinct and not empty. Valid: {', '.join(ALL_METHODS)}.")
        for m in self.methods:
            _check_choice("method", m, ALL_METHODS)
        if not self.fracs or not all(0 < f <= 1 for f in self.fracs):
            raise ValueError(f"fracs must be fractions in (0, 1], got {self.fracs}.")
        if self.layers is not None and (not self.per_layer or any(x < 0 for x in self.layers)):
            raise ValueError("layers (>= 0) only go with per_layer=True.")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}.")
        _check_kde_bw(self.kde_bw)


@dataclass(frozen=True)
class AblationData:
    """What an ablation run needs besides the model and the config: the evaluation units, the
    reference statistics (which also name the ablated sites) and, for ``resample``, a
    :class:`~.ablation_eval.Resampler`."""

    task: EvalTask
    ref: ReferenceStats
    resampler: Resampler | None = None

    def head(self, n: int) -> "AblationData":
        """The first ``n`` units only (their subsets and resample sources are the same as in the whole)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}.")
        t = self.task
        return AblationData(EvalTask(t.kind, t.inputs[:n], None if t.labels is None else t.labels[:n]), self.ref,
                            self.resampler)

    def key(self) -> dict[str, Any]:
        """What the results depend on (cache keys)."""
        return {"task": self.task.key(), "ref": self.ref.digest,
                "resampler": None if self.resampler is None else self.resampler.key()}


def conditions(cfg: AblationConfig, layers: Sequence[int]) -> list[tuple[str, float, int]]:
    """The ``(method, frac, layer)`` conditions of ``cfg`` (``layers``: the model's ablated layers)."""
    scopes = [ALL_LAYERS] if not cfg.per_layer else list(cfg.layers if cfg.layers is not None else layers)
    return [(m, f, layer) for layer in scopes for m in cfg.methods for f in cfg.fracs]


def run_ablation(model: HookedModel, data: AblationData, cfg: AblationConfig, progress: bool = False) -> pd.DataFrame:
    """Ablate growing random subsets with each method; one row per (method, frac, layer, unit). Cached.

    Columns: ``model, method, frac, layer`` (:data:`ALL_LAYERS` = every layer), ``unit``, the unit's
    metrics (``loss``, ``top1`` and ``top10`` or ``top5``), its clean metrics (``clean_loss``, ...),
    ``n_ablated`` (neurons replaced over all ablated sites) and ``unit_size`` (scored targets per
    unit). Fraction 0 (the clean model) is included for every method when every layer is ablated.
    """
    if "resample" in cfg.methods and data.resampler is None:
        raise ValueError("The resample method needs AblationData.resampler.")
    sizes = data.ref.sizes
    missing = [layer for layer in (cfg.layers or ()) if layer not in {layer_of(n) for n in sizes}]
    if missing:
        raise ValueError(f"layers {missing} have no ablated sites; valid: {sorted({layer_of(n) for n in sizes})}.")

    def compute() -> pd.DataFrame:
        values = {m: replacement_values(data.ref, m, cfg.kde_bw) for m in cfg.methods if m != "resample"}
        ranks = unit_ranks(sizes, data.task.n_units, cfg.seed)
        sources = data.resampler.sources(data.task, cfg.seed) if "resample" in cfg.methods else None  # type: ignore[union-attr]
        conds = conditions(cfg, sorted({layer_of(n) for n in sizes}))
        return evaluate_units(model, data.task, values, ranks, conds, sources, cfg.batch_size, progress)

    df = cached("ablation-units", {"data": data.key(), "cfg": cfg}, compute, model=model)
    if not cfg.per_layer:
        clean = df[df.method == df.method.iloc[0]].drop_duplicates("unit")
        metrics = [c[len("clean_"):] for c in df.columns if c.startswith("clean_")]
        zero = pd.concat([clean.assign(method=m, frac=0.0, **{k: clean[f"clean_{k}"] for k in metrics})
                          for m in cfg.methods], ignore_index=True)
        df = pd.concat([zero, df], ignore_index=True)
    n_of = {layer: {n: s for n, s in sizes.items() if layer == ALL_LAYERS or layer_of(n) == layer}
            for layer in df.layer.unique()}
    df["n_ablated"] = [sum(n_ablated(s, f) for s in n_of[layer].values()) for f, layer in zip(df.frac, df.layer)]
    df["unit_size"] = data.task.unit_size
    df.insert(0, "model", model.name)
    return df.sort_values(["layer", "method", "frac", "unit"], kind="stable").reset_index(drop=True)


# ============================================================================ data for one model
def text_data(model: HookedModel, stats_cfg: StatsConfig, *, ref_corpus: str = "wiki-en", eval_corpus: str = "wiki-en",
              stat_tokens: int = 8192, eval_tokens: int = 8192, seq_len: int = 256, resample: str = "tokens",
              seed: int = 0) -> AblationData:
    """A language model's :class:`AblationData`: reference statistics from ``stat_tokens`` of
    ``ref_corpus`` (train split), ``ceil(eval_tokens / seq_len)`` evaluation rows of ``eval_corpus``
    (test split) as units, and a resampler (``"tokens"``: random ids; ``"corpus"``: reference rows)."""
    _check_choice("resample source", resample, ("tokens", "corpus"))
    inp = text_inputs(model, ref_corpus, eval_corpus, stat_tokens, eval_tokens, seq_len, seed)
    tok = model.tokenizer
    res = Resampler(resample, pool=inp["pool"], vocab_size=len(tok), bos_id=tok.bos_token_id)
    return AblationData(lm_task(inp["eval"]), reference_stats(model, inp["reference"], stats_cfg), res)


def image_data(model: HookedModel, stats_cfg: StatsConfig, *, source: str = "fashion-mnist", stat_images: int = 1024,
               eval_images: int = 1000, resample: str = "pixels", batch_size: int = 128, seed: int = 0) -> AblationData:
    """An image classifier's :class:`AblationData`: statistics from ``stat_images`` training images,
    ``eval_images`` test images as units, and a resampler (``"pixels"``: random grey levels;
    ``"images"``: the reference images)."""
    _check_choice("resample source", resample, ("pixels", "images"))
    ref_px, _ = image_inputs(model, source, stat_images, "train", seed)
    px, labels = image_inputs(model, source, eval_images, "test", seed)
    ref = reference_stats(model, list(ref_px.split(batch_size)), stats_cfg)
    return AblationData(image_task(px, labels), ref, Resampler(resample, pool=ref_px, processor=pixel_processor(model)))
