"""MoEfication (paper 3): do equal-size clusters of FF neurons line up with tasks?

Per layer, the L2-normalised rows of ``W_in`` are split into equal-size clusters by balanced
k-means (:func:`~paragraph_planning.core.clustering.moefy`, the ``k-means-constrained`` library with its
default ``n_init`` and ``max_iter`` unless set otherwise). A task's neurons in a layer are its top
``frac`` of that layer by score; their **concentration** is ``1 − H(p) / log C`` (``p``: their
share in each of the ``C`` clusters). The null is a **permutation** test: the cluster labels of a
layer's neurons are shuffled (a random equal-size partition), ``n_perm`` times, the same
permutations for every task. The paper's depth claim (stronger in early and late layers) is read
from the excess over the permutation mean per third of the layers, with intervals over tasks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..cache import cached
from ..core.clustering import concentration, moefy, permuted_labels
from ..core.inference import Finding, Interval, assess, bootstrap_mean
from .modularity_stats import ModelRef

KMEANS_DEFAULTS = {"n_init": 10, "max_iter": 300}
"""``KMeansConstrained``'s own defaults (what the paper's authors ran)."""


@dataclass(frozen=True)
class MoeConfig:
    """MoEfication settings; validated on creation.

    ``n_clusters`` per layer (must divide ``d_mlp``), ``layer_step`` (cluster every k-th layer; the
    last always), ``frac`` (a task's top fraction of a layer), ``n_perm`` (label permutations),
    ``n_init`` / ``max_iter`` (k-means restarts and iterations: the library's defaults),
    ``n_boot`` and ``level`` (intervals over tasks), ``seed``.
    """

    n_clusters: int = 96
    layer_step: int = 1
    frac: float = 0.1
    n_perm: int = 1000
    n_init: int = KMEANS_DEFAULTS["n_init"]
    max_iter: int = KMEANS_DEFAULTS["max_iter"]
    n_boot: int = 10_000
    level: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        for name, low in (("n_clusters", 2), ("layer_step", 1), ("n_perm", 99), ("n_init", 1), ("max_iter", 1),
                          ("n_boot", 100), ("seed", 0)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}.")
        if not 0 < self.frac < 1:
            raise ValueError(f"frac must be in (0, 1), got {self.frac!r}.")
        if not 0.5 <= self.level < 1:
            raise ValueError(f"level must be in [0.5, 1), got {self.level!r}.")

    def layers(self, n_layers: int) -> list[int]:
        """The clustered layers: every ``layer_step``-th, and the last."""
        return sorted(set(range(0, n_layers, self.layer_step)) | {n_layers - 1})


def moe_labels(ref: ModelRef, layers: Sequence[int], cfg: MoeConfig) -> dict[int, np.ndarray]:
    """Per layer, equal-size k-means labels ``[d_mlp]`` of the L2-normalised rows of ``W_in``.

    Cached per layer, keyed by the clustering code (:mod:`~paragraph_planning.core.clustering`) and
    the weights only, so editing the analyses here does not redo the clustering.
    """
    out = {}
    for layer in layers:
        params = {"layer": int(layer), "n_clusters": cfg.n_clusters, "seed": cfg.seed, "n_init": cfg.n_init,
                  "max_iter": cfg.max_iter}
        out[layer] = cached("moefication", params,
                            lambda layer=layer: moefy(ref.get().weights(layer)["W_in"], cfg.n_clusters, seed=cfg.seed,
                                                      n_init=cfg.n_init, max_iter=cfg.max_iter),
                            model=ref, code="paragraph_planning.core.clustering")
    return out


# ============================================================================ concentration and its null
def _perm_seed(cfg: MoeConfig, layer: int) -> int:
    """The permutations of one layer: the same for every task and for :func:`aggregate_test`."""
    return cfg.seed + 7919 * (int(layer) + 1)


def _selections(scores: Mapping[str, torch.Tensor], layer: int, d: int, frac: float) -> np.ndarray:
    """Each task's top ``frac`` of one layer's neurons ``[tasks, k]``."""
    k = max(1, int(frac * d))
    return np.stack([s[layer].topk(k).indices.numpy() for s in scores.values()])


def _n_layers(scores: Mapping[str, torch.Tensor]) -> int:
    return int(next(iter(scores.values())).shape[0])


def run_moefication(ref: ModelRef, scores: Mapping[str, torch.Tensor], cfg: MoeConfig) -> pd.DataFrame:
    """Concentration of each task's top neurons per layer in k-means clusters vs the permutation null.

    ``scores``: ``{task: [n_layers, d_mlp]}`` of the model ``ref``, whose layers ``cfg.layers``
    are clustered (:func:`moe_labels`, cached). One row per (``task``, ``layer``): ``kmeans``,
    ``perm_mean`` and ``perm_p95`` (over the permutations), ``excess`` (kmeans − perm_mean) and ``p``
    (one-sided, ``(1 + #{perm ≥ kmeans}) / (1 + n_perm)``). The test over all tasks and layers
    together is :func:`aggregate_test`.
    """
    labels = moe_labels(ref, cfg.layers(_n_layers(scores)), cfg)
    return concentration_table(scores, labels, cfg)


def concentration_table(scores: Mapping[str, torch.Tensor], labels: Mapping[int, np.ndarray], cfg: MoeConfig) -> pd.DataFrame:
    """:func:`run_moefication`'s table for given cluster ``labels`` ``{layer: [d_mlp]}``."""
    names = list(scores)
    rows = []
    for layer, lab in labels.items():
        sel = _selections(scores, layer, len(lab), cfg.frac)
        obs = concentration(sel, lab, cfg.n_clusters)
        null = concentration(sel, permuted_labels(lab, cfg.n_perm, _perm_seed(cfg, layer)), cfg.n_clusters)
        for i, t in enumerate(names):
            rows.append({"task": t, "layer": int(layer), "kmeans": float(obs[i]), "perm_mean": float(null[:, i].mean()),
                         "perm_p95": float(np.quantile(null[:, i], 0.95)), "excess": float(obs[i] - null[:, i].mean()),
                         "p": float((1 + (null[:, i] >= obs[i] - 1e-12).sum()) / (1 + cfg.n_perm))})
    return pd.DataFrame(rows)


def aggregate_test(ref: ModelRef, scores: Mapping[str, torch.Tensor], cfg: MoeConfig) -> dict[str, float]:
    """Permutation test of the mean concentration over all tasks and clustered layers: every layer's
    labels shuffled independently in each draw (the same permutations as :func:`run_moefication`).
    Returns ``statistic``, ``null_mean``, ``p`` and ``n_perm``."""
    labels = moe_labels(ref, cfg.layers(_n_layers(scores)), cfg)
    obs, null = 0.0, np.zeros(cfg.n_perm)
    for layer, lab in labels.items():
        sel = _selections(scores, layer, len(lab), cfg.frac)
        obs += concentration(sel, lab, cfg.n_clusters).mean()
        null += concentration(sel, permuted_labels(lab, cfg.n_perm, _perm_seed(cfg, layer)), cfg.n_clusters).mean(1)
    n = len(labels)
    return {"statistic": obs / n, "null_mean": float(null.mean() / n),
            "p": float((1 + (null >= obs - 1e-12).sum()) / (1 + cfg.n_perm)), "n_perm": cfg.n_perm}


# ============================================================================ depth
THIRDS: tuple[str, ...] = ("early", "middle", "late")


def depth_profile(conc: pd.DataFrame, n_layers: int, n_boot: int = 10_000, level: float = 0.95,
                  seed: int = 0) -> dict[str, Interval]:
    """Mean excess per third of the layers, and early − middle, late − middle, with bootstrap intervals over tasks.

    Each task's excess is averaged within each third (layers ``l`` with ``3 l // n_layers`` = 0, 1,
    2), so the unit of the interval is the task.
    """
    per = conc.assign(third=conc.layer * 3 // n_layers).groupby(["task", "third"]).excess.mean().unstack()
    per = per.reindex(columns=[0, 1, 2])
    values = {"early": per[0], "middle": per[1], "late": per[2], "early − middle": per[0] - per[1],
              "late − middle": per[2] - per[1]}
    out = {}
    for name, v in values.items():
        x = v.to_numpy(dtype=float)
        if np.isnan(x).any() or len(x) < 2:
            out[name] = Interval(float(np.nanmean(x)) if np.isfinite(x).any() else math.nan, math.nan, math.nan,
                                 level, len(x), method="bootstrap over tasks (no interval)")
        else:
            out[name] = bootstrap_mean(x, level=level, n_boot=n_boot, seed=seed)
    return out


def layer_summary(conc: pd.DataFrame) -> pd.DataFrame:
    """Per layer: mean concentration with k-means and permuted labels, the excess, and the share of tasks with p < 0.05."""
    g = conc.groupby("layer")
    return pd.DataFrame({"kmeans": g.kmeans.mean(), "perm_mean": g.perm_mean.mean(), "excess": g.excess.mean(),
                         "share_p05": g.p.apply(lambda p: float((p < 0.05).mean()))}).reset_index()


def kmeans_agreement(w_in: torch.Tensor, n_clusters: int, settings: Mapping[str, Mapping[str, int]],
                     seed: int = 0) -> pd.DataFrame:
    """Balanced k-means of one layer under several ``{label: {"n_init", "max_iter"}}`` settings:
    objective (inertia on the normalised rows), CPU seconds, and adjusted Rand index with the first setting."""
    import time

    from sklearn.metrics import adjusted_rand_score

    x = torch.nn.functional.normalize(w_in.detach().double(), dim=1).cpu().numpy()
    rows, first = [], None
    for label, s in settings.items():
        t0 = time.process_time()
        lab = moefy(w_in, n_clusters, seed=seed, **s)
        secs = time.process_time() - t0
        centres = np.stack([x[lab == c].mean(0) for c in range(n_clusters)])
        inertia = float(((x - centres[lab]) ** 2).sum())
        first = lab if first is None else first
        rows.append({"setting": label, **s, "inertia": inertia, "cpu_s": secs, "ari_vs_first": adjusted_rand_score(first, lab),
                     "labels": lab})
    return pd.DataFrame(rows)


# ============================================================================ the paper's claims, tested
def moe_findings(conc: pd.DataFrame, n_layers: int, cfg: MoeConfig, aggregate: Mapping[str, float] | None = None
                 ) -> list[Finding]:
    """The MoEfication claims: task neurons sit in k-means clusters beyond the permutation null (the
    mean excess over tasks, bootstrap interval over tasks; the aggregate permutation p in the note),
    and more so in early and in late layers than in the middle (each contrast its own row)."""
    per_task = conc.groupby("task").excess.mean().to_numpy()
    note = (f"aggregate permutation test over tasks and layers: p = {aggregate['p']:.3g} ({aggregate['n_perm']} "
            "permutations)" if aggregate else "")
    out = [assess("k-means clusters hold a task's neurons more than random equal-size clusters",
                  bootstrap_mean(per_task, level=cfg.level, n_boot=cfg.n_boot, seed=cfg.seed),
                  unit="concentration", note=note)]
    depth = depth_profile(conc, n_layers, cfg.n_boot, cfg.level, cfg.seed)
    for part in ("early", "late"):
        out.append(assess(f"the correspondence is stronger in {part} than in middle layers", depth[f"{part} − middle"],
                          unit="concentration", note="excess over the permutation mean, per task"))
    return out
